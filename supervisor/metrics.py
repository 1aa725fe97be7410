"""Metrics: the daemon's figures in one `prometheus_client` registry of its own (never the library's
global one), served on loopback when `[metrics] port` is set, and read by `status --json` (the
`metrics` object: the same registry, so the two never disagree).

Where each figure comes from:
- the bus (`on_event`): gateway up and ready, restarts by classification, time to ready after the
  spawn, memory-pressure restarts;
- readings taken when someone looks: crash-loop state (the restart tracker), in-flight sessions and
  cron runs (the current boot's snapshotter), the gateway tree's RSS (the daemon's one sampler);
- timing hooks: probe latency (`timed_probe` wraps the boot's probe), store write latency (the
  store's writer thread calls `store_write` after each commit: one histogram observation, no I/O);
- the store, read every `STORE_POLL_S` on the writer thread (`refresh`): recovery actions by kind
  and result, retries pending and given up, alerts by result. These are counts of the store's
  records, so they survive gatewayd's own restarts.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from supervisor import logs
from supervisor.core.model import ProbeOutcome
from supervisor.errors import StoreError
from supervisor.events import BootEnded, BootStarted, GatewayReady, MemoryPressureRestart
from supervisor.forensics import TreeSampler
from supervisor.gateway.probes import Probe
from supervisor.store.db import Store

log = logs.get("gatewayd")

HOST = "127.0.0.1"  # loopback only: the figures name jobs' counts and the gateway's state
STORE_POLL_S = 5.0
PROBE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
READY_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
WRITE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


@dataclass(frozen=True)
class Readings:
    """What the metrics read from the daemon when someone looks."""

    crash_loop: Callable[[], bool]
    inflight: Callable[[], tuple[int, int]]  # (sessions, cron runs) of the current boot
    sampler: TreeSampler


@dataclass
class StoreCounts:
    actions: dict[tuple[str, str], int]  # (kind, result) -> count
    retries_pending: int
    retries_given_up: int
    alerts: dict[str, int]  # result -> count


def read_counts(c: sqlite3.Connection) -> StoreCounts:
    actions = {(str(k), str(s)): int(n) for k, s, n in
               c.execute("SELECT kind, state, COUNT(*) FROM actions GROUP BY kind, state")}
    for s, n in c.execute("SELECT state, COUNT(*) FROM requeues GROUP BY state"):
        actions[("system-event", str(s))] = int(n)
    cron = dict(c.execute("SELECT state, COUNT(*) FROM obligations WHERE kind = 'cron' GROUP BY state").fetchall())
    alerts = {str(s): int(n) for s, n in c.execute("SELECT state, COUNT(*) FROM alerts GROUP BY state")}
    return StoreCounts(actions, int(cron.get("open", 0)), int(cron.get("given-up", 0)), alerts)


class _StoreCollector(Collector):
    """The store's counts as of the last `refresh` (a scrape never waits on the store)."""

    def __init__(self) -> None:
        self.counts = StoreCounts({}, 0, 0, {})

    def collect(self) -> Iterable[Metric]:
        c = self.counts
        # Gauges, not counters: an action's or an alert's state moves on (dispatched -> answered,
        # sending -> sent), so a count by state can fall, which a counter must never do.
        actions = GaugeMetricFamily("gatewayd_recovery_actions", "recovery actions in the store, by kind and"
                                    " current state", labels=("kind", "result"))
        for (kind, result), n in sorted(c.actions.items()):
            actions.add_metric((kind, result), n)
        yield actions
        yield GaugeMetricFamily("gatewayd_retries_pending", "interrupted cron runs whose retry is still open",
                                value=c.retries_pending)
        yield CounterMetricFamily("gatewayd_retries_given_up", "interrupted cron runs given up after their attempts",
                                  value=c.retries_given_up)
        alerts = GaugeMetricFamily("gatewayd_alerts", "alerts in the store, by current state (sent, partial, failed,"
                                   " held, no-notifier, sending)", labels=("result",))
        for result, n in sorted(c.alerts.items()):
            alerts.add_metric((result,), n)
        yield alerts


