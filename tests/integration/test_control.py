"""The control socket and the commands that use it, against a running daemon and the fake gateway."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from gatewayd_dev.harness import Gatewayd, fake_settings, gatewayd, wait_until
from supervisor.control.paths import client_socket_path as socket_path

pytestmark = pytest.mark.timeout(120)


def raw(path: Path, payload: bytes, timeout: float = 5.0) -> dict[str, Any]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(path))
    try:
        s.sendall(payload)
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        return dict(json.loads(buf))
    finally:
        s.close()


def cli(g: Gatewayd, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return g.run_cli(*args, "-c", str(g.config_file), timeout=timeout)


def test_socket_is_private_and_answers_status(tmp_path: Path) -> None:
    with gatewayd(tmp_path, fake_settings()) as g:
        g.start()
        g.wait_event("gateway_ready")
        path = socket_path(g.state_dir)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        st = raw(path, b'{"id": "1", "command": "status"}\n')
        assert st["status"] == "ok" and st["id"] == "1" and st["code"] == 0
        assert st["data"]["state"] == "running" and st["data"]["gateway"]["pid"] == g.spawned_pids()[0]
        out = cli(g, "status", "--json")
        assert out.returncode == 0 and json.loads(out.stdout)["supervision"]["state"] == "running"
        assert cli(g, "stop").returncode == 0


@pytest.mark.parametrize(("payload", "code", "fragment"), [
    (b"not json\n", 2, "not JSON"),
    (b"[1, 2]\n", 2, "JSON object"),
    (b'{"args": {}}\n', 2, "command"),
    (b'{"command": "status", "args": [1]}\n', 2, "args"),
    (b'{"command": "reboot-the-moon"}\n', 3, "unknown command"),
    (b'{"command": "restart", "args": {"timeout_s": -1}}\n', 2, "timeout_s"),
    (b'{"command": "restart", "args": {"safe": "yes"}}\n', 2, "safe"),
    (b"x" * 70_000 + b"\n", 2, "64 KiB"),
])
def test_bad_requests_get_a_clear_error(tmp_path: Path, payload: bytes, code: int, fragment: str) -> None:
    with gatewayd(tmp_path, fake_settings()) as g:
        g.start()
        g.wait_event("gateway_ready")
        answer = raw(socket_path(g.state_dir), payload)
        assert answer["status"] == "error" and answer["code"] == code and fragment in answer["error"]
        # the daemon is unharmed
        assert raw(socket_path(g.state_dir), b'{"command": "ping"}\n')["status"] == "ok"
        assert cli(g, "stop").returncode == 0


def test_a_silent_client_never_blocks_the_daemon(tmp_path: Path) -> None:
    with gatewayd(tmp_path, fake_settings()) as g:
        g.start()
        g.wait_event("gateway_ready")
        path = socket_path(g.state_dir)
        silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        silent.connect(str(path))  # connects and says nothing
        try:
            answer = raw(path, b'{"command": "ping"}\n', timeout=2.0)
            assert answer["status"] == "ok" and answer["data"]["pid"] == g.procs[-1].pid
        finally:
            silent.close()
        assert cli(g, "stop").returncode == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect as another user")
def test_another_user_is_refused(tmp_path: Path) -> None:
    # A root other users can traverse (pytest's tmp root is 0700), so only the peer check stands.
    open_root = Path(tempfile.mkdtemp(prefix="gatewayd-peer-", dir="/tmp"))
    open_root.chmod(0o755)
    try:
        _refuse_another_user(open_root)
    finally:
        shutil.rmtree(open_root, ignore_errors=True)


def _refuse_another_user(root: Path) -> None:
    with gatewayd(root, fake_settings()) as g:
        g.state_dir.mkdir(mode=0o755)
        g.state_dir.chmod(0o755)
        g.start()
        g.wait_event("gateway_ready")
        path = socket_path(g.state_dir)
        os.chmod(path, 0o666)  # even if the file mode let it in, the peer check refuses it
        os.chmod(path.parent, 0o755)
        os.chmod(g.state_dir, 0o755)  # the daemon makes its state dir 0700 at start: open it again
        code = (
            "import os, socket, sys\n"
            "os.setgid(65534); os.setuid(65534)\n"
            "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
            "try:\n"
            "    s.sendall(b'{\"command\": \"stop\"}\\n')\n"
            "except OSError:\n"
            "    pass  # refused before the request was read: the answer is there all the same\n"
            "print(s.recv(4096).decode())\n")
        r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=10)
        assert r.stdout, r.stderr
        answer = json.loads(r.stdout)
        assert answer["status"] == "error" and answer["code"] == 6 and "may not control" in answer["error"]
        assert raw(path, b'{"command": "ping"}\n')["status"] == "ok"  # and it did not stop
        assert cli(g, "stop").returncode == 0


def test_stop_stays_stopped_and_start_brings_it_back(tmp_path: Path) -> None:
    with gatewayd(tmp_path, fake_settings()) as g:
        assert cli(g, "start").returncode == 0
        g.wait_event("gateway_ready")
        first_gateway = g.spawned_pids()[0]
        out = cli(g, "stop")
        assert out.returncode == 0 and "stopped" in out.stdout
        # gateway and daemon gone: `stop` answers once the gateway has exited; the processes' last
        # moments (reaped, interpreter shutdown) can trail it on a loaded machine
        wait_until(lambda: g.alive_marked() == [], 10, "gateway and daemon gone")
        down = cli(g, "status", "--json")
        assert down.returncode == 4 and json.loads(down.stdout)["supervision"]["state"] == "stopped"
        assert cli(g, "stop").returncode == 7  # not running: a clear error, not a hang
        assert cli(g, "start").returncode == 0
        g.wait_event("gateway_ready", count=2)
        assert g.spawned_pids()[-1] != first_gateway
        assert cli(g, "stop").returncode == 0
        assert g.alive_marked() == []


@pytest.mark.parametrize("mode", ["--now", "--safe"])
def test_restart_replaces_the_gateway_and_reports_the_pid_change(tmp_path: Path, mode: str) -> None:
    with gatewayd(tmp_path, fake_settings(FAKE_GW_DRAIN_SECONDS="1.5")) as g:
        g.start()
        g.wait_event("gateway_ready")
        old = g.spawned_pids()[0]
        out = cli(g, "restart", mode, "--json")
        assert out.returncode == 0, out.stderr
        outcome = json.loads(out.stdout)
        assert outcome["old_pid"] == old and outcome["new_pid"] == g.spawned_pids()[-1] != old
        ended = g.wait_event("gateway_exited")
        assert ended["exit_kind"] == "planned-restart" and ended["counts_as_crash"] is False
        assert ended["returncode"] == (0 if mode == "--safe" else -9)  # drained, or killed at once
        assert cli(g, "stop").returncode == 0


def test_a_second_restart_while_one_runs_is_refused(tmp_path: Path) -> None:
    with gatewayd(tmp_path, fake_settings(FAKE_GW_DRAIN_SECONDS="3")) as g:
        g.start()
        g.wait_event("gateway_ready")
        path = socket_path(g.state_dir)
        assert raw(path, b'{"command": "restart", "args": {"safe": true}}\n')["status"] == "ok"
        second = raw(path, b'{"command": "restart", "args": {"safe": true}}\n')
        assert second["status"] == "error" and second["code"] == 4
        g.wait_event("gateway_ready", count=2)
        assert cli(g, "stop").returncode == 0


def test_long_state_dir_with_spaces_still_gets_a_socket(tmp_path: Path) -> None:
    deep = tmp_path / ("Application Support " * 4).strip() / "gatewayd state"
    deep.parent.mkdir(parents=True)
    with gatewayd(deep.parent, fake_settings()) as g:
        g.state_dir = deep
        g.write_config({"": {"state_dir": str(deep)}, **{k: v for k, v in fake_settings().items()},
                        "gateway": {**fake_settings()["gateway"], "port": g.port}})
        assert len(os.fsencode(deep / "run" / "control.sock")) > 104
        g.start()
        g.wait_event("gateway_ready")
        assert raw(socket_path(deep), b'{"command": "ping"}\n')["status"] == "ok"
        assert cli(g, "status", "--json").returncode == 0
        assert cli(g, "stop").returncode == 0


def test_status_exit_codes_per_state(tmp_path: Path) -> None:
    """The documented table: 0 healthy, 1 degraded, 3 needs a human, 4 stopped, 5 daemon down."""
    (tmp_path / "healthy").mkdir()
    with gatewayd(tmp_path / "healthy", fake_settings()) as g:
        g.start()
        g.wait_event("gateway_ready")
        assert cli(g, "status").returncode == 0
        g.procs[-1].kill()  # gatewayd dies without a stop: its last state is not "stopped"
        g.procs[-1].wait()
        assert cli(g, "status").returncode == 5
        g.start()
        g.wait_event("gateway_adopted")
        assert cli(g, "stop").returncode == 0
        assert cli(g, "status").returncode == 4
    (tmp_path / "degraded").mkdir()
    with gatewayd(tmp_path / "degraded", fake_settings(FAKE_GW_NEVER_READY="1")) as g:
        g.start()
        g.wait_event("gateway_spawned")
        assert cli(g, "status").returncode == 1  # starting, never ready
        assert cli(g, "stop").returncode == 0
    (tmp_path / "conflict").mkdir()
    with gatewayd(tmp_path / "conflict", fake_settings()) as g:
        holder = socket.socket()
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", g.port))
        holder.listen()
        try:
            g.start()
            g.wait_event("port_conflict")
            assert cli(g, "status").returncode == 3
            assert cli(g, "stop").returncode == 0
        finally:
            holder.close()
