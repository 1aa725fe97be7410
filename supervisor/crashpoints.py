"""Crash points: named steps of recovery at which gatewayd exits at once when told to, the way
FoundationDB and TiKV test their recovery paths. `GATEWAYD_CRASH_AT=<step>` in the environment;
tests start gatewayd with it, watch it die at that step, and start it again without it.
`spawned` is a step of supervision, not recovery: a gateway started, its boot not yet recorded."""

from __future__ import annotations

import os

STEPS = ("planned", "journaled", "dispatched", "answered", "recorded")
RETRY_WORDS_STEPS = ("patch-journaled", "patched", "restore-sent")
WAKE_STEPS = ("wake-decided", "wake-dispatched", "wake-answered")
REQUEUE_STEPS = ("requeue-planned", "requeue-dispatched", "requeue-sent", "requeue-answered")
SUPERVISION_STEPS = ("spawned",)
CRASH_EXIT = 70


def crashpoint(step: str) -> None:
    if os.environ.get("GATEWAYD_CRASH_AT") == step:
        os._exit(CRASH_EXIT)
