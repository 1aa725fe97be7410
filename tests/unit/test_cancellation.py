"""A cancellation is never lost. Python 3.11's `asyncio.wait_for` drops one that lands in the step
its awaitable completes and returns the result instead; a boot's helper that lost its cancellation
so kept the boot's TaskGroup open until its own next verdict (fake chaos seed 4142: an adopted
gateway's kill -9 handled 60.2 s late, the 2.x probe's refused limit). The daemon bounds its waits
with `asyncio.timeout` or `asyncio.wait`, which keep it."""

from __future__ import annotations

import ast
import asyncio
import types
from pathlib import Path
from typing import Any

import pytest

import supervisor
from supervisor.gateway.probes import RpcHealthProbe


def test_the_daemon_never_bounds_a_wait_with_wait_for() -> None:
    found = []
    for path in Path(supervisor.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr == "wait_for" and \
                    isinstance(node.value, ast.Name) and node.value.id == "asyncio":
                found.append(f"{path.name}:{node.lineno}")
            if isinstance(node, ast.ImportFrom) and node.module == "asyncio" and \
                    any(a.name == "wait_for" for a in node.names):
                found.append(f"{path.name}:{node.lineno}")
    assert found == []


async def test_a_probe_dropping_its_connection_keeps_a_cancellation_that_lands_as_the_close_ends() -> None:
    victim: list[asyncio.Task[None]] = []

    class ClosingRpc:
        async def close(self) -> None:
            victim[0].cancel()  # the boot's cancel, in the very step the close completes

    spec: Any = types.SimpleNamespace()
    probe = RpcHealthProbe(spec, 0.2)
    probe._rpc = ClosingRpc()  # type: ignore[assignment]

    async def drop_then_go_on() -> None:
        await probe.close()
        await asyncio.sleep(0)  # the next step: where the kept cancellation is delivered

    victim.append(asyncio.create_task(drop_then_go_on()))
    with pytest.raises(asyncio.CancelledError):
        await victim[0]
