"""Bad gateway answers at every call gatewayd makes: a typed, logged error, never a crash or a hang.

An in-test scripted WebSocket server plays the gateway; each test gives it a small script (send the
challenge or not, answer `connect` with hello-ok or garbage, answer methods with garbage, errors,
wrong types, huge payloads, a close mid-call, silence). The RPC client must raise the exact error
class of `supervisor.errors`; the snapshotter must log a typed error, keep its last good state and
keep running; the probes must answer a `ProbeOutcome`.

Regression tests for the bugs found here (infinite numbers, deep nesting, wrong-typed or oversized
timestamps, endless paging) were strict xfails until fixed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from supervisor.core.inflight import Delta, RunItem, SessionItem
from supervisor.core.model import ProbeOutcome
from supervisor.core.recovery_policy import RecoveryPolicy
from supervisor.errors import (
    GatewayAuthError,
    GatewayError,
    GatewayProtocolError,
    GatewayRpcError,
    GatewayTimeout,
    GatewayUnavailable,
    StoreError,
)
from supervisor.gateway.capabilities import Capabilities, for_version
from supervisor.gateway.launch import GatewayAuth, LaunchSpec, Secret
from supervisor.gateway.probes import HttpProbe, RpcHealthProbe
from supervisor.gateway.rpc import SCOPES, Event, RpcClient
from supervisor.recovery import Recovery
from supervisor.snapshotter import Snapshotter
from supervisor.store.boots import BootEnd, BootRecords
from supervisor.store.db import Store
from supervisor.store.journal import Journal
from supervisor.store.snapshots import InflightRecords

pytestmark = pytest.mark.timeout(10)

AUTH = GatewayAuth("token", Secret("test-token-0123456789abcdef"), "test", False)
CURRENT = "2026.9.6"
LEGACY = "2026.2.26"
CONNECT_S = 0.5  # handshake deadline in these tests
CALL_S = 0.3  # call deadline in these tests
MiB = 1 << 20

# -- the scripted gateway ----------------------------------------------------------------------


def ok(req: dict[str, Any], payload: Any) -> dict[str, Any]:
    return {"type": "res", "id": req["id"], "ok": True, "payload": payload}


def err(req: dict[str, Any], code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"type": "res", "id": req["id"], "ok": False, "error": {"code": code, "message": message, **extra}}


def event(name: Any, payload: Any = None, seq: Any = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "event", "event": name, "payload": payload if payload is not None else {}}
    if seq is not None:
        frame["seq"] = seq
    return frame


def hello_payload(proto: int, scopes: Any = SCOPES, **over: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "type": "hello-ok",
        "protocol": proto,
        "server": {"version": CURRENT if proto == 4 else "dev", "bootId": "boot-1", "connId": "conn-1"},
        "features": {"methods": ["health", "sessions.list", "cron.list"], "events": ["agent", "cron", "shutdown"]},
        "snapshot": {"uptimeMs": 1234},
        "policy": {"tickIntervalMs": 30000},
        "auth": {"role": "operator", "scopes": list(scopes)} if scopes is not None else None,
    }
    payload.update(over)
    return payload


class Peer:
    """The server side of one connection, as a script sees it."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.protocol = 4

    async def send(self, frame: Any) -> None:
        await self.ws.send(frame if isinstance(frame, str | bytes) else json.dumps(frame))

    async def recv(self) -> dict[str, Any]:
        frame = json.loads(await self.ws.recv())
        assert isinstance(frame, dict), frame
        return frame

    async def challenge(self) -> None:
        await self.send(event("connect.challenge", {"nonce": "n0", "ts": 1}))

    async def connect_req(self) -> dict[str, Any]:
        req = await self.recv()
        assert req["type"] == "req" and req["method"] == "connect" and req["id"] == "connect", req
        assert req["params"]["auth"] == {"token": str(AUTH.secret)}
        self.protocol = req["params"]["maxProtocol"]
        return req

    async def handshake(self, **hello: Any) -> None:
        await self.challenge()
        req = await self.connect_req()
        await self.send(ok(req, hello_payload(self.protocol, **hello)))

    async def req(self, method: str | None = None) -> dict[str, Any]:
        req = await self.recv()
        assert req["type"] == "req", req
        if method is not None:
            assert req["method"] == method, req
        return req

    async def hold(self) -> None:
        """Never answer: wait until the client (or the test's end) closes the connection."""
        await self.ws.wait_closed()

    def abort(self) -> None:
        """An abrupt TCP close: no close frame."""
        self.ws.transport.abort()


Script = Callable[[Peer], Awaitable[None]]


class ScriptedGateway:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.errors: list[BaseException] = []
        self.connections = 0
        self.client_gone = asyncio.Event()  # the last connection is closed on the server side too
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    async def _handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        self.client_gone.clear()
        try:
            await self.script(Peer(ws))
        except ConnectionClosed:
            pass
        except Exception as exc:  # a broken script must fail the test, not vanish in the server
            self.errors.append(exc)
        finally:
            with contextlib.suppress(Exception):
                await ws.wait_closed()
            self.client_gone.set()


@contextlib.asynccontextmanager
async def scripted(script: Script) -> AsyncIterator[ScriptedGateway]:
    gw = ScriptedGateway(script)
    async with serve(gw._handler, "127.0.0.1", 0, max_size=None, compression=None, ping_interval=None,
                     close_timeout=0.5) as server:
        gw.port = next(iter(server.sockets)).getsockname()[1]
        yield gw
    assert not gw.errors, gw.errors


@contextlib.asynccontextmanager
async def client(url: str, protocol: int = 4, on_event: Callable[[Event], None] | None = None,
                 rpc_class: type[RpcClient] = RpcClient) -> AsyncIterator[RpcClient]:
    rpc = rpc_class(url, AUTH, protocol, on_event=on_event, connect_timeout_s=CONNECT_S)
    try:
        yield rpc
    finally:
        await rpc.close()


def then_methods(answers: dict[str, list[Any]], *, poke: bool = False, **hello: Any) -> Script:
    """Handshake, then answer each method from its list in order: a payload (answered ok), or an
    action `async (peer, req) -> None`. A method whose list is used up gets the socket closed (1000).
    With `poke`, each answer is followed by a `cron` event (the snapshotter's "look again")."""
    queues = {m: list(a) for m, a in answers.items()}

    async def script(peer: Peer) -> None:
        await peer.handshake(**hello)
        while True:
            req = await peer.req()
            queue = queues.get(req["method"])
            if not queue:
                await peer.ws.close(1000, "script done")
                return
            answer = queue.pop(0)
            if callable(answer):
                await answer(peer, req)
            else:
                await peer.send(ok(req, answer))
            if poke:
                await peer.send(event("cron", {"action": "updated"}))
    return script


# actions a method answer can be


def raw(text: str | bytes) -> Callable[[Peer, dict[str, Any]], Awaitable[None]]:
    async def act(peer: Peer, req: dict[str, Any]) -> None:
        await peer.send(text)
    return act


def frame(build: Callable[[dict[str, Any]], Any]) -> Callable[[Peer, dict[str, Any]], Awaitable[None]]:
    async def act(peer: Peer, req: dict[str, Any]) -> None:
        await peer.send(build(req))
    return act


def closing(code: int, reason: str = "") -> Callable[[Peer, dict[str, Any]], Awaitable[None]]:
    async def act(peer: Peer, req: dict[str, Any]) -> None:
        await peer.ws.close(code, reason)
    return act


async def aborting(peer: Peer, req: dict[str, Any]) -> None:
    peer.abort()


async def unanswered(peer: Peer, req: dict[str, Any]) -> None:
    pass  # the script goes on to the next request; this one is never answered


# -- RpcClient.connect: the handshake ---------------------------------------------------------


async def connect_fails(script: Script, exc_type: type[GatewayError], protocol: int = 4) -> GatewayError:
    async with scripted(script) as gw, client(gw.url, protocol) as rpc:
        with pytest.raises(exc_type) as info:
            await rpc.connect()
        assert type(info.value) is exc_type, repr(info.value)
        assert rpc.hello is None and rpc.closed.is_set()
        async with asyncio.timeout(1):
            await gw.client_gone.wait()  # the failed handshake left no socket open
        return info.value


async def test_no_challenge_times_out() -> None:
    async def script(peer: Peer) -> None:
        await peer.hold()
    e = await connect_fails(script, GatewayTimeout)
    assert "timed out" in str(e)


async def test_connect_never_answered_times_out_even_with_events_flowing() -> None:
    async def script(peer: Peer) -> None:
        await peer.challenge()
        await peer.connect_req()
        for i in range(5):
            await peer.send(event("tick", {"ts": i}))
        await peer.hold()
    await connect_fails(script, GatewayTimeout)


@pytest.mark.parametrize("first", [
    "not json at all",
    "[1, 2, 3]",
    '"connect.challenge"',
    json.dumps({"type": "res", "id": "connect", "ok": True}),
    json.dumps(event("tick")),
    json.dumps({"type": "event", "event": 5}),
], ids=["non-json", "array", "string", "res-first", "other-event", "event-name-int"])
async def test_bad_first_frame_is_a_protocol_error(first: str) -> None:
    async def script(peer: Peer) -> None:
        await peer.send(first)
        await peer.hold()
    await connect_fails(script, GatewayProtocolError)


