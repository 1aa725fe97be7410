"""`make run 2>&1 | tee run.log`, then Ctrl-C: the pipe's reader dies of the same Ctrl-C, and
scripts/run_sandbox.py must still stop gatewayd and its gateway (issue 17).

The script's own stop path (`run_sandbox.run_gatewayd`) runs in a subprocess with a real gatewayd
supervising the fake gateway; the test closes the pipes the script writes to, then sends it SIGINT.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from gatewayd_dev.harness import REPO, fake_settings, gatewayd, wait_until

pytestmark = pytest.mark.timeout(120)

RUNNER = textwrap.dedent("""
    import runpy, sys
    run_sandbox = runpy.run_path(sys.argv[1] + "/scripts/run_sandbox.py", run_name="run_sandbox")
    sys.exit(run_sandbox["run_gatewayd"]([sys.executable, "-m", "supervisor", "run", "-c", sys.argv[2]]))
""")


def test_ctrl_c_with_the_output_pipe_gone_still_stops_gatewayd_and_the_gateway(tmp_path: Path) -> None:
    with gatewayd(tmp_path, fake_settings()) as g:
        script = subprocess.Popen([sys.executable, "-c", RUNNER, str(REPO), str(g.config_file)], env=g.env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
        try:
            g.wait_event("gateway_ready")
            daemon_pid = int(g.wait_event("gatewayd_started")["pid"])
            gateway_pid = g.spawned_pids()[0]
            daemon = psutil.Process(daemon_pid)
            assert script.stdout is not None and script.stderr is not None
            script.stdout.close()  # tee died of the same Ctrl-C: every print of the script now fails
            script.stderr.close()
            script.send_signal(signal.SIGINT)
            script.wait(60)
            # gatewayd got its stop: it drained and stopped the gateway, and exited; nothing is orphaned
            wait_until(lambda: not daemon.is_running() or daemon.status() == psutil.STATUS_ZOMBIE, 30,
                       "gatewayd to exit")
            assert not psutil.pid_exists(gateway_pid) or psutil.Process(gateway_pid).status() == psutil.STATUS_ZOMBIE
            assert g.alive_marked() == []
            assert script.returncode == 0  # gatewayd's own exit code: a clean stop
            ended = g.wait_event("gateway_exited")
            assert ended["exit_kind"] == "clean-stop"
        finally:
            if script.poll() is None:
                script.kill()
                script.wait(10)
