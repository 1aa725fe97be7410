"""Maintenance on the real gateways, with the fake model's request log as the witness:
- `gatewayd pause`, then kill -9 of the gateway mid cron run: no restart and no retry while paused;
  `gatewayd resume` starts it again and the interrupted run is retried exactly once;
- a `[[maintenance.restart]]` slot fires at its time: a safe restart (drained), once.
(The sleep across a slot runs in-process with the clock seam: tests/integration/test_maintenance_calendar.py.)
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from gatewayd_dev.harness import wait_until
from tests.e2e.conftest import VERSIONS, real_gatewayd, set_model_delay
from tests.e2e.test_recovery_real import asked, start_work, store_rows

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


@pytest.mark.parametrize("version", VERSIONS)
def test_paused_kill9_stays_down_and_resume_restarts_and_recovers(tmp_path: Path, model: tuple[int, Path],
                                                                  version: str) -> None:
    log = model[1]
    g, sb = real_gatewayd(tmp_path, version, model[0], {"snapshot": {"interval_s": 2.0},
                                                         "recovery": {"backoff_initial_s": 5.0}})
    mark = uuid.uuid4().hex[:8]
    try:
        g.start()
        g.wait_event("gateway_ready", timeout=240)
        g.wait_event("rpc_monitor_connected", timeout=60)
        set_model_delay(20)
        job_id = asyncio.run(start_work(sb, mark))
        wait_until(lambda: asked(log, f"CRON-{mark}"), 90, "the cron run at the model")
        wait_until(lambda: store_rows(g, f"SELECT 1 FROM inflight_runs WHERE job_id = '{job_id}'"), 30,
                   "the run in the snapshot")
        set_model_delay(1)
        paused = g.run_cli("pause", "-c", str(g.config_file))
        assert paused.returncode == 0 and "paused:  by cli" in paused.stdout, paused.stderr
        os.kill(g.spawned_pids()[-1], signal.SIGKILL)
        g.wait_event("supervision_state", where=lambda e: e.get("state") == "paused", timeout=60)
        status = g.run_cli("status", "-c", str(g.config_file)).stdout
        assert "state:   paused" in status and "paused:  by cli" in status
        time.sleep(10)  # the witness window: unpaused, gatewayd respawns at once (the first crash has no delay)
        assert len(g.spawned_pids()) == 1
        assert len(asked(log, f"CRON-{mark}")) == 1
        resumed = g.run_cli("resume", "-c", str(g.config_file))
        assert resumed.returncode == 0 and "resumed" in resumed.stdout
        g.wait_event("gateway_ready", count=2, timeout=240)
        wait_until(lambda: len(asked(log, f"CRON-{mark}")) >= 2, 180, "gatewayd's retry at the model")
        ob = wait_until(lambda: store_rows(
            g, f"SELECT * FROM obligations WHERE kind = 'cron' AND ref = '{job_id}' AND state != 'open'"),
            60, "the cron obligation resolved")
        assert ob[0]["state"] == "done" and "attempt 2" in ob[0]["resolution"], ob
        time.sleep(10)  # the witness window: a second retry would show here
        assert len(asked(log, f"CRON-{mark}")) == 2
    finally:
        set_model_delay(0.5)
        g.cleanup()


@pytest.mark.parametrize("version", VERSIONS)
def test_a_scheduled_restart_fires_at_its_slot_safely_once(tmp_path: Path, model: tuple[int, Path],
                                                           version: str) -> None:
    g, _ = real_gatewayd(tmp_path, version, model[0])
    try:
        g.start()
        g.wait_event("gateway_ready", timeout=240)
        first_pid = g.spawned_pids()[-1]
        # The slot: the next whole minute at least 30 s away. gatewayd is restarted (kill -9: its
        # gateway runs on and is adopted) to read the calendar, so the gateway's boot time never
        # decides whether the slot is still ahead.
        slot = (datetime.now() + timedelta(seconds=90)).replace(second=0, microsecond=0)
        g.write_config_sections({"maintenance": {"restart": [{"cron": f"{slot.minute} {slot.hour} * * *"}]}})
        g.procs[-1].kill()
        g.procs[-1].wait(10)
        g.start()
        g.wait_event("gateway_adopted", timeout=60)
        g.wait_event("maintenance_calendar_started", timeout=60)
        fired = g.wait_event("maintenance_fired", timeout=150)
        assert fired["outcome"] == "restart-requested" and 0 <= fired["late_s"] < 5, fired
        assert g.wait_event("planned_restart")["safe"] is True
        g.wait_event("gateway_ready", where=lambda e: e.get("pid") not in (None, first_pid), timeout=240)
        ended = store_rows(g, "SELECT exit_kind FROM boots WHERE ended_at IS NOT NULL")
        assert [e["exit_kind"] for e in ended] == ["planned-restart"]
        fires = store_rows(g, "SELECT data FROM events WHERE kind = 'maintenance-fire'")
        assert len(fires) == 1
        fire = json.loads(fires[0]["data"])
        assert (fire["slot"], fire["outcome"], fire["settled"]) == (slot.timestamp(), "restart-requested", True)
    finally:
        g.cleanup()
