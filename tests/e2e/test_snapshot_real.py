"""The snapshot on the real gateway: a slow isolated cron run and a main-session turn are in the
store within one poll interval, stay there marked interrupted after a kill -9 of the gateway, and
survive a kill -9 of gatewayd too. On 2026.9.x the run is also heard of from the gateway's `cron` event."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from gatewayd_dev.harness import Gatewayd, wait_until
from tests.e2e.conftest import VERSIONS, fake_model, real_gatewayd, sandbox, set_model_delay
from tests.e2e.work import add_job, gateway_rpc, main_turn, send_and_leave

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

POLL_S = 2.0


def rows(g: Gatewayd, table: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(f"file:{g.state_dir / 'store.sqlite'}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(f"SELECT * FROM {table}")]
    finally:
        conn.close()


async def start_work(sb: sandbox.Sandbox, mark: str) -> str:
    """A recurring isolated cron agentTurn fired now (cron.run), and a main-session turn, both left running."""
    async with gateway_rpc(sb) as rpc:
        job_id = await add_job(rpc, f"snap-{mark}", {"kind": "every", "everyMs": 3_600_000}, f"CRON-{mark} reply PONG")
        await send_and_leave(rpc, "cron.run", {"id": job_id, "mode": "force"})
        await send_and_leave(rpc, "agent", main_turn(f"MAIN-{mark} reply PONG"))
        return job_id


@pytest.mark.parametrize("version", VERSIONS)
def test_in_flight_work_is_snapshotted_and_survives_both_kills(tmp_path: Path, model: tuple[int, Path],
                                                               version: str) -> None:
    g, sb = real_gatewayd(tmp_path, version, model[0], {"snapshot": {"interval_s": POLL_S}})
    mark = uuid.uuid4().hex[:8]
    try:
        g.start()
        g.wait_event("gateway_ready", timeout=240)
        g.wait_event("rpc_monitor_connected", timeout=60)
        set_model_delay(20)
        job_id = asyncio.run(start_work(sb, mark))

        def both_asked() -> bool:
            texts = [e["text"] for e in fake_model.read_log(model[1])]
            return any(f"CRON-{mark}" in t for t in texts) and any(f"MAIN-{mark}" in t for t in texts)
        wait_until(both_asked, 60, "both requests at the model")
        asked_at = time.monotonic()

        def recorded() -> bool:
            runs = [r for r in rows(g, "inflight_runs") if r["job_id"] == job_id and r["state"] == "running"]
            main = [s for s in rows(g, "inflight_sessions") if s["key"] == "agent:main:main" and s["state"] == "active"]
            return bool(runs and main)
        wait_until(recorded, 30, "the cron run and the main-session turn in the store")
        assert time.monotonic() - asked_at <= POLL_S + 3.0  # within one poll interval (+ the poll itself)

        gateway_pid = g.spawned_pids()[-1]
        os.kill(gateway_pid, signal.SIGKILL)
        g.wait_event("gateway_exited")
        run = [r for r in rows(g, "inflight_runs") if r["job_id"] == job_id]
        main = [s for s in rows(g, "inflight_sessions") if s["key"] == "agent:main:main"]
        assert [r["state"] for r in run] == ["interrupted"]
        assert [s["state"] for s in main] == ["interrupted"]
        assert run[0]["payload_kind"] == "agentTurn" and run[0]["session_target"] == "isolated"
        # 2026.9.x's `cron` "started" event was understood and names the run as the polls do (one
        # row above, not two): a run killed before any poll is recorded from it. 2026.2.x's event
        # time is not the polls' key (its timer marks due jobs running at one instant, then starts
        # them one by one): its runs are left to the polls.
        heard = [e["running_at_ms"] for e in g.named("cron_run_started") if e["job_id"] == job_id]
        assert heard == ([run[0]["running_at_ms"]] if version == "2026.9.6" else [])

        g.procs[-1].kill()  # gatewayd too
        g.procs[-1].wait()
        before = (rows(g, "inflight_runs"), rows(g, "inflight_sessions"))
        g.start()
        g.wait_event("gateway_ready", count=2, timeout=240)
        after_runs = {(r["job_id"], r["running_at_ms"]): r["state"] for r in rows(g, "inflight_runs")}
        for r in before[0]:
            assert after_runs[(r["job_id"], r["running_at_ms"])] == r["state"]
        after_sessions = {(s["boot_id"], s["key"]): s["state"] for s in rows(g, "inflight_sessions")}
        for s in before[1]:
            assert after_sessions[(s["boot_id"], s["key"])] == s["state"]
        status = json.loads(g.run_cli("status", "-c", str(g.config_file), "--json").stdout)
        assert any(r["job_id"] == job_id and r["state"] == "interrupted" for r in status["inflight"]["runs"])
    finally:
        set_model_delay(0.5)
        g.cleanup()
