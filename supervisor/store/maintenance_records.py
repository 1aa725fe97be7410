"""Maintenance in the store: the pause in force (so a restarted gatewayd stays paused until it
ends) and the calendar's fires (so one slot is never acted on twice, also across a restart of
gatewayd). Both are rows of the `events` log: `paused` / `resumed`, and `maintenance-fire` with
the slot, the kind and the outcome. A fire's row is the one row of that log changed after it is
written: claimed before it acts, its outcome settled once it has (`settle_fire`)."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from supervisor.core.maintenance import Pause
from supervisor.store.db import Store

FIRE = "maintenance-fire"


def _event(c: sqlite3.Connection, kind: str, data: dict[str, Any]) -> None:
    c.execute("INSERT INTO events(ts, kind, boot_id, data) VALUES (?,?,NULL,?)", (time.time(), kind, json.dumps(data)))


class MaintenanceRecords:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def paused(self, pause: Pause) -> None:
        await self.store.write(lambda c: _event(c, "paused", pause.as_dict()))

    async def resumed(self, by: str) -> None:
        await self.store.write(lambda c: _event(c, "resumed", {"by": by}))

    async def last_pause(self) -> Pause | None:
        """The pause last recorded, unless a resume followed it (whether it is still on is the
        caller's question: it knows `now`)."""
        def tx(c: sqlite3.Connection) -> Pause | None:
            row = c.execute("SELECT kind, data FROM events WHERE kind IN ('paused', 'resumed')"
                            " ORDER BY id DESC LIMIT 1").fetchone()
            if row is None or row[0] != "paused":
                return None
            d = json.loads(row[1])
            return Pause(float(d["since"]), None if d.get("until") is None else float(d["until"]), str(d["by"]),
                         str(d.get("reason", "")))
        return await self.store.read(tx)

    async def claim_fire(self, kind: str, slot: float, entry: str, outcome: str) -> bool:
        """Record one fire of a slot; False (and nothing written) when that slot was recorded
        already. Check and write are one transaction on the store's single writer."""
        def tx(c: sqlite3.Connection) -> bool:
            seen = c.execute(f"SELECT 1 FROM events WHERE kind = '{FIRE}' AND json_extract(data, '$.kind') = ?"
                             " AND json_extract(data, '$.entry') = ? AND json_extract(data, '$.slot') = ?",
                             (kind, entry, slot)).fetchone()
            if seen:
                return False
            _event(c, FIRE, {"kind": kind, "entry": entry, "slot": slot, "outcome": outcome, "settled": False})
            return True
        return await self.store.write(tx)

    async def settle_fire(self, kind: str, slot: float, entry: str, outcome: str) -> None:
        """The fire's outcome once it acted (a restart asked for can be refused as busy). A fire
        claimed by a gatewayd that died before acting keeps `settled` false: never acted on again."""
        await self.store.write(lambda c: c.execute(
            f"UPDATE events SET data = json_set(data, '$.outcome', ?, '$.settled', json('true'))"
            f" WHERE kind = '{FIRE}' AND json_extract(data, '$.kind') = ? AND json_extract(data, '$.entry') = ?"
            " AND json_extract(data, '$.slot') = ?", (outcome, kind, entry, slot)))

    async def fires(self, limit: int = 50) -> list[dict[str, Any]]:
        def tx(c: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = c.execute(f"SELECT ts, data FROM events WHERE kind = '{FIRE}' ORDER BY id DESC LIMIT ?",
                             (limit,)).fetchall()
            return [{"at": ts, **json.loads(data)} for ts, data in rows]
        return await self.store.read(tx)
