"""Maintenance on the fake gateway's world: `pause` then `kill -9` leaves the gateway down (no
restart, no recovery) and `resume` restarts it and recovers the interrupted cron run once; a pause
survives a restart of gatewayd; a scheduled restart fires at its slot, safe, once."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gatewayd_dev.harness import Gatewayd, fake_settings, gatewayd, wait_until
from tests.integration.test_faults import add_hourly, asked, model, retried_once, table, world_settings

pytestmark = pytest.mark.timeout(150)


def fires(g: Gatewayd) -> list[dict[str, Any]]:
    import json
    conn = sqlite3.connect(f"file:{g.state_dir / 'store.sqlite'}?mode=ro", uri=True)
    try:
        return [json.loads(d) for (d,) in conn.execute("SELECT data FROM events WHERE kind = 'maintenance-fire'")]
    finally:
        conn.close()


def cli(g: Gatewayd, *args: str) -> str:
    out = g.run_cli(*args, "-c", str(g.config_file))
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize("version", ["2026.9.6", "2026.2.26"])
def test_paused_kill_is_not_restarted_and_resume_restarts_and_recovers(tmp_path: Path, version: str) -> None:
    with model(tmp_path) as (model_port, log, delay), gatewayd(tmp_path, None) as g:
        g.write_config_sections(world_settings(tmp_path, version, model_port, g.port))
        mark = uuid.uuid4().hex[:8]
        g.start()
        g.wait_event("rpc_monitor_connected")
        # Long enough that the pause (a CLI process) and the kill land while the run is in flight, on
        # a loaded machine too (3 s was not, beside two chaos runs: the run finished first).
        delay.write_text("15\n")
        asyncio.run(add_hourly(g.port, version, mark))
        wait_until(lambda: asked(log, f"CRON-{mark}") == 1, 20, "the run at the model")
        g.wait_event("inflight_changed", where=lambda e: bool(e.get("runs_started")))
        delay.write_text("0.2\n")
        assert "paused:  by cli, until `gatewayd resume`" in cli(g, "pause")
        os.kill(g.spawned_pids()[-1], signal.SIGKILL)
        g.wait_event("gateway_exited")
        g.wait_event("supervision_state", where=lambda e: e.get("state") == "paused")
        status = g.run_cli("status", "-c", str(g.config_file))
        assert status.returncode == 1  # degraded: not supervising
        assert "state:   paused" in status.stdout and "paused:  by cli" in status.stdout
        time.sleep(3.0)  # the witness window: unpaused, the fake respawns within 0.5 s and retries within 1 s
        assert len(g.spawned_pids()) == 1
        assert asked(log, f"CRON-{mark}") == 1
        assert [r["state"] for r in table(g, "inflight_runs")] == ["interrupted"]  # recorded: nothing is lost
        alerts = wait_until(lambda: [(a["kind"], a["held_because"]) for a in table(g, "alerts")
                                     if a["kind"] == "down"], 10, "the down alert decided")
        assert alerts == [("down", "paused")]  # muted; the "paused" alert itself was sent
        assert [a["held_because"] for a in table(g, "alerts") if a["kind"] == "paused"] == [None]
        assert "resumed" in cli(g, "resume")
        g.wait_event("gateway_ready", count=2)
        assert retried_once(g, log, mark)["state"] == "done"
        g.procs[-1].send_signal(signal.SIGTERM)
        assert g.procs[-1].wait(30) == 0


def test_a_pause_outlives_a_restart_of_gatewayd_and_ends_at_its_time(tmp_path: Path) -> None:
    with gatewayd(tmp_path, fake_settings()) as g:
        g.start()
        g.wait_event("gateway_ready")
        cli(g, "pause", "--for", "6s")
        g.procs[-1].kill()  # gatewayd gone; its gateway runs on and is adopted
        g.procs[-1].wait(10)
        os.kill(g.spawned_pids()[-1], signal.SIGKILL)  # and the gateway is gone too
        g.start()
        g.wait_event("still_paused")
        g.wait_event("supervision_state", where=lambda e: e.get("state") == "paused")
        assert len(g.spawned_pids()) == 1  # nothing started while the pause lasts
        g.wait_event("supervision_resumed", where=lambda e: e.get("by") == "expired", timeout=20)
        g.wait_event("gateway_ready", count=2)
        g.procs[-1].send_signal(signal.SIGTERM)
        assert g.procs[-1].wait(30) == 0


def test_a_scheduled_restart_fires_at_its_slot_safely_once(tmp_path: Path) -> None:
    with gatewayd(tmp_path, fake_settings()) as g:
        g.start()
        g.wait_event("gateway_ready")
        # The next whole minute at least 20 s away: the slot of a "M H * * *" line.
        slot = (datetime.now() + timedelta(seconds=80)).replace(second=0, microsecond=0)
        g.write_config_sections({"maintenance": {"restart": [{"cron": f"{slot.minute} {slot.hour} * * *"}]}})
        g.procs[-1].send_signal(signal.SIGTERM)
        assert g.procs[-1].wait(30) == 0
        g.start()
        g.wait_event("maintenance_calendar_started")
        fired = g.wait_event("maintenance_fired", timeout=100)
        assert fired["outcome"] == "restart-requested" and fired["late_s"] < 5
        restart = g.wait_event("planned_restart")
        assert restart["safe"] is True
        g.wait_event("gateway_ready", count=3)  # first run, second run's start, the restart
        assert [(f["kind"], f["outcome"]) for f in fires(g)] == [("restart", "restart-requested")]
        assert fires(g)[0]["slot"] == slot.timestamp()
        g.procs[-1].send_signal(signal.SIGTERM)
        assert g.procs[-1].wait(30) == 0


def test_an_operators_restart_while_paused_starts_the_gateway_again(tmp_path: Path) -> None:
    with gatewayd(tmp_path, fake_settings()) as g:
        bad = g.run_cli("pause", "--for", "soon", "-c", str(g.config_file))
        assert bad.returncode == 2 and "--for 'soon' is not a duration" in bad.stderr
        g.start()
        g.wait_event("gateway_ready")
        cli(g, "pause", "--for", "1h")
        cli(g, "restart", "--now")
        g.wait_event("gateway_ready", count=2)
        status = g.run_cli("status", "-c", str(g.config_file)).stdout
        assert "paused:  by cli, until " in status and "state:   running" in status
        assert "resumed: supervising again" in cli(g, "resume")
        assert "not paused" in cli(g, "resume")
        g.procs[-1].send_signal(signal.SIGTERM)
        assert g.procs[-1].wait(30) == 0
