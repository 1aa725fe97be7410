"""`make run` (scripts/run_sandbox.py): up, supervising a sandboxed gateway, and Ctrl-C stops both."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from gatewayd_dev.harness import MARK, REPO, marked_processes, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def test_make_run_supervises_a_sandboxed_gateway_and_ctrl_c_stops_both(tmp_path: Path) -> None:
    mark = str(uuid.uuid4())
    env = {**os.environ, MARK: mark, "PATH": os.environ["PATH"]}
    # The user's own openclaw would be preferred; keep the pinned one for a repeatable test.
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not (Path(p) / "openclaw").exists())
    root = tmp_path / "run"
    out = (tmp_path / "run.out").open("wb")
    proc = subprocess.Popen([sys.executable, str(REPO / "scripts" / "run_sandbox.py"), "--root", str(root)],
                            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        cfg = root / "gatewayd.toml"

        def status() -> dict[str, object] | None:
            if not cfg.exists():
                return None
            r = subprocess.run([sys.executable, "-m", "supervisor", "status", "-c", str(cfg), "--json"],
                               capture_output=True, text=True, cwd=REPO, timeout=30)
            st = json.loads(r.stdout) if r.returncode == 0 else None
            # Healthy by the daemon's live state; the stored state follows it a write later.
            return st if st is not None and st["supervision"]["state"] == "running" else None

        st = wait_until(status, 300, "gatewayd status: running", step=1.0)
        assert st["supervision"]["state"] == "running"  # type: ignore[index]
        assert (root / "gateway" / "openclaw.json").exists()
        wait_until(lambda: "added cron job 'gatewayd-demo'" in (tmp_path / "run.out").read_text(), 60,
                   "the demo cron job")
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(180) == 0
        wait_until(lambda: not marked_processes(mark), 30, "every process gone")
        down = subprocess.run([sys.executable, "-m", "supervisor", "status", "-c", str(cfg), "--json"],
                              capture_output=True, text=True, cwd=REPO, timeout=30)
        assert json.loads(down.stdout)["supervision"]["state"] == "stopped"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out.close()
        for p in marked_processes(mark):
            p.kill()
