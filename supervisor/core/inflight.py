"""What is in flight in the gateway, from its answers: pure parsing and diffing, no I/O.

Sources per version:
- current (2026.9.x): `sessions.list` rows carry `hasActiveRun` (authoritative) and `activeRunIds`;
  `status` may stay "running" on a stale row after a crash, so it is never used for activity.
- legacy (2026.2.x): rows carry no activity fields at all. Activity comes from the WebSocket `agent`
  events (`stream: "lifecycle"`, `data.phase` "start"/"end", with `runId` and `sessionKey`), which
  every operator connection receives (measured), tracked by `LegacyActivity`. "Updated recently"
  is not activity: an idle session touched 10 s before a crash must not count.
- both: `cron.list` jobs with `state.runningAtMs` are runs in flight; a run is identified by
  `(jobId, runningAtMs)`, the obligation recovery works with.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from supervisor.core.planner import QUOTE_LEAD
from supervisor.core.wake_plan import WAKE_MARK
from supervisor.errors import GatewayProtocolError

INTERRUPTED_ERROR = "cron: job interrupted by gateway restart"  # 2026.9.x's startup repair of a cut run


@dataclass(frozen=True)
class SessionItem:
    key: str
    agent_id: str
    kind: str  # "main", "cron-run", "hook", "subagent", "other"
    session_id: str | None
    run_ids: tuple[str, ...]
    last_activity_ms: int | None


@dataclass(frozen=True)
class RunItem:
    job_id: str
    running_at_ms: int
    name: str
    agent_id: str
    payload_kind: str
    session_target: str
    schedule_kind: str
    receipt_id: str | None
    delete_after_run: bool
    enabled: bool

    @property
    def key(self) -> tuple[str, int]:
        return (self.job_id, self.running_at_ms)


@dataclass(frozen=True)
class InFlight:
    sessions: Mapping[str, SessionItem] = field(default_factory=dict)
    runs: Mapping[tuple[str, int], RunItem] = field(default_factory=dict)


@dataclass(frozen=True)
class Delta:
    sessions_started: tuple[SessionItem, ...] = ()
    sessions_changed: tuple[SessionItem, ...] = ()
    sessions_ended: tuple[str, ...] = ()
    runs_started: tuple[RunItem, ...] = ()
    runs_ended: tuple[tuple[str, int], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.sessions_started or self.sessions_changed or self.sessions_ended
                    or self.runs_started or self.runs_ended)


def agent_of(key: str, default: str = "main") -> str:
    parts = key.split(":")
    return parts[1] if len(parts) >= 2 and parts[0] == "agent" and parts[1] else default


def kind_of(key: str) -> str:
    parts = key.split(":")
    if len(parts) >= 3 and parts[0] == "agent":
        rest = parts[2:]
        if rest == ["main"]:
            return "main"
        if rest[0] == "cron" and "run" in rest:
            return "cron-run"  # an isolated run's session: never takes another turn
        if rest[0] == "cron":
            return "cron"
        if rest[0] in ("hook", "subagent"):
            return rest[0]
    return "other"


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise GatewayProtocolError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _list(obj: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = obj.get(key)
    if not isinstance(value, list):
        raise GatewayProtocolError(f"{where}: field {key!r} must be a list")
    return value


def _str(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise GatewayProtocolError(f"{where}: field {key!r} must be a non-empty string")
    return value


def _int_or_none(value: Any) -> int | None:
    """An optional timestamp: absent or null is None; anything else must be a usable number."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or (
            isinstance(value, float) and not math.isfinite(value)) or not 0 <= value < 2**53:
        raise GatewayProtocolError(f"timestamp {str(value)[:40]!r} is not a number of milliseconds")
    return int(value)


