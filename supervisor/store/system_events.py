"""The store's side of keeping the gateway's system-event queue: each boot's last look at the
queue, and the journal of texts queued again into a later gateway. The rules are
`core/event_queue.py`; this module only reads and writes them."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from supervisor.core.event_queue import EventFate, Fate, QueueLook, TurnEnd
from supervisor.store.db import Store, row_dicts

OPEN = ("planned", "dispatched")
MAX_TURN_ENDS = 64  # far more turns than end between two looks (each end is followed by a look)


# When boot `b`'s gateway could last have changed its queue: the next gateway's start, else its end.
QUEUE_END = "COALESCE((SELECT MIN(n.started_at) FROM boots n WHERE n.id > b.id), b.ended_at)"


def _texts(c: sqlite3.Connection, boot: int) -> tuple[tuple[str, ...], tuple[int, ...]]:
    rows = c.execute("SELECT text, maybe_shown FROM queued_events WHERE boot_id = ? ORDER BY pos", (boot,)).fetchall()
    return tuple(str(r[0]) for r in rows), tuple(i for i, r in enumerate(rows) if r[1])


class SystemEventRecords:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def look(self, boot: int, texts: tuple[str, ...], at_ms: int, listed: str | None = None,
                   maybe_shown: tuple[int, ...] = ()) -> None:
        """The queue as the gateway of `boot` listed it at `at_ms` (replaces the previous look);
        `listed`: the one session whose queue it is, where the version lists one (2026.2.x);
        `maybe_shown`: the positions a heartbeat going on may have shown the model (2026.9.x)."""
        def tx(c: sqlite3.Connection) -> None:
            c.execute("INSERT INTO queue_looks(boot_id, looked_at_ms, void, listed_session) VALUES (?, ?, 0, ?)"
                      " ON CONFLICT(boot_id) DO UPDATE SET looked_at_ms = excluded.looked_at_ms, void = 0,"
                      " unheard = 0, heard_sessions = NULL, quiet_sessions = NULL,"
                      " listed_session = excluded.listed_session WHERE planned = 0",
                      (boot, at_ms, listed))
            c.execute("DELETE FROM queued_events WHERE boot_id = ?", (boot,))
            c.executemany("INSERT INTO queued_events(boot_id, pos, text, maybe_shown) VALUES (?, ?, ?, ?)",
                          [(boot, i, t, int(i in maybe_shown)) for i, t in enumerate(texts)])
        await self.store.write(tx)

    async def void(self, boot: int) -> None:
        """A main-session turn started: the last look may list texts it has drained."""
        await self.store.write(lambda c: c.execute(
            "UPDATE queue_looks SET void = 1, heard_sessions = NULL, quiet_sessions = NULL"
            " WHERE boot_id = ? AND planned = 0", (boot,)))

    async def unheard(self, boot: int) -> None:
        """The connection that took the last look ended before `boot`'s gateway did: turns may run
        unheard after it, so it does not count as watched to the end."""
        await self.store.write(lambda c: c.execute(
            "UPDATE queue_looks SET unheard = 1 WHERE boot_id = ? AND planned = 0", (boot,)))

    async def heard_to_end(self, boot: int, heard: tuple[str, ...], quiet: tuple[str, ...],
                           ends: list[TurnEnd]) -> None:
        """What gatewayd heard from `boot`'s last look to that gateway's exit, written once it has heard
        the gateway's events to the exit (`core/event_queue.unexplained_moves`): the sessions whose
        every turn start it hears, those known to run nothing from the look on, and the run ends heard
        there (the latest kept)."""
        def tx(c: sqlite3.Connection) -> None:
            if c.execute("UPDATE queue_looks SET heard_sessions = ?, quiet_sessions = ? WHERE boot_id = ?"
                         " AND planned = 0 AND void = 0 AND unheard = 0",
                         (json.dumps(list(heard)), json.dumps(list(quiet)), boot)).rowcount:
                c.executemany("INSERT INTO queue_turn_ends(boot_id, session_key, at_ms, started_ms)"
                              " VALUES (?, ?, ?, ?)",
                              [(boot, e.session, e.at_ms, e.started_ms) for e in ends[-MAX_TURN_ENDS:]])
        await self.store.write(tx)

    async def last_look(self, boot: int) -> QueueLook | None:
        def read(c: sqlite3.Connection) -> QueueLook | None:
            row = c.execute("SELECT looked_at_ms, void, listed_session FROM queue_looks WHERE boot_id = ?",
                            (boot,)).fetchone()
            if row is None:
                return None
            texts, shown = _texts(c, boot)
            return QueueLook(boot, texts, int(row[0]), bool(row[1]), listed=row[2], maybe_shown=shown)
        return await self.store.read(read)

    async def unplanned(self, current_boot: int) -> list[tuple[QueueLook, bool, int]]:
        """Looks of ended boots not planned yet, oldest first, each with whether gatewayd watched
        that gateway from the look to its end (not when a later gatewayd found the boot ended, nor
        when a gatewayd started in between: the one that took the look died, and turns ran unseen
        until the next one connected; nor when the look's connection ended before the gateway) and
        when the next gateway started (ms): the dead one's queue could change only before that."""
        def read(c: sqlite3.Connection) -> list[tuple[QueueLook, bool, int]]:
            rows = c.execute(
                f"SELECT q.boot_id, q.looked_at_ms, q.void, b.exit_kind, {QUEUE_END}, q.unheard, q.listed_session,"
                " q.heard_sessions, q.quiet_sessions,"
                " EXISTS (SELECT 1 FROM events e WHERE e.kind = 'daemon-started'"
                "         AND e.ts >= q.looked_at_ms / 1000.0 AND e.ts <= b.ended_at)"
                " FROM queue_looks q JOIN boots b"
                " ON b.id = q.boot_id WHERE q.planned = 0 AND q.boot_id < ? AND b.ended_at IS NOT NULL"
                " ORDER BY q.boot_id", (current_boot,)).fetchall()
            out: list[tuple[QueueLook, bool, int]] = []
            for boot, at_ms, void, exit_kind, until, unheard, listed, heard, quiet, gap in rows:
                texts, shown = _texts(c, boot)
                ends = tuple(TurnEnd(str(r[0]), int(r[1]), None if r[2] is None else int(r[2])) for r in c.execute(
                    "SELECT session_key, at_ms, started_ms FROM queue_turn_ends WHERE boot_id = ? ORDER BY at_ms",
                    (boot,)))
                heard_in, quiet_in = _sessions(heard), _sessions(quiet)
                if heard_in is None or quiet_in is None:  # not written, or unreadable: nothing heard
                    heard_in = quiet_in = ()
                out.append((QueueLook(int(boot), texts, int(at_ms), bool(void), ends, listed, heard_in, quiet_in,
                                      shown),
                            exit_kind != "vanished" and not gap and not unheard, int(until * 1000)))
            return out
        return await self.store.read(read)

    async def end_ms(self, boot: int) -> int | None:
        """When `boot`'s gateway could last have changed its queue: the next gateway's start, else its
        end (ms); None while it runs."""
        def read(c: sqlite3.Connection) -> int | None:
            row = c.execute(f"SELECT b.ended_at, {QUEUE_END} FROM boots b WHERE b.id = ?", (boot,)).fetchone()
            if row is None or row[0] is None:
                return None
            return int(row[1] * 1000)
        return await self.store.read(read)

    async def plan(self, boot: int, fates: list[EventFate]) -> None:
        """Each text's fate, in one transaction with the look marked planned: a gatewayd that dies
        here plans again, or finds it planned, never half. (The wake that hands them to the model
        is the agent's wake, `waker.py`.)"""
        now = time.time()
        state = {Fate.REQUEUE: "planned", Fate.HELD: "held", Fate.UNKNOWN: "unknown", Fate.DELIVERED: "delivered"}

        def tx(c: sqlite3.Connection) -> None:
            if c.execute("SELECT planned FROM queue_looks WHERE boot_id = ?", (boot,)).fetchone() != (0,):
                return
            c.executemany(
                "INSERT OR IGNORE INTO requeues(boot_id, pos, kind, text, state, resolution, updated_at)"
                " VALUES (?, ?, 'system-event', ?, ?, ?, ?)",
                [(boot, f.pos, f.text, state[f.fate], None if f.fate is Fate.REQUEUE else f.why, now)
                 for f in fates])
            c.execute("UPDATE queue_looks SET planned = 1 WHERE boot_id = ?", (boot,))
            counts = {s: sum(1 for f in fates if f.fate is s) for s in Fate}
            c.execute("INSERT INTO events(ts, kind, boot_id, data) VALUES (?, 'requeue-planned', ?, ?)",
                      (now, boot, json.dumps({s.value: n for s, n in counts.items()})))
        await self.store.write(tx)

    async def outstanding(self, current_boot: int) -> bool:
        """Is any text of an ended boot still to be queued again (its look not planned, or its send
        not settled)? A turn that drains the queue waits for them."""
        def read(c: sqlite3.Connection) -> bool:
            return bool(c.execute(
                "SELECT EXISTS (SELECT 1 FROM queue_looks q JOIN boots b ON b.id = q.boot_id"
                " WHERE q.planned = 0 AND q.boot_id < ? AND b.ended_at IS NOT NULL"
                " AND EXISTS (SELECT 1 FROM queued_events e WHERE e.boot_id = q.boot_id))"
                " OR EXISTS (SELECT 1 FROM requeues WHERE state IN ('planned', 'dispatched'))",
                (current_boot,)).fetchone()[0])
        return await self.store.read(read)

    async def sent_into(self, boot: int) -> list[tuple[str, int]]:
        """Texts queued again into `boot`'s gateway that it took, in send order, with when each was
        journaled (`core/event_queue.with_late_sends`)."""
        return await self.store.read(lambda c: [(str(t), int(at)) for t, at in c.execute(
            "SELECT text, dispatched_at_ms FROM requeues WHERE into_boot = ? AND state IN ('answered', 'observed')"
            " AND dispatched_at_ms IS NOT NULL ORDER BY dispatched_at_ms, id", (boot,))])

    async def open_items(self) -> list[dict[str, Any]]:
        """Requeue rows not settled, in the order they must reach the gateway: by boot, each boot's
        texts in their order."""
        return await self.store.read(lambda c: row_dicts(c.execute(
            "SELECT * FROM requeues WHERE state IN ('planned', 'dispatched')"
            " ORDER BY boot_id, pos < 0, pos")))

    async def dispatched(self, item: int, into_boot: int, at_ms: int) -> bool:
        """Journal a send before it happens. False: it was dispatched already (never twice)."""
        def tx(c: sqlite3.Connection) -> bool:
            cur = c.execute("UPDATE requeues SET state = 'dispatched', into_boot = ?, dispatched_at_ms = ?,"
                            " updated_at = ? WHERE id = ? AND state = 'planned'",
                            (into_boot, at_ms, time.time(), item))
            return cur.rowcount == 1
        return await self.store.write(tx)

    async def settled_copies(self, boot: int, pos: int, text: str) -> int:
        """How many earlier texts of this boot's look, equal to `text`, were sent and took effect."""
        row = await self.store.read(lambda c: c.execute(
            "SELECT count(*) FROM requeues WHERE boot_id = ? AND pos < ? AND text = ?"
            " AND state IN ('answered', 'observed')", (boot, pos, text)).fetchone())
        return int(row[0]) if row else 0

    async def replan(self, item: int) -> None:
        """A send that never arrived (its gatewayd died before sending): planned again."""
        await self.store.write(lambda c: c.execute(
            "UPDATE requeues SET state = 'planned', into_boot = NULL, dispatched_at_ms = NULL, updated_at = ?"
            " WHERE id = ? AND state = 'dispatched'", (time.time(), item)))

    async def settle(self, item: int, state: str, resolution: str) -> None:
        await self.store.write(lambda c: c.execute(
            "UPDATE requeues SET state = ?, resolution = ?, updated_at = ? WHERE id = ?"
            " AND state IN ('planned', 'dispatched')", (state, resolution[:500], time.time(), item)))

    async def items_of(self, boot: int) -> list[dict[str, Any]]:
        return await self.store.read(lambda c: row_dicts(c.execute(
            "SELECT * FROM requeues WHERE boot_id = ? ORDER BY pos < 0, pos", (boot,))))


def _sessions(raw: object) -> tuple[str, ...] | None:
    """`heard_sessions` or `quiet_sessions` as stored; None where not written or unreadable (a
    hand-edited store): the caller then takes nothing as heard, which only sets texts aside."""
    try:
        value = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        return None
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else None
