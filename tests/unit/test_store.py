"""The SQLite store: pragmas, migrations, corruption vs. too new, a file deleted under it; boots."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from supervisor.errors import StoreError, StoreTooNew
from supervisor.store import db
from supervisor.store.boots import BootEnd, BootRecords
from supervisor.store.db import SCHEMA_VERSION, Store


def pragma(name: str):  # type: ignore[no-untyped-def]
    return lambda c: c.execute(f"PRAGMA {name}").fetchone()[0]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(tmp_path / "state" / "gatewayd.db")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


def aside_files(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.corrupt-*"))


def make_newer_store(path: Path, journal_mode: str) -> bytes:
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA journal_mode = {journal_mode}")
    conn.execute("CREATE TABLE future (x)")
    conn.execute("INSERT INTO future VALUES (1)")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.commit()
    conn.close()
    assert not Path(str(path) + "-wal").exists()
    return path.read_bytes()


# -- opening ----------------------------------------------------------------------------------

async def test_pragmas_after_open(store: Store) -> None:
    assert str(await store.read(pragma("journal_mode"))).lower() == "wal"
    assert await store.read(pragma("synchronous")) == 2  # FULL
    assert await store.read(pragma("foreign_keys")) == 1
    assert await store.read(pragma("busy_timeout")) >= 1000


async def test_migrations_set_user_version(store: Store) -> None:
    assert await store.read(pragma("user_version")) == SCHEMA_VERSION
    tables = await store.read(lambda c: {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")})
    assert {"boots", "daemon", "events"} <= tables


async def test_store_file_is_private(store: Store) -> None:
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


async def test_reopen_keeps_data_and_does_not_migrate_again(tmp_path: Path) -> None:
    path = tmp_path / "gatewayd.db"
    s = Store(path)
    await s.open()
    boot = await BootRecords(s).started(pid=11, create_time=1.5, port=18789, version="2026.9.6")
    await s.close()
    s2 = Store(path)
    await s2.open()
    try:
        assert [r["id"] for r in await BootRecords(s2).unfinished()] == [boot]
        assert await s2.read(pragma("user_version")) == SCHEMA_VERSION
    finally:
        await s2.close()


async def test_garbage_file_is_moved_aside_and_a_fresh_store_works(tmp_path: Path) -> None:
    path = tmp_path / "gatewayd.db"
    garbage = b"this is not an sqlite database at all\n" * 200
    path.write_bytes(garbage)
    s = Store(path)
    await s.open()
    try:
        moved = aside_files(path)
        assert len(moved) == 1 and moved[0].read_bytes() == garbage
        assert await s.read(pragma("user_version")) == SCHEMA_VERSION
        records = BootRecords(s)
        await records.daemon_started(os.getpid())
        boot = await records.started(pid=1, create_time=0.0, port=1, version="v")
        assert [r["id"] for r in await records.unfinished()] == [boot]
    finally:
        await s.close()


async def test_damaged_pages_are_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "gatewayd.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x TEXT)")
    conn.executemany("INSERT INTO t VALUES (?)", [(f"row {i} " * 20,) for i in range(2000)])
    conn.commit()
    conn.close()
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 8 * page
    data[page:page * 6] = b"\xa5" * (page * 5)  # smash pages 2..6, keep the header page
    path.write_bytes(bytes(data))
    s = Store(path)
    await s.open()
    try:
        assert len(aside_files(path)) == 1
        assert await s.read(pragma("user_version")) == SCHEMA_VERSION
    finally:
        await s.close()


async def test_store_too_new_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "gatewayd.db"
    before = make_newer_store(path, "wal")
    s = Store(path)
    try:
        with pytest.raises(StoreTooNew) as info:
            await s.open()
        assert str(path) in str(info.value) and "newer" in str(info.value)
    finally:
        await s.close()
    assert path.read_bytes() == before
    assert aside_files(path) == []


async def test_store_too_new_in_rollback_journal_mode_is_untouched(tmp_path: Path) -> None:
    path = tmp_path / "gatewayd.db"
    before = make_newer_store(path, "delete")
    s = Store(path)
    try:
        with pytest.raises(StoreTooNew):
            await s.open()
    finally:
        await s.close()
    assert path.read_bytes() == before


async def test_store_too_new_leaves_no_open_connection(tmp_path: Path) -> None:
    path = tmp_path / "gatewayd.db"
    make_newer_store(path, "delete")
    s = Store(path)
    try:
        with pytest.raises(StoreTooNew):
            await s.open()
        assert s._conn is None
    finally:
        await s.close()


async def test_second_corrupt_store_in_the_same_second_keeps_the_first_aside(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db.time, "strftime", lambda fmt, *a: "20260101-000000")
    path = tmp_path / "gatewayd.db"
    contents = [b"first garbage, not sqlite\n" * 200, b"second garbage, not sqlite\n" * 200]
    for garbage in contents:
        path.write_bytes(garbage)  # over the fresh store of the round before (closed: no -wal left)
        s = Store(path)
        await s.open()
        await s.close()
    moved = aside_files(path)
    assert len(moved) == 2
    assert sorted(p.read_bytes() for p in moved) == sorted(contents)


async def test_file_deleted_under_open_store_is_recreated_on_next_write(store: Store) -> None:
    records = BootRecords(store)
    await records.started(pid=1, create_time=0.0, port=1, version="v")
    store.path.unlink()
    boot = await records.started(pid=2, create_time=0.0, port=1, version="v")
    assert store.path.exists()
    rows = await records.unfinished()
    assert [(r["id"], r["pid"]) for r in rows] == [(boot, 2)]
    assert await store.read(pragma("user_version")) == SCHEMA_VERSION
    assert str(await store.read(pragma("journal_mode"))).lower() == "wal"


async def test_file_replaced_under_open_store_is_reopened(store: Store, tmp_path: Path) -> None:
    records = BootRecords(store)
    await records.started(pid=1, create_time=0.0, port=1, version="v")
    os.replace(_other_sqlite_file(tmp_path), store.path)
    await records.started(pid=3, create_time=0.0, port=1, version="v")
    tables = await _tables(store)
    assert "boots" in tables
    assert await store.read(pragma("quick_check")) == "ok"


async def test_file_replaced_under_open_store_keeps_the_replacement_content(store: Store, tmp_path: Path) -> None:
    records = BootRecords(store)
    await records.started(pid=1, create_time=0.0, port=1, version="v")
    os.replace(_other_sqlite_file(tmp_path), store.path)
    await records.started(pid=3, create_time=0.0, port=1, version="v")
    assert "marker" in await _tables(store)
    assert [r["pid"] for r in await records.unfinished()] == [3]


def _other_sqlite_file(tmp_path: Path) -> Path:
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE marker (x)")
    conn.execute("INSERT INTO marker VALUES ('replacement')")
    conn.commit()
    conn.close()
    return other


async def _tables(store: Store) -> set[str]:
    return await store.read(lambda c: {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")})


async def test_failed_write_rolls_back(store: Store) -> None:
    def tx(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO boots(started_at) VALUES (1)")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await store.write(tx)
    assert await store.read(lambda c: c.execute("SELECT count(*) FROM boots").fetchone()[0]) == 0


async def test_foreign_keys_are_enforced(store: Store) -> None:
    with pytest.raises(StoreError):
        await BootRecords(store).event("orphan", 999, {})


async def test_open_readonly_reads_while_daemon_runs(store: Store) -> None:
    await BootRecords(store).started(pid=5, create_time=0.0, port=1, version="v")
    conn = db.open_readonly(store.path)
    try:
        rows = conn.execute("SELECT pid FROM boots").fetchall()
        assert [r["pid"] for r in rows] == [5]
        with pytest.raises(sqlite3.OperationalError):
            conn.execute("DELETE FROM boots")
    finally:
        conn.close()


def test_statements_split() -> None:
    assert db._statements("CREATE TABLE a (x);\n-- c\nCREATE TABLE b (y);\n") == [
        "CREATE TABLE a (x);", "-- c\nCREATE TABLE b (y);"]


# -- boots ------------------------------------------------------------------------------------

async def test_boot_records_lifecycle(store: Store) -> None:
    r = BootRecords(store)
    await r.daemon_started(4242)
    daemon = await store.read(lambda c: db.row_dicts(c.execute("SELECT * FROM daemon")))
    assert len(daemon) == 1 and daemon[0]["pid"] == 4242 and daemon[0]["state"] == "starting"

    boot = await r.started(pid=100, create_time=1234.5, port=18789, version="2026.9.6")
    assert boot >= 1
    assert (await store.read(lambda c: c.execute("SELECT current_boot FROM daemon").fetchone()[0])) == boot
    unfinished = await r.unfinished()
    assert len(unfinished) == 1
    row = unfinished[0]
    assert (row["pid"], row["create_time"], row["port"], row["version"]) == (100, 1234.5, 18789, "2026.9.6")
    assert row["ready_at"] is None and row["ended_at"] is None

    await r.ready(boot, "gw-boot-1")
    row = (await r.unfinished())[0]
    assert row["ready_at"] is not None and row["gateway_boot_id"] == "gw-boot-1"

    await r.state("running", crash_loop=False, consecutive=0)
    await r.ended(boot, BootEnd(exit_code=-9, exit_kind="crash", detail="signal SIGKILL", needs_recovery=True,
                                diagnostics={"last_lines": ["a", "b"]}))
    assert await r.unfinished() == []
    ended = (await store.read(lambda c: db.row_dicts(c.execute("SELECT * FROM boots WHERE id = ?", (boot,)))))[0]
    assert (ended["exit_code"], ended["exit_kind"], ended["detail"], ended["needs_recovery"]) == (
        -9, "crash", "signal SIGKILL", 1)
    assert '"last_lines"' in ended["diagnostics"]
    assert (await store.read(lambda c: c.execute("SELECT current_boot FROM daemon").fetchone()[0])) is None

    kinds = await store.read(lambda c: [x[0] for x in c.execute("SELECT kind FROM events ORDER BY id")])
    assert kinds == ["daemon-started", "boot-started", "gateway-ready", "boot-ended"]


async def test_boot_end_is_recorded_once(store: Store) -> None:
    r = BootRecords(store)
    boot = await r.started(pid=1, create_time=0.0, port=1, version="v")
    await r.ended(boot, BootEnd(0, "clean-stop", "operator stop, exit 0", False, {}))
    await r.ended(boot, BootEnd(-9, "crash", "late", True, {}))
    row = (await store.read(lambda c: db.row_dicts(c.execute("SELECT * FROM boots"))))[0]
    assert (row["exit_kind"], row["exit_code"], row["needs_recovery"]) == ("clean-stop", 0, 0)


async def test_unfinished_lists_every_open_boot_in_order(store: Store) -> None:
    r = BootRecords(store)
    b1 = await r.started(pid=1, create_time=0.0, port=1, version="v")
    b2 = await r.started(pid=2, create_time=0.0, port=1, version="v")
    b3 = await r.started(pid=3, create_time=0.0, port=1, version="v")
    await r.ended(b2, BootEnd(1, "crash", "exit 1", True, {}))
    assert [x["id"] for x in await r.unfinished()] == [b1, b3]


async def test_daemon_started_again_resets_the_row(store: Store) -> None:
    r = BootRecords(store)
    await r.daemon_started(1)
    await r.state("crash-loop", crash_loop=True, consecutive=7, message="crashing")
    row = (await store.read(lambda c: db.row_dicts(c.execute("SELECT * FROM daemon"))))[0]
    assert (row["state"], row["crash_loop"], row["consecutive_crashes"], row["message"]) == (
        "crash-loop", 1, 7, "crashing")
    await r.daemon_started(2)
    rows = await store.read(lambda c: db.row_dicts(c.execute("SELECT * FROM daemon")))
    assert len(rows) == 1
    assert (rows[0]["pid"], rows[0]["state"], rows[0]["message"]) == (2, "starting", None)


async def test_state_without_daemon_row_is_harmless(store: Store) -> None:
    await BootRecords(store).state("running", crash_loop=False, consecutive=0)
    assert await store.read(lambda c: c.execute("SELECT count(*) FROM daemon").fetchone()[0]) == 0


async def test_an_adopted_boot_keeps_the_time_it_first_became_ready(store: Store) -> None:
    """Recovery judges "did the gateway resume this itself" from the gateway's own ready time; a
    gatewayd that adopts the gateway later must not move it (found by the chaos benchmark)."""
    r = BootRecords(store)
    boot = await r.started(pid=1, create_time=0.0, port=1, version="2026.9.6")
    first = await r.ready(boot, "gw-1")
    assert await r.ready(boot, "gw-1", keep_first=True) == first  # adopted: the first time stands
    again = await r.ready(boot, "gw-1")  # a gateway that became ready again itself: a new time
    assert again >= first
    stored = await store.read(lambda c: c.execute("SELECT ready_at FROM boots WHERE id = ?", (boot,)).fetchone()[0])
    assert stored == again