def parse_sessions(payload: Any, legacy_active: Mapping[str, tuple[str, ...]] | None = None,
                   default_agent: str = "main", legacy_starts: Mapping[str, int] | None = None
                   ) -> dict[str, SessionItem]:
    """Active sessions from a `sessions.list` answer. With `legacy_active` (2026.2.x) activity comes
    from it (session key -> run ids), not from the rows, and a session's last activity is its
    turn's start (`legacy_starts`), which recovery finds the turn by in the session's history."""
    starts = legacy_starts or {}
    where = "sessions.list"
    rows = _list(_obj(payload, where), "sessions", where)
    out: dict[str, SessionItem] = {}
    for i, raw in enumerate(rows):
        row = _obj(raw, f"{where}.sessions[{i}]")
        key = _str(row, "key", f"{where}.sessions[{i}]")
        if legacy_active is not None:
            run_ids = legacy_active.get(key, ())
            active = bool(run_ids)
        else:
            ids = row.get("activeRunIds")
            run_ids = tuple(str(x) for x in ids) if isinstance(ids, list) else ()
            has = row.get("hasActiveRun")
            if has is not None and not isinstance(has, bool):
                raise GatewayProtocolError(f"{where}.sessions[{i}]: field 'hasActiveRun' must be a boolean")
            active = bool(has) if has is not None else bool(run_ids)
        if not active:
            continue
        agent = row.get("agentId") if isinstance(row.get("agentId"), str) else agent_of(key, default_agent)
        last = starts.get(key) or lenient_ms(row.get("lastActivityAt")) or lenient_ms(row.get("updatedAt"))
        sid = row.get("sessionId")
        out[key] = SessionItem(key, str(agent), kind_of(key), sid if isinstance(sid, str) else None,
                               run_ids, last)
    if legacy_active is not None:
        # A turn whose session row is not listed yet (a first turn) is still in flight.
        for key, run_ids in legacy_active.items():
            if key not in out and run_ids:
                out[key] = SessionItem(key, agent_of(key, default_agent), kind_of(key), None, run_ids,
                                       starts.get(key))
    return out


FINAL_STOPS = ("stop", "length")  # a turn's last answer; "toolUse" goes on, and after "error" 2.x may retry
TURN_START_SLACK_MS = 500  # a turn's user message is stamped ~2 ms before its lifecycle start (measured)


def legacy_turn_ended(history: Any, turn_started_ms: int, gateway_ended_ms: int) -> bool:
    """2026.2.x: had the session's turn that started at `turn_started_ms` ended before its gateway
    died (by `gateway_ended_ms`)? From a `chat.history` answer, whose messages carry `timestamp`
    (ms): the turn's user message (stamped just before its start) and, when it ends, an assistant
    message with a final `stopReason` (stamped when its model call began, so not before the turn's
    start). This version appends each message as it comes (a session's first turn only at its
    end), and a kill leaves what was written. So the turn ended when the last message the dead
    gateway wrote since the turn's start is a final assistant message; a turn cut before its
    first write leaves nothing since its start, so it did not (the slack before the start is for
    its user message only: an earlier turn's answer never counts). A later turn cut in the same
    session (started unseen while gatewayd was down) leaves its user message last: not ended
    either, and the notice is due all the same. Unmeasured stop reasons count as not ended: a
    doubled notice costs less than a lost one."""
    last = _last_written(history, turn_started_ms, gateway_ended_ms)
    return last is not None and last.get("role") == "assistant" and last.get("stopReason") in FINAL_STOPS


def _last_written(history: Any, turn_started_ms: int, gateway_ended_ms: int) -> Mapping[str, Any] | None:
    """The last message of a `chat.history` answer the dead gateway wrote since the turn's start
    (slack before the start for the turn's own user message only). Raises on a malformed answer."""
    where = "chat.history"
    messages = _list(_obj(history, where), "messages", where)
    last: Mapping[str, Any] | None = None
    for i, raw in enumerate(messages):
        msg = _obj(raw, f"{where}.messages[{i}]")
        at = lenient_ms(msg.get("timestamp"))
        since = turn_started_ms - (TURN_START_SLACK_MS if msg.get("role") == "user" else 0)
        if at is not None and since <= at <= gateway_ended_ms:
            last = msg
    return last


QUOTE_CHARS = 300  # of an interrupted request, in a notice
_ENVELOPE = re.compile(r"^\[\w{3} \d{4}-\d\d-\d\d \d\d:\d\d(?: \w+)?\] ")