@pytest.mark.parametrize("answer", [
    "garbage{",
    "[]",
    "null",
], ids=["non-json", "array", "null"])
async def test_connect_answered_with_garbage_is_a_protocol_error(answer: str) -> None:
    async def script(peer: Peer) -> None:
        await peer.challenge()
        await peer.connect_req()
        await peer.send(answer)
        await peer.hold()
    await connect_fails(script, GatewayProtocolError)


@pytest.mark.parametrize("payload", [
    None,
    [],
    "hello-ok",
    {"type": "hello"},
    {k: v for k, v in hello_payload(4).items() if k != "protocol"},
    hello_payload(4, protocol="4"),
    hello_payload(4, protocol=3),
    hello_payload(4, protocol=True),
    hello_payload(4, server="gateway"),
    hello_payload(4, features={"methods": "health", "events": []}),
    hello_payload(4, features={"methods": [], "events": {"a": 1}}),
    hello_payload(4, auth={"role": "operator", "scopes": "operator.admin"}),
], ids=["null", "array", "string", "wrong-type", "no-protocol", "protocol-str", "protocol-mismatch",
        "protocol-bool", "server-str", "methods-str", "events-obj", "scopes-str"])
async def test_bad_hello_ok_is_a_protocol_error(payload: Any) -> None:
    async def script(peer: Peer) -> None:
        await peer.challenge()
        req = await peer.connect_req()
        await peer.send(ok(req, payload))
        await peer.hold()
    await connect_fails(script, GatewayProtocolError)


async def test_connect_res_without_ok_is_refused_typed() -> None:
    # `ok` missing is read as a refusal with no error object: an RPC error, typed, with a code.
    async def script(peer: Peer) -> None:
        await peer.challenge()
        req = await peer.connect_req()
        await peer.send({"type": "res", "id": req["id"], "payload": hello_payload(4)})
        await peer.hold()
    e = await connect_fails(script, GatewayRpcError)
    assert isinstance(e, GatewayRpcError) and e.code == "ERROR" and e.method == "connect"


@pytest.mark.parametrize(("code", "message", "close_code"), [
    ("UNAUTHORIZED", "unauthorized: gateway token mismatch", 1008),
    ("AUTH_FAILED", "bad password", 1008),
    ("FORBIDDEN", "no", 1008),
    ("INVALID_REQUEST", "device auth required", 1008),
])
async def test_auth_failure_then_close_1008_is_an_auth_error(code: str, message: str, close_code: int) -> None:
    async def script(peer: Peer) -> None:
        await peer.challenge()
        req = await peer.connect_req()
        await peer.send(err(req, code, message, details={"reason": "token_mismatch"}))
        await peer.ws.close(close_code, message[:100])
    e = await connect_fails(script, GatewayAuthError)
    assert code in str(e)
    assert str(AUTH.secret) not in str(e)


async def test_close_1008_without_an_answer_is_unavailable_with_the_code() -> None:
    async def script(peer: Peer) -> None:
        await peer.challenge()
        await peer.connect_req()
        await peer.ws.close(1008, "unauthorized")
    async with scripted(script) as gw, client(gw.url) as rpc:
        with pytest.raises(GatewayUnavailable) as info:
            await rpc.connect()
        assert type(info.value) is GatewayUnavailable and not info.value.refused
        assert rpc.close_code == 1008


@pytest.mark.parametrize("scopes", [
    ["operator.read", "operator.write"],
    ["operator.read"],
    [],
])
async def test_scopes_downgraded_in_hello_ok_is_an_auth_error(scopes: list[str]) -> None:
    e = await connect_fails(then_methods({}, scopes=scopes), GatewayAuthError)
    assert "operator.admin" in str(e)


async def test_hello_ok_without_auth_is_legacy_not_a_downgrade() -> None:
    async with scripted(then_methods({"health": [{"ok": True}]}, scopes=None)) as gw, client(gw.url) as rpc:
        hello = await rpc.connect()
        assert hello.scopes is None
        assert await rpc.call("health", {}, timeout_s=CALL_S) == {"ok": True}


async def test_connect_unavailable_is_unavailable() -> None:
    async def script(peer: Peer) -> None:
        await peer.challenge()
        req = await peer.connect_req()
        await peer.send(err(req, "UNAVAILABLE", "gateway starting", retryable=True, retryAfterMs=200))
        await peer.ws.close(1013, "gateway starting")
    await connect_fails(script, GatewayUnavailable)


async def test_connect_refused_with_another_code_is_an_rpc_error_with_the_code() -> None:
    async def script(peer: Peer) -> None:
        await peer.challenge()
        req = await peer.connect_req()
        await peer.send(err(req, "INVALID_REQUEST", "protocol mismatch", details={"expectedProtocol": 9}))
        await peer.ws.close(1002, "protocol mismatch")
    e = await connect_fails(script, GatewayRpcError)
    assert isinstance(e, GatewayRpcError) and e.code == "INVALID_REQUEST" and e.method == "connect"


@pytest.mark.parametrize("error", ["a string", ["a", "list"], 42])
async def test_connect_refused_with_a_non_object_error_is_typed(error: Any) -> None:
    async def script(peer: Peer) -> None:
        await peer.challenge()
        req = await peer.connect_req()
        await peer.send({"type": "res", "id": req["id"], "ok": False, "error": error})
        await peer.hold()
    e = await connect_fails(script, GatewayRpcError)
    assert isinstance(e, GatewayRpcError) and e.code == "ERROR"


@pytest.mark.parametrize("how", ["close-1011", "abort"])
@pytest.mark.parametrize("when", ["before-challenge", "after-challenge", "after-connect-req"])
async def test_socket_closed_mid_handshake_is_unavailable(how: str, when: str) -> None:
    async def script(peer: Peer) -> None:
        if when != "before-challenge":
            await peer.challenge()
        if when == "after-connect-req":
            await peer.connect_req()
        if how == "abort":
            peer.abort()
        else:
            await peer.ws.close(1011, "internal error")
    e = await connect_fails(script, GatewayUnavailable)
    assert isinstance(e, GatewayUnavailable) and not e.refused


async def test_socket_closed_mid_frame_in_handshake_is_unavailable() -> None:
    async def script(peer: Peer) -> None:
        await peer.challenge()
        await peer.connect_req()
        # A text frame announcing 256 bytes, 13 sent, then the TCP connection dropped.
        peer.ws.transport.write(b"\x81\x7e\x01\x00" + b'{"type":"res"')
        peer.abort()
    await connect_fails(script, GatewayUnavailable)


async def test_nothing_listening_is_unavailable_refused(free_port: int) -> None:
    async with client(f"ws://127.0.0.1:{free_port}/") as rpc:
        with pytest.raises(GatewayUnavailable) as info:
            await rpc.connect()
    assert type(info.value) is GatewayUnavailable and info.value.refused


async def test_not_a_websocket_server_is_a_protocol_error(http_server: HttpServer) -> None:
    http_server.reply = http(200, "<!doctype html><html>Control UI</html>", "text/html")
    async with client(f"ws://127.0.0.1:{http_server.port}/") as rpc:
        with pytest.raises(GatewayProtocolError):
            await rpc.connect()


async def test_accepting_socket_that_never_answers_the_upgrade_times_out(http_server: HttpServer) -> None:
    http_server.reply = None  # accept, read, never answer
    async with client(f"ws://127.0.0.1:{http_server.port}/") as rpc:
        with pytest.raises(GatewayTimeout):
            await rpc.connect()


@pytest.mark.parametrize(("field", "key"), [("snapshot", "uptimeMs"), ("policy", "tickIntervalMs")])
async def test_hello_ok_with_an_infinite_number_is_a_protocol_error(field: str, key: str) -> None:
    async def script(peer: Peer) -> None:
        await peer.challenge()
        req = await peer.connect_req()
        payload = json.dumps(hello_payload(4, **{field: {key: 1}})).replace(f'"{key}": 1', f'"{key}": 1e999')
        await peer.send(f'{{"type": "res", "id": "{req["id"]}", "ok": true, "payload": {payload}}}')
        await peer.hold()
    # Refusing the hello (GatewayProtocolError) or reading the number as absent are both fine; an
    # untyped exception is not.
    async with scripted(script) as gw, client(gw.url) as rpc:
        with contextlib.suppress(GatewayProtocolError):
            hello = await rpc.connect()
            assert hello.protocol == 4


async def test_deeply_nested_frame_in_handshake_is_a_protocol_error() -> None:
    async def script(peer: Peer) -> None:
        await peer.send("[" * 100_000 + "]" * 100_000)
        await peer.hold()
    await connect_fails(script, GatewayProtocolError)


# -- RpcClient.call ---------------------------------------------------------------------------


async def call_fails(answer: Any, exc_type: type[GatewayError], method: str = "health") -> GatewayError:
    async with scripted(then_methods({method: [answer]})) as gw, client(gw.url) as rpc:
        await rpc.connect()
        with pytest.raises(exc_type) as info:
            await rpc.call(method, {}, timeout_s=CALL_S)
        assert type(info.value) is exc_type, repr(info.value)
        return info.value


