"""In-flight records: the snapshotter's changes, one transaction per poll; what a boot's end leaves."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from typing import Any

from supervisor.core.inflight import SAME_RUN_MS, Delta, InFlight, RunItem, RunKey, SessionItem
from supervisor.store.db import Store, row_dicts


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
        open_obligations(c, boot, now, reason)
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
        def tx(c: sqlite3.Connection) -> tuple[set[RunKey], list[tuple[int, RunItem]]]:
            added: dict[int, list[RunItem]] = {}
            cut: set[RunKey] = set()
            for r in runs:
                # The boot it started in: one that ended needing recovery, and before the next boot
                # began (a boot whose end was written late must not claim its successors' runs).
                row = c.execute(
                    "SELECT id FROM boots b WHERE ended_at IS NOT NULL AND needs_recovery = 1"
                    " AND started_at * 1000 - ? <= ? AND ended_at * 1000 >= ?"
                    " AND NOT EXISTS (SELECT 1 FROM boots n WHERE n.id > b.id AND n.started_at * 1000 <= ?)"
                    " ORDER BY id DESC LIMIT 1",
                    (SAME_RUN_MS, r.running_at_ms, r.running_at_ms, r.running_at_ms)).fetchone()
                if row is None:
                    continue
                boot = int(row[0])
                cut.add(r.key)
                # Seen already: a recorded run of the job in that boot that started at the mark or
                # after. 2.26 writes the mark to its file when its timer claims the job and shows
                # `cron.list` the moment the run starts (1 ms later, measured); a job never runs
                # twice at once. Or an obligation for this very run, whatever boot holds it.
                if c.execute("SELECT 1 FROM inflight_runs WHERE job_id = ? AND boot_id = ? AND running_at_ms >= ?",
                             (r.job_id, boot, r.running_at_ms - SAME_RUN_MS)).fetchone() or c.execute(
                        "SELECT 1 FROM obligations WHERE kind = 'cron' AND ref = ? AND running_at_ms = ?",
                        r.key).fetchone():
                    continue
                # Recorded as a run of a later boot (by a gatewayd before this check, or while the
                # check failed): it is this boot's, cut; moved there, it becomes its obligation.
                c.execute("UPDATE inflight_runs SET boot_id = ?, state = 'running', ended_at = NULL"
                          " WHERE job_id = ? AND running_at_ms = ?", (boot, *r.key))
                added.setdefault(boot, []).append(r)
            now = time.time()
            for boot, new in added.items():
                reason = c.execute("SELECT exit_kind FROM boots WHERE id = ?", (boot,)).fetchone()[0] or ""
                apply_delta(c, boot, Delta(runs_started=tuple(new)), now)
                open_obligations(c, boot, now, str(reason))
                c.execute("UPDATE inflight_runs SET state = 'interrupted', ended_at = ?, updated_at = ?"
                          " WHERE boot_id = ? AND state = 'running'", (now, now, boot))
            return cut, [(boot, r) for boot, new in added.items() for r in new]
        result: tuple[set[RunKey], list[tuple[int, RunItem]]] = await self.store.write(tx)
        return result

    async def turn_started(self, boot: int, key: str) -> int | None:
        """When the session's turn gatewayd last saw in flight in `boot` began (2026.2.x: its
        lifecycle start; else the row's last activity), or None where nothing says."""
        row = await self.store.read(lambda c: c.execute(
            "SELECT last_activity_ms FROM inflight_sessions WHERE boot_id = ? AND key = ?", (boot, key)).fetchone())
        return int(row[0]) if row is not None and row[0] is not None else None

    async def seen_active(self, key: str, boot: int | None, since_ms: int) -> bool:
        """Did this session have a turn running (in `boot`, or any) since `since_ms`?"""
        row = await self.store.read(lambda c: c.execute(
            "SELECT 1 FROM inflight_sessions WHERE key = ? AND (? IS NULL OR boot_id = ?) AND first_seen_at >= ?",
            (key, boot, boot, since_ms / 1000 - 1.0)).fetchone())
        return row is not None


