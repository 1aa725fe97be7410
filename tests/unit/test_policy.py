"""Exit classification and the restart tracker: table tests, `now` and `rand` passed in."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.core.model import ExitKind, Intent
from supervisor.core.policy import (
    Classification,
    ExitFacts,
    NextStep,
    RestartPolicy,
    RestartTracker,
    classify,
    describe_returncode,
    with_jitter,
)

NO_JITTER = 0.5  # rand 0.5 maps to a jitter factor of exactly 1

# ---------------------------------------------------------------------------------------------
# classify(): every Intent x representative return codes
# ---------------------------------------------------------------------------------------------

K = ExitKind
# (intent, returncode, port_held_by_other) -> (kind, counts_as_crash, needs_recovery)
CLASSIFY_TABLE: list[tuple[Intent, int | None, bool, ExitKind, bool, bool]] = [
    # nobody asked: the code (and the port owner) decides
    (Intent.NONE, 0, False, K.RESTART_REQUESTED, False, True),
    (Intent.NONE, 1, False, K.CRASH, True, True),
    (Intent.NONE, 78, False, K.CONFIG_ERROR, False, True),
    (Intent.NONE, 78, True, K.CONFLICT, False, True),
    (Intent.NONE, 79, False, K.UPDATER_PARKED, True, True),
    (Intent.NONE, -9, False, K.CRASH, True, True),
    (Intent.NONE, -15, False, K.CRASH, True, True),
    (Intent.NONE, None, False, K.VANISHED, True, True),
    # operator stop: clean only with exit 0
    (Intent.STOP, 0, False, K.CLEAN_STOP, False, False),
    (Intent.STOP, 1, False, K.STOP_UNCLEAN, False, True),
    (Intent.STOP, 78, False, K.STOP_UNCLEAN, False, True),
    (Intent.STOP, 78, True, K.STOP_UNCLEAN, False, True),
    (Intent.STOP, 79, False, K.STOP_UNCLEAN, False, True),
    (Intent.STOP, -9, False, K.STOP_UNCLEAN, False, True),
    (Intent.STOP, -15, False, K.STOP_UNCLEAN, False, True),
    (Intent.STOP, None, False, K.CLEAN_STOP, False, False),  # adopted: code unknown, no kill needed
]
for _rc, _held in [(0, False), (1, False), (78, False), (78, True), (79, False), (-9, False), (-15, False),
                   (None, False)]:
    CLASSIFY_TABLE += [
        (Intent.RESTART, _rc, _held, K.PLANNED_RESTART, False, True),
        (Intent.HANG_KILL, _rc, _held, K.HANG_KILL, True, True),
        (Intent.BOOT_TIMEOUT, _rc, _held, K.BOOT_TIMEOUT, True, True),
    ]


def _case_id(case: tuple[Intent, int | None, bool, ExitKind, bool, bool]) -> str:
    intent, rc, held, kind, _crash, _rec = case
    return f"{intent.value}-rc{rc}{'-port-held' if held else ''}-is-{kind.value}"


def test_classify_table_covers_every_intent() -> None:
    assert {c[0] for c in CLASSIFY_TABLE} == set(Intent)


@pytest.mark.parametrize("case", CLASSIFY_TABLE, ids=_case_id)
def test_classify_intent_x_returncode(case: tuple[Intent, int | None, bool, ExitKind, bool, bool]) -> None:
    intent, rc, held, kind, crash, recovery = case
    c = classify(ExitFacts(intent=intent, returncode=rc, port_held_by_other=held))
    assert (c.kind, c.counts_as_crash, c.needs_recovery) == (kind, crash, recovery)
    assert c.detail and "\n" not in c.detail


def test_classify_exit0_unasked_is_requested_restart() -> None:
    c = classify(ExitFacts(Intent.NONE, 0))
    assert c.kind is K.RESTART_REQUESTED and not c.counts_as_crash and c.needs_recovery
    assert c.detail == "exit 0 unasked"


def test_classify_exit0_after_restart_announced_says_so() -> None:
    c = classify(ExitFacts(Intent.NONE, 0, restart_expected=True))
    assert c.kind is K.RESTART_REQUESTED and c.detail == "restart announced"


def test_classify_an_adopted_gateways_exit_seen_live_is_a_crash_not_vanished() -> None:
    """Found by the chaos benchmark (real 2026.2.26, seed 4242): a gateway killed 20 s after its
    adoption was recorded as `vanished`, "died while gatewayd was not watching", though gatewayd
    saw the exit at once. Its code or signal is unknowable (not our child): the detail says so."""
    c = classify(ExitFacts(Intent.NONE, None, adopted=True))
    assert (c.kind, c.counts_as_crash, c.needs_recovery) == (K.CRASH, True, True)
    assert "cannot be read" in c.detail and "not watching" not in c.detail
    assert classify(ExitFacts(Intent.NONE, None)).kind is K.VANISHED
    assert classify(ExitFacts(Intent.STOP, None, adopted=True)).kind is K.CLEAN_STOP

def test_classify_stop_exit0_but_killed_by_us_is_unclean() -> None:
    c = classify(ExitFacts(Intent.STOP, 0, killed_by_us=True))
    assert c.kind is K.STOP_UNCLEAN and c.needs_recovery and not c.counts_as_crash


def test_classify_crash_detail_names_the_signal() -> None:
    assert "SIGKILL" in classify(ExitFacts(Intent.NONE, -9)).detail
    assert "SIGSEGV" in classify(ExitFacts(Intent.NONE, -11)).detail
    assert classify(ExitFacts(Intent.NONE, 3)).detail == "exit 3"


@pytest.mark.parametrize(("rc", "text"), [
    (None, "unknown exit"), (0, "exit 0"), (1, "exit 1"), (-9, "signal SIGKILL"), (-15, "signal SIGTERM"),
    (-250, "signal 250"),
])
def test_describe_returncode(rc: int | None, text: str) -> None:
    assert describe_returncode(rc) == text


# ---------------------------------------------------------------------------------------------
# RestartTracker
# ---------------------------------------------------------------------------------------------

CRASH = classify(ExitFacts(Intent.NONE, 1))
REQUESTED = classify(ExitFacts(Intent.NONE, 0))
CONFIG = classify(ExitFacts(Intent.NONE, 78))
CONFLICT = classify(ExitFacts(Intent.NONE, 78, port_held_by_other=True))


def test_first_crash_restarts_at_once() -> None:
    t = RestartTracker()
    d = t.on_exit(CRASH, now=100.0, rand=0.99)
    assert (d.step, d.delay_s, d.crash_loop, d.consecutive_crashes) == (NextStep.RESPAWN, 0.0, False, 1)


def test_backoff_doubles_from_second_crash_up_to_cap_without_jitter() -> None:
    # No crash loop here (threshold out of reach): only the exponential backoff shows.
    t = RestartTracker(RestartPolicy(crash_loop_crashes=1000))
    delays = [t.on_exit(CRASH, now=10.0 * i, rand=NO_JITTER).delay_s for i in range(10)]
    assert delays == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]


def test_backoff_honours_custom_initial_multiplier_and_cap() -> None:
    p = RestartPolicy(backoff_initial_s=0.5, backoff_multiplier=3.0, backoff_max_s=10.0, crash_loop_crashes=1000)
    t = RestartTracker(p)
    delays = [t.on_exit(CRASH, now=float(i), rand=NO_JITTER).delay_s for i in range(6)]
    assert delays == [0.0, 0.5, 1.5, 4.5, 10.0, 10.0]


@pytest.mark.parametrize(("rand", "low", "high"), [(0.0, 0.8, 0.8), (0.999999, 1.19999, 1.2)])
def test_backoff_jitter_bounds(rand: float, low: float, high: float) -> None:
    t = RestartTracker(RestartPolicy(crash_loop_crashes=1000))
    t.on_exit(CRASH, now=0.0, rand=rand)  # first: 0, no jitter applies
    delay = t.on_exit(CRASH, now=1.0, rand=rand).delay_s  # base 1 s
    assert low <= delay <= high
    assert delay < 1.2  # rand < 1 never reaches the upper bound


def test_first_crash_gets_no_jitter() -> None:
    for rand in (0.0, 0.5, 0.999):
        assert RestartTracker().on_exit(CRASH, now=0.0, rand=rand).delay_s == 0.0


@pytest.mark.parametrize(("delay", "jitter", "rand", "expected"), [
    (10.0, 0.2, 0.0, 8.0), (10.0, 0.2, 0.5, 10.0), (10.0, 0.0, 0.9, 10.0), (0.0, 0.2, 0.9, 0.0),
    (10.0, 1.0, 0.0, 0.0),
])
def test_with_jitter_table(delay: float, jitter: float, rand: float, expected: float) -> None:
    assert with_jitter(delay, jitter, rand) == pytest.approx(expected)


def _ready_then_die(t: RestartTracker, now: float, alive_s: float = 1.0) -> tuple[float, object]:
    """The child becomes ready at `now` and dies `alive_s` later; returns (respawn time, decision)."""
    t.on_ready(now)
    now += alive_s
    d = t.on_exit(CRASH, now=now, rand=NO_JITTER)
    return now + d.delay_s, d


def test_ready_then_die_after_1s_five_times_enters_crash_loop() -> None:
    t = RestartTracker()
    now = 0.0
    decisions = []
    for _ in range(5):
        now, d = _ready_then_die(t, now)
        decisions.append(d)
    assert [d.crash_loop for d in decisions] == [False, False, False, False, True]
    assert [d.delay_s for d in decisions[:4]] == [0.0, 1.0, 2.0, 4.0]
    # crash loop delay applies (the 8 s backoff is raised to 60 s)
    assert decisions[4].delay_s == 60.0
    assert decisions[4].consecutive_crashes == 5
    assert t.crash_loop


def test_crash_loop_delay_applies_to_every_later_crash() -> None:
    t = RestartTracker()
    now = 0.0
    for _ in range(5):
        now, _d = _ready_then_die(t, now)
    for _ in range(5):
        now, d = _ready_then_die(t, now)
        assert d.crash_loop and d.delay_s == 60.0 and d.step is NextStep.RESPAWN


def test_crash_loop_delay_with_jitter_stays_around_crash_loop_delay() -> None:
    t = RestartTracker()
    for i in range(4):
        t.on_exit(CRASH, now=float(i), rand=NO_JITTER)
    d = t.on_exit(CRASH, now=5.0, rand=0.0)
    assert d.crash_loop and d.delay_s == pytest.approx(48.0)


def test_ready_then_die_after_1s_never_resets_the_counter() -> None:
    t = RestartTracker()
    now = 0.0
    for i in range(30):
        now, d = _ready_then_die(t, now)
        assert d.consecutive_crashes == i + 1
    assert t.crash_loop


def test_crash_loop_and_counter_reset_only_after_healthy_period() -> None:
    p = RestartPolicy()
    t = RestartTracker(p)
    now = 0.0
    for _ in range(6):
        now, _d = _ready_then_die(t, now)
    assert t.crash_loop
    # ready just short of healthy_after_s: still a crash loop, counter keeps going
    now, d = _ready_then_die(t, now, alive_s=p.healthy_after_s - 1)
    assert d.crash_loop and d.consecutive_crashes == 7
    # ready for healthy_after_s, then a crash: forgotten, first crash again -> at once
    t.on_ready(now)
    now += p.healthy_after_s
    d = t.on_exit(CRASH, now=now, rand=NO_JITTER)
    assert (d.crash_loop, d.consecutive_crashes, d.delay_s) == (False, 1, 0.0)
    assert len(t.crash_times) == 1


def test_refresh_resets_only_when_healthy() -> None:
    t = RestartTracker()
    for i in range(5):
        t.on_exit(CRASH, now=float(i), rand=NO_JITTER)
    assert t.crash_loop
    t.on_ready(10.0)
    t.refresh(10.0 + t.policy.healthy_after_s - 0.001)
    assert t.crash_loop and t.consecutive == 5
    assert not t.healthy(10.0 + t.policy.healthy_after_s - 0.001)
    assert t.healthy(10.0 + t.policy.healthy_after_s)
    t.refresh(10.0 + t.policy.healthy_after_s)
    assert (t.crash_loop, t.consecutive, len(t.crash_times)) == (False, 0, 0)


def test_never_ready_is_never_healthy() -> None:
    t = RestartTracker()
    assert not t.healthy(1e9)


def test_exit_forgets_readiness_of_the_previous_boot() -> None:
    t = RestartTracker()
    t.on_ready(0.0)
    t.on_exit(CRASH, now=1.0, rand=NO_JITTER)
    # the next boot has not been ready yet: no healthy period however long we wait
    assert t.ready_since is None
    assert not t.healthy(10_000.0)


def test_requested_restart_respawns_at_once_and_does_not_count() -> None:
    t = RestartTracker()
    t.on_exit(CRASH, now=0.0, rand=NO_JITTER)
    t.on_exit(CRASH, now=1.0, rand=NO_JITTER)
    for i in range(10):
        t.on_ready(2.0 + i)  # the boot became ready, then asked for its restart
        d = t.on_exit(REQUESTED, now=2.5 + i, rand=0.99)
        assert (d.step, d.delay_s, d.consecutive_crashes, d.crash_loop) == (NextStep.RESPAWN, 0.0, 2, False)
    assert len(t.crash_times) == 2


def test_planned_restart_respawns_at_once_and_does_not_count() -> None:
    t = RestartTracker()
    d = t.on_exit(classify(ExitFacts(Intent.RESTART, 0)), now=0.0, rand=0.9)
    assert (d.step, d.delay_s, d.consecutive_crashes) == (NextStep.RESPAWN, 0.0, 0)


def test_config_error_waits_for_config_change() -> None:
    d = RestartTracker().on_exit(CONFIG, now=0.0, rand=NO_JITTER)
    assert (d.step, d.consecutive_crashes) == (NextStep.WAIT_CONFIG_CHANGE, 0)


def test_conflict_waits_for_port_free_with_retry_period() -> None:
    p = RestartPolicy(conflict_retry_s=7.0)
    d = RestartTracker(p).on_exit(CONFLICT, now=0.0, rand=NO_JITTER)
    assert (d.step, d.delay_s, d.consecutive_crashes) == (NextStep.WAIT_PORT_FREE, 7.0, 0)


@pytest.mark.parametrize("rc", [0, 1, -9, -15, None])
def test_stop_exit_means_stop(rc: int | None) -> None:
    d = RestartTracker().on_exit(classify(ExitFacts(Intent.STOP, rc)), now=0.0, rand=NO_JITTER)
    assert d.step is NextStep.STOP and d.consecutive_crashes == 0


@pytest.mark.parametrize("intent_rc", [(Intent.HANG_KILL, -9), (Intent.BOOT_TIMEOUT, -9), (Intent.NONE, 79),
                                       (Intent.NONE, None), (Intent.NONE, -11)], ids=str)
def test_crash_like_exits_count(intent_rc: tuple[Intent, int | None]) -> None:
    t = RestartTracker()
    c = classify(ExitFacts(*intent_rc))
    d1 = t.on_exit(c, now=0.0, rand=NO_JITTER)
    d2 = t.on_exit(c, now=1.0, rand=NO_JITTER)
    assert (d1.step, d1.delay_s, d1.consecutive_crashes) == (NextStep.RESPAWN, 0.0, 1)
    assert (d2.delay_s, d2.consecutive_crashes) == (1.0, 2)


def test_crashes_outside_the_window_are_forgotten() -> None:
    p = RestartPolicy()
    t = RestartTracker(p)
    spacing = p.crash_loop_window_s + 1
    for i in range(12):
        d = t.on_exit(CRASH, now=i * spacing, rand=NO_JITTER)
        assert not d.crash_loop
        assert len(t.crash_times) == 1


def test_crash_loop_needs_all_crashes_within_the_window() -> None:
    p = RestartPolicy()  # 5 crashes in 600 s
    t = RestartTracker(p)
    times = [0.0, 150.0, 300.0, 450.0, 601.0]  # the first fell out of the window by the fifth
    assert not any(t.on_exit(CRASH, now=x, rand=NO_JITTER).crash_loop for x in times)
    assert t.on_exit(CRASH, now=602.0, rand=NO_JITTER).crash_loop  # 150..602: five in the window


def test_crash_exactly_window_apart_still_counts() -> None:
    p = RestartPolicy(crash_loop_crashes=2, crash_loop_window_s=10.0)
    t = RestartTracker(p)
    t.on_exit(CRASH, now=0.0, rand=NO_JITTER)
    assert t.on_exit(CRASH, now=10.0, rand=NO_JITTER).crash_loop


_EXITS = [CRASH, REQUESTED, CONFIG, CONFLICT, classify(ExitFacts(Intent.STOP, 0)),
          classify(ExitFacts(Intent.HANG_KILL, -9)), classify(ExitFacts(Intent.RESTART, 0))]


@settings(max_examples=300, deadline=None)
@given(
    policy=st.builds(
        RestartPolicy,
        backoff_initial_s=st.floats(0.01, 100),
        backoff_max_s=st.floats(0.01, 1000),
        backoff_multiplier=st.floats(1.0, 10.0),
        jitter=st.floats(0.0, 0.99),
        crash_loop_crashes=st.integers(1, 10),
        crash_loop_window_s=st.floats(1.0, 10_000),
        crash_loop_delay_s=st.floats(0.01, 1000),
        healthy_after_s=st.floats(1.0, 1000),
        conflict_retry_s=st.floats(0.01, 100),
    ),
    steps=st.lists(
        st.tuples(st.sampled_from(range(len(_EXITS))), st.floats(0.0, 500.0), st.floats(0.0, 0.999999),
                  st.booleans()),
        min_size=1, max_size=40),
)
def test_delay_is_never_negative_and_bounded(policy: RestartPolicy,
                                             steps: list[tuple[int, float, float, bool]]) -> None:
    t = RestartTracker(policy)
    now = 0.0
    bound = max(policy.backoff_max_s, policy.crash_loop_delay_s, policy.conflict_retry_s) * (1 + policy.jitter)
    respawn_bound = max(policy.backoff_max_s, policy.crash_loop_delay_s) * (1 + policy.jitter)
    for which, gap, rand, was_ready in steps:
        if was_ready:
            t.on_ready(now)
        now += gap
        c: Classification = _EXITS[which]
        d = t.on_exit(c, now=now, rand=rand)
        assert 0.0 <= d.delay_s <= bound + 1e-9
        if d.step is NextStep.RESPAWN:
            assert d.delay_s <= respawn_bound + 1e-9
        assert d.consecutive_crashes >= 0
        if not c.counts_as_crash and (was_ready or c.kind is not K.RESTART_REQUESTED):
            assert d.step is not NextStep.RESPAWN or d.delay_s == 0.0


def test_requested_restart_loop_without_readiness_backs_off() -> None:
    t = RestartTracker()
    delays = []
    for i in range(20):  # spawned, never ready, exit 0 a second later, twenty times
        delays.append(t.on_exit(REQUESTED, now=float(i), rand=NO_JITTER).delay_s)
    assert max(delays) >= t.policy.backoff_initial_s


def test_requested_restart_without_readiness_counts_like_a_crash() -> None:
    t = RestartTracker()
    decisions = [t.on_exit(REQUESTED, now=float(i), rand=NO_JITTER) for i in range(5)]
    assert [d.consecutive_crashes for d in decisions] == [1, 2, 3, 4, 5]
    assert [d.delay_s for d in decisions[:4]] == [0.0, 1.0, 2.0, 4.0]
    assert decisions[4].crash_loop and decisions[4].delay_s == t.policy.crash_loop_delay_s
    # the classification itself is unchanged: the tracker decides
    assert REQUESTED.kind is K.RESTART_REQUESTED and not REQUESTED.counts_as_crash


def test_requested_restart_after_readiness_counts_nothing_even_after_early_ones() -> None:
    t = RestartTracker()
    t.on_exit(REQUESTED, now=0.0, rand=NO_JITTER)  # before readiness: counted
    t.on_ready(1.0)
    d = t.on_exit(REQUESTED, now=2.0, rand=NO_JITTER)  # after readiness: at once, nothing counted
    assert (d.step, d.delay_s, d.consecutive_crashes) == (NextStep.RESPAWN, 0.0, 1)
    assert len(t.crash_times) == 1


def test_planned_restart_before_readiness_still_counts_nothing() -> None:
    t = RestartTracker()
    for i in range(3):
        d = t.on_exit(classify(ExitFacts(Intent.RESTART, 0)), now=float(i), rand=NO_JITTER)
        assert (d.delay_s, d.consecutive_crashes) == (0.0, 0)


def test_classify_sigkill_with_the_oom_counter_moved_is_an_oom_kill() -> None:
    c = classify(ExitFacts(Intent.NONE, -9, oom_counters="cgroup"))
    assert (c.kind, c.counts_as_crash, c.needs_recovery) == (K.OOM_KILL, True, True)
    assert "OOM" in c.detail and "cgroup" in c.detail


@pytest.mark.parametrize("facts", [
    ExitFacts(Intent.NONE, -9),  # no counter moved: someone's kill -9
    ExitFacts(Intent.NONE, -9, oom_counters="vmstat", killed_by_us=True),  # gatewayd's own kill
    ExitFacts(Intent.NONE, -11, oom_counters="vmstat"),  # the OOM killer only sends SIGKILL
    ExitFacts(Intent.HANG_KILL, -9, oom_counters="vmstat", killed_by_us=True),
])
def test_classify_oom_needs_a_sigkill_gatewayd_did_not_send_and_a_moved_counter(facts: ExitFacts) -> None:
    assert classify(facts).kind is not K.OOM_KILL
