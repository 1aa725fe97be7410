"""One boot's probe loop: probe the gateway at a fixed rate, feed each answer (with whether the
process made progress) to the pure `core.probestate.ProbeMachine`, and return the verdict that
calls for a kill (a hang, a boot that never became ready). When the machine says the gateway
became ready, it awaits `on_ready` (readiness.py) before probing on.

A wall clock that jumped ahead of the monotonic one means the machine slept: the failures seen
before the gap are forgotten (`ProbeMachine.slept`), never counted across it. Time is read only
through the injected `Clock`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from supervisor import logs
from supervisor.boot import BootWatch
from supervisor.clock import Clock
from supervisor.core.model import ProbeOutcome
from supervisor.core.probestate import ProbeSettings, Verdict
from supervisor.gateway.probes import Probe

log = logs.get("gatewayd")

SLEEP_JUMP_S = 5.0  # wall clock ahead of monotonic by more than this: the machine slept


async def probe_until_kill(watch: BootWatch, probe: Probe, settings: ProbeSettings, clock: Clock,
                           on_ready: Callable[[], Awaitable[None]],
                           held: Callable[[], bool] = lambda: False) -> Verdict:
    """Probe until a verdict calls for a kill; returns that verdict. While `held` (a maintenance
    pause) a kill verdict is logged and not acted on; the probes go on, and the next verdict after
    the pause is acted on."""
    machine = watch.machine
    last_mono, last_wall = clock.monotonic(), clock.wall()
    holding = False
    while True:
        began = clock.monotonic()
        outcome = await probe.check(booting=not watch.ready)
        now, wall = clock.monotonic(), clock.wall()
        if (wall - last_wall) - (now - last_mono) > SLEEP_JUMP_S:
            log.warning("clock_jump", jump_s=round((wall - last_wall) - (now - last_mono), 1))
            machine.slept(now)
        last_mono, last_wall = now, wall
        watch.child.record_descendants()
        progress = watch.child.progress()
        verdict = machine.observe(outcome, now, progress)
        if outcome is not ProbeOutcome.OK and watch.ready:
            log.debug("probe_failed", outcome=str(outcome), progress=progress, timeouts=machine.timeouts,
                      phase=str(machine.phase), verdict=str(verdict))
        if verdict is Verdict.BECAME_READY:
            await on_ready()
        elif verdict in (Verdict.HANG, Verdict.BOOT_TIMEOUT):
            if not held():
                return verdict
            if not holding:  # once per held stretch, not per probe
                log.warning("kill_verdict_held", verdict=str(verdict), reason="paused")
            holding = True
        else:
            holding = False
        # At a fixed rate: the next probe starts one period after this one started. Sleeping a
        # whole period after a probe that had already waited out its timeout made a hang
        # verdict take 10-12 s at default settings instead of 6-8 (scripts/bench/hang_latency.py).
        period = settings.interval_s if watch.ready else min(0.5, settings.interval_s)
        await asyncio.sleep(max(0.0, period - (clock.monotonic() - began)))
