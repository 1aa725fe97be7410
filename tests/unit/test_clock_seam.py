"""keepalive.Helpers reads time through the clock seam: a helper that ran for its healthy period,
by the injected clock, gets its backoff reset, and a fault's `since` is the clock's wall time."""

from __future__ import annotations

from gatewayd_dev.fakeclock import FakeClock
from supervisor.keepalive import Fault, Helpers


async def test_a_helper_healthy_for_a_while_by_the_clock_starts_its_backoff_again() -> None:
    clock = FakeClock(mono=50.0)
    faults: list[Fault] = []
    helpers = Helpers(on_fault=faults.append, initial_s=0.001, max_s=0.008, healthy_s=600, clock=clock)
    runs = 0

    async def flaky() -> str:
        nonlocal runs
        runs += 1
        if runs == 3:
            clock.mono += 600  # this run lasted the healthy period (a simulated 10 minutes)
            clock.wall_s += 600
        if runs <= 3:
            raise OSError("gone")
        return "done"

    assert await helpers.keep("snapshot", flaky) == "done"
    assert [f.retry_in_s for f in faults] == [0.001, 0.002, 0.001]
    assert {f.since for f in faults} == {1_700_000_000.0}  # the streak's first failure, by the clock
