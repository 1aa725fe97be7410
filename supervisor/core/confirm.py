"""What the gateway shows after a restart, as facts, and the rules over them: whether its own
startup recovery is done, whether a session's interrupted turn resumed or had completed, and
whether what gatewayd sent (a retry, a restart notice) took effect. Pure: recovery.py reads the
gateway and the store, calls these, and journals what they decide.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from supervisor.core.event_queue import is_main_session
from supervisor.core.inflight import lenient_ms, message_text
from supervisor.core.obligations import Action, ActionKind, ActionState, Obligation, ObligationKind
from supervisor.core.planner import (
    CRON_SESSION_KINDS,
    MS,
    QUOTE_LEAD,
    JobView,
    Retry,
    RunObligation,
    VersionRules,
    notice_outcome,
    retry_outcome,
    runs_after_send,
)

INTERRUPTED = "interrupted"  # 2026.9.x logs an interrupted run as "cron: job interrupted by gateway restart"
TURN_SLACK_MS = 1000  # a turn the snapshot first saw this little before the time still counts
WAKE_CONFIRM_MS = 60_000  # a wake's turn starts within seconds (measured 1-4 s on 2026.9.6)
WAKE_SUFFIX = "-wake"
CHAT_SUFFIX = "-chat"
MAX_NOTICES = 2  # a notice lost with its gateway is sent again, this many in all


def settle_deadline_ms(rules: VersionRules, ready_at_ms: int) -> int:
    """The latest the gateway's own startup recovery is waited for."""
    return ready_at_ms + int(rules.settle_max_s * MS)


# -- sessions ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionRow:
    """What `sessions.list` says of a session now; what the version lacks, or is unusable, is None.
    2026.9.x: `status`, and when its last run started and ended; 2026.2.x: when it was updated."""

    status: str | None = None
    started_at_ms: int | None = None
    ended_at_ms: int | None = None
    updated_at_ms: int | None = None


def session_row(raw: Any) -> SessionRow:
    if not isinstance(raw, dict):
        return SessionRow()
    status = raw.get("status")
    return SessionRow(status if isinstance(status, str) else None, lenient_ms(raw.get("startedAt")),
                      lenient_ms(raw.get("endedAt")), lenient_ms(raw.get("updatedAt")))


@dataclass(frozen=True)
class SessionSeen:
    """A session's turns as gatewayd and the gateway show them now: `recorded_at`, when a snapshot
    last first saw a turn of it running (wall clock, seconds; any boot); `row`, its row now."""

    recorded_at: float | None = None
    row: SessionRow = field(default_factory=SessionRow)


def turn_since(seen: SessionSeen, since_ms: int, rules: VersionRules) -> bool:
    """Did the session take a turn since `since_ms`? The snapshot's record (it may miss a short
    turn, or gatewayd was down during it), else the row: 2026.9.x says when the session's last run
    started, 2026.2.x only when the row was updated."""
    if seen.recorded_at is not None and seen.recorded_at >= since_ms / MS - TURN_SLACK_MS / MS:
        return True
    at = seen.row.started_at_ms if rules.session_rows_date_runs else seen.row.updated_at_ms
    return at is not None and at >= since_ms


def resumed(ob: Obligation, seen: SessionSeen, rules: VersionRules) -> bool:
    """Did the gateway resume the interrupted turn itself (in this boot, or one that died during
    recovery)? Only a version that resumes turns does."""
    return rules.resumes_main_sessions and turn_since(seen, ob.interrupted_at_ms, rules)


def completed(ob: Obligation, row: SessionRow) -> bool:
    """2026.9.x: the session's last run had ended before the interruption and none started since
    (status done): the turn gatewayd's snapshot still had as running had finished."""
    started, ended = row.started_at_ms, row.ended_at_ms
    return (row.status == "done" and started is not None and ended is not None and started <= ended
            <= ob.interrupted_at_ms)