async def test_good_call_for_reference() -> None:
    async with scripted(then_methods({"health": [{"ok": True}]})) as gw, client(gw.url) as rpc:
        hello = await rpc.connect()
        assert hello.protocol == 4 and hello.scopes == SCOPES
        assert await rpc.call("health", {}, timeout_s=CALL_S) == {"ok": True}


@pytest.mark.parametrize("answer", ["not json", "[1, 2]", "null", "17", b"\xff\xfe binary garbage"],
                         ids=["non-json", "array", "null", "number", "binary"])
async def test_non_object_answer_is_dropped_and_the_call_times_out(answer: str | bytes) -> None:
    """A malformed frame is dropped (it names no request); the call it was for times out, typed,
    and the connection stays usable."""
    answers = {"health": [raw(answer), {"ok": True}]}
    async with scripted(then_methods(answers)) as gw, client(gw.url) as rpc:
        await rpc.connect()
        with pytest.raises(GatewayTimeout):
            await rpc.call("health", {}, timeout_s=CALL_S)
        assert not rpc.closed.is_set()
        assert await rpc.call("health", {}, timeout_s=CALL_S) == {"ok": True}


@pytest.mark.parametrize("build", [
    lambda req: {"type": "res", "id": req["id"], "payload": {"ok": True}},
    lambda req: {"type": "res", "id": req["id"], "ok": "true", "payload": {}},
    lambda req: {"type": "res", "id": req["id"], "ok": 1, "payload": {}},
    lambda req: {"type": "res", "id": req["id"], "ok": None},
], ids=["no-ok", "ok-str", "ok-int", "ok-null"])
async def test_res_without_a_boolean_ok_is_a_protocol_error(build: Callable[[dict[str, Any]], Any]) -> None:
    e = await call_fails(frame(build), GatewayProtocolError)
    assert "health" in str(e)


async def test_ok_false_with_an_error_object_is_an_rpc_error_with_code_and_retry() -> None:
    answer = frame(lambda req: err(req, "UNAVAILABLE", "try later", retryAfterMs=250, retryable=True))
    e = await call_fails(answer, GatewayRpcError)
    assert isinstance(e, GatewayRpcError)
    assert (e.method, e.code, e.retry_after_ms) == ("health", "UNAVAILABLE", 250)
    assert "try later" in str(e)


@pytest.mark.parametrize(("error", "code", "retry"), [
    (None, "ERROR", None),
    ({}, "ERROR", None),
    ("boom", "ERROR", None),
    ({"code": 503, "message": ["x"], "retryAfterMs": "soon"}, "503", None),
    ({"code": "RATE_LIMITED", "retryAfterMs": 1.5}, "RATE_LIMITED", 1),
], ids=["none", "empty", "string", "wrong-types", "float-retry"])
async def test_ok_false_with_odd_error_is_still_an_rpc_error(error: Any, code: str, retry: int | None) -> None:
    answer = frame(lambda req: {"type": "res", "id": req["id"], "ok": False, "error": error})
    e = await call_fails(answer, GatewayRpcError)
    assert isinstance(e, GatewayRpcError) and (e.code, e.retry_after_ms) == (code, retry)


async def test_ok_false_with_an_infinite_retry_after_is_an_rpc_error() -> None:
    answer = raw_res('"ok": false, "error": {"code": "UNAVAILABLE", "message": "x", "retryAfterMs": 1e999}')
    e = await call_fails(answer, GatewayRpcError)
    assert isinstance(e, GatewayRpcError) and e.code == "UNAVAILABLE"


def raw_res(body: str) -> Callable[[Peer, dict[str, Any]], Awaitable[None]]:
    async def act(peer: Peer, req: dict[str, Any]) -> None:
        await peer.send(f'{{"type": "res", "id": "{req["id"]}", {body}}}')
    return act


async def test_payload_of_any_type_is_returned_as_is() -> None:
    # call() does not judge payloads; the caller does (the snapshotter tests below).
    answers = {"health": [None, [1, 2], "x"]}
    async with scripted(then_methods(answers)) as gw, client(gw.url) as rpc:
        await rpc.connect()
        assert [await rpc.call("health", {}, timeout_s=CALL_S) for _ in range(3)] == [None, [1, 2], "x"]


async def test_answer_to_an_unknown_id_is_ignored() -> None:
    async def answer(peer: Peer, req: dict[str, Any]) -> None:
        await peer.send({"type": "res", "id": "r999", "ok": True, "payload": "wrong"})
        await peer.send({"type": "res", "id": None, "ok": True, "payload": "wrong"})
        await peer.send({"type": "res", "ok": True, "payload": "wrong"})
        await peer.send(ok(req, "right"))

    async with scripted(then_methods({"health": [answer]})) as gw, client(gw.url) as rpc:
        await rpc.connect()
        assert await rpc.call("health", {}, timeout_s=CALL_S) == "right"


async def test_only_an_answer_to_an_unknown_id_times_out() -> None:
    answer = frame(lambda req: {"type": "res", "id": req["id"] + "x", "ok": True, "payload": {}})
    await call_fails(answer, GatewayTimeout)


async def test_out_of_order_answers_reach_their_callers() -> None:
    async def script(peer: Peer) -> None:
        await peer.handshake()
        reqs = [await peer.req() for _ in range(3)]
        for req in reversed(reqs):
            await peer.send(ok(req, req["params"]["n"]))
        await peer.hold()

    async with scripted(script) as gw, client(gw.url) as rpc:
        await rpc.connect()
        got = await asyncio.gather(*(rpc.call("echo", {"n": n}, timeout_s=1) for n in range(3)))
        assert got == [0, 1, 2]


async def test_garbage_events_do_not_disturb_a_call() -> None:
    seen: list[Event] = []

    async def answer(peer: Peer, req: dict[str, Any]) -> None:
        for bad in (event(5), event(None), {"type": "event"}, event("agent", "x", seq="1"), {"type": 7},
                    {"type": "bogus", "id": req["id"]}, event("agent", [1], seq=3)):
            await peer.send(bad)
        await peer.send(ok(req, "after"))

    async with scripted(then_methods({"health": [answer]})) as gw, client(gw.url, on_event=seen.append) as rpc:
        await rpc.connect()
        assert await rpc.call("health", {}, timeout_s=CALL_S) == "after"
    assert [(e.name, e.payload, e.seq) for e in seen] == [("agent", "x", None), ("agent", [1], 3)]


async def test_never_answered_times_out() -> None:
    e = await call_fails(unanswered, GatewayTimeout)
    assert "health" in str(e)


@pytest.mark.parametrize("code", [1011, 1012, 1000, 1008])
async def test_close_mid_call_is_unavailable_with_the_code(code: int) -> None:
    async with scripted(then_methods({"health": [closing(code, "bye")]})) as gw, client(gw.url) as rpc:
        await rpc.connect()
        with pytest.raises(GatewayUnavailable) as info:
            await rpc.call("health", {}, timeout_s=2)
        assert type(info.value) is GatewayUnavailable
        assert rpc.close_code == code and rpc.closed.is_set()
        assert not rpc.dropped  # closed by the gateway, not lost with its process
        with pytest.raises(GatewayUnavailable):  # a call after the close fails at once, typed
            await rpc.call("health", {}, timeout_s=2)


async def test_abrupt_tcp_close_mid_call_is_unavailable_and_dropped() -> None:
    """No close frame either way: what a gateway killed under the connection leaves (the queue
    watcher then counts its events as heard to the end)."""
    async with scripted(then_methods({"health": [aborting]})) as gw, client(gw.url) as rpc:
        await rpc.connect()
        with pytest.raises(GatewayUnavailable):
            await rpc.call("health", {}, timeout_s=CALL_S)
        await rpc.closed.wait()
        assert rpc.dropped and rpc.close_code is None


async def test_socket_closed_mid_frame_is_unavailable() -> None:
    async def answer(peer: Peer, req: dict[str, Any]) -> None:
        peer.ws.transport.write(b"\x81\x7e\x01\x00" + f'{{"type":"res","id":"{req["id"]}"'.encode())
        peer.abort()
    await call_fails(answer, GatewayUnavailable)


async def test_close_wakes_every_pending_call() -> None:
    async def script(peer: Peer) -> None:
        await peer.handshake()
        for _ in range(3):
            await peer.req()
        await peer.ws.close(1011, "internal error")

    async with scripted(script) as gw, client(gw.url) as rpc:
        await rpc.connect()
        results = await asyncio.gather(*(rpc.call("health", {}, timeout_s=2) for _ in range(3)),
                                       return_exceptions=True)
        assert [type(r) for r in results] == [GatewayUnavailable] * 3


def rows(n: int, size: int) -> list[dict[str, Any]]:
    pad = "x" * size
    return [{"key": f"agent:main:hook:{i}", "hasActiveRun": False, "pad": pad} for i in range(n)]


async def test_huge_payload_parses() -> None:
    payload = {"sessions": rows(5000, 1000), "hasMore": False}  # about 5 MB
    async with scripted(then_methods({"sessions.list": [payload]})) as gw, client(gw.url) as rpc:
        await rpc.connect()
        got = await rpc.call("sessions.list", {}, timeout_s=2)
        assert len(got["sessions"]) == 5000


