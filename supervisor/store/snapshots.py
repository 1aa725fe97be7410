"""In-flight records: the snapshotter's changes, one transaction per poll; what a boot's end leaves."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable
from typing import Any

from supervisor.core.inflight import SAME_RUN_MS, Delta, InFlight, RunItem, RunKey, SessionItem
from supervisor.core.obligations import (
    RETRY_EARLY_MS,
    RETRY_START_MS,
    BootSpan,
    Obligation,
    ObligationKind,
    RunAtEnd,
    SessionAtEnd,
    obligations_at_end,
    place_unseen,
)
from supervisor.store.db import Store, row_dicts
from supervisor.store.journal import insert_obligations, retries_near


def apply_delta(c: sqlite3.Connection, boot: int, delta: Delta, now: float) -> None:
    for s in (*delta.sessions_started, *delta.sessions_changed):
        c.execute(
            "INSERT INTO inflight_sessions(boot_id, key, agent_id, kind, session_id, run_ids, last_activity_ms,"
            " state, first_seen_at, updated_at) VALUES (?,?,?,?,?,?,?, 'active', ?, ?)"
            " ON CONFLICT(boot_id, key) DO UPDATE SET session_id = excluded.session_id, run_ids = excluded.run_ids,"
            " last_activity_ms = excluded.last_activity_ms, state = 'active', ended_at = NULL,"
            " updated_at = excluded.updated_at",
            (boot, s.key, s.agent_id, s.kind, s.session_id, json.dumps(list(s.run_ids)), s.last_activity_ms, now,
             now))
    for key in delta.sessions_ended:
        c.execute("UPDATE inflight_sessions SET state = 'ended', ended_at = ?, updated_at = ?"
                  " WHERE boot_id = ? AND key = ? AND state = 'active'", (now, now, boot, key))
    for r in delta.runs_started:
        c.execute(
            "INSERT INTO inflight_runs(job_id, running_at_ms, boot_id, name, agent_id, payload_kind, session_target,"
            " schedule_kind, receipt_id, delete_after_run, enabled, state, first_seen_at, updated_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?, 'running', ?, ?) ON CONFLICT(job_id, running_at_ms) DO NOTHING",
            (r.job_id, r.running_at_ms, boot, r.name, r.agent_id, r.payload_kind, r.session_target, r.schedule_kind,
             r.receipt_id, int(r.delete_after_run), int(r.enabled), now, now))
    for job_id, running_at in delta.runs_ended:
        c.execute("UPDATE inflight_runs SET state = 'finished', ended_at = ?, updated_at = ?"
                  " WHERE job_id = ? AND running_at_ms = ? AND state = 'running'", (now, now, job_id, running_at))
    if delta:
        c.execute("INSERT INTO events(ts, kind, boot_id, data) VALUES (?, 'snapshot', ?, ?)", (now, boot, json.dumps({
            "sessions_started": [s.key for s in delta.sessions_started],
            "sessions_ended": list(delta.sessions_ended),
            "runs_started": [list(r.key) for r in delta.runs_started],
            "runs_ended": [list(k) for k in delta.runs_ended],
        })))


def close_boot(c: sqlite3.Connection, boot: int, interrupted: bool, now: float, reason: str = "") -> tuple[int, int]:
    """At a boot's end: what was still in flight was interrupted (or, after a clean drain, ended),
    and each interrupted piece of work becomes an obligation for recovery, in the same transaction."""
    if interrupted:
        record_obligations(c, boot, now, reason)
    s_state, r_state = ("interrupted", "interrupted") if interrupted else ("ended", "finished")
    s = c.execute("UPDATE inflight_sessions SET state = ?, ended_at = ?, updated_at = ?"
                  " WHERE boot_id = ? AND state = 'active'", (s_state, now, now, boot)).rowcount
    r = c.execute("UPDATE inflight_runs SET state = ?, ended_at = ?, updated_at = ?"
                  " WHERE boot_id = ? AND state = 'running'", (r_state, now, now, boot)).rowcount
    return s, r


class InflightRecords:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def apply(self, boot: int, delta: Delta) -> None:
        await self.store.write(lambda c: apply_delta(c, boot, delta, time.time()))

    async def of_boot(self, boot: int) -> InFlight:
        """What the store holds as in flight in `boot`: a new snapshotter (a reconnect, or a
        gatewayd that adopted the gateway) starts from it, so what ended meanwhile is closed."""
        def read(c: sqlite3.Connection) -> InFlight:
            sessions = {r["key"]: SessionItem(r["key"], r["agent_id"], r["kind"], r["session_id"],
                                              tuple(json.loads(r["run_ids"] or "[]")), r["last_activity_ms"])
                        for r in row_dicts(c.execute(
                            "SELECT key, agent_id, kind, session_id, run_ids, last_activity_ms FROM inflight_sessions"
                            " WHERE boot_id = ? AND state = 'active'", (boot,)))}
            runs = {(r["job_id"], r["running_at_ms"]): RunItem(
                        r["job_id"], r["running_at_ms"], r["name"], r["agent_id"], r["payload_kind"],
                        r["session_target"], r["schedule_kind"], r["receipt_id"], bool(r["delete_after_run"]),
                        bool(r["enabled"]))
                    for r in row_dicts(c.execute(
                        "SELECT * FROM inflight_runs WHERE boot_id = ? AND state = 'running'", (boot,)))}
            return InFlight(sessions, runs)
        result: InFlight = await self.store.read(read)
        return result

    async def record_unseen(self, runs: Iterable[RunItem]) -> tuple[set[RunKey], list[tuple[int, RunItem]]]:
        """Runs the gateway's own state shows cut by a restart (2.x: the dead gateway's jobs file;
        9.x: `cron.list` after the restart) that no snapshot recorded. Each belongs to the ended
        boot, needing recovery, during which it started; it is recorded as an interrupted run of
        that boot and becomes an obligation, in one transaction. A mark in no such boot (a live run
        of the current boot, a boot drained cleanly, an older crash's) is not taken. Returns the
        marks that lie in such a boot (none is a run of the current one), and what was added, with
        its boot."""
        marks = list(runs)
        result: tuple[set[RunKey], list[tuple[int, RunItem]]] = await self.store.write(
            lambda c: take_unseen(c, marks, time.time))
        return result

    async def unseen_turn_checks(self, current_boot: int) -> list[dict[str, Any]]:
        """Boots that ended while gatewayd was not watching (`vanished`), not checked yet for turns
        that started unseen: their id, start, recorded end and the next boot's start (wall clock,
        seconds; the dead gateway's life ends before the next one starts)."""
        return await self.store.read(lambda c: row_dicts(c.execute(
            "SELECT id, started_at, ended_at, (SELECT MIN(n.started_at) FROM boots n WHERE n.id > b.id)"
            " AS next_started_at FROM boots b WHERE id < ? AND exit_kind = 'vanished'"
            " AND id NOT IN (SELECT boot_id FROM turn_checks) ORDER BY id", (current_boot,))))

    async def record_unseen_turns(self, boot: int, found: list[tuple[str, str, str, int]], interrupted_at: float,
                                  reason: str) -> None:
        """The turns found cut unseen in `boot` (key, agent, kind, start ms) become session
        obligations, in one transaction with the boot marked checked: never found twice."""
        def tx(c: sqlite3.Connection) -> None:
            if c.execute("SELECT 1 FROM turn_checks WHERE boot_id = ?", (boot,)).fetchone():
                return
            insert_obligations(c, [Obligation(ObligationKind.SESSION, key, boot, interrupted_at, reason,
                                              agent_id=agent, session_kind=kind, running_at_ms=started)
                                   for key, agent, kind, started in found])
            c.execute("INSERT INTO turn_checks(boot_id, checked_at, found) VALUES (?, ?, ?)",
                      (boot, time.time(), len(found)))
        await self.store.write(tx)

    async def turn_started(self, boot: int, key: str) -> int | None:
        """When the session's turn gatewayd last saw in flight in `boot` began (2026.2.x: its
        lifecycle start; else the row's last activity), or None where nothing says."""
        row = await self.store.read(lambda c: c.execute(
            "SELECT last_activity_ms FROM inflight_sessions WHERE boot_id = ? AND key = ?", (boot, key)).fetchone())
        return int(row[0]) if row is not None and row[0] is not None else None

    async def turn_recorded_at(self, key: str, active_since_ms: int | None = None) -> float | None:
        """When a snapshot last first saw a turn of this session running (any boot), or None.
        `active_since_ms`: leave out records whose turn's own activity time is older: a gateway that
        restarted may list the cut turn as still running (its row left stale), which is no new turn."""
        row = await self.store.read(lambda c: c.execute(
            "SELECT MAX(first_seen_at) FROM inflight_sessions WHERE key = ?"
            " AND (? IS NULL OR last_activity_ms IS NULL OR last_activity_ms >= ?)",
            (key, active_since_ms, active_since_ms)).fetchone())
        return float(row[0]) if row is not None and row[0] is not None else None


def take_unseen(c: sqlite3.Connection, marks: list[RunItem], clock: Callable[[], float]
                ) -> tuple[set[RunKey], list[tuple[int, RunItem]]]:
    """`InflightRecords.record_unseen` in its transaction (`clock`: the time it records)."""
    boots = [BootSpan(int(b[0]), float(b[1]), None if b[2] is None else float(b[2]), b[3] == 1, b[4])
             for b in c.execute("SELECT id, started_at, ended_at, needs_recovery, exit_kind FROM boots")]
    earliest: dict[str, int] = {}
    for r in marks:
        earliest[r.job_id] = min(earliest.get(r.job_id, r.running_at_ms), r.running_at_ms)
    recorded = {job: [(int(t), int(b)) for t, b in c.execute(
        "SELECT running_at_ms, boot_id FROM inflight_runs WHERE job_id = ? AND running_at_ms >= ?",
        (job, since - SAME_RUN_MS))] for job, since in earliest.items()}
    obligated = {r.key for r in marks if c.execute(
        "SELECT 1 FROM obligations WHERE kind = 'cron' AND ref = ? AND running_at_ms = ?", r.key).fetchone()}
    placed = place_unseen(marks, boots, recorded, obligated)
    added: dict[int, tuple[BootSpan, list[RunItem]]] = {}
    for boot, r in placed.added:
        c.execute("UPDATE inflight_runs SET boot_id = ?, state = 'running', ended_at = NULL"
                  " WHERE job_id = ? AND running_at_ms = ?", (boot.id, *r.key))
        added.setdefault(boot.id, (boot, []))[1].append(r)
    now = clock()
    for boot, new in added.values():
        apply_delta(c, boot.id, Delta(runs_started=tuple(new)), now)
        record_obligations(c, boot.id, now, boot.exit_kind or "")
        c.execute("UPDATE inflight_runs SET state = 'interrupted', ended_at = ?, updated_at = ?"
                  " WHERE boot_id = ? AND state = 'running'", (now, now, boot.id))
    return set(placed.cut), [(boot, r) for boot, (_, new) in added.items() for r in new]


def record_obligations(c: sqlite3.Connection, boot: int, now: float, reason: str) -> None:
    """What `boot` still has in flight becomes its obligations (core/obligations.py decides)."""
    runs = [RunAtEnd(r["job_id"], r["running_at_ms"], r["agent_id"], r["name"], bool(r["delete_after_run"]),
                     r["schedule_kind"], retries_near(c, r["job_id"], r["running_at_ms"]),
                     _runs_before(c, r["job_id"], r["running_at_ms"]))
            for r in row_dicts(c.execute(
                "SELECT job_id, running_at_ms, agent_id, name, delete_after_run, schedule_kind FROM inflight_runs"
                " WHERE boot_id = ? AND state = 'running'", (boot,)))]
    sessions = [SessionAtEnd(s["key"], s["agent_id"], s["kind"]) for s in row_dicts(c.execute(
        "SELECT key, agent_id, kind FROM inflight_sessions WHERE boot_id = ? AND state = 'active'", (boot,)))]
    insert_obligations(c, obligations_at_end(boot, runs, sessions, reason, now))


def _runs_before(c: sqlite3.Connection, job_id: str, running_at_ms: int) -> tuple[int, ...]:
    """The job's recorded runs (any boot) that started in the window `attempt_of` looks at."""
    return tuple(int(r[0]) for r in c.execute(
        "SELECT running_at_ms FROM inflight_runs WHERE job_id = ? AND running_at_ms >= ? AND running_at_ms < ?",
        (job_id, running_at_ms - RETRY_START_MS - RETRY_EARLY_MS, running_at_ms)))
