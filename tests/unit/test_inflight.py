"""The in-flight parser and diff (pure), for both gateway versions' shapes."""

from __future__ import annotations

from typing import Any

import pytest

from supervisor.core.inflight import (
    INTERRUPTED_ERROR,
    InFlight,
    LegacyActivity,
    carry_heard,
    diff,
    keep_keys,
    kind_of,
    legacy_turn_ended,
    merge_legacy_cron_sessions,
    parse_left_behind,
    parse_runs,
    parse_sessions,
    parse_started,
)
from supervisor.errors import GatewayProtocolError


def row(key: str, **kw: Any) -> dict[str, Any]:
    return {"key": key, "sessionId": "s-" + key[-4:], "updatedAt": 1000, **kw}


def job(job_id: str, running: int | None = None, **kw: Any) -> dict[str, Any]:
    state = {"nextRunAtMs": 5000} | ({"runningAtMs": running} if running is not None else {})
    return {"id": job_id, "name": f"n-{job_id}", "enabled": True, "schedule": {"kind": "every", "everyMs": 60000},
            "sessionTarget": "isolated", "payload": {"kind": "agentTurn", "message": "m"}, "state": state, **kw}


def test_current_rows_use_has_active_run_not_status() -> None:
    payload = {"sessions": [
        row("agent:main:main", hasActiveRun=True, activeRunIds=["r1"], status="running"),
        # stale after a crash: status says running, the authoritative aggregate says idle
        row("agent:main:cron:j1:run:abc", hasActiveRun=False, activeRunIds=[], status="running"),
        row("agent:ops:main", hasActiveRun=False, status="done"),
    ]}
    got = parse_sessions(payload)
    assert list(got) == ["agent:main:main"]
    s = got["agent:main:main"]
    assert (s.agent_id, s.kind, s.run_ids) == ("main", "main", ("r1",))


def test_legacy_activity_comes_from_lifecycle_events_not_updated_at() -> None:
    act = LegacyActivity()
    assert act.feed({"runId": "r1", "sessionKey": "agent:main:main", "stream": "lifecycle",
                     "data": {"phase": "start"}})
    assert not act.feed({"runId": "r1", "sessionKey": "agent:main:main", "stream": "assistant", "data": {}})
    recent = 999_999_999
    payload = {"sessions": [row("agent:main:main", updatedAt=recent), row("agent:ops:main", updatedAt=recent)]}
    got = parse_sessions(payload, act.active())
    assert list(got) == ["agent:main:main"]  # the idle, recently touched session is not active
    assert act.feed({"runId": "r1", "sessionKey": "agent:main:main", "stream": "lifecycle",
                     "data": {"phase": "end"}})
    assert parse_sessions(payload, act.active()) == {}


def test_legacy_turn_without_a_row_yet_is_in_flight() -> None:
    act = LegacyActivity()
    act.feed({"runId": "r9", "sessionKey": "agent:ops:main", "stream": "lifecycle", "data": {"phase": "start"}})
    got = parse_sessions({"sessions": []}, act.active())
    assert got["agent:ops:main"].agent_id == "ops"


def test_legacy_turn_start_is_the_sessions_last_activity() -> None:
    act = LegacyActivity()
    for run_id, at in (("r1", 5_000), ("r2", 7_000)):
        act.feed({"runId": run_id, "sessionKey": "agent:main:main", "stream": "lifecycle",
                  "data": {"phase": "start", "startedAt": at}})
    act.feed({"runId": "r3", "sessionKey": "agent:ops:main", "stream": "lifecycle", "ts": 6_000,
              "data": {"phase": "start"}})  # no startedAt: the event's own stamp
    assert act.turn_starts() == {"agent:main:main": 7_000, "agent:ops:main": 6_000}
    got = parse_sessions({"sessions": [row("agent:main:main", updatedAt=9_999)]}, act.active(),
                         legacy_starts=act.turn_starts())
    assert got["agent:main:main"].last_activity_ms == 7_000 and got["agent:ops:main"].last_activity_ms == 6_000
    act.feed({"runId": "r2", "sessionKey": "agent:main:main", "stream": "lifecycle", "data": {"phase": "end"}})
    assert act.turn_starts() == {"agent:main:main": 5_000, "agent:ops:main": 6_000}


