"""Helpers.keep: a helper that fails is logged with its traceback, recorded for `status`, started
again with a growing delay, and forgotten once well or cancelled."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from structlog.testing import capture_logs

from supervisor.keepalive import Fault, Helpers


async def test_a_failing_helper_is_restarted_recorded_and_then_returns() -> None:
    faults: list[Fault] = []
    helpers = Helpers(on_fault=faults.append, initial_s=0.001, max_s=0.004, healthy_s=60)
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls <= 4:
            raise UnicodeEncodeError("utf-8", "x-\ud83d", 2, 3, "surrogates not allowed")
        assert helpers.faults["snapshot"].failures == 4  # visible while it is failing
        return "done"

    with capture_logs() as logs:
        assert await helpers.keep("snapshot", flaky) == "done"
    assert calls == 5
    assert [f.failures for f in faults] == [1, 2, 3, 4]
    assert [f.retry_in_s for f in faults] == [0.001, 0.002, 0.004, 0.004]  # doubling, capped
    assert faults[0].error.startswith("UnicodeEncodeError: 'utf-8' codec can't encode")
    failed = [e for e in logs if e["event"] == "helper_failed"]
    assert len(failed) == 4 and "Traceback" in failed[0]["traceback"] and failed[0]["helper"] == "snapshot"
    assert helpers.faults == {}  # returned normally: well again


async def test_a_helper_well_again_for_a_while_is_cleared_while_it_runs() -> None:
    helpers = Helpers(initial_s=0.001, healthy_s=0.05)
    healed = asyncio.Event()
    calls = 0

    async def once_then_runs() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        await asyncio.Event().wait()

    real_healed = helpers._healed

    def healed_now(name: str) -> None:
        real_healed(name)
        healed.set()

    helpers._healed = healed_now  # type: ignore[method-assign]

    task = asyncio.create_task(helpers.keep("x", once_then_runs))
    with capture_logs() as logs:
        await asyncio.wait_for(healed.wait(), 5)
    assert [e["event"] for e in logs] == ["helper_failed", "helper_recovered"]
    assert helpers.faults == {} and calls == 2  # cleared while the helper still runs
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_cancelling_a_failing_helper_forgets_its_fault() -> None:
    helpers = Helpers(initial_s=30)
    failed = asyncio.Event()

    async def boom() -> None:
        raise RuntimeError("boom")

    helpers.on_fault = lambda _f: failed.set()
    task = asyncio.create_task(helpers.keep("x", boom))
    await asyncio.wait_for(failed.wait(), 5)
    assert "x" in helpers.faults
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert helpers.faults == {}


async def test_base_exceptions_are_not_swallowed() -> None:
    async def cancelled() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await Helpers().keep("x", cancelled)


async def test_a_helper_that_swallowed_its_cancellation_and_then_fails_is_not_started_again() -> None:
    """Found by a flaky test: a boot's end waited for ever on a recovery helper that had lost its
    cancellation inside asyncio.wait_for (Python 3.11) and then failed: it was started again and
    again. A helper failing while its task is being cancelled ends, cancelled."""
    helpers = Helpers(initial_s=0.001)
    inside, calls = asyncio.Event(), 0

    async def swallows_then_fails() -> None:
        nonlocal calls
        calls += 1
        inside.set()
        with contextlib.suppress(asyncio.CancelledError):  # what the lost cancellation looks like
            await asyncio.Event().wait()
        raise RuntimeError("store refused")

    task = asyncio.create_task(helpers.keep("recovery", swallows_then_fails))
    await asyncio.wait_for(inside.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert calls == 1 and helpers.faults == {}
