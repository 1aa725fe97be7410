"""Which interrupted work becomes an obligation. Pure: the store reads the facts, calls these in
its transaction and writes what they return.

Two moments create obligations: a boot's end (what the snapshot still had in flight), and a run
the gateway's own state shows cut by a restart that no snapshot recorded (2.x: the dead gateway's
jobs file; 9.x: `cron.list` after the restart), which belongs to the ended boot it started in.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from supervisor.core.inflight import SAME_RUN_MS, RunItem, RunKey
from supervisor.core.planner import MS, RunObligation

# A retry's run starts within this of cron.run (at once, or behind a busy lane).
RETRY_START_MS = 30_000
# cron.run dispatched up to this long after the run's recorded start still counts as its retry
# (the snapshot may date the run a little before the send was journaled).
RETRY_LATE_MS = 5_000
# A run starting this little before the retry was sent may be the retry's own run.
RETRY_EARLY_MS = 1_000


class ObligationKind(StrEnum):
    CRON = "cron"  # an interrupted cron run: `ref` the job id, with `running_at_ms`
    SESSION = "session"  # a session whose turn was in flight: `ref` the session key


@dataclass(frozen=True)
class Obligation:
    """One interrupted piece of work, to be finished exactly once. `id` 0 and `planned_at_ms`
    None until the store holds it."""

    kind: ObligationKind
    ref: str
    boot_id: int
    interrupted_at: float  # wall clock, seconds: when the boot's end was recorded
    reason: str  # the boot's exit kind
    agent_id: str | None = None
    running_at_ms: int = 0
    name: str | None = None
    one_shot: bool = False
    attempt: int = 1  # the interrupted run's attempt (1: a regular run)
    session_kind: str | None = None
    id: int = 0
    planned_at_ms: int | None = None

    @property
    def interrupted_at_ms(self) -> int:
        return int(self.interrupted_at * MS)

    def run(self) -> RunObligation:
        """The planner's view of a cron obligation."""
        return RunObligation(self.ref, self.running_at_ms, self.interrupted_at_ms, self.attempt, self.one_shot)


@dataclass(frozen=True)
class RetrySent:
    """A retry gatewayd journaled for a job (dispatched or answered), as the store holds it."""

    attempt: int
    dispatched_at_ms: int


@dataclass(frozen=True)
class RunAtEnd:
    """A run the snapshot still had running when its boot ended, with what the store knows around
    it: the retries sent for its job from RETRY_START_MS before its start to RETRY_LATE_MS after,
    and the starts of the job's recorded runs (any boot) in the RETRY_START_MS + RETRY_EARLY_MS
    before it."""

    job_id: str
    running_at_ms: int
    agent_id: str | None
    name: str | None
    delete_after_run: bool
    schedule_kind: str | None
    retries_near: tuple[RetrySent, ...] = ()
    runs_before: tuple[int, ...] = ()


@dataclass(frozen=True)
class SessionAtEnd:
    """A session the snapshot still had with a turn in flight when its boot ended."""

    key: str
    agent_id: str | None
    kind: str | None


def attempt_of(run: RunAtEnd) -> int:
    """Was the interrupted run gatewayd's own retry? Then it carries that attempt's number, so a
    job whose retries keep killing the gateway runs out of attempts. It was when it is the first
    run of the job to start after a retry was sent, within RETRY_START_MS of it. Any earlier run
    since the send was that retry, and this one a regular run starting anew (found by the chaos
    benchmark: a one-minute job's next slot inherited a finished retry's attempt, so its
    interruption was given up as exhausted and never retried)."""
    near = [r for r in run.retries_near
            if run.running_at_ms - RETRY_START_MS <= r.dispatched_at_ms <= run.running_at_ms + RETRY_LATE_MS]
    if not near:
        return 1
    prior = max(near, key=lambda r: r.dispatched_at_ms)  # the latest; among equals, the first listed
    if any(prior.dispatched_at_ms - RETRY_EARLY_MS <= t < run.running_at_ms for t in run.runs_before):
        return 1
    return prior.attempt


def one_shot(delete_after_run: bool, schedule_kind: str | None) -> bool:
    return delete_after_run or schedule_kind == "at"


def obligations_at_end(boot: int, runs: Iterable[RunAtEnd], sessions: Iterable[SessionAtEnd], reason: str,
                       now: float) -> list[Obligation]:
    """What a boot that ended needing recovery leaves to finish: each run and each session turn
    still in flight. The store inserts them (an existing one, same key, stays as it is)."""
    out = [Obligation(ObligationKind.CRON, r.job_id, boot, now, reason, agent_id=r.agent_id,
                      running_at_ms=r.running_at_ms, name=r.name,
                      one_shot=one_shot(r.delete_after_run, r.schedule_kind), attempt=attempt_of(r))
           for r in runs]
    out += [Obligation(ObligationKind.SESSION, s.key, boot, now, reason, agent_id=s.agent_id, session_kind=s.kind)
            for s in sessions]
    return out


