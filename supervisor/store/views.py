"""Read-only views of the store for `gatewayd status` and `history`, which work while the daemon
is down: no event loop, no write, no migration. The SQL lives here, not in the CLI."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from supervisor.errors import StoreError, StoreTooNew
from supervisor.store.alerts import read_alerts, read_incident
from supervisor.store.db import SCHEMA_VERSION, open_readonly, row_dicts
from supervisor.store.journal import read_history
from supervisor.store.snapshots import read_current


def status_rows(path: Path, recovery_limit: int = 200) -> dict[str, Any]:
    """The daemon's last recorded state, its latest boot, boots in the last 24 h, what is in
    flight, and recent recovery."""
    try:
        conn = open_readonly(path)
        try:
            _refuse_too_new(conn, path)
            daemon = row_dicts(conn.execute("SELECT * FROM daemon WHERE id = 1"))
            boots = row_dicts(conn.execute("SELECT * FROM boots ORDER BY id DESC LIMIT 1"))
            day = conn.execute("SELECT COUNT(*) FROM boots WHERE started_at > ?", (time.time() - 86400,)).fetchone()[0]
            return {"daemon": daemon[0] if daemon else {}, "last_boot": boots[0] if boots else None,
                    "boots_24h": day, "inflight": read_current(conn), "recovery": read_history(conn, recovery_limit)}
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: {exc}") from exc


def history_rows(path: Path, since: float | None, limit: int = 10_000) -> tuple[list[dict[str, Any]],
                                                                                 list[dict[str, Any]]]:
    """Boots started since `since` (all when None), and the obligations recovery has worked on."""
    try:
        conn = open_readonly(path)
        try:
            _refuse_too_new(conn, path)
            boots = row_dicts(conn.execute(
                "SELECT id, pid, version, started_at, ready_at, ended_at, exit_code, exit_kind, detail, needs_recovery"
                " FROM boots WHERE started_at >= ? ORDER BY id", (since or 0,)))
            return boots, read_history(conn, limit)
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: {exc}") from exc


def alert_rows(path: Path, since: float | None) -> list[dict[str, Any]]:
    """Alerts since `since` (all when None), oldest first, each with its deliveries."""
    try:
        conn = open_readonly(path)
        try:
            _refuse_too_new(conn, path)
            return read_alerts(conn, since)
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: {exc}") from exc


def incident_row(path: Path, incident: int) -> dict[str, Any] | None:
    try:
        conn = open_readonly(path)
        try:
            _refuse_too_new(conn, path)
            return read_incident(conn, incident)
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: {exc}") from exc


def _refuse_too_new(conn: sqlite3.Connection, path: Path) -> None:
    """A store a newer gatewayd wrote is not read as if it were this one's (its tables may differ)."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreTooNew(f"{path}: written by a newer gatewayd (schema {version}, this one knows {SCHEMA_VERSION})")
