#!/usr/bin/env python3
"""A scripted stand-in for the `openclaw` gateway, for integration tests of the supervisor.

    fake_gateway.py --version                                    -> "OpenClaw <V> (fake)"
    fake_gateway.py gateway [run] --port P [--token T] [...]     -> serve WS + HTTP on 127.0.0.1:P
    fake_gateway.py gateway restart-handoff consume --expected-pid N --json
    fake_gateway.py gateway restart-handoff capabilities --json

Versions from 2026.9 on behave like 2026.9.6 (HTTP probes, WS protocol 4); older ones like 2026.2.26
(every HTTP path is the Control UI page, WS protocol 3, hello-ok server.version "dev", auth null).

Env: FAKE_GW_VERSION (2026.9.6), OPENCLAW_GATEWAY_TOKEN (unset: any token), OPENCLAW_STATE_DIR,
FAKE_GW_BOOT_DELAY (0.3 s), FAKE_GW_TICK_MS, FAKE_GW_DRAIN_SECONDS (0.2), FAKE_GW_EXIT_AFTER=<s>:<code|SIG>,
FAKE_GW_EXIT_AT_BOOT=<code>, FAKE_GW_IGNORE_TERM=1, FAKE_GW_NEVER_READY=1, FAKE_GW_ENV_DUMP=<path>,
FAKE_GW_PID_FILE=<path>, FAKE_GW_GROW_AFTER=<s>:<MB per s> (memory that grows until the kernel says no);
the world's (see fake_world.py): FAKE_GW_MODEL_URL, FAKE_GW_REPAIR_DELAY_MS,
FAKE_GW_ONESHOT_CATCHUP_MS, FAKE_GW_MAIN_RESUME_MS, FAKE_GW_BACKOFF_MS; OPENCLAW_CONFIG_PATH is read for the
model URL, agents and heartbeats.
Controls (POST or GET, answer 200 "ok..." before acting): /__fake/crash?code=N, /__fake/signal?sig=9,
/__fake/hang, /__fake/grandchild[?session=1][&port=1: it inherits the listener] (body "ok <pid>"),
/__fake/restart?expected_ms=1500, /__fake/drain?seconds=S,
/__fake/silence?seconds=12&expected_ms=3000 (restart in place: listener closed),
/__fake/world (GET: the world as JSON: jobs, run log, sessions, queued system events, RPC call log, ...).

RPC: health, status, system.info (2026.9.x), system-presence, and the world's methods: cron.add, cron.list,
cron.get (2026.9.x), cron.update, cron.remove, cron.run, cron.runs, cron.status, sessions.list, agent, wake,
system-event, last-heartbeat, chat.history. Requests are handled concurrently (a 2026.2.x cron.run
blocks until its run ends); events (agent, chat, cron, heartbeat, task on 2026.9.x) go to every connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Coroutine
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from gatewayd_dev.fake_world import World, WorldError

HANDOFF_PROTOCOL = "openclaw.gateway.restart-handoff"
HANDOFF_FILE = "fake-handoff.json"
HANDOFF_TTL_MS = 60_000
# How long a turn waits for its events to reach the sockets before its model call: Node writes at once
# and buffers what a full socket does not take, so a connection backed up longer than this is not waited for.
WRITTEN_WAIT_S = 0.2
HTML = "text/html; charset=utf-8"
CONTROL_UI_PAGE = (
    b"<!doctype html><html><head><title>OpenClaw Control</title></head><body>"
    b'<openclaw-app></openclaw-app><script type="module" src="/assets/index.js"></script></body></html>\n'
)
WORLD_METHODS = ["sessions.list", "cron.list", "cron.status", "cron.add", "cron.update", "cron.remove", "cron.run",
                 "cron.runs", "agent", "agent.wait", "wake", "system-event", "last-heartbeat", "chat.send"]
MODERN_METHODS = ["health", "status", "system.info", "system-presence", *WORLD_METHODS, "cron.get",
                  "sessions.messages.subscribe", "chat.history"]
LEGACY_METHODS = ["health", "status", "system-presence", *WORLD_METHODS, "chat.history"]
EVENTS = ["connect.challenge", "tick", "shutdown", "health", "heartbeat", "presence", "agent", "chat", "cron"]
SESSION_DEFAULTS = {"defaultAgentId": "main", "mainKey": "main", "mainSessionKey": "agent:main:main"}
MiB = 1024 * 1024


def log(msg: str, *, err: bool = False) -> None:
    print(msg, file=sys.stderr if err else sys.stdout, flush=True)


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))  # compact, like JSON.stringify


def now_ms() -> int:
    return int(time.time() * 1000)


def state_dir() -> Path:
    return Path(os.environ.get("OPENCLAW_STATE_DIR") or Path.home() / ".openclaw").expanduser()


def is_modern(version: str) -> bool:
    try:
        year, month = (int(part) for part in version.split(".")[:2])
    except ValueError:
        return True
    return (year, month) >= (2026, 9)


def parse_signal(text: str) -> signal.Signals:
    text = text.strip().upper()
    if text.isdigit():
        return signal.Signals(int(text))
    return signal.Signals[text if text.startswith("SIG") else "SIG" + text]


def flag(args: list[str], name: str) -> str | None:
    """Value of `--name V` or `--name=V`."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def res_ok(req_id: Any, payload: Any) -> str:
    return dumps({"type": "res", "id": req_id, "ok": True, "payload": payload})


