"""The gateway's queue of system events, kept across its restarts: pure rules, no I/O.

Both real gateways keep queued system events (a webhook's "new mail", a reminder, a Slack click)
in process memory only, and lose them on every restart (measured on 2026.9.6 and 2026.2.26;
openclaw issue #132842). Both list them in `status.queuedSystemEvents`: texts only, oldest first,
of the main sessions' queues (2026.9.x: every agent's, in roster order, with no boundary between
agents; 2026.2.x: the default agent's, where every RPC-queued event lands). gatewayd looks at that
list while the gateway runs and, after the gateway's end, queues again what the next gateway no
longer holds. `docs/research/agents-after-restart.md` has the measurements.

Delivery: a turn of the main session drains its queue into the model's request (a heartbeat turn,
a wake, `chat.send`; not an `agent` turn, measured on both), so a look taken before a main-session
turn started may list texts the model has since received. The rule: a look is good until a
main-session turn starts; then it is void until the next look (`QueueLook.void`). Where the
version's `chat.history` keeps what a turn drained (2026.2.x writes "System: [time] text" lines at
the head of the turn's user message, at the turn's start), that history decides each text instead:
drained after the look, or still lost with the gateway's memory.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from supervisor.core.inflight import lenient_ms, message_text

MAX_TEXT = 20_000  # the longest text kept; the gateway's own limit is lower
MAX_QUEUE = 400  # 20 per session (the gateway's cap) for 20 agents


class QueueUnreadable(ValueError):
    """The `status` answer carries no readable queue."""


def parse_queue(status: Any) -> tuple[str, ...]:
    """`status.queuedSystemEvents` as a tuple of texts. Raises `QueueUnreadable` naming the field."""
    if not isinstance(status, dict):
        raise QueueUnreadable("status: not an object")
    raw = status.get("queuedSystemEvents", [])  # 2026.9.x leaves it out when empty in some builds
    if not isinstance(raw, list):
        raise QueueUnreadable("status.queuedSystemEvents: not a list")
    if len(raw) > MAX_QUEUE:
        raise QueueUnreadable(f"status.queuedSystemEvents: {len(raw)} entries (at most {MAX_QUEUE} expected)")
    texts: list[str] = []
    for i, item in enumerate(raw):
        if not isinstance(item, str) or not item.strip():
            raise QueueUnreadable(f"status.queuedSystemEvents[{i}]: not a non-empty string")
        texts.append(item[:MAX_TEXT])
    return tuple(texts)


def is_main_session(key: object) -> bool:
    """`agent:<id>:main`: the sessions whose queues `status` lists (the default main key)."""
    if not isinstance(key, str):
        return False
    parts = key.split(":")
    return len(parts) == 3 and parts[0] == "agent" and parts[2] == "main" and bool(parts[1])


def listed_session_of(status: Any) -> str | None:
    """The session whose queue a 2026.2.x `status` lists: the default agent's main session, named in
    the same answer (`heartbeat.defaultAgentId`, built from the same config as its queue). None where
    the answer does not say: every main session then counts as a drain."""
    beat = status.get("heartbeat") if isinstance(status, dict) else None
    agent = beat.get("defaultAgentId") if isinstance(beat, dict) else None
    return f"agent:{agent}:main" if isinstance(agent, str) and agent.strip() and ":" not in agent else None


def drains_listed(key: object, listed_session: str | None) -> bool:
    """Can a turn of session `key` drain texts that `status` lists? A queue is drained only by a turn
    of its own session. `listed_session`: the one session whose queue the version lists (2026.2.x:
    the default agent's main session, where every RPC-queued event goes; measured); None: every
    main session's (2026.9.x), or the default agent is not known."""
    if not is_main_session(key):
        return False
    return listed_session is None or str(key).lower() == listed_session.lower()


EVERY_MAIN = "*"  # in `QueueLook.heard`: every main session (a version that shows every start to every connection)


@dataclass(frozen=True)
class TurnEnd:
    """A main-session run's end that gatewayd heard, in a session whose every turn start it hears."""

    session: str
    at_ms: int
    started_ms: int | None = None  # the run's own start, as its end says (2026.9.x)


@dataclass(frozen=True)
class QueueLook:
    """The last look at one boot's queue. `void`: a main-session turn started after it, so its
    texts may have reached the model already; the next look replaces it. What gatewayd heard from
    the look to that gateway's end, kept only where it heard the gateway's every event to its end
    on a connection that kept up (`unexplained_moves`): `heard`, the main sessions whose every turn
    start it hears; `quiet`, those of them known to run nothing from the look on (a run's end heard
    there before it, nothing heard there since); `ends`, the run ends it heard in them."""

    boot: int
    texts: tuple[str, ...]
    looked_at_ms: int
    void: bool = False
    ends: tuple[TurnEnd, ...] = ()
    listed: str | None = None  # the one session whose queue it lists (2026.2.x), else None: every main one
    heard: tuple[str, ...] = ()
    quiet: tuple[str, ...] = ()
    maybe_shown: tuple[int, ...] = ()  # positions a 2026.9.x heartbeat going on may have shown the model


# How far a main-session row's `updatedAt` lies from the moment gatewayd heard that session's turn
# end: 2026.9.6 writes the row 2-10 ms before the event, 2026.2.26 2-7 ms after it (measured,
# docs/research/agents-after-restart.md section 7); the rest is room for a loaded machine.
END_ROW_BEFORE_MS = 250
END_ROW_AFTER_MS = 250
# How far a row's `startedAt` may lie from the start its run's heard end names: the gateway stamps
# the two in separate steps of one run's start (the fake: a few ms apart).
START_ROW_MS = 250


def _named(session: str, sessions: Sequence[str]) -> bool:
    return EVERY_MAIN in sessions or session.lower() in {s.lower() for s in sessions}


def unexplained_moves(session: str, started_ms: int | None, updated_ms: int | None, look: QueueLook) -> list[int]:
    """The times of a main row (`startedAt`, `updatedAt`) that may be a turn that took the look's texts
    to the model, given what gatewayd heard from the look to the gateway's end (asked only of a look
    that stayed good, watched to the end). Both versions send a turn's lifecycle start before its
    model call, and the watcher reads every frame the gateway wrote before it died, so a turn that
    started after the look would have voided it. A message steered into a running turn drains the
    queue with no start of its own (measured on both, sections 13 and 16: the texts reach no model,
    the gateway loses them itself), and a run may go on unheard in a session where nothing has
    shown it yet (one that began before gatewayd connected; 9.6's resume of a cut turn moves the row
    seconds before it shows anything, research section 13). So, in a session whose every start it
    hears:
    - known to run nothing from the look on (`quiet`), a move of `updatedAt` took no text to a model:
      a drain cut before its turn's start went out (9.6's heartbeat drains ~150 ms before its start,
      section 11; a `chat.send` accepted, then the kill); the model never saw those texts, and the
      gateway's memory lost them. `startedAt` after the look still counts (a start went unheard);
    - otherwise only the moves of a heard end are explained: `updatedAt` next to it, `startedAt` next
      to the start it names (9.6's resume writes its own at its end). A kill within ~0.05 s of a
      turn's end, before the look could be taken again, set texts aside so (fake chaos seed 5172:
      10 of 400; seed 7402: 4 of 400 behind 9.6's resume, whose end voided the look).
    In any other session every move counts."""
    times = [started_ms, updated_ms]
    if _named(session, look.heard) and _named(session, look.quiet):
        times[1] = None
    elif _named(session, look.heard):
        own = [e for e in look.ends if e.session.lower() == session.lower()]
        if started_ms is not None and any(e.started_ms is not None and abs(e.started_ms - started_ms) <= START_ROW_MS
                                          for e in own):
            times[0] = None
        if updated_ms is not None and any(e.at_ms - END_ROW_BEFORE_MS <= updated_ms <= e.at_ms + END_ROW_AFTER_MS
                                          for e in own):
            times[1] = None
    return [t for t in times if t is not None]


# 2026.9.6 takes a main session's queue 75-377 ms before a user's turn that took it stamps its
# row's `startedAt` (`chat.send`, 4 of 4, research section 15; the fake stamps the two in one step);
# the rest is room for timer steps.
RUN_BEFORE_DRAIN_MS = 50
# How long after a run's end 9.6 writes the row's `updatedAt` (4-38 ms measured, section 15). Kept
# short: a run admitted right after it moves `updatedAt` before its own start is stored.
END_WRITE_MS = 100


def ended_before(status: str | None, started_ms: int | None, ended_ms: int | None, updated_ms: int | None,
                 since_ms: int) -> bool:
    """2026.9.x, the row half of "no run took the texts after `since_ms`", for a main row read after
    its gateway died: its last run started at least RUN_BEFORE_DRAIN_MS before then, has ended, and
    nothing was written to the row after that end (`updatedAt` within END_WRITE_MS of `endedAt`).
    A user's turn takes the queue before it stamps its start, so a look after that start saw the
    queue after its drain, and a later run would have stamped its own start. The history must add
    that the run was a user's turn, unsteered (`user_turn_alone`): a heartbeat woken by cron or exec
    work keeps the texts it shows the model queued until its end (section 15). Fake chaos seed 7452
    set 4 texts aside behind rows like this (an `agent` turn started 104 and 256 ms before the look,
    ended while gatewayd was down)."""
    if status in (None, "running") or started_ms is None or ended_ms is None or updated_ms is None:
        return False
    return (started_ms <= since_ms - RUN_BEFORE_DRAIN_MS and started_ms <= ended_ms
            and ended_ms - END_ROW_BEFORE_MS <= updated_ms <= ended_ms + END_WRITE_MS)


def user_turn_alone(history: Any, run_id: str, started_ms: int, until_ms: int) -> bool | None:
    """2026.9.x, the history half (a session's `chat.history`, its last messages by position): was
    the run `run_id`, which started at `started_ms`, a user's turn (its request is shown, keyed
    `<run_id>:user`; a heartbeat's is not), with no user message stamped after its start up to its
    gateway's end (a message steered into it, which takes the queue with no start of its own,
    section 16)? The run's own request in the answer means every message written after it is
    there too. None: unreadable."""
    messages = history.get("messages") if isinstance(history, Mapping) else None
    if not isinstance(messages, list):
        return None
    key = f"{run_id}:user"
    own = steered = False
    for m in messages:
        if not isinstance(m, Mapping) or m.get("role") != "user":
            continue
        meta = m.get("__openclaw")
        meta = meta if isinstance(meta, Mapping) else {}
        own = own or (bool(run_id) and key in (m.get("idempotencyKey"), meta.get("idempotencyKey")))
        at = lenient_ms(m.get("timestamp"))
        steered = steered or (at is not None and started_ms < at <= until_ms)
    return own and not steered


def with_late_sends(look: QueueLook, sends: Sequence[tuple[str, int]]) -> QueueLook:
    """A dead boot's last look with the texts gatewayd queued again into that gateway after the look's
    time (`sends`: text, journaled at ms; answered, in send order). That gateway held them too, and
    one killed before its next look took them along unplanned (fake chaos, seed 4141: 7 of 400 lost
    so). A send journaled after the look's time may still be in what the look listed (its `status`
    read the queue after the send arrived): a text the look lists is taken as that send, never
    added twice (an equal text of the user's own is then set aside with it: lost, never doubled).
    The look's time stays its own: a main-session turn after it may have drained them all."""
    late, _ = _late(look, sends)
    return replace(look, texts=look.texts + late) if late else look


# A turn whose row is dated up to this long before a send may still drain what the send queued: a
# row is written as the turn is accepted, its drain follows (2026.2.x: at the reply's start, ms
# later; 2026.9.6's heartbeat ~150 ms before its start event, research section 11), more on a
# loaded machine (a review: an unwatched 2.26 turn admitted 1.2 s before a send that drains after it).
ACCEPT_TO_DRAIN_MS = 2000


def judged_looks(look: QueueLook, sends: Sequence[tuple[str, int]]) -> list[QueueLook]:
    """What to judge of a dead boot: its last look, and the texts queued again into it after that
    look (`with_late_sends`) as a look of their own, dated `ACCEPT_TO_DRAIN_MS` before the first
    such send, so that a main-session turn between the look and the send, which cannot have drained
    them, does not set them aside (fake chaos seed 5171: 4 of 400 so, behind 2026.9.6's own resume).
    Their positions follow the look's. What was heard from the look to the end holds from the send
    on too. A void look keeps them with it: a turn started after the look, maybe after the send, and
    its time is not kept."""
    late, first_ms = _late(look, sends)
    if not late or look.void or first_ms is None or first_ms - ACCEPT_TO_DRAIN_MS <= look.looked_at_ms:
        return [with_late_sends(look, sends)]
    # (sent after the look, which a heartbeat's hold already covered: none was in its request)
    return [look, replace(look, texts=late, looked_at_ms=first_ms - ACCEPT_TO_DRAIN_MS, maybe_shown=())]


def _late(look: QueueLook, sends: Sequence[tuple[str, int]]) -> tuple[tuple[str, ...], int | None]:
    """The sends after the look that it does not list, and when the first of them was journaled."""
    unmatched = list(look.texts)
    late: list[str] = []
    first_ms: int | None = None
    for text, at_ms in sends:
        if at_ms < look.looked_at_ms:
            continue  # sent before the look: what it lists of it, it carries
        if text in unmatched:
            unmatched.remove(text)
        else:
            late.append(text)
            first_ms = at_ms if first_ms is None else min(first_ms, at_ms)
    return tuple(late), first_ms


class Fate(enum.Enum):
    REQUEUE = "requeue"  # the next gateway does not hold it: queue it again
    HELD = "held"  # the next gateway holds it (a restart that kept the process's memory)
    UNKNOWN = "unknown"  # the look was void or stale: never queued twice, so not queued again
    DELIVERED = "delivered"  # the history shows a turn after the look drained it to the model


@dataclass(frozen=True)
class EventFate:
    pos: int
    text: str
    fate: Fate
    why: str


def unheld(texts: Sequence[str], held: Sequence[str]) -> list[bool]:
    """For each text of the dead boot's look, is it missing from what the new gateway holds?
    Matched in order, each held text at most once (equal texts are distinct events): the longest
    common subsequence, and among equally long ones the one that keeps the latest texts, since a
    queue loses its oldest first (a drain, the cap of 20)."""
    n, m = len(texts), len(held)
    # best[i][j]: how many of texts[i:] can be matched, in order, within held[j:]
    best = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            best[i][j] = best[i + 1][j + 1] + 1 if texts[i] == held[j] else max(best[i + 1][j], best[i][j + 1])
    missing = [True] * n
    i = j = 0
    while i < n and j < m:
        if best[i + 1][j] == best[i][j]:
            i += 1  # texts[i] need not be matched: leave the held ones for later texts
        elif texts[i] == held[j]:
            missing[i] = False
            i, j = i + 1, j + 1
        else:
            j += 1
    return missing


HISTORY_TEXT_CHARS = 10_000  # 2026.2.x's chat.history cuts a longer text (at 12,000): matched by its start


def drained_after(history: object, texts: Sequence[str], since_ms: int, until_ms: int) -> bool | None:
    """Did a main-session turn stamped in [since_ms, until_ms] drain the queue a look saw, from the
    session's `chat.history` (2026.2.x writes the drained events as "System: [time] text" lines at
    the head of the turn's request, at its start, measured)? Only asked where a turn is known to
    have run after the look.
    - True: a request there carries one of the look's texts as such a line. A turn drains the whole
      queue, so every text of the look went with it (also those the gateway rewrites or hides).
    - False: requests were written there and none carries any: the turns did not drain the queue
      (an `agent` turn does not).
    - None, the history cannot tell: malformed; no message before `since_ms` (a session's first
      turn is written only at its end, measured); or no request in the window although a turn ran
      (a heartbeat turn answered HEARTBEAT_OK is cut from the transcript, and heartbeats drain)."""
    if not isinstance(history, Mapping) or not isinstance(history.get("messages"), list):
        return None
    patterns = [_system_line(t) for t in texts if t.strip()]
    earlier = False
    requests: list[str] = []
    for msg in history["messages"]:
        if not isinstance(msg, Mapping):
            return None
        at = lenient_ms(msg.get("timestamp"))
        if at is None:
            continue
        if at < since_ms:
            earlier = True
        elif at <= until_ms and msg.get("role") == "user":
            requests.append(message_text(msg.get("content"), sep="\n"))
    if not earlier or not requests:
        return None
    return any(p.search(r) for p in patterns for r in requests)


def _system_line(text: str) -> re.Pattern[str]:
    """The line a drained event makes: at a line's start, the whole text, then the line's end (a
    longer text only by its start, which the history keeps)."""
    if len(text) > HISTORY_TEXT_CHARS:
        return re.compile(r"(?:^|\n)System: \[[^\]\n]*\] " + re.escape(text[:HISTORY_TEXT_CHARS]))
    return re.compile(r"(?:^|\n)System: \[[^\]\n]*\] " + re.escape(text) + r"(?=\n|$)")


SHOWN_WHY = "a heartbeat going on at the last look may have shown it to the model (it keeps such texts queued)"


def plan(look: QueueLook, held: Sequence[str], watched_end: bool, turn_after_look: bool,
         drained: bool | None = None) -> list[EventFate]:
    """What to do with each text of a dead boot's last look. `watched_end`: gatewayd watched the
    gateway from the look to its end. `turn_after_look`: a main session's row (read from the next gateway) says a turn
    started after the look and before the dead gateway's end. A queue is drained only by a turn:
    with none after the look, the look still holds, even when the end was not watched; with one,
    the texts may have reached the model, even when it was (the watcher may miss a turn that starts
    as the gateway dies, or that ran while gatewayd was down before it adopted the gateway).
    `drained`: what the history says of the turns after the look (`drained_after`); known, it
    decides instead of the void and the turn."""
    if not look.texts:
        return []
    if drained is False and not watched_end:
        # 2.x cuts a turn answered HEARTBEAT_OK from the history (and heartbeats drain): one that ran
        # unseen can hide behind a later turn that drained nothing. Only a watcher would have seen it
        # start (and voided the look), so "not drained" is trusted only where gatewayd watched.
        drained = None
    if drained:
        why = "a turn after the last look drained the queue (chat.history)"
        return [EventFate(i, t, Fate.DELIVERED, why) for i, t in enumerate(look.texts)]
    # drained False: the history shows no turn after the look drained it, so the look still holds.
    if drained is None and look.void:
        why = "a main-session turn started after the last look and may have received it"
        return [EventFate(i, t, Fate.UNKNOWN, why) for i, t in enumerate(look.texts)]
    if drained is None and turn_after_look:
        why = ("a main-session turn started after the last look, before the gateway's end: it may have"
               " received it" + ("" if watched_end else " (not watched from the look to the end)"))
        return [EventFate(i, t, Fate.UNKNOWN, why) for i, t in enumerate(look.texts)]
    fates: list[EventFate] = []
    for i, (text, missing) in enumerate(zip(look.texts, unheld(look.texts, held), strict=True)):
        if i in look.maybe_shown:
            fates.append(EventFate(i, text, Fate.UNKNOWN, SHOWN_WHY))
        elif missing:
            fates.append(EventFate(i, text, Fate.REQUEUE, "lost with the gateway's memory"))
        else:
            fates.append(EventFate(i, text, Fate.HELD, "the new gateway still holds it"))
    return fates


class LostAnswer(enum.Enum):
    """A send journaled by a gatewayd that died before its answer."""

    ARRIVED = "observed"  # the queue shows it
    UNSURE = "unconfirmed"  # not queued, but a turn may have drained it: never sent twice
    NEVER = "resend"  # not queued, and no main-session turn since: it never arrived


def lost_answer(queued: bool, main_turn_since: bool) -> LostAnswer:
    if queued:
        return LostAnswer.ARRIVED
    return LostAnswer.UNSURE if main_turn_since else LostAnswer.NEVER
