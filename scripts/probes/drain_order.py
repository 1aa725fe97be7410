#!/usr/bin/env python3
"""Real 2026.9.x, research section 15: when a main session's queued system events are taken,
against the row's `startedAt` of the run that took them and that run's model request.

Needs a lab gateway (`lab.py up 2026.9.6 --heartbeat 60m --fresh`, same LABDIR). Per round: one
`system-event`, then a `chat.send` or a `wake` (mode now) into `agent:main:main`, while two more
connections poll `status` and `sessions.list` as fast as they answer. Prints one JSON line per
round, times in ms after the turn was asked for:
  drain_after / drain_before  the last poll that still listed the event was sent / the first that
                              no longer did was answered (the drain lies between)
  started_at                  the new run's `startedAt` (and row_seen_at: when a poll first showed it)
  model_request               when the fake model received the request holding the event

usage: LABDIR=... .venv/bin/python scripts/probes/drain_order.py chat,wake ROUNDS
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lab

from supervisor.gateway.rpc import RpcClient, list_sessions

KEY = "agent:main:main"


def now() -> int:
    return int(time.time() * 1000)


async def poll_status(rpc: RpcClient, out: list[tuple[int, int, str]], stop: asyncio.Event) -> None:
    while not stop.is_set():
        sent = now()
        answer = await rpc.call("status", {})
        out.append((sent, now(), json.dumps(answer.get("queuedSystemEvents"))))


async def poll_rows(rpc: RpcClient, out: list[tuple[int, int, Any]], stop: asyncio.Event) -> None:
    while not stop.is_set():
        sent = now()
        rows = await list_sessions(rpc, True)
        row = next((r for r in rows if r.get("key") == KEY), {})
        out.append((sent, now(), row.get("startedAt")))


async def one_round(i: int, kind: str, st: dict[str, Any]) -> dict[str, Any]:
    a, b, c = await lab._rpc(st), await lab._rpc(st), await lab._rpc(st)
    looks: list[tuple[int, int, str]] = []
    rows: list[tuple[int, int, Any]] = []
    stop = asyncio.Event()
    pollers = [asyncio.create_task(poll_status(a, looks, stop)), asyncio.create_task(poll_rows(b, rows, stop))]
    await asyncio.sleep(0.5)
    marker = f"EVT{i}-{kind}-{now()}"
    await c.call("system-event", {"text": marker})
    await asyncio.sleep(0.3)
    asked = now()
    if kind == "chat":
        await c.call("chat.send", {"sessionKey": KEY, "message": f"M{i} reply PONG", "idempotencyKey": marker})
    else:
        await c.call("wake", {"mode": "now", "text": f"WAKE{i}"})
    await asyncio.sleep(4.5)
    stop.set()
    await asyncio.gather(*pollers)
    for rpc in (a, b, c):
        await rpc.close()
    listed = [sent for sent, _, queue in looks if marker in queue]
    last_listed = max(listed) if listed else 0
    gone = [got for sent, got, queue in looks if marker not in queue and sent > last_listed]
    first_seen: dict[int, int] = {}
    for _, got, started in rows:
        if isinstance(started, int) and started >= asked - 100 and started not in first_seen:
            first_seen[started] = got
    requests = [r for r in lab.read_reqs() if marker in json.dumps(r["messages"])]
    return {"round": i, "kind": kind, "drain_after": last_listed - asked if listed else None,
            "drain_before": min(gone) - asked if gone else None,
            "started_at": [s - asked for s in first_seen], "row_seen_at": [g - asked for g in first_seen.values()],
            "model_request": int(requests[0]["ts"] * 1000) - asked if requests else None}


async def main() -> None:
    st = lab._state()
    (lab.LABDIR / "model.delay").write_text("2\n")
    warm = await lab._rpc(st)
    await warm.call("chat.send", {"sessionKey": KEY, "message": "warm reply PONG", "idempotencyKey": f"w{now()}"})
    await warm.close()
    await asyncio.sleep(5)  # a session's first run leaves startedAt unset while it runs (section 7)
    kinds = sys.argv[1].split(",")
    for i in range(int(sys.argv[2])):
        print(json.dumps(await one_round(i, kinds[i % len(kinds)], st)), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
