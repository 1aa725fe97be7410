"""Internal events: components announce what happened; others subscribe instead of reaching in.

A subscriber is called in the publisher's turn of the event loop, in the order of subscription.
One that raises is logged (`event_listener_failed`, with its traceback) and skipped: neither the
publisher nor the other subscribers ever see its failure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from supervisor import logs
from supervisor.keepalive import one_line

log = logs.get("gatewayd")

E = TypeVar("E")


@dataclass(frozen=True)
class BootStarted:
    boot: int
    pid: int
    spawned_at: float  # monotonic


@dataclass(frozen=True)
class GatewayReady:
    boot: int
    pid: int
    version: str
    gateway_boot_id: str | None
    ready_at: float  # monotonic


@dataclass(frozen=True)
class ShutdownAnnounced:
    boot: int
    restart_expected_ms: int | None


@dataclass(frozen=True)
class BootEnded:
    boot: int
    pid: int
    exit_kind: str
    returncode: int | None
    exited_at: float  # monotonic: when the loop learned of the exit
    needs_recovery: bool
    crash_loop: bool = False  # the restart policy's verdict after this exit
    detail: str = ""  # the classification's words ("signal SIGKILL", "exit 78, config or database refused")


@dataclass(frozen=True)
class HelperFailed:
    """A helper task of a boot failed; it is started again after a delay."""

    boot: int
    helper: str
    error: str
    failures: int


@dataclass(frozen=True)
class HangDeclared:
    """The probes gave up on a live gateway (a hang, or a boot that never became ready); it is
    being killed."""

    boot: int
    pid: int
    verdict: str


@dataclass(frozen=True)
class RecoveryFinished:
    """A boot's recovery has nothing left open (or had nothing to do); what it did is in the journal."""

    boot: int


@dataclass(frozen=True)
class ConflictFound:
    """The gateway's port is held by a process that is not gatewayd's: another manager."""

    port: int
    owner: str


@dataclass(frozen=True)
class Paused:
    """Supervision is paused (maintenance): no restarts, hang kills or recovery until it ends."""

    by: str  # "cli" or "calendar"
    until: float | None  # wall clock; None: until resumed
    reason: str = ""


@dataclass(frozen=True)
class Resumed:
    """A pause ended (resumed, or its time ran out): supervision takes over again."""

    by: str  # "cli", "calendar" or "expired"


@dataclass(frozen=True)
class StoreFailing:
    error: str


@dataclass(frozen=True)
class StoreResumed:
    was: str


@dataclass(frozen=True)
class MemoryPressureRestart:
    """gatewayd restarts the gateway because its process tree grew past the limit."""

    boot: int
    rss_bytes: int
    limit_bytes: int


Listener = Callable[[Any], None]


class EventBus:
    def __init__(self) -> None:
        self._listeners: list[tuple[type[Any] | None, Listener]] = []

    @overload
    def subscribe(self, listener: Listener, /) -> None: ...

    @overload
    def subscribe(self, kind: type[E], handler: Callable[[E], None], /) -> None: ...

    def subscribe(self, first: Any, handler: Any = None, /) -> None:
        """`subscribe(listener)`: every event. `subscribe(BootEnded, handler)`: that type's only."""
        if handler is None:
            self._listeners.append((None, first))
        else:
            self._listeners.append((first, handler))

    def publish(self, event: object) -> None:
        for kind, listener in list(self._listeners):
            if kind is not None and not isinstance(event, kind):
                continue
            try:
                listener(event)
            except Exception as exc:  # a subscriber's bug is its own: the publisher carries on
                log.error("event_listener_failed", event_type=type(event).__name__,
                          listener=getattr(listener, "__qualname__", repr(listener)), error=one_line(exc),
                          traceback=logs.traceback_text(exc))
