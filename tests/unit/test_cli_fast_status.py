"""Issue 16: `gatewayd status` answers at once. Its fast path imports no typer, asyncio, structlog
or rich, and prints and exits exactly as the typer command does."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from supervisor.cli.entry import parse_plain_status
from supervisor.store.boots import BootEnd, BootRecords
from supervisor.store.db import Store

REPO = Path(__file__).resolve().parents[2]
TYPER_PATH = "import sys; from supervisor.cli.commands import app; app(prog_name='gatewayd')"
FAST_PATH = "from supervisor.cli.entry import main; main()"


async def make_store(state_dir: Path) -> None:
    store = Store(state_dir / "store.sqlite")
    await store.open()
    try:
        rec = BootRecords(store)
        await rec.daemon_started(4242)
        for i in range(3):
            boot = await rec.started(5000 + i, time.time(), 18789, "2026.9.6")
            await rec.ready(boot, f"gw-{i}")
            await rec.ended(boot, BootEnd(-9, "crash", f"signal SIGKILL \x1b[31m{i}", True, {}))
        await rec.state("crash-loop", True, 3, "test")
    finally:
        await store.close()


def run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO,
                          timeout=60, check=False)


@pytest.mark.parametrize(("argv", "expected"), [
    (["status"], {"config": None, "state_dir": None, "as_json": False}),
    (["status", "--json", "--state-dir", "/s"], {"config": None, "state_dir": "/s", "as_json": True}),
    (["status", "-c", "/c.toml", "--state-dir=/s"], {"config": Path("/c.toml"), "state_dir": "/s", "as_json": False}),
    (["status", "--config=/c.toml", "--json"], {"config": Path("/c.toml"), "state_dir": None, "as_json": True}),
])
def test_plain_status_forms_take_the_fast_path(argv: list[str], expected: dict[str, object]) -> None:
    assert parse_plain_status(argv) == expected


@pytest.mark.parametrize("argv", [
    [], ["history"], ["status", "--help"], ["status", "--bogus"], ["status", "--json", "--json"],
    ["status", "-c"], ["status", "--state-dir", "--json"], ["status", "-c=/x"], ["status", "--config", ""],
    ["--help"], ["status", "extra"],
])
def test_anything_else_goes_through_typer(argv: list[str]) -> None:
    assert parse_plain_status(argv) is None


async def test_fast_path_prints_and_exits_like_the_typer_command(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    await make_store(state)
    bad = tmp_path / "bad.toml"
    bad.write_text("no_such_key = 1\n")
    bad.chmod(0o600)
    for args in (["status", "--state-dir", str(state)], ["status", "--json", "--state-dir", str(state)],
                 ["status", "-c", str(bad)], ["status", "--state-dir", str(tmp_path / "empty")]):
        fast, slow = run(FAST_PATH, *args), run(TYPER_PATH, *args)
        assert (fast.returncode, fast.stdout, fast.stderr) == (slow.returncode, slow.stdout, slow.stderr), args
        assert fast.returncode in (2, 5)  # the config error, or down without a stop (crash-loop recorded)
    assert "\x1b" not in run(FAST_PATH, "status", "--state-dir", str(state)).stdout  # as click.echo strips it


async def test_fast_path_imports_no_typer_asyncio_structlog_rich_or_rule_modules(tmp_path: Path) -> None:
    # The rule modules (many dataclasses each) cost ~25 ms to load; status reads the store with
    # `store.views` alone and loads only the config's policy modules.
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    await make_store(state)
    code = ("import atexit, sys\n"
            "def report():\n"
            "    names = ('typer', 'click', 'structlog', 'rich', 'asyncio.base_events', 'supervisor.core.alertrules',\n"
            "             'supervisor.core.planner', 'supervisor.core.obligations', 'supervisor.core.inflight')\n"
            "    heavy = [m for m in names if m in sys.modules]\n"
            "    print('HEAVY', heavy, file=sys.stderr)\n"
            "atexit.register(report)\n"
            "from supervisor.cli.entry import main\n"
            "main(['status', '--json', '--state-dir', sys.argv[1]])\n")
    r = run(code, str(state))
    assert r.returncode == 5 and '"crash_loop": true' in r.stdout, r.stderr
    assert "HEAVY []" in r.stderr, r.stderr


def test_status_says_what_the_agents_were_told_after_the_latest_restart_that_owed_them(tmp_path: Path) -> None:
    from supervisor.cli.status_report import read_status, told_lines

    async def fill() -> None:
        await make_store(tmp_path)
        store = Store(tmp_path / "store.sqlite")
        await store.open()
        try:
            def rows(c: Any) -> None:
                now = time.time()
                for boot, agent, state, method in [(1, "main", "done", "wake"), (2, "kit", "done", "wake"),
                                                   (2, "main", "covered", None), (2, "ops", "nothing", None)]:
                    c.execute("INSERT INTO agent_wakes (boot_id, agent_id, state, method, updated_at)"
                              " VALUES (?, ?, ?, ?, ?)", (boot, agent, state, method, now))
                for pos, state in enumerate(["answered", "answered", "held"]):
                    c.execute("INSERT INTO requeues (boot_id, pos, kind, text, state, updated_at)"
                              " VALUES (2, ?, 'system-event', 'secret mail text', ?, ?)", (pos, state, now))
            await store.write(rows)
        finally:
            await store.close()

    asyncio.run(fill())
    told = read_status(tmp_path)["told"]
    assert told["boot"] == 2 and told["requeued"] == {"answered": 2, "held": 1}
    assert [(w["agent_id"], w["state"], w["method"]) for w in told["wakes"]] == [
        ("kit", "done", "wake"), ("main", "covered", None), ("ops", "nothing", None)]
    assert "secret mail text" not in json.dumps(told)  # counts only: the texts are the users'
    assert told_lines(told) == ["woken:   after boot 2: kit done (wake), main covered",
                                "requeued: after boot 2: 3 system events it held (answered 2, held 1)"]
    assert told_lines({}) == []
