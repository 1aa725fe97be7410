"""The recovery planner (supervisor/core/planner.py), exhaustively: each kind of item x each gateway
version's own behaviour x retry state. Pure functions, so every case is a row; `now`, `rand` and the
planned time come in as arguments.

The timeline every `decide_run` row uses (milliseconds, absolute):

    R        the interrupted run started (the obligation is `(job, R)`)
    I        the gateway died (R + 20 s)
    READY    the gateway answered as ready again (R + 90 s)
    D2       2.x one-shot deadline: READY + 60 s
    D9       9.x one-shot deadline: max(startupCatchupAtMs + 60 s, READY + 180 s) with the catch-up at
             READY + 150 s, so READY + 210 s
    P        the planned retry of a recurring run (R + 600 s), coalescing window W = 120 s around it

DESIGN, correction 1: neither version re-runs an interrupted recurring run, so the recurring rows are
the same on both; both re-run one-shots themselves, so gatewayd waits for that until the version's
deadline.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.core.planner import (
    VIEW_FRESH_MS,
    Decision,
    JobView,
    RunObligation,
    SessionVerb,
    Verb,
    VersionRules,
    backoff_s,
    decide_run,
    decide_session,
    oneshot_deadline_ms,
    planned_at_ms,
    runs_after_send,
)
from supervisor.core.policy import with_jitter
from supervisor.core.recovery_policy import RecoveryPolicy
from supervisor.gateway.capabilities import for_version

NO_JITTER = 0.5  # rand 0.5 maps to a jitter factor of exactly 1
JOB = "job-1"
S = 1000
T0 = 1_800_000_000_000
R = T0
I = T0 + 20 * S  # noqa: E741
READY = T0 + 90 * S
CATCHUP = READY + 150 * S  # 9.x state.startupCatchupAtMs (its catch-up ~120 s after ready, a bit later here)
D2 = READY + 60 * S
D9 = CATCHUP + 60 * S  # = READY + 210 s, above the READY + 180 s floor
P = T0 + 600 * S
W = 120 * S
RECHECK = 15 * S
MAX = 3
OLDER_RUN = R - 3_600 * S  # the slot before the interrupted one


def rules_for(legacy: bool) -> VersionRules:
    return for_version("2026.2.26" if legacy else "2026.9.6").recovery


def deadline_for(legacy: bool) -> int:
    return D2 if legacy else D9


def ver(legacy: bool) -> str:
    return "2x" if legacy else "9x"


# ---------------------------------------------------------------------------------------------
# The rules gateway/capabilities.py gives each version: what it does after a restart (DESIGN, correction 1)
# ---------------------------------------------------------------------------------------------


def test_version_rules_legacy_2x_does_not_resume_settles_at_5s_oneshot_deadline_ready_plus_60s() -> None:
    assert rules_for(True) == VersionRules(
        resumes_main_sessions=False, settle_max_s=5.0, oneshot_deadline_after_due_s=0.0, oneshot_min_after_ready_s=60.0,
        own_recovery_visible=False, session_rows_date_runs=False, history_shows_drained_events=True,
        hears_every_turn_start=True, lists_default_main_queue_only=True)


def test_version_rules_current_9x_resumes_settles_by_30s_oneshot_deadline_due_plus_60s_floor_180s() -> None:
    assert rules_for(False) == VersionRules(
        resumes_main_sessions=True, settle_max_s=30.0, oneshot_deadline_after_due_s=60.0,
        oneshot_min_after_ready_s=180.0, own_recovery_visible=True, session_rows_date_runs=True,
        wake_starts_turns=True, subscribers_hear_every_turn_start=True)


def test_default_recovery_policy_matches_the_design_defaults() -> None:
    p = RecoveryPolicy()
    assert (p.max_attempts, p.backoff_initial_s, p.backoff_max_s, p.coalesce_window_s) == (3, 30.0, 900.0, 120.0)
    assert p.jitter == 0.2 and p.retries_per_minute > 0 and p.recheck_s > 0


# ---------------------------------------------------------------------------------------------
# backoff_s(): 30 s doubling to 15 min, jittered
# ---------------------------------------------------------------------------------------------

BACKOFF_TABLE = [  # (retry number, base seconds before jitter)
    (0, 30.0),  # clamped like the first retry
    (1, 30.0),
    (2, 60.0),
    (3, 120.0),
    (4, 240.0),
    (5, 480.0),
    (6, 900.0),  # 960 capped
    (7, 900.0),
    (50, 900.0),
    (1000, 900.0),
]


@pytest.mark.parametrize(("retry", "base"), BACKOFF_TABLE, ids=[f"retry{n}-base{int(b)}s" for n, b in BACKOFF_TABLE])
def test_backoff_doubles_from_30s_capped_at_900s(retry: int, base: float) -> None:
    assert backoff_s(RecoveryPolicy(), retry, NO_JITTER) == pytest.approx(base)


@pytest.mark.parametrize(("rand", "factor"), [(0.0, 0.8), (0.25, 0.9), (0.5, 1.0), (0.75, 1.1)],
                         ids=["rand0-minus-20pct", "rand0.25-minus-10pct", "rand0.5-exact", "rand0.75-plus-10pct"])
def test_backoff_jitter_factor_from_rand(rand: float, factor: float) -> None:
    for retry, base in BACKOFF_TABLE:
        assert backoff_s(RecoveryPolicy(), retry, rand) == pytest.approx(base * factor)


def test_backoff_with_jitter_off_is_the_exact_base_whatever_rand() -> None:
    p = RecoveryPolicy(jitter=0.0)
    assert {backoff_s(p, 3, r) for r in (0.0, 0.3, 0.999)} == {120.0}


def test_backoff_custom_initial_and_cap() -> None:
    p = RecoveryPolicy(backoff_initial_s=5.0, backoff_max_s=12.0, jitter=0.0)
    assert [backoff_s(p, n, 0.0) for n in (1, 2, 3, 4)] == [5.0, 10.0, 12.0, 12.0]


@given(retry=st.integers(min_value=0, max_value=200), rand=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
       jitter=st.sampled_from([0.0, 0.1, 0.2, 0.5]))
def test_backoff_within_jitter_bounds_of_the_capped_doubling(retry: int, rand: float, jitter: float) -> None:
    p = RecoveryPolicy(jitter=jitter)
    base = min(900.0, 30.0 * 2 ** max(0, retry - 1))
    got = backoff_s(p, retry, rand)
    assert base * (1 - jitter) - 1e-9 <= got <= base * (1 + jitter) + 1e-9
    assert got <= 900.0 * (1 + jitter) + 1e-9  # the cap holds up to the jitter
    assert got == pytest.approx(with_jitter(base, jitter, rand))


@given(retry=st.integers(min_value=1, max_value=30), r1=st.floats(0.0, 0.999), r2=st.floats(0.0, 0.999))
def test_backoff_is_monotonic_in_rand_and_in_retry_number(retry: int, r1: float, r2: float) -> None:
    p = RecoveryPolicy()
    lo, hi = sorted((r1, r2))
    assert backoff_s(p, retry, lo) <= backoff_s(p, retry, hi)
    assert backoff_s(p, retry, NO_JITTER) <= backoff_s(p, retry + 1, NO_JITTER)


def test_backoff_huge_retry_number_is_still_the_cap() -> None:
    # Reachable only with `recovery.max_attempts` configured above ~1025 (the validator accepts any
    # positive int); the planner then raises instead of planning.
    assert backoff_s(RecoveryPolicy(max_attempts=5000), 1100, NO_JITTER) == pytest.approx(900.0)


# ---------------------------------------------------------------------------------------------
# planned_at_ms(): interruption + backoff(attempt), never before the settle point
# ---------------------------------------------------------------------------------------------

PLANNED_TABLE = [  # (name, attempt, settled_at, expected)
    ("attempt1-first-retry-30s-after-interruption", 1, I, I + 30 * S),
    ("attempt2-second-retry-60s-after-interruption", 2, I, I + 60 * S),
    ("attempt3-third-retry-120s-after-interruption", 3, I, I + 120 * S),
    ("attempt1-settle-point-later-wins", 1, READY + 30 * S, READY + 30 * S),
    ("attempt1-settle-point-exactly-at-due", 1, I + 30 * S, I + 30 * S),
    ("attempt3-due-later-than-settle-point", 3, READY + 5 * S, I + 120 * S),
]


@pytest.mark.parametrize(("name", "attempt", "settled", "expected"), PLANNED_TABLE, ids=[r[0] for r in PLANNED_TABLE])
def test_planned_at(name: str, attempt: int, settled: int, expected: int) -> None:
    ob = RunObligation(JOB, R, I, attempt, one_shot=False)
    assert planned_at_ms(ob, RecoveryPolicy(), NO_JITTER, settled) == expected


@given(attempt=st.integers(1, 12), gap=st.integers(0, 10_000_000), settle=st.integers(-1_000_000, 5_000_000),
       rand=st.floats(0.0, 0.999), jitter=st.sampled_from([0.0, 0.2, 0.5]))
def test_planned_at_never_before_the_settle_point_nor_before_the_backoff(attempt: int, gap: int, settle: int,
                                                                         rand: float, jitter: float) -> None:
    policy = RecoveryPolicy(jitter=jitter)
    ob = RunObligation(JOB, R, R + gap, attempt, one_shot=False)
    settled = R + gap + settle
    got = planned_at_ms(ob, policy, rand, settled)
    assert got >= settled
    assert got >= ob.interrupted_at_ms + int(backoff_s(policy, attempt, rand) * S)
    assert got == max(settled, ob.interrupted_at_ms + int(backoff_s(policy, attempt, rand) * S))


# ---------------------------------------------------------------------------------------------
# oneshot_deadline_ms(): 9.x max(startupCatchupAtMs or nextRunAtMs + 60 s, ready + 180 s); 2.x ready + 60 s
# ---------------------------------------------------------------------------------------------

DEADLINE_TABLE = [  # (name, legacy, startup_catchup_at, next_run_at, expected)
    ("9x-catchup-late-catchup-plus-60s", False, READY + 150 * S, None, READY + 210 * S),
    ("9x-catchup-early-floor-ready-plus-180s", False, READY + 30 * S, None, READY + 180 * S),
    ("9x-catchup-exactly-at-floor-minus-60s", False, READY + 120 * S, None, READY + 180 * S),
    ("9x-catchup-before-ready-floor", False, READY - 500 * S, None, READY + 180 * S),
    ("9x-catchup-wins-over-next-run", False, READY + 150 * S, READY + 900 * S, READY + 210 * S),
    ("9x-no-catchup-next-run-late-plus-60s", False, None, READY + 200 * S, READY + 260 * S),
    ("9x-no-catchup-next-run-in-past-floor", False, None, R, READY + 180 * S),
    ("9x-neither-floor-ready-plus-180s", False, None, None, READY + 180 * S),
    ("2x-ready-plus-60s", True, None, None, READY + 60 * S),
    ("2x-catchup-ignored", True, READY + 150 * S, None, READY + 60 * S),
    ("2x-next-run-ignored", True, None, READY + 900 * S, READY + 60 * S),
    ("2x-both-ignored", True, READY + 150 * S, READY + 900 * S, READY + 60 * S),
]


@pytest.mark.parametrize(("name", "legacy", "catchup", "next_run", "expected"), DEADLINE_TABLE,
                         ids=[r[0] for r in DEADLINE_TABLE])
def test_oneshot_deadline(name: str, legacy: bool, catchup: int | None, next_run: int | None, expected: int) -> None:
    view = JobView(exists=True, startup_catchup_at_ms=catchup, next_run_at_ms=next_run)
    assert oneshot_deadline_ms(view, rules_for(legacy), READY) == expected


def test_the_row_timeline_deadlines() -> None:
    view = JobView(exists=True, startup_catchup_at_ms=CATCHUP)
    assert oneshot_deadline_ms(view, rules_for(True), READY) == D2
    assert oneshot_deadline_ms(view, rules_for(False), READY) == D9
    assert READY < D2 < D9 < P - W  # the one-shot deadlines and the recurring window do not overlap


# ---------------------------------------------------------------------------------------------
# decide_run(): the table
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exp:
    verb: Verb
    attempt: int = 0
    until_ms: int = 0
    run_at_ms: int = 0
    reason_has: str = ""


def SEND(attempt: int) -> Exp:
    return Exp(Verb.SEND, attempt=attempt)


def ADOPT(run_at: int) -> Exp:
    return Exp(Verb.ADOPT, run_at_ms=run_at)


def WAIT(until: int) -> Exp:
    return Exp(Verb.WAIT, until_ms=until)


def GIVE_UP(why: str) -> Exp:
    return Exp(Verb.GIVE_UP, reason_has=why)


DONE = Exp(Verb.DONE, reason_has="gone")


@dataclass(frozen=True)
class RunCase:
    name: str
    one_shot: bool
    legacy: bool
    view: JobView
    attempt: int
    now: int
    expect: Exp
    window_s: float = 120.0
    max_attempts: int = MAX
    planned: int = P
    read: int | None = None  # when the job's state was read (None: just now)

    @property
    def id(self) -> str:
        return f"{'oneshot' if self.one_shot else 'recurring'}-{ver(self.legacy)}-{self.name}"


def view(*, exists: bool = True, enabled: bool = True, running: int | None = None, seen: tuple[int, ...] = (),
         catchup: int | None = CATCHUP, next_run: int | None = None, cut: tuple[int, ...] = ()) -> JobView:
    """Runs seen ended normally, except the interrupted run itself and those `cut` by a crash."""
    return JobView(exists=exists, enabled=enabled, running_at_ms=running, run_starts_ms=seen,
                   startup_catchup_at_ms=catchup, next_run_at_ms=next_run,
                   finished_ms=tuple(t for t in seen if t != R and t not in cut))


def _recurring_rows(legacy: bool) -> list[RunCase]:
    def c(name: str, v: JobView, attempt: int, now: int, expect: Exp, **kw: float | int) -> RunCase:
        return RunCase(name, False, legacy, v, attempt, now, expect, **kw)  # type: ignore[arg-type]

    after = P + W + 60 * S  # past the planned time and the whole window
    return [
        # deleted: given up, whatever else is true
        c("deleted-now-before-planned-attempt1-give-up", view(exists=False), 1, P - 1, GIVE_UP("deleted")),
        c("deleted-now-after-planned-attempt1-give-up", view(exists=False), 1, after, GIVE_UP("deleted")),
        c("deleted-attempt-max-give-up", view(exists=False), MAX, after, GIVE_UP("deleted")),
        c("deleted-with-run-seen-in-window-give-up", view(exists=False, seen=(P,)), 1, after, GIVE_UP("deleted")),
        c("deleted-and-disabled-give-up-as-deleted", view(exists=False, enabled=False), 1, after, GIVE_UP("deleted")),
        # disabled (after the crash, by the user or the gateway's failure alerts): given up
        c("disabled-now-before-planned-give-up", view(enabled=False), 1, P - 1, GIVE_UP("disabled")),
        c("disabled-now-after-planned-attempt1-give-up", view(enabled=False), 1, after, GIVE_UP("disabled")),
        c("disabled-attempt-max-minus-1-give-up", view(enabled=False), MAX - 1, after, GIVE_UP("disabled")),
        c("disabled-with-run-seen-in-window-give-up", view(enabled=False, seen=(P,)), 1, after, GIVE_UP("disabled")),
        c("disabled-newer-run-in-progress-give-up", view(enabled=False, running=P), 1, P + 1, GIVE_UP("disabled")),
        # the interrupted run itself still marked running (9.x before its startup repair): look again
        c("interrupted-run-still-marked-running-now-right-after-ready-wait-recheck", view(running=R), 1, READY,
          WAIT(READY + RECHECK)),
        c("interrupted-run-still-marked-running-now-after-planned-wait-recheck", view(running=R), 1, after,
          WAIT(after + RECHECK)),
        c("interrupted-run-still-marked-running-attempt-max-wait-recheck", view(running=R), MAX, after,
          WAIT(after + RECHECK)),
        c("interrupted-run-still-marked-running-with-run-seen-in-window-wait", view(running=R, seen=(P,)), 1, after,
          WAIT(after + RECHECK)),
        # a newer run in progress: inside the window it is the retry, outside it means wait
        c("newer-run-in-progress-inside-window-before-planned-adopt", view(running=P - 30 * S), 1, P - 20 * S,
          ADOPT(P - 30 * S)),
        c("newer-run-in-progress-inside-window-after-planned-adopt", view(running=P + 30 * S), 1, P + 40 * S,
          ADOPT(P + 30 * S)),
        c("newer-run-in-progress-at-window-low-edge-adopt", view(running=P - W), 1, P - W + 5 * S, ADOPT(P - W)),
        c("newer-run-in-progress-at-window-high-edge-adopt", view(running=P + W), 1, P + W + 5 * S, ADOPT(P + W)),
        c("newer-run-in-progress-1ms-before-window-wait-recheck", view(running=P - W - 1), 1, P - W + 5 * S,
          WAIT(P - W + 5 * S + RECHECK)),
        c("newer-run-in-progress-1ms-after-window-wait-recheck", view(running=P + W + 1), 1, P + W + 5 * S,
          WAIT(P + W + 5 * S + RECHECK)),
        c("newer-run-in-progress-right-after-ready-outside-window-wait-recheck", view(running=READY + S), 1,
          READY + 2 * S, WAIT(READY + 2 * S + RECHECK)),
        c("newer-run-in-progress-inside-window-attempt-max-adopt", view(running=P), MAX, P + S, ADOPT(P)),
        c("newer-run-in-progress-inside-window-also-in-run-log-adopt", view(running=P, seen=(P,)), 1, P + S,
          ADOPT(P)),
        c("newer-run-in-progress-inside-window-coalescing-off-wait-recheck", view(running=P), 1, P + S,
          WAIT(P + S + RECHECK), window_s=0.0),
        # nothing running, no run since the interruption: the planned retry
        c("no-run-seen-now-right-after-ready-wait-planned", view(), 1, READY, WAIT(P)),
        c("no-run-seen-now-1ms-before-planned-wait-planned", view(), 1, P - 1, WAIT(P)),
        c("no-run-seen-now-at-planned-attempt1-send-attempt2", view(), 1, P, SEND(2)),
        c("no-run-seen-now-after-planned-attempt1-send-attempt2", view(), 1, after, SEND(2)),
        # a send is decided only on a fresh view of the job: a run begun since may stand for it
        c("send-on-a-view-older-than-fresh-refresh", view(), 1, after, Exp(Verb.REFRESH),
          read=after - VIEW_FRESH_MS - 1),
        c("send-on-a-view-just-fresh-send", view(), 1, after, SEND(2), read=after - VIEW_FRESH_MS),
        c("adopt-on-an-old-view-adopt", view(running=P), 1, after, ADOPT(P), read=after - 60 * S),
        c("no-run-seen-now-at-planned-attempt-max-minus-1-send-attempt-max", view(), MAX - 1, P, SEND(MAX)),
        c("no-run-seen-now-at-planned-attempt-max-give-up-exhausted", view(), MAX, P, GIVE_UP("exhausted")),
        c("no-run-seen-now-before-planned-attempt-max-wait-planned", view(), MAX, P - 1, WAIT(P)),
        c("no-run-seen-attempt-above-max-policy-lowered-give-up-exhausted", view(), 5, after, GIVE_UP("exhausted")),
        c("no-run-seen-max-attempts-1-no-retry-give-up", view(), 1, P, GIVE_UP("exhausted"), max_attempts=1),
        c("no-run-seen-max-attempts-5-attempt3-send-attempt4", view(), 3, P, SEND(4), max_attempts=5),
        c("no-run-seen-planned-before-ready-now-at-ready-send", view(), 1, READY, SEND(2), planned=READY - S),
        c("one-shot-deadline-irrelevant-now-past-deadlines-before-planned-wait", view(), 1, D9 + 1, WAIT(P)),
        # runs seen that are not after the interrupted run: not a retry
        c("only-the-interrupted-run-itself-in-log-now-at-planned-send", view(seen=(R,)), 1, P, SEND(2)),
        c("only-an-older-run-in-log-now-at-planned-send", view(seen=(OLDER_RUN,)), 1, P, SEND(2)),
        c("interrupted-and-older-runs-duplicated-in-log-send", view(seen=(R, R, OLDER_RUN, R)), 1, P, SEND(2)),
        # runs seen after the interruption: adopted only inside the coalescing window
        c("run-seen-inside-window-now-before-planned-adopt", view(seen=(P - 30 * S,)), 1, P - 20 * S,
          ADOPT(P - 30 * S)),
        c("run-seen-inside-window-after-planned-adopt", view(seen=(P + 30 * S,)), 1, P + 40 * S, ADOPT(P + 30 * S)),
        c("run-seen-exactly-at-planned-adopt", view(seen=(P,)), 1, P, ADOPT(P)),
        c("run-seen-at-window-low-edge-adopt", view(seen=(P - W,)), 1, P - W, ADOPT(P - W)),
        c("run-seen-at-window-high-edge-adopt", view(seen=(P + W,)), 1, P + W, ADOPT(P + W)),
        c("run-seen-1ms-before-window-now-before-planned-wait-planned", view(seen=(P - W - 1,)), 1, P - W,
          WAIT(P)),
        c("run-seen-1ms-before-window-now-at-planned-send", view(seen=(P - W - 1,)), 1, P, SEND(2)),
        c("run-seen-1ms-after-window-send", view(seen=(P + W + 1,)), 1, P + W + 1, SEND(2)),
        c("run-seen-1ms-after-window-attempt-max-give-up-exhausted", view(seen=(P + W + 1,)), MAX, P + W + 1,
          GIVE_UP("exhausted")),
        c("run-seen-right-after-ready-far-before-window-send", view(seen=(READY + S,)), 1, P, SEND(2)),
        c("run-seen-inside-window-attempt-max-adopt", view(seen=(P,)), MAX, P, ADOPT(P)),
        c("run-seen-inside-window-attempt-above-max-adopt", view(seen=(P,)), 5, P, ADOPT(P)),
        c("run-seen-inside-window-coalescing-off-now-at-planned-send", view(seen=(P,)), 1, P, SEND(2), window_s=0.0),
        c("run-seen-inside-window-coalescing-off-now-before-planned-wait", view(seen=(P - 30 * S,)), 1, P - 20 * S,
          WAIT(P), window_s=0.0),
        c("run-seen-inside-window-coalescing-sub-ms-rounds-to-off-send", view(seen=(P,)), 1, P, SEND(2),
          window_s=0.0004),
        c("run-seen-inside-1s-window-adopt", view(seen=(P + S,)), 1, P + S, ADOPT(P + S), window_s=1.0),
        c("run-seen-outside-1s-window-send", view(seen=(P + S + 1,)), 1, P + S + 1, SEND(2), window_s=1.0),
        # duplicates and several runs
        c("duplicate-run-starts-inside-window-adopt-once", view(seen=(P - 30 * S, P - 30 * S, R, R)), 1, P,
          ADOPT(P - 30 * S)),
        c("two-runs-inside-window-unsorted-earliest-adopted", view(seen=(P + 10 * S, P - 10 * S)), 1, P + 20 * S,
          ADOPT(P - 10 * S)),
        c("runs-outside-then-inside-window-inside-adopted", view(seen=(READY + S, P + 5 * S)), 1, P + 6 * S,
          ADOPT(P + 5 * S)),
        c("runs-outside-window-on-both-sides-send", view(seen=(P - W - 1, P + W + 1, R)), 1, P + W + 1, SEND(2)),
        # a run cut by a crash did not do the work: never adopted as the retry
        c("cut-run-inside-window-now-at-planned-send", view(seen=(P,), cut=(P,)), 1, P, SEND(2)),
        c("cut-run-inside-window-now-before-planned-wait", view(seen=(P - 30 * S,), cut=(P - 30 * S,)), 1,
          P - 20 * S, WAIT(P)),
        c("cut-then-finished-run-inside-window-finished-adopted", view(seen=(P - 30 * S, P + 5 * S),
                                                                       cut=(P - 30 * S,)), 1, P + 6 * S,
          ADOPT(P + 5 * S)),
        # found by the chaos benchmark: the retry (attempt 2) was cut 4 ms after its start, and then
        # adopted as its own retry
        c("regression-retry-cut-just-after-start-send-attempt3", view(seen=(P,), cut=(P,)), 2, P + S, SEND(3)),
    ]


def _oneshot_rows(legacy: bool) -> list[RunCase]:
    d = deadline_for(legacy)
    rerun = READY - 5 * S if legacy else CATCHUP  # 2.x re-runs before it answers ready; 9.x at its catch-up

    def c(name: str, v: JobView, attempt: int, now: int, expect: Exp, **kw: float | int) -> RunCase:
        return RunCase(name, True, legacy, v, attempt, now, expect, **kw)  # type: ignore[arg-type]

    late = max(rerun, d) + 60 * S
    look = d if legacy else CATCHUP + 2 * S
    return [
        # the gateway re-ran it itself: that run is the retry, whatever else is true
        c("gateway-rerun-seen-adopt", view(seen=(rerun,)), 1, late, ADOPT(rerun)),
        c("gateway-rerun-seen-now-before-deadline-adopt", view(seen=(rerun,)), 1, max(rerun, d - 1), ADOPT(rerun)),
        c("gateway-rerun-seen-job-then-deleted-adopt", view(exists=False, seen=(rerun,)), 1, late, ADOPT(rerun)),
        c("gateway-rerun-seen-job-disabled-after-its-run-adopt", view(enabled=False, seen=(rerun,)), 1, late,
          ADOPT(rerun)),
        c("gateway-rerun-seen-attempt-max-adopt", view(seen=(rerun,)), MAX, late, ADOPT(rerun)),
        c("gateway-rerun-seen-far-outside-coalescing-window-adopt", view(seen=(P + 10 * W,)), 1, P + 11 * W,
          ADOPT(P + 10 * W)),
        c("gateway-rerun-seen-coalescing-off-adopt", view(seen=(rerun,)), 1, late, ADOPT(rerun), window_s=0.0),
        c("gateway-rerun-seen-with-interrupted-run-in-log-adopt", view(seen=(R, rerun)), 1, late, ADOPT(rerun)),
        c("duplicate-run-starts-adopt-once", view(seen=(rerun, R, rerun, OLDER_RUN)), 1, late, ADOPT(rerun)),
        c("two-reruns-unsorted-earliest-adopted", view(seen=(rerun + 5 * S, rerun)), 1, late, ADOPT(rerun)),
        c("gateway-rerun-in-progress-adopt", view(running=rerun), 1, late, ADOPT(rerun)),
        c("gateway-rerun-in-progress-coalescing-off-adopt", view(running=rerun), 1, late, ADOPT(rerun), window_s=0.0),
        c("gateway-rerun-in-progress-attempt-max-adopt", view(running=rerun), MAX, late, ADOPT(rerun)),
        c("gateway-rerun-in-progress-and-in-log-adopt", view(running=rerun, seen=(rerun,)), 1, late, ADOPT(rerun)),
        # gone (deleteAfterRun, or removed) with no run seen: nothing left to do
        c("job-gone-no-rerun-now-before-deadline-done", view(exists=False), 1, READY, DONE),
        c("job-gone-no-rerun-now-after-deadline-done", view(exists=False), 1, late, DONE),
        c("job-gone-no-rerun-attempt-max-done", view(exists=False), MAX, late, DONE),
        c("job-gone-and-disabled-done", view(exists=False, enabled=False), 1, late, DONE),
        c("job-gone-only-interrupted-run-in-log-done", view(exists=False, seen=(R,)), 1, late, DONE),
        # disabled with no run seen: given up
        c("disabled-no-rerun-now-before-deadline-give-up", view(enabled=False), 1, READY, GIVE_UP("disabled")),
        c("disabled-no-rerun-now-after-deadline-give-up", view(enabled=False), 1, late, GIVE_UP("disabled")),
        c("disabled-no-rerun-attempt-max-give-up-disabled", view(enabled=False), MAX, late, GIVE_UP("disabled")),
        # the interrupted run itself still marked running (before the gateway's repair): look again
        c("interrupted-run-still-marked-running-now-right-after-ready-wait-recheck", view(running=R), 1, READY,
          WAIT(READY + RECHECK)),
        c("interrupted-run-still-marked-running-now-after-deadline-wait-recheck", view(running=R), 1, late,
          WAIT(late + RECHECK)),
        c("interrupted-run-still-marked-running-attempt-max-wait-recheck", view(running=R), MAX, late,
          WAIT(late + RECHECK)),
        # no run seen: wait for the gateway until the version's deadline, then re-run
        # (9.x: looked at again just after its own catch-up time first, then at the deadline)
        c("no-rerun-now-right-after-ready-wait-catchup-then-deadline", view(), 1, READY, WAIT(look)),
        c("no-rerun-now-just-after-the-catchup-look-wait-deadline", view(), 1, min(CATCHUP + 2 * S, d - 1), WAIT(d)),
        c("no-rerun-now-1ms-before-deadline-wait-deadline", view(), 1, d - 1, WAIT(d)),
        c("only-interrupted-run-in-log-now-before-deadline-wait-deadline", view(seen=(R,)), 1, d - 1, WAIT(d)),
        c("only-older-run-in-log-now-right-after-ready-wait-catchup-then-deadline", view(seen=(OLDER_RUN,)), 1,
          READY, WAIT(look)),
        c("no-rerun-now-at-deadline-before-planned-attempt1-send-attempt2", view(), 1, d, SEND(2)),
        c("no-rerun-now-after-deadline-attempt1-send-attempt2", view(), 1, late, SEND(2)),
        c("send-on-a-view-older-than-fresh-refresh", view(), 1, late, Exp(Verb.REFRESH), read=late - VIEW_FRESH_MS - 1),
        c("no-rerun-now-at-deadline-attempt-max-minus-1-send-attempt-max", view(), MAX - 1, d, SEND(MAX)),
        c("no-rerun-now-at-deadline-attempt-max-give-up-exhausted", view(), MAX, d, GIVE_UP("exhausted")),
        c("no-rerun-now-before-deadline-attempt-max-wait-deadline", view(), MAX, d - 1, WAIT(d)),
        c("no-rerun-attempt-above-max-give-up-exhausted", view(), 5, late, GIVE_UP("exhausted")),
        c("only-interrupted-run-in-log-now-at-deadline-send", view(seen=(R, R)), 1, d, SEND(2)),
        c("planned-time-passed-but-deadline-not-wait-deadline", view(), 1, d - 1, WAIT(d), planned=READY),
        c("coalescing-off-no-rerun-now-at-deadline-send", view(), 1, d, SEND(2), window_s=0.0),
    ]


def _deadline_rows() -> list[RunCase]:
    def c(name: str, legacy: bool, v: JobView, now: int, expect: Exp) -> RunCase:
        return RunCase(name, True, legacy, v, 1, now, expect)

    floor9 = READY + 180 * S
    return [
        c("catchup-late-1ms-before-catchup-plus-60s-wait", False, view(catchup=CATCHUP), CATCHUP + 60 * S - 1,
          WAIT(CATCHUP + 60 * S)),
        c("catchup-late-at-catchup-plus-60s-send", False, view(catchup=CATCHUP), CATCHUP + 60 * S, SEND(2)),
        c("catchup-early-past-catchup-plus-60s-before-ready-plus-180s-wait", False, view(catchup=READY + 30 * S),
          READY + 179 * S, WAIT(floor9)),
        c("catchup-early-at-ready-plus-180s-send", False, view(catchup=READY + 30 * S), floor9, SEND(2)),
        c("no-catchup-next-run-late-wait-next-run-plus-60s", False, view(catchup=None, next_run=READY + 200 * S),
          floor9, WAIT(READY + 260 * S)),
        c("no-catchup-next-run-late-at-next-run-plus-60s-send", False,
          view(catchup=None, next_run=READY + 200 * S), READY + 260 * S, SEND(2)),
        c("no-catchup-no-next-run-wait-ready-plus-180s", False, view(catchup=None), floor9 - 1, WAIT(floor9)),
        c("no-catchup-no-next-run-at-ready-plus-180s-send", False, view(catchup=None), floor9, SEND(2)),
        c("2x-rule-at-ready-plus-60s-before-9x-floor-send", True, view(catchup=None), READY + 60 * S, SEND(2)),
        c("catchup-and-next-run-ignored-at-ready-plus-60s-send", True,
          view(catchup=READY + 900 * S, next_run=READY + 900 * S), READY + 60 * S, SEND(2)),
        c("1ms-before-ready-plus-60s-wait", True, view(catchup=READY + 900 * S), READY + 60 * S - 1,
          WAIT(READY + 60 * S)),
    ]


RUN_CASES: list[RunCase] = [
    *_recurring_rows(True), *_recurring_rows(False), *_oneshot_rows(True), *_oneshot_rows(False), *_deadline_rows()]


def _decide(case: RunCase) -> Decision:
    policy = RecoveryPolicy(coalesce_window_s=case.window_s, max_attempts=case.max_attempts)
    ob = RunObligation(JOB, R, I, case.attempt, case.one_shot)
    return decide_run(ob, case.view, policy, rules_for(case.legacy), now_ms=case.now, ready_at_ms=READY,
                      planned_ms=case.planned, view_read_ms=case.read)


def test_run_case_ids_are_unique() -> None:
    ids = [c.id for c in RUN_CASES]
    assert len(ids) == len(set(ids))


def test_run_table_covers_every_verb_for_each_kind_and_version() -> None:
    for one_shot, legacy in itertools.product((False, True), (False, True)):
        verbs = {c.expect.verb for c in RUN_CASES if c.one_shot == one_shot and c.legacy == legacy}
        expected = set(Verb) if one_shot else set(Verb) - {Verb.DONE}
        assert verbs == expected, (one_shot, legacy)


@pytest.mark.parametrize("case", RUN_CASES, ids=lambda c: c.id)
def test_decide_run(case: RunCase) -> None:
    d = _decide(case)
    e = case.expect
    assert (d.verb, d.attempt, d.until_ms, d.run_at_ms) == (e.verb, e.attempt, e.until_ms, e.run_at_ms)
    assert e.reason_has in d.reason and d.reason
    assert not _violations(RunObligation(JOB, R, I, case.attempt, case.one_shot), case.view,
                           RecoveryPolicy(coalesce_window_s=case.window_s, max_attempts=case.max_attempts),
                           rules_for(case.legacy), case.now, READY, case.planned, d)


@pytest.mark.parametrize("case", [c for c in RUN_CASES if not c.one_shot and c.legacy], ids=lambda c: c.id)
def test_recurring_is_decided_the_same_on_both_versions(case: RunCase) -> None:
    """Correction 1: neither version re-runs an interrupted recurring run; the version does not matter."""
    twin = RunCase(case.name, False, False, case.view, case.attempt, case.now, case.expect, case.window_s,
                   case.max_attempts, case.planned, case.read)
    assert _decide(case) == _decide(twin)


def test_duplicate_obligations_get_the_same_decision() -> None:
    """The planner is pure: the same obligation decided twice (two boots, a rescan) decides the same."""
    for case in RUN_CASES:
        assert _decide(case) == _decide(case), case.id


# ---------------------------------------------------------------------------------------------
# The invariants, checked on every row above, on the full product grid, and on random inputs
# ---------------------------------------------------------------------------------------------


def _design_deadline(view: JobView, rules: VersionRules, ready: int) -> int:
    """DESIGN, correction 1, written out independently of oneshot_deadline_ms."""
    if not rules.resumes_main_sessions:  # 2.x
        return ready + 60 * S
    due = view.startup_catchup_at_ms if view.startup_catchup_at_ms is not None else view.next_run_at_ms
    return max(ready + 180 * S, due + 60 * S) if due is not None else ready + 180 * S


def _violations(ob: RunObligation, view: JobView, policy: RecoveryPolicy, rules: VersionRules, now: int, ready: int,
                planned: int, d: Decision) -> list[str]:
    bad: list[str] = []
    window = int(policy.coalesce_window_s * S)
    starts = [*view.run_starts_ms, *([view.running_at_ms] if view.running_at_ms is not None else [])]
    done_or_running = [*view.finished_ms, *([view.running_at_ms] if view.running_at_ms is not None else [])]
    if not d.reason:
        bad.append("no reason")
    if d.verb is Verb.SEND:
        # (1) never SEND when an adoptable run exists (recurring) or any later run exists (one-shot)
        if ob.one_shot and any(t > ob.running_at_ms for t in starts):
            bad.append("(1) one-shot SEND although a later run exists")
        if not ob.one_shot and window > 0 and any(
                t > ob.interrupted_at_ms and abs(t - planned) <= window for t in done_or_running):
            bad.append("(1) recurring SEND although a run after the interruption is in the coalescing window")
        if view.running_at_ms is not None:
            bad.append("(1) SEND while a run is in progress")
        # (2) never before the planned time / the one-shot deadline
        if not ob.one_shot and now < planned:
            bad.append("(2) SEND before the planned time")
        if ob.one_shot and now < _design_deadline(view, rules, ready):
            bad.append("(2) SEND before the one-shot deadline")
        # (3) never when exhausted; (4) never for a deleted or disabled job
        if ob.attempt >= policy.max_attempts:
            bad.append("(3) SEND with attempts exhausted")
        if not view.exists or not view.enabled:
            bad.append("(4) SEND for a deleted or disabled job")
        # (5) the attempt number
        if d.attempt != ob.attempt + 1 or d.attempt > policy.max_attempts:
            bad.append(f"(5) SEND attempt {d.attempt} for obligation attempt {ob.attempt}")
    elif d.attempt != 0:
        bad.append("only SEND carries an attempt")
    if d.verb is Verb.WAIT:
        if d.until_ms <= now:  # (6)
            bad.append(f"(6) WAIT until {d.until_ms} <= now {now}")
    elif d.until_ms != 0:
        bad.append("only WAIT carries until_ms")
    if d.verb is Verb.ADOPT:
        if d.run_at_ms <= ob.running_at_ms or d.run_at_ms not in starts:
            bad.append("ADOPT of a run that is not a later run seen")
        if not ob.one_shot and not (window > 0 and abs(d.run_at_ms - planned) <= window):
            bad.append("recurring ADOPT outside the coalescing window")
        if not ob.one_shot and d.run_at_ms not in done_or_running:
            bad.append("recurring ADOPT of a run cut by a crash")
    elif d.run_at_ms != 0:
        bad.append("only ADOPT carries run_at_ms")
    if d.verb is Verb.DONE and (not ob.one_shot or view.exists) and ob.running_at_ms not in view.finished_ms:
        bad.append("DONE for a recurring job or a one-shot that still exists, whose run did not end")
    if d.verb is Verb.GIVE_UP and not (
            (not ob.one_shot and not view.exists) or not view.enabled or ob.attempt >= policy.max_attempts):
        bad.append("GIVE_UP for an existing, enabled job with attempts left")
    return bad


def _expected_by_design(one_shot: bool, legacy: bool, exists: bool, enabled: bool, running: int | None,
                        seen: tuple[int, ...], attempt: int, now: int, window_s: float,
                        cut: tuple[int, ...] = ()) -> Exp:
    """The precedence DESIGN describes ("Never do work twice", correction 1), as a reference model."""
    later = sorted(t for t in seen if t > R)
    window = int(window_s * S)

    def adoptable(t: int) -> bool:
        return window > 0 and abs(t - P) <= window

    if one_shot and later:
        return ADOPT(later[0])  # the gateway re-ran it itself
    if one_shot and not exists:
        return DONE  # ran and deleted, or removed
    if not exists:
        return GIVE_UP("deleted")
    if not enabled:
        return GIVE_UP("disabled")
    if running is not None:
        if running > R and (one_shot or adoptable(running)):
            return ADOPT(running)
        return WAIT(now + RECHECK)  # a run is in progress: decide again
    in_window = [t for t in later if adoptable(t) and t not in cut]  # a cut run did not do the work
    if not one_shot and in_window:
        return ADOPT(in_window[0])
    due = deadline_for(legacy) if one_shot else P
    if one_shot and not legacy and now < CATCHUP + 2 * S:
        return WAIT(CATCHUP + 2 * S)  # look again just after 9.x's own catch-up, not at the deadline
    if now < due:
        return WAIT(due)
    if attempt >= MAX:
        return GIVE_UP("exhausted")
    return SEND(attempt + 1)


RUNNING_NOW = {  # name -> runningAtMs the gateway reports now
    "nothing-running": None,
    "interrupted-run-still-marked": R,
    "newer-run-inside-window": P - 30 * S,
    "newer-run-1ms-before-window": P - W - 1,
    "newer-run-1ms-after-window": P + W + 1,
    "newer-run-after-ready": READY + S,
}
SEEN = {  # name -> run starts seen (run log and snapshots)
    "none": (),
    "interrupted-run-itself": (R,),
    "older-run": (OLDER_RUN,),
    "after-ready-far-before-window": (READY + S,),
    "1ms-before-window": (P - W - 1,),
    "at-window-low-edge": (P - W,),
    "inside-before-planned": (P - 30 * S,),
    "at-planned": (P,),
    "inside-after-planned": (P + 30 * S,),
    "at-window-high-edge": (P + W,),
    "1ms-after-window": (P + W + 1,),
    "duplicates-inside": (P - 30 * S, R, P - 30 * S, R),
    "outside-and-inside": (P + W + 1, READY + S, P + 5 * S),
    "cut-inside-before-planned": (P - 30 * S,),
    "cut-and-finished-inside": (P - 30 * S, P + 5 * S),
}
CUT = {"cut-inside-before-planned": (P - 30 * S,), "cut-and-finished-inside": (P - 30 * S,)}  # cut by a crash
NOW = {
    "right-after-ready": READY,
    "1ms-before-2x-deadline": D2 - 1,
    "at-2x-deadline": D2,
    "1ms-before-9x-deadline": D9 - 1,
    "at-9x-deadline": D9,
    "1ms-before-planned": P - 1,
    "at-planned": P,
    "after-window": P + W + 60 * S,
}
GRID = list(itertools.product((False, True), (True, False), (True, False), (True, False), (1, MAX - 1, MAX)))


def _grid_id(g: tuple[bool, bool, bool, bool, int]) -> str:
    one_shot, legacy, exists, enabled, attempt = g
    return (f"{'oneshot' if one_shot else 'recurring'}-{ver(legacy)}-{'exists' if exists else 'deleted'}-"
            f"{'enabled' if enabled else 'disabled'}-attempt{attempt}")


@pytest.mark.parametrize("g", GRID, ids=_grid_id)
def test_decide_run_grid_running_x_seen_x_now_x_window(g: tuple[bool, bool, bool, bool, int]) -> None:
    """The whole product: every combination the physical order allows (runs seen start before `now`)."""
    one_shot, legacy, exists, enabled, attempt = g
    rules = rules_for(legacy)
    failures: list[str] = []
    checked = 0
    for (rn, running), (sn, seen), (nn, now), window_s in itertools.product(
            RUNNING_NOW.items(), SEEN.items(), NOW.items(), (120.0, 0.0)):
        if any(t > now for t in seen) or (running is not None and running > now):
            continue
        cut = CUT.get(sn, ())
        v = view(exists=exists, enabled=enabled, running=running, seen=seen, cut=cut)
        ob = RunObligation(JOB, R, I, attempt, one_shot)
        policy = RecoveryPolicy(coalesce_window_s=window_s)
        d = decide_run(ob, v, policy, rules, now_ms=now, ready_at_ms=READY, planned_ms=P)
        e = _expected_by_design(one_shot, legacy, exists, enabled, running, seen, attempt, now, window_s, cut)
        case = f"{rn}/seen-{sn}/now-{nn}/window-{window_s:g}s"
        if (d.verb, d.attempt, d.until_ms, d.run_at_ms) != (e.verb, e.attempt, e.until_ms, e.run_at_ms):
            failures.append(f"{case}: got {d}, expected {e}")
        failures += [f"{case}: {b}" for b in _violations(ob, v, policy, rules, now, READY, P, d)]
        checked += 1
    assert checked > 100
    assert not failures, "\n".join(failures[:20])


# random inputs
_times = st.integers(min_value=-400_000, max_value=3_000_000).map(lambda x: T0 + x)
_opt_times = st.none() | _times


@st.composite
def _inputs(draw: st.DrawFn) -> tuple[RunObligation, JobView, RecoveryPolicy, VersionRules, int, int, int]:
    running_at = T0
    interrupted = running_at + draw(st.integers(0, 600_000))
    ready = interrupted + draw(st.integers(0, 600_000))
    ob = RunObligation(JOB, running_at, interrupted, draw(st.integers(1, 7)), draw(st.booleans()))
    near = st.sampled_from([running_at, running_at - 1, running_at + 1]) | _times
    policy = RecoveryPolicy(
        max_attempts=draw(st.integers(1, 6)),
        coalesce_window_s=draw(st.sampled_from([0.0, 0.0004, 0.001, 1.0, 60.0, 120.0, 3600.0])
                               | st.floats(0.0, 900.0)),
        recheck_s=draw(st.sampled_from([1.0, 15.0, 60.0])),
        jitter=draw(st.sampled_from([0.0, 0.2])))
    starts = tuple(draw(st.lists(near, max_size=6)))
    v = JobView(exists=draw(st.booleans()), enabled=draw(st.booleans()), running_at_ms=draw(st.none() | near),
                run_starts_ms=starts, startup_catchup_at_ms=draw(_opt_times), next_run_at_ms=draw(_opt_times),
                finished_ms=tuple(t for t in starts if draw(st.booleans())))
    rules = rules_for(draw(st.booleans()))
    settled = ready + int(rules.settle_max_s * S * draw(st.floats(0.0, 1.0)))
    planned = planned_at_ms(ob, policy, draw(st.floats(0.0, 0.999)), settled) if draw(st.booleans()) else draw(_times)
    now = ready + draw(st.integers(0, 3_000_000))
    return ob, v, policy, rules, now, ready, planned


@settings(max_examples=600, deadline=None)
@given(_inputs())
def test_decide_run_invariants_on_random_inputs(
        args: tuple[RunObligation, JobView, RecoveryPolicy, VersionRules, int, int, int]) -> None:
    ob, v, policy, rules, now, ready, planned = args
    d = decide_run(ob, v, policy, rules, now_ms=now, ready_at_ms=ready, planned_ms=planned)
    assert not _violations(ob, v, policy, rules, now, ready, planned, d), d
    assert d == decide_run(ob, v, policy, rules, now_ms=now, ready_at_ms=ready, planned_ms=planned)


@settings(max_examples=200, deadline=None)
@given(_inputs())
def test_decide_run_a_send_stays_a_send_later_and_a_wait_until_turns_into_a_decision(
        args: tuple[RunObligation, JobView, RecoveryPolicy, VersionRules, int, int, int]) -> None:
    """Waiting is never forever by itself: at `until_ms` (nothing else changed) the "not due yet"
    wait is over, at the latest after one more look (a one-shot is looked at just after 2026.9.x's
    own catch-up first), and a SEND does not turn back into a WAIT as time passes."""
    ob, v, policy, rules, now, ready, planned = args
    d = decide_run(ob, v, policy, rules, now_ms=now, ready_at_ms=ready, planned_ms=planned)
    if d.verb is Verb.WAIT and v.running_at_ms is None:
        again = decide_run(ob, v, policy, rules, now_ms=d.until_ms, ready_at_ms=ready, planned_ms=planned)
        if again.verb is Verb.WAIT and ob.one_shot:
            assert again.until_ms > d.until_ms
            again = decide_run(ob, v, policy, rules, now_ms=again.until_ms, ready_at_ms=ready, planned_ms=planned)
        assert again.verb in (Verb.SEND, Verb.GIVE_UP)
    if d.verb is Verb.SEND:
        later = decide_run(ob, v, policy, rules, now_ms=now + 3_600_000, ready_at_ms=ready, planned_ms=planned)
        assert later == d


@settings(max_examples=200, deadline=None)
@given(_inputs(), st.integers(R + 1, T0 + 3_000_000))
def test_decide_run_a_later_run_seen_never_turns_a_non_send_into_a_send(
        args: tuple[RunObligation, JobView, RecoveryPolicy, VersionRules, int, int, int], extra: int) -> None:
    """Seeing one more run can only settle an obligation, never cause a retry."""
    ob, v, policy, rules, now, ready, planned = args
    before = decide_run(ob, v, policy, rules, now_ms=now, ready_at_ms=ready, planned_ms=planned)
    for finished in (False, True):  # cut by a crash, or ended
        more = replace(v, run_starts_ms=(*v.run_starts_ms, extra),
                       finished_ms=(*v.finished_ms, extra) if finished else v.finished_ms)
        after = decide_run(ob, more, policy, rules, now_ms=now, ready_at_ms=ready, planned_ms=planned)
        if after.verb is Verb.SEND:
            assert before == after


# ---------------------------------------------------------------------------------------------
# decide_session(): nothing, wait, or one agent turn that is the notice and the wake at once
# ---------------------------------------------------------------------------------------------

WHEN = "2027-01-15 08:00:00 UTC"
DEFAULT_NOTICE = ("[System] Gateway restarted (crash, 2027-01-15 08:00:00 UTC). "
                  "Previous session context may be incomplete.")
LOST = RecoveryPolicy().lost_request

SV = SessionVerb
CONVERSATION_KINDS = ["main", "hook", "subagent", "other", ""]
CRON_KINDS = ["cron", "cron-run"]

# (kind, legacy, resumed, settled) -> (verb, text)
SESSION_TABLE: list[tuple[str, bool, bool, bool, SessionVerb, str]] = []
for _kind, _legacy, _resumed, _settled in itertools.product(
        CRON_KINDS + CONVERSATION_KINDS, (True, False), (True, False), (True, False)):
    if _kind in CRON_KINDS:
        _exp = (SV.NOTHING, "")  # an isolated run's session never takes another turn: the cron retry covers it
    elif _resumed:
        _exp = (SV.NOTHING, "")  # the gateway resumed it itself
    elif not _legacy and not _settled:
        _exp = (SV.WAIT, "")  # 9.x: its own resume may still come
    elif not _legacy:
        _exp = (SV.AGENT_TURN, DEFAULT_NOTICE)
    else:
        # 2.x keeps no trace of the interrupted request. The shell only asks after the settle point
        # (Recovery._settle), so `settled` does not change the answer here.
        _exp = (SV.AGENT_TURN, DEFAULT_NOTICE + LOST)
    SESSION_TABLE.append((_kind, _legacy, _resumed, _settled, *_exp))


def _session_id(r: tuple[str, bool, bool, bool, SessionVerb, str]) -> str:
    kind, legacy, resumed, settled, verb, _ = r
    return (f"{kind or 'unknown'}-{ver(legacy)}-{'resumed' if resumed else 'not-resumed'}-"
            f"{'settled' if settled else 'not-settled'}-{verb.value}")


@pytest.mark.parametrize("row", SESSION_TABLE, ids=_session_id)
def test_decide_session(row: tuple[str, bool, bool, bool, SessionVerb, str]) -> None:
    kind, legacy, resumed, settled, verb, text = row
    d = decide_session(kind, resumed, settled, rules_for(legacy), RecoveryPolicy(), "crash", WHEN)
    assert (d.verb, d.text) == (verb, text)
    assert d.reason


def test_session_notice_default_text_has_reason_and_time() -> None:
    d = decide_session("main", False, True, rules_for(False), RecoveryPolicy(), "hang", WHEN)
    assert d.text == f"[System] Gateway restarted (hang, {WHEN}). Previous session context may be incomplete."


def test_session_2x_notice_says_the_request_was_lost_and_asks_to_tell_the_user() -> None:
    d = decide_session("main", False, True, rules_for(True), RecoveryPolicy(), "planned restart", WHEN)
    assert d.verb is SV.AGENT_TURN
    assert d.text.startswith(f"[System] Gateway restarted (planned restart, {WHEN}).")
    assert "interrupted and lost" in d.text and "tell the user" in d.text
    assert d.text.endswith(LOST) and d.text.count(LOST) == 1


CUSTOM_TEMPLATES = [  # (name, template, expected text)
    ("reason-and-time", "Restarted at {time} because of {reason}.", f"Restarted at {WHEN} because of crash."),
    ("reason-only", "Gateway restarted: {reason}", "Gateway restarted: crash"),
    ("time-only", "Back since {time}", f"Back since {WHEN}"),
    ("no-placeholders", "The gateway restarted.", "The gateway restarted."),
    ("repeated-placeholders", "{reason}/{reason} {time}", f"crash/crash {WHEN}"),
    ("literal-braces-escaped", "{{gatewayd}} {reason}", "{gatewayd} crash"),
]


@pytest.mark.parametrize("legacy", [False, True], ids=["9x", "2x"])
@pytest.mark.parametrize(("name", "template", "text"), CUSTOM_TEMPLATES, ids=[r[0] for r in CUSTOM_TEMPLATES])
def test_session_custom_notice_template(name: str, template: str, text: str, legacy: bool) -> None:
    policy = RecoveryPolicy(notice=template)
    d = decide_session("main", False, True, rules_for(legacy), policy, "crash", WHEN)
    assert d.verb is SV.AGENT_TURN
    assert d.text == (text + LOST if legacy else text)


def test_session_reason_with_braces_is_not_formatted_again() -> None:
    d = decide_session("main", False, True, rules_for(False), RecoveryPolicy(), "{time}", WHEN)
    assert d.text.startswith(f"[System] Gateway restarted ({{time}}, {WHEN}).")


def test_session_custom_lost_request_sentence_on_2x() -> None:
    policy = RecoveryPolicy(notice="N.", lost_request=" L.")
    assert decide_session("main", False, True, rules_for(True), policy, "crash", WHEN).text == "N. L."
    assert decide_session("main", False, True, rules_for(False), policy, "crash", WHEN).text == "N."


@given(kind=st.sampled_from(CRON_KINDS + CONVERSATION_KINDS) | st.text(max_size=12), legacy=st.booleans(),
       resumed=st.booleans(), settled=st.booleans(), reason=st.text(max_size=30), when=st.text(max_size=30))
def test_session_invariants_on_random_inputs(kind: str, legacy: bool, resumed: bool, settled: bool, reason: str,
                                             when: str) -> None:
    d = decide_session(kind, resumed, settled, rules_for(legacy), RecoveryPolicy(), reason, when)
    assert d.reason
    if kind in CRON_KINDS or resumed:
        assert d.verb is SV.NOTHING  # never a turn into a cron run's session, never on top of a resume
    if d.verb is SV.AGENT_TURN:
        assert d.text.startswith(f"[System] Gateway restarted ({reason}, {when}).")
        assert d.text.endswith(LOST) == legacy
    else:
        assert d.text == ""
    if d.verb is SV.WAIT:
        assert not legacy and not settled
    assert d == decide_session(kind, resumed, settled, rules_for(legacy), RecoveryPolicy(), reason, when)


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("one_shot", [False, True])
def test_regression_a_run_that_completed_during_a_drain_is_not_retried(legacy: bool, one_shot: bool) -> None:
    """Found by design review of restart --safe: the drain lets the run finish after the last
    snapshot, so the snapshot still shows it running at the exit. Its own run-log entry (same
    runAtMs, not an interruption) settles it: retrying would run the work twice."""
    ob = RunObligation("job-1", 1_000, 2_000, 1, one_shot)
    view = JobView(True, True, None, (1_000,), None, None, finished_ms=(1_000,))
    d = decide_run(ob, view, RecoveryPolicy(), rules_for(legacy), now_ms=10**9, ready_at_ms=0,
                   planned_ms=0)
    assert d.verb is Verb.DONE


def test_regression_the_interrupted_run_itself_is_not_the_effect_of_a_lost_send() -> None:
    """Found by the fault suite (journaled step, compressed backoff): the interrupted run had started
    824 ms before gatewayd journaled its retry and then died; the 1 s clock slack counted that run as
    the retry's effect, and the retry was never sent."""
    ob = RunObligation("job-1", 1_000_000, 1_000_500, 1, False)
    assert not runs_after_send(ob, 1_000_824, (1_000_000,))
    assert runs_after_send(ob, 1_000_824, (1_000_000, 1_000_400))  # a later run within the slack
    assert runs_after_send(ob, 1_000_824, (1_002_000,))
    assert not runs_after_send(ob, 1_000_824, (1_000_000 - 5,))


