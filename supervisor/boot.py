"""One boot as gatewayd sees it (`BootWatch`): what its probes, its RPC monitor and its readiness
have learnt so far, read by its exit classification and the status view. Nothing here does I/O.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from supervisor.core.probestate import ProbeMachine
from supervisor.gateway.child import GatewayChild
from supervisor.snapshotter import Snapshotter


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
    oom_kills_at_start: dict[str, int] = field(default_factory=dict)  # the kernel's OOM-kill counters at spawn
