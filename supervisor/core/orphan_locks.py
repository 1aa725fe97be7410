"""Which session lock files a killed gateway left behind: pure rules, no I/O.

2026.2.x guards each agent's session store (`sessions.json`) and transcripts with a lock file beside
them: it creates the file, keeps it open while it holds the lock, and writes its pid and the time
into it right after creating it. A kill between the creation and the write leaves an empty lock. The
next gateway counts a lock with no pid as stale only once the file is 30 s old, and waits at most
10 s for it, so every session write in the first half-minute after the restart fails, and with it
the turns gatewayd starts to recover. At startup it clears transcripts' locks (`*.jsonl.lock`) but
not the store's (both read in its code). Seen in a CI run: the kill came 13 ms after a turn's end,
`sessions.json.lock` stayed empty, the wake's `chat.send` was accepted and its turn never reached
the model. 2026.9.x keeps its sessions in SQLite: no such files (measured).

A lock's writer holds it open from its creation: one that no process holds open has no writer, and
no clock is needed to say so. A lock that names its owner is left to the gateway's own rule (a dead
pid's lock is taken at once).
"""

from __future__ import annotations

import json


def owner_pid(text: str) -> int | None:
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError):  # a cut write, or anything else that is no owner's JSON
        return None
    pid = payload.get("pid") if isinstance(payload, dict) else None
    return pid if isinstance(pid, int) and not isinstance(pid, bool) else None


def orphaned(text: str, held_open: bool) -> str | None:
    """Why the lock is a dead writer's and may go, or None to leave it. Asked only between a
    gateway's end and the next one's spawn, when no gateway of ours holds anything."""
    if owner_pid(text) is not None or held_open:
        return None
    return "no owner written in it and no process holds it open: its writer died between creating and filling it"
