"""The store: gatewayd's only durable truth, one SQLite file in WAL mode.

One writer: a single thread owns the connection; the event loop awaits each commit and acts only
after its record is committed. Schema versions live in `PRAGMA user_version`; migrations run in
order, each in its own transaction.

Failures are told apart, because they call for opposite answers (DESIGN "Store rules"):
- corrupt (SQLite says malformed / not a database): moved aside with a loud error, fresh store;
- locked, full disk, I/O error: kept, reported, retried (moving it would forget pending work);
- written by a newer gatewayd: refused, never overwritten.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from supervisor import logs
from supervisor.errors import StoreCorrupt, StoreError, StoreTooNew, StoreUnavailable

log = logs.get("gatewayd.store")
T = TypeVar("T")

MIGRATIONS: tuple[str, ...] = (
    # 1: boots, the daemon's current status, an event log (appended to; a maintenance fire's outcome
    # is settled in place, store/maintenance_records.py)
    """
    CREATE TABLE boots (
        id INTEGER PRIMARY KEY,
        started_at REAL NOT NULL,          -- wall clock, seconds
        pid INTEGER,
        create_time REAL,                  -- with pid: the process identity (pids are reused)
        port INTEGER,
        version TEXT,
        ready_at REAL,
        gateway_boot_id TEXT,              -- hello-ok server.bootId where the version has one
        ended_at REAL,
        exit_code INTEGER,                 -- negative: killed by that signal
        exit_kind TEXT,
        detail TEXT,
        needs_recovery INTEGER,
        diagnostics TEXT                   -- JSON: what a hang looked like, last log lines
    );
    CREATE TABLE daemon (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        pid INTEGER NOT NULL,
        started_at REAL NOT NULL,
        state TEXT NOT NULL,
        crash_loop INTEGER NOT NULL DEFAULT 0,
        consecutive_crashes INTEGER NOT NULL DEFAULT 0,
        current_boot INTEGER REFERENCES boots(id),
        message TEXT,
        updated_at REAL NOT NULL
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        kind TEXT NOT NULL,
        boot_id INTEGER REFERENCES boots(id),
        data TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_ts ON events(ts);
    """,
    # 2: what was in flight, per boot: sessions with a turn running, cron runs in progress.
    # A row is never overwritten by a later boot: an interrupted item stays an obligation.
    """
    CREATE TABLE inflight_sessions (
        boot_id INTEGER NOT NULL REFERENCES boots(id),
        key TEXT NOT NULL,
        agent_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        session_id TEXT,
        run_ids TEXT NOT NULL DEFAULT '[]',
        last_activity_ms INTEGER,
        state TEXT NOT NULL CHECK (state IN ('active', 'ended', 'interrupted')),
        first_seen_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        ended_at REAL,
        PRIMARY KEY (boot_id, key)
    );
    CREATE INDEX inflight_sessions_state ON inflight_sessions(state);
    CREATE TABLE inflight_runs (
        job_id TEXT NOT NULL,
        running_at_ms INTEGER NOT NULL,
        boot_id INTEGER NOT NULL REFERENCES boots(id),
        name TEXT,
        agent_id TEXT,
        payload_kind TEXT,
        session_target TEXT,
        schedule_kind TEXT,
        receipt_id TEXT,
        delete_after_run INTEGER NOT NULL DEFAULT 0,
        enabled INTEGER NOT NULL DEFAULT 1,
        state TEXT NOT NULL CHECK (state IN ('running', 'finished', 'interrupted')),
        first_seen_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        ended_at REAL,
        PRIMARY KEY (job_id, running_at_ms)
    );
    CREATE INDEX inflight_runs_state ON inflight_runs(state);
    """,
    # 3: recovery. An obligation is one interrupted piece of work; an action is one thing gatewayd
    # sends about it, journaled (with its idempotency key) before it is sent.
    """
    CREATE TABLE obligations (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('cron', 'session')),
        ref TEXT NOT NULL,                 -- job id, or session key
        running_at_ms INTEGER NOT NULL DEFAULT 0,  -- cron: the interrupted run's start
        boot_id INTEGER NOT NULL REFERENCES boots(id),
        agent_id TEXT,
        session_kind TEXT,
        name TEXT,
        one_shot INTEGER NOT NULL DEFAULT 0,
        attempt INTEGER NOT NULL DEFAULT 1,  -- of the interrupted run
        interrupted_at REAL NOT NULL,
        reason TEXT NOT NULL,
        planned_at_ms INTEGER,
        state TEXT NOT NULL CHECK (state IN ('open', 'done', 'given-up', 'unconfirmed')),
        resolution TEXT,
        updated_at REAL NOT NULL,
        UNIQUE (kind, ref, running_at_ms, boot_id)
    );
    CREATE INDEX obligations_state ON obligations(state);
    CREATE TABLE actions (
        key TEXT PRIMARY KEY,
        obligation_id INTEGER NOT NULL REFERENCES obligations(id),
        kind TEXT NOT NULL CHECK (kind IN ('cron-run', 'agent-turn')),
        attempt INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL CHECK (state IN ('dispatched', 'answered', 'failed', 'unconfirmed')),
        boot_id INTEGER,
        dispatched_at_ms INTEGER NOT NULL,
        result TEXT,
        updated_at REAL NOT NULL
    );
    """,
    # 4: the gateway's queue of system events, kept across its restarts. `queue_looks`: the last
    # look at each boot's queue (`queued_events` its texts); `requeues`: the journal of texts queued
    # again into a later gateway (planned, dispatched before the send, answered, observed).
    """
    CREATE TABLE queue_looks (
        boot_id INTEGER PRIMARY KEY REFERENCES boots(id),
        looked_at_ms INTEGER NOT NULL,
        void INTEGER NOT NULL DEFAULT 0,
        planned INTEGER NOT NULL DEFAULT 0     -- 1 once its texts have requeue rows
    );
    CREATE TABLE queued_events (
        boot_id INTEGER NOT NULL REFERENCES queue_looks(boot_id),
        pos INTEGER NOT NULL,
        text TEXT NOT NULL,
        PRIMARY KEY (boot_id, pos)
    );
    CREATE TABLE requeues (
        id INTEGER PRIMARY KEY,
        boot_id INTEGER NOT NULL REFERENCES boots(id),   -- the boot whose gateway held it
        pos INTEGER NOT NULL,                            -- its place in the look
        kind TEXT NOT NULL CHECK (kind IN ('system-event')),
        text TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('planned', 'dispatched', 'answered', 'observed', 'held',
                                             'unknown', 'unconfirmed', 'failed')),
        into_boot INTEGER,                               -- the boot it was sent into
        dispatched_at_ms INTEGER,
        resolution TEXT,
        updated_at REAL NOT NULL,
        UNIQUE (boot_id, pos)
    );
    -- A retried cron run's words ride in a one-time change of its job's payload text: journaled
    -- before the change, so a gatewayd that dies with the job changed puts it back at its next start.
    CREATE TABLE job_patches (
        id INTEGER PRIMARY KEY,
        job_id TEXT NOT NULL,
        action_key TEXT NOT NULL UNIQUE,    -- the retry (actions.key) the words belong to
        kind TEXT NOT NULL,                 -- payload kind
        field TEXT NOT NULL,                -- its text field: message (agentTurn) or text (systemEvent)
        original TEXT NOT NULL,
        patched TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('patching', 'patched', 'restored', 'unpatched', 'left', 'gone')),
        boot_id INTEGER,
        updated_at REAL NOT NULL
    );
    -- One wake per agent per dead boot: decided (covered, nothing, or a text), then journaled
    -- like every action (dispatched before the send, answered, done once its turn is seen).
    CREATE TABLE agent_wakes (
        boot_id INTEGER NOT NULL REFERENCES boots(id),
        agent_id TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('planned', 'dispatched', 'answered', 'done', 'covered', 'nothing',
                                             'unconfirmed', 'failed')),
        method TEXT,                       -- wake (a turn of the agent's main session) or agent (a user turn)
        text TEXT,
        into_boot INTEGER,
        dispatched_at_ms INTEGER,
        resolution TEXT,
        updated_at REAL NOT NULL,
        PRIMARY KEY (boot_id, agent_id)
    );
    """,
    # 5: alerts. An incident is what an unplanned exit looked like (for `history --incident`); an
    # alert is one decision of core.alertrules (sent or held back); a delivery is one attempt of
    # one notifier. No secret is ever written here: notifiers are named, never their URL or token.
    """
    CREATE TABLE incidents (
        id INTEGER PRIMARY KEY,
        boot_id INTEGER REFERENCES boots(id),
        at REAL NOT NULL,
        exit_kind TEXT NOT NULL,
        detail TEXT,
        exit_code INTEGER,                 -- negative: killed by that signal
        signal TEXT,
        uptime_s REAL,
        tree_rss_bytes INTEGER,            -- the last sample before the exit
        rss_sampled_at REAL,
        last_lines TEXT NOT NULL DEFAULT '[]',  -- JSON: the gateway's last output lines, redacted
        inflight TEXT NOT NULL DEFAULT '{}'     -- JSON: sessions and cron runs in flight
    );
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        severity TEXT NOT NULL,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        boot_id INTEGER,
        incident_id INTEGER REFERENCES incidents(id),
        state TEXT NOT NULL CHECK (state IN ('held', 'sending', 'sent', 'partial', 'failed', 'no-notifier')),
        held_because TEXT
    );
    CREATE INDEX alerts_at ON alerts(at);
    CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY,
        alert_id INTEGER NOT NULL REFERENCES alerts(id),
        notifier TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        at REAL NOT NULL,
        ok INTEGER NOT NULL,
        detail TEXT,
        latency_ms INTEGER
    );
    CREATE INDEX deliveries_alert ON deliveries(alert_id);
    """,
    # 6: boots that ended unwatched, checked once (2026.2.x) for session turns that started unseen.
    """
    CREATE TABLE turn_checks (
        boot_id INTEGER PRIMARY KEY REFERENCES boots(id),
        checked_at REAL NOT NULL,
        found INTEGER NOT NULL
    );
    """,
    # 7: a requeue text can be 'delivered': the version's chat.history shows a turn after the look
    # drained it (2026.2.x). SQLite cannot change a CHECK in place: the table is copied.
    """
    CREATE TABLE requeues_7 (
        id INTEGER PRIMARY KEY,
        boot_id INTEGER NOT NULL REFERENCES boots(id),
        pos INTEGER NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('system-event')),
        text TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('planned', 'dispatched', 'answered', 'observed', 'held',
                                             'unknown', 'delivered', 'unconfirmed', 'failed')),
        into_boot INTEGER,
        dispatched_at_ms INTEGER,
        resolution TEXT,
        updated_at REAL NOT NULL,
        UNIQUE (boot_id, pos)
    );
    INSERT INTO requeues_7 SELECT id, boot_id, pos, kind, text, state, into_boot, dispatched_at_ms,
        resolution, updated_at FROM requeues;
    DROP TABLE requeues;
    ALTER TABLE requeues_7 RENAME TO requeues;
    """,
    # 8: main-session turn ends heard after a boot's last look (`core/event_queue.dated_by_end`),
    # written once gatewayd has heard that gateway's events to its exit.
    """
    CREATE TABLE queue_turn_ends (
        boot_id INTEGER NOT NULL REFERENCES boots(id),
        at_ms INTEGER NOT NULL
    );
    CREATE INDEX queue_turn_ends_boot ON queue_turn_ends(boot_id, at_ms);
    """,
    # 9: `unheard`: the connection that took the look ended before the gateway did (a reconnect, a
    # stop), so turns may have run unheard after it.
    """
    ALTER TABLE queue_looks ADD COLUMN unheard INTEGER NOT NULL DEFAULT 0;
    """,
    # 10: the session each heard turn end belongs to: a row is dated only by its own session's ends,
    # and only sessions whose every turn start gatewayd heard are kept (2026.9.x: subscribed ones).
    # Ends written before have no session and date no row.
    """
    ALTER TABLE queue_turn_ends ADD COLUMN session_key TEXT NOT NULL DEFAULT '';
    """,
    # 11: the one session whose queue the look lists (2026.2.x: the default agent's main session, as
    # that `status` answer named it): only its turns drain the look's texts. NULL (every main session
    # drains) for 2026.9.x's looks, for a `status` that did not say, and for looks taken before.
    """
    ALTER TABLE queue_looks ADD COLUMN listed_session TEXT;
    """,
    # 12: a restart notice's text as sent: on 2026.2.x a notice into a gateway that has ended since
    # is confirmed by the session's history holding it (`core/confirm.history_shows`).
    """
    ALTER TABLE actions ADD COLUMN text TEXT;
    """,
    # 13: what gatewayd heard from a boot's last look to its end (`core/event_queue.unexplained_moves`):
    # the main sessions whose every turn start it hears ("*": all) and those of them known to run
    # nothing from the look on (JSON lists), and each heard end's own start (2026.9.x says it).
    """
    ALTER TABLE queue_looks ADD COLUMN heard_sessions TEXT;
    ALTER TABLE queue_looks ADD COLUMN quiet_sessions TEXT;
    ALTER TABLE queue_turn_ends ADD COLUMN started_ms INTEGER;
    """,
    # 14: a text a 2026.9.x heartbeat going on at the look may have shown the model (it keeps them
    # queued until it finishes, `core/heartbeat_hold`): set aside if that gateway dies, never queued again.
    """
    ALTER TABLE queued_events ADD COLUMN maybe_shown INTEGER NOT NULL DEFAULT 0;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

