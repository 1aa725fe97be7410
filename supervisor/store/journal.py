"""Obligations and the action journal: an action is written (dispatched) before it is sent, and
its answer after; a crash between the two is resolved by observation, never by sending again."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from typing import Any

from supervisor.core.obligations import (
    RETRY_LATE_MS,
    RETRY_START_MS,
    Action,
    ActionKind,
    ActionState,
    Obligation,
    ObligationKind,
    RetrySent,
)
from supervisor.store.db import Store, row_dicts


class Journal:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def open_obligations(self) -> list[Obligation]:
        return await self.store.read(lambda c: [_obligation(r) for r in row_dicts(c.execute(
            "SELECT * FROM obligations WHERE state = 'open' ORDER BY interrupted_at, id"))])

    async def actions_for(self, obligation_id: int) -> list[Action]:
        return await self.store.read(lambda c: [_action(r) for r in row_dicts(c.execute(
            "SELECT * FROM actions WHERE obligation_id = ? ORDER BY dispatched_at_ms", (obligation_id,)))])

    async def plan(self, obligation_id: int, planned_at_ms: int) -> None:
        await self.store.write(lambda c: c.execute(
            "UPDATE obligations SET planned_at_ms = ?, updated_at = ? WHERE id = ? AND planned_at_ms IS NULL",
            (planned_at_ms, time.time(), obligation_id)))

    async def resolve(self, obligation_id: int, state: str, resolution: str) -> None:
        def tx(c: sqlite3.Connection) -> None:
            c.execute("UPDATE obligations SET state = ?, resolution = ?, updated_at = ?"
                      " WHERE id = ? AND state = 'open'", (state, resolution, time.time(), obligation_id))
            c.execute("INSERT INTO events(ts, kind, data) VALUES (?, 'recovery', ?)",
                      (time.time(), json.dumps({"obligation": obligation_id, "state": state,
                                                "resolution": resolution})))
        await self.store.write(tx)

    async def dispatched(self, key: str, obligation_id: int, kind: str, attempt: int, boot: int,
                         at_ms: int, text: str | None = None) -> bool:
        """Journal an action before sending it (a notice with its text). False: this key was
        journaled already (never twice)."""
        def tx(c: sqlite3.Connection) -> bool:
            cur = c.execute(
                "INSERT OR IGNORE INTO actions(key, obligation_id, kind, attempt, state, boot_id, dispatched_at_ms,"
                " updated_at, text) VALUES (?, ?, ?, ?, 'dispatched', ?, ?, ?, ?)",
                (key, obligation_id, kind, attempt, boot, at_ms, time.time(), text))
            return cur.rowcount == 1
        return await self.store.write(tx)

    async def latest_runs(self, job_id: str, boots: Iterable[int]) -> dict[int, int]:
        """Per boot, the latest start of the job's runs the snapshot recorded in it. A retry's run
        recorded in the boot it was sent to stands: a crash during it opens an obligation of its
        own. A later boot's record proves nothing: a new gateway lists the dead one's run as
        running until its startup repair (found by the chaos benchmark)."""
        wanted = sorted(set(boots))
        if not wanted:
            return {}
        rows = await self.store.read(lambda c: c.execute(
            f"SELECT boot_id, MAX(running_at_ms) FROM inflight_runs WHERE job_id = ?"
            f" AND boot_id IN ({', '.join('?' * len(wanted))}) GROUP BY boot_id", (job_id, *wanted)).fetchall())
        return {int(b): int(t) for b, t in rows}

    async def count_attempt(self, obligation_id: int, attempt: int) -> None:
        """A retry that was sent and cut (or never took effect) was an attempt all the same."""
        await self.store.write(lambda c: c.execute(
            "UPDATE obligations SET attempt = max(attempt, ?), updated_at = ? WHERE id = ?",
            (attempt, time.time(), obligation_id)))

    async def answered(self, key: str, state: str, result: Any) -> None:
        await self.store.write(lambda c: c.execute(
            "UPDATE actions SET state = ?, result = ?, updated_at = ? WHERE key = ?",
            (state, json.dumps(result, default=str)[:4000], time.time(), key)))


def _obligation(r: dict[str, Any]) -> Obligation:
    return Obligation(ObligationKind(r["kind"]), r["ref"], int(r["boot_id"]), float(r["interrupted_at"]), r["reason"],
                      agent_id=r["agent_id"], running_at_ms=int(r["running_at_ms"]), name=r["name"],
                      one_shot=bool(r["one_shot"]), attempt=int(r["attempt"]), session_kind=r["session_kind"],
                      id=int(r["id"]), planned_at_ms=None if r["planned_at_ms"] is None else int(r["planned_at_ms"]))


def _action(r: dict[str, Any]) -> Action:
    return Action(r["key"], ActionKind(r["kind"]), int(r["attempt"]), ActionState(r["state"]),
                  None if r["boot_id"] is None else int(r["boot_id"]), int(r["dispatched_at_ms"]), r.get("text"))


def insert_obligations(c: sqlite3.Connection, obligations: Iterable[Obligation]) -> None:
    """Open each; one with the same key exists already: it stays as it is."""
    for o in obligations:
        c.execute(
            "INSERT OR IGNORE INTO obligations(kind, ref, running_at_ms, boot_id, agent_id, session_kind, name,"
            " one_shot, attempt, interrupted_at, reason, state, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?)",
            (str(o.kind), o.ref, o.running_at_ms, o.boot_id, o.agent_id, o.session_kind, o.name, int(o.one_shot),
             o.attempt, o.interrupted_at, o.reason, o.interrupted_at))


def retries_near(c: sqlite3.Connection, job_id: str, running_at_ms: int) -> tuple[RetrySent, ...]:
    """The retries sent for the job (dispatched or answered) from RETRY_START_MS before the run's
    start to RETRY_LATE_MS after it, latest first."""
    return tuple(RetrySent(int(r[0]), int(r[1])) for r in c.execute(
        "SELECT a.attempt, a.dispatched_at_ms FROM actions a JOIN obligations o ON o.id = a.obligation_id"
        " WHERE o.kind = 'cron' AND o.ref = ? AND a.kind = 'cron-run' AND a.state IN ('dispatched', 'answered')"
        " AND a.dispatched_at_ms BETWEEN ? AND ? ORDER BY a.dispatched_at_ms DESC",
        (job_id, running_at_ms - RETRY_START_MS, running_at_ms + RETRY_LATE_MS)))