async def test_frame_over_the_size_limit_is_unavailable_not_a_hang() -> None:
    answer = raw('{"pad": "' + "x" * (33 * MiB) + '"}')
    async with scripted(then_methods({"health": [answer]})) as gw, client(gw.url) as rpc:
        await rpc.connect()
        with pytest.raises(GatewayUnavailable) as info:
            await rpc.call("health", {}, timeout_s=2)
        assert rpc.closed.is_set()
        cause = info.value.__cause__
        assert isinstance(cause, ConnectionClosed) and cause.sent is not None and cause.sent.code == 1009


async def test_deeply_nested_answer_is_dropped_like_any_malformed_frame() -> None:
    answers = {"health": [raw("[" * 100_000 + "]" * 100_000), {"ok": True}]}
    async with scripted(then_methods(answers)) as gw, client(gw.url) as rpc:
        await rpc.connect()
        with pytest.raises(GatewayTimeout):
            await rpc.call("health", {}, timeout_s=CALL_S)
        assert await rpc.call("health", {}, timeout_s=CALL_S) == {"ok": True}


# -- the snapshotter --------------------------------------------------------------------------


class ShortCalls(RpcClient):
    """The snapshotter calls with the default 10 s deadline; these tests cannot wait that long."""

    async def call(self, method: str, params: dict[str, Any] | None = None, timeout_s: float = 10.0) -> Any:
        return await super().call(method, params, timeout_s=min(timeout_s, CALL_S))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(tmp_path / "state" / "gatewayd.db")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def boot(store: Store) -> int:
    return await BootRecords(store).started(pid=4242, create_time=1.0, port=18789, version=CURRENT)


def session(key: str, active: Any = True, **extra: Any) -> dict[str, Any]:
    return {"key": key, "hasActiveRun": active, "activeRunIds": ["run-1"] if active is True else [],
            "sessionId": "sid-" + str(key), "updatedAt": 1_700_000_000_000, **extra}


def job(job_id: Any, running_at: Any = 1_700_000_000_000, **extra: Any) -> dict[str, Any]:
    return {"id": job_id, "name": f"job {job_id}", "agentId": "main", "enabled": True, "sessionTarget": "isolated",
            "schedule": {"kind": "cron", "expr": "0 * * * *"}, "payload": {"kind": "agentTurn", "message": "hi"},
            "state": {"runningAtMs": running_at}, **extra}


GOOD_SESSIONS = {"sessions": [session("agent:main:main"), session("agent:main:hook:idle", False)], "hasMore": False}
GOOD_JOBS = {"jobs": [job("j1"), job("j2", None)], "total": 2, "hasMore": False}


