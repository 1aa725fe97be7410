"""A real kernel OOM kill, not counters written by a test: the fake gateway runs in a memory cgroup
of its own with a small limit and leaks until the kernel's OOM killer ends it. gatewayd must call
that exit `oom-kill` (the kernel's `oom_kill` counter moved with the SIGKILL), restart the gateway,
and say so in its "down" alert and incident (issue 18, item 3)."""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayd_dev.alert_receiver import receiver
from gatewayd_dev.harness import FAKE_GATEWAY, fake_settings, gatewayd
from tests.integration.test_supervise import merge, stop_gatewayd

CGROUP_V1 = Path("/sys/fs/cgroup/memory")
LIMIT_MB = 96

WRAPPER = """import os, sys
with open(sys.argv[1], "w") as fh:  # this process, then the gateway it becomes, in the limited cgroup
    fh.write(str(os.getpid()))
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""

pytestmark = [
    pytest.mark.timeout(120),
    # The kernel counts OOM kills machine-wide (/proc/vmstat; this cgroup v1 host has no per-cgroup
    # memory.events): another test's kill -9 at the same moment would be taken for one.
    pytest.mark.alone,
    pytest.mark.skipif(sys.platform != "linux" or os.geteuid() != 0 or not os.access(CGROUP_V1, os.W_OK),
                       reason="needs root and a writable cgroup v1 memory controller (CI has both)"),
]


@pytest.fixture
def memory_cgroup() -> Iterator[Path]:
    group = CGROUP_V1 / f"gatewayd-test-{uuid.uuid4().hex[:8]}"
    group.mkdir()
    (group / "memory.limit_in_bytes").write_text(str(LIMIT_MB * 1024 * 1024))
    try:
        yield group
    finally:
        for pid in (group / "cgroup.procs").read_text().split():  # none should be left: the test stops all
            with open(CGROUP_V1 / "cgroup.procs", "w") as fh:
                fh.write(pid)
        group.rmdir()


def test_a_gateway_killed_by_the_kernels_oom_killer_is_an_oom_kill(tmp_path: Path, memory_cgroup: Path) -> None:
    wrapper = tmp_path / "in_cgroup.py"
    wrapper.write_text(WRAPPER)
    settings = fake_settings(FAKE_GW_GROW_AFTER="0.5:200")
    settings["gateway"]["command"] = [sys.executable, str(wrapper), str(memory_cgroup / "cgroup.procs"),
                                      str(FAKE_GATEWAY)]
    with receiver() as r:
        settings = merge(settings, {"alerts": {"notify": [{"kind": "webhook", "url": r.url}]}})
        with gatewayd(tmp_path, settings) as g:
            g.start()
            g.wait_event("gateway_ready")
            exited = g.wait_event("gateway_exited", timeout=60)
            assert exited["exit_kind"] == "oom-kill", exited
            assert exited["returncode"] == -9
            assert int((memory_cgroup / "memory.failcnt").read_text()) > 0  # the limit was hit: the kernel acted
            down = r.wait_kind("down", timeout=10)["body"]
            assert down["fields"]["exit_kind"] == "oom-kill"
            g.wait_event("gateway_ready", count=2)  # restarted (it will leak again: stopped below)
            incident = json.loads(g.run_cli("history", "--incident", str(down["incident"]), "--json", "-c",
                                            str(g.config_file)).stdout)
            assert incident["exit_kind"] == "oom-kill" and incident["signal"] == "SIGKILL"
            stop_gatewayd(g)
            assert g.alive_marked() == []
