"""Which interrupted work becomes an obligation (supervisor/core/obligations.py), without a store:
the attempt an interrupted run carries, the boot a run cut unseen belongs to, and which marks are
added. tests/unit/test_obligations.py checks the store reads these facts and writes the result."""

from __future__ import annotations

import itertools
import sqlite3

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from supervisor.core.inflight import SAME_RUN_MS, Delta, RunItem
from supervisor.core.obligations import (
    RETRY_EARLY_MS,
    RETRY_LATE_MS,
    RETRY_START_MS,
    BootSpan,
    Obligation,
    ObligationKind,
    RetrySent,
    RunAtEnd,
    SessionAtEnd,
    attempt_of,
    boot_of_mark,
    obligations_at_end,
    place_unseen,
)
from supervisor.store.db import MIGRATIONS
from supervisor.store.snapshots import apply_delta, record_obligations, take_unseen

S = 1000
T0 = 1_800_000_000_000
R = T0 + 600 * S  # the interrupted run's start
JOB = "job-1"


def at_end(retries: tuple[tuple[int, int], ...] = (), before: tuple[int, ...] = (), running_at: int = R) -> RunAtEnd:
    return RunAtEnd(JOB, running_at, "main", "nightly", False, "cron",
                    tuple(RetrySent(a, t) for a, t in retries), before)


# -- attempt_of ----------------------------------------------------------------------------------

ATTEMPTS = [  # (name, retries as (attempt, sent at), recorded runs before, expected attempt)
    ("no retry: a regular run", (), (), 1),
    ("the retry sent 10 s before: its run", ((2, R - 10 * S),), (), 2),
    ("sent at the window's start", ((2, R - RETRY_START_MS),), (), 2),
    ("sent just before the window", ((2, R - RETRY_START_MS - 1),), (), 1),
    ("sent a little after the run's recorded start", ((3, R + RETRY_LATE_MS),), (), 3),
    ("sent too long after", ((3, R + RETRY_LATE_MS + 1),), (), 1),
    ("the latest retry counts", ((2, R - 20 * S), (3, R - 5 * S)), (), 3),
    ("the latest retry counts, whatever the order given", ((3, R - 5 * S), (2, R - 20 * S)), (), 3),
    ("a run since the send was the retry: this one starts anew", ((2, R - 10 * S),), (R - 5 * S,), 1),
    ("a run just before the send may be the retry's own", ((2, R - 10 * S),), (R - 10 * S - RETRY_EARLY_MS,), 1),
    ("a run before that is an older one", ((2, R - 10 * S),), (R - 10 * S - RETRY_EARLY_MS - 1,), 2),
    ("the run itself is not a run before it", ((2, R - 10 * S),), (R,), 2),
    ("a run after it is not before it", ((2, R - 10 * S),), (R + 1,), 2),
]


@pytest.mark.parametrize(("name", "retries", "before", "expected"), ATTEMPTS, ids=[a[0] for a in ATTEMPTS])
def test_attempt_of(name: str, retries: tuple[tuple[int, int], ...], before: tuple[int, ...], expected: int) -> None:
    assert attempt_of(at_end(retries, before)) == expected


_offsets = st.integers(-2 * RETRY_START_MS, 2 * RETRY_LATE_MS)


@given(retries=st.lists(st.tuples(st.integers(1, 9), _offsets), max_size=4),
       before=st.lists(st.integers(-3 * RETRY_START_MS, 10), max_size=4), shift=st.integers(-10**9, 10**9))
def test_attempt_of_invariants(retries: list[tuple[int, int]], before: list[int], shift: int) -> None:
    run = at_end(tuple((a, R + t) for a, t in retries), tuple(R + t for t in before))
    got = attempt_of(run)
    in_window = [(a, t) for a, t in retries if -RETRY_START_MS <= t <= RETRY_LATE_MS]
    assert got in {1, *(a for a, _ in in_window)}
    if not in_window:
        assert got == 1
    # Only the latest retry in the window can be the one carried.
    if got != 1:
        latest = max(t for _, t in in_window)
        assert got in {a for a, t in in_window if t == latest}
    # A later run recorded before it can only make it a regular run.
    assert attempt_of(RunAtEnd(**{**run.__dict__, "runs_before": (*run.runs_before, R - 1)})) in {1, got}
    # Only the distances count, not the clock.
    moved = at_end(tuple((a, R + shift + t) for a, t in retries), tuple(R + shift + t for t in before), R + shift)
    assert attempt_of(moved) == got


