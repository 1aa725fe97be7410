"""Obligations opened when a boot ends: which attempt an interrupted run was. A run that was
gatewayd's own retry carries that attempt (a job whose retries keep killing the gateway runs out of
attempts); a regular run that merely started after an earlier retry starts anew at attempt 1."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from supervisor.core.inflight import Delta, RunItem
from supervisor.store.boots import BootEnd, BootRecords
from supervisor.store.db import Store
from supervisor.store.journal import Journal
from supervisor.store.snapshots import InflightRecords

T0 = 1_800_000_000_000
JOB = "job-minute"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(tmp_path / "store.sqlite")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


def run(at_ms: int) -> RunItem:
    return RunItem(JOB, at_ms, "minute", "main", "agentTurn", "isolated", "every", None, False, True)


async def crash_with(store: Store, started: list[int], ended: list[int] = ()) -> int:  # type: ignore[assignment]
    boots, inflight = BootRecords(store), InflightRecords(store)
    boot = await boots.started(100, 1.0, 1, "2026.9.6")
    await inflight.apply(boot, Delta(runs_started=tuple(run(t) for t in started)))
    if ended:
        await inflight.apply(boot, Delta(runs_ended=tuple((JOB, t) for t in ended)))
    await boots.ended(boot, BootEnd(-9, "crash", "test", True, {}))
    return boot


def attempts(store_path: Path) -> dict[int, int]:
    conn = sqlite3.connect(store_path)
    try:
        return dict(conn.execute("SELECT running_at_ms, attempt FROM obligations WHERE kind = 'cron'").fetchall())
    finally:
        conn.close()


async def retried(store: Store, at_ms: int) -> None:
    journal = Journal(store)
    ob = next(o for o in await journal.open_obligations() if o.kind == "cron")
    await journal.dispatched(f"k-{at_ms}", ob.id, "cron-run", 2, 1, at_ms)
    await journal.answered(f"k-{at_ms}", "answered", {"ok": True})
    await journal.resolve(ob.id, "done", "retried (attempt 2)")


async def test_the_retrys_own_run_interrupted_carries_its_attempt(store: Store, tmp_path: Path) -> None:
    await BootRecords(store).daemon_started(1)
    await crash_with(store, [T0])
    await retried(store, T0 + 30_000)
    await crash_with(store, [T0 + 30_200])  # the retry's run, cut too
    assert attempts(tmp_path / "store.sqlite") == {T0: 1, T0 + 30_200: 2}


async def test_regression_a_regular_run_after_a_finished_retry_starts_at_attempt_1(store: Store,
                                                                                   tmp_path: Path) -> None:
    """Found by the chaos benchmark: any retry sent up to two minutes before counted, so the next
    slot of a one-minute job inherited a finished retry's attempt; after two such cuts the job's
    interruption was given up as exhausted and never retried."""
    await BootRecords(store).daemon_started(1)
    await crash_with(store, [T0])
    await retried(store, T0 + 5_000)
    # The retry ran (seen starting and ending); then the next slot started and was cut.
    await crash_with(store, [T0 + 5_200, T0 + 20_000], ended=[T0 + 5_200])
    assert attempts(tmp_path / "store.sqlite") == {T0: 1, T0 + 20_000: 1}


async def test_a_run_long_after_the_retry_was_sent_starts_anew(store: Store, tmp_path: Path) -> None:
    await BootRecords(store).daemon_started(1)
    await crash_with(store, [T0])
    await retried(store, T0 + 5_000)
    await crash_with(store, [T0 + 65_000])  # the retry's run was never seen; this is a later slot
    assert attempts(tmp_path / "store.sqlite") == {T0: 1, T0 + 65_000: 1}


# -- runs the dead gateway's own jobs file shows running (2026.2.x) ------------------------------


def inflight_rows(store_path: Path) -> dict[int, tuple[int, str]]:
    conn = sqlite3.connect(store_path)
    try:
        return {r[0]: (r[1], r[2]) for r in conn.execute("SELECT running_at_ms, boot_id, state FROM inflight_runs")}
    finally:
        conn.close()


def lived(store_path: Path, boot: int, from_ms: int, to_ms: int | None) -> None:
    """Give a boot the lifetime a test needs (its times are the wall clock's when recorded)."""
    conn = sqlite3.connect(store_path)
    try:
        conn.execute("UPDATE boots SET started_at = ?, ended_at = ? WHERE id = ?",
                     (from_ms / 1000, None if to_ms is None else to_ms / 1000, boot))
        conn.commit()
    finally:
        conn.close()


async def test_a_run_no_snapshot_saw_becomes_an_interrupted_run_and_an_obligation(store: Store, tmp_path: Path) -> None:
    boot = await crash_with(store, [T0])
    lived(tmp_path / "store.sqlite", boot, T0 - 10_000, T0 + 120_000)
    cut, added = await InflightRecords(store).record_unseen([run(T0), run(T0 + 60_000)])
    assert [(b, r.running_at_ms) for b, r in added] == [(boot, T0 + 60_000)]  # T0 was already recorded
    assert cut == {(JOB, T0), (JOB, T0 + 60_000)}  # both cut in that boot: neither is a run of the current one
    assert attempts(tmp_path / "store.sqlite") == {T0: 1, T0 + 60_000: 1}
    assert inflight_rows(tmp_path / "store.sqlite") == {T0: (boot, "interrupted"), T0 + 60_000: (boot, "interrupted")}
    assert await InflightRecords(store).record_unseen([run(T0 + 60_000)]) == ({(JOB, T0 + 60_000)}, [])  # once only


async def test_regression_the_jobs_files_mark_a_little_before_the_snapshots_key_is_the_same_run(store: Store,
                                                                                              tmp_path: Path) -> None:
    """Found on the real 2026.2.26: its jobs file said runningAtMs ...552 where `cron.list` had said
    ...553 for the same run; taken for another run, it became a second obligation."""
    boot = await crash_with(store, [T0 + 1])
    lived(tmp_path / "store.sqlite", boot, T0 - 10_000, T0 + 120_000)
    assert await InflightRecords(store).record_unseen([run(T0)]) == ({(JOB, T0)}, [])
    assert attempts(tmp_path / "store.sqlite") == {T0 + 1: 1}


async def test_a_mark_is_taken_only_in_an_ended_boot_that_needs_recovery(store: Store, tmp_path: Path) -> None:
    inflight, boots, path = InflightRecords(store), BootRecords(store), tmp_path / "store.sqlite"
    assert await inflight.record_unseen([run(T0)]) == (set(), [])  # no boot has ended yet
    crashed = await crash_with(store, [])
    lived(path, crashed, T0, T0 + 60_000)
    clean = await boots.started(101, 2.0, 1, "2026.2.26")
    await boots.ended(clean, BootEnd(0, "clean-stop", "test", False, {}))
    lived(path, clean, T0 + 60_000, T0 + 120_000)
    current = await boots.started(102, 3.0, 1, "2026.2.26")
    lived(path, current, T0 + 120_000, None)
    assert await inflight.record_unseen([run(T0 - 5_000)]) == (set(), [])  # before the crashed boot: an older crash's
    assert await inflight.record_unseen([run(T0 + 90_000)]) == (set(), [])  # in the boot drained cleanly
    assert await inflight.record_unseen([run(T0 + 150_000)]) == (set(), [])  # the current boot's run
    assert attempts(path) == {}
    # A mark inside the crashed boot's lifetime is that boot's, whatever boot is current.
    _, added = await inflight.record_unseen([run(T0 + 30_000)])
    assert [(b, r.running_at_ms) for b, r in added] == [(crashed, T0 + 30_000)] and current != crashed


async def test_a_boot_whose_end_was_written_late_does_not_claim_its_successors_runs(store: Store,
                                                                                  tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    first = await crash_with(store, [])
    second = await crash_with(store, [])
    lived(path, first, T0, T0 + 300_000)  # its end recorded only when a later gatewayd started
    lived(path, second, T0 + 60_000, T0 + 120_000)
    _, added = await InflightRecords(store).record_unseen([run(T0 + 90_000)])
    assert [(b, r.running_at_ms) for b, r in added] == [(second, T0 + 90_000)]


async def test_a_cut_run_recorded_as_a_later_boots_run_moves_to_its_own_boot(store: Store, tmp_path: Path) -> None:
    """A gatewayd before this check took a mark still shown after a restart for a run of the new
    boot, which then "finished" at the gateway's repair: the run is the dead boot's, and its obligation."""
    path, inflight = tmp_path / "store.sqlite", InflightRecords(store)
    dead = await crash_with(store, [])
    lived(path, dead, T0, T0 + 60_000)
    boots = BootRecords(store)
    later = await boots.started(101, 2.0, 1, "2026.9.6")
    lived(path, later, T0 + 60_000, None)
    await inflight.apply(later, Delta(runs_started=(run(T0 + 30_000),)))
    await inflight.apply(later, Delta(runs_ended=((JOB, T0 + 30_000),)))
    _, added = await inflight.record_unseen([run(T0 + 30_000)])
    assert [(b, r.running_at_ms) for b, r in added] == [(dead, T0 + 30_000)]
    assert inflight_rows(path) == {T0 + 30_000: (dead, "interrupted")} and attempts(path) == {T0 + 30_000: 1}
    assert (await inflight.record_unseen([run(T0 + 30_000)]))[1] == []  # its obligation is there now
