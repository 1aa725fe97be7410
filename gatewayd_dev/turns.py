"""Turns driven from tests: a main-session `agent` turn run to its end over one connection."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from supervisor.gateway.rpc import Event, RpcClient

MAIN = "agent:main:main"


async def main_turn_to_its_end(rpc: RpcClient, text: str, timeout_s: float = 120) -> int:
    """Runs an `agent` turn in the main session (it does not drain the system-event queue, measured on
    both real versions) and waits for its lifecycle end and then for the row's end: 2026.2.x writes
    the row a few ms after the event. Returns the row's `updatedAt`, which the end moved."""
    ended = asyncio.Event()
    end_ms: list[int] = []  # when the turn ended: the event's `endedAt`, else a little before its arrival
    before = rpc.on_event

    def on_event(ev: Event) -> None:
        p: Any = ev.payload if isinstance(ev.payload, dict) else {}
        data = p.get("data") if isinstance(p.get("data"), dict) else {}
        if ev.name == "agent" and p.get("stream") == "lifecycle" and p.get("sessionKey") == MAIN \
                and data.get("phase") == "end":
            at = data.get("endedAt")
            end_ms.append(at if isinstance(at, int) else int(time.time() * 1000) - 50)
            ended.set()
        if before is not None:
            before(ev)

    rpc.on_event = on_event
    try:
        await rpc.call("agent", {"message": text, "idempotencyKey": uuid.uuid4().hex, "agentId": "main",
                                 "sessionKey": MAIN})
        await asyncio.wait_for(ended.wait(), timeout_s)
        async with asyncio.timeout(timeout_s):
            while True:
                rows = (await rpc.call("sessions.list", {}))["sessions"]
                row = next((r for r in rows if r.get("key") == MAIN), {})
                if row.get("status") != "running" and int(row.get("updatedAt") or 0) >= end_ms[0]:
                    return int(row["updatedAt"])
                await asyncio.sleep(0.05)
    finally:
        rpc.on_event = before
