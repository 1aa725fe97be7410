"""The pause in force (maintenance): kept in the store so a restarted gatewayd stays paused until
the pause ends, announced on the bus (`Paused`, `Resumed`) so the alerter mutes itself, and asked
by the parts that act: the boot loop (no respawn), the probe loop (no hang kill) and the RPC
monitor (recovery, requeue and wakes wait). A pause with an end is ended by `run` once the wall
clock passes it (read through the clock seam, so a sleep across the end ends it at wake).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from supervisor import logs
from supervisor.clock import Clock
from supervisor.core.maintenance import Pause, merged, pause_for
from supervisor.errors import StoreError
from supervisor.events import EventBus, Paused, Resumed
from supervisor.keepalive import until_set
from supervisor.store.maintenance_records import MaintenanceRecords

log = logs.get("gatewayd")

EXPIRY_POLL_S = 1.0  # while a timed pause runs: how late it may end (a machine sleep stretches loop timers)


class PauseGate:
    def __init__(self, records: MaintenanceRecords, clock: Clock, bus: EventBus,
                 record: Callable[[Awaitable[Any]], Awaitable[Any]]) -> None:
        self.records = records
        self.clock = clock
        self.bus = bus
        self.record = record  # the daemon's: a store failure is logged and shown, never fatal
        self.pause: Pause | None = None
        self.opened = asyncio.Event()
        self.opened.set()
        self._changed = asyncio.Event()  # a pause began or ended: `run` looks again

    @property
    def paused(self) -> bool:
        return not self.opened.is_set()

    async def load(self) -> None:
        """At start: a pause recorded by a previous gatewayd, still on, is this one's too."""
        try:
            pause = await self.records.last_pause()
        except StoreError as exc:
            log.warning("pause_state_unreadable", error=str(exc))
            return
        if pause is not None and pause.active(self.clock.wall()):
            self._set(pause)
            log.info("still_paused", by=pause.by, until=pause.until)

    async def pause_for(self, for_s: float | None, by: str, reason: str = "") -> Pause:
        now = self.clock.wall()
        pause = merged(self.pause if self.paused else None, pause_for(now, for_s, by, reason), now)
        if pause != self.pause or not self.paused:
            await self.record(self.records.paused(pause))
            self._set(pause)
            log.warning("supervision_paused", by=pause.by, until=pause.until, reason=reason)
        return pause

    async def resume(self, by: str) -> bool:
        """False when nothing was paused."""
        if not self.paused:
            return False
        await self.record(self.records.resumed(by))
        self.pause = None
        self.opened.set()
        self._changed.set()
        log.warning("supervision_resumed", by=by)
        self.bus.publish(Resumed(by))
        return True

    async def wait_open(self) -> None:
        await self.opened.wait()

    async def run(self) -> None:
        """Ends a timed pause once its end has passed; idle while there is none."""
        while True:
            self._changed.clear()
            p = self.pause
            if not self.paused or p is None or p.until is None:
                await self._changed.wait()
                continue
            remaining = p.until - self.clock.wall()
            if remaining <= 0:
                await self.resume("expired")
                continue
            await until_set(self._changed, min(remaining, EXPIRY_POLL_S))

    def _set(self, pause: Pause) -> None:
        self.pause = pause
        self.opened.clear()
        self._changed.set()
        self.bus.publish(Paused(pause.by, pause.until, pause.reason))
