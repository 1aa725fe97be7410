"""The recovery planner: what to do about each piece of work a restart interrupted. Pure: facts
and `now` in, decisions out; the shell journals and executes them.

An interrupted cron run is an obligation `(jobId, runningAtMs)`. Neither gateway version re-runs
an interrupted recurring run, and both re-run an interrupted one-shot themselves (DESIGN,
correction 1). So, per obligation, right before acting, from a fresh view of the job:
- one-shot: wait for the gateway's own re-run; a run after the interruption, or the job gone
  (deleteAfterRun), settles it; only past the version's deadline does gatewayd re-run it;
- recurring: a regular run starting within the coalescing window of the planned retry is
  adopted as the retry; a run in progress means wait and decide again; a deleted or disabled job
  is given up; attempts are counted across boots and exhausted visibly; otherwise send.
A session that had a turn in flight gets nothing where the gateway resumed it itself (2026.9.x),
else one agent turn carrying the restart notice (it is the notice and the wake at once).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from supervisor.core.policy import with_jitter
from supervisor.core.recovery_policy import RecoveryPolicy

MS = 1000
CRON_SESSION_KINDS = ("cron", "cron-run")  # a cron run's own session: the cron retry covers it


QUOTE_LEAD = ' The interrupted request was: "'  # a notice's quote of the lost request (core/inflight reads it)


@dataclass(frozen=True)
class VersionRules:
    """What the gateway does after a restart: data, per version, from gateway/capabilities.py."""

    resumes_main_sessions: bool  # resumes an interrupted main-session turn by itself
    settle_max_s: float  # wait at most this long after ready for its own startup recovery
    oneshot_deadline_after_due_s: float  # 9.x: after startupCatchupAtMs (else nextRunAtMs)
    oneshot_min_after_ready_s: float  # never re-run a one-shot before ready + this
    own_recovery_visible: bool  # its startup repair and resume can be seen done, ending the settle early
    session_rows_date_runs: bool  # sessions.list rows say when the last run started and ended
    wake_starts_turns: bool = False  # wake {mode: now, sessionKey} starts a turn there, heartbeats off or not
    # chat.history keeps the "System: [..] text" lines a turn drained into its request (2026.2.x);
    # 2026.9.x hands them over as internal context that its history leaves out (measured)
    history_shows_drained_events: bool = False
    # Every main-session turn's lifecycle start reaches a passive operator connection, heartbeats
    # included (2026.2.26); 2026.9.6 shows a heartbeat's only to a connection subscribed to that
    # session's messages (measured), so there the queue watcher subscribes to each main session.
    hears_every_turn_start: bool = False
    # A connection subscribed to a session's messages hears every turn's start there, heartbeats'
    # included, before the turn's model request (2026.9.6, measured).
    subscribers_hear_every_turn_start: bool = False
    # `status` lists only the default agent's main session's queue, where every RPC-queued event
    # goes (2026.2.x, measured), and a queue is drained only by its own session's turns: a turn of
    # another agent's main session drains nothing a look listed. 2026.9.x lists every agent's main
    # queue as one flat list, so there any main session's turn may drain a listed text.
    lists_default_main_queue_only: bool = False


@dataclass(frozen=True)
class RunObligation:
    job_id: str
    running_at_ms: int
    interrupted_at_ms: int
    attempt: int  # the attempt number of the interrupted run (1: a regular run)
    one_shot: bool


@dataclass(frozen=True)
class JobView:
    """The job as the gateway reports it now."""

    exists: bool
    enabled: bool = True
    running_at_ms: int | None = None
    run_starts_ms: tuple[int, ...] = ()  # starts of runs seen (run log, snapshot), any time
    startup_catchup_at_ms: int | None = None
    next_run_at_ms: int | None = None
    finished_ms: tuple[int, ...] = ()  # starts of runs the run log shows as ended, not interrupted


class Verb(StrEnum):
    SEND = "send"  # cron.run now, as attempt `attempt`
    ADOPT = "adopt"  # the run starting at `run_at_ms` is the retry (or the gateway's own re-run)
    WAIT = "wait"  # decide again at `until_ms`
    REFRESH = "refresh"  # a send, decided on a view of the job too old to trust: read it again first
    GIVE_UP = "give-up"
    DONE = "done"


@dataclass(frozen=True)
class Decision:
    verb: Verb
    reason: str
    attempt: int = 0
    until_ms: int = 0
    run_at_ms: int = 0


def backoff_s(policy: RecoveryPolicy, retry_number: int, rand: float) -> float:
    """Delay of the n-th retry (1-based) after the interruption: 30 s doubling to 15 min, jittered."""
    base = min(policy.backoff_max_s, policy.backoff_initial_s * 2.0 ** min(64, max(0, retry_number - 1)))
    return with_jitter(base, policy.jitter, rand)


def planned_at_ms(ob: RunObligation, policy: RecoveryPolicy, rand: float, settled_at_ms: int) -> int:
    retry_number = ob.attempt  # attempt 1 interrupted -> the first retry
    due = ob.interrupted_at_ms + int(backoff_s(policy, retry_number, rand) * MS)
    return max(due, settled_at_ms)


def oneshot_deadline_ms(view: JobView, rules: VersionRules, ready_at_ms: int) -> int:
    floor = ready_at_ms + int(rules.oneshot_min_after_ready_s * MS)
    if rules.oneshot_deadline_after_due_s <= 0:
        return floor
    due = view.startup_catchup_at_ms or view.next_run_at_ms or ready_at_ms
    return max(floor, due + int(rules.oneshot_deadline_after_due_s * MS))


# A retry is sent only on a view of its job read this recently: a regular run that began since then
# stands for it (fake chaos seed 7402: a job view read before a pass's notices went out, 1.5 s old,
# missed a run that had begun, and the retry ran the job a second time).
VIEW_FRESH_MS = 250


def decide_run(ob: RunObligation, view: JobView, policy: RecoveryPolicy, rules: VersionRules, *,
               now_ms: int, ready_at_ms: int, planned_ms: int, view_read_ms: int | None = None) -> Decision:
    """What to do now about one interrupted cron run. `view_read_ms`: when the job's state in `view`
    was read (None: just now)."""
    if ob.running_at_ms in view.finished_ms:
        # It ended after all (a drain let it finish before the exit, after our last snapshot).
        return Decision(Verb.DONE, "the run completed after all")
    later = sorted(t for t in view.run_starts_ms if t > ob.running_at_ms)
    if ob.one_shot:
        if later:
            return Decision(Verb.ADOPT, "the gateway re-ran the one-shot itself", run_at_ms=later[0])
        if not view.exists:
            return Decision(Verb.DONE, "one-shot job gone (ran and deleted, or removed)")
    elif not view.exists:
        return Decision(Verb.GIVE_UP, "job deleted")
    if not view.enabled:
        return Decision(Verb.GIVE_UP, "job disabled")
    running = view.running_at_ms
    if running is not None and running > ob.running_at_ms and (ob.one_shot or _adoptable(running, planned_ms, policy)):
        return Decision(Verb.ADOPT, "a run in progress stands for the retry", run_at_ms=running)
    if view.running_at_ms is not None:
        return Decision(Verb.WAIT, "a run is in progress", until_ms=now_ms + int(policy.recheck_s * MS))
    if not ob.one_shot:
        # Only a run that ended stands for the retry: one cut by a crash did not do the work (found
        # by the chaos benchmark: a retry cut 4 ms after its start was adopted as its own retry).
        for t in later:
            if t in view.finished_ms and _adoptable(t, planned_ms, policy):
                return Decision(Verb.ADOPT, "a regular run in the coalescing window is the retry", run_at_ms=t)
    due = oneshot_deadline_ms(view, rules, ready_at_ms) if ob.one_shot else planned_ms
    if now_ms < due:
        return Decision(Verb.WAIT, "not due yet", until_ms=_look_again_ms(ob, view, rules, now_ms, due))
    if ob.attempt >= policy.max_attempts:
        return Decision(Verb.GIVE_UP, f"attempts exhausted ({ob.attempt} of {policy.max_attempts})")
    if view_read_ms is not None and now_ms - view_read_ms > VIEW_FRESH_MS:
        return Decision(Verb.REFRESH, "the job's state is read again before a retry")
    return Decision(Verb.SEND, "retry", attempt=ob.attempt + 1)


CATCHUP_LOOK_MS = 2000


def _look_again_ms(ob: RunObligation, view: JobView, rules: VersionRules, now_ms: int, due: int) -> int:
    """A one-shot waiting for 2026.9.x's own catch-up is looked at again just after the catch-up
    time, so the obligation is settled then, not at the deadline a minute or more later."""
    catchup = view.startup_catchup_at_ms
    if (ob.one_shot and rules.oneshot_deadline_after_due_s > 0 and catchup is not None
            and now_ms < catchup + CATCHUP_LOOK_MS < due):
        return catchup + CATCHUP_LOOK_MS
    return due


def runs_after_send(ob: RunObligation, sent_ms: int, run_starts_ms: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(sorted(t for t in run_starts_ms if t > ob.running_at_ms and t >= sent_ms - 1000))


class Retry(StrEnum):
    STOOD = "stood"  # its run ended, or the snapshot recorded it (a crash during it is a new obligation)
    AWAIT = "await"  # look again shortly
    TRUSTED = "trusted"  # accepted by this very gateway, which still runs: its queue will run it
    CUT = "cut"  # its run started and was cut before anything recorded it
    NO_EFFECT = "no-effect"  # no run within the grace, and nothing vouches for it


def retry_outcome(after: tuple[int, ...], finished_ms: tuple[int, ...], running_ms: int | None, recorded: bool,
                  answer_pending: bool, accepted_this_boot: bool, waited_ms: int, grace_ms: int) -> Retry:
    """What became of a retry that was sent: the obligation is done only when its run was seen.
    `after`: runs started since the send; `running_ms`: the job's run in progress, if any;
    `recorded`: the snapshot recorded the first run since the send; `accepted_this_boot`: the
    gateway that answered is the one running now (sending again could only run it twice)."""
    if any(t in finished_ms for t in after) or (after and recorded):
        return Retry.STOOD
    if answer_pending or (running_ms is not None and running_ms in after):
        return Retry.AWAIT  # the answer, or the snapshot's record of the running run, is coming
    if not after and waited_ms < grace_ms:
        return Retry.AWAIT
    if after:
        return Retry.CUT
    return Retry.TRUSTED if accepted_this_boot else Retry.NO_EFFECT


def notice_outcome(turn_seen: bool, answer_pending: bool, accepted_this_boot: bool, waited_ms: int,
                   grace_ms: int) -> Retry:
    """The same for a restart notice (an agent turn): done when a turn in the session is seen after
    it was sent; lost with a gateway that died before running it; never sent twice to one gateway."""
    if turn_seen:
        return Retry.STOOD
    if answer_pending or waited_ms < grace_ms:
        return Retry.AWAIT
    return Retry.TRUSTED if accepted_this_boot else Retry.NO_EFFECT


def _adoptable(run_at_ms: int, planned_ms: int, policy: RecoveryPolicy) -> bool:
    window = int(policy.coalesce_window_s * MS)
    return window > 0 and abs(run_at_ms - planned_ms) <= window


def send_gap_ms(retries_per_minute: int) -> int:
    """Rounded up: K + 1 sends must never fit in one minute."""
    return -(-60_000 // max(1, retries_per_minute))


class SessionVerb(StrEnum):
    NOTHING = "nothing"  # the gateway resumed it itself, or a cron run's own session
    WAIT = "wait"  # its own recovery has not settled yet
    AGENT_TURN = "agent-turn"  # the notice and the wake at once


@dataclass(frozen=True)
class SessionDecision:
    verb: SessionVerb
    reason: str
    text: str = ""


def decide_session(kind: str, resumed: bool, settled: bool, rules: VersionRules, policy: RecoveryPolicy,
                   reason: str, when: str, completed: bool = False, quote: str | None = None) -> SessionDecision:
    """`resumed`: a turn started in the session since the interruption (the gateway's own resume,
    in whichever boot); `completed`: its last turn had in fact ended before the crash (gatewayd's
    snapshot had not seen the end yet); `quote`: the interrupted request, where the gateway kept it."""
    if kind in CRON_SESSION_KINDS:
        return SessionDecision(SessionVerb.NOTHING, "a cron run's session: the cron retry covers it")
    if resumed:
        return SessionDecision(SessionVerb.NOTHING, "resumed by the gateway itself")
    if completed:
        return SessionDecision(SessionVerb.NOTHING, "its turn had completed before the crash")
    notice = policy.notice.format(reason=reason, time=when)
    if rules.resumes_main_sessions:
        if not settled:
            return SessionDecision(SessionVerb.WAIT, "the gateway's own resume may still come")
        return SessionDecision(SessionVerb.AGENT_TURN, "not resumed by the gateway", notice)
    quoted = f'{QUOTE_LEAD}{quote}"' if quote else ""
    return SessionDecision(SessionVerb.AGENT_TURN, "this version does not resume turns",
                           notice + policy.lost_request + quoted)
