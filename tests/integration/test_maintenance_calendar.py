"""The maintenance calendar in-process, on a real store, with a machine sleep simulated across its
slots. How the sleep is made: the daemon's `Clock` seam is a `FakeClock`, and APScheduler's own
reading of the time (`datetime.now` in its scheduler and executor modules) is pointed at the same
fake wall clock. Moving the wall clock ahead while the monotonic one stands still is exactly what a
machine sleep looks like: the calendar's wake watch sees the jump and wakes the scheduler, which
finds the slots it missed and (coalesce) runs the job once, for the latest slot."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, tzinfo
from pathlib import Path

import pytest

from gatewayd_dev.fakeclock import FakeClock
from supervisor import maintenance_calendar
from supervisor.core.maintenance import MaintenancePlan, Window
from supervisor.events import EventBus, Paused, Resumed
from supervisor.maintenance_calendar import MaintenanceCalendar
from supervisor.pausing import PauseGate
from supervisor.store.db import Store
from supervisor.store.maintenance_records import MaintenanceRecords

pytestmark = pytest.mark.timeout(30)

MON_0400 = datetime(2026, 12, 7, 4, 0, tzinfo=UTC).timestamp()  # a Monday


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock(mono=1000.0, wall_s=MON_0400)

    class FakeDatetime(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> FakeDatetime:  # type: ignore[override]
            return cls.fromtimestamp(fake.wall_s, tz)

    import apscheduler.executors.base
    import apscheduler.schedulers.base
    monkeypatch.setattr(apscheduler.schedulers.base, "datetime", FakeDatetime)
    monkeypatch.setattr(apscheduler.executors.base, "datetime", FakeDatetime)
    monkeypatch.setattr(maintenance_calendar, "WAKE_POLL_S", 0.02)
    return fake


@pytest.fixture
async def records(tmp_path: Path) -> AsyncIterator[MaintenanceRecords]:
    store = Store(tmp_path / "store.sqlite")
    await store.open()
    try:
        yield MaintenanceRecords(store)
    finally:
        await store.close()


async def until(pred: Callable[[], object], what: str, limit_s: float = 5.0) -> None:
    for _ in range(int(limit_s / 0.02)):
        if pred():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {limit_s}s waiting for {what}")


async def poll_fires(records: MaintenanceRecords, into: list[dict[str, object]]) -> None:
    while True:
        into[:] = list(reversed(await records.fires()))
        await asyncio.sleep(0.02)


async def stop(*tasks: asyncio.Task[None]) -> None:
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def passthrough(coro: object) -> object:
    return await coro  # type: ignore[misc]


async def test_a_restart_slot_slept_across_runs_once_at_wake_and_never_again(
        clock: FakeClock, records: MaintenanceRecords) -> None:
    bus = EventBus()
    gate = PauseGate(records, clock, bus, passthrough)
    restarts: list[float] = []

    def restart() -> bool:
        restarts.append(clock.wall_s)
        return True

    cal = MaintenanceCalendar(MaintenancePlan(timezone="UTC", restarts=("30 4 * * *",), misfire_grace_s=3600.0),
                              records, gate, clock, lambda: (True, False), restart, passthrough)
    tasks = [asyncio.create_task(cal.run())]
    try:
        await until(lambda: cal.scheduler is not None, "the scheduler")
        assert restarts == []
        # Asleep from Monday 04:00 to Tuesday 04:45: Monday's and Tuesday's 04:30 both missed.
        clock.wall_s = MON_0400 + 86400 + 45 * 60
        await until(lambda: restarts, "the restart")
        await asyncio.sleep(0.5)  # the witness window: a burst would have run the second by now
        assert restarts == [clock.wall_s]  # once, at wake
        fired = await records.fires()
        tuesday_0430 = MON_0400 + 86400 + 30 * 60
        assert [(f["kind"], f["slot"], f["outcome"], f["settled"]) for f in fired] == [
            ("restart", tuesday_0430, "restart-requested", True)]
        # A restarted gatewayd asked for the same slot again (the store is the record): nothing.
        kind, name, trigger, grace, window = cal.entries[0]
        await cal._fire(kind, name, trigger, grace, window)
        assert len(restarts) == 1 and len(await records.fires()) == 1
    finally:
        await stop(*tasks)


async def test_a_restart_refused_as_busy_is_stored_as_such_not_as_requested(
        clock: FakeClock, records: MaintenanceRecords) -> None:
    gate = PauseGate(records, clock, EventBus(), passthrough)
    cal = MaintenanceCalendar(MaintenancePlan(timezone="UTC", restarts=("30 4 * * *",), misfire_grace_s=3600.0),
                              records, gate, clock, lambda: (True, False), lambda: False, passthrough)
    clock.wall_s = MON_0400 + 31 * 60
    kind, name, trigger, grace, window = cal.entries[0]
    await cal._fire(kind, name, trigger, grace, window)  # a stop or restart already under way
    [fire] = await records.fires()
    assert (fire["outcome"], fire["settled"]) == ("skipped-busy", True)


async def test_a_pause_window_pauses_until_its_end_and_one_slept_through_is_skipped(
        clock: FakeClock, records: MaintenanceRecords) -> None:
    bus = EventBus()
    seen: list[Paused] = []
    bus.subscribe(Paused, seen.append)
    gate = PauseGate(records, clock, bus, passthrough)
    plan = MaintenancePlan(timezone="UTC", pauses=(Window("15 4 * * mon", 3600.0),))
    cal = MaintenanceCalendar(plan, records, gate, clock, lambda: (True, False), lambda: True, passthrough)
    fired: list[dict[str, object]] = []
    tasks = [asyncio.create_task(cal.run()), asyncio.create_task(poll_fires(records, fired))]
    try:
        await until(lambda: cal.scheduler is not None, "the scheduler")
        clock.wall_s = MON_0400 + 20 * 60  # woke inside the window (04:15 + 1 h)
        await until(lambda: gate.paused, "the pause")
        assert gate.paused and gate.pause is not None
        assert gate.pause.until == MON_0400 + 75 * 60 and gate.pause.by == "calendar"
        assert [p.by for p in seen] == ["calendar"]
        assert (await records.last_pause()) == gate.pause
        # Asleep through the whole of the next Monday's window: recorded as missed, no pause.
        await gate.resume("cli")
        clock.wall_s = MON_0400 + 7 * 86400 + 3 * 3600  # the next Monday, 07:00
        await until(lambda: len(fired) == 2, "the missed slot recorded")
        assert not gate.paused
        assert [(f["outcome"], f["slot"]) for f in fired] == [
            ("paused", MON_0400 + 15 * 60), ("missed", MON_0400 + 7 * 86400 + 15 * 60)]
    finally:
        await stop(*tasks)


async def test_a_timed_pause_ends_when_the_wall_clock_passes_its_end_also_across_a_sleep(
        clock: FakeClock, records: MaintenanceRecords, monkeypatch: pytest.MonkeyPatch) -> None:
    from supervisor import pausing
    monkeypatch.setattr(pausing, "EXPIRY_POLL_S", 0.02)
    bus = EventBus()
    ended: list[Resumed] = []
    bus.subscribe(Resumed, ended.append)
    gate = PauseGate(records, clock, bus, passthrough)
    tasks = [asyncio.create_task(gate.run())]
    try:
        await gate.pause_for(600.0, "cli")
        await asyncio.sleep(0.1)  # the witness window: five expiry polls, none of which may end it early
        assert gate.paused and ended == []
        # A second gatewayd reads it back from the store.
        again = PauseGate(records, clock, EventBus(), passthrough)
        await again.load()
        assert again.paused and again.pause == gate.pause
        clock.wall_s += 3600.0  # asleep past its end: the monotonic clock stood still
        await until(lambda: not gate.paused, "the pause's end")
        assert [e.by for e in ended] == ["expired"]
        after = PauseGate(records, clock, EventBus(), passthrough)
        await after.load()
        assert not after.paused
    finally:
        await stop(*tasks)