def res_err(req_id: Any, code: str, message: str, **extra: Any) -> str:
    error = {"code": code, "message": message, **extra}
    return dumps({"type": "res", "id": req_id, "ok": False, "error": error})


def event(name: str, payload: Any) -> str:
    return dumps({"type": "event", "event": name, "payload": payload})


def http_response(status: int, body: bytes, content_type: str, *, head: bool = False) -> Response:
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))), ("Connection", "close")])
    return Response(status, HTTPStatus(status).phrase, headers, b"" if head else body)


def json_response(status: int, obj: Any, *, head: bool = False) -> Response:
    return http_response(status, dumps(obj).encode(), "application/json; charset=utf-8", head=head)


class HttpTolerantConnection(ServerConnection):
    """websockets parses only `GET` requests without a body, but the real gateway answers POST/HEAD on the
    same port. Rewrite the request head before websockets sees it: the method moves into an
    `X-Fake-Method` header, body headers are dropped and the body is discarded (controls use query args)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head: bytearray | None = bytearray()  # None once the request head was forwarded
        self._discard = 0  # body bytes still to drop

    def data_received(self, data: bytes) -> None:
        if self._head is None:
            drop = min(self._discard, len(data))
            self._discard -= drop
            if data[drop:]:
                super().data_received(data[drop:])
            return
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0 and len(self._head) < 65536:
            return
        buffered, self._head = bytes(self._head), None
        if end < 0:  # oversized head: let websockets reject it
            super().data_received(buffered)
            return
        super().data_received(self._rewrite(buffered[: end + 4]))
        if rest := buffered[end + 4 :]:
            self.data_received(rest)

    def _rewrite(self, head: bytes) -> bytes:
        lines = head[:-4].split(b"\r\n")
        method, _, target = lines[0].partition(b" ")
        kept = [b"GET " + target]
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                self._discard = int(value.strip() or 0)
            elif name.strip().lower() not in (b"transfer-encoding", b"x-fake-method"):
                kept.append(line)
        kept.append(b"X-Fake-Method: " + method)
        return b"\r\n".join(kept) + b"\r\n\r\n"


class FakeGateway:
    def __init__(self, port: int, version: str, token: str | None) -> None:
        self.port, self.version, self.token = port, version, token
        self.modern = is_modern(version)
        self.protocol = 4 if self.modern else 3
        self.started_at = time.monotonic()
        self.boot_id, self.instance_id = str(uuid.uuid4()), str(uuid.uuid4())
        self.booted = asyncio.Event()
        self.draining = False
        self.drain_seconds = float(os.environ.get("FAKE_GW_DRAIN_SECONDS", "0.2"))
        self.tick_ms = int(os.environ.get("FAKE_GW_TICK_MS") or 30000)  # both, measured (the docs say 15000)
        self.clients: set[ServerConnection] = set()
        self.outboxes: dict[ServerConnection, asyncio.Queue[str]] = {}
        self.subscribed: dict[ServerConnection, set[str]] = {}  # sessions.messages.subscribe, per connection
        self.event_seq = 0
        self.exit_code: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.tasks: set[asyncio.Task[None]] = set()  # keeps background tasks referenced
        self.server: Server | None = None
        world_path = Path(os.environ["OPENCLAW_STATE_DIR"]) / "fake-world.json" if os.environ.get(
            "OPENCLAW_STATE_DIR") else None
        self.world = World(version, self.modern, process_instance_id=self.instance_id, emit=self.broadcast,
                           world_path=world_path, emit_to_session=self.send_to_subscribers, written=self.written)

    def uptime_ms(self) -> int:
        return int((time.monotonic() - self.started_at) * 1000)

    # ---------------------------------------------------------------- lifecycle
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        if os.environ.get("FAKE_GW_IGNORE_TERM") == "1":
            loop.add_signal_handler(signal.SIGTERM, log, "[gateway] SIGTERM ignored (FAKE_GW_IGNORE_TERM)")
        else:
            loop.add_signal_handler(signal.SIGTERM, self.on_stop_signal, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, self.on_stop_signal, "SIGINT")
        self.server = await serve(
            self.ws_handler, "127.0.0.1", self.port, process_request=self.process_request,
            create_connection=HttpTolerantConnection, compression=None, max_size=25 * MiB, ping_interval=None,
        )  # fmt: skip
        log(f"[gateway] listening on ws://127.0.0.1:{self.port} (PID {os.getpid()})")
        self.background(self.boot())
        code = await self.exit_code
        self.server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.server.wait_closed(), 1.0)
        return code

    async def boot(self) -> None:
        self.world.on_boot()  # startup repair before ready (2026.2.x re-runs an interrupted one-shot now)
        await asyncio.sleep(float(os.environ.get("FAKE_GW_BOOT_DELAY", "0.3")))
        if os.environ.get("FAKE_GW_NEVER_READY") == "1":
            log("[gateway] startup blocked: sidecars never finish (FAKE_GW_NEVER_READY)", err=True)
            return
        self.booted.set()
        self.world.on_ready()
        log(f"[gateway] ready (version {self.version}, startup {self.uptime_ms()}ms)")
        if exit_after := os.environ.get("FAKE_GW_EXIT_AFTER"):
            seconds, _, code = exit_after.partition(":")
            asyncio.get_running_loop().call_later(float(seconds), self.die, code or "1")
        if grow := os.environ.get("FAKE_GW_GROW_AFTER"):
            seconds, _, rate = grow.partition(":")
            asyncio.get_running_loop().call_later(float(seconds), lambda: asyncio.ensure_future(self.grow(int(rate))))

    async def grow(self, mb_per_s: int) -> None:
        """A leak: touched memory, 10 steps a second, for as long as the process lives."""
        held: list[bytearray] = []
        log(f"[gateway] memory growing by {mb_per_s} MB/s (FAKE_GW_GROW_AFTER)")
        while True:
            held.append(bytearray(mb_per_s * 1024 * 1024 // 10))  # bytearray(n) writes its zeros: resident
            await asyncio.sleep(0.1)

    def die(self, code: str) -> None:
        """Exit with a numeric code, or kill ourselves with a signal name (SIGKILL, KILL, ...)."""
        log(f"[gateway] fatal: exiting ({code})", err=True)
        if code.lstrip("-").isdigit():
            os._exit(int(code))
        os.kill(os.getpid(), parse_signal(code))

    def on_stop_signal(self, name: str) -> None:
        if self.draining:
            log(f"[gateway] {name} received while already shutting down; ignored")
            return
        log(f"[gateway] {name} received; draining for {self.drain_seconds}s")
        self.start_stop("gateway stopping", None, self.drain_seconds)

    def start_stop(self, reason: str, restart_expected_ms: int | None, drain_seconds: float) -> None:
        self.draining = True  # at once, so probes and new connects see it
        self.background(self.stop(reason, restart_expected_ms, drain_seconds))

    def background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def stop(self, reason: str, restart_expected_ms: int | None, drain_seconds: float) -> None:
        """Tell clients (`shutdown` event), close them with 1012, drain, exit 0."""
        payload: dict[str, Any] = {"reason": reason}
        if restart_expected_ms is not None:
            payload["restartExpectedMs"] = restart_expected_ms
        clients = list(self.clients)
        for ws in clients:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(event("shutdown", payload))
        if clients:
            await asyncio.wait([asyncio.create_task(ws.close(1012, reason)) for ws in clients], timeout=2.0)
        await asyncio.sleep(drain_seconds)
        log("[gateway] shutdown complete")
        if not self.exit_code.done():
            self.exit_code.set_result(0)

    async def restart_in_place(self, seconds: float, expected_ms: int) -> None:
        """Like 2026.2.x restarting in place: announce, close with 1012, close the listener for a
        while, then listen again with a new boot id (same pid)."""
        payload = {"reason": "gateway restarting", "restartExpectedMs": expected_ms}
        for ws in list(self.clients):
            with contextlib.suppress(ConnectionClosed):
                await ws.send(event("shutdown", payload))
                await ws.close(1012, "restarting")
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        log(f"[gateway] restarting in place: listener closed for {seconds}s")
        await asyncio.sleep(seconds)
        self.boot_id = str(uuid.uuid4())
        self.server = await serve(
            self.ws_handler, "127.0.0.1", self.port, process_request=self.process_request,
            create_connection=HttpTolerantConnection, compression=None, max_size=25 * MiB, ping_interval=None,
        )  # fmt: skip
        log(f"[gateway] listening again on ws://127.0.0.1:{self.port} (PID {os.getpid()})")

    # ---------------------------------------------------------------- HTTP
    async def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        method = request.headers.get("X-Fake-Method", "GET").upper()
        url = urlsplit(request.path)
        if url.path.startswith("/__fake/"):
            return await self.control(connection, url.path.removeprefix("/__fake/"), parse_qs(url.query))
        if method == "GET" and "websocket" in request.headers.get("Upgrade", "").lower():
            return None  # go on with the WebSocket handshake
        head, path = method == "HEAD", url.path.rstrip("/") or "/"
        if not self.modern or method not in ("GET", "HEAD"):
            return http_response(200, CONTROL_UI_PAGE, HTML, head=head)
        booted, up = self.booted.is_set(), self.uptime_ms()
        if path in ("/healthz", "/health"):
            return json_response(200, {"ok": True, "status": "live"}, head=head)
        if path in ("/startupz", "/startup"):
            if self.draining:
                return json_response(503, {"ok": False, "status": "draining", "uptimeMs": up}, head=head)
            if not booted:
                body = {"ok": False, "status": "starting", "pendingReason": "startup-sidecars"}
                return json_response(503, {**body, "uptimeMs": up}, head=head)
            body = {"ok": True, "status": "started", "version": self.version, "uptimeMs": up}
            return json_response(200, body, head=head)
        if path in ("/readyz", "/ready"):
            failing = ["gateway-draining"] if self.draining else [] if booted else ["startup-sidecars"]
            body = {"ready": not failing, "failing": failing, "uptimeMs": up}
            return json_response(503 if failing else 200, body, head=head)
        return http_response(200, CONTROL_UI_PAGE, HTML, head=head)

    async def control(self, connection: ServerConnection, cmd: str, query: dict[str, list[str]]) -> Response:
        """Runtime controls. Each answers 200 first; its action runs once the answer is out."""
        arg = {key: values[-1] for key, values in query.items()}
        body = "ok\n"
        action: Callable[[], object] | None = None
        if cmd == "crash":
            action = functools.partial(self.die, arg.get("code", "1"))
        elif cmd == "signal":
            action = functools.partial(os.kill, os.getpid(), parse_signal(arg.get("sig", "9")))
        elif cmd == "hang":
            log("[gateway] event loop about to block (hang)")
            action = functools.partial(time.sleep, 10**9)
        elif cmd == "grandchild":
            held = [sock.fileno() for sock in self.server.server.sockets] if self.server and arg.get("port") else []
            pid = await spawn_grandchild(new_session=arg.get("session") == "1", pass_fds=held)
            log(f"[gateway] spawned helper process pid={pid}")
            body = f"ok {pid}\n"
        elif cmd == "restart":
            expected = int(arg.get("expected_ms", "1500"))
            record = {"pid": os.getpid(), "createdAtMs": now_ms(), "restartExpectedMs": expected}
            state_dir().mkdir(parents=True, exist_ok=True)
            (state_dir() / HANDOFF_FILE).write_text(dumps({**record, "reason": "restart"}))
            log(f"[gateway] restart requested: handoff written, exiting for relaunch in ~{expected}ms")
            action = functools.partial(self.start_stop, "gateway restarting", expected, 0.0)
        elif cmd == "silence":
            seconds, expected = float(arg.get("seconds", "12")), int(arg.get("expected_ms", "3000"))
            action = functools.partial(self.background, self.restart_in_place(seconds, expected))
        elif cmd == "drain":
            self.drain_seconds = float(arg.get("seconds", "0.2"))
            log(f"[gateway] drain time set to {self.drain_seconds}s")
        elif cmd == "world":
            return json_response(200, self.world.snapshot())
        else:
            return http_response(404, f"unknown control {cmd!r}\n".encode(), "text/plain")
        if action is not None:
            self.background(self.after_answer(connection, action))
        return http_response(200, body.encode(), "text/plain; charset=utf-8")

    @staticmethod
    async def after_answer(connection: ServerConnection, action: Callable[[], object]) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(connection.wait_closed(), 1.0)
        action()

    # ---------------------------------------------------------------- WebSocket
    async def ws_handler(self, ws: ServerConnection) -> None:
        await ws.send(event("connect.challenge", {"nonce": uuid.uuid4().hex, "ts": now_ms()}))
        try:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 15.0))
        except (TimeoutError, ConnectionClosed, ValueError):
            await ws.close(1008, "handshake timeout or invalid frame")
            return
        if not await self.handshake(ws, frame if isinstance(frame, dict) else {}):
            return
        self.outboxes[ws] = asyncio.Queue()
        self.clients.add(ws)
        ticker = asyncio.create_task(self.tick(ws))
        pump = asyncio.create_task(self.pump(ws, self.outboxes[ws]))
        try:
            async for raw in ws:
                with contextlib.suppress(ValueError):
                    req = json.loads(raw)
                    if isinstance(req, dict) and req.get("type") == "req":
                        self.background(self.handle_request(ws, req))  # answered concurrently, like the gateway
        except ConnectionClosed:
            pass
        finally:
            ticker.cancel()
            pump.cancel()
            self.clients.discard(ws)
            box = self.outboxes.pop(ws, None)
            while box is not None and not box.empty():  # never written: no turn waits on them
                box.get_nowait()
                box.task_done()
            self.subscribed.pop(ws, None)

    def broadcast(self, name: str, payload: Any) -> None:
        """An event to every connection (in order per connection, with a gateway-wide `seq`)."""
        self.event_seq += 1
        frame = dumps({"type": "event", "event": name, "payload": payload, "seq": self.event_seq})
        for box in self.outboxes.values():
            box.put_nowait(frame)

    def send_to_subscribers(self, session_key: str, name: str, payload: Any) -> None:
        """An event only to the connections subscribed to `session_key`'s messages."""
        self.event_seq += 1
        frame = dumps({"type": "event", "event": name, "payload": payload, "seq": self.event_seq})
        for ws, box in self.outboxes.items():
            if session_key in self.subscribed.get(ws, ()):
                box.put_nowait(frame)

    def subscribe(self, ws: ServerConnection, req_id: Any, params: Any) -> str:
        """2026.9.6: any key is taken (an unknown agent's too, measured) and answered as the gateway spells
        it, which is how its events name the session."""
        key = params.get("key") if isinstance(params, dict) else None
        if not isinstance(key, str) or not key.strip():
            return res_err(req_id, "INVALID_REQUEST",
                           "invalid sessions.messages.subscribe params: at /key: must not have fewer than 1 characters")
        canonical = key.strip().lower()
        self.subscribed.setdefault(ws, set()).add(canonical)
        return res_ok(req_id, {"subscribed": True, "key": canonical})

    @staticmethod
    async def pump(ws: ServerConnection, box: asyncio.Queue[str]) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                frame = await box.get()
                try:
                    await ws.send(frame)
                finally:
                    box.task_done()

    async def written(self) -> None:
        """Every frame queued so far handed to its connection's socket (a connection closing meanwhile
        is not waited for: its pump is cancelled with it)."""
        boxes = [box.join() for box in self.outboxes.values()]
        if boxes:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*boxes), WRITTEN_WAIT_S)

    async def handle_request(self, ws: ServerConnection, req: dict[str, Any]) -> None:
        req_id, method, params = req.get("id"), str(req.get("method")), req.get("params")
        self.world.record_call(method, params)
        answered = asyncio.Event()

        async def final(payload: Any) -> None:  # a second answer to the same request (agent's final result)
            await answered.wait()
            await self.answer(ws, res_ok(req_id, payload))

        if method == "sessions.messages.subscribe" and self.modern:
            frame = self.subscribe(ws, req_id, params)
        elif method in self.world.methods:
            try:
                frame = res_ok(req_id, await self.world.call(method, params if isinstance(params, dict) else {},
                                                             final))
            except WorldError as exc:
                frame = res_err(req_id, exc.code, exc.message, **exc.extra)
        else:
            frame = self.call(req_id, method, params)
        await self.answer(ws, frame)
        answered.set()

    async def answer(self, ws: ServerConnection, frame: str) -> None:
        """A response goes out behind the events queued to the connection before it, as the gateway
        writes both to one socket in order: a response never overtakes an earlier event (a turn's
        start emitted before a `status` answer arrives before it)."""
        box = self.outboxes.get(ws)
        if box is not None:
            box.put_nowait(frame)
            return
        with contextlib.suppress(ConnectionClosed):
            await ws.send(frame)

    async def handshake(self, ws: ServerConnection, frame: dict[str, Any]) -> bool:
        """Answer the `connect` request; False if the connection was refused (and closed)."""
        req_id, params = frame.get("id"), frame.get("params") or {}
        refusal: tuple[str, str, dict[str, Any], int] | None = None
        token = (params.get("auth") or {}).get("token")
        lo, hi = params.get("minProtocol"), params.get("maxProtocol")
        if frame.get("type") != "req" or frame.get("method") != "connect":
            refusal = ("INVALID_REQUEST", "first request must be connect", {}, 1008)
        elif self.token and token != self.token:
            why = "gateway token mismatch" if token else "gateway token missing"
            extra: dict[str, Any] = {"details": {"reason": "token_mismatch"}}
            refusal = ("UNAUTHORIZED", f"unauthorized: {why}", extra, 1008)
        elif not (isinstance(lo, int) and isinstance(hi, int) and lo <= self.protocol <= hi):
            extra = {"details": {"expectedProtocol": self.protocol, "minProtocol": lo, "maxProtocol": hi}}
            refusal = ("INVALID_REQUEST", "protocol mismatch", extra, 1002)
        elif self.draining:
            refusal = ("UNAVAILABLE", "gateway is shutting down", {"retryable": True}, 1012)
        elif not self.booted.is_set() and self.modern:
            extra = {"details": {"reason": "startup-sidecars"}, "retryable": True, "retryAfterMs": 200}
            refusal = ("UNAVAILABLE", "gateway starting", extra, 1013)
        if refusal is not None:
            code, message, extra, close_code = refusal
            await ws.send(res_err(req_id, code, message, **extra))
            await ws.close(close_code, message[:100])
            return False
        await self.booted.wait()  # 2026.2.x: a connect during boot simply waits for it
        await ws.send(res_ok(req_id, self.hello(params)))
        return True

    def hello(self, params: dict[str, Any]) -> dict[str, Any]:
        server: dict[str, Any] = {"version": self.version if self.modern else "dev"}
        server |= {"bootId": self.boot_id} if self.modern else {}
        auth = {"role": params.get("role", "operator"), "scopes": params.get("scopes") or []}
        snapshot = {
            "presence": [], "health": {}, "stateVersion": {"presence": 0, "health": 0},
            "uptimeMs": self.uptime_ms(), "stateDir": str(state_dir()),
            "sessionDefaults": SESSION_DEFAULTS,
        }  # fmt: skip
        events = [*EVENTS, "task"] if self.modern else EVENTS
        return {
            "type": "hello-ok",
            "protocol": self.protocol,
            "server": {**server, "connId": uuid.uuid4().hex},
            "features": {"methods": MODERN_METHODS if self.modern else LEGACY_METHODS, "events": events},
            "snapshot": snapshot,
            "auth": auth if self.modern else None,
            "policy": {"maxPayload": 25 * MiB, "maxBufferedBytes": 50 * MiB, "tickIntervalMs": self.tick_ms},
        }

    async def tick(self, ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(self.tick_ms / 1000)
                await ws.send(event("tick", {"ts": now_ms()}))

    def call(self, req_id: Any, method: str, params: Any) -> str:
        if method == "health":
            agents, heartbeat_seconds = self.world.health_agents()
            default = next((a["agentId"] for a in agents if a["isDefault"]), "main")
            payload = {"ok": True, "ts": now_ms(), "durationMs": 1, "channels": {}, "channelOrder": [],
                       "heartbeatSeconds": heartbeat_seconds, "agents": agents,
                       "sessions": {"count": len(self.world.sessions), "recent": []}}  # fmt: skip
            return res_ok(req_id, {**payload, "defaultAgentId": default})
        if method == "system.info" and self.modern:
            payload = {"pid": os.getpid(), "processInstanceId": self.instance_id, "port": self.port,
                       "uptimeMs": self.uptime_ms(), "platform": sys.platform}  # fmt: skip
            return res_ok(req_id, payload)
        if method == "status" and not self.modern:
            return res_ok(req_id, self.world.legacy_status())
        if method == "status":
            status: dict[str, Any] = {"runtimeVersion": self.version, "pid": os.getpid()}
            if queued := self.world.queued_main_events():  # the real one always lists it, [] when empty
                status["queuedSystemEvents"] = queued
            return res_ok(req_id, status)
        if method == "system-presence":
            return res_ok(req_id, [])
        return res_err(req_id, "INVALID_REQUEST", "unknown method", details={"method": method})


GRANDCHILD_CODE = """\
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
if sys.argv[1] == "1":
    os.setsid()
print("ready", flush=True)
sys.stdout.close()
time.sleep(1000)
"""


async def spawn_grandchild(*, new_session: bool, pass_fds: list[int] | None = None) -> int:
    """A helper process that ignores SIGTERM, in our process group unless `new_session` (it calls setsid
    itself); with `pass_fds` (the listener) it holds the gateway's port after the gateway is gone, as a
    forked tool that inherited the socket would. Returns once it is set up, so the caller sees its final
    process group and session."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", GRANDCHILD_CODE, "1" if new_session else "0",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        pass_fds=pass_fds or (),
    )  # fmt: skip
    assert proc.stdout is not None
    await proc.stdout.readline()
    return proc.pid


def handoff_cli(args: list[str]) -> int:
    base = {"protocol": HANDOFF_PROTOCOL, "protocolVersion": 1}
    if args[:1] == ["capabilities"]:
        print(dumps({"ok": True, **base, "operations": ["consume"]}))
        return 0
    if args[:1] != ["consume"]:
        log(f"error: unknown restart-handoff command {args[:1]}", err=True)
        return 1
    raw_pid = flag(args, "--expected-pid") or ""
    if not raw_pid.isdigit() or int(raw_pid) <= 0:
        print(dumps({"ok": False, **base, "status": "rejected", "reason": "invalid-expected-pid"}))
        return 2
    path = state_dir() / HANDOFF_FILE
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        record = None
    except ValueError:
        record = {}
    result: dict[str, Any] = {"status": "rejected"}
    if record is None:
        result = {"status": "none", "reason": "missing"}
    elif not isinstance(record, dict) or not isinstance(record.get("pid"), int):
        result["reason"] = "invalid"
    elif record["pid"] != int(raw_pid):
        result["reason"] = "pid-mismatch"
    elif now_ms() - int(record.get("createdAtMs", 0)) > HANDOFF_TTL_MS:
        result["reason"] = "expired"
    else:
        result = {"status": "accepted", "handoff": record}
    if record is not None:
        path.unlink(missing_ok=True)  # consumed either way, like the real single-use handoff row
    print(dumps({"ok": True, **base, **result}))
    return 0


def main(argv: list[str]) -> int:
    version = os.environ.get("FAKE_GW_VERSION", "2026.9.6")
    if argv[:1] in (["--version"], ["-V"]):
        print(f"OpenClaw {version} (fake)")
        return 0
    if argv[:1] != ["gateway"]:
        log(f"error: this fake openclaw only knows 'gateway' commands, got {argv}", err=True)
        return 1
    if argv[1:2] == ["restart-handoff"]:
        if not is_modern(version):
            log("error: unknown command 'restart-handoff'", err=True)
            return 1
        return handoff_cli(argv[2:])
    if len(argv) > 1 and argv[1] != "run" and not argv[1].startswith("-"):
        log(f"error: unsupported fake gateway command {argv[1]!r}", err=True)
        return 1
    if dump := os.environ.get("FAKE_GW_ENV_DUMP"):
        Path(dump).write_text(dumps(dict(os.environ)))
    if pid_file := os.environ.get("FAKE_GW_PID_FILE"):
        Path(pid_file).write_text(f"{os.getpid()}\n")
    if (code := os.environ.get("FAKE_GW_EXIT_AT_BOOT")) is not None:
        config = os.environ.get("OPENCLAW_CONFIG_PATH") or str(state_dir() / "openclaw.json")
        log(f"Invalid config at {config}:\n- gateway.port: Expected number, received string", err=True)
        return int(code)
    port = int(flag(argv, "--port") or os.environ.get("OPENCLAW_GATEWAY_PORT") or 18789)
    token = flag(argv, "--token") or os.environ.get("OPENCLAW_GATEWAY_TOKEN") or None
    log(f"[gateway] starting OpenClaw {version} (fake) pid={os.getpid()} port={port}")
    log(f"debug: auth token={token}" if token else "[gateway] no auth token configured: any token accepted")

    # Bare TCP connects (port probes) are normal here: keep websockets from logging a traceback for each.
    logging.getLogger("websockets.server").addFilter(lambda r: r.getMessage() != "opening handshake failed")

    async def amain() -> int:
        return await FakeGateway(port, version, token).run()

    return asyncio.run(amain())


if __name__ == "__main__":
    exit_code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code)  # no interpreter teardown: helper threads or children must not delay the exit