def msg(role: str, at: int | None, stop: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"role": role, "content": [{"type": "text", "text": "x"}]}
    if at is not None:
        out["timestamp"] = at
    return out | ({"stopReason": stop} if stop else {})


TURN, DIED = 100_000, 200_000
BEFORE = [msg("user", 50_000), msg("assistant", 50_001, "stop")]  # a turn that had ended long before


@pytest.mark.parametrize(("messages", "ended"), [
    ([], False),  # a session's first turn, cut: 2.x writes it only at its end
    (BEFORE, False),  # cut before its user message was written: nothing after its start
    ([*BEFORE, msg("user", TURN - 2)], False),  # cut while the model answered
    ([*BEFORE, msg("user", TURN - 2), msg("assistant", TURN + 1, "toolUse"), msg("toolResult", TURN + 900)],
     False),  # cut between tool calls
    ([*BEFORE, msg("user", TURN - 2), msg("assistant", TURN + 1, "stop")], True),
    ([msg("user", TURN - 2), msg("assistant", TURN + 1, "stop")], True),  # a first turn, written at its end
    ([*BEFORE, msg("user", TURN - 2), msg("assistant", TURN + 1, "toolUse"), msg("toolResult", TURN + 900),
      msg("assistant", TURN + 901, "stop")], True),
    ([*BEFORE, msg("user", TURN - 2), msg("assistant", TURN + 1, "error")], False),  # 2.x may retry: unknown
    ([*BEFORE, msg("user", TURN - 2), msg("assistant", TURN + 1, "length")], True),
    ([msg("user", TURN - 300), msg("assistant", TURN - 299, "stop")], False),  # a quick turn just before it;
    # this one cut before its user message was written: the slack is for user messages only
    ([msg("user", TURN - 2), msg("assistant", TURN, "stop")], True),  # stamped at its start (measured)
    ([*BEFORE, msg("user", TURN - 2), msg("assistant", TURN + 1, "stop"), msg("user", TURN + 5_000)],
     False),  # it ended, then a turn no snapshot saw began and was cut: the notice is due all the same
    ([*BEFORE, msg("user", TURN - 2), msg("user", DIED + 5_000), msg("assistant", DIED + 5_001, "stop")],
     False),  # a turn of the next gateway answered: not the dead gateway's
    ([*BEFORE, msg("user", TURN - 2), msg("assistant", None, "stop")], False),  # unstamped: unknown
    ([*BEFORE, msg("user", TURN - 2), msg("assistant", TURN + 1)], False),  # no stopReason: unknown
])
def test_legacy_turn_ended_from_the_sessions_history(messages: list[dict[str, Any]], ended: bool) -> None:
    assert legacy_turn_ended({"sessionKey": "agent:main:main", "messages": messages}, TURN, DIED) is ended


@pytest.mark.parametrize("history", [None, [], {"messages": {}}, {"messages": ["x"]}])
def test_legacy_turn_ended_rejects_a_malformed_history(history: Any) -> None:
    with pytest.raises(GatewayProtocolError, match=r"chat\.history"):
        legacy_turn_ended(history, TURN, DIED)


def test_runs_are_jobs_with_running_at() -> None:
    runs = parse_runs({"jobs": [job("a", 1234), job("b"), job("c", 99, agentId="ops",
                                                             schedule={"kind": "at", "at": "x"})]})
    assert sorted(runs) == [("a", 1234), ("c", 99)]
    assert runs[("c", 99)].delete_after_run and runs[("c", 99)].agent_id == "ops"
    assert runs[("a", 1234)].payload_kind == "agentTurn" and not runs[("a", 1234)].delete_after_run


def test_legacy_cron_run_session_counts_while_the_job_runs() -> None:
    runs = parse_runs({"jobs": [job("j1", 50)]})
    merged = merge_legacy_cron_sessions({}, runs.values())
    assert merged["agent:main:cron:j1"].kind == "cron"


