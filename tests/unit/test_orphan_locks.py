"""Session locks a killed gateway left empty: the pure rule (core/orphan_locks.py) and the removal
before a spawn (gateway/session_locks.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from supervisor.core.orphan_locks import ORPHAN_AFTER_S, LockSeen, orphaned, owner_pid
from supervisor.gateway.session_locks import clear_orphaned

NOW = 1_800_000_000.0
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
])
def test_the_owner_is_the_pid_written_in_the_file(text: str, pid: int | None) -> None:
    assert owner_pid(text) == pid


@pytest.mark.parametrize("age", [0.0, ORPHAN_AFTER_S - 0.01, ORPHAN_AFTER_S, 30.0, 3600.0])
@pytest.mark.parametrize("text", [OWNED, "", "{", '{"createdAt": "x"}'])
@pytest.mark.parametrize("gone_ago", [None, 0.0, 0.005, 1.0, 60.0])
def test_a_lock_with_no_owner_is_orphaned_if_it_predates_the_gone_tree_or_stayed_empty(
        age: float, text: str, gone_ago: float | None) -> None:
    gone = None if gone_ago is None else NOW - gone_ago
    why = orphaned(LockSeen(text, NOW - age), NOW, gone)
    made_before_the_end = gone is not None and NOW - age <= gone
    if owner_pid(text) is None and (made_before_the_end or age >= ORPHAN_AFTER_S):
        assert why is not None and "no owner" in why
    else:
        assert why is None  # an owner's lock is the gateway's to judge; a fresh one may be mid-write


def test_the_kill_ci_saw_13ms_after_a_turns_end_leaves_a_lock_that_goes_at_once() -> None:
    """Respawned at once: the lock is milliseconds old, but dated before the tree was reaped."""
    made = NOW - 0.030
    assert orphaned(LockSeen("", made), NOW, tree_gone_s=NOW - 0.010) is not None
    assert orphaned(LockSeen("", made), NOW, tree_gone_s=None) is None  # no end known: the age rule


def lock(path: Path, text: str, age: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, (NOW - age, NOW - age))
    return path


def test_before_a_spawn_only_orphaned_locks_in_the_agents_session_folders_go(tmp_path: Path) -> None:
    store_lock = lock(tmp_path / "agents/main/sessions/sessions.json.lock", "", 10)
    transcript_lock = lock(tmp_path / "agents/kit/sessions/abc.jsonl.lock", "{", 10)
    owned = lock(tmp_path / "agents/main/sessions/def.jsonl.lock", OWNED, 10)
    fresh = lock(tmp_path / "agents/kit/sessions/sessions.json.lock", "", 0.5)
    elsewhere = lock(tmp_path / "tmp/openclaw-0/gateway.state.lock", "", 10)
    not_a_lock = lock(tmp_path / "agents/main/sessions/sessions.json", "", 10)
    done = clear_orphaned(tmp_path, NOW, None)
    assert sorted(p for p, _ in done.removed) == sorted([str(store_lock), str(transcript_lock)])
    assert done.failed == []
    assert not store_lock.exists() and not transcript_lock.exists()
    assert owned.exists() and fresh.exists() and elsewhere.exists() and not_a_lock.exists()


def test_no_agents_folder_is_nothing_to_clear(tmp_path: Path) -> None:
    assert clear_orphaned(tmp_path / "missing", NOW, None).removed == []  # 2026.9.x: sessions in SQLite


def test_a_lock_that_cannot_be_read_is_named_and_the_others_still_go(tmp_path: Path) -> None:
    stuck = tmp_path / "agents/a/sessions/sessions.json.lock"
    stuck.mkdir(parents=True)  # a folder where the file should be: unreadable as one, even to root
    other = lock(tmp_path / "agents/b/sessions/sessions.json.lock", "", 10)
    done = clear_orphaned(tmp_path, NOW, None)
    assert [p for p, _ in done.failed] == [str(stuck)] and stuck.exists()
    assert [p for p, _ in done.removed] == [str(other)] and not other.exists()


def test_after_a_reaped_tree_an_empty_lock_made_before_it_goes_and_one_made_since_stays(tmp_path: Path) -> None:
    cut = lock(tmp_path / "agents/main/sessions/sessions.json.lock", "", 0.5)
    since = lock(tmp_path / "agents/kit/sessions/sessions.json.lock", "", 0.05)  # someone else's, mid-write
    done = clear_orphaned(tmp_path, NOW, tree_gone_s=NOW - 0.1)
    assert [p for p, _ in done.removed] == [str(cut)] and not cut.exists() and since.exists()
