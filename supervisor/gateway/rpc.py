"""WebSocket RPC client for the gateway (protocol 4 on 2026.9.x, 3 on 2026.2.x).

Handshake: wait for the `connect.challenge` event, send `connect` as the local backend client
(`gateway-client`/`backend`, no Origin header: the gateway keeps the scopes of that path only),
check `hello-ok`. Then `call()` matches responses to requests by id (they may come out of order),
and events go to a callback. Library errors (websockets, OSError, JSON) are mapped to
`supervisor.errors` here and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import platform
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from supervisor import __version__, logs
from supervisor.errors import (
    GatewayAuthError,
    GatewayError,
    GatewayProtocolError,
    GatewayRpcError,
    GatewayTimeout,
    GatewayUnavailable,
)
from supervisor.gateway import wire
from supervisor.gateway.launch import GatewayAuth

log = logs.get("gatewayd.rpc")

SCOPES = ("operator.read", "operator.write", "operator.admin")
CLOSE_SERVICE_RESTART = 1012
CLOSE_TRY_AGAIN_LATER = 1013


@dataclass(frozen=True)
class Event:
    name: str
    payload: Any
    seq: int | None
    received_at: float  # monotonic


@dataclass(frozen=True)
class Hello:
    protocol: int
    server_version: str | None
    boot_id: str | None
    conn_id: str | None
    methods: frozenset[str]
    events: frozenset[str]
    scopes: tuple[str, ...] | None  # None: this version does not echo them (legacy)
    tick_interval_ms: int
    uptime_ms: int | None
    raw: dict[str, Any] = field(repr=False, default_factory=dict)


def _require(obj: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise GatewayProtocolError(f"{where}: missing field {key!r}")
    value = obj[key]
    if not isinstance(value, kind):
        raise GatewayProtocolError(f"{where}: field {key!r} has type {type(value).__name__}")
    return value


def finite_int(value: Any) -> int | None:
    """A JSON number as an int, or None: `1e999` is valid JSON and infinity in Python."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return int(value) if -(2**63) <= value < 2**63 else None


def parse_hello(payload: Any, protocol: int) -> Hello:
    where = "hello-ok"
    if not isinstance(payload, dict) or payload.get("type") != "hello-ok":
        raise GatewayProtocolError(f"{where}: not a hello-ok payload")
    got = _require(payload, "protocol", int, where)
    if got != protocol:
        raise GatewayProtocolError(f"{where}: protocol {got}, asked for {protocol}")
    server = payload.get("server") or {}
    if not isinstance(server, dict):
        raise GatewayProtocolError(f"{where}: field 'server' has type {type(server).__name__}")
    features = payload.get("features") or {}
    methods = features.get("methods", []) if isinstance(features, dict) else []
    events = features.get("events", []) if isinstance(features, dict) else []
    if not isinstance(methods, list) or not isinstance(events, list):
        raise GatewayProtocolError(f"{where}: features.methods/events must be lists")
    auth = payload.get("auth")
    scopes: tuple[str, ...] | None = None
    if isinstance(auth, dict):
        raw_scopes = auth.get("scopes", [])
        if not isinstance(raw_scopes, list):
            raise GatewayProtocolError(f"{where}: auth.scopes must be a list")
        scopes = tuple(str(s) for s in raw_scopes)
    policy = payload.get("policy") or {}
    tick = policy.get("tickIntervalMs", 30000) if isinstance(policy, dict) else 30000
    snapshot = payload.get("snapshot") or {}
    uptime = snapshot.get("uptimeMs") if isinstance(snapshot, dict) else None
    return Hello(
        protocol=got,
        server_version=server.get("version") if isinstance(server.get("version"), str) else None,
        boot_id=server.get("bootId") if isinstance(server.get("bootId"), str) else None,
        conn_id=server.get("connId") if isinstance(server.get("connId"), str) else None,
        methods=frozenset(str(m) for m in methods),
        events=frozenset(str(e) for e in events),
        scopes=scopes,
        tick_interval_ms=finite_int(tick) or 30000,
        uptime_ms=finite_int(uptime),
        raw=payload,
    )


