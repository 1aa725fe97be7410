"""What the agents see after a restart, on the real gateways (issue 15), with the fake model's request
log as the witness: system events queued before a kill -9 reach the model once, in their order."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import VERSIONS, fake_model, real_gatewayd, sandbox
from tests.e2e.work import gateway_rpc
from tests.support.harness import Gatewayd, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def rows(g: Gatewayd, sql: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(f"file:{g.state_dir / 'store.sqlite'}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql)]
    finally:
        conn.close()


def delivered(log: Path, mark: str, since: float) -> list[list[str]]:
    """Per model request since `since` that carried any of this test's events: their texts in order."""
    found = []
    for e in fake_model.read_log(log):
        if e.get("ts", 0) < since:
            continue
        seen = re.findall(rf"System: \[[^\]]*\] (SE\d-{mark})", e.get("text", ""))
        if seen:
            found.append(seen)
    return found


async def queue_events(sb: sandbox.Sandbox, texts: list[str]) -> None:
    async with gateway_rpc(sb) as rpc:
        for text in texts:
            await rpc.call("system-event", {"text": text})


@pytest.mark.parametrize("version", VERSIONS)
def test_system_events_queued_before_a_kill9_reach_the_model_once_in_order(tmp_path: Path,
                                                                            model: tuple[int, Path],
                                                                            version: str) -> None:
    log = model[1]
    # 2026.2.26's `wake now` runs only heartbeat-enabled agents (measured): an interval that does
    # not come round within the test enables them.
    every = "60m" if version.startswith("2026.2") else "0m"
    g, sb = real_gatewayd(tmp_path, version, model[0], {"snapshot": {"interval_s": 2.0}}, heartbeat_every=every)
    mark = uuid.uuid4().hex[:8]
    texts = [f"SE1-{mark}", f"SE2-{mark}", f"SE1-{mark}"]
    try:
        g.start()
        g.wait_event("gateway_ready", timeout=240)
        g.wait_event("rpc_monitor_connected", timeout=60)
        t0 = time.time()
        asyncio.run(queue_events(sb, texts))
        wait_until(lambda: [r["text"] for r in rows(g, "SELECT text FROM queued_events WHERE boot_id = 1"
                                                       " ORDER BY pos")] == texts, 30, "the queue looked at")
        assert delivered(log, mark, t0) == []  # still queued: nothing has reached the model yet
        os.kill(g.spawned_pids()[-1], signal.SIGKILL)
        g.wait_event("gateway_ready", count=2, timeout=240)
        settled = wait_until(lambda: (r := rows(g, "SELECT kind, pos, state FROM requeues WHERE boot_id = 1"
                                                   " ORDER BY pos < 0, pos"))
                             and all(x["state"] not in ("planned", "dispatched") for x in r) and r, 180,
                             "every re-queue settled")
        assert [(r["kind"], r["state"]) for r in settled] == \
            [("system-event", "answered")] * 3 + [("wake", "answered")], settled
        wait_until(lambda: delivered(log, mark, t0), 90, "the events at the model")
        time.sleep(10)  # the witness: a window in which a second delivery would have shown up
        assert delivered(log, mark, t0) == [texts]
    finally:
        g.cleanup()
