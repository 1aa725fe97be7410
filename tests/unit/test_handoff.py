"""handoff.RestartHandoff on BootEnded: only a requested restart of a gateway with an external
supervisor runs `gateway restart-handoff consume`, and what it answered is recorded."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable
from types import SimpleNamespace
from typing import Any, cast

from supervisor.core.model import ExitKind
from supervisor.events import BootEnded, EventBus
from supervisor.gateway.launch import LaunchSpec
from supervisor.handoff import RestartHandoff
from supervisor.store.boots import BootRecords

# Stands in for the openclaw CLI: checks its arguments, prints noise and then the JSON answer.
CLI = """
import json, sys
assert sys.argv[1:] == ["gateway", "restart-handoff", "consume", "--expected-pid", "4242", "--json"], sys.argv
print("warming up")
print(json.dumps({"status": "consumed", "reason": "restart"}))
"""


class Events:
    def __init__(self) -> None:
        self.rows: list[tuple[str, int, dict[str, Any]]] = []

    async def event(self, kind: str, boot: int, data: dict[str, Any]) -> None:
        self.rows.append((kind, boot, data))


async def record(coro: Awaitable[Any]) -> Any:
    return await coro


def spec(external: bool) -> LaunchSpec:
    return cast(LaunchSpec, SimpleNamespace(argv=(sys.executable, "-c", CLI, "gateway", "run"),
                                            env={"PATH": os.environ.get("PATH", "")},
                                            capabilities=SimpleNamespace(external_supervisor=external)))


async def ended(kind: ExitKind, external: bool) -> list[tuple[str, int, dict[str, Any]]]:
    events = Events()
    handoff = RestartHandoff(cast(BootRecords, events), record, lambda: spec(external))
    bus = EventBus()
    bus.subscribe(BootEnded, handoff.on_boot_ended)
    bus.publish(BootEnded(7, 4242, str(kind), 0, 1.0, True))
    await asyncio.gather(*handoff._tasks)
    return events.rows


async def test_a_requested_restart_is_confirmed_and_recorded() -> None:
    assert await ended(ExitKind.RESTART_REQUESTED, external=True) == [("restart-handoff", 7, {"status": "consumed"})]


async def test_nothing_runs_for_another_exit_or_an_older_gateway() -> None:
    assert await ended(ExitKind.CLEAN_STOP, external=True) == []
    assert await ended(ExitKind.RESTART_REQUESTED, external=False) == []
