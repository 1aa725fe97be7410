"""Alerts, their deliveries and the incidents they link to: writes for the alerter, reads for
`history`. Notifiers are stored by name only, never by URL or token."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from supervisor.core.alertrules import Alert, AlertKind
from supervisor.store.db import Store, row_dicts

INCIDENT_LINES = 200


@dataclass(frozen=True)
class Incident:
    boot: int
    exit_kind: str
    detail: str
    exit_code: int | None
    signal: str | None
    tree_rss_bytes: int | None
    rss_sampled_at: float | None
    last_lines: tuple[str, ...]


class AlertRecords:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def incident(self, inc: Incident) -> int:
        """Record an unplanned exit with what was in flight in its boot (as its end left it)."""
        def tx(c: sqlite3.Connection) -> int:
            now = time.time()
            row = c.execute("SELECT started_at, ended_at FROM boots WHERE id = ?", (inc.boot,)).fetchone()
            uptime = (row[1] or now) - row[0] if row else None
            inflight = {
                "sessions": [r[0] for r in c.execute(
                    "SELECT key FROM inflight_sessions WHERE boot_id = ? AND state IN ('active', 'interrupted')"
                    " ORDER BY key LIMIT 200", (inc.boot,))],
                "runs": row_dicts(c.execute(
                    "SELECT job_id, name, running_at_ms FROM inflight_runs WHERE boot_id = ?"
                    " AND state IN ('running', 'interrupted') ORDER BY running_at_ms LIMIT 200", (inc.boot,))),
            }
            cur = c.execute(
                "INSERT INTO incidents(boot_id, at, exit_kind, detail, exit_code, signal, uptime_s, tree_rss_bytes,"
                " rss_sampled_at, last_lines, inflight) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (inc.boot or None, now, inc.exit_kind, inc.detail, inc.exit_code, inc.signal,
                 None if uptime is None else round(uptime, 3), inc.tree_rss_bytes, inc.rss_sampled_at,
                 json.dumps(list(inc.last_lines[-INCIDENT_LINES:])), json.dumps(inflight)))
            return int(cur.lastrowid or 0)
        return await self.store.write(tx)

    async def alert(self, alert: Alert, state: str) -> int:
        def tx(c: sqlite3.Connection) -> int:
            cur = c.execute(
                "INSERT INTO alerts(at, kind, key, severity, title, body, boot_id, incident_id, state, held_because)"
                " VALUES (?,?,?,?,?,?,?,?,?,?)",
                (time.time(), str(alert.kind), alert.key, alert.severity, alert.title, alert.body, alert.boot or None,
                 alert.incident, state, alert.held_because))
            return int(cur.lastrowid or 0)
        return await self.store.write(tx)

    async def delivery(self, alert_id: int, notifier: str, attempt: int, ok: bool, detail: str,
                       latency_ms: int) -> None:
        await self.store.write(lambda c: c.execute(
            "INSERT INTO deliveries(alert_id, notifier, attempt, at, ok, detail, latency_ms) VALUES (?,?,?,?,?,?,?)",
            (alert_id, notifier, attempt, time.time(), int(ok), detail[:500], latency_ms)))

    async def finished(self, alert_id: int, state: str) -> None:
        await self.store.write(lambda c: c.execute("UPDATE alerts SET state = ? WHERE id = ?", (state, alert_id)))

    async def unfinished(self, since: float) -> list[tuple[int, Alert, dict[str, int]]]:
        """Alerts a gatewayd stopped or died while delivering (state 'sending'), since `since`,
        each with the notifiers that took it and how many attempts each had. Older ones are closed
        as failed: a "down" an hour late tells no one anything useful."""
        def tx(c: sqlite3.Connection) -> list[tuple[int, Alert, dict[str, int]]]:
            c.execute("UPDATE alerts SET state = 'failed' WHERE state = 'sending' AND at < ?", (since,))
            out: list[tuple[int, Alert, dict[str, int]]] = []
            for row in row_dicts(c.execute("SELECT * FROM alerts WHERE state = 'sending' ORDER BY id")):
                try:
                    kind = AlertKind(row["kind"])
                except ValueError:
                    continue
                tries = {str(n): (-1 if ok else int(a)) for n, a, ok in c.execute(
                    "SELECT notifier, MAX(attempt), MAX(ok) FROM deliveries WHERE alert_id = ? GROUP BY notifier",
                    (row["id"],))}
                out.append((int(row["id"]), Alert(kind, row["key"], row["severity"], row["title"], row["body"],
                                                  incident=row["incident_id"], boot=row["boot_id"]), tries))
            return out
        return await self.store.write(tx)

    async def previous_daemon(self) -> dict[str, Any] | None:
        """The daemon row as the last gatewayd left it (read before this one records its start)."""
        rows = await self.store.read(lambda c: row_dicts(c.execute("SELECT pid, state FROM daemon WHERE id = 1")))
        return rows[0] if rows else None

    async def resolved_since(self, since: float) -> list[dict[str, Any]]:
        """Obligations recovery resolved after `since` (wall clock), oldest first, with what it sent."""
        def read(c: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = row_dicts(c.execute(
                "SELECT id, kind, ref, name, session_kind, state, resolution, updated_at FROM obligations"
                " WHERE state != 'open' AND updated_at > ? ORDER BY updated_at, id", (since,)))
            for r in rows:
                r["sent"] = [a[0] for a in c.execute(
                    "SELECT kind FROM actions WHERE obligation_id = ? ORDER BY dispatched_at_ms", (r["id"],))]
            return rows
        return await self.store.read(read)


def describe_obligation(row: dict[str, Any]) -> str:
    """One line for an alert: what it was and what recovery did ("retried", "noticed", ...)."""
    what = row.get("name") or row.get("ref") or "?"
    if row["kind"] == "cron":
        verb = "retried" if "cron-run" in row["sent"] else "checked"
        label = f"cron job {what}"
    else:
        verb = "noticed and woken" if "agent-turn" in row["sent"] else "checked"
        label = f"session {what}"
    return f"{label}: {verb} - {row['state']}{': ' + row['resolution'] if row.get('resolution') else ''}"


# -- read-only, for `history` (no event loop, no write) -------------------------------------------------
