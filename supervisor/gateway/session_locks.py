"""Session lock files a killed gateway left, removed before the next gateway starts (the rule:
`core/orphan_locks.py`). Run only while no gateway of ours runs: after a boot's end, before a spawn.

Where 2026.2.x keeps them: beside each agent's session store, `$STATE/agents/<id>/sessions/`, or the
folder of the config's `session.store` (`{agentId}` in it names each agent's; a relative one is the
gateway's working directory's, which is gatewayd's: the child inherits it). Only its own names are
looked at: the store's (`sessions.json.lock`, or the configured file's name) and transcripts'
(`*.jsonl.lock`).
"""

from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from supervisor.core.orphan_locks import orphaned, unfinished

MAX_READ = 4096  # an owner's JSON is a few dozen bytes
DEFAULT_STORE = "sessions.json"


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


def is_lock_name(name: str, session_store: str | None) -> bool:
    store = Path(session_store).name if session_store else DEFAULT_STORE
    return name == f"{store}.lock" or name.endswith(".jsonl.lock")


def _may_write_locks(pid: str) -> bool:
    """Could this process be an openclaw writer (a Node process)? Asked of one whose open files
    cannot be read (some sandboxes hide even the user's own init's)."""
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
            comm = f.read().strip()
    except OSError:
        return True
    return "node" in comm or "openclaw" in comm


def _proc_fd_targets() -> set[str] | None:
    """Linux: every file our own processes hold open, read from /proc without touching the files
    (psutil stats each one, which hangs on a dead network mount). None: a Node process of ours
    could not be read."""
    uid = os.getuid()
    held: set[str] = set()
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    held.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
                except FileNotFoundError:
                    continue
        except FileNotFoundError:
            continue  # ended meanwhile
        except PermissionError:
            if _may_write_locks(pid):
                return None
    return held


def held_open(paths: set[str]) -> set[str] | None:
    """Which of these files one of the user's processes has open (a lock's writer is the user's
    own gateway or CLI); None when that cannot be told, and nothing may go."""
    if sys.platform.startswith("linux"):
        targets = _proc_fd_targets()
        return None if targets is None else paths & targets
    uid = os.getuid()
    held: set[str] = set()
    for proc in psutil.process_iter():
        try:
            if proc.uids().real != uid:
                continue
            held.update(f.path for f in proc.open_files() if f.path in paths)
        except psutil.NoSuchProcess:
            continue
        except psutil.Error:
            return None
    return held


Ident = tuple[int, int, int, int]


def _ident(st: os.stat_result) -> Ident:
    """What tells this file from one put in its place since (inode) or written to since."""
    return st.st_dev, st.st_ino, st.st_size, st.st_ctime_ns


def _read_lock(path: str) -> tuple[str, Ident]:
    """Its text and identity, read without following a link or blocking on a pipe; OSError if it
    is no regular file."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError("not a regular file")
        return os.read(fd, MAX_READ).decode("utf-8", "replace"), _ident(st)
    finally:
        os.close(fd)


def _same(path: str, ident: Ident) -> bool:
    try:
        return _ident(os.lstat(path)) == ident
    except FileNotFoundError:
        return False


def clear_orphaned(state_dir: Path, session_store: str | None = None) -> Cleared:
    done = Cleared()
    seen: dict[str, tuple[str, Ident]] = {}
    for folder in lock_dirs(state_dir, session_store):
        try:
            entries = sorted(e.path for e in os.scandir(folder) if is_lock_name(e.name, session_store))
        except FileNotFoundError:
            continue
        except OSError as exc:
            done.failed.append((str(folder), exc.strerror or str(exc)))
            continue
        for path in entries:
            try:
                seen[path] = _read_lock(path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                done.failed.append((path, exc.strerror or str(exc)))
    # A process's open files are listed by their real paths (a folder may be reached through a link).
    candidates = {p: os.path.realpath(p) for p, (text, _) in seen.items() if unfinished(text)}
    if not candidates:
        return done
    holders = held_open(set(candidates.values()))
    if holders is None:
        done.failed.extend((p, "cannot tell whether a process holds it open: left") for p in sorted(candidates))
        return done
    for path in sorted(candidates):
        text, ident = seen[path]
        why = orphaned(text, candidates[path] in holders)
        # The same file as read, unchanged: one replaced by a live writer meanwhile is not it.
        if why is None or not _same(path, ident):
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
