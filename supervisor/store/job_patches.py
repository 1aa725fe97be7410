"""The journal of one-time changes to a job's payload text (a retry's words, `core/retry_words.py`):
written before the change is sent, settled when the job holds its own text again."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from supervisor.store.db import Store, row_dicts

UNSETTLED = ("patching", "patched")


class JobPatchRecords:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def patching(self, job_id: str, action_key: str, kind: str, field: str, original: str, patched: str,
                       boot: int) -> int | None:
        """Journal a change before sending it. None: this retry's change was journaled already."""
        def tx(c: sqlite3.Connection) -> int | None:
            cur = c.execute(
                "INSERT OR IGNORE INTO job_patches(job_id, action_key, kind, field, original, patched, state, boot_id,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, 'patching', ?, ?)",
                (job_id, action_key, kind, field, original, patched, boot, time.time()))
            return cur.lastrowid if cur.rowcount == 1 else None
        return await self.store.write(tx)

    async def set_state(self, patch_id: int, state: str) -> None:
        await self.store.write(lambda c: c.execute(
            "UPDATE job_patches SET state = ?, updated_at = ? WHERE id = ?", (state, time.time(), patch_id)))

    async def unsettled(self) -> list[dict[str, Any]]:
        return await self.store.read(lambda c: row_dicts(c.execute(
            "SELECT * FROM job_patches WHERE state IN ('patching', 'patched') ORDER BY id")))

    async def of_job(self, job_id: str) -> list[dict[str, Any]]:
        return await self.store.read(lambda c: row_dicts(c.execute(
            "SELECT * FROM job_patches WHERE job_id = ? ORDER BY id", (job_id,))))
