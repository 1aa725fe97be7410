"""The snapshotter's bookkeeping, without a gateway: runs cut by a restart (marks `cron.list` shows
from a boot that has ended) are asked of the store once per mark, never taken for runs of the new
boot, and forgotten once the gateway no longer shows them; runs heard of by events do not pile up."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from supervisor import snapshotter as snapshot_module
from supervisor.core.inflight import INTERRUPTED_ERROR, InFlight, RunItem, RunKey, SessionItem
from supervisor.errors import StoreError
from supervisor.gateway.capabilities import for_version
from supervisor.snapshotter import Snapshotter


class Records:
    """The store's answer: which marks lie in an ended boot (`cut`); nothing is added here."""

    def __init__(self, cut: set[RunKey]) -> None:
        self.cut = cut
        self.asked: list[list[RunKey]] = []

    async def record_unseen(self, runs: Iterable[RunItem]) -> tuple[set[RunKey], list[tuple[int, RunItem]]]:
        keys = [r.key for r in runs]
        self.asked.append(sorted(keys))
        return {k for k in keys if k in self.cut}, []


def job(job_id: str, **state: Any) -> dict[str, Any]:
    return {"id": job_id, "name": job_id, "enabled": True, "schedule": {"kind": "every", "everyMs": 60_000},
            "payload": {"kind": "agentTurn", "message": "m"}, "state": state}


def snapshotter(records: Records) -> Snapshotter:
    return Snapshotter(records, 2, for_version("2026.9.6"), 5.0)  # type: ignore[arg-type]


async def test_a_cut_mark_is_asked_once_kept_out_of_the_new_boot_and_forgotten_when_gone() -> None:
    records = Records(cut={("old", 100)})
    s = snapshotter(records)
    before_repair = {"jobs": [job("old", runningAtMs=100), job("new", runningAtMs=200)]}
    await s._set_aside_cut(before_repair)
    assert records.asked == [[("new", 200), ("old", 100)]]
    assert list(s.build(None, before_repair)[0].runs) == [("new", 200)]  # the stale mark is not this boot's
    after_repair = {"jobs": [job("old", lastRunAtMs=100, lastError=INTERRUPTED_ERROR), job("new", runningAtMs=200)]}
    await s._set_aside_cut(after_repair)
    await s._set_aside_cut(after_repair)
    assert len(records.asked) == 1  # each mark once
    await s._set_aside_cut({"jobs": [job("old", lastRunAtMs=100, lastRunStatus="ok"), job("new")]})
    assert s.checked == set() and s.cut == set()


class FailingRecords(Records):
    async def record_unseen(self, runs: Iterable[RunItem]) -> tuple[set[RunKey], list[tuple[int, RunItem]]]:
        raise StoreError("disk I/O error")


async def test_a_failed_check_keeps_its_marks_out_of_the_poll_and_recovery_waiting() -> None:
    """Found by a review: a mark whose check failed was taken for a run of the new boot, so its
    repair "ended" it and an unseen run was lost; and recovery, told the first poll was done,
    decided there was nothing to do before the cut run was recorded."""
    s = snapshotter(FailingRecords(cut=set()))
    payload = {"jobs": [job("old", runningAtMs=100)]}
    await s._set_aside_cut(payload)
    assert list(s.build(None, payload)[0].runs) == [] and not s.looked.is_set()
    s.records = Records(cut=set())  # type: ignore[assignment]  # the store is back: a run of this boot after all
    await s._set_aside_cut(payload)
    assert list(s.build(None, payload)[0].runs) == [("old", 100)] and s.looked.is_set()


def started(job_id: str, at: int) -> dict[str, Any]:
    return {"jobId": job_id, "action": "started", "runAtMs": at, "job": job(job_id, runningAtMs=at)}


def test_heard_runs_already_written_do_not_pile_up_while_polls_fail(monkeypatch: Any) -> None:
    """From a review: with `cron.list` failing every poll, every run heard of stayed in `heard`."""
    monkeypatch.setattr(snapshot_module, "MAX_HEARD", 3)
    s = snapshotter(Records(cut=set()))
    for i in range(6):
        s._hear(started(f"j{i}", 100 + i))
        if i < 4:  # written by the recorder; the last two are not (yet)
            s.state = InFlight(s.state.sessions, {**s.state.runs, (f"j{i}", 100 + i): s.heard[(f"j{i}", 100 + i)][0]})
    assert sorted(s.heard) == [("j3", 103), ("j4", 104), ("j5", 105)]  # the oldest written ones went


class StoredTurn:
    """The store holds one 2.x turn in flight in boot 2, dated by its lifecycle start."""

    async def of_boot(self, boot: int) -> InFlight:
        return InFlight({"agent:main:main": SessionItem("agent:main:main", "main", "main", None, ("run-1",), 7_000)},
                        {})


class StillRunning:
    async def call(self, method: str, params: dict[str, Any], timeout_s: float | None = None) -> Any:
        assert (method, params["runId"]) == ("agent.wait", "run-1")
        return {"runId": "run-1", "status": "timeout"}


async def test_a_seeded_legacy_turn_keeps_its_start() -> None:
    """Found by a review: a gatewayd that adopted a 2.x gateway mid-turn seeded the turn's run but
    not its start, so its first poll overwrote the stored start with the row's `updatedAt` (or
    nothing, on a session's first turn), and recovery could no longer find the turn in the
    session's history: a notice for a turn that had ended."""
    s = Snapshotter(StoredTurn(), 2, for_version("2026.2.26"), 5.0)  # type: ignore[arg-type]
    await s.seed(StillRunning())  # type: ignore[arg-type]
    assert s.activity is not None and s.activity.turn_starts() == {"agent:main:main": 7_000}
    [session] = s.build({"sessions": [{"key": "agent:main:main", "updatedAt": 9_999}]}, None)[0].sessions.values()
    assert session.last_activity_ms == 7_000
