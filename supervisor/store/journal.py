"""Obligations and the action journal: an action is written (dispatched) before it is sent, and
its answer after; a crash between the two is resolved by observation, never by sending again."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from supervisor.store.db import Store, row_dicts


class Journal:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def open_obligations(self) -> list[dict[str, Any]]:
        return await self.store.read(lambda c: row_dicts(c.execute(
            "SELECT * FROM obligations WHERE state = 'open' ORDER BY interrupted_at, id")))

    async def actions_for(self, obligation_id: int) -> list[dict[str, Any]]:
        return await self.store.read(lambda c: row_dicts(c.execute(
            "SELECT * FROM actions WHERE obligation_id = ? ORDER BY dispatched_at_ms", (obligation_id,))))

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
                         at_ms: int) -> bool:
        """Journal an action before sending it. False: this key was journaled already (never twice)."""
        def tx(c: sqlite3.Connection) -> bool:
            cur = c.execute(
                "INSERT OR IGNORE INTO actions(key, obligation_id, kind, attempt, state, boot_id, dispatched_at_ms,"
                " updated_at) VALUES (?, ?, ?, ?, 'dispatched', ?, ?, ?)",
                (key, obligation_id, kind, attempt, boot, at_ms, time.time()))
            return cur.rowcount == 1
        return await self.store.write(tx)

    async def run_recorded(self, job_id: str, since_ms: int, boot: int) -> bool:
        """Has the snapshot recorded a run of this job starting at or after `since_ms`, in `boot`
        (the gateway that ran it)? Once it has, a crash during that run opens an obligation of its
        own. A later boot's record proves nothing: a new gateway lists the dead one's run as
        running until its startup repair (found by the chaos benchmark)."""
        return bool(await self.store.read(lambda c: c.execute(
            "SELECT 1 FROM inflight_runs WHERE job_id = ? AND running_at_ms >= ? AND boot_id = ? LIMIT 1",
            (job_id, since_ms, boot)).fetchone()))

    async def count_attempt(self, obligation_id: int, attempt: int) -> None:
        """A retry that was sent and cut (or never took effect) was an attempt all the same."""
        await self.store.write(lambda c: c.execute(
            "UPDATE obligations SET attempt = max(attempt, ?), updated_at = ? WHERE id = ?",
            (attempt, time.time(), obligation_id)))

    async def answered(self, key: str, state: str, result: Any) -> None:
        await self.store.write(lambda c: c.execute(
            "UPDATE actions SET state = ?, result = ?, updated_at = ? WHERE key = ?",
            (state, json.dumps(result, default=str)[:4000], time.time(), key)))


def read_history(c: sqlite3.Connection, limit: int = 50) -> list[dict[str, Any]]:
    if not c.execute("SELECT 1 FROM sqlite_master WHERE name = 'obligations'").fetchone():
        return []
    rows = row_dicts(c.execute(
        "SELECT o.id, o.kind, o.ref, o.name, o.agent_id, o.running_at_ms, o.boot_id, o.attempt, o.reason, o.state,"
        " o.resolution, o.interrupted_at, o.updated_at FROM obligations o ORDER BY o.id DESC LIMIT ?", (limit,)))
    for r in rows:
        r["actions"] = row_dicts(c.execute(
            "SELECT key, kind, attempt, state, dispatched_at_ms, result FROM actions WHERE obligation_id = ?"
            " ORDER BY dispatched_at_ms", (r["id"],)))
    return rows