class Run:
    def __init__(self, snap: Snapshotter, logs: list[dict[str, Any]], store: Store) -> None:
        self.snap = snap
        self.logs = logs
        self.store = store

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [e for e in self.logs if e["log_level"] == "error"]

    async def rows(self) -> dict[str, list[tuple[Any, ...]]]:
        def read(c: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
            return {
                "sessions": c.execute("SELECT key, state FROM inflight_sessions ORDER BY key").fetchall(),
                "runs": c.execute("SELECT job_id, running_at_ms, state FROM inflight_runs ORDER BY job_id").fetchall(),
                "snapshots": c.execute("SELECT data FROM events WHERE kind = 'snapshot' ORDER BY id").fetchall(),
            }
        return await self.store.read(read)


async def run_snapshotter(script: Script, store: Store, boot: int, version: str = CURRENT) -> Run:
    """Connect, run the snapshotter until the script closes the connection; nothing may escape `run`."""
    caps: Capabilities = for_version(version)
    snap = Snapshotter(InflightRecords(store), boot, caps, interval_s=30)  # only pokes drive it here
    async with scripted(script) as gw, client(gw.url, caps.protocol, snap.on_event, ShortCalls) as rpc:
        hello = await rpc.connect()
        snap.caps = caps.with_methods(hello.methods)
        with capture_logs() as logs:
            async with asyncio.timeout(3):
                await snap.run(rpc)  # returns when the connection closes; raises nothing
        assert rpc.closed.is_set()
    return Run(snap, logs, store)


def snapshot_script(sessions: list[Any], jobs: list[Any], **kw: Any) -> Script:
    return then_methods({"sessions.list": sessions, "cron.list": jobs}, poke=True, **kw)


async def test_good_snapshot_for_reference(store: Store, boot: int) -> None:
    r = await run_snapshotter(snapshot_script([GOOD_SESSIONS], [GOOD_JOBS]), store, boot)
    assert r.errors == []
    assert sorted(r.snap.state.sessions) == ["agent:main:main"]
    assert sorted(r.snap.state.runs) == [("j1", 1_700_000_000_000)]
    assert r.snap.cycles == 1
    rows = await r.rows()
    assert rows["sessions"] == [("agent:main:main", "active")]
    assert rows["runs"] == [("j1", 1_700_000_000_000, "running")]
    assert len(rows["snapshots"]) == 1


async def assert_kept_last_good(r: Run, error_type: str, cycles: int = 2) -> None:
    """One typed error logged for the bad answer; the state and the store as the last good cycle left them;
    the loop went on (another good cycle after the bad one)."""
    errors = r.errors
    assert len(errors) == 1, r.logs
    assert errors[0]["event"] == "snapshot_bad_answer"
    assert errors[0]["error_type"] == error_type, errors[0]
    assert errors[0]["error"]
    assert r.snap.cycles == cycles
    assert sorted(r.snap.state.sessions) == ["agent:main:main"]
    assert sorted(r.snap.state.runs) == [("j1", 1_700_000_000_000)]
    rows = await r.rows()
    assert rows["sessions"] == [("agent:main:main", "active")]  # not recorded as ended by the bad answer
    assert rows["runs"] == [("j1", 1_700_000_000_000, "running")]
    assert len(rows["snapshots"]) == 1  # the bad cycle wrote nothing


BAD_SESSIONS: dict[str, Any] = {
    "non-json": raw("<html>502 Bad Gateway</html>"),
    "array": raw('[{"key": "agent:main:main"}]'),
    "no-ok": frame(lambda req: {"type": "res", "id": req["id"], "payload": GOOD_SESSIONS}),
    "ok-false": frame(lambda req: err(req, "INTERNAL", "sessions store unavailable")),
    "payload-null": None,
    "payload-list": [],
    "missing-sessions": {"count": 0, "hasMore": False},
    "sessions-object": {"sessions": {"agent:main:main": {}}},
    "row-not-object": {"sessions": ["agent:main:main"]},
    "hasActiveRun-str": {"sessions": [session("agent:main:main", "yes")]},
    "hasActiveRun-int": {"sessions": [session("agent:main:main", 1)]},
    "key-int": {"sessions": [session(5)]},
    "key-empty": {"sessions": [session("")]},
    "key-missing": {"sessions": [{"hasActiveRun": True}]},
    "never-answered": unanswered,
}
# A frame that is not a JSON object names no request: it is dropped and the call times out.
EXPECTED_SESSIONS_ERROR = {"non-json": "GatewayTimeout", "array": "GatewayTimeout", "never-answered": "GatewayTimeout",
                           "ok-false": "GatewayRpcError"}


@pytest.mark.parametrize("name", list(BAD_SESSIONS))
async def test_bad_sessions_answer_logs_typed_and_keeps_last_good(name: str, store: Store, boot: int) -> None:
    script = snapshot_script([GOOD_SESSIONS, BAD_SESSIONS[name], GOOD_SESSIONS], [GOOD_JOBS] * 3)
    r = await run_snapshotter(script, store, boot)
    await assert_kept_last_good(r, EXPECTED_SESSIONS_ERROR.get(name, "GatewayProtocolError"), cycles=2)


BAD_JOBS: dict[str, Any] = {
    "ok-false": frame(lambda req: err(req, "UNAVAILABLE", "cron service down", retryAfterMs=100)),
    "missing-jobs": {"total": 0, "hasMore": False},
    "jobs-null": {"jobs": None},
    "job-not-object": {"jobs": [["j1"]]},
    "state-str": {"jobs": [job("j1", state="running")]},
    "id-int": {"jobs": [job(5)]},
    "id-missing": {"jobs": [{"state": {"runningAtMs": 1}}]},
}


@pytest.mark.parametrize("name", list(BAD_JOBS))
async def test_bad_cron_answer_logs_typed_and_keeps_last_good(name: str, store: Store, boot: int) -> None:
    script = snapshot_script([GOOD_SESSIONS] * 3, [GOOD_JOBS, BAD_JOBS[name], GOOD_JOBS])
    r = await run_snapshotter(script, store, boot)
    await assert_kept_last_good(r, "GatewayRpcError" if name == "ok-false" else "GatewayProtocolError", cycles=2)


@pytest.mark.parametrize("running_at", ["x", True, [1]], ids=["str", "bool", "list"])
async def test_running_at_of_a_wrong_type_is_refused_not_read_as_finished(running_at: Any, store: Store,
                                                                          boot: int) -> None:
    bad = {"jobs": [job("j1", running_at)], "hasMore": False}
    script = snapshot_script([GOOD_SESSIONS] * 3, [GOOD_JOBS, bad, GOOD_JOBS])
    r = await run_snapshotter(script, store, boot)
    await assert_kept_last_good(r, "GatewayProtocolError", cycles=2)


async def test_infinite_running_at_is_a_typed_error(store: Store, boot: int) -> None:
    bad = raw_res('"ok": true, "payload": {"jobs": [{"id": "j1", "state": {"runningAtMs": 1e999}}]}')
    script = snapshot_script([GOOD_SESSIONS] * 3, [GOOD_JOBS, bad, GOOD_JOBS])
    r = await run_snapshotter(script, store, boot)
    await assert_kept_last_good(r, "GatewayProtocolError", cycles=2)


async def test_number_too_big_for_the_store_is_a_typed_error(store: Store, boot: int) -> None:
    script = snapshot_script([GOOD_SESSIONS] * 3, [GOOD_JOBS, {"jobs": [job("j1", 1e20)]}, GOOD_JOBS])
    r = await run_snapshotter(script, store, boot)
    assert len(r.errors) == 1, r.logs  # a typed error, bad answer or store refusal, logged once
    assert r.snap.cycles == 2
    assert sorted(r.snap.state.sessions) == ["agent:main:main"]
    assert sorted(r.snap.state.runs) == [("j1", 1_700_000_000_000)]
    rows = await r.rows()
    assert rows["sessions"] == [("agent:main:main", "active")]
    assert rows["runs"] == [("j1", 1_700_000_000_000, "running")]


async def test_an_unusable_last_activity_is_dropped_not_fatal(store: Store, boot: int) -> None:
    """lastActivityAt is informative only: a value out of range is dropped, the session still counts."""
    bad_sessions = {"sessions": [session("agent:main:main", lastActivityAt=1e20)]}
    r = await run_snapshotter(snapshot_script([bad_sessions], [GOOD_JOBS]), store, boot)
    assert r.errors == []
    assert r.snap.state.sessions["agent:main:main"].last_activity_ms == 1_700_000_000_000  # updatedAt instead


async def test_unknown_enum_values_are_recorded_verbatim_not_an_error(store: Store, boot: int) -> None:
    odd = job("j9", schedule={"kind": "stream", "every": 1}, payload={"kind": "script", "src": "x"},
              sessionTarget="elsewhere")
    jobs = {"jobs": [job("j1"), odd], "hasMore": False}
    sessions = {"sessions": [session("agent:main:main", status="levitating", kind="quantum")], "hasMore": False}
    r = await run_snapshotter(snapshot_script([sessions], [jobs]), store, boot)
    assert r.errors == []
    item = r.snap.state.runs[("j9", 1_700_000_000_000)]
    assert (item.schedule_kind, item.payload_kind, item.session_target) == ("stream", "script", "elsewhere")
    assert not item.delete_after_run
    rows = await r.rows()
    assert [row[0] for row in rows["runs"]] == ["j1", "j9"]


async def test_huge_snapshot_answer_parses_in_time(store: Store, boot: int) -> None:
    big = {"sessions": [session("agent:main:main"), *rows(5000, 1000)], "hasMore": False}
    r = await run_snapshotter(snapshot_script([big], [GOOD_JOBS]), store, boot)
    assert r.errors == []
    assert sorted(r.snap.state.sessions) == ["agent:main:main"]


@pytest.mark.parametrize("how", ["close-1011", "abort", "mid-frame"])
async def test_close_mid_snapshot_ends_run_quietly_keeping_state(how: str, store: Store, boot: int) -> None:
    async def mid_frame(peer: Peer, req: dict[str, Any]) -> None:
        peer.ws.transport.write(b"\x81\x7e\x01\x00" + b'{"type":"res"')
        peer.abort()
    cut = {"close-1011": closing(1011, "internal error"), "abort": aborting, "mid-frame": mid_frame}[how]
    r = await run_snapshotter(snapshot_script([GOOD_SESSIONS, GOOD_SESSIONS], [GOOD_JOBS, cut]), store, boot)
    assert r.errors == []  # a closed connection is the monitor's business (it reconnects), not an error
    assert r.snap.cycles == 1
    assert sorted(r.snap.state.sessions) == ["agent:main:main"]
    rows = await r.rows()
    assert rows["sessions"] == [("agent:main:main", "active")]


async def test_paging_that_does_not_advance_is_taken_as_the_last_page(store: Store, boot: int) -> None:
    # hasMore with a nextOffset that does not move forward: taken as the last page, not a loop.
    pages = [{"sessions": [session("agent:main:main")], "hasMore": True, "nextOffset": 0},
             {"sessions": [], "hasMore": True, "nextOffset": "500"}]
    r = await run_snapshotter(snapshot_script(pages, [GOOD_JOBS, GOOD_JOBS]), store, boot)
    assert r.errors == []
    assert r.snap.cycles == 2


async def test_endless_paging_is_a_typed_error_not_a_hang(store: Store, boot: int) -> None:
    async def endless(peer: Peer) -> None:
        await peer.handshake()
        while True:
            req = await peer.req()
            if req["method"] == "cron.list":  # read apart: the runs are still recorded
                await peer.send(ok(req, {"jobs": [], "hasMore": False}))
                continue
            assert req["method"] == "sessions.list", req
            await peer.send(ok(req, {"sessions": [], "hasMore": True, "nextOffset": req["params"]["offset"] + 500}))

    caps = for_version(CURRENT)
    snap = Snapshotter(InflightRecords(store), boot, caps, interval_s=30)
    async with scripted(endless) as gw, client(gw.url, caps.protocol, snap.on_event, ShortCalls) as rpc:
        await rpc.connect()
        async with asyncio.timeout(1):
            with pytest.raises(GatewayProtocolError):
                await snap.take(rpc)


async def test_legacy_bad_answers_and_garbage_agent_events(store: Store, boot: int) -> None:
    """2026.2.x: no paging; activity from `agent` events, which may be garbage too."""
    async def sessions_then_garbage_events(peer: Peer, req: dict[str, Any]) -> None:
        await peer.send(ok(req, {"sessions": [{"key": "agent:main:main", "updatedAt": 1}]}))
        for payload in ("x", [1], None, {"stream": "lifecycle"}, {"stream": "lifecycle", "data": "start"},
                        {"stream": "lifecycle", "data": {"phase": "start"}, "runId": 5, "sessionKey": "k"}):
            await peer.send(event("agent", payload))
        # a real turn start: pokes the next cycle
        await peer.send(event("agent", {"stream": "lifecycle", "data": {"phase": "start"}, "runId": "run-1",
                                        "sessionKey": "agent:main:main"}))

    main = {"sessions": [{"key": "agent:main:main"}]}
    answers = {
        "sessions.list": [sessions_then_garbage_events, {"count": 0}, main, main],
        "cron.list": [{"jobs": [job("j1")]}, {"jobs": [job("j1")]},
                      frame(lambda req: err(req, "INVALID_REQUEST", "bad")), {"jobs": [job("j1")]}],
    }
    r = await run_snapshotter(then_methods(answers, poke=True, scopes=None), store, boot, version=LEGACY)
    assert [e["error_type"] for e in r.errors] == ["GatewayProtocolError", "GatewayRpcError"]
    assert r.snap.cycles == 2
    assert sorted(r.snap.state.sessions) == ["agent:main:cron:j1", "agent:main:main"]
    assert r.snap.state.sessions["agent:main:main"].run_ids == ("run-1",)
    rows = await r.rows()
    assert rows["sessions"] == [("agent:main:cron:j1", "active"), ("agent:main:main", "active")]


async def test_snapshotter_on_event_takes_any_payload() -> None:
    for version in (CURRENT, LEGACY):
        snap = Snapshotter(None, 1, for_version(version), 30)  # type: ignore[arg-type]
        for payload in (None, "x", [1], {"stream": 5}, {"stream": "lifecycle", "data": None}, 1e308):
            snap.on_event(Event("agent", payload, None, 0.0))
            snap.on_event(Event("cron", payload, "x", 0.0))  # type: ignore[arg-type]
        assert snap.poke.is_set()


# -- probes -----------------------------------------------------------------------------------


class HttpServer:
    """A tiny raw HTTP server: `reply` is the bytes sent after the request head (None: never answer)."""

    def __init__(self) -> None:
        self.reply: bytes | None = b""
        self.port = 0
        self.requests: list[bytes] = []
        self._writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.requests.append(head)
            if self.reply is None:
                await reader.read()  # until the client gives up
                return
            writer.write(self.reply)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def http(status: int, body: str | bytes, ctype: str = "application/json", reason: str = "X") -> bytes:
    data = body.encode() if isinstance(body, str) else body
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: {ctype}\r\ncontent-length: {len(data)}\r\n"
            f"connection: close\r\n\r\n").encode() + data


@pytest.fixture
async def http_server() -> AsyncIterator[HttpServer]:
    hs = HttpServer()
    server = await asyncio.start_server(hs.handle, "127.0.0.1", 0)
    hs.port = server.sockets[0].getsockname()[1]
    try:
        yield hs
    finally:
        server.close()
        for w in hs._writers:
            w.close()
        await server.wait_closed()


