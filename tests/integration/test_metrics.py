"""The metrics endpoint over the fake gateway's world: scraped, parsed with prometheus_client's own
text parser, every figure present and each moving when its event happens; `status --json` carries
the same figures. And the memory-pressure restart with a tiny limit: one safe restart, recorded,
alerted, its cron run retried exactly once, no restart loop."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gatewayd_dev.harness import fake_settings, gatewayd, wait_until
from tests.integration.test_faults import add_hourly, asked, model, obligations, retried_once, table, world_settings

pytestmark = pytest.mark.timeout(180)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
FIGURES = ("gatewayd_gateway_up", "gatewayd_gateway_ready", "gatewayd_restarts_total", "gatewayd_crash_loop",
           "gatewayd_probe_seconds_count", "gatewayd_time_to_ready_seconds_count",
           "gatewayd_last_time_to_ready_seconds", "gatewayd_inflight_sessions", "gatewayd_inflight_cron_runs",
           "gatewayd_recovery_actions", "gatewayd_retries_pending", "gatewayd_retries_given_up_total",
           "gatewayd_alerts", "gatewayd_memory_restarts_total", "gatewayd_gateway_tree_rss_bytes",
           "gatewayd_store_write_seconds_count")
# A notifier that takes "down" alerts and refuses every other: both "sent" and "failed" happen.
PICKY = "import json, sys; sys.exit(0 if json.load(sys.stdin)['kind'] == 'down' else 3)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> Samples:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.TransportError:  # not serving yet
        return {}
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def value(port: int, name: str, **labels: str) -> float:
    return scrape(port).get((name, tuple(sorted(labels.items()))), 0.0)


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


def wait_figure(port: int, name: str, pred: Callable[[float], bool], what: str, timeout: float = 30,
                **labels: str) -> float:
    def moved() -> tuple[float] | None:
        v = value(port, name, **labels)
        return (v,) if pred(v) else None
    return float(wait_until(moved, timeout, f"{name}{labels or ''} {what}", step=0.2)[0])


def scrape_ready(port: int) -> Samples | None:
    s = scrape(port)
    return s if s.get(("gatewayd_gateway_ready", ())) == 1 else None


def test_every_figure_is_served_and_moves_with_its_event(tmp_path: Path) -> None:
    mport = free_port()
    mark, give = uuid.uuid4().hex[:8], uuid.uuid4().hex[:8]
    with model(tmp_path) as (model_port, log, delay), gatewayd(tmp_path, None) as g:
        settings = world_settings(tmp_path, "2026.9.6", model_port, g.port)
        # the retry waits 8 s, so "pending" is seen open before it is sent; the second job is never retried
        settings["recovery"] |= {"backoff_initial_s": 8.0, "jobs": {f"hourly-{give}": {"max_attempts": 1}}}
        settings |= {"metrics": {"port": mport},
                     "alerts": {"notify": [{"kind": "command", "name": "picky", "command": [sys.executable, "-c",
                                                                                           PICKY]}],
                                "retry_attempts": 1, "recovered_after_s": 1.0}}
        g.write_config_sections(settings)
        g.start()
        g.wait_event("rpc_monitor_connected")
        first: Samples = wait_until(lambda: scrape_ready(mport), 30, "ready on the endpoint")
        assert set(FIGURES) - {"gatewayd_restarts_total", "gatewayd_recovery_actions",
                               "gatewayd_alerts"} <= names(first), sorted(names(first))
        assert first[("gatewayd_gateway_up", ())] == 1
        assert first[("gatewayd_time_to_ready_seconds_count", ())] == 1
        assert first[("gatewayd_last_time_to_ready_seconds", ())] > 0
        wait_figure(mport, "gatewayd_gateway_tree_rss_bytes", lambda v: v > 1_000_000, "sampled")
        assert first[("gatewayd_crash_loop", ())] == 0 and first[("gatewayd_retries_pending", ())] == 0
        wait_figure(mport, "gatewayd_probe_seconds_count", lambda v: v >= 2, "probed", outcome="ok")
        writes = value(mport, "gatewayd_store_write_seconds_count")
        assert writes > 0

        delay.write_text("3\n")
        asyncio.run(add_hourly(g.port, "2026.9.6", mark))
        asyncio.run(add_hourly(g.port, "2026.9.6", give))
        wait_until(lambda: asked(log, f"CRON-{mark}") == 1 and asked(log, f"CRON-{give}") == 1, 20, "both runs")
        wait_figure(mport, "gatewayd_inflight_cron_runs", lambda v: v == 2, "both in flight")
        wait_figure(mport, "gatewayd_inflight_sessions", lambda v: v >= 1, "their sessions in flight")
        assert value(mport, "gatewayd_store_write_seconds_count") > writes  # the snapshots were written
        delay.write_text("0.2\n")
        os.kill(g.spawned_pids()[-1], signal.SIGKILL)

        wait_figure(mport, "gatewayd_restarts_total", lambda v: v == 1, "counted", classification="crash")
        # both open until the 8 s backoff ends (then one is given up, the other retried): 1 may last
        # less than the 5 s between store reads
        wait_figure(mport, "gatewayd_retries_pending", lambda v: v >= 1, "open")
        wait_figure(mport, "gatewayd_retries_given_up_total", lambda v: v == 1, "given up")
        retried_once(g, log, mark)
        wait_figure(mport, "gatewayd_retries_pending", lambda v: v == 0, "closed")
        wait_figure(mport, "gatewayd_recovery_actions", lambda v: v == 1, "the retry",
                    kind="cron-run", result="answered")
        wait_figure(mport, "gatewayd_alerts", lambda v: v >= 1, "the down alert sent", result="sent")
        wait_figure(mport, "gatewayd_alerts", lambda v: v >= 1, "another alert refused", result="failed")
        assert value(mport, "gatewayd_time_to_ready_seconds_count") == 2
        assert value(mport, "gatewayd_inflight_cron_runs") == 0

        out = g.run_cli("status", "--json", "-c", str(g.config_file))
        figures = json.loads(out.stdout)["metrics"]
        assert set(FIGURES) <= set(figures), sorted(set(FIGURES) - set(figures))
        assert {"labels": {"classification": "crash"}, "value": 1.0} in figures["gatewayd_restarts_total"]
        assert figures["gatewayd_retries_given_up_total"] == 1 and figures["gatewayd_gateway_up"] == 1
        # the alerts the metrics counted are the store's
        sent = [a["state"] for a in table(g, "alerts")].count("sent")
        wait_figure(mport, "gatewayd_alerts", lambda v: v == sent, "as stored", result="sent")


def test_crash_loop_figure_moves(tmp_path: Path) -> None:
    mport = free_port()
    settings = fake_settings() | {"metrics": {"port": mport},
                                  "supervise": {"crash_loop_crashes": 2, "crash_loop_delay_s": 0.5}}
    with gatewayd(tmp_path, settings) as g:
        g.start()
        for n in (1, 2):
            g.wait_event("gateway_ready", count=n)
            os.kill(g.spawned_pids()[-1], signal.SIGKILL)
        wait_figure(mport, "gatewayd_crash_loop", lambda v: v == 1, "entered")
        assert value(mport, "gatewayd_restarts_total", classification="crash") == 2


@pytest.mark.parametrize("version", ["2026.9.6", "2026.2.26"])
def test_memory_pressure_restart_drains_restarts_and_recovers_the_cron_run(tmp_path: Path, version: str) -> None:
    mport = free_port()
    mark = uuid.uuid4().hex[:8]
    with model(tmp_path) as (model_port, log, delay), gatewayd(tmp_path, None) as g:
        settings = world_settings(tmp_path, version, model_port, g.port)
        # 1 MB: every gateway is over it. The window leaves time to put a run in flight first; the
        # cool-down keeps the next gateway (over the limit at once) from being restarted again.
        settings |= {"metrics": {"port": mport}, "memory": {"limit_mb": 1, "window_s": 8.0, "cooldown_s": 600.0}}
        g.write_config_sections(settings)
        delay.write_text("30\n")  # the run outlasts the drain (the fake drains 0 s): it is cut and retried
        g.start()
        g.wait_event("rpc_monitor_connected")
        asyncio.run(add_hourly(g.port, version, mark))
        wait_until(lambda: asked(log, f"CRON-{mark}") == 1, 20, "the run at the model")
        g.wait_event("inflight_changed", where=lambda e: bool(e.get("runs_started")))
        restart = g.wait_event("memory_pressure_restart", timeout=30)
        assert restart["limit_bytes"] == 1024 * 1024 and restart["rss_bytes"] > restart["limit_bytes"]
        assert restart["over_for_s"] >= 8.0
        assert g.wait_event("planned_restart")["safe"] is True  # restart --safe's path: drain, then stop
        exited = g.wait_event("gateway_exited")
        assert exited["exit_kind"] == "planned-restart" and exited["needs_recovery"]
        delay.write_text("0.2\n")
        ob = retried_once(g, log, mark)
        assert ob["state"] == "done" and ob["reason"] == "planned-restart"
        events = [e for e in table(g, "events") if e["kind"] == "memory-pressure-restart"]
        assert len(events) == 1 and json.loads(events[0]["data"])["reason"] == "memory-pressure"
        assert [a["kind"] for a in table(g, "alerts")].count("memory-restart") == 1
        assert value(mport, "gatewayd_memory_restarts_total") == 1
        time.sleep(12)  # the witness window: the new gateway is over the limit for > window_s, yet cooling down
        assert len(g.named("memory_pressure_restart")) == 1 and len(g.spawned_pids()) == 2
        assert [o for o in obligations(g) if o["kind"] == "cron"] == [ob]
