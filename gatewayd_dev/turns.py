"""Turns driven from tests: a main-session `agent` turn run to its end over one connection, or a turn
(an `agent` turn, a heartbeat) cut by a kill right after its end."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from gatewayd_dev import fake_model
from supervisor.gateway.rpc import Event, RpcClient

MAIN = "agent:main:main"


async def start_agent_turn(rpc: RpcClient, text: str) -> None:
    """An `agent` turn in the main session: it drains nothing (measured on both real versions)."""
    await rpc.call("agent", {"message": text, "idempotencyKey": uuid.uuid4().hex, "agentId": "main",
                             "sessionKey": MAIN})


async def heartbeat_then_queue(rpc: RpcClient, text: str, log: Path, texts: list[str], subscribe: bool,
                               timeout_s: float = 60) -> None:
    """A heartbeat (`wake` now, `text` its wake text) that drains the main session's queue, then
    `texts` queued while it runs: polled until its request reaches the fake model (`log`), so the
    drain is behind them. `subscribe`: hear its start and end, which 2026.9.6 shows only to the
    session's message subscribers."""
    if subscribe:
        await rpc.call("sessions.messages.subscribe", {"key": MAIN})
    since = time.time()
    await rpc.call("wake", {"mode": "now", "text": text})
    for _ in range(int(timeout_s / 0.02)):
        if any(text in e.get("text", "") and e.get("ts", 0) >= since for e in fake_model.read_log(log)):
            break
        await asyncio.sleep(0.02)
    for t in texts:
        await rpc.call("system-event", {"text": t})


def main_phase(ev: Event) -> tuple[str, dict[str, Any]] | None:
    """A main-session turn's lifecycle event: its phase and data; None for any other event."""
    p: Any = ev.payload if isinstance(ev.payload, dict) else {}
    data: Any = p.get("data") if isinstance(p.get("data"), dict) else {}
    if ev.name == "agent" and p.get("stream") == "lifecycle" and p.get("sessionKey") == MAIN:
        return str(data.get("phase")), data
    return None


async def main_turn_to_its_end(rpc: RpcClient, text: str, timeout_s: float = 120) -> int:
    """Runs an `agent` turn in the main session (it does not drain the system-event queue, measured on
    both real versions) and waits for its lifecycle end and then for the row's end: 2026.2.x writes
    the row a few ms after the event. Returns the row's `updatedAt`, which the end moved."""
    ended = asyncio.Event()
    end_ms: list[int] = []  # when the turn ended: the event's `endedAt`, else a little before its arrival
    before = rpc.on_event

    def on_event(ev: Event) -> None:
        phase, data = main_phase(ev) or ("", {})
        if phase == "end":
            at = data.get("endedAt")
            end_ms.append(at if isinstance(at, int) else int(time.time() * 1000) - 50)
            ended.set()
        if before is not None:
            before(ev)

    rpc.on_event = on_event
    try:
        await start_agent_turn(rpc, text)
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


def kill_at_a_main_end(rpc: RpcClient, pid: int) -> asyncio.Event:
    """kill -9 the gateway `pid` the moment `rpc` hears a main-session turn's end (a passive connection
    hears 2026.9.6's resume's end, not its start). Returns the event set once it has killed."""
    killed = asyncio.Event()
    before = rpc.on_event

    def on_event(ev: Event) -> None:
        phase, _ = main_phase(ev) or ("", {})
        if phase in ("end", "error") and not killed.is_set():
            os.kill(pid, signal.SIGKILL)
            killed.set()
        if before is not None:
            before(ev)

    rpc.on_event = on_event
    return killed


async def kill_right_after_its_end(rpc: RpcClient, pid: int, text: str, looked_again: Callable[[int], bool],
                                   kill_after_s: float = 0.0, timeout_s: float = 120,
                                   start: Callable[[RpcClient, str], Awaitable[None]] = start_agent_turn) -> int:
    """Runs a turn in the main session (`start`: an `agent` turn, which drains nothing) and kill -9s the
    gateway `pid` `kill_after_s` after hearing the turn's end. Before the end, `looked_again(start_ms)`
    (polled, the gateway's own start time) must say that gatewayd's look was taken again after the
    start: the turn must outlast it (the fake model's delay). Returns the end's time (the gateway's,
    ms)."""
    loop = asyncio.get_running_loop()
    started: list[int] = []
    ended: list[int] = []
    killed = asyncio.Event()
    before = rpc.on_event

    def on_event(ev: Event) -> None:
        phase, data = main_phase(ev) or ("", {})
        if phase == "start":  # the gateway's own time: this process may hear it late
            started.append(int(data.get("startedAt") or time.time() * 1000))
        elif phase in ("end", "error") and not killed.is_set():
            ended.append(int(data.get("endedAt") or time.time() * 1000))
            loop.call_later(kill_after_s, lambda: (os.kill(pid, signal.SIGKILL), killed.set()))
        if before is not None:
            before(ev)

    rpc.on_event = on_event
    try:
        await start(rpc, text)
        for _ in range(int(timeout_s / 0.02)):  # polled: what gatewayd stored
            if started and looked_again(started[0]):
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError(f"gatewayd did not look again after the turn's start within {timeout_s} s")
        assert not killed.is_set(), "the turn ended before gatewayd looked again: lengthen the model's delay"
        async with asyncio.timeout(timeout_s):
            await killed.wait()
        return ended[0]
    finally:
        rpc.on_event = before
