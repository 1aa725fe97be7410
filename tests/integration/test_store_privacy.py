"""The store and its folder are private whatever the umask, and a store from a newer gatewayd does
not stop supervision (issue 17)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from supervisor import config, logs
from supervisor.control.handlers import control_handlers
from supervisor.daemon import Daemon
from supervisor.events import GatewayReady
from supervisor.store.db import SCHEMA_VERSION, Store
from tests.integration.test_sleep import write_config

pytestmark = pytest.mark.timeout(60)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_the_store_and_its_wal_are_0600_under_umask_022(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        store = Store(tmp_path / "state" / "store.sqlite")
        await store.open()
        await store.write(lambda c: c.execute("INSERT INTO events(ts, kind, data) VALUES (1, 'x', '{}')"))
        files = [tmp_path / "state" / n for n in ("store.sqlite", "store.sqlite-wal", "store.sqlite-shm")]
        assert all(f.exists() for f in files)
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
        await store.close()
    finally:
        os.umask(old)


async def test_a_store_made_under_umask_022_by_an_older_gatewayd_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE t (x)")
    for suffix in ("", "-wal", "-shm"):
        os.chmod(str(path) + suffix, 0o644)
    store = Store(path)
    await store.open()
    try:
        assert [mode(Path(str(path) + s)) for s in ("", "-wal", "-shm")] == [0o600] * 3
    finally:
        await store.close()
        conn.close()


async def test_a_store_from_a_newer_gatewayd_is_untouched_and_the_gateway_supervised(tmp_path: Path) -> None:
    """Was: `run` exited 5; under KeepAlive that is a restart loop in which the gateway never starts."""
    cfg = config.load(write_config(tmp_path), environ={})
    cfg.state_dir.mkdir(parents=True, mode=0o700)
    newer = cfg.state_dir / "store.sqlite"
    conn = sqlite3.connect(newer)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.close()
    before = newer.read_bytes()
    old = os.umask(0o022)
    logs.setup(cfg.state_dir / "logs", "info", console=False)
    d = Daemon(cfg, install_signals=False)
    ready = asyncio.Event()
    d.bus.subscribe(lambda ev: ready.set() if isinstance(ev, GatewayReady) else None)
    task = asyncio.create_task(d.run())
    try:
        await asyncio.wait_for(ready.wait(), 20)
        live = await control_handlers(d)["status"]({})
        assert live["state"] == "running" and live["gateway"]["ready"]
        assert "newer gatewayd" in live["store_error"] and "move the store aside" in live["store_error"]
        assert mode(cfg.state_dir) == 0o700
    finally:
        d.request_stop()
        await asyncio.wait_for(task, 30)
        logs.setup(None, "warning", console=False)
        os.umask(old)
    assert newer.read_bytes() == before


async def test_a_state_dir_replaced_by_a_file_is_a_store_error_not_a_crash(tmp_path: Path) -> None:
    """Was: a raw NotADirectoryError out of write_sync, which ended the daemon."""
    from supervisor.errors import StoreUnavailable

    state = tmp_path / "state"
    store = Store(state / "store.sqlite")
    await store.open()
    try:
        state.rename(tmp_path / "moved")
        state.write_text("not a folder")
        with pytest.raises(StoreUnavailable, match=r"NotADirectoryError|Not a directory"):
            await store.write(lambda c: c.execute("SELECT 1"))
        with pytest.raises(StoreUnavailable):
            await store.read(lambda c: c.execute("SELECT 1").fetchall())
        state.unlink()  # the folder comes back: the store is re-created, loudly, and works
        state.mkdir()
        assert await store.read(lambda c: c.execute("SELECT 1").fetchall()) == [(1,)]
    finally:
        await store.close()