def needs_history(ob: Obligation, rules: VersionRules, previous: Sequence[Action]) -> bool:
    """2026.2.x: whether the turn ended before the crash only the session's history can tell (the
    row says nothing of runs). Asked only before any notice is out: after that, the notice's own
    turn decides."""
    return not rules.resumes_main_sessions and not previous and ob.session_kind not in CRON_SESSION_KINDS


def session_state(ob: Obligation, seen: SessionSeen, rules: VersionRules, ended_per_history: bool
                  ) -> tuple[bool, bool]:
    """(resumed, completed) for `decide_session`. `ended_per_history`: 2026.2.x, the history shows
    the turn ended before the crash (asked where `needs_history`)."""
    if resumed(ob, seen, rules):
        return True, False
    return False, completed(ob, seen.row) if rules.resumes_main_sessions else ended_per_history


# -- the gateway's own startup recovery ----------------------------------------------------------


def own_recovery_done(obligations: Iterable[Obligation], marks: Mapping[str, int | None],
                      sessions: Mapping[str, SessionSeen], rules: VersionRules) -> bool:
    """2026.9.x repairs the runs a restart cut and resumes interrupted main-session turns a few
    seconds after ready (measured 5-6.4 s). Done when no open run obligation's job still shows its
    cut run's mark (`marks`: job id -> `runningAtMs` now), and every session obligation's turn
    resumed or had completed."""
    for ob in obligations:
        if ob.kind is ObligationKind.CRON:
            if marks.get(ob.ref) == ob.running_at_ms:
                return False  # not repaired yet
        elif ob.session_kind not in CRON_SESSION_KINDS:
            seen = sessions.get(ob.ref, SessionSeen())
            if not resumed(ob, seen, rules) and not completed(ob, seen.row):
                return False  # not resumed (yet), and its turn had not ended before the crash
    return True


# -- a job's runs --------------------------------------------------------------------------------


