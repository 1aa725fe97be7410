"""Session locks a killed gateway left empty: the pure rule (core/orphan_locks.py) and the removal
before a spawn (gateway/session_locks.py), with real files and this process's own descriptors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from supervisor.core.orphan_locks import orphaned, owner_pid
from supervisor.gateway.session_locks import clear_orphaned, lock_dirs

OWNED = json.dumps({"pid": 4242, "createdAt": "2026-12-07T19:41:02.110Z"}, indent=2)


@pytest.mark.parametrize(("text", "pid"), [
    (OWNED, 4242),
    ("", None),  # cut between the file's creation and the owner's write
    ("{", None),  # cut in the middle of the write
    ('{"createdAt": "x"}', None),
    ('{"pid": "4242"}', None),
    ('{"pid": true}', None),
    ("[4242]", None),
    ("\ufffd\ufffd", None),
    ("[" * 4096, None),  # nested past the parser's recursion limit
])
def test_the_owner_is_the_pid_written_in_the_file(text: str, pid: int | None) -> None:
    assert owner_pid(text) == pid


@pytest.mark.parametrize(("text", "held", "goes"), [
    ("", False, True),
    ("{", False, True),
    ('{"createdAt": "x"}', False, True),
    ("", True, False),  # its writer is alive, between creating and filling it
    ("{", True, False),
    (OWNED, False, False),  # the gateway's own rule: a dead pid's lock is taken at once
    (OWNED, True, False),
])
def test_only_a_lock_with_no_owner_that_no_process_holds_is_orphaned(text: str, held: bool, goes: bool) -> None:
    assert (orphaned(text, held) is not None) is goes


def lock(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_before_a_spawn_only_orphaned_locks_in_the_agents_session_folders_go(tmp_path: Path) -> None:
    store_lock = lock(tmp_path / "agents/main/sessions/sessions.json.lock", "")
    transcript_lock = lock(tmp_path / "agents/kit/sessions/abc.jsonl.lock", "{")
    owned = lock(tmp_path / "agents/main/sessions/def.jsonl.lock", OWNED)
    held = lock(tmp_path / "agents/kit/sessions/sessions.json.lock", "")
    elsewhere = lock(tmp_path / "tmp/openclaw-0/gateway.state.lock", "")
    not_a_lock = lock(tmp_path / "agents/main/sessions/sessions.json", "")
    with held.open("r+"):  # a live writer, between creating the file and writing its pid
        done = clear_orphaned(tmp_path)
    assert sorted(p for p, _ in done.removed) == sorted([str(store_lock), str(transcript_lock)])
    assert done.failed == []
    assert not store_lock.exists() and not transcript_lock.exists()
    assert owned.exists() and held.exists() and elsewhere.exists() and not_a_lock.exists()


def test_a_lock_held_through_a_linked_folder_is_seen_held(tmp_path: Path) -> None:
    real = lock(tmp_path / "real/agents/main/sessions/sessions.json.lock", "")
    (tmp_path / "linked").symlink_to(tmp_path / "real")
    with real.open("r+"):
        done = clear_orphaned(tmp_path / "linked")
    assert done.removed == [] and done.failed == [] and real.exists()


def test_no_agents_folder_is_nothing_to_clear(tmp_path: Path) -> None:
    lock(tmp_path / "state/sessions/sessions.json.lock", "")  # not where the gateway keeps them
    done = clear_orphaned(tmp_path / "state")  # 2026.9.x: sessions in SQLite, no agents/*/sessions
    assert done.removed == [] and done.failed == []


def test_what_is_no_regular_file_is_named_and_never_blocks_and_the_others_still_go(tmp_path: Path) -> None:
    folder = tmp_path / "agents/a/sessions"
    folder.mkdir(parents=True)
    (folder / "dir.lock").mkdir()
    os.mkfifo(folder / "pipe.lock")  # opening it to read would wait for a writer for ever
    (folder / "link.lock").symlink_to(tmp_path / "elsewhere.lock")
    lock(tmp_path / "elsewhere.lock", "")
    other = lock(tmp_path / "agents/b/sessions/sessions.json.lock", "")
    done = clear_orphaned(tmp_path)
    assert sorted(p for p, _ in done.failed) == sorted(str(folder / n) for n in ("dir.lock", "link.lock", "pipe.lock"))
    assert [p for p, _ in done.removed] == [str(other)] and not other.exists()
    assert (tmp_path / "elsewhere.lock").exists()  # a link is not followed


def test_a_folder_that_cannot_be_listed_is_named(tmp_path: Path) -> None:
    lock(tmp_path / "agents/a/sessions.txt", "")  # a file where the sessions folder should be
    (tmp_path / "agents/a/sessions.txt").rename(tmp_path / "agents/a/sessions")
    done = clear_orphaned(tmp_path)
    assert [p for p, _ in done.failed] == [str(tmp_path / "agents/a/sessions")] and done.removed == []


@pytest.mark.parametrize(("store", "expected"), [
    (None, ["agents/kit/sessions", "agents/main/sessions"]),
    ("{root}/custom/{{agentId}}/sessions.json", ["custom/kit", "custom/main"]),
    ("{root}/one/sessions.json", ["one"]),
])
def test_the_folders_follow_the_configured_session_store(tmp_path: Path, store: str | None,
                                                         expected: list[str]) -> None:
    for d in ("agents/kit/sessions", "agents/main/sessions", "custom/kit", "custom/main", "one"):
        (tmp_path / d).mkdir(parents=True)
    configured = store.format(root=tmp_path) if store else None
    assert lock_dirs(tmp_path, configured) == [tmp_path / e for e in expected]


def test_a_relative_session_store_is_the_working_directorys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "rel/main").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert lock_dirs(tmp_path / "state", "rel/{agentId}/sessions.json") == [tmp_path / "rel/main"]
    removed = lock(tmp_path / "rel/main/sessions.json.lock", "")
    assert [p for p, _ in clear_orphaned(tmp_path / "state", "rel/{agentId}/sessions.json").removed] == [str(removed)]


def test_a_failure_of_the_whole_clearing_is_logged_and_the_spawn_goes_ahead(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio
    from types import SimpleNamespace
    from typing import Any

    from structlog.testing import capture_logs

    from supervisor.gateway import session_locks
    from supervisor.startup import Startup

    def broken(*_: Any) -> None:
        raise RuntimeError("disk on fire")
    monkeypatch.setattr(session_locks, "clear_orphaned", broken)
    startup = Startup(None, None, None, 1.0)  # type: ignore[arg-type]  # none of them is used here
    with capture_logs() as logs:
        asyncio.run(startup.clear_orphaned_locks(SimpleNamespace(state_dir=tmp_path, session_store=None)))  # type: ignore[arg-type]
    [entry] = [e for e in logs if e["event"] == "session_locks_not_cleared"]
    assert entry["state_dir"] == str(tmp_path) and "disk on fire" in entry["error"]


def test_each_removed_or_stuck_lock_is_logged_with_its_file(tmp_path: Path) -> None:
    import asyncio
    from types import SimpleNamespace

    from structlog.testing import capture_logs

    from supervisor.startup import Startup

    gone = lock(tmp_path / "agents/a/sessions/sessions.json.lock", "")
    (tmp_path / "agents/b/sessions/x.lock").mkdir(parents=True)
    with capture_logs() as logs:
        asyncio.run(Startup(None, None, None, 1.0).clear_orphaned_locks(  # type: ignore[arg-type]
            SimpleNamespace(state_dir=tmp_path, session_store=None)))  # type: ignore[arg-type]
    assert [(e["event"], e["file"]) for e in logs if "file" in e] == [
        ("session_lock_removed", str(gone)), ("session_lock_not_cleared", str(tmp_path / "agents/b/sessions/x.lock"))]