def interrupted_request(history: Any, turn_started_ms: int, gateway_ended_ms: int,
                        notice_marker: str = "") -> str | None:
    """2026.2.x: the text of the user message that started the interrupted turn, shortened, from a
    `chat.history` answer: the last user message the dead gateway wrote since the turn's start, with
    no answer after it. None when there is none (a session's first turn is written only at its end,
    measured) or the history is unreadable. The model never sees that message again after a
    restart (measured), so a notice that quotes it lets the agent pick the work up."""
    try:
        last = _last_written(history, turn_started_ms, gateway_ended_ms)
    except GatewayProtocolError:
        return None
    if last is None or last.get("role") != "user":
        return None
    text = _without_drained_events(message_text(last.get("content")))
    text = _ENVELOPE.sub("", " ".join(text.split()))  # the gateway's "[Sun 2026-12-06 08:43 UTC] " prefix
    if notice_marker and notice_marker in text:
        # gatewayd's own notice was the cut turn: the request it quoted, never the notice itself
        # (found by the chaos benchmark, real 2026.2.26, seed 4343: a notice quoting a notice,
        # with the system events that turn had drained).
        lead = QUOTE_LEAD.strip()
        text = text.split(lead, 1)[1].rsplit('"', 1)[0] if lead in text else ""
        return text or None
    if not text or text.startswith(WAKE_MARK):
        # gatewayd's own wake was the cut turn (fake chaos seed 7451: quoted, its text reached the
        # model twice): no user's request, and the new notice says the gateway restarted.
        return None
    return text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS - 1] + "…"


def _without_drained_events(text: str) -> str:
    """A request's own text without the "System: [..] ..." lines a turn drained into it (2026.2.x
    writes them before the request): those were events, delivered once already, not the request."""
    head, sep, rest = text.partition("\n\n")
    while sep and head.startswith("System: ["):
        head, sep, rest = rest.partition("\n\n")
    return head + sep + rest if not head.startswith("System: [") else ""


def unseen_lost_turn(history: Any, since_ms: int, before_ms: int, notice_marker: str) -> int | None:
    """2026.2.x: a turn that started while gatewayd was down and died with its gateway, found in the
    session's `chat.history`: the last message stamped in [since_ms, before_ms) (the dead gateway's
    life) is a user message with no answer after it. Returns that message's time (the turn's start),
    or None. A notice of gatewayd's own that was cut is no new turn (`notice_marker` in its text):
    it is never noticed a second time. A session's first turn is written only at its end (measured),
    so a first turn cut this way leaves nothing to find."""
    try:
        messages = _list(_obj(history, "chat.history"), "messages", "chat.history")
    except GatewayProtocolError:
        return None
    last: Mapping[str, Any] | None = None
    last_at = 0
    for raw in messages:
        if not isinstance(raw, Mapping):
            continue
        at = lenient_ms(raw.get("timestamp"))
        if at is not None and since_ms <= at < before_ms and at >= last_at:
            last, last_at = raw, at
    text = message_text(last.get("content")) if last is not None else ""
    if last is None or last.get("role") != "user" or notice_marker in text or WAKE_MARK in text:
        return None  # a cut wake of gatewayd's own is no user's turn either (fake chaos seed 7451)
    return last_at


def message_text(content: Any, sep: str = " ") -> str:
    """A `chat.history` message's text: the string, or its text parts joined by `sep`."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return sep.join(str(p["text"]) for p in content
                        if isinstance(p, Mapping) and isinstance(p.get("text"), str))
    return ""


def lenient_ms(value: Any) -> int | None:
    """A time in ms for fields that only inform a decision: absent or unusable (a bool, a string,
    negative, non-finite, beyond 2**53) is None, not an error."""
    try:
        return _int_or_none(value)
    except GatewayProtocolError:
        return None


def parse_runs(payload: Any, default_agent: str = "main") -> dict[tuple[str, int], RunItem]:
    """Cron runs in flight from a `cron.list` answer: jobs whose state has `runningAtMs`."""
    return {item.key: item for item in _job_runs(payload, default_agent, with_interrupted=False)}


def parse_left_behind(payload: Any, default_agent: str = "main") -> dict[tuple[str, int], RunItem]:
    """Runs a `cron.list` answer shows as cut by a restart: still marked running (before 2026.9.x's
    startup repair), or repaired into `lastError` "cron: job interrupted by gateway restart" with
    `lastRunAtMs` the same mark (after it). Which boot they belong to is the store's question."""
    return {item.key: item for item in _job_runs(payload, default_agent, with_interrupted=True)}