# -- obligations_at_end --------------------------------------------------------------------------


@pytest.mark.parametrize(("delete_after_run", "schedule_kind", "one_shot"), [
    (False, "cron", False), (False, "every", False), (False, None, False), (True, "cron", True), (False, "at", True),
    (True, "at", True)])
def test_a_boots_end_opens_one_obligation_per_run_and_session(delete_after_run: bool, schedule_kind: str | None,
                                                              one_shot: bool) -> None:
    run = RunAtEnd(JOB, R, "ops", "nightly", delete_after_run, schedule_kind, (RetrySent(2, R - S),))
    session = SessionAtEnd("agent:main:main", "main", "direct")
    got = obligations_at_end(7, [run], [session], "crash", 1_800_000_700.5)
    assert got == [
        Obligation(ObligationKind.CRON, JOB, 7, 1_800_000_700.5, "crash", agent_id="ops", running_at_ms=R,
                   name="nightly", one_shot=one_shot, attempt=2),
        Obligation(ObligationKind.SESSION, "agent:main:main", 7, 1_800_000_700.5, "crash", agent_id="main",
                   session_kind="direct"),
    ]
    assert got[0].run().interrupted_at_ms == 1_800_000_700_500 and got[0].run().one_shot is one_shot
    assert obligations_at_end(7, [], [], "crash", 1.0) == []


# -- boot_of_mark --------------------------------------------------------------------------------


def span(id_: int, start_s: float, end_s: float | None, needs_recovery: bool = True) -> BootSpan:
    return BootSpan(id_, T0 / 1000 + start_s, None if end_s is None else T0 / 1000 + end_s, needs_recovery, "crash")


CRASHED = span(1, 0, 60)
CLEAN = span(2, 60, 120, needs_recovery=False)
CURRENT = span(3, 120, None)
HISTORY = [CRASHED, CLEAN, CURRENT]

MARKS = [  # (name, boots, mark, expected boot id)
    ("no boot has ended", [span(1, 0, None)], T0 + 30 * S, None),
    ("inside the crashed boot", HISTORY, T0 + 30 * S, 1),
    ("at its very end", HISTORY, T0 + 60 * S - 1, 1),
    ("before the crashed boot: an older crash's", HISTORY, T0 - 5 * S, None),
    ("a little before its start (the jobs file's mark)", HISTORY, T0 - SAME_RUN_MS, 1),
    ("just beyond the slack", HISTORY, T0 - SAME_RUN_MS - 1, None),
    ("in the boot drained cleanly", HISTORY, T0 + 90 * S, None),
    ("the current boot's run", HISTORY, T0 + 150 * S, None),
    ("a late-written end does not claim its successor's runs", [span(1, 0, 300), span(2, 60, 120)], T0 + 90 * S, 2),
    ("nor runs after its successor began", [span(1, 0, 300), span(2, 60, 120)], T0 + 200 * S, None),
    ("before its successor began it is its own", [span(1, 0, 300), span(2, 60, 120)], T0 + 30 * S, 1),
]


@pytest.mark.parametrize(("name", "boots", "mark", "expected"), MARKS, ids=[m[0] for m in MARKS])
def test_boot_of_mark(name: str, boots: list[BootSpan], mark: int, expected: int | None) -> None:
    for order in itertools.permutations(boots):  # the store's row order must not matter
        found = boot_of_mark(mark, order)
        assert (found.id if found else None) == expected


# -- place_unseen --------------------------------------------------------------------------------