def test_policy_for_a_job_by_id_then_by_name_over_the_global_policy() -> None:
    from supervisor.core.recovery_policy import policy_for
    base = RecoveryPolicy(max_attempts=3, jobs={"job-1": {"max_attempts": 1}, "digest": {"backoff_initial_s": 5},
                                                "job-2": {"coalesce_window_s": 0}})
    assert policy_for(base, "job-1", "digest").max_attempts == 1  # the id wins over the name
    assert policy_for(base, "job-1", "digest").backoff_initial_s == 30.0
    assert policy_for(base, "job-9", "digest").backoff_initial_s == 5.0
    assert policy_for(base, "job-2", None).coalesce_window_s == 0.0
    assert policy_for(base, "job-9", "other") is base
    assert policy_for(base, "job-9", None) is base


def test_max_attempts_1_never_sends_a_retry_but_still_adopts_a_regular_run() -> None:
    from supervisor.core.recovery_policy import policy_for
    policy = policy_for(RecoveryPolicy(jobs={JOB: {"max_attempts": 1}}), JOB, None)
    rules = rules_for(False)
    ob = RunObligation(JOB, R, I, 1, False)
    late = P + W + 60 * S
    d = decide_run(ob, view(), policy, rules, now_ms=late, ready_at_ms=READY, planned_ms=P)
    assert d.verb is Verb.GIVE_UP and "exhausted (1 of 1)" in d.reason
    d = decide_run(ob, view(seen=(P,)), policy, rules, now_ms=late, ready_at_ms=READY, planned_ms=P)
    assert d.verb is Verb.ADOPT