# -- runs cut unseen ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BootSpan:
    """A boot's lifetime as the store recorded it (wall clock, seconds)."""

    id: int
    started_at: float
    ended_at: float | None
    needs_recovery: bool
    exit_kind: str | None = None


def boot_of_mark(running_at_ms: int, boots: Iterable[BootSpan]) -> BootSpan | None:
    """The boot a run cut unseen started in: one that ended needing recovery, whose lifetime holds
    the mark (its start with SAME_RUN_MS of slack), and before the next boot began (a boot whose
    end was written late must not claim its successors' runs). None: the mark lies in no such boot
    (a live run of the current boot, a boot drained cleanly, an older crash's)."""
    spans = list(boots)
    found: BootSpan | None = None
    for b in spans:
        if (b.ended_at is None or not b.needs_recovery or b.started_at * 1000 - SAME_RUN_MS > running_at_ms
                or b.ended_at * 1000 < running_at_ms):
            continue
        if any(n.id > b.id and n.started_at * 1000 <= running_at_ms for n in spans):
            continue
        if found is None or b.id > found.id:
            found = b
    return found


@dataclass(frozen=True)
class Unseen:
    """`cut`: the marks that lie in an ended boot needing recovery (none is a run of the current
    boot); `added`: those no snapshot recorded, each with that boot, to record as its interrupted
    runs and obligations (a row the store holds for the run in another boot moves to that one)."""

    cut: frozenset[RunKey]
    added: tuple[tuple[BootSpan, RunItem], ...]


def place_unseen(marks: Iterable[RunItem], boots: Sequence[BootSpan],
                 recorded: Mapping[str, Iterable[tuple[int, int]]], obligated: Collection[RunKey]) -> Unseen:
    """`recorded`: per job, its recorded runs as (start, boot), those from SAME_RUN_MS before its
    earliest mark on; `obligated`: the marks an obligation exists for already (any boot)."""
    rows = {job: dict(runs) for job, runs in recorded.items()}  # start -> boot, as the moves leave it
    cut: set[RunKey] = set()
    added: list[tuple[BootSpan, RunItem]] = []
    for r in marks:
        boot = boot_of_mark(r.running_at_ms, boots)
        if boot is None:
            continue
        cut.add(r.key)
        # Seen already: a recorded run of the job in that boot that started at the mark or after
        # (2.26 writes the mark to its file when its timer claims the job and shows `cron.list` the
        # moment the run starts, 1 ms later, measured; a job never runs twice at once), or an
        # obligation for this very run, whatever boot holds it.
        job_rows = rows.setdefault(r.job_id, {})
        if r.key in obligated or any(b == boot.id and t >= r.running_at_ms - SAME_RUN_MS
                                     for t, b in job_rows.items()):
            continue
        # Recorded as a run of a later boot (by a gatewayd before this check, or while the check
        # failed): it is this boot's, cut; moved there, it becomes its obligation.
        if r.running_at_ms in job_rows:
            job_rows[r.running_at_ms] = boot.id
        added.append((boot, r))
    return Unseen(frozenset(cut), tuple(added))


# -- the actions journaled for an obligation --------------------------------------------------------


class ActionKind(StrEnum):
    CRON_RUN = "cron-run"  # a retry: cron.run
    AGENT_TURN = "agent-turn"  # a restart notice: an agent turn in the session


class ActionState(StrEnum):
    DISPATCHED = "dispatched"  # journaled before it was sent; no answer recorded (yet)
    ANSWERED = "answered"
    FAILED = "failed"  # refused
    UNCONFIRMED = "unconfirmed"  # sent, and its effect was never seen: it did not stand

    @property
    def out(self) -> bool:
        """Sent, and not known to have failed: its effect may still be seen."""
        return self in (ActionState.DISPATCHED, ActionState.ANSWERED)


@dataclass(frozen=True)
class Action:
    """One thing gatewayd sent about an obligation, journaled (with its key) before it was sent."""

    key: str
    kind: ActionKind
    attempt: int
    state: ActionState
    boot_id: int | None  # the boot whose gateway it was sent to
    dispatched_at_ms: int
    text: str | None = None  # a notice's text as sent (journaled since migration 12)
