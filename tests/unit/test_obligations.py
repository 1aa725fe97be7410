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
from supervisor.store.inflight import InflightRecords
from supervisor.store.journal import Journal

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
    ob = next(o for o in await journal.open_obligations() if o["kind"] == "cron")
    await journal.dispatched(f"k-{at_ms}", ob["id"], "cron-run", 2, 1, at_ms)
    await journal.answered(f"k-{at_ms}", "answered", {"ok": True})
    await journal.resolve(ob["id"], "done", "retried (attempt 2)")


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
