"""probing.probe_until_kill: the verdict that ends a boot, and a machine sleep seen through the
clock seam. The clock moves only when a probe answers, so nothing here sleeps."""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import pytest
from structlog.testing import capture_logs

from gatewayd_dev.fakeclock import FakeClock
from supervisor.boot import BootWatch
from supervisor.core.model import ProbeOutcome
from supervisor.core.probestate import ProbeMachine, ProbeSettings, Verdict
from supervisor.gateway.child import GatewayChild
from supervisor.probing import probe_until_kill

OK, TIMEOUT = ProbeOutcome.OK, ProbeOutcome.TIMEOUT
SETTINGS = ProbeSettings(interval_s=1.0, timeout_s=1.0, hang_timeouts=3)


class StalledChild:
    """A gateway process that uses no CPU and prints nothing."""

    pid = 4242

    def record_descendants(self) -> None:
        pass

    def progress(self) -> bool:
        return False


class OutOfAnswers(Exception):
    pass


class ScriptedProbe:
    """Answers from a script; each answer takes one probe period. A step `(outcome, slept_s)` is an
    answer during which the machine slept that long: the wall clock moves, the monotonic does not."""

    def __init__(self, clock: FakeClock, script: list[ProbeOutcome | tuple[ProbeOutcome, float]]) -> None:
        self.clock = clock
        self.steps: Iterator[ProbeOutcome | tuple[ProbeOutcome, float]] = iter(script)
        self.checks = 0

    async def check(self, booting: bool) -> ProbeOutcome:
        step = next(self.steps, None)
        if step is None:
            raise OutOfAnswers
        outcome, slept = step if isinstance(step, tuple) else (step, 0.0)
        self.checks += 1
        self.clock.mono += SETTINGS.interval_s
        self.clock.wall_s += SETTINGS.interval_s + slept
        return outcome

    async def close(self) -> None:
        pass


def boot(clock: FakeClock) -> tuple[BootWatch, list[int]]:
    watch = BootWatch(1, cast(GatewayChild, StalledChild()), ProbeMachine.spawned(SETTINGS, clock.monotonic()))
    return watch, []


async def run(clock: FakeClock, probe: ScriptedProbe, watch: BootWatch, readied: list[int]) -> Verdict:
    async def on_ready() -> None:
        watch.ready = True
        readied.append(probe.checks)

    return await probe_until_kill(watch, probe, SETTINGS, clock, on_ready)


async def test_ready_then_silent_without_progress_is_a_hang() -> None:
    clock = FakeClock()
    watch, readied = boot(clock)
    probe = ScriptedProbe(clock, [OK, OK, TIMEOUT, TIMEOUT, TIMEOUT, OK])
    assert await run(clock, probe, watch, readied) is Verdict.HANG
    assert readied == [1]  # readiness handled once, at the first answer
    assert probe.checks == 5


async def test_timeouts_are_never_counted_across_a_sleep() -> None:
    clock = FakeClock()
    watch, readied = boot(clock)
    # Two timeouts, then the machine sleeps 2 minutes: the count starts again after a grace.
    probe = ScriptedProbe(clock, [OK, TIMEOUT, TIMEOUT, (TIMEOUT, 120.0), TIMEOUT, TIMEOUT, TIMEOUT, TIMEOUT])
    with capture_logs() as logs:
        assert await run(clock, probe, watch, readied) is Verdict.HANG
    assert probe.checks == 7  # without the sleep, the third timeout in a row (the 4th answer) would be one
    jumps = [e for e in logs if e["event"] == "clock_jump"]
    assert [e["jump_s"] for e in jumps] == [120.0]


async def test_a_gateway_that_answers_after_a_sleep_is_not_killed() -> None:
    clock = FakeClock()
    watch, readied = boot(clock)
    probe = ScriptedProbe(clock, [OK, TIMEOUT, TIMEOUT, (TIMEOUT, 120.0), OK, OK, OK])
    with pytest.raises(OutOfAnswers):  # probed on past every answer: no verdict ended it
        await run(clock, probe, watch, readied)
    assert watch.machine.timeouts == 0
    assert readied == [1]


async def test_a_boot_that_never_answers_times_out_at_the_boot_limit() -> None:
    clock = FakeClock()
    watch, readied = boot(clock)
    limit = int(SETTINGS.boot_limit_s / SETTINGS.interval_s)
    probe = ScriptedProbe(clock, [TIMEOUT] * (limit + 5))
    assert await run(clock, probe, watch, readied) is Verdict.BOOT_TIMEOUT
    assert probe.checks == limit and readied == []


async def test_a_hang_while_paused_is_held_and_acted_on_once_the_pause_ends() -> None:
    clock = FakeClock()
    watch, _ = boot(clock)
    paused = [True]
    probe = ScriptedProbe(clock, [OK, OK, TIMEOUT, TIMEOUT, TIMEOUT, TIMEOUT, TIMEOUT, TIMEOUT, TIMEOUT])

    async def on_ready() -> None:
        watch.ready = True

    original = probe.check

    async def check(booting: bool) -> ProbeOutcome:
        if probe.checks == 7:  # the pause ends after the seventh answer
            paused[0] = False
        return await original(booting)

    probe.check = check  # type: ignore[method-assign]
    with capture_logs() as logs:
        verdict = await probe_until_kill(watch, probe, SETTINGS, clock, on_ready, lambda: paused[0])
    assert verdict is Verdict.HANG
    assert probe.checks == 8  # not at the fifth answer (the hang, held): at the first one after the pause
    assert [e["event"] for e in logs].count("kill_verdict_held") == 1