def test_diff_reports_only_changes() -> None:
    a = InFlight(parse_sessions({"sessions": [row("agent:main:main", hasActiveRun=True, activeRunIds=["r1"])]}),
                 parse_runs({"jobs": [job("a", 1)]}))
    b = InFlight(parse_sessions({"sessions": [row("agent:main:main", hasActiveRun=True, activeRunIds=["r2"])]}),
                 parse_runs({"jobs": [job("b", 2)]}))
    assert not diff(a, a)
    d = diff(a, b)
    assert [s.run_ids for s in d.sessions_changed] == [("r2",)]
    assert [r.key for r in d.runs_started] == [("b", 2)] and d.runs_ended == (("a", 1),)
    assert diff(b, InFlight()).sessions_ended == ("agent:main:main",)


@pytest.mark.parametrize("payload", [
    None, [], {"sessions": None}, {"sessions": [1]}, {"sessions": [{"key": ""}]},
    {"sessions": [{"key": "agent:main:main", "hasActiveRun": "yes"}]},
])
def test_bad_sessions_answers_are_typed_errors(payload: Any) -> None:
    with pytest.raises(GatewayProtocolError):
        parse_sessions(payload)


@pytest.mark.parametrize("payload", [
    {}, {"jobs": {}}, {"jobs": ["x"]}, {"jobs": [{"state": "bad", "id": "a"}]},
    {"jobs": [{"state": {"runningAtMs": 5}}]},
])
def test_bad_cron_answers_are_typed_errors(payload: Any) -> None:
    with pytest.raises(GatewayProtocolError):
        parse_runs(payload)


@pytest.mark.parametrize(("key", "kind"), [
    ("agent:main:main", "main"), ("agent:main:cron:j:run:x", "cron-run"), ("agent:main:cron:j", "cron"),
    ("agent:main:hook:u", "hook"), ("global", "other"), ("agent:main:telegram:dm:1", "other"),
])
def test_kind_of(key: str, kind: str) -> None:
    assert kind_of(key) == kind


def started(job_id: str = "j1", run_at: Any = 700, **kw: Any) -> dict[str, Any]:
    return {"jobId": job_id, "action": "started", "runAtMs": run_at, **kw}


def test_a_current_started_event_carries_its_run() -> None:
    sent = job("j1", 700, agentId="ops", schedule={"kind": "at", "at": "x"})
    item = parse_started(started(job=sent))
    assert item is not None and item.key == ("j1", 700)
    assert item.agent_id == "ops" and item.delete_after_run and item.payload_kind == "agentTurn"
    assert item == parse_runs({"jobs": [sent]})[("j1", 700)]  # the very record the poll makes


def test_a_current_started_event_without_running_at_takes_run_at() -> None:
    item = parse_started(started(run_at=800, job=job("j1")))
    assert item is not None and item.key == ("j1", 800)


@pytest.mark.parametrize("payload", [
    {"jobId": "j1", "action": "finished", "runAtMs": 5, "job": job("j1", 5)},
    {"jobId": "j1", "action": "added"},
    started(),  # 2026.2.x: no job, and its runAtMs is not the key cron.list shows
])
def test_other_cron_events_and_legacy_ones_announce_nothing(payload: Any) -> None:
    assert parse_started(payload) is None


@pytest.mark.parametrize("payload", [
    None, "started", started(job_id="", job=job("j1")), started(job_id=5, job=job("j1")),
    started(run_at="soon", job=job("j1")), started(run_at=None, job=job("j1")), started(run_at=-1, job=job("j1")),
    started(job="x"), started(job={**job("j1"), "state": "bad"}),
])
def test_bad_started_events_are_typed_errors(payload: Any) -> None:
    with pytest.raises(GatewayProtocolError):
        parse_started(payload)


