"""readiness.Readiness: a ready gateway is recorded, marked ready (which starts the RPC monitor),
the state `running` recorded, and only then `GatewayReady` published; a boot that began without a
store row gets one first."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from gatewayd_dev.fakeclock import FakeClock
from supervisor.boot import BootWatch
from supervisor.core.model import SupervisionState
from supervisor.core.probestate import ProbeMachine, ProbeSettings
from supervisor.events import EventBus, GatewayReady
from supervisor.gateway.child import GatewayChild
from supervisor.gateway.launch import LaunchSpec
from supervisor.readiness import Readiness
from supervisor.store.boots import BootRecords
from supervisor.store.db import Store


class ReadyChild:
    pid = 4242
    key = (4242, 1234.5)
    adopted = False

    def __init__(self) -> None:
        self.descendants: set[int] = set()


@pytest.fixture
async def records(tmp_path: Path) -> AsyncIterator[BootRecords]:
    store = Store(tmp_path / "state" / "gatewayd.db")
    await store.open()
    try:
        yield BootRecords(store)
    finally:
        await store.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def record(coro: Awaitable[Any]) -> Any:
    return await coro


async def no_state(state: SupervisionState) -> None:
    pass


async def test_readiness_is_recorded_then_running_then_announced(records: BootRecords) -> None:
    happened: list[object] = []

    async def set_state(state: SupervisionState) -> None:
        happened.append(state)

    bus = EventBus()
    bus.subscribe(GatewayReady, happened.append)
    spec = cast(LaunchSpec, SimpleNamespace(port=free_port(), capabilities=SimpleNamespace(version="2026.9.6")))
    watch = BootWatch(0, cast(GatewayChild, ReadyChild()), ProbeMachine.spawned(ProbeSettings(), 100.0))
    watch.gateway_boot_id = "gw-1"

    await Readiness(records, record, set_state, FakeClock(mono=130.0), bus).became_ready(watch, spec)

    assert watch.boot > 0  # the boot had no row (store down at spawn): it has one now
    assert watch.ready and watch.ready_event.is_set()
    ready_at = await records.store.read(
        lambda c: c.execute("SELECT ready_at FROM boots WHERE id = ?", (watch.boot,)).fetchone()[0])
    assert watch.ready_at_ms == int(ready_at * 1000)  # the stored time, which recovery counts from
    assert happened == [SupervisionState.RUNNING, GatewayReady(watch.boot, 4242, "2026.9.6", "gw-1", 130.0)]


async def test_a_boot_with_a_row_keeps_it(records: BootRecords) -> None:
    boot = await records.started(4242, 1234.5, 1, "2026.9.6")
    watch = BootWatch(boot, cast(GatewayChild, ReadyChild()), ProbeMachine.spawned(ProbeSettings(), 100.0))
    spec = cast(LaunchSpec, SimpleNamespace(port=1, capabilities=SimpleNamespace(version="2026.9.6")))
    await Readiness(records, record, no_state, FakeClock(mono=130.0), EventBus()).ensure_boot_row(watch, spec)
    assert watch.boot == boot
    assert await records.store.read(lambda c: c.execute("SELECT count(*) FROM boots").fetchone()[0]) == 1