def mark(at_ms: int, job: str = JOB) -> RunItem:
    return RunItem(job, at_ms, "nightly", "main", "agentTurn", "isolated", "cron", None, False, True)


def test_a_mark_no_snapshot_recorded_is_added_to_its_boot() -> None:
    got = place_unseen([mark(T0 + 30 * S)], HISTORY, {}, set())
    assert got.cut == {(JOB, T0 + 30 * S)} and got.added == ((CRASHED, mark(T0 + 30 * S)),)


@pytest.mark.parametrize(("name", "recorded", "obligated", "added"), [
    ("recorded in that boot at the mark", [(T0 + 30 * S, 1)], set(), False),
    ("recorded in that boot a little after the mark (same run)", [(T0 + 30 * S + 1, 1)], set(), False),
    ("recorded a little before the mark (the file's mark is later)", [(T0 + 30 * S - SAME_RUN_MS, 1)], set(), False),
    ("an older run of the job in that boot", [(T0 + 30 * S - SAME_RUN_MS - 1, 1)], set(), True),
    ("recorded as a later boot's run: moved to its own", [(T0 + 30 * S, 3)], set(), True),
    ("its obligation exists already", [], {(JOB, T0 + 30 * S)}, False),
])
def test_a_mark_already_seen_is_cut_but_not_added(name: str, recorded: list[tuple[int, int]],
                                                  obligated: set[tuple[str, int]], added: bool) -> None:
    got = place_unseen([mark(T0 + 30 * S)], HISTORY, {JOB: recorded}, obligated)
    assert got.cut == {(JOB, T0 + 30 * S)}
    assert got.added == (((CRASHED, mark(T0 + 30 * S)),) if added else ())


def test_marks_in_no_boot_needing_recovery_are_neither_cut_nor_added() -> None:
    got = place_unseen([mark(T0 - 5 * S), mark(T0 + 90 * S), mark(T0 + 150 * S)], HISTORY, {}, set())
    assert got.cut == frozenset() and got.added == ()


def test_a_moved_run_counts_as_recorded_in_its_boot_for_the_marks_after_it() -> None:
    """As the store's transaction did: the move is seen by the next mark's check."""
    got = place_unseen([mark(T0 + 30 * S), mark(T0 + 30 * S + 1)], HISTORY, {JOB: [(T0 + 30 * S, 3)]}, set())
    assert [r.running_at_ms for _, r in got.added] == [T0 + 30 * S]
    assert got.cut == {(JOB, T0 + 30 * S), (JOB, T0 + 30 * S + 1)}


@given(offsets=st.lists(st.integers(-20 * S, 200 * S), max_size=6, unique=True),
       jobs=st.lists(st.sampled_from(["a", "b"]), min_size=6, max_size=6))
def test_place_unseen_invariants(offsets: list[int], jobs: list[str]) -> None:
    marks = [mark(T0 + o, j) for o, j in zip(offsets, jobs, strict=False)]
    got = place_unseen(marks, HISTORY, {}, set())
    assert {r.key for _, r in got.added} <= got.cut <= {m.key for m in marks}
    for boot, r in got.added:
        assert boot == boot_of_mark(r.running_at_ms, HISTORY) == CRASHED
    # With nothing recorded, every cut mark is added.
    assert {r.key for _, r in got.added} == got.cut


# -- the rules against the SQL they replaced (before issue 14), on random histories ---------------
# The store now reads a window of facts and core decides; these check that the window holds every
# fact the old single query looked at, so the decisions are the same.

OLD_BOOT_OF_MARK = (
    "SELECT id FROM boots b WHERE ended_at IS NOT NULL AND needs_recovery = 1"
    " AND started_at * 1000 - ? <= ? AND ended_at * 1000 >= ?"
    " AND NOT EXISTS (SELECT 1 FROM boots n WHERE n.id > b.id AND n.started_at * 1000 <= ?)"
    " ORDER BY id DESC LIMIT 1")