@pytest.fixture
def free_port() -> Iterator[int]:
    """A port bound (so nobody else takes it) but not listening: connecting is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


async def probe_once(port: int, booting: bool, timeout_s: float = 0.5) -> ProbeOutcome:
    probe = HttpProbe(f"http://127.0.0.1:{port}", timeout_s)
    try:
        return await probe.check(booting)
    finally:
        await probe.close()


@pytest.mark.parametrize("booting", [True, False], ids=["startupz", "healthz"])
@pytest.mark.parametrize("reply", [
    http(200, "garbage{", "text/plain"),
    http(200, "<!doctype html><html><body>OpenClaw Control</body></html>", "text/html"),
    http(500, "<html>Internal Server Error</html>", "text/html"),
    http(500, '{"ok": false, "status": "started"}'),
    http(503, '{"ok": true, "status": "started"}'),
    http(200, "[1, 2, 3]"),
    http(200, "null"),
    http(200, '{"ok": "true", "status": "running"}'),
    http(200, ""),
    http(200, b"\xff\xfe\x00garbage"),
    http(302, "", "text/plain"),
    http(200, "x" * (5 * MiB), "text/plain"),
], ids=["garbage", "html", "500-html", "500-json", "503-json", "array", "null", "wrong-types", "empty",
        "binary", "redirect", "huge"])
async def test_http_probe_bad_answers_are_bad(http_server: HttpServer, reply: bytes, booting: bool) -> None:
    http_server.reply = reply
    assert await probe_once(http_server.port, booting) is ProbeOutcome.BAD


async def test_http_probe_good_answers_for_reference(http_server: HttpServer) -> None:
    http_server.reply = http(200, '{"ok": true, "status": "started"}')
    assert await probe_once(http_server.port, booting=True) is ProbeOutcome.OK
    assert await probe_once(http_server.port, booting=False) is ProbeOutcome.OK
    http_server.reply = http(503, '{"ok": false, "status": "starting"}')
    assert await probe_once(http_server.port, booting=True) is ProbeOutcome.STARTING
    assert [h.split(b" ")[1] for h in http_server.requests] == [b"/startupz", b"/healthz", b"/startupz"]


async def test_http_probe_nothing_listening_is_refused(free_port: int) -> None:
    assert await probe_once(free_port, booting=False) is ProbeOutcome.REFUSED


async def test_http_probe_accepting_socket_that_never_answers_is_a_timeout(http_server: HttpServer) -> None:
    http_server.reply = None
    async with asyncio.timeout(2):
        assert await probe_once(http_server.port, booting=False, timeout_s=0.3) is ProbeOutcome.TIMEOUT


@pytest.mark.parametrize("reply", [b"", b"not http at all\r\n\r\n", b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"],
                         ids=["closed-without-answer", "not-http", "truncated-body"])
async def test_http_probe_broken_connection_is_a_timeout(http_server: HttpServer, reply: bytes) -> None:
    # Accepted, then no usable HTTP answer: the probe state machine treats this like silence (TIMEOUT
    # and BAD weigh the same once running).
    http_server.reply = reply
    assert await probe_once(http_server.port, booting=False) is ProbeOutcome.TIMEOUT


def spec_for(port: int, version: str = LEGACY) -> LaunchSpec:
    return LaunchSpec(argv=("openclaw", "gateway"), env={}, port=port, host="127.0.0.1", tls=False, auth=AUTH,
                      capabilities=for_version(version), config_path=Path("/nonexistent/openclaw.json"),
                      state_dir=Path("/nonexistent"))


async def rpc_probe(port: int, booting: bool = False) -> ProbeOutcome:
    probe = RpcHealthProbe(spec_for(port), timeout_s=CALL_S)
    try:
        async with asyncio.timeout(2):
            return await probe.check(booting)
    finally:
        await probe.close()


@pytest.mark.parametrize(("answer", "booting", "outcome"), [
    ({"ok": True}, False, ProbeOutcome.OK),
    (unanswered, False, ProbeOutcome.TIMEOUT),
    (raw("garbage"), False, ProbeOutcome.TIMEOUT),
    (frame(lambda req: {"type": "res", "id": req["id"]}), False, ProbeOutcome.BAD),
    (frame(lambda req: err(req, "INTERNAL", "boom")), False, ProbeOutcome.BAD),
    (closing(1011), False, ProbeOutcome.TIMEOUT),
    (closing(1011), True, ProbeOutcome.STARTING),
    (aborting, False, ProbeOutcome.TIMEOUT),
], ids=["ok", "unanswered", "garbage", "no-ok", "rpc-error", "closed", "closed-booting", "abort"])
async def test_rpc_health_probe_bad_answers(answer: Any, booting: bool, outcome: ProbeOutcome) -> None:
    async with scripted(then_methods({"health": [answer]}, scopes=None)) as gw:
        assert await rpc_probe(gw.port, booting) is outcome


async def test_rpc_health_probe_auth_failure_is_bad() -> None:
    async def script(peer: Peer) -> None:
        await peer.challenge()
        req = await peer.connect_req()
        await peer.send(err(req, "UNAUTHORIZED", "unauthorized: gateway token mismatch"))
        await peer.ws.close(1008, "unauthorized")
    async with scripted(script) as gw:
        assert await rpc_probe(gw.port) is ProbeOutcome.BAD


async def test_rpc_health_probe_nothing_listening_is_refused(free_port: int) -> None:
    assert await rpc_probe(free_port) is ProbeOutcome.REFUSED


async def test_rpc_health_probe_hello_with_an_infinite_number_is_bad() -> None:
    async def script(peer: Peer) -> None:
        await peer.challenge()
        req = await peer.connect_req()
        text = json.dumps(hello_payload(peer.protocol, scopes=None)).replace('"uptimeMs": 1234', '"uptimeMs": 1e999')
        await peer.send(f'{{"type": "res", "id": "{req["id"]}", "ok": true, "payload": {text}}}')
        await peer.send(ok(await peer.req("health"), {"ok": True}))
        await peer.hold()
    async with scripted(script) as gw:
        assert await rpc_probe(gw.port) in (ProbeOutcome.BAD, ProbeOutcome.OK)  # refused, or read as absent


async def test_regression_a_sessions_list_timeout_does_not_cost_the_runs(store: Store, boot: int) -> None:
    """Found by the chaos benchmark on the real 2026.9.6: busy starting a burst of runs, it did not
    answer sessions.list within the deadline, the whole poll failed, and runs that started then and
    died with the gateway were never recorded. Sessions and runs are read apart now."""
    async def slow_sessions(peer: Peer) -> None:
        await peer.handshake()
        await peer.req("sessions.list")  # never answered
        req = await peer.req("cron.list")
        await peer.send(ok(req, {"jobs": [job("j1")], "hasMore": False}))
        await peer.hold()

    caps = for_version(CURRENT)
    records = InflightRecords(store)
    snap = Snapshotter(records, boot, caps, interval_s=30)
    async with scripted(slow_sessions) as gw, client(gw.url, caps.protocol, snap.on_event, ShortCalls) as rpc:
        await rpc.connect()
        with pytest.raises(GatewayTimeout):
            await snap.take(rpc)
    assert list((await records.of_boot(boot)).runs) == [("j1", 1_700_000_000_000)]


RUN_AT = 1_700_000_000_500


def started_event(version: str = CURRENT) -> dict[str, Any]:
    """A `cron` "started" event as each version sends it: 2026.9.x with the job, 2026.2.x without."""
    payload: dict[str, Any] = {"jobId": "j1", "action": "started", "runAtMs": RUN_AT}
    if version == CURRENT:
        payload["job"] = job("j1", RUN_AT)
    return event("cron", payload)


async def test_regression_a_run_killed_before_any_poll_is_recorded_from_its_started_event(
        store: Store, boot: int) -> None:
    """Found by the chaos benchmark on the real 2026.9.6: a `cron.run`-fired run reached the model
    and was killed before the next 2 s poll, so no record of it existed and nothing re-ran it. The
    gateway announces each run with a `cron` "started" event; the run is recorded from it, even
    when the connection closes right after (the gateway died)."""
    async def script(peer: Peer) -> None:
        await peer.handshake()
        await peer.send(ok(await peer.req("sessions.list"), {"sessions": [], "hasMore": False}))
        await peer.send(ok(await peer.req("cron.list"), {"jobs": [job("j1", None)], "hasMore": False}))
        await peer.send(started_event())
        peer.abort()  # killed: no poll ever sees the run

    r = await run_snapshotter(script, store, boot)
    assert (await r.rows())["runs"] == [("j1", RUN_AT, "running")]
    [changed] = [e for e in r.logs if e["event"] == "inflight_changed"]
    assert changed["runs_started"] == [["j1", RUN_AT]]
    stored = (await InflightRecords(store).of_boot(boot)).runs[("j1", RUN_AT)]
    assert stored == r.snap.state.runs[("j1", RUN_AT)]
    assert (stored.agent_id, stored.session_target, stored.payload_kind) == ("main", "isolated", "agentTurn")


async def test_a_poll_answer_older_than_a_started_event_does_not_end_the_run(store: Store, boot: int) -> None:
    """The event can overtake a `cron.list` answer the gateway built before the run started: that
    answer does not show the run, which must not be taken as ended. The next poll decides."""
    async def script(peer: Peer) -> None:
        await peer.handshake()
        await peer.send(ok(await peer.req("sessions.list"), {"sessions": [], "hasMore": False}))
        req = await peer.req("cron.list")
        await peer.send(started_event(CURRENT))
        await peer.send(ok(req, {"jobs": [job("j1", None)], "hasMore": False}))  # built before the start
        await peer.send(ok(await peer.req("sessions.list"), {"sessions": [], "hasMore": False}))
        await peer.send(ok(await peer.req("cron.list"), {"jobs": [job("j1", None)], "hasMore": False}))
        await peer.hold()

    caps = for_version(CURRENT)
    snap = Snapshotter(InflightRecords(store), boot, caps, interval_s=30)
    async with scripted(script) as gw, client(gw.url, caps.protocol, snap.on_event, ShortCalls) as rpc:
        await rpc.connect()
        await snap.take(rpc)
        assert list(snap.state.runs) == [("j1", RUN_AT)]  # carried, not ended
        assert list((await InflightRecords(store).of_boot(boot)).runs) == [("j1", RUN_AT)]
        await snap.take(rpc)  # asked after the event: its answer is the truth
        assert snap.state.runs == {} and snap.heard == {}


@pytest.mark.parametrize("payload", [
    {"jobId": "j1", "action": "started", "runAtMs": "soon", "job": job("j1", None)},
    {"jobId": "j1", "action": "started", "runAtMs": RUN_AT, "job": "x"},
    {"action": "started", "job": job("j1", RUN_AT)},
    {"jobId": "j1", "action": "started", "runAtMs": RUN_AT, "job": job("j1", {"at": 5})},
    {"jobId": "unknown", "action": "started", "runAtMs": RUN_AT},  # no job: 2.x's form, left to the poll
])
async def test_bad_or_unknown_started_events_record_nothing_and_polls_go_on(
        store: Store, boot: int, payload: Any) -> None:
    async def script(peer: Peer) -> None:
        await peer.handshake()
        await peer.send(event("cron", payload))
        await peer.send(ok(await peer.req("sessions.list"), {"sessions": [], "hasMore": False}))
        await peer.send(ok(await peer.req("cron.list"), GOOD_JOBS))
        await peer.ws.close(1000, "script done")

    r = await run_snapshotter(script, store, boot)
    assert (await r.rows())["runs"] == [("j1", 1_700_000_000_000, "running")]  # the poll's run only
    assert r.errors == []


async def test_a_legacy_started_event_records_nothing_the_polls_do(store: Store, boot: int) -> None:
    """2026.2.x's event time is not the run's key (its timer marks due jobs running at one instant
    and announces each as it starts, later): recording it would add a run that never was."""
    async def script(peer: Peer) -> None:
        await peer.handshake(protocol=3)
        await peer.send(ok(await peer.req("sessions.list"), {"sessions": []}))
        await peer.send(ok(await peer.req("cron.list"), {"jobs": [job("j1", None)], "hasMore": False}))
        await peer.send(started_event(LEGACY))
        await peer.send(ok(await peer.req("sessions.list"), {"sessions": []}))  # the poll it triggers
        await peer.send(ok(await peer.req("cron.list"), {"jobs": [job("j1", RUN_AT - 5)], "hasMore": False}))
        await peer.ws.close(1000, "script done")

    r = await run_snapshotter(script, store, boot, LEGACY)
    assert (await r.rows())["runs"] == [("j1", RUN_AT - 5, "running")]  # the poll's run only


async def test_a_started_event_is_recorded_while_the_polls_go_unanswered(store: Store, boot: int) -> None:
    """A gateway busy starting runs may not answer the polls in time: the run announced by the
    event is written without waiting for them."""
    async def script(peer: Peer) -> None:
        await peer.handshake()
        await peer.send(started_event(CURRENT))
        await peer.hold()  # sessions.list and cron.list are never answered

    caps = for_version(CURRENT)
    recorded = asyncio.Event()
    snap = Snapshotter(InflightRecords(store), boot, caps, interval_s=30,
                       on_delta=lambda d: recorded.set() if d.runs_started else None)
    async with scripted(script) as gw, client(gw.url, caps.protocol, snap.on_event, ShortCalls) as rpc:
        await rpc.connect()
        with capture_logs() as logs:
            task = asyncio.ensure_future(snap.run(rpc))
            await asyncio.wait_for(recorded.wait(), 5)
            assert list((await InflightRecords(store).of_boot(boot)).runs) == [("j1", RUN_AT)]
            await rpc.close()
            await asyncio.wait_for(task, 5)
    [changed] = [e for e in logs if e["event"] == "inflight_changed"]
    assert changed["source"] == "cron event"


class FailingWrites(InflightRecords):
    """Store writes fail (a full disk) until `failing` is cleared; `failed` is set at the second failure."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.failing = True
        self.failures = 0
        self.failed = asyncio.Event()

    async def apply(self, boot: int, delta: Any) -> None:
        if self.failing:
            self.failures += 1
            if self.failures >= 2:
                self.failed.set()
            raise StoreError("disk I/O error (test)")
        await super().apply(boot, delta)


