"""Every client loop has a deadline, and the server closes a connection whose reply it could not
deliver (issue 17)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from supervisor.cli import commands as cli_service
from supervisor.control import server as control_server
from supervisor.control.server import ControlServer

pytestmark = pytest.mark.timeout(60)


def test_a_restart_that_never_finishes_ends_with_a_message_not_a_wait_for_ever(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon accepted the restart, and its gateway never comes back ready: the CLI gives up
    after the drain budget, the boot limit and the slack, with exit 1 and one line."""
    status = {"gateway": {"pid": 4242, "boot": 7, "ready": True}, "inflight": {"sessions": [], "runs": []}}
    calls: list[str] = []

    def control(cfg: Any, command: str, args: Any = None, timeout_s: float = 10.0) -> Any:
        calls.append(command)
        return {"boot": 7, "restarting": True, "safe": True} if command == "restart" else status

    monkeypatch.setattr(cli_service, "control", control)
    monkeypatch.setattr(cli_service, "RESTART_SLACK_S", 0.0)
    config = tmp_path / "gatewayd.toml"
    config.write_text("[probes]\nboot_limit_s = 1\nboot_limit_max_s = 1\n")
    config.chmod(0o600)
    result = CliRunner().invoke(cli_service.app, ["restart", "--timeout", "0.5", "-c", str(config),
                                                  "--state-dir", str(tmp_path / "state")])
    assert result.exit_code == 1, result.output
    assert "did not finish within 1.5s" in result.output
    assert calls.count("status") >= 2  # it kept asking, then stopped


async def test_a_reply_the_client_never_reads_is_dropped_and_the_connection_closed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(control_server, "DRAIN_TIMEOUT_S", 0.2)
    handled = asyncio.Event()

    async def big(args: dict[str, Any]) -> Any:
        handled.set()
        return {"blob": "x" * (16 << 20)}  # far more than the socket buffers hold

    path = tmp_path / "c.sock"
    srv = ControlServer(path, {"big": big})
    await srv.start()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(str(path))
        sock.sendall(b'{"id": "1", "command": "big", "args": {}}\n')
        await asyncio.wait_for(handled.wait(), 10)
        # Not read while the server drains; then everything left comes, and the end: the server
        # aborted the connection instead of holding 16 MiB for a client that never reads.
        await asyncio.sleep(1.0)  # witness window: five drain timeouts with the client not reading
        sock.setblocking(False)
        got, closed = 0, False
        loop = asyncio.get_running_loop()
        for _ in range(2000):
            try:
                chunk = await asyncio.wait_for(loop.sock_recv(sock, 1 << 16), 5)
            except (ConnectionResetError, BrokenPipeError):
                closed = True
                break
            if not chunk:
                closed = True
                break
            got += len(chunk)
        assert closed and got < 16 << 20
    finally:
        sock.close()
        await srv.close()


@pytest.mark.parametrize("command", ["start", "stop"])
@pytest.mark.parametrize("value", ["nan", "inf", "-5", "0"])
def test_a_wait_that_never_ends_or_never_starts_is_refused(command: str, value: str, tmp_path: Path) -> None:
    """Found by review: `stop --wait nan` sent the stop and then gave up at once; `--wait inf`
    waited for ever. Refused like `restart --timeout`, before anything is done."""
    result = CliRunner().invoke(cli_service.app, [command, "--wait", value, "--state-dir", str(tmp_path / "s")])
    assert result.exit_code == 2, result.output
    assert "--wait" in result.output and not (tmp_path / "s").exists()


def test_a_config_path_in_another_users_home_is_that_home_not_a_folder_here(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by review: GATEWAYD_CONFIG='~root/x.toml' read ./~root/x.toml."""
    from supervisor import config

    monkeypatch.chdir(tmp_path)
    (tmp_path / "~root").mkdir()
    (tmp_path / "~root" / "x.toml").write_text("[logs]\nbackups = 3\n")
    with pytest.raises(config.ConfigError) as err:
        config.load(environ={"GATEWAYD_CONFIG": "~root/x-that-does-not-exist.toml"})
    assert str(tmp_path) not in str(err.value)
    with pytest.raises(config.ConfigError, match="no such user"):
        config.load(environ={"GATEWAYD_CONFIG": "~no-such-user-gwd/x.toml"})