def read_current(c: sqlite3.Connection) -> dict[str, list[dict[str, Any]]]:
    """Active and interrupted items (an older store, before these tables, has none)."""
    if not c.execute("SELECT 1 FROM sqlite_master WHERE name = 'inflight_runs'").fetchone():
        return {"sessions": [], "runs": []}
    sessions = row_dicts(c.execute(
        "SELECT boot_id, key, agent_id, kind, session_id, run_ids, last_activity_ms, state, first_seen_at, ended_at"
        " FROM inflight_sessions WHERE state IN ('active', 'interrupted') ORDER BY boot_id DESC, key LIMIT 500"))
    runs = row_dicts(c.execute(
        "SELECT job_id, running_at_ms, boot_id, name, agent_id, payload_kind, session_target, schedule_kind, state,"
        " first_seen_at, ended_at FROM inflight_runs WHERE state IN ('running', 'interrupted')"
        " ORDER BY running_at_ms DESC LIMIT 500"))
    for s in sessions:
        s["run_ids"] = json.loads(s["run_ids"])
    return {"sessions": sessions, "runs": runs}


RETRY_START_MS = 30_000  # a retry's run starts within this of cron.run (at once, or behind a busy lane)


def open_obligations(c: sqlite3.Connection, boot: int, now: float, reason: str) -> None:
    for run in row_dicts(c.execute(
            "SELECT job_id, running_at_ms, agent_id, name, delete_after_run, schedule_kind FROM inflight_runs"
            " WHERE boot_id = ? AND state = 'running'", (boot,))):
        # Was the interrupted run gatewayd's own retry? Then it carries that attempt's number, so
        # a job whose retries keep killing the gateway runs out of attempts. It was when it is the
        # first run of the job to start after a retry was sent, within RETRY_START_MS of it. Any
        # earlier run since the send was that retry, and this one a regular run starting anew
        # (found by the chaos benchmark: a one-minute job's next slot inherited a finished retry's
        # attempt, so its interruption was given up as exhausted and never retried).
        prior = c.execute(
            "SELECT a.attempt, a.dispatched_at_ms FROM actions a JOIN obligations o ON o.id = a.obligation_id"
            " WHERE o.kind = 'cron' AND o.ref = ? AND a.kind = 'cron-run' AND a.state IN ('dispatched', 'answered')"
            " AND a.dispatched_at_ms BETWEEN ? AND ? ORDER BY a.dispatched_at_ms DESC LIMIT 1",
            (run["job_id"], run["running_at_ms"] - RETRY_START_MS, run["running_at_ms"] + 5_000)).fetchone()
        if prior is not None and c.execute(
                "SELECT 1 FROM inflight_runs WHERE job_id = ? AND running_at_ms >= ? AND running_at_ms < ? LIMIT 1",
                (run["job_id"], prior[1] - 1_000, run["running_at_ms"])).fetchone():
            prior = None
        one_shot = bool(run["delete_after_run"]) or run["schedule_kind"] == "at"
        c.execute(
            "INSERT OR IGNORE INTO obligations(kind, ref, running_at_ms, boot_id, agent_id, name, one_shot, attempt,"
            " interrupted_at, reason, state, updated_at) VALUES ('cron', ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?)",
            (run["job_id"], run["running_at_ms"], boot, run["agent_id"], run["name"], int(one_shot),
             prior[0] if prior else 1, now, reason, now))
    for s in row_dicts(c.execute(
            "SELECT key, agent_id, kind FROM inflight_sessions WHERE boot_id = ? AND state = 'active'", (boot,))):
        c.execute(
            "INSERT OR IGNORE INTO obligations(kind, ref, boot_id, agent_id, session_kind, interrupted_at, reason,"
            " state, updated_at) VALUES ('session', ?, ?, ?, ?, ?, ?, 'open', ?)",
            (s["key"], boot, s["agent_id"], s["kind"], now, reason, now))
