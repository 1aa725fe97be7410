"""The store and its folder are private whatever the umask, and a store from a newer gatewayd does
not stop supervision (issue 17)."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from supervisor import config, logs
from supervisor.cli import status_report
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


async def test_a_store_from_a_newer_gatewayd_is_untouched_and_the_gateway_supervised(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
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
        # `gatewayd status` does not read the newer store as if it were its own (it has no table
        # this one knows): it says why, shows the daemon's live state, and exits 1 (degraded).
        code = await asyncio.to_thread(status_report.print_status, cfg, True)
        assert code == status_report.STATUS_DEGRADED
        out = json.loads(capsys.readouterr().out)
        assert "newer gatewayd" in out["store_error"] and out["live"]["state"] == "running"
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


def test_log_files_and_their_rotations_are_0600_under_umask_022(tmp_path: Path) -> None:
    """Found by review: gatewayd.log, gateway.log and their rotations were 0644 under umask 022."""
    import logging

    old = os.umask(0o022)
    try:
        log_dir = tmp_path / "logs"
        log_dir.mkdir(mode=0o755)
        os.chmod(log_dir, 0o755)
        logs.setup(log_dir, "info", max_bytes=300, backups=2, console=False)
        for i in range(20):
            logging.getLogger("t").warning("line %d", i)
        out = logs.OutputLog(log_dir / "gateway.log", max_bytes=200, backups=2)
        for i in range(30):
            out.write_line(f"gateway line {i}".encode())
        out.close()
        files = sorted(p.name for p in log_dir.iterdir())
        assert {"gatewayd.log", "gatewayd.log.1", "gateway.log", "gateway.log.1"} <= set(files)
        assert {n: mode(log_dir / n) for n in files} == {n: 0o600 for n in files}
        assert mode(log_dir) == 0o700
    finally:
        os.umask(old)
        logs.setup(None, "warning", console=False)