def _job_runs(payload: Any, default_agent: str, with_interrupted: bool) -> Iterable[RunItem]:
    where = "cron.list"
    jobs = _list(_obj(payload, where), "jobs", where)
    for i, raw in enumerate(jobs):
        job = _obj(raw, f"{where}.jobs[{i}]")
        state = job.get("state") or {}
        if not isinstance(state, dict):
            raise GatewayProtocolError(f"{where}.jobs[{i}]: field 'state' must be an object")
        marks = [_int_or_none(state.get("runningAtMs"))]
        if with_interrupted and state.get("lastError") == INTERRUPTED_ERROR:
            marks.append(_int_or_none(state.get("lastRunAtMs")))
        for running in marks:
            if running is None:
                continue
            job_id = _str(job, "id", f"{where}.jobs[{i}]")
            schedule: dict[str, Any] = job["schedule"] if isinstance(job.get("schedule"), dict) else {}
            payload_obj: dict[str, Any] = job["payload"] if isinstance(job.get("payload"), dict) else {}
            agent = job.get("agentId") or job.get("effectiveAgentId") or default_agent
            receipt = state.get("runningReceiptId") if running == marks[0] else None
            yield RunItem(
                job_id=job_id, running_at_ms=running, name=str(job.get("name") or ""), agent_id=str(agent),
                payload_kind=str(payload_obj.get("kind") or ""), session_target=str(job.get("sessionTarget") or ""),
                schedule_kind=str(schedule.get("kind") or ""),
                receipt_id=receipt if isinstance(receipt, str) else None,
                delete_after_run=bool(job.get("deleteAfterRun")) or schedule.get("kind") == "at",
                enabled=job.get("enabled") is not False,
            )


def parse_started(payload: Any) -> RunItem | None:
    """The run a `cron` event with action "started" announces, or None for any other action or an
    event without its job. 2026.9.x sends the job, whose `state.runningAtMs` is the poll's key
    (measured on the real gateway). 2026.2.x sends only `runAtMs`, which is not: its timer marks
    every due job running at one instant (what `cron.list` shows) and announces each one as it
    actually starts, later (measured: 17 of 17 timer runs in a chaos run). So 2.x runs are left
    to the polls, which each such event triggers at once."""
    where = "cron event"
    event = _obj(payload, where)
    if event.get("action") != "started" or event.get("job") is None:
        return None
    job_id = _str(event, "jobId", where)
    run_at = _int_or_none(event.get("runAtMs"))
    job = dict(_obj(event["job"], f"{where}.job"))
    state = job.get("state") or {}
    if not isinstance(state, dict):
        raise GatewayProtocolError(f"{where}.job: field 'state' must be an object")
    state = dict(state)
    if _int_or_none(state.get("runningAtMs")) is None:  # runAtMs names the same instant
        if run_at is None:
            raise GatewayProtocolError(f"{where}: neither 'runAtMs' nor 'job.state.runningAtMs' is a time")
        state["runningAtMs"] = run_at
    job.update(id=job_id, state=state)
    return next(iter(parse_runs({"jobs": [job]}).values()))


RunKey = tuple[str, int]
Heard = dict[RunKey, tuple[RunItem, float]]

SAME_RUN_MS = 1_000  # two marks of one job this close are one run (2026.2.x moves its mark; see below)


def keep_keys(polled: Mapping[RunKey, RunItem], previous: Mapping[RunKey, RunItem],
              slack_ms: int = SAME_RUN_MS) -> dict[RunKey, RunItem]:
    """2026.2.x moves a running job's `runningAtMs` by a few ms: its timer claims due jobs at one
    instant (the mark it writes to its jobs file), sets the run's own start in memory, and reloads
    the file later (measured on the real 2.26: 601044, then 601042, for one run). A polled mark
    within `slack_ms` of a mark the snapshot already holds for the job is that run, under its
    first key: not a run that ended and another that began."""
    out: dict[RunKey, RunItem] = {}
    for key, item in polled.items():
        if key not in previous:
            same = [k for k in previous if k[0] == key[0] and abs(k[1] - key[1]) <= slack_ms and k not in polled]
            if same:
                key = same[0]
                item = previous[key]
        out[key] = item
    return out


