"""A memory-pressure restart on the real gateways (2026.9.6 and 2026.2.26), with a limit every
gateway is over (1 MB): while a slow cron run is in flight, gatewayd asks the safe restart
(`restart --safe`'s path), the gateway drains within the stop budget (shorter than the run: the run
is cut), is restarted, and the run is recovered: exactly one retry at the model, none lost, none
doubled. The next gateway, over the limit at once, is not restarted again (cool-down). The metrics
endpoint shows the restart and the tree's RSS; the RSS measured is kept in the log
(`memory_pressure_restart`) for the README's suggested limit."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gatewayd_dev.harness import wait_until
from tests.e2e.conftest import VERSIONS, real_gatewayd, set_model_delay
from tests.e2e.test_recovery_real import asked, store_rows, wait_in_flight
from tests.e2e.work import add_hourly

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

WINDOW_S = 30.0  # long enough to put a run in flight after the gateway is ready (~5 s measured)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def figures(port: int) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {s.name: s.value for fam in text_string_to_metric_families(text) for s in fam.samples if not s.labels}


@pytest.mark.long
@pytest.mark.parametrize("version", VERSIONS)
def test_memory_pressure_restart_drains_restarts_and_recovers_the_cron_run(
        tmp_path: Path, model: tuple[int, Path], version: str) -> None:
    log = model[1]
    mport = free_port()
    settings = {"snapshot": {"interval_s": 2.0}, "recovery": {"backoff_initial_s": 3.0},
                "supervise": {"stop_budget_s": 5.0},
                "memory": {"limit_mb": 1, "window_s": WINDOW_S, "cooldown_s": 3600.0},
                "metrics": {"port": mport}}
    g, sb = real_gatewayd(tmp_path, version, model[0], settings)
    mark = uuid.uuid4().hex[:8]
    try:
        g.start()
        g.wait_event("gateway_ready", timeout=240)
        g.wait_event("rpc_monitor_connected", timeout=60)
        set_model_delay(90)  # the run lasts well past the restart (its timeout is 120 s)
        job_id = asyncio.run(add_hourly(sb, mark))
        wait_in_flight(g, log, job_id, f"CRON-{mark}")
        assert g.named("memory_pressure_restart") == [], "the restart came before the run was in flight"

        restart = g.wait_event("memory_pressure_restart", timeout=WINDOW_S + 30)
        assert restart["rss_bytes"] > restart["limit_bytes"] == 1024 * 1024 and restart["over_for_s"] >= WINDOW_S
        assert g.wait_event("planned_restart")["safe"] is True
        exited = g.wait_event("gateway_exited", timeout=60)
        assert exited["exit_kind"] == "planned-restart" and exited["needs_recovery"]
        set_model_delay(1)
        g.wait_event("gateway_ready", count=2, timeout=240)

        # The run: exactly one retry reaches the model, recorded as attempt 2.
        wait_until(lambda: len(asked(log, f"CRON-{mark}")) >= 2, 180, "gatewayd's retry at the model")
        ob = wait_until(lambda: store_rows(
            g, f"SELECT * FROM obligations WHERE kind = 'cron' AND ref = '{job_id}' AND state != 'open'"), 120,
            "the obligation resolved")
        assert ob[0]["state"] == "done" and ob[0]["reason"] == "planned-restart" and "attempt 2" in ob[0]["resolution"]
        rows = store_rows(g, "SELECT * FROM events WHERE kind = 'memory-pressure-restart'")
        assert len(rows) == 1 and json.loads(rows[0]["data"])["reason"] == "memory-pressure"
        assert [a["kind"] for a in store_rows(g, "SELECT kind FROM alerts")].count("memory-restart") == 1
        f = figures(mport)
        assert f["gatewayd_memory_restarts_total"] == 1 and f["gatewayd_gateway_ready"] == 1
        assert f["gatewayd_gateway_tree_rss_bytes"] > 10 * 1024 * 1024
        time.sleep(15)  # the witness window: no second retry, and no second memory restart (cool-down)
        assert len(asked(log, f"CRON-{mark}")) == 2
        assert len(g.named("memory_pressure_restart")) == 1 and len(g.spawned_pids()) == 2
    finally:
        set_model_delay(0.5)
        g.cleanup()
