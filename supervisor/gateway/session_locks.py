"""Session lock files a killed gateway left, removed before the next gateway starts (the rule:
`core/orphan_locks.py`). Run only while no gateway of ours runs: after a boot's end, before a spawn.

Where 2026.2.x keeps them: beside each agent's session store, `$STATE/agents/<id>/sessions/`, or the
folder of the config's `session.store` (`{agentId}` in it names each agent's; a relative one is the
gateway's working directory's, which is gatewayd's: the child inherits it).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from supervisor.core.orphan_locks import orphaned

MAX_READ = 4096  # an owner's JSON is a few dozen bytes


@dataclass
class Cleared:
    removed: list[tuple[str, str]] = field(default_factory=list)  # (file, why)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file or folder, error)


def lock_dirs(state_dir: Path, session_store: str | None) -> list[Path]:
    if not session_store:
        return sorted(state_dir.glob("agents/*/sessions"))
    pattern = Path(os.path.expanduser(session_store.replace("{agentId}", "*"))).parent
    if not pattern.is_absolute():
        pattern = Path.cwd() / pattern
    if "*" not in str(pattern):
        return [pattern]
    anchor = Path(pattern.anchor)
    return sorted(anchor.glob(str(pattern.relative_to(anchor))))


def held_open(paths: set[str]) -> set[str]:
    """Which of these files some process has open (every process whose descriptors we may read:
    a lock's writer is the user's own gateway or CLI)."""
    held: set[str] = set()
    for proc in psutil.process_iter():
        try:
            held.update(f.path for f in proc.open_files() if f.path in paths)
        except psutil.Error:
            continue
    return held


def _read_lock(path: Path) -> str:
    """Its text, read without following a link or blocking on a pipe; OSError if it is no file."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError("not a regular file")
        return os.read(fd, MAX_READ).decode("utf-8", "replace")
    finally:
        os.close(fd)


def clear_orphaned(state_dir: Path, session_store: str | None = None) -> Cleared:
    done = Cleared()
    texts: dict[str, str] = {}
    for folder in lock_dirs(state_dir, session_store):
        try:
            entries = sorted(e.path for e in os.scandir(folder) if e.name.endswith(".lock"))
        except FileNotFoundError:
            continue
        except OSError as exc:
            done.failed.append((str(folder), exc.strerror or str(exc)))
            continue
        for path in entries:
            try:
                texts[path] = _read_lock(Path(path))
            except FileNotFoundError:
                continue
            except OSError as exc:
                done.failed.append((path, exc.strerror or str(exc)))
    # A process's open files are listed by their real paths (a folder may be reached through a link).
    candidates = {p: os.path.realpath(p) for p, text in texts.items() if orphaned(text, held_open=False)}
    holders = held_open(set(candidates.values())) if candidates else set()
    for path in sorted(candidates):
        why = orphaned(texts[path], candidates[path] in holders)
        if why is None:
            continue
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            done.failed.append((path, exc.strerror or str(exc)))
            continue
        done.removed.append((path, why))
    return done