def run_log(payload: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A `cron.runs` answer: (starts of logged runs, starts of those that ended other than by a
    restart's interruption)."""
    entries = payload.get("entries", []) if isinstance(payload, dict) else []
    starts: list[int] = []
    finished: list[int] = []
    for e in entries:
        at = lenient_ms(e.get("runAtMs")) if isinstance(e, dict) else None
        if at is None:
            continue
        starts.append(at)
        if INTERRUPTED not in str(e.get("error") or ""):
            finished.append(at)
    return tuple(starts), tuple(finished)


def job_state(job: Any) -> dict[str, Any]:
    state = job.get("state", {}) if isinstance(job, dict) else {}
    return state if isinstance(state, dict) else {}


def job_view(job: Any, starts: tuple[int, ...], finished: tuple[int, ...]) -> JobView:
    """The job as `cron.list` shows it now (None: gone), with its run log; a run in progress
    counts among the runs seen."""
    state = job_state(job)
    running = lenient_ms(state.get("runningAtMs"))
    return JobView(exists=job is not None, enabled=bool(job.get("enabled", True)) if isinstance(job, dict) else False,
                   running_at_ms=running, run_starts_ms=starts + ((running,) if running is not None else ()),
                   finished_ms=finished, startup_catchup_at_ms=lenient_ms(state.get("startupCatchupAtMs")),
                   next_run_at_ms=lenient_ms(state.get("nextRunAtMs")))


# -- whether what was sent took effect -----------------------------------------------------------


@dataclass(frozen=True)
class Confirmation:
    """What became of the actions sent for an obligation, oldest first. `outcome` is that of
    `action`, the one that decides for now: STOOD or TRUSTED (done), AWAIT (look again shortly);
    None: nothing sent is still out, so decide afresh. `lapsed`: the actions that did not stand,
    each with why (CUT, NO_EFFECT), to record as unconfirmed; `run`: the obligation with those
    counted as attempts."""

    outcome: Retry | None = None
    action: Action | None = None
    lapsed: tuple[tuple[Action, Retry], ...] = ()
    run: RunObligation | None = None


def confirm_retries(ob: RunObligation, actions: Iterable[Action], view: JobView, recorded: Mapping[int, int],
                    pending: Collection[str], boot: int, now_ms: int, grace_ms: int) -> Confirmation:
    """A retry is done when its run is seen, not when cron.run answers: the gateway may die
    between the answer and the run's start, or cut the run before the snapshot recorded it (then
    no obligation covers it; found by the chaos benchmark). Seen means it ended, or the snapshot
    recorded it in the boot it was sent to (`recorded`: boot -> the latest start of the job's runs
    recorded in it; a crash during it then opens an obligation of its own). A retry journaled by a
    gatewayd that died before the answer is settled the same way, by looking, never by sending
    again. Cut unseen, or no run at all within the grace: it was an attempt, and the next decision
    may send another. `pending`: keys sent by this process and not answered yet; `boot`: the
    current one (an answer from its gateway, which still runs, is trusted)."""
    lapsed: list[tuple[Action, Retry]] = []
    for a in actions:
        if a.kind is not ActionKind.CRON_RUN or not a.state.out:
            continue
        after = runs_after_send(ob, a.dispatched_at_ms, view.run_starts_ms)
        latest = recorded.get(a.boot_id) if a.boot_id is not None else None
        was_recorded = bool(after) and latest is not None and latest >= after[0]
        this_boot = a.state is ActionState.ANSWERED and a.boot_id == boot
        outcome = retry_outcome(after, view.finished_ms, view.running_at_ms, was_recorded, a.key in pending,
                                this_boot, now_ms - a.dispatched_at_ms, grace_ms)
        if outcome in (Retry.STOOD, Retry.AWAIT, Retry.TRUSTED):
            return Confirmation(outcome, a, tuple(lapsed), ob)
        lapsed.append((a, outcome))
        ob = replace(ob, attempt=max(ob.attempt, a.attempt))
    return Confirmation(None, None, tuple(lapsed), ob)


def confirm_notices(actions: Iterable[Action], seen: SessionSeen, rules: VersionRules, pending: Collection[str],
                    boot: int, now_ms: int, grace_ms: int, shown: Mapping[str, bool] | None = None
                    ) -> Confirmation:
    """A notice is done when a turn in the session is seen after it was sent (the gateway may die
    between accepting it and running it). Unseen after the grace: lapsed, so sent again, only if
    the gateway that accepted it is gone; a notice is never sent twice to one gateway. `shown`:
    2026.2.x, whether the session's history holds the notice's text (`history_shows`; None: not
    asked), by action key. It decides for a notice sent into a gateway that has ended since: the row shows only
    the session's last turn, which may be the next gateway's (real 2.26 chaos seed 7404: a notice
    taken 0.3 s before a kill, confirmed by the next gateway's wake turn, never reached the model)."""
    lapsed: list[tuple[Action, Retry]] = []
    for a in actions:
        if not a.state.out:
            continue
        turn = turn_since(seen, a.dispatched_at_ms - TURN_SLACK_MS, rules)
        wake = is_wake_notice(a.key)
        if shown is not None and a.key in shown and a.boot_id != boot and not wake:
            turn = shown[a.key]
        # A wake's `ok` proves nothing (measured): unseen within its window it lapsed, even in this
        # boot, and the next notice is an agent turn.
        this_boot = a.state is ActionState.ANSWERED and a.boot_id == boot and not wake
        outcome = notice_outcome(turn, a.key in pending, this_boot, now_ms - a.dispatched_at_ms,
                                 min(grace_ms, WAKE_CONFIRM_MS) if wake else grace_ms)
        if outcome in (Retry.STOOD, Retry.AWAIT, Retry.TRUSTED):
            return Confirmation(outcome, a, tuple(lapsed))
        lapsed.append((a, outcome))
    return Confirmation(None, None, tuple(lapsed))


TRUNCATED = ("...(truncated)...", "[chat.history omitted: message too large]")  # 2.26's marks, from its dist


def _folded(text: str) -> str:
    # As 2.26's chat.send keeps a message: NFC, no control characters; white space folded.
    text = "".join(ch for ch in unicodedata.normalize("NFC", text) if ch in "\n\t" or unicodedata.category(ch) != "Cc")
    return " ".join(text.split())


def history_shows(history: Any, notice: str, since_ms: int, limit: int) -> bool | None:
    """Does a `chat.history` answer (of at most `limit` messages) hold a user message with the
    notice's text, sent at `since_ms`? 2.x writes a turn's request into the history as the turn
    starts (measured). Compared without its quote of the lost request, as the gateway keeps a
    message. None, where "no" would prove nothing: the answer may not reach back to the send (as
    many messages as asked, the oldest after it), or a user message since was cut short (2.26 keeps
    12,000 characters of one, and a chat.send carries the queued events ahead of its text)."""
    want = _folded(notice.split(QUOTE_LEAD)[0])
    messages = history.get("messages") if isinstance(history, dict) else None
    if not want or not isinstance(messages, list):
        return None
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    texts = [message_text(m.get("content")) for m in users]
    if any(want in _folded(t) for t in texts):
        return True
    stamps = [t for m in messages if isinstance(m, dict) and (t := lenient_ms(m.get("timestamp"))) is not None]
    if len(messages) >= limit and not (stamps and min(stamps) <= since_ms):
        return None
    if any(mark in t for t in texts for mark in TRUNCATED):
        return None
    return False


def notices_exhausted(previous: Iterable[Action]) -> bool:
    """Given up once MAX_NOTICES were recorded lost (counted as the journal held them before this
    look: one found lost just now is counted at the next)."""
    return sum(1 for a in previous if a.state is ActionState.UNCONFIRMED) >= MAX_NOTICES


def retry_key(ob: Obligation, attempt: int, previous: Iterable[Action]) -> str:
    """The retry's idempotency key: one per attempt, and a new one after each that failed or lapsed."""
    failed = sum(1 for a in previous if a.state in (ActionState.FAILED, ActionState.UNCONFIRMED))
    return f"cron-{ob.id}-a{attempt}-{failed}"


def notice_key(ob: Obligation, previous: Sequence[Action], wake: bool = False, chat: bool = False) -> str:
    return f"session-{ob.id}-{len(previous)}" + (WAKE_SUFFIX if wake else CHAT_SUFFIX if chat else "")


def notice_drains(key: str, has_chat_send: bool) -> bool:
    """A notice turn (not a wake) in an agent's main session goes as `chat.send`: that session holds
    the queued system events (gatewayd's re-queued ones among them), and `chat.send` hands them to
    the model in the same request, where an `agent` turn leaves them queued (measured on both
    versions; on 2026.2.x they then piled up to the gateway's cap of 20 across restarts, found by
    the chaos benchmark, real 2026.2.26, seed 4343)."""
    return has_chat_send and is_main_session(key)


def notice_how(key: str) -> str:
    """How a notice went out, from its key, for its obligation's resolution."""
    if key.endswith(WAKE_SUFFIX):
        return "a system event with a wake"
    return "a chat.send turn" if key.endswith(CHAT_SUFFIX) else "an agent turn"


def notice_by_wake(rules: VersionRules, previous: Sequence[Action], key: str) -> bool:
    """The first notice is a system event with a wake where the version's wake starts a turn in the
    session (the model then sees it as system text); any later one is an agent turn. Only in an
    agent's main session: that is where the wake was measured to start a turn."""
    return rules.wake_starts_turns and not previous and is_main_session(key)


def is_wake_notice(key: str) -> bool:
    return key.endswith(WAKE_SUFFIX)
