"""The memory-pressure watch: the shell around `core.memory_pressure`. It hears each tree RSS sample
of the daemon's one sampler (`forensics.TreeSampler`), asks the rule whether the current gateway
has been over the limit long enough, and if so asks the daemon for the safe restart `gatewayd
restart --safe` makes (drain within the stop budget, restart, recover). The restart is recorded
in the store's events with its reason and announced as `MemoryPressureRestart` (the alerter
sends it; the metrics count it)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from supervisor import logs
from supervisor.boot import BootWatch
from supervisor.clock import Clock
from supervisor.core.memory_pressure import LimitBelowWorkingSet, MemoryPolicy, PressureRule
from supervisor.events import BootStarted, EventBus, MemoryPressureRestart
from supervisor.store.boots import BootRecords

log = logs.get("gatewayd")


class MemoryWatch:
    def __init__(self, policy: MemoryPolicy, bus: EventBus, clock: Clock, current: Callable[[], BootWatch | None],
                 restart: Callable[[bool, float | None], bool], records: BootRecords,
                 record: Callable[[Any], Awaitable[Any]], paused: Callable[[], bool] = lambda: False) -> None:
        self.rule = PressureRule(policy)
        self.paused = paused  # a pause means no restarts: not even for memory
        self.bus = bus
        self.clock = clock
        self.current = current
        self.restart = restart
        self.records = records
        self.record = record
        self.restored = False
        bus.subscribe(BootStarted, lambda _ev: self.rule.new_boot())

    async def _restore(self) -> None:
        """The cool-down outlives gatewayd: the last pressure restart is read from the store once."""
        self.restored = True
        at = await self.record(self.records.last_event_at("memory-pressure-restart"))
        if isinstance(at, float):
            self.rule.restore(self.clock.wall() - at, self.clock.monotonic())

    async def on_sample(self, pid: int, rss_bytes: int) -> None:
        w = self.current()
        if w is None or w.child.pid != pid:
            return  # a sample of a gateway already gone (or not yet known to this boot)
        if self.paused():
            self.rule.new_boot()  # the window starts again after the pause, not across it
            return
        if not self.restored:
            await self._restore()
        decision = self.rule.observe(rss_bytes, self.clock.monotonic(), w.ready)
        if decision is None:
            return
        if isinstance(decision, LimitBelowWorkingSet):
            found: dict[str, Any] = {"rss_bytes": decision.rss_bytes, "limit_bytes": decision.limit_bytes}
            log.error("memory_limit_below_working_set", boot=w.boot, pid=pid,
                      hint="raise [memory] limit_mb above the gateway's working set; no more restarts for it", **found)
            await self.record(self.records.event("memory-limit-below-working-set", w.boot, found))
            return
        if not self.restart(True, None):
            log.warning("memory_restart_not_started", boot=w.boot, reason="a restart or stop is already under way")
            return
        data = {"reason": "memory-pressure", "rss_bytes": decision.rss_bytes, "limit_bytes": decision.limit_bytes,
                "over_for_s": round(decision.over_for_s, 1)}
        log.warning("memory_pressure_restart", boot=w.boot, pid=pid, **data)
        self.bus.publish(MemoryPressureRestart(w.boot, decision.rss_bytes, decision.limit_bytes))
        await self.record(self.records.event("memory-pressure-restart", w.boot, data))
