"""The store's side of agent wakes (rules: `core/wake_plan.py`): which dead boots still owe wakes,
what each agent of them had interrupted, and the journal of each wake."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from supervisor.store.db import Store, row_dicts

FINAL = ("done", "covered", "nothing", "unconfirmed", "failed")


class WakeJournal:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def boots_owing(self, current_boot: int, since: float) -> list[dict[str, Any]]:
        """Ended boots, ended since `since` (wall clock), with interrupted work or re-queued events."""
        return await self.store.read(lambda c: row_dicts(c.execute(
            "SELECT id, ended_at, exit_kind FROM boots b WHERE id < ? AND ended_at IS NOT NULL AND ended_at >= ?"
            " AND (EXISTS (SELECT 1 FROM obligations o WHERE o.boot_id = b.id)"
            "      OR EXISTS (SELECT 1 FROM requeues r WHERE r.boot_id = b.id)"
            "      OR EXISTS (SELECT 1 FROM queued_events q WHERE q.boot_id = b.id))"
            " ORDER BY id", (current_boot, since))))

    async def interrupted(self, boot: int) -> list[dict[str, Any]]:
        return await self.store.read(lambda c: row_dicts(c.execute(
            "SELECT kind, ref, agent_id, name, session_kind, state, resolution, attempt, planned_at_ms, reason"
            " FROM obligations WHERE boot_id = ? ORDER BY id", (boot,))))

    async def requeued(self, boot: int) -> tuple[int, bool]:
        """(texts of this boot queued again or being so, whether all of them are settled). A look
        not planned yet counts its texts as unsettled: the re-queue runs beside the waker."""
        def read(c: sqlite3.Connection) -> tuple[int, bool]:
            look = c.execute("SELECT planned FROM queue_looks WHERE boot_id = ?", (boot,)).fetchone()
            if look is not None and not look[0]:
                n = c.execute("SELECT count(*) FROM queued_events WHERE boot_id = ?", (boot,)).fetchone()[0]
                if n:
                    return int(n), False
            rows = c.execute("SELECT state FROM requeues WHERE boot_id = ? AND kind = 'system-event'"
                             " AND state IN ('planned', 'dispatched', 'answered', 'observed')", (boot,)).fetchall()
            return len(rows), all(r[0] in ("answered", "observed") for r in rows)
        return await self.store.read(read)

    async def wakes(self, boot: int) -> dict[str, dict[str, Any]]:
        rows = await self.store.read(lambda c: row_dicts(c.execute(
            "SELECT * FROM agent_wakes WHERE boot_id = ?", (boot,))))
        return {r["agent_id"]: r for r in rows}

    async def decided(self, boot: int, agent: str, state: str, method: str | None, text: str | None,
                      resolution: str) -> None:
        await self.store.write(lambda c: c.execute(
            "INSERT OR IGNORE INTO agent_wakes(boot_id, agent_id, state, method, text, resolution, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)", (boot, agent, state, method, text, resolution, time.time())))

    async def dispatched(self, boot: int, agent: str, method: str, into_boot: int, at_ms: int) -> bool:
        """Journal a send before it happens. False: it was dispatched already (never twice)."""
        def tx(c: sqlite3.Connection) -> bool:
            return c.execute(
                "UPDATE agent_wakes SET state = 'dispatched', method = ?, into_boot = ?, dispatched_at_ms = ?,"
                " updated_at = ? WHERE boot_id = ? AND agent_id = ? AND state = 'planned'",
                (method, into_boot, at_ms, time.time(), boot, agent)).rowcount == 1
        return await self.store.write(tx)

    async def settle(self, boot: int, agent: str, state: str, resolution: str, method: str | None = None) -> None:
        await self.store.write(lambda c: c.execute(
            "UPDATE agent_wakes SET state = ?, resolution = ?, method = coalesce(?, method), updated_at = ?"
            " WHERE boot_id = ? AND agent_id = ?", (state, resolution[:500], method, time.time(), boot, agent)))