OLD_PRIOR_RETRY = (
    "SELECT a.attempt, a.dispatched_at_ms FROM actions a JOIN obligations o ON o.id = a.obligation_id"
    " WHERE o.kind = 'cron' AND o.ref = ? AND a.kind = 'cron-run' AND a.state IN ('dispatched', 'answered')"
    " AND a.dispatched_at_ms BETWEEN ? AND ? ORDER BY a.dispatched_at_ms DESC LIMIT 1")
OLD_RUN_SINCE_RETRY = ("SELECT 1 FROM inflight_runs WHERE job_id = ? AND running_at_ms >= ? AND running_at_ms < ?"
                       " LIMIT 1")


def memory_store() -> sqlite3.Connection:
    c = sqlite3.connect(":memory:")
    c.row_factory = sqlite3.Row
    for script in MIGRATIONS:
        c.executescript(script)
    return c


_boot_rows = st.lists(st.tuples(st.integers(-30, 300), st.none() | st.integers(0, 200), st.booleans()),
                      min_size=1, max_size=5)


@settings(max_examples=300)
@given(rows=_boot_rows, mark_s=st.integers(-40, 400), slack=st.integers(-SAME_RUN_MS - 2, SAME_RUN_MS + 2))
def test_boot_of_mark_is_the_old_query(rows: list[tuple[int, int | None, bool]], mark_s: int, slack: int) -> None:
    c = memory_store()
    spans = []
    for i, (start, length, needs) in enumerate(rows, start=1):
        started, ended = T0 / 1000 + start, None if length is None else T0 / 1000 + start + length
        c.execute("INSERT INTO boots(id, started_at, ended_at, needs_recovery) VALUES (?, ?, ?, ?)",
                  (i, started, ended, int(needs)))
        spans.append(BootSpan(i, started, ended, needs))
    mark_ms = T0 + mark_s * S + slack
    old = c.execute(OLD_BOOT_OF_MARK, (SAME_RUN_MS, mark_ms, mark_ms, mark_ms)).fetchone()
    new = boot_of_mark(mark_ms, spans)
    assert (new.id if new else None) == (old[0] if old else None)


# Times at and around each boundary the rule has, so that a window one bound short shows.
_retry_at = st.sampled_from([-RETRY_START_MS - 1, -RETRY_START_MS, -RETRY_START_MS + 1, -10 * S, -1, 0,
                             RETRY_LATE_MS, RETRY_LATE_MS + 1]) | st.integers(-40 * S, 10 * S)
_run_delta = st.sampled_from([-RETRY_EARLY_MS - 1, -RETRY_EARLY_MS, -RETRY_EARLY_MS + 1, -1, 0, 1, 2 * S])
_retry_rows = st.lists(st.tuples(st.integers(1, 4), _retry_at,
                                 st.sampled_from(["dispatched", "answered", "failed", "unconfirmed"]),
                                 st.sampled_from(["cron-run", "agent-turn"]), st.sampled_from([JOB, JOB, "other"])),
                       max_size=4)
_run_rows = st.lists(st.tuples(st.integers(0, 3), _run_delta, st.sampled_from([JOB, JOB, "other"])), max_size=4)