async def test_a_heard_run_whose_writes_failed_is_written_as_the_connection_closes(store: Store, boot: int) -> None:
    """Found by a review: the poll that confirmed a heard run took it out of `heard` before its own
    write had succeeded, so when that write failed too the last write as the connection closed had
    nothing left to write: no record, no obligation, the run lost if the gateway died then."""
    records = FailingWrites(store)

    async def script(peer: Peer) -> None:
        await peer.handshake()
        await peer.send(started_event())
        await peer.send(ok(await peer.req("sessions.list"), {"sessions": [], "hasMore": False}))
        await peer.send(ok(await peer.req("cron.list"), {"jobs": [job("j1", RUN_AT)], "hasMore": False}))
        await records.failed.wait()  # the recorder's write and the poll's have both failed
        records.failing = False
        peer.abort()  # the gateway dies

    caps = for_version(CURRENT)
    snap = Snapshotter(records, boot, caps, interval_s=30)
    async with scripted(script) as gw, client(gw.url, caps.protocol, snap.on_event, ShortCalls) as rpc:
        await rpc.connect()
        async with asyncio.timeout(5):
            await snap.run(rpc)
    assert records.failures == 2
    assert list((await InflightRecords(store).of_boot(boot)).runs) == [("j1", RUN_AT)]


# -- recovery's reading of a 2.x session's history -------------------------------------------------

TURN_AT = 1_700_000_000_000


async def legacy_recovery(store: Store, boot: int) -> tuple[Recovery, Journal]:
    """Boot `boot` (2026.2.26) crashed with a main-session turn in flight; boot 2 is up and settled."""
    main = "agent:main:main"
    await InflightRecords(store).apply(boot, Delta(sessions_started=(
        SessionItem(main, "main", "main", None, ("run-1",), TURN_AT),)))
    await BootRecords(store).ended(boot, BootEnd(-9, "crash", "killed", True, {}))
    now = await BootRecords(store).started(pid=4243, create_time=2.0, port=18789, version=LEGACY)
    caps = for_version(LEGACY).with_methods(["chat.history", "agent", "sessions.list", "cron.list"])
    journal = Journal(store)
    recovery = Recovery(journal, RecoveryPolicy(), caps, now, int(time.time() * 1000) - 60_000,
                        InflightRecords(store), lambda: 0.5)
    return recovery, journal


@pytest.mark.parametrize("answer", [["not", "a", "history"], {"messages": [1, 2]}, "err"])
async def test_a_bad_history_answer_is_logged_and_the_notice_goes_out(answer: Any, store: Store, boot: int) -> None:
    async def script(peer: Peer) -> None:
        await peer.handshake()
        req = await peer.req("chat.history")
        assert req["params"]["sessionKey"] == "agent:main:main"
        await peer.send(err(req, "INVALID_REQUEST", "no") if answer == "err" else ok(req, answer))
        req = await peer.req("agent")
        assert "Gateway restarted" in req["params"]["message"]
        await peer.send(ok(req, {"runId": req["params"]["idempotencyKey"], "status": "accepted", "acceptedAt": 1}))
        await peer.ws.close(1000, "script done")

    recovery, journal = await legacy_recovery(store, boot)
    async with scripted(script) as gw, client(gw.url, 3) as rpc:
        await rpc.connect()
        with capture_logs() as logs, contextlib.suppress(GatewayUnavailable):
            await asyncio.wait_for(recovery.run(rpc), 5)
    assert [e["event"] for e in logs if "history" in e["event"]] == ["recovery_history_unreadable"]
    [ob] = await journal.open_obligations()
    assert [a.state for a in await journal.actions_for(ob.id)] == ["answered"]


async def test_a_connection_lost_while_reading_the_history_sends_no_notice(store: Store, boot: int) -> None:
    """Not a notice into a dead connection (it would cost one of its attempts): decided again on
    the next connection."""
    async def script(peer: Peer) -> None:
        await peer.handshake()
        await peer.req("chat.history")
        peer.abort()

    recovery, journal = await legacy_recovery(store, boot)
    async with scripted(script) as gw, client(gw.url, 3) as rpc:
        await rpc.connect()
        with pytest.raises(GatewayUnavailable):
            await asyncio.wait_for(recovery.run(rpc), 5)
    [ob] = await journal.open_obligations()
    assert await journal.actions_for(ob.id) == []