def test_carry_heard_keeps_a_run_heard_after_the_poll_was_asked() -> None:
    a = parse_runs({"jobs": [job("a", 1)]})[("a", 1)]
    b = parse_runs({"jobs": [job("b", 2)]})[("b", 2)]
    c = parse_runs({"jobs": [job("c", 3)]})[("c", 3)]
    heard = {a.key: (a, 10.0), b.key: (b, 20.0), c.key: (c, 5.0)}
    runs, pending = carry_heard({a.key: a}, heard, poll_began=15.0)
    # a: the poll confirms it; b: heard after the poll was asked, the answer may predate it;
    # c: heard before the poll was asked and absent from its answer: it ended.
    assert sorted(runs) == [("a", 1), ("b", 2)]
    assert pending == {b.key: (b, 20.0)}
    runs, pending = carry_heard({}, pending, poll_began=25.0)
    assert runs == {} and pending == {}


def repaired(job_id: str, last_run: int, error: str = INTERRUPTED_ERROR) -> dict[str, Any]:
    j = job(job_id)
    j["state"].update(lastRunAtMs=last_run, lastRunStatus="error", lastError=error)
    return j


def test_left_behind_are_the_marks_still_running_and_the_repaired_interruptions() -> None:
    payload = {"jobs": [job("a", 100), repaired("b", 200), repaired("c", 300, error="model timeout"), job("d"),
                        {**repaired("e", 400), "state": {**repaired("e", 400)["state"], "runningAtMs": 500}}]}
    assert sorted(parse_left_behind(payload)) == [("a", 100), ("b", 200), ("e", 400), ("e", 500)]
    assert sorted(parse_runs(payload)) == [("a", 100), ("e", 500)]  # the polls' in-flight runs are unchanged
    assert parse_left_behind(payload)[("b", 200)].schedule_kind == "every"


def test_left_behind_reports_a_bad_answer_as_the_polls_do() -> None:
    with pytest.raises(GatewayProtocolError, match=r"cron\.list\.jobs\[0\]: field 'id'"):
        parse_left_behind({"jobs": [{"state": {"lastError": INTERRUPTED_ERROR, "lastRunAtMs": 5}}]})


def test_regression_a_2x_mark_that_moves_a_few_ms_stays_one_run() -> None:
    """Found by the chaos benchmark on the real 2026.2.26: one run of a job showed runningAtMs
    ...044 in a poll and ...042 in the next (its timer's claim, reloaded from its jobs file); the
    snapshot recorded a run that ended and another that began, under two keys."""
    before = parse_runs({"jobs": [job("a", 1_044), job("b", 5_000)]})
    polled = parse_runs({"jobs": [job("a", 1_042), job("b", 5_000)]})
    kept = keep_keys(polled, before)
    assert sorted(kept) == [("a", 1_044), ("b", 5_000)] and kept[("a", 1_044)] is before[("a", 1_044)]
    assert diff(InFlight({}, before), InFlight({}, kept)).runs_started == ()


def test_a_mark_more_than_a_second_away_is_another_run() -> None:
    before = parse_runs({"jobs": [job("a", 1_000)]})
    assert sorted(keep_keys(parse_runs({"jobs": [job("a", 2_100)]}), before)) == [("a", 2_100)]


def test_a_mark_still_shown_is_not_taken_over_by_a_near_one() -> None:
    before = parse_runs({"jobs": [job("a", 1_000)]})
    both = {**parse_runs({"jobs": [job("a", 1_000)]}), **parse_runs({"jobs": [job("a", 1_500)]})}
    assert sorted(keep_keys(both, before)) == [("a", 1_000), ("a", 1_500)]


def test_legacy_turns_that_never_end_are_bounded() -> None:
    """Issue 17: `start` events with no `end` grew LegacyActivity without bound."""
    from supervisor.core.inflight import MAX_LEGACY_TURNS, LegacyActivity

    act = LegacyActivity()
    for i in range(MAX_LEGACY_TURNS + 50):
        act.feed({"stream": "lifecycle", "runId": f"r{i}", "sessionKey": f"agent:main:s{i}",
                  "data": {"phase": "start", "startedAt": 1_700_000_000_000 + i}})
    assert len(act.runs) == MAX_LEGACY_TURNS and len(act.started) == MAX_LEGACY_TURNS
    assert "r0" not in act.runs and f"r{MAX_LEGACY_TURNS + 49}" in act.runs  # the oldest went
