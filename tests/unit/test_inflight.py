"""The in-flight parser and diff (pure), for both gateway versions' shapes."""

from __future__ import annotations

from typing import Any

import pytest

from supervisor.core.inflight import (
    InFlight,
    LegacyActivity,
    diff,
    kind_of,
    merge_legacy_cron_sessions,
    parse_runs,
    parse_sessions,
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
