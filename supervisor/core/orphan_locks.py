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
pid's lock is taken at once), and a file that is neither empty nor the start of the gateway's
payload is someone else's: never touched.
"""

from __future__ import annotations

import json

# How 2026.2.x begins a lock's payload (`JSON.stringify({pid, createdAt}, null, 2)`): a file that is
# not empty and not the start of one is someone else's and is never touched.
PAYLOAD_START = '{\n  "pid"'


def owner_pid(text: str) -> int | None:
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError):  # a cut write, or anything else that is no owner's JSON
        return None
    pid = payload.get("pid") if isinstance(payload, dict) else None
    return pid if isinstance(pid, int) and not isinstance(pid, bool) else None


def unfinished(text: str) -> bool:
    """Empty, or a payload of the gateway's own cut before its pid: what a kill between the lock's
    creation and its write leaves."""
    if owner_pid(text) is not None:
        return False
    return text == "" or PAYLOAD_START.startswith(text) or text.startswith(PAYLOAD_START)


def orphaned(text: str, held_open: bool) -> str | None:
    """Why the lock is a dead writer's and may go, or None to leave it. Asked only between a
    gateway's end and the next one's spawn, when no gateway of ours holds anything."""
    if not unfinished(text) or held_open:
        return None
    return "no owner written in it and no process holds it open: its writer died between creating and filling it"
