"""Crash forensics: what an unplanned exit looked like, for its incident. The gateway tree's RSS is
sampled every few seconds while it runs (the last sample is "just before" the exit: a process
already gone has no memory to read); its last output lines come from gateway.log, which the relay
process (`supervisor.logrelay`) writes already redacted, and are redacted again here with every
secret gatewayd knows (the notifiers' too)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import psutil

from supervisor import logs
from supervisor.events import BootEnded
from supervisor.store.alerts import INCIDENT_LINES, Incident

log = logs.get("gatewayd")

SAMPLE_S = 3.0
RESCAN_S = 30.0
TAIL_BYTES = 512 * 1024  # enough for 200 long lines


def tree_of(pid: int) -> list[psutil.Process]:
    """The process and its descendants (a walk of every process: a few ms, so not every sample)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def rss_of(procs: list[psutil.Process]) -> int | None:
    """Their summed RSS in bytes (cheap: one read per process); None when the first is gone."""
    if not procs:
        return None
    total = 0
    for i, p in enumerate(procs):
        try:
            rss = p.memory_info().rss
        except psutil.Error:
            rss = 0
        if i == 0 and rss == 0:
            # Gone, or killed and not yet reaped: Linux reads a zombie's RSS as 0 (a CI trial's
            # incident said "0 bytes" for a gateway killed by SIGKILL, sampled in that window).
            return None
        total += rss
    return total


SampleListener = Callable[[int, int], Awaitable[None]]  # (pid, tree RSS bytes)


class TreeSampler:
    """The last tree RSS of the current gateway: its members' RSS every `period_s`, the members
    themselves found again every `rescan_s` (finding them walks every process on the machine).
    The one sampler of the daemon: incidents read `last`, and each listener (the memory-pressure
    watch) hears every sample."""

    def __init__(self, period_s: float = SAMPLE_S, rescan_s: float = RESCAN_S) -> None:
        self.period_s = period_s
        self.rescan_s = rescan_s
        self.pid: int | None = None
        self.members: list[psutil.Process] = []
        self.scanned_at = 0.0
        self.last: tuple[int, float] | None = None  # (bytes, wall clock)
        self.listeners: list[SampleListener] = []

    def watch(self, pid: int) -> None:
        self.pid, self.last, self.members = pid, None, []
        self.sample()

    def sample(self) -> int | None:
        """The tree's RSS now (kept as `last`), or None: no gateway, or it is gone."""
        if self.pid is None:
            return None
        now = time.monotonic()
        if not self.members or now - self.scanned_at >= self.rescan_s:
            self.members, self.scanned_at = tree_of(self.pid), now
        rss = rss_of(self.members)
        if rss is not None:
            self.last = (rss, time.time())
        return rss

    async def run(self) -> None:
        while True:
            pid, rss = self.pid, self.sample()
            if pid is not None and rss is not None:
                await self._tell(pid, rss)
            await asyncio.sleep(self.period_s)

    async def _tell(self, pid: int, rss: int) -> None:
        for listener in self.listeners:
            try:
                await listener(pid, rss)
            except Exception as exc:  # a listener's bug must not stop the sampling incidents need
                log.error("rss_listener_failed", listener=getattr(listener, "__qualname__", repr(listener)),
                          error=str(exc), traceback=logs.traceback_text(exc))


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
