"""The maintenance calendar: scheduled safe restarts and pause windows, from cron expressions, run
by APScheduler (`AsyncIOScheduler`, `CronTrigger.from_crontab` in the configured time zone).

Each entry is one job with `coalesce=True` and a `misfire_grace_time`: slots missed while the
machine slept (or the loop was stalled) run once at wake when still within the grace, never as a
burst. The store is the record of what ran: a fire is claimed there (slot, kind, entry, outcome)
before it acts, and a slot already claimed is not acted on again, also by a restarted gatewayd.

The scheduler's own timer is an event-loop timer, which a machine sleep stretches (the loop's
clock stops while asleep): `watch_wakes` notices the wall clock jumping ahead of the monotonic
one (through the clock seam) and wakes the scheduler, so a slot slept across fires at wake.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from supervisor import logs
from supervisor.clock import Clock
from supervisor.core.maintenance import BY_CALENDAR, FireOutcome, MaintenancePlan, restart_outcome
from supervisor.errors import ConfigError, StoreError
from supervisor.pausing import PauseGate
from supervisor.store.maintenance_records import MaintenanceRecords

log = logs.get("gatewayd")

WAKE_POLL_S = 10.0
SLEEP_JUMP_S = 5.0  # wall clock ahead of monotonic by more than this: the machine slept

RESTART, PAUSE = "restart", "pause"


def triggers(plan: MaintenancePlan, source: str = "config") -> list[tuple[str, str, CronTrigger, float, float]]:
    """(kind, entry name, trigger, grace s, window s) per entry; ConfigError names a bad one and
    `source` (the config file)."""
    tz = plan.timezone or None
    out: list[tuple[str, str, CronTrigger, float, float]] = []
    entries = [(RESTART, f"maintenance.restart[{i}]", cron, plan.misfire_grace_s, 0.0)
               for i, cron in enumerate(plan.restarts)]
    entries += [(PAUSE, f"maintenance.pause[{i}]", w.cron, w.for_s, w.for_s) for i, w in enumerate(plan.pauses)]
    for kind, name, cron, grace, window in entries:
        try:
            trigger = CronTrigger.from_crontab(cron, timezone=tz)
        except (ValueError, KeyError) as exc:
            raise ConfigError(source, f"{name}.cron", f"{exc} (got {cron!r})") from None
        out.append((kind, name, trigger, grace, window))
    return out


def latest_slot(trigger: CronTrigger, now: datetime, grace_s: float) -> datetime | None:
    """The trigger's latest fire time at or before `now`, looking back `grace_s` (the slot a
    coalesced run stands for)."""
    t = trigger.get_next_fire_time(None, now - timedelta(seconds=grace_s + 1))
    best = None
    while t is not None and t <= now:
        best = t
        t = trigger.get_next_fire_time(t, t + timedelta(seconds=1))
    return best


class MaintenanceCalendar:
    def __init__(self, plan: MaintenancePlan, records: MaintenanceRecords, gate: PauseGate, clock: Clock,
                 gateway: Callable[[], tuple[bool, bool]], restart: Callable[[], bool],
                 record: Callable[[Awaitable[Any]], Awaitable[Any]], source: str = "config") -> None:
        self.plan = plan
        self.records = records
        self.gate = gate
        self.clock = clock
        self.gateway = gateway  # (is a gateway up, is a restart or stop under way)
        self.restart = restart  # asks the daemon for a safe restart
        self.record = record
        self.entries = triggers(plan, source)
        self.scheduler: AsyncIOScheduler | None = None
        self._records: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Schedule every entry and keep the scheduler awake across machine sleeps; until cancelled."""
        if not self.entries:
            return
        scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop(),
                                     timezone=self.plan.timezone or None)
        for kind, name, trigger, grace, window in self.entries:
            scheduler.add_job(self._fire, trigger, args=(kind, name, trigger, grace, window), id=name, name=name,
                              coalesce=True, misfire_grace_time=max(1, int(grace)), max_instances=1)
        scheduler.add_listener(self._missed, EVENT_JOB_MISSED)
        scheduler.start()
        self.scheduler = scheduler
        log.info("maintenance_calendar_started", entries=[n for _, n, *_ in self.entries],
                 next={job.id: str(job.next_run_time) for job in scheduler.get_jobs()})
        try:
            await self.watch_wakes(scheduler)
        finally:
            scheduler.shutdown(wait=False)
            self.scheduler = None

    async def watch_wakes(self, scheduler: AsyncIOScheduler) -> None:
        last_mono, last_wall = self.clock.monotonic(), self.clock.wall()
        while True:
            await asyncio.sleep(WAKE_POLL_S)
            mono, wall = self.clock.monotonic(), self.clock.wall()
            if (wall - last_wall) - (mono - last_mono) > SLEEP_JUMP_S:
                log.info("maintenance_calendar_woke", jump_s=round((wall - last_wall) - (mono - last_mono), 1))
                scheduler.wakeup()
            last_mono, last_wall = mono, wall

    def next_fires(self) -> dict[str, float | None]:
        if self.scheduler is None:
            return {}
        return {job.id: job.next_run_time.timestamp() if job.next_run_time else None
                for job in self.scheduler.get_jobs()}

    def _missed(self, event: JobExecutionEvent) -> None:
        """A slot found too late (asleep or down beyond its grace): recorded, not run."""
        kind = next((k for k, name, *_ in self.entries if name == event.job_id), "?")
        slot_s = float(event.scheduled_run_time.timestamp())
        log.warning("maintenance_slot_missed", entry=event.job_id, slot=event.scheduled_run_time.isoformat())

        async def note() -> None:
            await self.record(self.records.claim_fire(kind, slot_s, event.job_id, str(FireOutcome.MISSED)))
        task = asyncio.get_running_loop().create_task(note())
        self._records.add(task)
        task.add_done_callback(self._records.discard)

    async def _fire(self, kind: str, name: str, trigger: CronTrigger, grace: float, window: float) -> None:
        now_s = self.clock.wall()
        slot = latest_slot(trigger, datetime.fromtimestamp(now_s, UTC), grace)
        if slot is None:  # the scheduler ran it beyond our look-back: nothing to stand for
            log.warning("maintenance_slot_unknown", entry=name)
            return
        slot_s = slot.timestamp()
        if kind == PAUSE:
            outcome = FireOutcome.PAUSED if now_s < slot_s + window else FireOutcome.SKIPPED_OVER
        else:
            outcome = restart_outcome(self.gate.paused, *self.gateway())
        try:
            claimed = await self.records.claim_fire(kind, slot_s, name, str(outcome))
        except StoreError as exc:  # act all the same: this process fires each slot once by itself
            log.error("maintenance_fire_unrecorded", entry=name, error=str(exc))
            claimed = True
        if not claimed:
            log.info("maintenance_slot_done_already", entry=name, slot=slot.isoformat())
            return
        if outcome is FireOutcome.PAUSED:
            await self.gate.pause_for(slot_s + window - now_s, BY_CALENDAR, f"{name} ({slot.isoformat()})")
        elif outcome is FireOutcome.RESTART and not self.restart():
            outcome = FireOutcome.SKIPPED_BUSY
        await self.record(self.records.settle_fire(kind, slot_s, name, str(outcome)))
        log.info("maintenance_fired", entry=name, kind=kind, slot=slot.isoformat(), outcome=str(outcome),
                 late_s=round(now_s - slot_s, 1))
