"""One boot as gatewayd sees it (`BootWatch`), and the clock seam every time reading goes through.

Shared by the daemon's boot loop, the RPC monitor and the status view; nothing here does I/O.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Protocol

from supervisor.core.probestate import ProbeMachine
from supervisor.gateway.child import GatewayChild
from supervisor.snapshotter import Snapshotter


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wall(self) -> float: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()


@dataclass
class BootWatch:
    """What one boot has shown so far, gathered for its exit classification."""

    boot: int
    child: GatewayChild
    machine: ProbeMachine
    shutdown_announced: bool = False
    restart_expected: bool = False
    gateway_boot_id: str | None = None
    ready: bool = False
    ready_at_ms: int = 0  # wall clock
    ready_event: asyncio.Event = field(default_factory=asyncio.Event)
    snapshotter: Snapshotter | None = None
