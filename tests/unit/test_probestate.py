"""The probe state machine: verdicts from probe answers, progress, announcements and `now`."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.core.model import ProbeOutcome
from supervisor.core.probestate import Phase, ProbeMachine, ProbeSettings, Verdict

Out = ProbeOutcome
V = Verdict
DEFAULT = ProbeSettings()
STEP = DEFAULT.interval_s


def booting(now: float = 0.0, s: ProbeSettings = DEFAULT) -> ProbeMachine:
    return ProbeMachine.spawned(s, now)


def ready(now: float = 0.0, s: ProbeSettings = DEFAULT) -> ProbeMachine:
    m = ProbeMachine.spawned(s, now)
    assert m.observe(Out.OK, now, progress=True) is V.BECAME_READY
    return m


def feed(m: ProbeMachine, outcome: ProbeOutcome, start: float, end: float, *, progress: bool = False,
         step: float = STEP) -> list[tuple[float, Verdict]]:
    """Probe every `step` seconds in [start, end); returns (time, verdict) of every probe."""
    out = []
    t = start
    while t < end:
        out.append((t, m.observe(outcome, t, progress)))
        t += step
    return out


def verdicts(trace: list[tuple[float, Verdict]]) -> set[Verdict]:
    return {v for _t, v in trace}


# -- booting ----------------------------------------------------------------------------------

def test_booting_to_ready_on_ok() -> None:
    m = booting()
    assert m.phase is Phase.BOOTING
    assert m.observe(Out.OK, 5.0, progress=False) is V.BECAME_READY
    assert m.phase is Phase.READY
    assert m.observe(Out.OK, 7.0, progress=False) is V.NONE


@pytest.mark.parametrize("outcome", [Out.STARTING, Out.REFUSED, Out.TIMEOUT, Out.BAD, Out.DRAINING])
def test_booting_never_killed_before_boot_limit(outcome: ProbeOutcome) -> None:
    m = booting()
    trace = feed(m, outcome, 0.0, DEFAULT.boot_limit_s, progress=False)
    assert verdicts(trace) == {V.NONE}
    assert m.phase is Phase.BOOTING


@pytest.mark.parametrize("outcome", [Out.STARTING, Out.REFUSED, Out.TIMEOUT])
def test_booting_without_progress_times_out_at_boot_limit(outcome: ProbeOutcome) -> None:
    m = booting()
    assert m.observe(outcome, DEFAULT.boot_limit_s - 0.001, progress=False) is V.NONE
    assert m.observe(outcome, DEFAULT.boot_limit_s, progress=False) is V.BOOT_TIMEOUT


def test_boot_limit_counts_from_spawn_time() -> None:
    m = booting(now=1000.0)
    assert m.observe(Out.REFUSED, 1000.0 + DEFAULT.boot_limit_s - 1, progress=False) is V.NONE
    assert m.observe(Out.REFUSED, 1000.0 + DEFAULT.boot_limit_s, progress=False) is V.BOOT_TIMEOUT


def test_boot_progress_extends_the_limit() -> None:
    m = booting()
    # steady progress past the base limit: not killed
    trace = feed(m, Out.STARTING, 0.0, DEFAULT.boot_limit_s + 100, progress=True)
    assert verdicts(trace) == {V.NONE}


def test_boot_progress_extension_lasts_one_progress_window() -> None:
    m = booting()
    last = 300.0
    assert m.observe(Out.STARTING, last, progress=True) is V.NONE
    assert m.observe(Out.STARTING, last + DEFAULT.boot_progress_window_s - 1, progress=False) is V.NONE
    assert m.observe(Out.STARTING, last + DEFAULT.boot_progress_window_s + 1, progress=False) is V.BOOT_TIMEOUT


def test_boot_progress_never_extends_beyond_boot_limit_max() -> None:
    m = booting()
    trace = feed(m, Out.STARTING, 0.0, DEFAULT.boot_limit_max_s + 60, progress=True)
    timeouts = [t for t, v in trace if v is V.BOOT_TIMEOUT]
    assert timeouts and timeouts[0] == DEFAULT.boot_limit_max_s
    assert all(v is V.NONE for t, v in trace if t < DEFAULT.boot_limit_max_s)


def test_booting_ok_after_long_progressing_boot_is_ready() -> None:
    m = booting()
    feed(m, Out.STARTING, 0.0, 400.0, progress=True)
    assert m.observe(Out.OK, 400.0, progress=True) is V.BECAME_READY


# -- ready: hangs -----------------------------------------------------------------------------

def test_hang_after_n_consecutive_timeouts_without_progress() -> None:
    m = ready()
    got = [m.observe(Out.TIMEOUT, 10.0 + i * STEP, progress=False) for i in range(DEFAULT.hang_timeouts)]
    assert got == [V.NONE] * (DEFAULT.hang_timeouts - 1) + [V.HANG]


def test_bad_answers_count_like_timeouts() -> None:
    m = ready()
    got = [m.observe(Out.BAD, 10.0 + i * STEP, progress=False) for i in range(DEFAULT.hang_timeouts)]
    assert got[-1] is V.HANG


def test_no_hang_while_cpu_moves_until_hard_limit() -> None:
    m = ready()
    start = 10.0
    trace = feed(m, Out.TIMEOUT, start, start + DEFAULT.hang_hard_limit_s, progress=True)
    assert verdicts(trace) == {V.NONE}
    assert m.observe(Out.TIMEOUT, start + DEFAULT.hang_hard_limit_s, progress=True) is V.HANG


def test_ok_resets_timeouts() -> None:
    m = ready()
    assert m.observe(Out.TIMEOUT, 10.0, progress=False) is V.NONE
    assert m.observe(Out.TIMEOUT, 12.0, progress=False) is V.NONE
    assert m.observe(Out.OK, 14.0, progress=False) is V.NONE
    assert m.observe(Out.TIMEOUT, 16.0, progress=False) is V.NONE
    assert m.observe(Out.TIMEOUT, 18.0, progress=False) is V.NONE
    assert m.observe(Out.TIMEOUT, 20.0, progress=False) is V.HANG


def test_ok_resets_hard_limit_clock() -> None:
    m = ready()
    feed(m, Out.TIMEOUT, 10.0, 60.0, progress=True)
    assert m.observe(Out.OK, 60.0, progress=True) is V.NONE
    trace = feed(m, Out.TIMEOUT, 62.0, 62.0 + DEFAULT.hang_hard_limit_s, progress=True)
    assert verdicts(trace) == {V.NONE}


# -- ready: refusals --------------------------------------------------------------------------

def test_refusals_are_not_timeouts() -> None:
    m = ready()
    start = 10.0
    trace = feed(m, Out.REFUSED, start, start + DEFAULT.refused_limit_s, progress=False)
    assert verdicts(trace) == {V.NONE}  # far more than hang_timeouts probes, no hang


def test_refusals_hang_after_refused_limit() -> None:
    m = ready()
    start = 10.0
    feed(m, Out.REFUSED, start, start + DEFAULT.refused_limit_s, progress=False)
    assert m.observe(Out.REFUSED, start + DEFAULT.refused_limit_s, progress=False) is V.HANG


def test_refusal_breaks_a_timeout_streak() -> None:
    m = ready()
    m.observe(Out.TIMEOUT, 10.0, progress=False)
    m.observe(Out.TIMEOUT, 12.0, progress=False)
    assert m.observe(Out.REFUSED, 14.0, progress=False) is V.NONE
    assert m.observe(Out.TIMEOUT, 16.0, progress=False) is V.NONE


def test_listener_closed_12s_unannounced_is_not_killed() -> None:
    m = ready()
    trace = feed(m, Out.REFUSED, 100.0, 112.0, progress=False)
    assert verdicts(trace) == {V.NONE}
    assert m.observe(Out.OK, 112.0, progress=True) is V.NONE


# -- announced shutdowns and drains -----------------------------------------------------------

def test_design_table_child_closing_listener_12s_after_shutdown_event_is_not_killed() -> None:
    """DESIGN "Tests that pin the real thing": a child that closes its listener for 12 s after a
    `shutdown` event must not be killed (default settings)."""
    m = ready()
    m.shutdown_announced(100.0, restart_expected_ms=None)
    assert m.phase is Phase.DRAINING
    trace = feed(m, Out.REFUSED, 100.0, 112.0, progress=False)
    trace += feed(m, Out.TIMEOUT, 112.0, 113.0, progress=False)
    assert verdicts(trace) == {V.NONE}
    assert m.observe(Out.OK, 114.0, progress=True) is V.NONE
    assert m.phase is Phase.READY


def test_design_table_restart_in_place_after_shutdown_event_is_not_killed() -> None:
    m = ready()
    m.shutdown_announced(100.0, restart_expected_ms=1500)
    trace = feed(m, Out.REFUSED, 100.0, 112.0)
    trace += feed(m, Out.STARTING, 112.0, 130.0, progress=True)
    assert verdicts(trace) == {V.NONE}
    assert m.observe(Out.OK, 130.0, progress=True) is V.NONE
    assert m.phase is Phase.READY


@pytest.mark.parametrize("outcome", [Out.REFUSED, Out.TIMEOUT, Out.BAD])
def test_silence_after_shutdown_tolerated_for_drain_grace(outcome: ProbeOutcome) -> None:
    m = ready()
    m.shutdown_announced(100.0, restart_expected_ms=None)
    trace = feed(m, outcome, 100.0, 100.0 + DEFAULT.drain_grace_s, progress=False)
    assert verdicts(trace) == {V.NONE}


def test_timeouts_after_drain_grace_hang_at_once() -> None:
    # "grace over and still silent": the unresponsive gateway is declared hung
    m = ready()
    m.shutdown_announced(100.0, restart_expected_ms=None)
    feed(m, Out.TIMEOUT, 100.0, 100.0 + DEFAULT.drain_grace_s, progress=False)
    assert m.observe(Out.TIMEOUT, 100.0 + DEFAULT.drain_grace_s, progress=False) is V.HANG


def test_refusals_after_drain_grace_hang_after_refused_limit() -> None:
    m = ready()
    m.shutdown_announced(100.0, restart_expected_ms=None)
    end_grace = 100.0 + DEFAULT.drain_grace_s
    trace = feed(m, Out.REFUSED, 100.0, end_grace + DEFAULT.refused_limit_s, progress=False)
    assert verdicts(trace) == {V.NONE}
    assert m.observe(Out.REFUSED, end_grace + DEFAULT.refused_limit_s, progress=False) is V.HANG


@pytest.mark.parametrize("outcome", [Out.REFUSED, Out.TIMEOUT])
def test_silence_tolerated_for_restart_expected_plus_boot_limit(outcome: ProbeOutcome) -> None:
    m = ready()
    restart_ms = 5000
    m.shutdown_announced(100.0, restart_expected_ms=restart_ms)
    grace = restart_ms / 1000 + DEFAULT.boot_limit_s
    assert grace > DEFAULT.drain_grace_s
    trace = feed(m, outcome, 100.0, 100.0 + grace, progress=False)
    assert verdicts(trace) == {V.NONE}
    if outcome is Out.TIMEOUT:
        assert m.observe(outcome, 100.0 + grace, progress=False) is V.HANG


def test_short_restart_expected_still_gets_drain_grace() -> None:
    s = ProbeSettings(boot_limit_s=5.0, boot_limit_max_s=10.0, drain_grace_s=30.0)
    m = ready(s=s)
    m.shutdown_announced(100.0, restart_expected_ms=1000)
    assert verdicts(feed(m, Out.TIMEOUT, 100.0, 130.0)) == {V.NONE}


def test_second_announcement_never_shortens_the_grace() -> None:
    m = ready()
    m.shutdown_announced(100.0, restart_expected_ms=60_000)  # grace until 100 + 240
    m.shutdown_announced(101.0, restart_expected_ms=None)  # would be 131 alone
    assert verdicts(feed(m, Out.TIMEOUT, 101.0, 339.0)) == {V.NONE}


def test_draining_outcome_gives_grace() -> None:
    m = ready()
    assert m.observe(Out.DRAINING, 50.0, progress=False) is V.NONE
    assert m.phase is Phase.DRAINING
    trace = feed(m, Out.REFUSED, 52.0, 50.0 + DEFAULT.drain_grace_s)
    trace += feed(m, Out.TIMEOUT, 52.0, 50.0 + DEFAULT.drain_grace_s)
    assert verdicts(trace) == {V.NONE}


def test_draining_outcome_resets_a_timeout_streak() -> None:
    m = ready()
    m.observe(Out.TIMEOUT, 10.0, progress=False)
    m.observe(Out.TIMEOUT, 12.0, progress=False)
    m.observe(Out.DRAINING, 14.0, progress=False)
    assert m.timeouts == 0


def test_ok_after_draining_is_ready_again() -> None:
    m = ready()
    m.observe(Out.DRAINING, 50.0, progress=False)
    m.observe(Out.STARTING, 52.0, progress=False)
    assert m.phase is Phase.DRAINING  # STARTING answers, but is not ready yet
    m.observe(Out.OK, 54.0, progress=False)
    assert m.phase is Phase.READY


def test_shutdown_announced_while_booting_stays_booting() -> None:
    m = booting()
    m.shutdown_announced(10.0, restart_expected_ms=None)
    assert m.phase is Phase.BOOTING
    assert m.observe(Out.OK, 12.0, progress=False) is V.BECAME_READY


# -- sleep ------------------------------------------------------------------------------------

def test_timeouts_before_and_after_a_sleep_do_not_add_up() -> None:
    m = ready()
    assert m.observe(Out.TIMEOUT, 10.0, progress=False) is V.NONE
    assert m.observe(Out.TIMEOUT, 12.0, progress=False) is V.NONE
    m.slept(5000.0)
    after = 5000.0 + DEFAULT.interval_s * DEFAULT.hang_timeouts  # past the sleep grace
    assert m.observe(Out.TIMEOUT, after, progress=False) is V.NONE
    assert m.timeouts == 1


def test_refusals_before_and_after_a_sleep_do_not_add_up() -> None:
    m = ready()
    feed(m, Out.REFUSED, 10.0, 10.0 + DEFAULT.refused_limit_s - STEP)
    m.slept(5000.0)
    assert m.observe(Out.REFUSED, 5010.0, progress=False) is V.NONE
    assert m.observe(Out.REFUSED, 5010.0 + DEFAULT.refused_limit_s - 1, progress=False) is V.NONE


def test_hard_limit_clock_does_not_run_across_a_sleep() -> None:
    m = ready()
    m.observe(Out.TIMEOUT, 10.0, progress=True)
    m.slept(30.0)
    grace_end = 30.0 + DEFAULT.interval_s * DEFAULT.hang_timeouts
    assert m.observe(Out.TIMEOUT, grace_end + 45.0, progress=True) is V.NONE


def test_sleep_gives_grace() -> None:
    s = ProbeSettings(hang_timeouts=1)  # without a grace, one timeout is a hang
    m = ready(s=s)
    m.slept(5000.0)
    grace = s.interval_s * s.hang_timeouts
    assert m.observe(Out.TIMEOUT, 5000.0 + grace / 2, progress=False) is V.NONE
    assert m.observe(Out.TIMEOUT, 5000.0 + grace, progress=False) is V.HANG


def test_sleep_while_booting_restarts_the_boot_clock() -> None:
    m = booting()
    m.observe(Out.STARTING, 170.0, progress=False)
    m.slept(10_000.0)
    assert m.observe(Out.STARTING, 10_000.0 + DEFAULT.boot_limit_s - 1, progress=False) is V.NONE
    assert m.observe(Out.STARTING, 10_000.0 + DEFAULT.boot_limit_s, progress=False) is V.BOOT_TIMEOUT


# -- invariants -------------------------------------------------------------------------------

_NOT_OK = st.sampled_from([Out.STARTING, Out.REFUSED, Out.TIMEOUT, Out.BAD, Out.DRAINING])
_ANY = st.sampled_from(list(Out))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_NOT_OK, st.floats(0.01, 10.0), st.booleans()), max_size=60))
def test_booting_is_never_killed_before_boot_limit_and_never_hangs(
        probes: list[tuple[ProbeOutcome, float, bool]]) -> None:
    m = booting()
    now = 0.0
    for outcome, gap, progress in probes:
        now += gap
        v = m.observe(outcome, now, progress)
        assert v is not V.HANG and v is not V.BECAME_READY
        if now < DEFAULT.boot_limit_s:
            assert v is V.NONE
        if now >= DEFAULT.boot_limit_max_s:
            assert v is V.BOOT_TIMEOUT


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_ANY, st.floats(0.01, 5.0), st.booleans()), max_size=40),
       st.one_of(st.none(), st.integers(0, 120_000)))
def test_no_hang_within_the_grace_after_a_shutdown_announcement(
        probes: list[tuple[ProbeOutcome, float, bool]], restart_ms: int | None) -> None:
    m = ready()
    m.shutdown_announced(100.0, restart_ms)
    grace = DEFAULT.drain_grace_s if restart_ms is None else max(DEFAULT.drain_grace_s,
                                                                 restart_ms / 1000 + DEFAULT.boot_limit_s)
    now = 100.0
    for outcome, gap, progress in probes:
        now += gap
        if now >= 100.0 + grace:
            break
        assert m.observe(outcome, now, progress) is V.NONE


def test_regression_cpu_before_a_sigstop_does_not_hide_the_hang() -> None:
    """Found on the real 2026.9.6: the CPU used just before SIGSTOP showed as progress across the
    first timeout, which excused the whole streak until the 60 s hard limit."""
    m = ready()
    assert m.observe(Out.TIMEOUT, 10.0, progress=True) is V.NONE
    assert m.observe(Out.TIMEOUT, 12.0, progress=False) is V.NONE
    assert m.observe(Out.TIMEOUT, 14.0, progress=False) is V.NONE
    assert m.observe(Out.TIMEOUT, 16.0, progress=False) is V.HANG