@settings(max_examples=400)
@given(retries=_retry_rows, near=_run_rows)
def test_the_attempt_at_a_boots_end_is_the_old_querys(retries: list[tuple[int, int, str, str, str]],
                                                       near: list[tuple[int, int, str]]) -> None:
    # Runs near a retry's send (its own run, one just before it), or near the run's start.
    runs = [((retries[i % len(retries)][1] if retries else 0) + d, job) for i, d, job in near]
    c = memory_store()
    c.execute("INSERT INTO boots(id, started_at) VALUES (1, 0), (2, 1)")
    for i, (attempt, offset, state, kind, job) in enumerate(retries, start=1):
        c.execute("INSERT INTO obligations(id, kind, ref, running_at_ms, boot_id, interrupted_at, reason, state,"
                  " updated_at) VALUES (?, 'cron', ?, ?, 1, 0, 'crash', 'done', 0)", (i, job, i))
        c.execute("INSERT INTO actions(key, obligation_id, kind, attempt, state, boot_id, dispatched_at_ms,"
                  " updated_at) VALUES (?, ?, ?, ?, ?, 1, ?, 0)", (f"k{i}", i, kind, attempt, state, R + offset))
    for offset, job in runs:
        c.execute("INSERT OR IGNORE INTO inflight_runs(job_id, running_at_ms, boot_id, state, first_seen_at,"
                  " updated_at) VALUES (?, ?, 1, 'finished', 0, 0)", (job, R + offset))
    # The old rule, from the query it was.
    prior = c.execute(OLD_PRIOR_RETRY, (JOB, R - RETRY_START_MS, R + RETRY_LATE_MS)).fetchone()
    if prior is not None and c.execute(OLD_RUN_SINCE_RETRY, (JOB, prior[1] - RETRY_EARLY_MS, R)).fetchone():
        prior = None
    old = prior[0] if prior else 1
    # The new: the store's reads, core's decision, the store's insert.
    c.execute("INSERT INTO inflight_runs(job_id, running_at_ms, boot_id, state, first_seen_at, updated_at)"
              " VALUES (?, ?, 2, 'running', 0, 0) ON CONFLICT DO UPDATE SET boot_id = 2, state = 'running'", (JOB, R))
    record_obligations(c, 2, 1.0, "crash")
    assert c.execute("SELECT attempt FROM obligations WHERE boot_id = 2 AND ref = ?", (JOB,)).fetchone()[0] == old


def old_open_obligations(c: sqlite3.Connection, boot: int, now: float, reason: str) -> None:
    """store/snapshots.open_obligations as it was (attempt as in OLD_PRIOR_RETRY)."""
    for run in c.execute("SELECT job_id, running_at_ms, agent_id, name, delete_after_run, schedule_kind"
                         " FROM inflight_runs WHERE boot_id = ? AND state = 'running'", (boot,)).fetchall():
        prior = c.execute(OLD_PRIOR_RETRY, (run["job_id"], run["running_at_ms"] - RETRY_START_MS,
                                            run["running_at_ms"] + RETRY_LATE_MS)).fetchone()
        if prior is not None and c.execute(OLD_RUN_SINCE_RETRY, (run["job_id"], prior[1] - RETRY_EARLY_MS,
                                                                 run["running_at_ms"])).fetchone():
            prior = None
        c.execute(
            "INSERT OR IGNORE INTO obligations(kind, ref, running_at_ms, boot_id, agent_id, name, one_shot, attempt,"
            " interrupted_at, reason, state, updated_at) VALUES ('cron', ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?)",
            (run["job_id"], run["running_at_ms"], boot, run["agent_id"], run["name"],
             int(bool(run["delete_after_run"]) or run["schedule_kind"] == "at"), prior[0] if prior else 1, now,
             reason, now))


def old_take_unseen(c: sqlite3.Connection, runs: list[RunItem], now: float
                    ) -> tuple[set[tuple[str, int]], list[tuple[int, RunItem]]]:
    """InflightRecords.record_unseen's transaction as it was, all in SQL."""
    added: dict[int, list[RunItem]] = {}
    cut: set[tuple[str, int]] = set()
    for r in runs:
        row = c.execute(OLD_BOOT_OF_MARK, (SAME_RUN_MS, r.running_at_ms, r.running_at_ms, r.running_at_ms)).fetchone()
        if row is None:
            continue
        boot = int(row[0])
        cut.add(r.key)
        if c.execute("SELECT 1 FROM inflight_runs WHERE job_id = ? AND boot_id = ? AND running_at_ms >= ?",
                     (r.job_id, boot, r.running_at_ms - SAME_RUN_MS)).fetchone() or c.execute(
                "SELECT 1 FROM obligations WHERE kind = 'cron' AND ref = ? AND running_at_ms = ?", r.key).fetchone():
            continue
        c.execute("UPDATE inflight_runs SET boot_id = ?, state = 'running', ended_at = NULL"
                  " WHERE job_id = ? AND running_at_ms = ?", (boot, *r.key))
        added.setdefault(boot, []).append(r)
    for boot, new in added.items():
        reason = c.execute("SELECT exit_kind FROM boots WHERE id = ?", (boot,)).fetchone()[0] or ""
        apply_delta(c, boot, Delta(runs_started=tuple(new)), now)
        old_open_obligations(c, boot, now, str(reason))
        c.execute("UPDATE inflight_runs SET state = 'interrupted', ended_at = ?, updated_at = ?"
                  " WHERE boot_id = ? AND state = 'running'", (now, now, boot))
    return cut, [(boot, r) for boot, new in added.items() for r in new]