class RpcClient:
    """One connection. Create, `await connect()`, `await call(...)`, `await close()`."""

    def __init__(self, url: str, auth: GatewayAuth, protocol: int, *,
                 on_event: Callable[[Event], None] | None = None, connect_timeout_s: float = 10.0,
                 instance_id: str | None = None) -> None:
        self.url = url
        self.auth = auth
        self.protocol = protocol
        self.on_event = on_event
        self.bad_frames = 0  # frames dropped as unreadable
        self.connect_timeout_s = connect_timeout_s
        self.instance_id = instance_id or f"gatewayd-{uuid.uuid4()}"
        self.hello: Hello | None = None
        self.bytes_received = 0  # every frame's size: bounds what one paged read may gather
        self.last_frame_at = 0.0
        self.close_code: int | None = None
        # The connection ended under the reader with no close frame from the gateway: its process
        # died (or the network dropped it), rather than the gateway or gatewayd closing it.
        self.dropped = False
        self.closed = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._reader: asyncio.Task[None] | None = None

    async def connect(self) -> Hello:
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                return await self._handshake()
        except TimeoutError as exc:
            await self.close()
            raise GatewayTimeout(f"handshake with {self.url} timed out") from exc
        except BaseException:  # a typed error, or a cancellation mid-handshake: never leak the socket
            await self.close()
            raise

    async def _handshake(self) -> Hello:
        try:
            self._ws = await connect(self.url, open_timeout=None, close_timeout=2, max_size=32 << 20,
                                     compression=None, ping_interval=None, ssl=self._ssl(),
                                     user_agent_header=f"gatewayd/{__version__}")
        except OSError as exc:
            raise GatewayUnavailable(f"cannot connect to {self.url}: {exc}",
                                     refused=isinstance(exc, ConnectionRefusedError)) from exc
        except (InvalidHandshake, InvalidURI) as exc:
            raise GatewayProtocolError(f"WebSocket handshake with {self.url} failed: {exc}") from exc
        challenge = await self._recv_frame()
        if challenge.get("type") != "event" or challenge.get("event") != "connect.challenge":
            raise GatewayProtocolError("expected a connect.challenge event first")
        params = {
            "minProtocol": self.protocol,
            "maxProtocol": self.protocol,
            "client": {"id": "gateway-client", "version": __version__, "platform": platform.system().lower(),
                       "mode": "backend", "instanceId": self.instance_id},
            "role": "operator",
            "scopes": list(SCOPES),
            "caps": [],
            "auth": self._auth_params(),
            "locale": "en-US",
            "userAgent": f"gatewayd/{__version__}",
        }
        await self._send({"type": "req", "id": "connect", "method": "connect", "params": params})
        while True:
            frame = await self._recv_frame()
            if frame.get("type") == "res" and frame.get("id") == "connect":
                break
        if not frame.get("ok"):
            err = frame.get("error") or {}
            code = str(err.get("code", "ERROR")) if isinstance(err, dict) else "ERROR"
            message = str(err.get("message", "")) if isinstance(err, dict) else str(err)
            if code in ("UNAUTHORIZED", "AUTH_FAILED", "FORBIDDEN") or "auth" in message.lower():
                raise GatewayAuthError(f"gateway refused the credentials: {code} {message}".strip())
            if code == "UNAVAILABLE":
                raise GatewayUnavailable(f"gateway not ready: {message or code}")
            raise GatewayRpcError("connect", code, message)
        hello = parse_hello(frame.get("payload"), self.protocol)
        if hello.scopes is not None and not set(SCOPES) <= set(hello.scopes):
            missing = sorted(set(SCOPES) - set(hello.scopes))
            raise GatewayAuthError(f"gateway granted fewer scopes than asked: missing {', '.join(missing)}")
        self.hello = hello
        self.last_frame_at = time.monotonic()
        self._reader = asyncio.create_task(self._read_loop(), name="rpc-reader")
        return hello

    def _ssl(self) -> ssl.SSLContext | None:
        if not self.url.startswith("wss:"):
            return None
        # A gateway with TLS on loopback has a self-signed certificate; the token is the trust.
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _auth_params(self) -> dict[str, str]:
        if self.auth.secret is None:
            return {}
        key = "password" if self.auth.mode == "password" else "token"
        return {key: str(self.auth.secret)}

    async def _send(self, frame: dict[str, Any]) -> None:
        assert self._ws is not None
        try:
            await self._ws.send(json.dumps(frame))
        except ConnectionClosed as exc:
            raise GatewayUnavailable(f"connection closed ({exc.rcvd.code if exc.rcvd else 'no code'})") from exc

    async def _recv_frame(self) -> dict[str, Any]:
        assert self._ws is not None
        try:
            raw = await self._ws.recv()
        except ConnectionClosed as exc:
            self.close_code = exc.rcvd.code if exc.rcvd else None
            self.dropped = exc.rcvd is None and exc.sent is None  # not failed by our side (1009, 1002)
            raise GatewayUnavailable(f"connection closed ({self.close_code})") from exc
        self.bytes_received += len(raw)
        try:
            frame = wire.decode(raw)
        except GatewayProtocolError as exc:
            raise GatewayProtocolError("malformed frame: not JSON") from exc
        if not isinstance(frame, dict):
            raise GatewayProtocolError("malformed frame: not an object")
        return frame

    async def _read_loop(self) -> None:
        error: GatewayError = GatewayUnavailable("connection closed")
        try:
            while True:
                try:
                    frame = await self._recv_frame()
                except GatewayProtocolError:
                    self.bad_frames += 1  # it may have been an event a listener needed (a turn's start)
                    continue  # one bad frame is dropped; a pending call then times out, typed
                self.last_frame_at = time.monotonic()
                kind = frame.get("type")
                if kind == "res":
                    fut = self._pending.pop(str(frame.get("id")), None)
                    if fut is not None and not fut.done():
                        fut.set_result(frame)
                elif kind == "event" and self.on_event is not None:
                    name = frame.get("event")
                    if isinstance(name, str):
                        seq = frame.get("seq")
                        ev = Event(name, frame.get("payload"), seq if isinstance(seq, int) else None,
                                   self.last_frame_at)
                        try:
                            self.on_event(ev)
                        except Exception as exc:  # one event's handler must not end the connection
                            log.error("event_handler_failed", gateway_event=name, error=f"{type(exc).__name__}: {exc}",
                                      traceback=logs.traceback_text(exc))
        except GatewayUnavailable as exc:
            error = exc
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(error)
            self._pending.clear()
            self.closed.set()

    async def call(self, method: str, params: dict[str, Any] | None = None, timeout_s: float = 10.0) -> Any:
        if self._ws is None or self.closed.is_set():
            raise GatewayUnavailable(f"{method}: not connected")
        req_id = f"r{next(self._ids)}"
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = fut
        frame: dict[str, Any] = {"type": "req", "id": req_id, "method": method}
        if params is not None:
            frame["params"] = params
        try:
            await self._send(frame)
            async with asyncio.timeout(timeout_s):
                res = await fut
        except TimeoutError as exc:
            raise GatewayTimeout(f"{method}: no answer in {timeout_s:g}s") from exc
        finally:
            self._pending.pop(req_id, None)
            if fut.done() and not fut.cancelled():
                fut.exception()  # retrieved: a caller cancelled mid-call leaves no "never retrieved" noise
        if res.get("ok") is True:
            return res.get("payload")
        if res.get("ok") is not False:
            raise GatewayProtocolError(f"{method}: response without a boolean 'ok'")
        err = res.get("error") or {}
        if not isinstance(err, dict):
            raise GatewayRpcError(method, "ERROR", str(err))
        retry = err.get("retryAfterMs")
        raise GatewayRpcError(method, str(err.get("code", "ERROR")), str(err.get("message", "")),
                              finite_int(retry))

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # our caller is being cancelled: do not swallow it
            except Exception:
                pass
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()  # bounded by close_timeout
            if self._ws.close_code is not None and self.close_code is None:
                self.close_code = self._ws.close_code
        self.closed.set()