_CORRUPT_MARKERS = ("malformed", "not a database", "file is encrypted", "corrupt")


def _is_corrupt(exc: sqlite3.DatabaseError) -> bool:
    return any(m in str(exc).lower() for m in _CORRUPT_MARKERS)


# Not SQLite's errors, and not corruption: a value it cannot hold (this write fails, the store is
# fine), or the state dir gone or replaced by a file (kept, reported, retried on the next write).
_UNUSABLE = (OverflowError, UnicodeError, OSError)
_FAILURES = (sqlite3.DatabaseError, *_UNUSABLE)


def _mapped(path: Path, exc: Exception) -> StoreError:
    if isinstance(exc, sqlite3.DatabaseError):
        return StoreCorrupt(f"{path}: {exc}") if _is_corrupt(exc) else StoreUnavailable(f"{path}: {exc}")
    return StoreUnavailable(f"{path}: {type(exc).__name__}: {exc}")


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer")
        self._conn: sqlite3.Connection | None = None
        self._inode: int | None = None
        self._thread: threading.Thread | None = None
        # Told each committed transaction's duration, on the writer thread (the metrics' histogram):
        # it must not block or raise.
        self.on_commit: Callable[[float], None] | None = None

    # -- opening (runs in the writer thread) ------------------------------------------------------

    def _open_sync(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Created 0600 before SQLite opens it, whatever the umask: SQLite gives the -wal and -shm
        # files the database file's mode, and they hold the same session keys and job names.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        try:
            self._connect_and_check()
        except sqlite3.DatabaseError as exc:
            if not _is_corrupt(exc):
                raise StoreUnavailable(f"{self.path}: {exc}") from exc
            self._close_sync()
            aside = self._aside_path()
            for suffix in ("", "-wal", "-shm"):
                src = Path(str(self.path) + suffix)
                if src.exists():
                    os.replace(src, Path(str(aside) + suffix))
            log.error("store_corrupt_moved_aside", path=str(self.path),
                      moved_to=str(aside), error=str(exc))
            self._connect_and_check()

    def _aside_path(self) -> Path:
        """`<db>.corrupt-<timestamp>`, with a counter so an earlier moved-aside store is never overwritten."""
        base = f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}"
        n = 0
        while True:
            aside = self.path.with_name(base if n == 0 else f"{base}-{n}")
            if not any(Path(str(aside) + suffix).exists() for suffix in ("", "-wal", "-shm")):
                return aside
            n += 1

    def _connect_and_check(self) -> None:
        conn = sqlite3.connect(self.path, timeout=5.0, isolation_level=None, check_same_thread=False)
        self._conn = conn
        try:
            self._check(conn)
        except BaseException:
            self._close_sync()  # refused or failed: hold no connection to the file
            raise

    def _check(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA busy_timeout = 5000")
        # Before any pragma that writes (journal_mode changes the file header): a store written by a
        # newer gatewayd is refused untouched.
        self._refuse_too_new(conn)
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        if sys.platform == "darwin":
            conn.execute("PRAGMA fullfsync = ON")
            conn.execute("PRAGMA checkpoint_fullfsync = ON")
        # Asserted, not assumed: a store that silently runs with weaker settings loses work.
        if str(mode).lower() != "wal":
            raise StoreUnavailable(f"{self.path}: journal_mode is {mode}, not wal")
        if conn.execute("PRAGMA synchronous").fetchone()[0] != 2:
            raise StoreUnavailable(f"{self.path}: synchronous is not FULL")
        if conn.execute("PRAGMA foreign_keys").fetchone()[0] != 1:
            raise StoreUnavailable(f"{self.path}: foreign_keys is off")
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {check} (database disk image is malformed)")
        self._migrate(conn)
        self._inode = os.stat(self.path).st_ino
        for suffix in ("", "-wal", "-shm"):  # a store made by an older gatewayd, under umask 022
            with contextlib.suppress(FileNotFoundError):
                os.chmod(str(self.path) + suffix, 0o600)

    def _refuse_too_new(self, conn: sqlite3.Connection) -> int:
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreTooNew(f"{self.path}: written by a newer gatewayd (schema {version}, this one knows "
                              f"{SCHEMA_VERSION}); refusing to touch it")
        return version

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = self._refuse_too_new(conn)
        for i in range(version, SCHEMA_VERSION):
            conn.execute("BEGIN IMMEDIATE")
            try:
                for stmt in _statements(MIGRATIONS[i]):
                    conn.execute(stmt)
                conn.execute(f"PRAGMA user_version = {i + 1}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def _close_sync(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def _ensure_sync(self) -> sqlite3.Connection:
        """The connection, re-created (loudly) if the file was deleted or replaced under us."""
        try:
            inode = os.stat(self.path).st_ino
        except FileNotFoundError:
            inode = None
        if self._conn is None or inode != self._inode:
            if self._conn is not None:
                log.error("store_replaced",
                          path=str(self.path))
                self._close_sync()
                # The -wal and -shm next to the path belong to the old file (SQLite keeps them when
                # the file moved): replayed into the new file they would overwrite its content.
                for suffix in ("-wal", "-shm"):
                    Path(str(self.path) + suffix).unlink(missing_ok=True)
            self._open_sync()
        assert self._conn is not None
        return self._conn

    # -- the API the event loop uses --------------------------------------------------------------

    async def open(self) -> None:
        await self._run_raw(self._open_sync)

    async def _run_raw(self, fn: Callable[[], T]) -> T:
        import asyncio  # here, not at the top: `gatewayd status` reads the store without a loop

        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def write_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            conn = self._ensure_sync()
            began = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
                if self.on_commit is not None:
                    self.on_commit(time.perf_counter() - began)
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except _FAILURES as exc:
            raise _mapped(self.path, exc) from exc
        return result

    def read_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return fn(self._ensure_sync())
        except _FAILURES as exc:
            raise _mapped(self.path, exc) from exc

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in one transaction on the writer thread; returns after the commit."""
        return await self._run_raw(lambda: self.write_sync(fn))

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._run_raw(lambda: self.read_sync(fn))

    async def close(self) -> None:
        await self._run_raw(self._close_sync)
        self._executor.shutdown(wait=True)


def _statements(script: str) -> list[str]:
    out: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    return out


def open_readonly(path: Path) -> sqlite3.Connection:
    """For `status` while the daemon is down: read the store without writing or migrating it."""
    conn = sqlite3.connect(f"file:{urllib.parse.quote(str(path.absolute()))}?mode=ro", uri=True, timeout=2.0)
    conn.row_factory = sqlite3.Row
    return conn


def integrity(conn: sqlite3.Connection) -> tuple[list[str], int]:
    """`doctor`'s look: SQLite's quick check ("ok" when sound) and the schema's version."""
    check = [str(r[0]) for r in conn.execute("PRAGMA quick_check").fetchall()]
    return check, int(conn.execute("PRAGMA user_version").fetchone()[0])


def live_boot(conn: sqlite3.Connection) -> tuple[int, float | None] | None:
    """The boot the store says is running (not ended): its gateway's pid and create time."""
    row = conn.execute("SELECT pid, create_time FROM boots WHERE ended_at IS NULL ORDER BY id DESC LIMIT 1").fetchone()
    return (int(row[0]), row[1]) if row else None


def row_dicts(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    cols = [c[0] for c in cursor.description]
    return [dict(zip(cols, row, strict=True)) for row in cursor.fetchall()]
