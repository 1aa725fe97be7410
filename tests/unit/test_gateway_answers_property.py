"""Whatever the gateway answers, tracking stays alive (issue 14): generated `sessions.list`,
`cron.list` and `agent`/`cron` event payloads, written as JSON the way a JavaScript gateway can
(lone surrogates, 1e999, integers past 2**53, wrong types, odd keys), go through gatewayd's one
boundary and its parsers into a real store. Each is either recorded or refused with a typed
`GatewayError`; never another exception, and the store takes the next good snapshot after it."""

from __future__ import annotations

import json
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor.core.inflight import InFlight, LegacyActivity, diff, parse_runs, parse_sessions, parse_started
from supervisor.errors import GatewayError
from supervisor.gateway import wire
from supervisor.store.db import Store
from supervisor.store.snapshots import apply_delta

_NAMED = st.sampled_from(["x-\ud83d", "\udc00", "agent:main:main", "agent:kit:main", "agent:main:cron:j1:run:r1",
                          "", "\x00"])
odd_text = st.one_of(_NAMED, _NAMED, st.text(alphabet=st.characters(codec=None), max_size=12))
odd_number = st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | st.sampled_from(
    [1_700_000_000_000, 0, -1, 2**53, 1e20])
scalar = st.none() | st.booleans() | odd_number | odd_text
value = st.recursive(scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(odd_text, inner, max_size=3),
                     max_leaves=8)


def field_or_junk(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a well-formed value, sometimes anything: a whole answer must often get past the
    parsers for its odd parts (a name cut mid-emoji, a huge number) to reach the store."""
    return st.one_of(good, good, good, value)


ms = st.integers(min_value=0, max_value=2**53 - 1)


session_row = st.fixed_dictionaries({
    "key": field_or_junk(st.sampled_from(["agent:main:main", "agent:kit:main", "agent:main:hook:h"])),
    "hasActiveRun": field_or_junk(st.booleans()),
    "activeRunIds": field_or_junk(st.lists(odd_text, max_size=2)),
    "sessionId": value, "updatedAt": field_or_junk(ms | odd_number), "lastActivityAt": field_or_junk(ms | odd_number),
    "startedAt": value, "endedAt": value, "status": value,
})
job = st.fixed_dictionaries({
    "id": field_or_junk(st.sampled_from(["j1", "j2", "x-\ud83d"])), "name": field_or_junk(odd_text),
    "agentId": value, "enabled": value, "sessionTarget": value, "deleteAfterRun": value,
    "schedule": field_or_junk(st.fixed_dictionaries({"kind": value})),
    "payload": field_or_junk(st.fixed_dictionaries({"kind": value})),
    "state": field_or_junk(st.fixed_dictionaries({"runningAtMs": field_or_junk(ms | odd_number),
                                                  "lastRunAtMs": value, "lastError": value,
                                                  "nextRunAtMs": value, "runningReceiptId": value})),
})
answers = st.fixed_dictionaries({
    "sessions": field_or_junk(st.fixed_dictionaries({"sessions": field_or_junk(st.lists(session_row, min_size=1,
                                                                                          max_size=4))})),
    "jobs": field_or_junk(st.fixed_dictionaries({"jobs": field_or_junk(st.lists(job, min_size=1, max_size=4))})),
    "agent": field_or_junk(st.fixed_dictionaries({
        "stream": st.just("lifecycle"), "runId": field_or_junk(odd_text), "sessionKey": field_or_junk(odd_text),
        "data": field_or_junk(st.fixed_dictionaries({"phase": st.sampled_from(["start", "end"]),
                                                     "startedAt": value}))})),
    "cron": field_or_junk(st.fixed_dictionaries({"action": st.just("started"), "jobId": value, "runAtMs": value,
                                                 "job": field_or_junk(job)})),
})

GOOD = InFlight()


def through_the_wire(payload: Any) -> Any:
    return wire.decode(json.dumps(payload))  # Python writes lone surrogates escaped and NaN/inf bare, as JS can


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answers)
def test_any_gateway_answer_is_recorded_or_refused_typed_and_tracking_goes_on(a: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "store.sqlite")
        store._open_sync()
        boot = store.write_sync(lambda c: c.execute(
            "INSERT INTO boots(started_at, pid, create_time, port, version) VALUES (?,?,?,?,?)",
            (time.time(), 1, 1.0, 1, "2026.9.6")).lastrowid)
        assert isinstance(boot, int)
        legacy = LegacyActivity()
        new = GOOD
        try:
            legacy.feed(through_the_wire(a["agent"]))
            parse_started(through_the_wire(a["cron"]))
            sessions = parse_sessions(through_the_wire(a["sessions"]))
            legacy_sessions = parse_sessions(through_the_wire(a["sessions"]), legacy.active(),
                                             legacy_starts=legacy.turn_starts())
            runs = parse_runs(through_the_wire(a["jobs"]))
            new = InFlight({**sessions, **legacy_sessions}, runs)
        except GatewayError:
            pass  # refused, typed: the last good snapshot stays
        delta = diff(GOOD, new)
        store.write_sync(lambda c: apply_delta(c, boot, delta, time.time()))  # raises for what it cannot hold
        # Tracking goes on: the next (good) snapshot is written too.
        store.write_sync(lambda c: apply_delta(c, boot, diff(new, GOOD), time.time()))
        assert store.read_sync(lambda c: c.execute("PRAGMA quick_check").fetchone()[0]) == "ok"
        store._close_sync()


def test_the_property_holds_for_the_triggers_that_once_stopped_tracking() -> None:
    """The named cases of issue 14, as plain inputs (they are also within the strategy above)."""
    jobs = {"jobs": [{"id": "j1", "name": "x-\ud83d", "state": {"runningAtMs": 1_700_000_000_000}}]}
    runs = parse_runs(through_the_wire(jobs))
    assert [r.name for r in runs.values()] == ["x-\ufffd"]
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (v)")
    conn.execute("INSERT INTO t VALUES (?)", (next(iter(runs.values())).name,))
