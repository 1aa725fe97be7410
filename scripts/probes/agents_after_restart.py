#!/usr/bin/env python3
"""Replay the core measurements of docs/research/agents-after-restart.md on one real gateway version.

  .venv/bin/python scripts/probes/agents_after_restart.py 2026.9.6 [--heartbeat 0m|60m]
  .venv/bin/python scripts/probes/agents_after_restart.py 2026.2.26 --heartbeat 60m

Starts ONE sandboxed gateway (agents main + kit, loopback, fresh root under
.cache/probes/replay-<version>-<heartbeat>) and the fake model, then checks, by the fake model's
request log and RPC answers:
  q1_queue       status.queuedSystemEvents after system-event/wake next-heartbeat (which sessions, dedupe)
  q1_restart     the queue after kill -9 + restart
  q1_redeliver   re-enqueued events + one wake now: in order as System: lines in one model request?
  q2_agent       does an `agent` turn drain the queue? (expect no)
  q2_chat_send   does a `chat.send` turn drain it? (expect yes)
  q2_event_wake  does system-event {wake:true} start a turn?
  q4_cron_retry  cron.update message -> cron.run force -> restore: text seen by the model, restore exact
Prints one JSON object; the gateway and the model are always killed at the end (process groups).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("version")
    p.add_argument("--heartbeat", default="0m")
    a = p.parse_args()
    labdir = HERE.parents[1] / ".cache" / "probes" / f"replay-{a.version}-{a.heartbeat}"
    if labdir.exists():
        shutil.rmtree(labdir)
    os.environ["LABDIR"] = str(labdir)
    import lab

    legacy = a.version.startswith("2026.2")
    st: dict = {}
    out: dict = {"version": a.version, "heartbeat": a.heartbeat}
    try:
        labdir.mkdir(parents=True)
        lab._start_model(st)
        st.update(version=a.version, heartbeat=a.heartbeat, agents=["main", "kit"],
                  gw_port=lab.free_port_block(), token="gw-probe-token-0123456789abcdef",
                  hook_token="hook-probe-token-0123456789abcdef", cfg_patch=None)
        lab._save(st)
        lab._start_gateway(st)

        async def call(method: str, params: dict, timeout: float = 60) -> object:  # noqa: ASYNC109
            rpc = await lab._rpc(st)
            try:
                return await rpc.call(method, params, timeout_s=timeout)
            except Exception as exc:
                return {"error": f"{type(exc).__name__}: {exc}"}
            finally:
                await rpc.close()

        def c(method: str, params: dict, timeout: float = 60) -> object:
            return asyncio.run(call(method, params, timeout))

        def queue() -> list:
            s = c("status", {})
            return s.get("queuedSystemEvents") if isinstance(s, dict) else s

        def wait_req(marker: str, after: int, budget: float = 15) -> dict | None:
            t0 = time.time()
            while time.time() - t0 < budget:
                for r in lab.read_reqs()[after:]:
                    if marker in r["text"]:
                        return r
                time.sleep(0.5)
            return None

        def nreq() -> int:
            return len(lab.read_reqs())

        def system_lines(r: dict | None) -> list[str]:
            return re.findall(r"System: \[[^\]]+\] ([^\n\"\\]+)", r["text"]) if r else []

        # a first turn in each main session, so both rows exist (9.6's system-event wake needs one)
        for agent in ("main", "kit"):
            c("agent", {"message": f"WARMUP {agent}", "idempotencyKey": f"warm-{agent}-{time.time()}",
                        "agentId": agent, "sessionKey": f"agent:{agent}:main"})
            wait_req(f"WARMUP {agent}", 0)
        time.sleep(2)

        # q1: the queue and where it shows
        for t, k in (("Q1-A", "agent:main:main"), ("Q1-A", "agent:main:main"), ("Q1-B", "agent:main:main"),
                     ("Q1-C kit", "agent:kit:main"), ("Q1-D other", "agent:main:other")):
            c("system-event", {"text": t, "sessionKey": k})
        c("wake", {"mode": "next-heartbeat", "text": "Q1-E next-heartbeat"})
        out["q1_queue"] = queue()
        lab._kill_group(st["gw_pgid"])
        lab._start_gateway(st)
        out["q1_restart"] = queue()

        # re-enqueue and one wake now
        for t in ("Q1R-1", "Q1R-2", "Q1R-1"):
            c("system-event", {"text": t, "sessionKey": "agent:main:main"})
        n = nreq()
        wake = {"mode": "now", "text": "Q1R-3 wake"}
        if not legacy:
            wake["sessionKey"] = "agent:main:main"
        out["q1_wake_answer"] = c("wake", wake)
        r = wait_req("Q1R-1", n)
        out["q1_redeliver"] = {"turn": r is not None, "system_lines": system_lines(r),
                               "queue_after": queue()}

        # q2: agent vs chat.send vs system-event wake:true
        time.sleep(31)  # 9.6 rate-limits event-driven heartbeat turns (>= 30 s apart)
        c("system-event", {"text": "Q2-QUEUED", "sessionKey": "agent:main:main"})
        n = nreq()
        c("agent", {"message": "Q2-AGENT turn", "idempotencyKey": f"q2a-{time.time()}", "agentId": "main",
                    "sessionKey": "agent:main:main"})
        r = wait_req("Q2-AGENT turn", n)
        out["q2_agent"] = {"turn": r is not None, "carried_queued": bool(r and "Q2-QUEUED" in r["text"]),
                           "queue_after": queue()}
        time.sleep(2)
        n = nreq()
        c("chat.send", {"sessionKey": "agent:main:main", "message": "Q2-CHATSEND turn",
                        "idempotencyKey": f"q2c-{time.time()}"})
        r = wait_req("Q2-CHATSEND turn", n)
        out["q2_chat_send"] = {"turn": r is not None, "carried_queued": bool(r and "Q2-QUEUED" in r["text"]),
                               "queue_after": queue()}
        time.sleep(31)
        n = nreq()
        ans = c("system-event", {"text": "Q2-NOTICE wake true", "sessionKey": "agent:main:main", "wake": True})
        r = wait_req("Q2-NOTICE wake true", n)
        out["q2_event_wake"] = {"answer": ans, "turn": r is not None, "queue_after": queue()}
        if r is None:
            c("chat.send", {"sessionKey": "agent:main:main", "message": "drain", "idempotencyKey": f"d-{time.time()}"})
            time.sleep(3)

        # q4: cron.update -> cron.run -> restore
        job = c("cron.add", {"name": "q4", "schedule": {"kind": "every", "everyMs": 3600000,
                                                        "anchorMs": int(time.time() * 1000) + 10**11},
                             "sessionTarget": "isolated", "delivery": {"mode": "none"},
                             "payload": {"kind": "agentTurn", "message": "Q4-BASE message", "timeoutSeconds": 120}})
        jid = job.get("id") or job["job"]["id"]
        before = next(j for j in c("cron.list", {"includeDisabled": True})["jobs"] if j["id"] == jid)
        c("cron.update", {"id": jid, "patch": {"payload": {"kind": "agentTurn",
                                                           "message": "[RETRY 1/3] Q4-BASE message"}}})
        n = nreq()
        run = c("cron.run", {"id": jid, "mode": "force"}, timeout=120)
        c("cron.update", {"id": jid, "patch": {"payload": {"kind": "agentTurn", "message": "Q4-BASE message"}}})
        r = wait_req("Q4-BASE message", n, 30)
        after = next(j for j in c("cron.list", {"includeDisabled": True})["jobs"] if j["id"] == jid)
        out["q4_cron_retry"] = {
            "run_answer": run, "model_saw_retry_text": bool(r and "[RETRY 1/3]" in r["text"]),
            "payload_restored": after["payload"] == before["payload"],
            "configRevision_same": after.get("configRevision") == before.get("configRevision"),
            "nextRunAtMs_before_after": [before.get("state", {}).get("nextRunAtMs"),
                                         after.get("state", {}).get("nextRunAtMs")]}
    finally:
        lab._kill_group(st.get("gw_pgid"))
        lab._kill_group(st.get("model_pid"))
    print(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
