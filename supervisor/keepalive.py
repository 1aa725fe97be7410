"""Keep a boot's helper tasks alive: a helper that fails is logged with its traceback, shown by
`status` (degraded, with the reason) and started again with backoff.

Supervision of the gateway never depends on a helper: the probes, the RPC monitor, the snapshotter
and the recovery each run under `Helpers.keep`, so an exception nobody foresaw (a value the store
refused, a bug) costs one helper a restart, not the rest of the boot's tracking. That silence was
a real loss once: the monitor ended unlogged on a bad job name while `status` said `running`.
Time (how long a helper ran, when a fault began) is read through the injected `clock.Clock`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from supervisor import logs
from supervisor.clock import Clock, SystemClock

log = logs.get("gatewayd.helpers")

T = TypeVar("T")

INITIAL_S = 0.5
MAX_S = 30.0
HEALTHY_S = 10.0  # a helper that ran this long since its restart is well again: fault cleared, backoff reset


@dataclass(frozen=True)
class Fault:
    helper: str
    error: str  # "TypeError: ..." on one line
    failures: int  # in a row, across restarts
    since: float  # wall clock of the first failure of the streak
    retry_in_s: float

    def as_dict(self) -> dict[str, object]:
        return {"helper": self.helper, "error": self.error, "failures": self.failures, "since": self.since,
                "retry_in_s": self.retry_in_s}


async def until_set(event: asyncio.Event, timeout_s: float) -> None:
    """A helper's wait: until the event is set or the time is up. asyncio.wait, not wait_for: Python
    3.11's wait_for loses a cancellation that lands as the event is set (the connection closing as
    the gateway dies, the moment the boot's end cancels its helpers)."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=max(0.0, timeout_s))
    finally:
        waiter.cancel()


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


class Helpers:
    """The helpers' faults, for `status`, and the runner that keeps each one going."""

    def __init__(self, on_fault: Callable[[Fault], None] | None = None, initial_s: float = INITIAL_S,
                 max_s: float = MAX_S, healthy_s: float = HEALTHY_S, clock: Clock | None = None) -> None:
        self.faults: dict[str, Fault] = {}
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.on_fault = on_fault
        self.initial_s = initial_s
        self.max_s = max_s
        self.healthy_s = healthy_s

    async def keep(self, name: str, start: Callable[[], Awaitable[T]]) -> T:
        """Run `start()` until it returns; each time it raises, log, record and start it again after
        a growing delay. Cancellation ends it, and forgets its fault (its boot is over)."""
        delay = self.initial_s
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        try:
            while True:
                began = self.clock.monotonic()
                heal = loop.call_later(self.healthy_s, self._healed, name) if name in self.faults else None
                try:
                    result = await start()
                except Exception as exc:  # anything: a helper's failure must never end supervision
                    if task is not None and task.cancelling():
                        # Asked to stop, but the helper lost the cancellation (3.11's wait_for can
                        # swallow one that lands as its inner wait completes) and failed after it:
                        # its boot is over, and starting it again would hold the boot's end for ever.
                        raise asyncio.CancelledError from exc
                    if self.clock.monotonic() - began >= self.healthy_s:
                        delay = self.initial_s
                    self._failed(name, exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.max_s)
                    continue
                finally:
                    if heal is not None:
                        heal.cancel()
                self._healed(name)
                return result
        finally:
            self.faults.pop(name, None)

    def _failed(self, name: str, exc: Exception, delay: float) -> None:
        previous = self.faults.get(name)
        fault = Fault(name, one_line(exc), previous.failures + 1 if previous else 1,
                      previous.since if previous else self.clock.wall(), delay)
        self.faults[name] = fault
        log.error("helper_failed", helper=name, error=fault.error, failures=fault.failures,
                  retry_in_s=round(delay, 2), traceback=logs.traceback_text(exc))
        if self.on_fault is not None:
            self.on_fault(fault)

    def _healed(self, name: str) -> None:
        fault = self.faults.pop(name, None)
        if fault is not None:
            log.warning("helper_recovered", helper=name, after_failures=fault.failures)
