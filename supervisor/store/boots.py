"""Boots, the daemon's status row and the event log: what `status` and `history` read."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from supervisor.store.db import Store, row_dicts
from supervisor.store.snapshots import close_boot


@dataclass(frozen=True)
class BootEnd:
    exit_code: int | None
    exit_kind: str
    detail: str
    needs_recovery: bool
    diagnostics: dict[str, Any]


class BootRecords:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def started(self, pid: int, create_time: float, port: int, version: str) -> int:
        def tx(c: sqlite3.Connection) -> int:
            cur = c.execute("INSERT INTO boots(started_at, pid, create_time, port, version) VALUES (?,?,?,?,?)",
                            (time.time(), pid, create_time, port, version))
            boot = int(cur.lastrowid or 0)
            c.execute("UPDATE daemon SET current_boot = ?, updated_at = ? WHERE id = 1", (boot, time.time()))
            _event(c, "boot-started", boot, {"pid": pid, "port": port, "version": version})
            return boot
        return await self.store.write(tx)

    async def ready(self, boot: int, gateway_boot_id: str | None, keep_first: bool = False) -> float:
        """Record the boot ready; return the time it counts from. An adopted gateway was ready
        before this gatewayd saw it (`keep_first`): that earlier time is kept, since its own startup
        recovery ran from then."""
        def tx(c: sqlite3.Connection) -> float:
            sql = "ready_at = COALESCE(ready_at, ?)" if keep_first else "ready_at = ?"
            c.execute(f"UPDATE boots SET {sql}, gateway_boot_id = ? WHERE id = ?", (time.time(), gateway_boot_id, boot))
            _event(c, "gateway-ready", boot, {"gateway_boot_id": gateway_boot_id})
            row = c.execute("SELECT ready_at FROM boots WHERE id = ?", (boot,)).fetchone()
            return float(row[0]) if row and row[0] is not None else time.time()
        result: float = await self.store.write(tx)
        return result

    async def ended(self, boot: int, end: BootEnd) -> None:
        def tx(c: sqlite3.Connection) -> None:
            c.execute(
                "UPDATE boots SET ended_at = ?, exit_code = ?, exit_kind = ?, detail = ?, needs_recovery = ?,"
                " diagnostics = ? WHERE id = ? AND ended_at IS NULL",
                (time.time(), end.exit_code, end.exit_kind, end.detail, int(end.needs_recovery),
                 json.dumps(end.diagnostics), boot))
            c.execute("UPDATE daemon SET current_boot = NULL WHERE id = 1 AND current_boot = ?", (boot,))
            sessions, runs = close_boot(c, boot, end.needs_recovery, time.time(), end.exit_kind)
            _event(c, "boot-ended", boot, {"exit_code": end.exit_code, "exit_kind": end.exit_kind,
                                           "detail": end.detail, "interrupted_sessions": sessions if
                                           end.needs_recovery else 0, "interrupted_runs": runs if
                                           end.needs_recovery else 0})
        await self.store.write(tx)

    async def unfinished(self) -> list[dict[str, Any]]:
        """Boots with no recorded end: the gateway died (or lives on) while gatewayd was not watching."""
        return await self.store.read(
            lambda c: row_dicts(c.execute("SELECT * FROM boots WHERE ended_at IS NULL ORDER BY id")))

    async def daemon_started(self, pid: int) -> None:
        def tx(c: sqlite3.Connection) -> None:
            now = time.time()
            c.execute("INSERT INTO daemon(id, pid, started_at, state, updated_at) VALUES (1, ?, ?, 'starting', ?)"
                      " ON CONFLICT(id) DO UPDATE SET pid = excluded.pid, started_at = excluded.started_at,"
                      " state = 'starting', message = NULL, updated_at = excluded.updated_at", (pid, now, now))
            _event(c, "daemon-started", None, {"pid": pid})
        await self.store.write(tx)

    async def state(self, state: str, crash_loop: bool, consecutive: int, message: str | None = None) -> None:
        def tx(c: sqlite3.Connection) -> None:
            c.execute("UPDATE daemon SET state = ?, crash_loop = ?, consecutive_crashes = ?, message = ?,"
                      " updated_at = ? WHERE id = 1", (state, int(crash_loop), consecutive, message, time.time()))
        await self.store.write(tx)

    async def event(self, kind: str, boot: int | None, data: dict[str, Any]) -> None:
        await self.store.write(lambda c: _event(c, kind, boot, data))

    async def last_event_at(self, kind: str) -> float | None:
        """When the last event of this kind was recorded (wall clock), if ever."""
        row = await self.store.read(
            lambda c: c.execute("SELECT MAX(ts) FROM events WHERE kind = ?", (kind,)).fetchone())
        return float(row[0]) if row and row[0] is not None else None


def _event(c: sqlite3.Connection, kind: str, boot: int | None, data: dict[str, Any]) -> None:
    c.execute("INSERT INTO events(ts, kind, boot_id, data) VALUES (?,?,?,?)",
              (time.time(), kind, boot, json.dumps(data, default=str)))