def dump(c: sqlite3.Connection) -> tuple[list[tuple[object, ...]], ...]:
    return tuple([tuple(r) for r in c.execute(f"SELECT * FROM {t} ORDER BY 1, 2")]
                 for t in ("inflight_runs", "obligations", "events"))


_marks = st.lists(st.tuples(st.sampled_from([T0 + 30 * S - SAME_RUN_MS, T0 + 30 * S, T0 + 30 * S + 1])
                            | st.integers(-20, 200).map(lambda s: T0 + s * S), st.sampled_from(["a", "b"])),
                  max_size=4)


@settings(max_examples=300)
@given(later=st.lists(st.tuples(st.integers(-30, 300), st.none() | st.integers(0, 200), st.booleans()), max_size=3),
       marks=_marks, recorded=st.lists(st.tuples(
    st.sampled_from([T0 + 30 * S - SAME_RUN_MS - 1, T0 + 30 * S - SAME_RUN_MS, T0 + 30 * S, T0 + 30 * S + 1,
                     T0 + 100 * S]),
    st.sampled_from(["a", "b"]), st.integers(1, 5), st.sampled_from(["running", "finished", "interrupted"])),
    max_size=4), obligated=st.lists(st.sampled_from([("a", T0 + 30 * S), ("b", T0 + 100 * S)]), max_size=2))
@example(later=[(100, None, False), (120, 10, True)], marks=[(T0 + 30 * S, "a"), (T0 + 30 * S + 1, "a")],
         recorded=[(T0 + 30 * S, "a", 3, "finished")], obligated=[])  # moved, then seen by the next mark
def test_runs_cut_unseen_are_recorded_as_the_old_transaction_did(
        later: list[tuple[int, int | None, bool]], marks: list[tuple[int, str]],
        recorded: list[tuple[int, str, int, str]], obligated: list[tuple[str, int]]) -> None:
    rows = [(0, 60, True), *later]  # a crashed boot, and others (the marks around T0 + 30 s are its, or theirs)
    stores = memory_store(), memory_store()
    for c in stores:
        for i, (start, length, needs) in enumerate(rows, start=1):
            c.execute("INSERT INTO boots(id, started_at, ended_at, needs_recovery, exit_kind) VALUES (?, ?, ?, ?, ?)",
                      (i, T0 / 1000 + start, None if length is None else T0 / 1000 + start + length, int(needs),
                       "crash" if i % 2 else None))
        for t, job, boot, state in recorded:
            c.execute("INSERT OR IGNORE INTO inflight_runs(job_id, running_at_ms, boot_id, state, first_seen_at,"
                      " updated_at) VALUES (?, ?, ?, ?, 0, 0)", (job, t, min(boot, len(rows)), state))
        for job, t in obligated:
            c.execute("INSERT OR IGNORE INTO obligations(kind, ref, running_at_ms, boot_id, interrupted_at, reason,"
                      " state, updated_at) VALUES ('cron', ?, ?, 1, 0, 'crash', 'done', 0)", (job, t))
    items = list({(j, t): mark(t, j) for t, j in marks}.values())  # one mark per run, as both callers give
    old = old_take_unseen(stores[0], items, 5.0)
    new = take_unseen(stores[1], items, lambda: 5.0)
    assert new == old
    assert dump(stores[1]) == dump(stores[0])
