"""The memory-pressure rule: samples and `now` in, a restart decision out (core.memory_pressure);
and its shell (memory_watch) over a fake boot: one restart asked, recorded and announced."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from supervisor.boot import BootWatch
from supervisor.clock import Clock
from supervisor.core.memory_pressure import LimitBelowWorkingSet, MemoryPolicy, PressureRestart, PressureRule
from supervisor.events import BootStarted, EventBus, MemoryPressureRestart
from supervisor.memory_watch import MemoryWatch
from supervisor.store.boots import BootRecords

MB = 1024 * 1024
POLICY = MemoryPolicy(limit_bytes=1000 * MB, window_s=60.0, cooldown_s=600.0)


def feed(rule: PressureRule, samples: list[tuple[float, int]],
         ready: bool = True) -> list[PressureRestart | LimitBelowWorkingSet]:
    return [d for t, mb in samples if (d := rule.observe(mb * MB, t, ready)) is not None]


def test_transition_over_the_limit_for_the_whole_window_restarts() -> None:
    rule = PressureRule(POLICY)
    assert feed(rule, [(0, 1200), (30, 1300), (59.9, 1300)]) == []
    (d,) = feed(rule, [(60, 1400)])
    assert d == PressureRestart(1400 * MB, 1000 * MB, 60.0)


def test_transition_a_sample_under_the_limit_closes_the_window() -> None:
    rule = PressureRule(POLICY)
    assert feed(rule, [(0, 1200), (50, 900), (60, 1200), (100, 1200)]) == []  # opened again at 60
    assert len(feed(rule, [(120, 1200)])) == 1


def test_at_the_limit_is_not_over_it() -> None:
    assert feed(PressureRule(POLICY), [(t, 1000) for t in range(0, 300, 3)]) == []


def test_a_booting_gateway_is_not_judged() -> None:
    rule = PressureRule(POLICY)
    assert feed(rule, [(t, 5000) for t in range(0, 300, 3)], ready=False) == []
    assert rule.over_since is None


def test_off_by_default() -> None:
    assert not MemoryPolicy().enabled
    assert feed(PressureRule(MemoryPolicy()), [(t, 10**6) for t in range(0, 300, 3)]) == []


def test_cooldown_keeps_a_leaking_gateway_from_restart_loops() -> None:
    rule = PressureRule(POLICY)
    assert len(feed(rule, [(0, 1200), (60, 1200)])) == 1
    rule.new_boot()
    # The next boot starts under the limit (a leak, not its working set), grows over it at once:
    # no restart before the cool-down ends (600 s after 60).
    assert feed(rule, [(70, 800)]) == []
    assert feed(rule, [(t, 1200) for t in range(73, 660, 3)]) == []
    assert len(feed(rule, [(660, 1200)])) == 1


def test_a_limit_below_the_working_set_is_said_once_and_never_restarted_for() -> None:
    rule = PressureRule(POLICY)
    assert len(feed(rule, [(0, 1200), (60, 1200)])) == 1
    rule.new_boot()
    # Over the limit from its first ready sample, for a whole window: the restart did not help.
    assert feed(rule, [(t, 1200) for t in range(70, 130, 3)]) == []
    assert feed(rule, [(130, 1200)]) == [LimitBelowWorkingSet(1200 * MB, 1000 * MB)]
    assert feed(rule, [(t, 1200) for t in range(133, 5000, 3)]) == []  # long after the cool-down too
    # Once under the limit, a later climb is pressure again.
    assert feed(rule, [(5000, 900), (5003, 1200)]) == []
    assert len(feed(rule, [(5063, 1200)])) == 1


def test_the_cool_down_restored_from_the_store_outlives_gatewayd() -> None:
    rule = PressureRule(POLICY)
    rule.restore(restarted_ago_s=100.0, now=1000.0)  # 100 s ago by the wall clock
    assert feed(rule, [(t, 1200) for t in range(1000, 1500, 3)]) == []
    assert len(feed(rule, [(1500, 1200)])) == 1


def test_new_boot_opens_its_own_window() -> None:
    rule = PressureRule(MemoryPolicy(limit_bytes=MB, window_s=60.0, cooldown_s=0.0))
    feed(rule, [(0, 5)])
    rule.new_boot()
    assert feed(rule, [(50, 5)]) == []  # not 50 s over: the old boot's window is not carried
    assert len(feed(rule, [(110, 5)])) == 1


def test_window_zero_restarts_at_the_first_sample_over() -> None:
    rule = PressureRule(MemoryPolicy(limit_bytes=MB, window_s=0.0, cooldown_s=10.0))
    assert len(feed(rule, [(5, 2)])) == 1


# -- the shell ----------------------------------------------------------------------------------------


class FixedClock(Clock):
    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1e9 + self.now


@dataclass
class FakeChild:
    pid: int = 4242
    adopted: bool = False


@dataclass
class FakeRecords:
    events: list[tuple[str, int | None, dict[str, Any]]] = field(default_factory=list)
    last: float | None = None

    async def event(self, kind: str, boot: int | None, data: dict[str, Any]) -> None:
        self.events.append((kind, boot, data))

    async def last_event_at(self, kind: str) -> float | None:
        return self.last if kind == "memory-pressure-restart" else None


async def passthrough(coro: Any) -> Any:
    return await coro


def make_watch(accept: bool = True) -> tuple[MemoryWatch, BootWatch, FixedClock, list[Any], FakeRecords,
                                             list[tuple[bool, float | None]]]:
    from supervisor.core.probestate import ProbeMachine, ProbeSettings
    from supervisor.gateway.child import GatewayChild

    bus, clock, heard, records = EventBus(), FixedClock(), [], FakeRecords()
    asked: list[tuple[bool, float | None]] = []
    bus.subscribe(MemoryPressureRestart, heard.append)
    boot = BootWatch(7, cast(GatewayChild, FakeChild()), ProbeMachine.spawned(ProbeSettings(), 0.0))
    boot.ready = True

    def restart(safe: bool, timeout_s: float | None) -> bool:
        asked.append((safe, timeout_s))
        return accept

    mw = MemoryWatch(MemoryPolicy(limit_bytes=MB, window_s=5.0, cooldown_s=600.0), bus, clock, lambda: boot,
                     restart, cast(BootRecords, records), passthrough)
    return mw, boot, clock, heard, records, asked


async def test_memory_watch_asks_one_safe_restart_records_and_announces_it() -> None:
    mw, _boot, clock, heard, records, asked = make_watch()
    await mw.on_sample(4242, 2 * MB)
    clock.now += 3
    await mw.on_sample(4242, 2 * MB)
    assert asked == []
    clock.now += 3
    await mw.on_sample(4242, 3 * MB)
    assert asked == [(True, None)]  # restart --safe: drain within the stop budget
    assert heard == [MemoryPressureRestart(7, 3 * MB, MB)]
    assert records.events == [("memory-pressure-restart", 7, {"reason": "memory-pressure", "rss_bytes": 3 * MB,
                                                              "limit_bytes": MB, "over_for_s": 6.0})]
    clock.now += 30
    await mw.on_sample(4242, 3 * MB)
    assert len(asked) == 1  # cooling down


async def test_memory_watch_ignores_samples_of_another_pid_and_a_refused_restart_is_not_announced() -> None:
    mw, _boot, clock, heard, records, asked = make_watch(accept=False)
    for _ in range(5):
        await mw.on_sample(999, 5 * MB)  # a gateway already gone
        clock.now += 3
    assert asked == []
    for _ in range(4):
        await mw.on_sample(4242, 5 * MB)
        clock.now += 3
    assert asked == [(True, None)] and heard == [] and records.events == []


async def test_boot_started_on_the_bus_opens_a_new_window() -> None:
    mw, _boot, clock, _heard, _records, asked = make_watch()
    await mw.on_sample(4242, 2 * MB)
    clock.now += 4
    mw.bus.publish(BootStarted(8, 4242, clock.now))
    clock.now += 2
    await mw.on_sample(4242, 2 * MB)
    assert asked == []  # 6 s over in all, but only 0 s in this boot


async def test_no_memory_restart_while_paused_and_the_window_starts_again_after() -> None:
    """A pause means no restarts, not even for memory (review finding); over the limit during the
    pause does not count once it ends."""
    mw, _boot, clock, heard, _records, asked = make_watch()
    paused = [True]
    mw.paused = lambda: paused[0]
    for _ in range(5):
        await mw.on_sample(4242, 5 * MB)
        clock.now += 3
    assert asked == [] and heard == []
    paused[0] = False
    await mw.on_sample(4242, 5 * MB)
    assert asked == []  # the window opens now
    clock.now += 6
    await mw.on_sample(4242, 5 * MB)
    assert asked == [(True, None)]


async def test_memory_watch_takes_the_cool_down_of_the_last_gatewayd_from_the_store() -> None:
    mw, _boot, clock, _heard, records, asked = make_watch()
    records.last = clock.wall() - 60.0  # an earlier gatewayd restarted for memory a minute ago
    for _ in range(10):
        await mw.on_sample(4242, 3 * MB)
        clock.now += 3
    assert asked == []  # 600 s cool-down, 60 s of it gone
    clock.now += 540
    await mw.on_sample(4242, 3 * MB)
    assert asked == [(True, None)]