# -- what became of a retry that was sent (done only when its run is seen) -------------------------
GRACE = 120_000


@pytest.mark.parametrize(("after", "finished", "running", "recorded", "pending", "this_boot", "waited", "expect"), [
    ((), (), None, False, False, False, 0, "await"),  # nothing yet, within the grace
    ((), (), None, False, False, False, GRACE - 1, "await"),
    ((), (), None, False, False, False, GRACE, "no-effect"),  # no run within the grace, its gateway gone
    ((), (), None, False, False, True, GRACE, "trusted"),  # ... the gateway that accepted it still runs
    ((), (), None, False, True, False, GRACE * 10, "await"),  # the answer is still coming (2.x blocks)
    ((5,), (), 5, False, False, False, 0, "await"),  # running, the snapshot has not recorded it yet
    ((5,), (), 5, False, False, True, GRACE * 10, "await"),
    ((5,), (), 5, True, False, False, 0, "stood"),  # recorded: a crash during it opens its own obligation
    ((5,), (5,), None, False, False, False, 0, "stood"),  # it ended
    ((5,), (), None, True, False, False, 0, "stood"),  # recorded, then ended (as interrupted): covered
    ((5,), (), None, False, False, False, 0, "cut"),  # started, gone, never recorded: the chaos finding
    ((5,), (), None, False, False, True, 0, "cut"),
    ((5,), (), None, False, True, False, 0, "await"),  # ... unless this process still awaits its answer
    ((5, 9), (9,), None, False, False, False, 0, "stood"),
])
def test_retry_outcome(after: tuple[int, ...], finished: tuple[int, ...], running: int | None, recorded: bool,
                       pending: bool, this_boot: bool, waited: int, expect: str) -> None:
    from supervisor.core.planner import retry_outcome
    assert retry_outcome(after, finished, running, recorded, pending, this_boot, waited, GRACE) == expect


