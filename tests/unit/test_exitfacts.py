"""exitfacts.gather: what the daemon knew about an exit, as core.policy.classify receives it; the
port is looked at only for an exit 78, where it tells a config error from a held port."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from supervisor import exitfacts
from supervisor.boot import BootWatch
from supervisor.core.model import ExitKind, Intent
from supervisor.core.policy import classify
from supervisor.core.probestate import ProbeMachine, ProbeSettings
from supervisor.gateway.child import ExitInfo, GatewayChild


class ExitedChild:
    pid = 4242

    def __init__(self, adopted: bool = False) -> None:
        self.adopted = adopted


def watch(adopted: bool = False, restart_expected: bool = False) -> BootWatch:
    w = BootWatch(3, cast(GatewayChild, ExitedChild(adopted)), ProbeMachine.spawned(ProbeSettings(), 0.0))
    w.restart_expected = restart_expected
    return w


@pytest.fixture
def held_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_exit_78_with_the_port_held_is_a_conflict_not_a_config_error(held_port: int) -> None:
    facts = exitfacts.gather(watch(), held_port, Intent.NONE, ExitInfo(78, 1.0, False))
    assert facts.port_held_by_other
    assert classify(facts).kind is ExitKind.CONFLICT


def test_exit_78_with_the_port_free_is_a_config_error() -> None:
    facts = exitfacts.gather(watch(), free_port(), Intent.NONE, ExitInfo(78, 1.0, False))
    assert not facts.port_held_by_other
    assert classify(facts).kind is ExitKind.CONFIG_ERROR


def test_other_codes_never_look_at_the_port(held_port: int) -> None:
    facts = exitfacts.gather(watch(), held_port, Intent.NONE, ExitInfo(1, 1.0, False))
    assert not facts.port_held_by_other


def test_intent_adoption_announcement_and_our_kill_are_carried_over() -> None:
    facts = exitfacts.gather(watch(adopted=True, restart_expected=True), free_port(), Intent.HANG_KILL,
                             ExitInfo(None, 1.0, True))
    assert (facts.intent, facts.returncode, facts.adopted, facts.restart_expected, facts.killed_by_us) == \
        (Intent.HANG_KILL, None, True, True, True)


def fake_proc(tmp_path: Path, vmstat: int | None, cgroup: int | None) -> tuple[Path, Path]:
    proc, cg = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "self").mkdir(parents=True, exist_ok=True)
    if vmstat is not None:
        (proc / "vmstat").write_text(f"nr_free_pages 12\noom_kill {vmstat}\npgfault 9\n")
    (proc / "self" / "cgroup").write_text("0::/user.slice/gatewayd.service\n")
    if cgroup is not None:
        (cg / "user.slice" / "gatewayd.service").mkdir(parents=True, exist_ok=True)
        (cg / "user.slice" / "gatewayd.service" / "memory.events").write_text(
            f"low 0\nhigh 0\nmax 3\noom 1\noom_kill {cgroup}\n")
    return proc, cg


def test_oom_kill_counters_are_read_from_vmstat_and_the_cgroup(tmp_path: Path) -> None:
    proc, cg = fake_proc(tmp_path, 4, 1)
    assert exitfacts.oom_kill_counts(proc, cg) == {"vmstat": 4, "cgroup": 1}
    proc, cg = fake_proc(tmp_path / "bare", None, None)  # no counters (macOS, an old kernel): none invented
    assert exitfacts.oom_kill_counts(proc, cg) == {}


def test_a_sigkill_after_the_oom_counter_moved_is_classified_oom(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    proc, cg = fake_proc(tmp_path, 4, 1)
    w = watch()
    w.oom_kills_at_start = exitfacts.oom_kill_counts(proc, cg)
    fake_proc(tmp_path, 4, 2)  # the kernel killed something in gatewayd's cgroup
    monkeypatch.setattr(exitfacts, "PROC", proc)
    monkeypatch.setattr(exitfacts, "CGROUP_ROOT", cg)
    facts = exitfacts.gather(w, free_port(), Intent.NONE, ExitInfo(-9, 1.0, False))
    assert facts.oom_counters == "cgroup"
    assert classify(facts).kind is ExitKind.OOM_KILL
    # the same counters unmoved: a plain kill -9 stays a crash
    w.oom_kills_at_start = exitfacts.oom_kill_counts()
    assert classify(exitfacts.gather(w, free_port(), Intent.NONE, ExitInfo(-9, 2.0, False))).kind is ExitKind.CRASH
