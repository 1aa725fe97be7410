"""Read-only views of the store for `gatewayd status` and `history`, which work while the daemon
is down: no event loop, no write, no migration. The SQL lives here, not in the CLI."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from supervisor.errors import StoreError, StoreTooNew
from supervisor.store.db import SCHEMA_VERSION, open_readonly, row_dicts


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
                    "boots_24h": day, "inflight": read_current(conn), "recovery": read_history(conn, recovery_limit),
                    "told": read_told(conn)}
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


def _has_table(c: sqlite3.Connection, name: str) -> bool:
    """An older store, from before the table, reads as empty rather than failing."""
    return c.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone() is not None


def read_current(c: sqlite3.Connection) -> dict[str, list[dict[str, Any]]]:
    """Active and interrupted items (an older store, before these tables, has none)."""
    if not _has_table(c, "inflight_runs"):
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


def read_history(c: sqlite3.Connection, limit: int = 50) -> list[dict[str, Any]]:
    if not _has_table(c, "obligations"):
        return []
    rows = row_dicts(c.execute(
        "SELECT o.id, o.kind, o.ref, o.name, o.agent_id, o.running_at_ms, o.boot_id, o.attempt, o.reason, o.state,"
        " o.resolution, o.interrupted_at, o.updated_at FROM obligations o ORDER BY o.id DESC LIMIT ?", (limit,)))
    for r in rows:
        r["actions"] = row_dicts(c.execute(
            "SELECT key, kind, attempt, state, dispatched_at_ms, result FROM actions WHERE obligation_id = ?"
            " ORDER BY dispatched_at_ms", (r["id"],)))
    return rows


def read_told(c: sqlite3.Connection) -> dict[str, Any]:
    """What the agents were told for the latest ended boot that owed them anything: each agent's
    wake, and how the system events its gateway held were queued again (counts per state; their
    texts stay in the store). Empty when no boot owed anything."""
    if not _has_table(c, "agent_wakes"):
        return {}
    boot = c.execute("SELECT MAX(boot_id) FROM (SELECT boot_id FROM agent_wakes UNION ALL"
                     " SELECT boot_id FROM requeues)").fetchone()[0]
    if boot is None:
        return {}
    wakes = row_dicts(c.execute("SELECT agent_id, state, method, resolution, updated_at FROM agent_wakes"
                                " WHERE boot_id = ? ORDER BY agent_id", (boot,)))
    requeued = {state: n for state, n in c.execute(
        "SELECT state, COUNT(*) FROM requeues WHERE boot_id = ? GROUP BY state ORDER BY state", (boot,))}
    return {"boot": boot, "wakes": wakes, "requeued": requeued}


def read_alerts(c: sqlite3.Connection, since: float | None, limit: int = 500) -> list[dict[str, Any]]:
    if not _has_table(c, "alerts"):
        return []
    rows = row_dicts(c.execute(
        "SELECT id, at, kind, severity, title, body, boot_id, incident_id, state, held_because FROM alerts"
        " WHERE at >= ? ORDER BY id DESC LIMIT ?", (since or 0, limit)))
    rows.reverse()
    for r in rows:
        r["deliveries"] = row_dicts(c.execute(
            "SELECT notifier, attempt, at, ok, detail, latency_ms FROM deliveries WHERE alert_id = ? ORDER BY id",
            (r["id"],)))
    return rows


def read_incident(c: sqlite3.Connection, incident: int) -> dict[str, Any] | None:
    if not _has_table(c, "incidents"):
        return None
    rows = row_dicts(c.execute("SELECT * FROM incidents WHERE id = ?", (incident,)))
    if not rows:
        return None
    row = rows[0]
    row["last_lines"] = json.loads(row["last_lines"])
    row["inflight"] = json.loads(row["inflight"])
    row["alerts"] = row_dicts(c.execute("SELECT id, at, kind, state FROM alerts WHERE incident_id = ? ORDER BY id",
                                        (incident,)))
    return row


def _refuse_too_new(conn: sqlite3.Connection, path: Path) -> None:
    """A store a newer gatewayd wrote is not read as if it were this one's (its tables may differ)."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreTooNew(f"{path}: written by a newer gatewayd (schema {version}, this one knows {SCHEMA_VERSION})")