MAX_PAGES = 1000
# Far above any real gateway (the snapshot benchmark runs 10,000 sessions); a gateway that pages
# without end must not grow gatewayd's memory without bound.
MAX_ITEMS = 200_000
MAX_PAGED_BYTES = 256 << 20  # the frames of one paged read together (a 10,000-session list is ~5 MiB)


async def paged(rpc: RpcClient, method: str, params: dict[str, Any], key: str, limit: int) -> Any:
    """All pages of a list method (`hasMore`/`nextOffset`), as one answer."""
    items: list[Any] = []
    offset = 0
    started = getattr(rpc, "bytes_received", 0)
    for _ in range(MAX_PAGES):
        page = await rpc.call(method, {**params, "limit": limit, "offset": offset})
        if not isinstance(page, dict) or not isinstance(page.get(key), list):
            raise GatewayProtocolError(f"{method}: field {key!r} must be a list")
        items += page[key]
        if len(items) > MAX_ITEMS:
            raise GatewayProtocolError(f"{method}: more than {MAX_ITEMS} items; not read further")
        if getattr(rpc, "bytes_received", 0) - started > MAX_PAGED_BYTES:
            raise GatewayProtocolError(f"{method}: more than {MAX_PAGED_BYTES >> 20} MiB; not read further")
        nxt = page.get("nextOffset")
        if not page.get("hasMore") or not isinstance(nxt, int) or nxt <= offset:
            return {**page, key: items}
        offset = nxt
    raise GatewayProtocolError(f"{method}: more than {MAX_PAGES} pages; the gateway's paging does not end")


