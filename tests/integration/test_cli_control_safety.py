"""Issue 17, control socket and CLI: drain budgets that never escalate are refused; a daemon that
does not answer (full accept backlog) is reported, not a traceback; the socket's folder for a long
state dir cannot be pre-empted by another user, and the client never talks to another user's socket."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatewayd_dev.harness import Gatewayd, fake_settings, gatewayd
from supervisor.control import client, paths
from supervisor.control.protocol import Code, ControlError
from tests.integration.test_control import cli, raw

pytestmark = pytest.mark.timeout(120)
NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as a second uid")


def test_nan_inf_and_out_of_range_drain_budgets_are_refused(tmp_path: Path) -> None:
    with gatewayd(tmp_path, fake_settings()) as g:
        g.start()
        g.wait_event("gateway_ready")
        path = paths.client_socket_path(g.state_dir)
        for value in ("NaN", "Infinity", "-Infinity", "1e9", "0", "true", "1e400"):
            answer = raw(path, b'{"command": "restart", "args": {"timeout_s": %s}}\n' % value.encode())
            assert answer["status"] == "error" and answer["code"] == 2 and "timeout_s" in str(answer["error"]), value
        for value in ("nan", "inf", "-inf", "-5", "0", "1e9"):
            out = cli(g, "restart", "--timeout", value)
            assert out.returncode == 2 and out.stdout == "", value
            lines = out.stderr.strip().splitlines()
            assert len(lines) == 1 and "--timeout" in lines[0], out.stderr
        status = raw(path, b'{"command": "status"}\n')["data"]
        assert isinstance(status, dict) and status["restart_pending"] is False  # none of them started a restart
        assert g.named("gateway_exited") == [] and len(g.spawned_pids()) == 1
        assert cli(g, "stop").returncode == 0


@contextlib.contextmanager
def stopped(pid: int) -> Iterator[None]:
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_daemon_with_a_full_backlog_is_reported_busy_not_a_traceback(tmp_path: Path) -> None:
    with gatewayd(tmp_path, fake_settings()) as g:
        g.start()
        g.wait_event("gateway_ready")
        path = paths.client_socket_path(g.state_dir)
        fillers: list[socket.socket] = []
        try:
            with stopped(g.procs[-1].pid):
                while True:  # fill the accept backlog of the stopped daemon
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    s.setblocking(False)
                    try:
                        s.connect(str(path))
                    except BlockingIOError:
                        s.close()
                        break
                    fillers.append(s)
                    assert len(fillers) < 10_000
                with pytest.raises(client.NotAnswering):
                    client.call(path, "ping", timeout_s=0.5)
                st = cli(g, "status")
                assert st.returncode == 1, st  # degraded: the daemon holds its lock but does not answer
                assert "busy / not answering" in st.stdout and "Traceback" not in st.stderr
                js = cli(g, "status", "--json")
                doc = json.loads(js.stdout)
                assert js.returncode == 1 and doc["daemon"]["answering"] is False
                stop = cli(g, "stop", timeout=30)
                assert stop.returncode == 1 and "busy / not answering" in stop.stderr
                assert "Traceback" not in stop.stderr and len(stop.stderr.strip().splitlines()) == 1
        finally:
            for s in fillers:
                s.close()
        assert cli(g, "status").returncode == 0  # it answers again
        assert cli(g, "stop").returncode == 0


def long_state_gatewayd(root: Path, env: dict[str, str] | None = None) -> contextlib.AbstractContextManager[Gatewayd]:
    deep = root / ("Application Support " * 4).strip() / "gatewayd state"
    deep.parent.mkdir(parents=True)

    @contextlib.contextmanager
    def ctx() -> Iterator[Gatewayd]:
        with gatewayd(deep.parent, fake_settings(), env=env) as g:
            g.state_dir = deep
            g.write_config_sections({"": {"state_dir": str(deep)}})
            assert not paths.fits(paths.natural_path(deep))
            yield g
    return ctx()


@needs_root
def test_a_pre_created_tmp_folder_of_another_user_does_not_stop_the_daemon(tmp_path: Path) -> None:
    squatted = Path("/tmp") / f"gatewayd-{os.getuid()}"  # the old, predictable fallback folder
    made = False
    if not squatted.exists():
        squatted.mkdir(mode=0o777)
        os.chown(squatted, NOBODY, NOBODY)
        made = True
    try:
        with long_state_gatewayd(tmp_path, env={"XDG_RUNTIME_DIR": ""}) as g:
            g.start()
            g.wait_event("gateway_ready")
            path = paths.client_socket_path(g.state_dir)
            assert path.parent != squatted and path.parent.name.startswith("gatewayd-")
            st = os.lstat(path.parent)
            assert st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) == 0o700
            rec = paths.record_path(g.state_dir)
            assert stat.S_IMODE(rec.stat().st_mode) == 0o600 and rec.read_text().strip() == str(path)
            assert cli(g, "status", "--json").returncode == 0
            assert cli(g, "stop").returncode == 0
            assert not path.parent.exists()  # its fresh folder goes with it
    finally:
        if made:
            squatted.rmdir()


def test_a_private_xdg_runtime_dir_is_preferred(tmp_path: Path) -> None:
    runtime = Path(tempfile.mkdtemp(prefix="xdg-", dir="/tmp"))
    try:
        with long_state_gatewayd(tmp_path, env={"XDG_RUNTIME_DIR": str(runtime)}) as g:
            g.start()
            g.wait_event("gateway_ready")
            path = paths.recorded_path(g.state_dir)
            assert path is not None and path.parent == runtime and path.exists()
            # a client without XDG_RUNTIME_DIR in its environment finds it through the record
            env_without = {k: v for k, v in g.env.items() if k != "XDG_RUNTIME_DIR"}
            out = subprocess.run([sys.executable, "-m", "supervisor", "status", "-c", str(g.config_file)],
                                 env=env_without, capture_output=True, text=True, timeout=30, check=False)
            assert out.returncode == 0, out
            assert cli(g, "stop").returncode == 0
            assert runtime.exists() and not path.exists()  # the runtime dir itself is never removed
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


@needs_root
@pytest.mark.parametrize("whose", ["file", "folder"])
def test_the_client_refuses_a_socket_another_user_owns(whose: str) -> None:
    folder = Path(tempfile.mkdtemp(prefix="gatewayd-planted-", dir="/tmp"))
    try:
        path = folder / "control.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        listener.listen()
        listener.setblocking(False)
        os.chown(path if whose == "file" else folder, NOBODY, NOBODY)
        with pytest.raises(ControlError) as refused:
            client.call(path, "stop", timeout_s=2)
        assert refused.value.code == Code.FORBIDDEN and "uid 65534" in str(refused.value)
        with pytest.raises(BlockingIOError):
            listener.accept()  # it never even connected
        listener.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@needs_root
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_PEERCRED")
def test_the_client_refuses_a_server_running_as_another_user() -> None:
    """The socket file and folder look like ours (chowned back), but the kernel says who serves it."""
    folder = Path(tempfile.mkdtemp(prefix="gatewayd-peer-", dir="/tmp"))
    os.chmod(folder, 0o777)
    path = folder / "control.sock"
    server = textwrap.dedent("""
        import os, socket, sys
        os.setgid(65534); os.setuid(65534)
        s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen()
        print("listening", flush=True)
        c, _ = s.accept(); c.settimeout(3)
        try:
            data = c.recv(4096)
        except OSError:
            data = b""
        print("got", len(data), flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", server, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "listening"
        os.chown(path, 0, 0)
        os.chmod(folder, 0o700)
        assert os.lstat(path).st_uid == os.lstat(folder).st_uid == os.getuid()
        with pytest.raises(ControlError) as refused:
            client.call(path, "stop", timeout_s=2)
        assert refused.value.code == Code.FORBIDDEN and "served by uid 65534" in str(refused.value)
        out, _ = proc.communicate(timeout=10)
        assert out.strip() == "got 0"  # the request was never sent to it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)
