"""Tests of the fake gateway itself (gatewayd_dev/fake_gateway.py), run as a real subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from gatewayd_dev.harness import FAKE_GATEWAY

FAKE = FAKE_GATEWAY
TOKEN = "tok-" + uuid.uuid4().hex
SCOPES = ["operator.read", "operator.write", "operator.admin"]

pytestmark = pytest.mark.timeout(60)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_until(predicate: Callable[[], Awaitable[bool]], within: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + within
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.02)


@dataclass
class Gateway:
    proc: subprocess.Popen[bytes]
    port: int
    state_dir: Path
    out_path: Path
    err_path: Path
    env: dict[str, str]
    extra_pids: list[int] = field(default_factory=list)  # helper processes that escaped the group

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stdout(self) -> str:
        return self.out_path.read_text()

    def stderr(self) -> str:
        return self.err_path.read_text()

    async def http(self, method: str, path: str, within: float = 2.0) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=within) as client:
            return await client.request(method, path)

    async def wait_listening(self, within: float = 5.0) -> None:
        async def answers() -> bool:
            assert self.proc.poll() is None, f"fake exited early: {self.stderr()}"
            try:
                await self.http("GET", "/healthz", within=0.5)
            except httpx.TransportError:
                return False
            return True

        await wait_until(answers, within, "the fake to listen")

    async def wait_started(self, within: float = 5.0) -> None:
        async def started() -> bool:
            return (await self.http("GET", "/startupz")).status_code == 200

        await self.wait_listening()
        await wait_until(started, within, "/startupz 200")

    async def wait_exit(self, within: float = 5.0) -> int:
        return await asyncio.to_thread(self.proc.wait, within)

    async def wait_log(self, text: str, within: float = 5.0) -> None:
        async def logged() -> bool:
            return text in self.stdout() + self.stderr()

        await wait_until(logged, within, f"log line {text!r}")


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    """Starts fakes in their own process group; kills every one of them (and its helpers) afterwards."""
    started: list[Gateway] = []
    files: list[Any] = []

    def start(*args: str, token: str | None = TOKEN, **env: str) -> Gateway:
        port = free_port()
        state = tmp_path / f"state-{len(started)}"
        state.mkdir()
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("FAKE_GW_", "OPENCLAW_"))}
        full_env |= {"OPENCLAW_STATE_DIR": str(state), **env}
        if token is not None:
            full_env["OPENCLAW_GATEWAY_TOKEN"] = token
        out, err = state / "stdout.log", state / "stderr.log"
        out_f, err_f = out.open("wb"), err.open("wb")
        files.extend([out_f, err_f])
        argv = [sys.executable, str(FAKE), "gateway", "run", "--port", str(port), "--bind", "loopback", *args]
        proc = subprocess.Popen(argv, env=full_env, stdout=out_f, stderr=err_f, start_new_session=True)
        gw = Gateway(proc, port, state, out, err, full_env)
        started.append(gw)
        return gw

    try:
        yield start
    finally:
        for gw in started:
            for pid in gw.extra_pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(gw.proc.pid, signal.SIGKILL)  # the fake and helpers left in its group
            gw.proc.wait(5)
        for f in files:
            f.close()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, str(FAKE), *args], env=full_env, capture_output=True, text=True, timeout=10)


async def open_ws(
    gw: Gateway, *, token: str | None = TOKEN, protocol: tuple[int, int] = (4, 4)
) -> tuple[ClientConnection, dict[str, Any], dict[str, Any]]:
    """Connects and sends `connect`; returns (ws, challenge, connect response). Caller closes ws."""
    ws = await connect(f"ws://127.0.0.1:{gw.port}/")
    challenge = json.loads(await ws.recv())
    params = {
        "minProtocol": protocol[0],
        "maxProtocol": protocol[1],
        "client": {"id": "gateway-client", "version": "1.0.0", "platform": "linux", "mode": "backend"},
        "role": "operator",
        "scopes": SCOPES,
        "auth": {"token": token},
    }
    await ws.send(json.dumps({"type": "req", "id": "c1", "method": "connect", "params": params}))
    return ws, challenge, json.loads(await ws.recv())


async def rpc(ws: ClientConnection, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    req_id = uuid.uuid4().hex
    await ws.send(json.dumps({"type": "req", "id": req_id, "method": method, "params": params or {}}))
    while True:
        frame = json.loads(await ws.recv())
        if frame.get("type") == "res" and frame.get("id") == req_id:
            return frame  # type: ignore[no-any-return]


async def next_event(ws: ClientConnection, name: str, within: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            frame = json.loads(await ws.recv())
            if frame.get("type") == "event" and frame.get("event") == name:
                return frame  # type: ignore[no-any-return]


async def closed_code(ws: ClientConnection, within: float = 5.0) -> int | None:
    """Reads until the server closes the connection; returns the close code it sent."""
    async with asyncio.timeout(within):
        try:
            while True:
                await ws.recv()
        except ConnectionClosed:
            pass
    return ws.close_code


# ---------------------------------------------------------------------------------------------- CLI


async def test_version_prints_fake_version() -> None:
    result = await asyncio.to_thread(run_cli, "--version")
    assert (result.returncode, result.stdout) == (0, "OpenClaw 2026.9.6 (fake)\n")
    result = await asyncio.to_thread(run_cli, "--version", env={"FAKE_GW_VERSION": "2026.2.26"})
    assert result.stdout == "OpenClaw 2026.2.26 (fake)\n"


async def test_exit_at_boot_prints_config_error(start_gateway: Callable[..., Gateway]) -> None:
    gw = start_gateway(FAKE_GW_EXIT_AT_BOOT="78")
    assert await gw.wait_exit() == 78
    assert "Invalid config at" in gw.stderr() and "gateway.port: Expected number" in gw.stderr()


# ---------------------------------------------------------------------------------------------- 2026.9.x


async def test_modern_probes_before_and_after_boot(start_gateway: Callable[..., Gateway]) -> None:
    gw = start_gateway(FAKE_GW_BOOT_DELAY="2.0")
    await gw.wait_listening()  # the listener is up well before readiness (see the 503 below)

    health = await gw.http("GET", "/healthz")
    assert (health.status_code, health.json()) == (200, {"ok": True, "status": "live"})
    assert (await gw.http("GET", "/health")).json() == {"ok": True, "status": "live"}
    starting = await gw.http("GET", "/startupz")
    assert starting.status_code == 503
    assert starting.json()["status"] == "starting" and starting.json()["ok"] is False
    assert starting.json()["uptimeMs"] < 2000
    assert (await gw.http("GET", "/readyz")).status_code == 503

    await gw.wait_started()
    started = (await gw.http("GET", "/startup")).json()
    assert started["ok"] is True and started["status"] == "started" and started["version"] == "2026.9.6"
    assert isinstance(started["uptimeMs"], int)
    ready = await gw.http("GET", "/readyz")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True and ready.json()["failing"] == []
    head = await gw.http("HEAD", "/healthz")
    assert head.status_code == 200 and head.content == b""
    page = await gw.http("GET", "/some/ui/route")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "ready" in gw.stdout() and "listening on" in gw.stdout()


async def test_modern_ws_handshake_health_and_tick(start_gateway: Callable[..., Gateway]) -> None:
    gw = start_gateway(FAKE_GW_TICK_MS="100")
    await gw.wait_started()
    ws, challenge, res = await open_ws(gw)
    async with ws:
        assert challenge["event"] == "connect.challenge" and challenge["payload"]["nonce"]
        assert res["ok"] is True
        hello = res["payload"]
        assert hello["type"] == "hello-ok" and hello["protocol"] == 4
        assert hello["server"]["version"] == "2026.9.6"
        uuid.UUID(hello["server"]["bootId"])
        assert hello["auth"] == {"role": "operator", "scopes": SCOPES}
        assert hello["policy"]["tickIntervalMs"] == 100 and "health" in hello["features"]["methods"]

        health = await rpc(ws, "health")
        assert health["ok"] is True and health["payload"]["defaultAgentId"] == "main"
        assert health["payload"]["agents"][0]["agentId"] == "main"
        info = await rpc(ws, "system.info")
        assert info["payload"]["pid"] == gw.proc.pid and info["payload"]["port"] == gw.port
        uuid.UUID(info["payload"]["processInstanceId"])
        status = await rpc(ws, "status")
        assert status["payload"] == {"runtimeVersion": "2026.9.6", "pid": gw.proc.pid}
        unknown = await rpc(ws, "no.such.method")
        assert unknown["ok"] is False and unknown["error"]["code"] == "INVALID_REQUEST"

        tick = await next_event(ws, "tick")
        assert isinstance(tick["payload"]["ts"], int)


async def test_bad_token_and_protocol_mismatch_rejected(start_gateway: Callable[..., Gateway]) -> None:
    gw = start_gateway()
    await gw.wait_started()
    ws, _, res = await open_ws(gw, token="wrong")
    async with ws:
        assert res["ok"] is False and res["error"]["code"] == "UNAUTHORIZED"
        assert await closed_code(ws) == 1008
    ws, _, res = await open_ws(gw, protocol=(3, 3))
    async with ws:
        assert res["ok"] is False and res["error"]["code"] == "INVALID_REQUEST"
        assert await closed_code(ws) is not None
    assert gw.stdout().count(TOKEN) == 1, "the token is logged exactly once"


async def test_any_token_accepted_without_configured_token(start_gateway: Callable[..., Gateway]) -> None:
    gw = start_gateway(token=None)
    await gw.wait_started()
    ws, _, res = await open_ws(gw, token="whatever")
    async with ws:
        assert res["ok"] is True


async def test_connect_during_boot_is_unavailable(start_gateway: Callable[..., Gateway]) -> None:
    gw = start_gateway(FAKE_GW_BOOT_DELAY="30")
    await gw.wait_listening()
    ws, _, res = await open_ws(gw)
    async with ws:
        assert res["ok"] is False and res["error"]["code"] == "UNAVAILABLE"
        assert res["error"]["details"] == {"reason": "startup-sidecars"} and res["error"]["retryAfterMs"] > 0
        assert await closed_code(ws) == 1013


async def test_never_ready_stays_starting(start_gateway: Callable[..., Gateway]) -> None:
    gw = start_gateway(FAKE_GW_BOOT_DELAY="0", FAKE_GW_NEVER_READY="1")
    await gw.wait_listening()
    await gw.wait_log("never finish")
    assert (await gw.http("GET", "/startupz")).json()["status"] == "starting"


async def test_env_dump_and_pid_file(start_gateway: Callable[..., Gateway], tmp_path: Path) -> None:
    dump, pid_file = tmp_path / "env.json", tmp_path / "gw.pid"
    gw = start_gateway(FAKE_GW_ENV_DUMP=str(dump), FAKE_GW_PID_FILE=str(pid_file), MARKER="m1")
    await gw.wait_listening()
    assert json.loads(dump.read_text())["MARKER"] == "m1"
    assert int(pid_file.read_text()) == gw.proc.pid


# ---------------------------------------------------------------------------------------------- 2026.2.x


async def test_legacy_catch_all_html_and_protocol_3(start_gateway: Callable[..., Gateway]) -> None:
    gw = start_gateway(FAKE_GW_VERSION="2026.2.26")
    await gw.wait_listening()
    for path in ("/healthz", "/health", "/startupz", "/readyz", "/ready", "/"):
        resp = await gw.http("GET", path)
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html"), path
    ws, _, res = await open_ws(gw, protocol=(4, 4))
    async with ws:
        assert res["ok"] is False and res["error"]["code"] == "INVALID_REQUEST"
    ws, _, res = await open_ws(gw, protocol=(3, 3))
    async with ws:
        hello = res["payload"]
        assert res["ok"] is True and hello["protocol"] == 3
        assert hello["server"]["version"] == "dev" and "bootId" not in hello["server"]
        assert hello["auth"] is None and hello["policy"]["tickIntervalMs"] == 30000
        assert (await rpc(ws, "health"))["ok"] is True
        assert (await rpc(ws, "system.info"))["error"]["code"] == "INVALID_REQUEST"
    result = await asyncio.to_thread(
        run_cli, "gateway", "restart-handoff", "consume", "--expected-pid", "1", "--json", env=gw.env
    )
    assert result.returncode == 1, "2026.2.x has no restart-handoff command"


# ---------------------------------------------------------------------------------------------- controls


async def test_crash_exits_with_code(start_gateway: Callable[..., Gateway]) -> None:
    gw = start_gateway()
    await gw.wait_started()
    resp = await gw.http("POST", "/__fake/crash?code=3")
    assert (resp.status_code, resp.text) == (200, "ok\n")
    assert await gw.wait_exit() == 3


async def test_signal_control_and_post_with_body(start_gateway: Callable[..., Gateway]) -> None:
    gw = start_gateway()
    await gw.wait_started()
    async with httpx.AsyncClient(base_url=gw.base_url) as client:
        resp = await client.post("/__fake/signal?sig=9", json={"ignored": "body"})
    assert resp.status_code == 200
    assert await gw.wait_exit() == -signal.SIGKILL


@pytest.mark.parametrize(("spec", "expected"), [("0.1:5", 5), ("0.1:SIGKILL", -signal.SIGKILL)])
async def test_exit_after(start_gateway: Callable[..., Gateway], spec: str, expected: int) -> None:
    gw = start_gateway(FAKE_GW_EXIT_AFTER=spec, FAKE_GW_BOOT_DELAY="0")
    assert await gw.wait_exit() == expected


async def test_restart_handoff_is_accepted_once(start_gateway: Callable[..., Gateway]) -> None:
    gw = start_gateway()
    await gw.wait_started()
    ws, _, res = await open_ws(gw)
    async with ws:
        assert res["ok"] is True
        assert (await gw.http("POST", "/__fake/restart?expected_ms=1500")).status_code == 200
        shutdown = await next_event(ws, "shutdown")
        assert shutdown["payload"]["restartExpectedMs"] == 1500
        assert await closed_code(ws) == 1012
    assert await gw.wait_exit() == 0

    consume = ["gateway", "restart-handoff", "consume", "--json", "--expected-pid"]
    first = json.loads((await asyncio.to_thread(run_cli, *consume, str(gw.proc.pid), env=gw.env)).stdout)
    assert first["ok"] is True and first["status"] == "accepted"
    assert first["protocol"] == "openclaw.gateway.restart-handoff" and first["protocolVersion"] == 1
    again = json.loads((await asyncio.to_thread(run_cli, *consume, str(gw.proc.pid), env=gw.env)).stdout)
    assert (again["status"], again["reason"]) == ("none", "missing")

    (gw.state_dir / "fake-handoff.json").write_text(json.dumps({"pid": 1, "createdAtMs": time.time() * 1000}))
    other = json.loads((await asyncio.to_thread(run_cli, *consume, str(gw.proc.pid), env=gw.env)).stdout)
    assert (other["status"], other["reason"]) == ("rejected", "pid-mismatch")
    bad = await asyncio.to_thread(run_cli, *consume, "nope", env=gw.env)
    assert bad.returncode == 2 and json.loads(bad.stdout)["reason"] == "invalid-expected-pid"


async def test_sigterm_drains_then_exits_0(start_gateway: Callable[..., Gateway]) -> None:
    gw = start_gateway(FAKE_GW_DRAIN_SECONDS="10")
    await gw.wait_started()
    assert (await gw.http("POST", "/__fake/drain?seconds=2.5")).status_code == 200
    ws, _, res = await open_ws(gw)
    async with ws:
        assert res["ok"] is True
        gw.proc.send_signal(signal.SIGTERM)
        shutdown = await next_event(ws, "shutdown")
        assert "restartExpectedMs" not in shutdown["payload"]
        assert await closed_code(ws) == 1012
    startup = await gw.http("GET", "/startupz")
    assert (startup.status_code, startup.json()["status"]) == (503, "draining")
    ready = await gw.http("GET", "/readyz")
    assert ready.status_code == 503 and ready.json()["failing"] == ["gateway-draining"]
    assert await gw.wait_exit(within=10) == 0


async def test_sigint_stops_like_sigterm(start_gateway: Callable[..., Gateway]) -> None:
    gw = start_gateway()
    await gw.wait_started()
    gw.proc.send_signal(signal.SIGINT)
    assert await gw.wait_exit() == 0


async def test_ignore_term(start_gateway: Callable[..., Gateway]) -> None:
    gw = start_gateway(FAKE_GW_IGNORE_TERM="1")
    await gw.wait_started()
    gw.proc.send_signal(signal.SIGTERM)
    await gw.wait_log("SIGTERM ignored")
    assert (await gw.http("GET", "/startupz")).json()["status"] == "started"
    assert gw.proc.poll() is None


async def test_hang_stops_answering(start_gateway: Callable[..., Gateway]) -> None:
    gw = start_gateway()
    await gw.wait_started()
    assert (await gw.http("POST", "/__fake/hang")).text == "ok\n"
    await gw.wait_log("about to block")
    with pytest.raises(httpx.TimeoutException):
        await gw.http("GET", "/healthz", within=0.5)
    assert gw.proc.poll() is None


def parent_pid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def sigterm_ignored(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status").read_text()
    mask = int(next(line for line in status.splitlines() if line.startswith("SigIgn:")).split()[1], 16)
    return bool(mask & (1 << (signal.SIGTERM - 1)))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
async def test_grandchildren(start_gateway: Callable[..., Gateway]) -> None:
    gw = start_gateway()
    await gw.wait_started()
    same_group = int((await gw.http("POST", "/__fake/grandchild")).text.split()[1])
    escaped = int((await gw.http("POST", "/__fake/grandchild?session=1")).text.split()[1])
    gw.extra_pids += [same_group, escaped]
    assert os.getpgid(same_group) == gw.proc.pid and sigterm_ignored(same_group)
    assert os.getsid(escaped) == escaped and os.getpgid(escaped) == escaped and sigterm_ignored(escaped)
    for pid in (same_group, escaped):
        assert parent_pid(pid) == gw.proc.pid
