"""Internal events: components announce what happened; others subscribe instead of reaching in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


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
    ready_at: float


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


@dataclass(frozen=True)
class HelperFailed:
    """A helper task of a boot failed; it is started again after a delay."""

    boot: int
    helper: str
    error: str
    failures: int


Listener = Callable[[Any], None]


class EventBus:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def publish(self, event: object) -> None:
        for listener in list(self._listeners):
            listener(event)
