"""What the benchmarks share: percentiles, and leaving nothing running when they are stopped.

Python's default SIGTERM action ends the process without running a single `finally`, and gatewayd
and the gateway run in sessions of their own, which neither `timeout` nor a terminal's Ctrl-C
reaches: a benchmark stopped that way left them behind (idle_cost.py under `timeout`). Each
benchmark therefore turns SIGTERM, SIGINT and SIGHUP into its own orderly teardown.

Imported by the benchmarks as gatewayd_dev.benchlib.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import time
from collections.abc import Callable
from types import FrameType

import psutil

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Stopped(BaseException):
    """A stop signal arrived. A BaseException, so no `except Exception` of a benchmark swallows it
    and every `finally` on the way out still runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q = 1: the maximum); NaN when there is nothing to rank."""
    s = sorted(values)
    return s[max(0, math.ceil(q * len(s)) - 1)] if s else math.nan


def num(x: float, digits: int = 3) -> float | None:
    """A figure for the JSON line: NaN (nothing measured) becomes null."""
    return None if math.isnan(x) else round(x, digits)


def raise_on_signals() -> None:
    """SIGTERM, SIGINT and SIGHUP raise `Stopped` in the main thread. Once one has, the others are
    ignored: the teardown it starts is bounded, and a second signal must not cut it short."""
    def handler(signum: int, frame: FrameType | None) -> None:
        for s in SIGNALS:
            signal.signal(s, signal.SIG_IGN)
        raise Stopped(signum)

    for s in SIGNALS:
        signal.signal(s, handler)


def loop_signals(loop: asyncio.AbstractEventLoop, callback: Callable[[int], None]) -> Callable[[], None]:
    """In an event loop: a stop signal calls `callback(signum)` on the loop (which stops what the
    benchmark runs there, in order). Returns the undo, which puts `raise_on_signals` back: the
    loop's own removal of its handlers would leave the default action (an exit with no teardown)."""
    for s in SIGNALS:
        loop.add_signal_handler(s, callback, s)

    def undo() -> None:
        for s in SIGNALS:
            loop.remove_signal_handler(s)
        raise_on_signals()

    return undo


def tree(pid: int) -> list[psutil.Process]:
    """The process and its descendants, as psutil identities (a reused pid is never signalled)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def end_tree(pid: int, grace_s: float, procs: list[psutil.Process] | None = None) -> list[int]:
    """SIGTERM `pid` (gatewayd then stops its gateway the orderly way), wait up to `grace_s` for
    it, then SIGKILL whatever is left of its tree and of their process groups. The tree is recorded
    before the SIGTERM: once gatewayd is gone its gateway is nobody's child. `procs`: more
    processes to end likewise (recorded earlier). Returns the pids that had to be killed."""
    members = {p.pid: p for p in [*(procs or []), *tree(pid)]}
    with contextlib.suppress(psutil.Error):
        psutil.Process(pid).terminate()
    deadline = time.monotonic() + grace_s
    with contextlib.suppress(psutil.Error):
        psutil.Process(pid).wait(grace_s)
    for p in tree(pid):  # anything started since the first look
        members.setdefault(p.pid, p)
    killed = []
    for p in members.values():
        with contextlib.suppress(psutil.Error):
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                # The rest of the group drains too while the leader drains: give it the same grace.
                with contextlib.suppress(psutil.TimeoutExpired):
                    p.wait(max(0.0, deadline - time.monotonic()))
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    killed.append(p.pid)
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        if os.getpgid(p.pid) == p.pid:
                            os.killpg(p.pid, signal.SIGKILL)
                    p.kill()
    with contextlib.suppress(psutil.Error):
        psutil.wait_procs(list(members.values()), 5.0)
    return killed