async def test_recovery_waiting_for_its_next_action_ends_when_its_connection_closes(store: Store, boot: int) -> None:
    """Found by the fake chaos run (seed 5151): an adopted gateway's kill -9 was seen 60.9 s late.
    Its exit woke gatewayd at once, but the boot's end waits for the boot's helpers, and recovery,
    having lost its cancellation (Python 3.11's wait_for drops one that lands as its event is set),
    slept on to its next rescan. Waiting for its next action, it now ends when the connection
    closes, cancelled or not: here it is never cancelled, and its next action is 10 minutes away."""
    closed_by_gateway = asyncio.Event()

    async def script(peer: Peer) -> None:
        await peer.handshake()
        await asyncio.sleep(0.5)  # recovery is waiting by now (it sends nothing while held)
        closed_by_gateway.set()
        peer.abort()  # the gateway dies

    _, journal = await legacy_recovery(store, boot)
    assert await journal.open_obligations()
    now = await BootRecords(store).started(pid=4244, create_time=3.0, port=18789, version=LEGACY)
    caps = for_version(LEGACY).with_methods(["chat.history", "agent", "sessions.list", "cron.list"])
    held = Recovery(journal, RecoveryPolicy(), caps, now, int(time.time() * 1000) - 60_000, InflightRecords(store),
                    lambda: 0.5, hold_until_ms=int(time.time() * 1000) + 600_000)
    async with scripted(script) as gw, client(gw.url, 3) as rpc:
        await rpc.connect()
        await asyncio.wait_for(held.run(rpc), 10)  # before: asleep for the whole hold
    assert closed_by_gateway.is_set()


# -- values that parse and poison later (issue 14): each once ended tracking for the rest of a boot --

def poisoned(payload: Any) -> str:
    """JSON the way a JavaScript gateway can write it: a string cut mid-emoji (a lone surrogate,
    escaped), and numbers Python reads as infinity or as an int SQLite cannot hold."""
    return (json.dumps(payload).replace('"@cut"', '"x-\\ud83d"').replace('"@inf"', "1e999")
            .replace('"@big"', str(2**70)))


async def test_a_job_name_cut_mid_emoji_is_recorded_not_fatal(store: Store, boot: int) -> None:
    """Was: the store's bind raised UnicodeEncodeError out of the snapshotter, and tracking stopped."""
    jobs = {"jobs": [job("j1", name="@cut"), job("j2", None, name="@cut")], "hasMore": False}

    async def script(peer: Peer) -> None:
        await peer.handshake()
        await peer.send(ok(await peer.req("sessions.list"), GOOD_SESSIONS))
        req = await peer.req("cron.list")
        await peer.send(poisoned(ok(req, jobs)))
        await peer.ws.close(1000, "script done")

    r = await run_snapshotter(script, store, boot)
    assert r.errors == []
    assert r.snap.state.runs[("j1", 1_700_000_000_000)].name == "x-\ufffd"
    assert (await r.rows())["runs"] == [("j1", 1_700_000_000_000, "running")]


async def cron_obligation(store: Store, boot: int, ready_ago_ms: int = 60_000) -> tuple[Recovery, Journal, int]:
    """Boot `boot` (2026.9.6) crashed with a cron run and a main-session turn in flight; the next
    boot has been ready for `ready_ago_ms` (its settle window ends 30 s after ready)."""
    item = RunItem("j1", RUN_AT, "hourly", "main", "agentTurn", "isolated", "cron", None, False, True)
    await InflightRecords(store).apply(boot, Delta(
        sessions_started=(SessionItem("agent:main:main", "main", "main", "sid", ("run-1",), TURN_AT),),
        runs_started=(item,)))
    await BootRecords(store).ended(boot, BootEnd(-9, "crash", "killed", True, {}))
    now = await BootRecords(store).started(pid=4243, create_time=2.0, port=18789, version=CURRENT)
    caps = for_version(CURRENT).with_methods(["sessions.list", "cron.list", "cron.runs", "cron.run", "agent"])
    journal = Journal(store)
    recovery = Recovery(journal, RecoveryPolicy(), caps, now, int(time.time() * 1000) - ready_ago_ms,
                        InflightRecords(store), lambda: 0.5)
    return recovery, journal, now


@pytest.mark.parametrize("field", ["startedAt", "endedAt", "nextRunAtMs", "startupCatchupAtMs", "runAtMs"])
async def test_recovery_reads_unusable_numbers_as_absent(field: str, store: Store, boot: int) -> None:
    """Was: `int(inf)` (OverflowError) in recovery, or an int SQLite cannot bind: recovery ended
    for the rest of the boot. Now the field counts as absent and the retry is planned."""
    value = "@big" if field == "runAtMs" else "@inf"
    row = {**session("agent:main:main"), "status": "running", "startedAt": 1, "endedAt": 2}
    row.update({field: value} if field in ("startedAt", "endedAt") else {})
    state = {"lastRunAtMs": 1}
    state.update({field: value} if field in ("nextRunAtMs", "startupCatchupAtMs") else {})
    answers = {"sessions.list": {"sessions": [row], "hasMore": False},
               "cron.list": {"jobs": [job("j1", None, state=state)], "hasMore": False},
               "cron.runs": {"entries": [{"runAtMs": value if field == "runAtMs" else 1, "status": "ok"}]}}

    async def script(peer: Peer) -> None:
        await peer.handshake()
        while True:
            req = await peer.recv()
            await peer.send(poisoned(ok(req, answers.get(req["method"], {}))))

    # The session rows' times are read while settling: a second of it left.
    ready_ago = 29_000 if field in ("startedAt", "endedAt") else 60_000
    recovery, journal, _ = await cron_obligation(store, boot, ready_ago)
    async with scripted(script) as gw, client(gw.url) as rpc:
        await rpc.connect()
        task = asyncio.ensure_future(recovery.run(rpc))
        try:
            for _ in range(200):  # the store's state: the retry planned (or the run done)
                cron = [o for o in await journal.open_obligations() if o.kind == "cron"]
                if not cron or cron[0].planned_at_ms is not None or task.done():
                    break
                await asyncio.sleep(0.025)
            assert not task.done() or task.exception() is None, task.exception()
            assert not cron or cron[0].planned_at_ms is not None
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_an_event_callback_that_raises_does_not_end_the_connection() -> None:
    """Was: an exception in the event callback (the monitor's `int(restartExpectedMs)` on 1e999)
    ended the read loop, and with it every call and event of the connection."""
    seen: list[str] = []

    def on_event(ev: Event) -> None:
        seen.append(ev.name)
        if ev.name == "shutdown":
            raise OverflowError("cannot convert float infinity to integer")

    async def script(peer: Peer) -> None:
        await peer.handshake()
        await peer.send(poisoned(event("shutdown", {"restartExpectedMs": "@inf"})))
        await peer.send(ok(await peer.req("health"), {"ok": True}))
        await peer.ws.close(1000, "script done")

    async with scripted(script) as gw, client(gw.url, on_event=on_event) as rpc:
        await rpc.connect()
        with capture_logs() as logs:
            assert await rpc.call("health") == {"ok": True}
    assert "shutdown" in seen
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["event_handler_failed"]


async def test_paging_that_gathers_too_many_items_is_a_typed_error(store: Store, boot: int) -> None:
    """Issue 17: up to 1000 pages of up to 32 MiB each were gathered with no cap on the items."""
    from supervisor.gateway.rpc import MAX_ITEMS, paged

    page = {"jobs": [{"id": "j"}] * (MAX_ITEMS // 4 + 1), "hasMore": True}

    async def script(peer: Peer) -> None:
        await peer.handshake()
        offset = 0
        while True:
            req = await peer.req("cron.list")
            offset += len(page["jobs"])
            await peer.send(ok(req, {**page, "nextOffset": offset}))

    async with scripted(script) as gw, client(gw.url) as rpc:
        await rpc.connect()
        with pytest.raises(GatewayProtocolError, match="items"):
            await paged(rpc, "cron.list", {}, "jobs", 200)


async def test_paging_that_gathers_too_many_bytes_is_a_typed_error(store: Store, boot: int,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by review: a few huge items per page passed the item cap (1000 pages of 32 MiB)."""
    from supervisor.gateway import rpc as rpc_module

    monkeypatch.setattr(rpc_module, "MAX_PAGED_BYTES", 3 * MiB)
    page = {"jobs": [{"id": "j", "name": "x" * MiB}], "hasMore": True}

    async def script(peer: Peer) -> None:
        await peer.handshake()
        offset = 0
        while True:
            req = await peer.req("cron.list")
            offset += 1
            await peer.send(ok(req, {**page, "nextOffset": offset}))

    async with scripted(script) as gw, client(gw.url) as rpc:
        await rpc.connect()
        with pytest.raises(GatewayProtocolError, match="MiB"):
            await rpc_module.paged(rpc, "cron.list", {}, "jobs", 200)


def test_legacy_ids_too_long_to_be_ids_are_not_kept() -> None:
    from supervisor.core.inflight import MAX_ID_CHARS, LegacyActivity

    act = LegacyActivity()
    long = "r" * (MAX_ID_CHARS + 1)
    assert not act.feed({"stream": "lifecycle", "runId": long, "sessionKey": "agent:main:main",
                         "data": {"phase": "start"}})
    assert not act.feed({"stream": "lifecycle", "runId": "r1", "sessionKey": long, "data": {"phase": "start"}})
    assert act.runs == {}
