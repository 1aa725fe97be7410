"""Crash forensics: what an unplanned exit looked like, for its incident. The gateway tree's RSS is
sampled every few seconds while it runs (the last sample is "just before" the exit: a process
already gone has no memory to read); its last output lines come from gateway.log, which the relay
process (`supervisor.logrelay`) writes already redacted, and are redacted again here with every
secret gatewayd knows (the notifiers' too)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path

import psutil

from supervisor import logs
from supervisor.events import BootEnded
from supervisor.store.alerts import INCIDENT_LINES, Incident

SAMPLE_S = 3.0
TAIL_BYTES = 512 * 1024  # enough for 200 long lines


def tree_rss(pid: int) -> int | None:
    """RSS of the process and all its descendants, in bytes; None when it is gone."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


class TreeSampler:
    """The last tree RSS of the current gateway, refreshed every `period_s`."""

    def __init__(self, period_s: float = SAMPLE_S) -> None:
        self.period_s = period_s
        self.pid: int | None = None
        self.last: tuple[int, float] | None = None  # (bytes, wall clock)

    def watch(self, pid: int) -> None:
        self.pid, self.last = pid, None
        self.sample()

    def sample(self) -> None:
        if self.pid is None:
            return
        rss = tree_rss(self.pid)
        if rss is not None:
            self.last = (rss, time.time())

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.period_s)


def last_lines(path: Path, n: int = INCIDENT_LINES) -> tuple[str, ...]:
    lines = logs.OutputFile(path, 0, 0).last_lines(n, TAIL_BYTES)
    return tuple(logs.REDACTOR.text(line) for line in lines)


def signal_name(returncode: int | None) -> str | None:
    if returncode is None or returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def incident_of(event: BootEnded, sampler: TreeSampler, output: Path) -> Incident:
    rss = sampler.last if sampler.pid == event.pid else None
    return Incident(boot=event.boot, exit_kind=event.exit_kind, detail=event.detail, exit_code=event.returncode,
                    signal=signal_name(event.returncode), tree_rss_bytes=rss[0] if rss else None,
                    rss_sampled_at=rss[1] if rss else None, last_lines=last_lines(output))
