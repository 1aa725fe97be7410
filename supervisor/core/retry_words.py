"""A retry that knows it is one: the words put before a retried cron run's message, and the rules
of the one-time change of the job's payload that carries them. Pure: no I/O.

Measured on both real gateways (docs/research/agents-after-restart.md, section 4): nothing queued
reaches an isolated cron run, and `cron.run` takes no message; a `cron.update` of the job's payload
message before `cron.run` does reach the model, and the same patch with the old message restores
the job exactly (2026.9.x: same `configRevision`). 2026.9.x takes the payload when `cron.run`
enqueues the run, so the restore follows its answer at once; 2026.2.x answers when the run ends.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import Any

PATCHABLE_KINDS = {"agentTurn": "message", "systemEvent": "text"}  # payload kind -> its text field


def words(attempt: int, max_attempts: int, interrupted_at_ms: int) -> str:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(interrupted_at_ms / 1000))
    return (f"[gatewayd: retry, attempt {attempt} of {max_attempts}. The previous attempt of this run was "
            f"interrupted by a gateway restart at {when} and may have done part of the work: check what it "
            f"finished before repeating anything.]")


@dataclass(frozen=True)
class PayloadText:
    kind: str
    field: str
    text: str


def payload_text(job: Any) -> PayloadText | None:
    """The job's payload text that a patch can carry the words in, or None (no such payload)."""
    payload = job.get("payload") if isinstance(job, dict) else None
    if not isinstance(payload, dict):
        return None
    kind = payload.get("kind")
    field = PATCHABLE_KINDS.get(kind) if isinstance(kind, str) else None
    text = payload.get(field) if field else None
    if field is None or not isinstance(text, str) or not isinstance(kind, str):
        return None
    return PayloadText(kind, field, text)


def with_words(original: str, retry_words: str) -> str:
    return f"{retry_words}\n\n{original}"


def patch(kind: str, field: str, text: str) -> dict[str, Any]:
    return {"payload": {"kind": kind, field: text}}


class Restore(enum.Enum):
    NOTHING = "nothing"  # the job holds its own text: never patched, or restored already
    RESTORE = "restore"  # the job holds our words: put its own text back
    LEFT = "left"  # the job holds neither: someone edited it since; theirs stands
    GONE = "gone"  # the job was removed


def restore_step(current: PayloadText | None, exists: bool, original: str, patched: str) -> Restore:
    """What to do with a job gatewayd may have patched, by what it holds now."""
    if not exists:
        return Restore.GONE
    if current is None:
        return Restore.LEFT
    if current.text == patched:
        return Restore.RESTORE
    if current.text == original:
        return Restore.NOTHING
    return Restore.LEFT
