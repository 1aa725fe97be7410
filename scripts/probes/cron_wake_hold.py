#!/usr/bin/env python3
"""Real 2026.9.x, research section 17: does a heartbeat woken by a main-session cron job keep the
texts it shows the model queued until its end (so that a look during it lists texts the model has)?

Needs a lab gateway (`lab.py up 2026.9.6 --heartbeat 60m --fresh`, same LABDIR). Per round: one
ordinary `system-event` (ORD), then a main-session cron job (payload `systemEvent` CRN, wake now)
run at once with `cron.run`; one connection polls `status` and another `sessions.list` back to back,
a third is subscribed to the main session and notes its lifecycle events. Prints one JSON line per
round, times in ms after `cron.run` was asked:
  listed        [first, last] poll that listed ORD / CRN
  start / end   the heartbeat run's lifecycle start and end, as the subscriber heard them
  model         when the fake model received a request holding ORD / CRN
  row           the row's startedAt, endedAt, updatedAt after the round

usage: LABDIR=... .venv/bin/python scripts/probes/cron_wake_hold.py ROUNDS
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lab
from drain_order import KEY, now, poll_status  # the probes beside this file

from supervisor.gateway.rpc import Event, list_sessions


async def one_round(i: int, st: dict[str, Any]) -> dict[str, Any]:
    heard: list[tuple[int, str, Any]] = []

    def on_event(ev: Event) -> None:
        p = ev.payload if isinstance(ev.payload, dict) else {}
        d = p.get("data") if isinstance(p.get("data"), dict) else {}
        if ev.name == "agent" and p.get("stream") == "lifecycle":
            heard.append((now(), str(d.get("phase")), {k: v for k, v in d.items() if k != "startedAt"}))
        elif ev.name == "heartbeat":
            heard.append((now(), "heartbeat-event", p.get("reason")))

    a, c = await lab._rpc(st), await lab._rpc(st)
    sub = await lab._rpc(st)
    sub.on_event = on_event
    await sub.call("sessions.messages.subscribe", {"key": KEY})
    looks: list[tuple[int, int, str]] = []
    stop = asyncio.Event()
    poller = asyncio.create_task(poll_status(a, looks, stop))
    tag = f"{i}-{now()}"
    ordinary, cron = f"ORD{tag}", f"CRN{tag}"
    job = await c.call("cron.add", {"name": f"hold-{tag}", "schedule": {"kind": "every", "everyMs": 3_600_000},
                                    "sessionTarget": "main", "wakeMode": "now",
                                    "payload": {"kind": "systemEvent", "text": cron}})
    job_id = job["id"] if "id" in job else job["job"]["id"]
    await c.call("system-event", {"text": ordinary})
    await asyncio.sleep(0.3)
    asked = now()
    await c.call("cron.run", {"id": job_id, "mode": "force"})
    await asyncio.sleep(14)
    stop.set()
    await poller
    rows = await list_sessions(c, True)
    row = next((r for r in rows if r.get("key") == KEY), {})
    await c.call("cron.remove", {"id": job_id})
    for rpc in (a, c, sub):
        await rpc.close()

    def listed(text: str) -> list[int] | None:
        times = [sent - asked for sent, _, queue in looks if text in queue]
        return [min(times), max(times)] if times else None

    def model(text: str) -> list[int]:
        return [int(r["ts"] * 1000) - asked for r in lab.read_reqs() if text in json.dumps(r["messages"])]

    return {"round": i, "listed": {"ORD": listed(ordinary), "CRN": listed(cron)},
            "lifecycle": [(t - asked, phase, x) for t, phase, x in heard],
            "model": {"ORD": model(ordinary), "CRN": model(cron)},
            "row": {k: (row[k] - asked if isinstance(row.get(k), int) else row.get(k))
                    for k in ("startedAt", "endedAt", "updatedAt", "status")}}


async def main() -> None:
    st = lab._state()
    (lab.LABDIR / "model.delay").write_text("4\n")
    warm = await lab._rpc(st)
    await warm.call("chat.send", {"sessionKey": KEY, "message": "warm reply PONG", "idempotencyKey": f"w{now()}"})
    await warm.close()
    await asyncio.sleep(7)
    for i in range(int(sys.argv[1])):
        print(json.dumps(await one_round(i, st)), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
