"""Which session lock files a killed gateway left behind: pure rules, no I/O.

2026.2.x guards each agent's session store (`agents/<id>/sessions/sessions.json`) and transcripts
with a lock file beside them: it creates the file, then writes its pid and the time into it. A kill
between the two leaves an empty lock. The next gateway counts a lock with no pid as stale only once
the file is 30 s old, and waits at most 10 s for it, so every session write in the first half-minute
after the restart fails, and with it the turns gatewayd starts to recover. At startup it clears
transcripts' locks (`*.jsonl.lock`) but not the store's (both read in its code). Seen in a CI run:
the kill came 13 ms after a turn's end, `sessions.json.lock` stayed empty, the wake's `chat.send`
was accepted and its turn never reached the model. 2026.9.x keeps its sessions in SQLite: no such
files (measured).

A lock that names its owner is left to the gateway's own rule (a dead pid's lock is taken at once).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

# openclaw writes the owner in the same tick it creates the file: one still empty this long after
# its creation, while no gateway of ours runs, lost its writer between the two. It is how a lock
# left while gatewayd was down is judged; one dated before the tree gatewayd reaped went with it.
ORPHAN_AFTER_S = 2.0


@dataclass(frozen=True)
class LockSeen:
    text: str  # the file's content (the owner's JSON, or nothing)
    mtime_s: float


def owner_pid(text: str) -> int | None:
    try:
        payload = json.loads(text)
    except ValueError:
        return None
    pid = payload.get("pid") if isinstance(payload, dict) else None
    return pid if isinstance(pid, int) and not isinstance(pid, bool) else None


def orphaned(lock: LockSeen, now_s: float, tree_gone_s: float | None) -> str | None:
    """Why the lock is a dead writer's and may go, or None to leave it. Asked only between a
    gateway's end and the next one's spawn, when no gateway of ours holds anything. `tree_gone_s`:
    when gatewayd saw the last gateway's whole tree gone (None: it ended while gatewayd was down)."""
    if owner_pid(lock.text) is not None:
        return None
    if tree_gone_s is not None and lock.mtime_s <= tree_gone_s:
        return "no owner written in it, and made before the last gateway was gone: cut by its end"
    age = now_s - lock.mtime_s
    if age < ORPHAN_AFTER_S:
        return None
    return f"no owner written in it, {age:.0f}s old: its writer was killed between creating and filling it"