class Metrics:
    def __init__(self, store: Store, readings: Readings, port: int = 0) -> None:
        self.store = store
        self.port = port
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.up = Gauge("gatewayd_gateway_up", "1 while a gateway process runs", registry=r)
        self.ready = Gauge("gatewayd_gateway_ready", "1 while the gateway is ready", registry=r)
        self.restarts = Counter("gatewayd_restarts", "gateway exits, by classification", ("classification",),
                                registry=r)
        self.memory_restarts = Counter("gatewayd_memory_restarts", "safe restarts for memory pressure", registry=r)
        crash_loop = Gauge("gatewayd_crash_loop", "1 while the restart policy sees a crash loop", registry=r)
        crash_loop.set_function(lambda: float(readings.crash_loop()))
        self.probe_seconds = Histogram("gatewayd_probe_seconds", "liveness probe latency", ("outcome",),
                                       buckets=PROBE_BUCKETS, registry=r)
        self.ready_seconds = Histogram("gatewayd_time_to_ready_seconds", "spawn (or adoption) to ready",
                                       buckets=READY_BUCKETS, registry=r)
        self.last_ready_seconds = Gauge("gatewayd_last_time_to_ready_seconds", "the last boot's spawn to ready",
                                        registry=r)
        sessions = Gauge("gatewayd_inflight_sessions", "sessions in flight (last snapshot)", registry=r)
        sessions.set_function(lambda: float(readings.inflight()[0]))
        runs = Gauge("gatewayd_inflight_cron_runs", "cron runs in flight (last snapshot)", registry=r)
        runs.set_function(lambda: float(readings.inflight()[1]))
        rss = Gauge("gatewayd_gateway_tree_rss_bytes", "the gateway process tree's RSS (last sample; 0: none)",
                    registry=r)
        rss.set_function(lambda: float(readings.sampler.last[0])
                         if readings.sampler.pid is not None and readings.sampler.last else 0.0)
        self.store_write_seconds = Histogram("gatewayd_store_write_seconds", "one store transaction, begin to commit",
                                             buckets=WRITE_BUCKETS, registry=r)
        self.store_counts = _StoreCollector()
        r.register(self.store_counts)
        self._spawned_at: dict[int, float] = {}  # boot -> monotonic

    # -- in -------------------------------------------------------------------------------------------

    def on_event(self, event: object) -> None:
        """The bus listener: counters and gauges only, never blocks."""
        match event:
            case BootStarted():
                self.up.set(1)
                self.ready.set(0)
                self._spawned_at = {event.boot: event.spawned_at}
            case GatewayReady():
                self.ready.set(1)
                spawned = self._spawned_at.pop(event.boot, None)
                if spawned is not None:
                    took = max(0.0, event.ready_at - spawned)
                    self.ready_seconds.observe(took)
                    self.last_ready_seconds.set(took)
            case BootEnded():
                self.up.set(0)
                self.ready.set(0)
                self.restarts.labels(event.exit_kind).inc()
            case MemoryPressureRestart():
                self.memory_restarts.inc()

    def store_write(self, seconds: float) -> None:
        """Called on the store's writer thread after each commit (prometheus_client is thread-safe)."""
        self.store_write_seconds.observe(seconds)

    def timed_probe(self, probe: Probe) -> Probe:
        return _TimedProbe(probe, self.probe_seconds)

    async def refresh(self) -> None:
        self.store_counts.counts = await self.store.read(read_counts)

    # -- out ------------------------------------------------------------------------------------------

    def figures(self) -> dict[str, Any]:
        """The registry as plain JSON for `status --json`: a figure without labels is its value, one with
        labels a list of {labels, value}; histograms give their _count and _sum (no buckets)."""
        out: dict[str, Any] = {}
        for family in self.registry.collect():
            for s in family.samples:
                if s.name.endswith(("_bucket", "_created")):
                    continue
                if s.labels:
                    out.setdefault(s.name, []).append({"labels": dict(s.labels), "value": s.value})
                else:
                    out[s.name] = s.value
        return out

    async def run(self) -> None:
        """Serve (when a port is set) and keep the store's counts fresh; kept by `Helpers.keep`."""
        server: Any = None
        thread: threading.Thread | None = None
        if self.port:
            # An OSError (the port taken) fails this helper: logged, shown by `status`, tried again.
            server, thread = start_http_server(self.port, addr=HOST, registry=self.registry)
            log.info("metrics_serving", address=f"http://{HOST}:{self.port}/metrics")
        try:
            while True:
                try:
                    await self.refresh()
                except StoreError as exc:  # a failing store is reported by the daemon; keep the last counts
                    log.debug("metrics_store_unread", error=str(exc))
                await asyncio.sleep(STORE_POLL_S)
        finally:
            if server is not None:
                server.shutdown()
                server.server_close()
            if thread is not None:
                thread.join(5)


class _TimedProbe:
    def __init__(self, probe: Probe, histogram: Histogram) -> None:
        self.probe = probe
        self.histogram = histogram

    async def check(self, booting: bool) -> ProbeOutcome:
        loop = asyncio.get_running_loop()
        began = loop.time()
        outcome = await self.probe.check(booting)
        self.histogram.labels(str(outcome)).observe(loop.time() - began)
        return outcome

    async def close(self) -> None:
        await self.probe.close()
