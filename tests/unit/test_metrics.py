"""The metrics registry: each figure moves when its event happens, the exposition parses with
prometheus_client's own parser, and `figures()` (status --json) carries the same values."""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from supervisor.core.model import ProbeOutcome
from supervisor.events import BootEnded, BootStarted, GatewayReady, MemoryPressureRestart
from supervisor.forensics import TreeSampler
from supervisor.metrics import Metrics, Readings
from supervisor.store.boots import BootRecords
from supervisor.store.db import Store


def scrape(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(m.registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


@dataclass
class Daemonish:
    crash_loop: bool = False
    inflight: tuple[int, int] = (0, 0)


class SlowProbe:
    async def check(self, booting: bool) -> ProbeOutcome:
        return ProbeOutcome.TIMEOUT

    async def close(self) -> None:
        pass


async def test_each_figure_moves_with_its_event(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.sqlite")
    await store.open()
    state = Daemonish()
    sampler = TreeSampler()
    m = Metrics(store, Readings(lambda: state.crash_loop, lambda: state.inflight, sampler))
    store.on_commit = m.store_write
    try:
        before = scrape(m)
        assert before[("gatewayd_gateway_up", ())] == 0 and before[("gatewayd_gateway_tree_rss_bytes", ())] == 0
        m.on_event(BootStarted(1, 4242, 10.0))
        m.on_event(GatewayReady(1, 4242, "2026.9.6", None, 13.5))
        state.crash_loop, state.inflight = True, (2, 3)
        sampler.watch(os.getpid())
        probe = m.timed_probe(SlowProbe())
        assert await probe.check(False) is ProbeOutcome.TIMEOUT
        await probe.close()
        up = scrape(m)
        assert up[("gatewayd_gateway_up", ())] == 1 and up[("gatewayd_gateway_ready", ())] == 1
        assert up[("gatewayd_last_time_to_ready_seconds", ())] == 3.5
        assert up[("gatewayd_time_to_ready_seconds_count", ())] == 1
        assert up[("gatewayd_crash_loop", ())] == 1
        assert up[("gatewayd_inflight_sessions", ())] == 2 and up[("gatewayd_inflight_cron_runs", ())] == 3
        assert up[("gatewayd_gateway_tree_rss_bytes", ())] > 1_000_000
        assert up[("gatewayd_probe_seconds_count", (("outcome", "timeout"),))] == 1
        m.on_event(MemoryPressureRestart(1, 5, 4))
        m.on_event(BootEnded(1, 4242, "planned-restart", 0, 20.0, True))
        m.on_event(BootEnded(2, 4243, "oom-kill", -9, 30.0, True))
        ended = scrape(m)
        assert ended[("gatewayd_gateway_up", ())] == 0 and ended[("gatewayd_gateway_ready", ())] == 0
        assert ended[("gatewayd_memory_restarts_total", ())] == 1
        assert ended[("gatewayd_restarts_total", (("classification", "planned-restart"),))] == 1
        assert ended[("gatewayd_restarts_total", (("classification", "oom-kill"),))] == 1

        # store-derived figures: written, then refreshed
        writes = ended[("gatewayd_store_write_seconds_count", ())]
        boot = await BootRecords(store).started(4242, 1.0, 18789, "2026.9.6")
        assert scrape(m)[("gatewayd_store_write_seconds_count", ())] > writes

        def rows(c: sqlite3.Connection) -> None:
            now = time.time()
            for i, state_ in enumerate(("open", "open", "given-up", "done")):
                c.execute("INSERT INTO obligations(kind, ref, running_at_ms, boot_id, interrupted_at, reason, state,"
                          " updated_at) VALUES ('cron', ?, 1, ?, ?, 'crash', ?, ?)",
                          (f"job{i}", boot, now, state_, now))
            c.execute("INSERT INTO actions(key, obligation_id, kind, state, boot_id, dispatched_at_ms, updated_at)"
                      " VALUES ('k1', 4, 'cron-run', 'answered', ?, 1, ?)", (boot, now))
            for s in ("sent", "failed", "sent"):
                c.execute("INSERT INTO alerts(at, kind, key, severity, title, body, state) VALUES (?, 'down', 'k',"
                          " 'critical', 't', 'b', ?)", (now, s))

        await store.write(rows)
        await m.refresh()
        got = scrape(m)
        assert got[("gatewayd_retries_pending", ())] == 2
        assert got[("gatewayd_retries_given_up_total", ())] == 1
        assert got[("gatewayd_recovery_actions", (("kind", "cron-run"), ("result", "answered")))] == 1
        assert got[("gatewayd_alerts", (("result", "sent"),))] == 2
        assert got[("gatewayd_alerts", (("result", "failed"),))] == 1

        fig = m.figures()
        assert fig["gatewayd_retries_pending"] == 2 and fig["gatewayd_memory_restarts_total"] == 1
        assert {"labels": {"classification": "oom-kill"}, "value": 1.0} in fig["gatewayd_restarts_total"]
        assert not any(k.endswith(("_bucket", "_created")) for k in fig)
    finally:
        await store.close()
