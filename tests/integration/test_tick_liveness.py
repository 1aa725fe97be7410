"""A connection whose server stops sending `tick` (and anything else) is dead even when TCP has not
noticed: the monitor closes it after twice the tick interval, and reconnects."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

from supervisor.gateway.launch import GatewayAuth, Secret
from supervisor.gateway.rpc import RpcClient
from supervisor.monitor import tick_watch


async def silent_after_hello(ws: ServerConnection) -> None:
    await ws.send(json.dumps({"type": "event", "event": "connect.challenge", "payload": {"nonce": "n", "ts": 1}}))
    req: dict[str, Any] = json.loads(await ws.recv())
    hello = {"type": "hello-ok", "protocol": 4, "server": {"version": "2026.9.6", "connId": "c"},
             "features": {"methods": [], "events": []}, "auth": {"scopes": req["params"]["scopes"]},
             "policy": {"tickIntervalMs": 200}}
    await ws.send(json.dumps({"type": "res", "id": req["id"], "ok": True, "payload": hello}))
    await ws.wait_closed()  # alive at the TCP level, silent at the protocol level, until the client leaves


async def test_a_silent_connection_is_closed_after_twice_the_tick_interval(tmp_path: Path) -> None:
    async with serve(silent_after_hello, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        rpc = RpcClient(f"ws://127.0.0.1:{port}/", GatewayAuth("token", Secret("t" * 32), "", False), 4)
        hello = await rpc.connect()
        t0 = time.monotonic()
        await asyncio.wait_for(tick_watch(rpc, hello.tick_interval_ms), 10)
        waited = time.monotonic() - t0
        assert rpc.closed.is_set()
        assert 0.4 <= waited <= 6.5  # 2 x 200 ms + the 5 s margin, never before twice the interval
