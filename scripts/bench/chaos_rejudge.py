#!/usr/bin/env python3
"""Judge a kept chaos run again from its files: the model's request and answer logs, the gateway
kill times, gatewayd's store (and the run history where saved). The work items are read back from
the request log (job ids and marks). Used after a change to the judge, on runs that took an hour.

    python scripts/bench/chaos_rejudge.py DIR VERSION fake|real
"""
import json
import random
import re
import sys
from pathlib import Path

import chaos

from gatewayd_dev import fake_model
from gatewayd_dev.chaos_judge import HOURLY_MANUAL, HOURLY_TIMER, MINUTE, ONE_SHOT, CronItem, TurnItem

root, version, target = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
pace = chaos.REAL_PACE if target == "real" else chaos.FAKE_PACE
c = chaos.Chaos(target, version, root, random.Random(0), pace)


class G:
    state_dir = root / "gatewayd state"


c.g = G()  # type: ignore[assignment]
c.tally.gateway_kill_times = json.loads((root / "gateway-kills.json").read_text())
hist = root / "run-history.json"
c.entries = json.loads(hist.read_text()) if hist.exists() else {}
items, turns = {}, {}
kinds = {"T": HOURLY_TIMER, "M": HOURLY_MANUAL, "O": ONE_SHOT}
for e in fake_model.read_log(root / "model.jsonl"):
    new = chaos.new_input(e.get("messages"))
    m = re.search(r"\[cron:([0-9a-f-]{36}) [^\]]*\] (\S+) reply PONG", new)
    if m:
        job, mark = m.group(1), m.group(2)
        kind = MINUTE if mark.startswith("K") else kinds.get(mark[4], HOURLY_TIMER) if mark.startswith("C") else None
        if kind:
            items.setdefault(job, CronItem(job, mark, kind))
    for t in re.finditer(r"AGENT-(main|ops) ((?:warm|C\d{3}S)(?:main|ops)[0-9a-f]{4,6})", new):
        turns.setdefault(t.group(2), TurnItem(t.group(1), t.group(2), f"AGENT-{t.group(1)}"))
c.cron_items, c.turns = list(items.values()), list(turns.values())
c.collect_runs = lambda ids: None
v = c.verdict()
print(json.dumps({k: getattr(v, k) for k in ("interrupted_runs", "ambiguous_runs", "lost", "doubled", "adopted",
      "given_up", "unobserved", "interrupted_sessions", "notified", "woken")} | {"notified_pct": v.notified_pct,
      "woken_pct": v.woken_pct, "items": len(c.cron_items) + len(c.turns)}))
for f in v.findings:
    print(" ", f[:300])