def carry_heard(polled: Mapping[RunKey, RunItem], heard: Mapping[RunKey, tuple[RunItem, float]],
                poll_began: float) -> tuple[dict[RunKey, RunItem], Heard]:
    """Runs in flight after a `cron.list` poll, given the runs heard of by events (run, when heard,
    on the same clock as `poll_began`). A run heard after the poll was asked for may be missing
    from its answer only because the answer is older than the event: it stays in flight until a
    later poll decides. Returns (runs in flight, runs still to be decided by a poll)."""
    runs = dict(polled)
    pending: Heard = {}
    for key, (item, heard_at) in heard.items():
        if key not in polled and heard_at >= poll_began:
            runs[key] = item
            pending[key] = (item, heard_at)
    return runs, pending


def diff(old: InFlight, new: InFlight) -> Delta:
    started = tuple(s for k, s in new.sessions.items() if k not in old.sessions)
    changed = tuple(s for k, s in new.sessions.items() if k in old.sessions and old.sessions[k] != s)
    ended = tuple(k for k in old.sessions if k not in new.sessions)
    runs_started = tuple(r for k, r in new.runs.items() if k not in old.runs)
    runs_ended = tuple(k for k in old.runs if k not in new.runs)
    return Delta(started, changed, ended, runs_started, runs_ended)


# Turns in flight at once on one 2.x gateway: far above any real one; `start` events with no `end`
# (a gateway that never sends them) must not grow gatewayd's memory without bound.
MAX_LEGACY_TURNS = 10_000
MAX_ID_CHARS = 1024  # a run id or session key longer than this is not one


@dataclass
class LegacyActivity:
    """2026.2.x turn tracking from `agent` lifecycle events: session key -> run ids in flight, and
    when each began (the event's `data.startedAt`), which dates the turn in the session's history."""

    runs: dict[str, str] = field(default_factory=dict)  # run id -> session key
    started: dict[str, int] = field(default_factory=dict)  # run id -> its start, ms

    def feed(self, payload: Any) -> bool:
        """One `agent` event payload; returns True when the set of active turns changed."""
        if not isinstance(payload, dict) or payload.get("stream") != "lifecycle":
            return False
        data = payload.get("data")
        run_id, key = payload.get("runId"), payload.get("sessionKey")
        if not isinstance(data, dict) or not isinstance(run_id, str) or not isinstance(key, str):
            return False
        if len(run_id) > MAX_ID_CHARS or len(key) > MAX_ID_CHARS:  # no real id is this long: not kept
            return False
        phase = data.get("phase")
        if phase == "start" and run_id not in self.runs:
            self.runs[run_id] = key
            at = lenient_ms(data.get("startedAt")) or lenient_ms(payload.get("ts"))
            if at is not None:
                self.started[run_id] = at
            while len(self.runs) > MAX_LEGACY_TURNS:  # starts with no end: the oldest go
                oldest = next(iter(self.runs))
                del self.runs[oldest]
                self.started.pop(oldest, None)
            return True
        if phase in ("end", "error") and run_id in self.runs:
            del self.runs[run_id]
            self.started.pop(run_id, None)
            return True
        return False

    def active(self) -> dict[str, tuple[str, ...]]:
        by_key: dict[str, list[str]] = {}
        for run_id, key in self.runs.items():
            by_key.setdefault(key, []).append(run_id)
        return {k: tuple(sorted(v)) for k, v in by_key.items()}

    def turn_starts(self) -> dict[str, int]:
        """Session key -> the start of its latest turn in flight, where the event said."""
        out: dict[str, int] = {}
        for run_id, at in self.started.items():
            key = self.runs[run_id]
            out[key] = max(at, out.get(key, at))
        return out


def merge_legacy_cron_sessions(sessions: dict[str, SessionItem], runs: Iterable[RunItem]) -> dict[str, SessionItem]:
    """2026.2.x: an isolated cron run's session is `agent:<agent>:cron:<jobId>`; count it active
    while its job shows `runningAtMs`, even between lifecycle events."""
    out = dict(sessions)
    for r in runs:
        key = f"agent:{r.agent_id}:cron:{r.job_id}"
        if key not in out and r.session_target == "isolated":
            out[key] = SessionItem(key, r.agent_id, "cron", None, (), r.running_at_ms)
    return out