async def list_sessions(rpc: RpcClient, pages: bool, active_only: bool = False) -> list[dict[str, Any]]:
    """`sessions.list`'s rows. `pages`: the version takes `offset` and `activeOnly` (2026.9.x);
    2026.2.x refuses both (closed schema), and answers every row in one page."""
    if pages:
        payload = await paged(rpc, "sessions.list", {"activeOnly": True} if active_only else {}, "sessions", 500)
    else:
        payload = await rpc.call("sessions.list", {})
    rows = payload.get("sessions", []) if isinstance(payload, dict) else []
    return [r for r in rows if isinstance(r, dict) and isinstance(r.get("key"), str)]


async def default_agent(rpc: RpcClient, fallback: str = "main") -> str:
    """The agent whose main session takes unaddressed system events (both versions' `health` says
    `defaultAgentId`); `fallback` where the gateway does not say."""
    try:
        health = await rpc.call("health", {})
    except GatewayUnavailable:
        raise
    except GatewayError:
        return fallback
    agent = health.get("defaultAgentId") if isinstance(health, dict) else None
    return agent if isinstance(agent, str) and agent else fallback


async def agent_roster(rpc: RpcClient, fallback: str = "main", timeout_s: float = 10.0) -> list[str]:
    """The configured agents, from `health.agents` (both versions), else the default agent alone
    (`fallback` where the gateway does not say)."""
    try:
        health = await rpc.call("health", {}, timeout_s=timeout_s)
    except GatewayUnavailable:
        raise
    except GatewayError:
        return [fallback]
    health = health if isinstance(health, dict) else {}
    rows = health.get("agents")
    ids = [r["agentId"] for r in rows if isinstance(r, dict) and isinstance(r.get("agentId"), str)
           and r["agentId"]] if isinstance(rows, list) else []
    default = health.get("defaultAgentId")
    return list(dict.fromkeys(ids)) or [default if isinstance(default, str) and default else fallback]


def user_turn(message: str, idempotency_key: str, agent: str | None, session_key: str,
              deliver: bool, drain: bool) -> tuple[str, dict[str, Any]]:
    """A turn of gatewayd's own (a notice, a wake) as (method, params). `drain`: as `chat.send`,
    which hands the session's queued system events to the model in the same request; an `agent`
    turn leaves them queued (measured on both versions)."""
    if drain:
        params: dict[str, Any] = {"sessionKey": session_key, "message": message, "idempotencyKey": idempotency_key}
        if deliver:
            params["deliver"] = True
        return "chat.send", params
    return "agent", agent_turn(message, idempotency_key, agent, session_key, deliver)


def agent_turn(message: str, idempotency_key: str, agent: str | None, session_key: str,
               deliver: bool) -> dict[str, Any]:
    """`agent`'s params for a turn of gatewayd's own (a notice, a wake): its reply goes out on the
    session's channel only when asked (`deliver`); by default it stays in the session."""
    params: dict[str, Any] = {"message": message, "idempotencyKey": idempotency_key, "sessionKey": session_key}
    if agent:
        params["agentId"] = agent
    if deliver:
        params["deliver"] = True
    return params