@pytest.mark.parametrize(("seen", "pending", "this_boot", "waited", "expect"), [
    (True, False, False, 0, "stood"),
    (True, True, True, 0, "stood"),
    (False, True, False, GRACE * 10, "await"),
    (False, False, True, GRACE - 1, "await"),
    (False, False, True, GRACE, "trusted"),  # never a second notice to the gateway that accepted one
    (False, False, False, GRACE, "no-effect"),  # lost with its gateway: sent again
])
def test_notice_outcome(seen: bool, pending: bool, this_boot: bool, waited: int, expect: str) -> None:
    from supervisor.core.planner import notice_outcome
    assert notice_outcome(seen, pending, this_boot, waited, GRACE) == expect


def test_runs_after_send_excludes_the_interrupted_run_and_older_runs() -> None:
    ob = RunObligation(JOB, 1_000_000, 1_000_500, 1, False)
    assert runs_after_send(ob, 1_000_824, (1_000_000, 1_002_000, 990_000, 1_000_400)) == (1_000_400, 1_002_000)


@pytest.mark.parametrize("legacy", [False, True])
def test_a_session_whose_turn_had_completed_gets_nothing(legacy: bool) -> None:
    """Found by the chaos benchmark: gatewayd's snapshot still had a turn as running that had ended
    just before the crash (gatewayd itself was down); a notice then was a second, needless turn."""
    d = decide_session("main", False, True, rules_for(legacy), RecoveryPolicy(), "crash", "now", completed=True)
    assert d.verb is SessionVerb.NOTHING and "completed" in d.reason
    d = decide_session("main", False, True, rules_for(legacy), RecoveryPolicy(), "crash", "now")
    assert d.verb is SessionVerb.AGENT_TURN


@pytest.mark.parametrize("case", RUN_CASES, ids=lambda c: c.id)
def test_an_old_view_changes_a_send_and_nothing_else(case: RunCase) -> None:
    """REFRESH exactly where the decision on a fresh view would be SEND (fake chaos seed 7402)."""
    fresh = _decide(dataclasses.replace(case, read=None))
    old = _decide(dataclasses.replace(case, read=case.now - VIEW_FRESH_MS - 1))
    assert old.verb is Verb.REFRESH if fresh.verb is Verb.SEND else old == fresh
