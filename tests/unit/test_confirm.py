"""What the gateway shows after a restart, and the rules over it (supervisor/core/confirm.py),
without a gateway or a store: whether its own startup recovery is done, whether a session's turn
resumed or had completed, and whether a retry or a notice that was sent took effect."""

from __future__ import annotations

import itertools
import unicodedata
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor.core.confirm import (
    MAX_NOTICES,
    SessionRow,
    SessionSeen,
    completed,
    confirm_notices,
    confirm_retries,
    history_shows,
    job_view,
    needs_history,
    notice_drains,
    notice_how,
    notice_key,
    notices_exhausted,
    own_recovery_done,
    resumed,
    retry_key,
    run_log,
    session_row,
    session_state,
    settle_deadline_ms,
    turn_since,
)
from supervisor.core.obligations import Action, ActionKind, ActionState, Obligation, ObligationKind
from supervisor.core.planner import QUOTE_LEAD, JobView, Retry, RunObligation
from supervisor.gateway.capabilities import for_version

S = 1000
T0 = 1_800_000_000_000
DIED = T0 + 60 * S  # the boot's end was recorded (the obligation's interrupted_at)
NOW = T0 + 200 * S
GRACE = 120 * S
BOOT = 5  # the current boot
R9 = for_version("2026.9.6").recovery
R2 = for_version("2026.2.26").recovery
RULES = {"9x": R9, "2x": R2}


def session_ob(kind: str = "main", key: str = "agent:main:main") -> Obligation:
    return Obligation(ObligationKind.SESSION, key, 3, DIED / 1000, "crash", agent_id="main", session_kind=kind, id=11)


def cron_ob(running_at: int = T0, attempt: int = 1) -> Obligation:
    return Obligation(ObligationKind.CRON, "job-1", 3, DIED / 1000, "crash", running_at_ms=running_at, name="n",
                      attempt=attempt, id=12)


def action(at: int, state: ActionState = ActionState.ANSWERED, boot: int | None = BOOT, attempt: int = 2,
           kind: ActionKind = ActionKind.CRON_RUN, key: str | None = None) -> Action:
    return Action(key or f"k-{at}-{state}-{boot}", kind, attempt, state, boot, at)


def test_the_settle_deadline_is_the_versions() -> None:
    assert settle_deadline_ms(R9, T0) == T0 + 30 * S and settle_deadline_ms(R2, T0) == T0 + 5 * S


# -- session rows and turns ----------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "row"), [
    (None, SessionRow()), ("x", SessionRow()), ({}, SessionRow()),
    ({"status": "done", "startedAt": 5, "endedAt": 6.0, "updatedAt": 7}, SessionRow("done", 5, 6, 7)),
    ({"status": 3, "startedAt": "5", "endedAt": True, "updatedAt": float("inf")}, SessionRow()),
    ({"startedAt": -1, "endedAt": 2**53}, SessionRow()),
])
def test_session_row_reads_what_it_can(raw: Any, row: SessionRow) -> None:
    assert session_row(raw) == row


TURNS = [  # (name, recorded_at s, row, since, 9x, 2x)
    ("nothing seen", None, SessionRow(), DIED, False, False),
    ("recorded after", DIED / 1000 + 5, SessionRow(), DIED, True, True),
    ("recorded a second before still counts", DIED / 1000 - 1.0, SessionRow(), DIED, True, True),
    ("recorded earlier", DIED / 1000 - 1.001, SessionRow(), DIED, False, False),
    ("9.x row: its last run started since", None, SessionRow(started_at_ms=DIED), DIED, True, False),
    ("9.x row: started before", None, SessionRow(started_at_ms=DIED - 1), DIED, False, False),
    ("2.x row: updated since", None, SessionRow(updated_at_ms=DIED + 1), DIED, False, True),
    ("2.x row: updated before", None, SessionRow(updated_at_ms=DIED - 1), DIED, False, False),
]


@pytest.mark.parametrize(("name", "recorded", "row", "since", "v9", "v2"), TURNS, ids=[t[0] for t in TURNS])
def test_turn_since(name: str, recorded: float | None, row: SessionRow, since: int, v9: bool, v2: bool) -> None:
    seen = SessionSeen(recorded, row)
    assert (turn_since(seen, since, R9), turn_since(seen, since, R2)) == (v9, v2)
    # Only a version that resumes turns resumes one, whatever its row says.
    assert (resumed(session_ob(), seen, R9), resumed(session_ob(), seen, R2)) == (v9, False)


COMPLETED = [  # (name, row, expected)
    ("its last run ended before the crash", SessionRow("done", DIED - 9 * S, DIED - S), True),
    ("ended at the crash", SessionRow("done", DIED - 9 * S, DIED), True),
    ("ended after it", SessionRow("done", DIED - 9 * S, DIED + 1), False),
    ("still running", SessionRow("running", DIED - 9 * S, None), False),
    ("not done", SessionRow("failed", DIED - 9 * S, DIED - S), False),
    ("a run started since (ended before it started)", SessionRow("done", DIED + S, DIED - S), False),
    ("no start", SessionRow("done", None, DIED - S), False),
    ("no end", SessionRow("done", DIED - S, None), False),
    ("no row", SessionRow(), False),
]


@pytest.mark.parametrize(("name", "row", "expected"), COMPLETED, ids=[c[0] for c in COMPLETED])
def test_completed(name: str, row: SessionRow, expected: bool) -> None:
    assert completed(session_ob(), row) is expected


@pytest.mark.parametrize(("version", "turn", "row_done", "history", "expected"), [
    (v, t, d, h, e) for v, t, d, h in itertools.product(("9x", "2x"), (False, True), (False, True), (False, True))
    for e in [((True, False) if v == "9x" and t else (False, d) if v == "9x" else (False, h))]])
def test_session_state(version: str, turn: bool, row_done: bool, history: bool, expected: tuple[bool, bool]) -> None:
    row = SessionRow("done", DIED - 9 * S, DIED - S) if row_done else SessionRow()
    seen = SessionSeen(DIED / 1000 + 1 if turn else None, row)
    assert session_state(session_ob(), seen, RULES[version], history) == expected


@pytest.mark.parametrize(("version", "kind", "previous", "expected"), [
    ("2x", "main", False, True), ("2x", "main", True, False), ("2x", "cron", False, False),
    ("2x", "cron-run", False, False), ("9x", "main", False, False), ("9x", "main", True, False)])
def test_needs_history(version: str, kind: str, previous: bool, expected: bool) -> None:
    acts = [action(NOW, kind=ActionKind.AGENT_TURN, state=ActionState.FAILED)] if previous else []
    assert needs_history(session_ob(kind), RULES[version], acts) is expected


# -- the gateway's own startup recovery ----------------------------------------------------------

RESUMED = SessionSeen(DIED / 1000 + 3)
DONE_BEFORE = SessionSeen(None, SessionRow("done", DIED - 9 * S, DIED - S))
WAITING = SessionSeen(None, SessionRow("running", DIED - 9 * S, None))

OWN = [  # (name, obligations, marks, sessions, expected)
    ("nothing open", [], {}, {}, True),
    ("a cut run still marked", [cron_ob()], {"job-1": T0}, {}, False),
    ("its mark repaired", [cron_ob()], {"job-1": None}, {}, True),
    ("another run marked now", [cron_ob()], {"job-1": T0 + 90 * S}, {}, True),
    ("the job gone", [cron_ob()], {}, {}, True),
    ("a session resumed", [session_ob()], {}, {"agent:main:main": RESUMED}, True),
    ("a session whose turn had completed", [session_ob()], {}, {"agent:main:main": DONE_BEFORE}, True),
    ("a session not resumed yet", [session_ob()], {}, {"agent:main:main": WAITING}, False),
    ("a session never read", [session_ob()], {}, {}, False),
    ("a cron run's session is the retry's", [session_ob("cron-run")], {}, {}, True),
    ("all done but one", [cron_ob(), session_ob()], {"job-1": None}, {"agent:main:main": WAITING}, False),
    ("all done", [cron_ob(), session_ob()], {"job-1": None}, {"agent:main:main": RESUMED}, True),
]


@pytest.mark.parametrize(("name", "obs", "marks", "sessions", "expected"), OWN, ids=[o[0] for o in OWN])
def test_own_recovery_done(name: str, obs: list[Obligation], marks: dict[str, int | None],
                           sessions: dict[str, SessionSeen], expected: bool) -> None:
    assert own_recovery_done(obs, marks, sessions, R9) is expected
    assert own_recovery_done(reversed(obs), marks, sessions, R9) is expected


# -- a job's runs --------------------------------------------------------------------------------


def test_run_log_tells_interrupted_runs_from_finished_ones() -> None:
    payload = {"entries": [{"runAtMs": 1, "status": "ok"}, {"runAtMs": 2, "error": "cron: job interrupted by gateway"
                                                            " restart"}, {"runAtMs": 3, "error": "boom"},
                           {"runAtMs": "x"}, "junk", {"error": "interrupted"}]}
    assert run_log(payload) == ((1, 2, 3), (1, 3))
    assert run_log(None) == run_log({"entries": "x"}) == ((), ())


@pytest.mark.parametrize(("job", "view"), [
    (None, JobView(exists=False, enabled=False)),
    ({"id": "j"}, JobView(exists=True)),
    ({"id": "j", "enabled": False, "state": "bad"}, JobView(exists=True, enabled=False)),
    ({"id": "j", "state": {"runningAtMs": 9, "startupCatchupAtMs": 7, "nextRunAtMs": "x"}},
     JobView(exists=True, running_at_ms=9, run_starts_ms=(1, 9), startup_catchup_at_ms=7, finished_ms=(1,))),
])
def test_job_view(job: Any, view: JobView) -> None:
    starts, finished = ((1,), (1,)) if job and isinstance(job.get("state"), dict) else ((), ())
    assert job_view(job, starts, finished) == view


# -- retries -------------------------------------------------------------------------------------

SENT = T0 + 100 * S
RUN = SENT + 2 * S  # the retry's run


def confirm(actions: list[Action], view: JobView, recorded: dict[int, int] | None = None,
            pending: set[str] | None = None, now: int = NOW, ob: RunObligation | None = None) -> tuple[Any, ...]:
    c = confirm_retries(ob or cron_ob().run(), actions, view, recorded or {}, pending or set(), BOOT, now, GRACE)
    return c.outcome, c.action, tuple(o for _, o in c.lapsed), c.run.attempt if c.run else None


RETRIES = [  # (name, actions, view, recorded, pending, now, (outcome, deciding index, lapsed, attempt))
    ("nothing sent", [], JobView(True), {}, set(), NOW, (None, None, (), 1)),
    ("failed and lapsed ones are history", [action(SENT, ActionState.FAILED), action(SENT, ActionState.UNCONFIRMED)],
     JobView(True), {}, set(), NOW, (None, None, (), 1)),
    ("a notice is not a retry", [action(SENT, kind=ActionKind.AGENT_TURN)], JobView(True), {}, set(), NOW,
     (None, None, (), 1)),
    ("its run ended", [action(SENT)], JobView(True, run_starts_ms=(RUN,), finished_ms=(RUN,)), {}, set(), NOW,
     (Retry.STOOD, 0, (), 1)),
    ("its run recorded in the boot it was sent to", [action(SENT, boot=4)], JobView(True, run_starts_ms=(RUN,)),
     {4: RUN}, set(), NOW, (Retry.STOOD, 0, (), 1)),
    ("recorded only in another boot: cut", [action(SENT, boot=4)], JobView(True, run_starts_ms=(RUN,)),
     {BOOT: RUN}, set(), NOW, (None, None, (Retry.CUT,), 2)),
    ("an earlier run recorded is not its run", [action(SENT, boot=4)], JobView(True, run_starts_ms=(RUN,)),
     {4: RUN - 1}, set(), NOW, (None, None, (Retry.CUT,), 2)),
    ("its run in progress: the record is coming", [action(SENT)], JobView(True, running_at_ms=RUN,
                                                                           run_starts_ms=(RUN,)),
     {}, set(), NOW, (Retry.AWAIT, 0, (), 1)),
    ("its answer is coming", [action(SENT, key="mine")], JobView(True), {}, {"mine"}, NOW, (Retry.AWAIT, 0, (), 1)),
    ("no run yet within the grace", [action(SENT)], JobView(True), {}, set(), SENT + GRACE - 1,
     (Retry.AWAIT, 0, (), 1)),
    ("accepted by this very gateway", [action(SENT)], JobView(True), {}, set(), SENT + GRACE,
     (Retry.TRUSTED, 0, (), 1)),
    ("accepted by a gateway now gone", [action(SENT, boot=4)], JobView(True), {}, set(), SENT + GRACE,
     (None, None, (Retry.NO_EFFECT,), 2)),
    ("journaled, never answered, by a gatewayd that died", [action(SENT, ActionState.DISPATCHED)], JobView(True), {},
     set(), SENT + GRACE, (None, None, (Retry.NO_EFFECT,), 2)),
    ("a run before the send is not its run", [action(SENT)], JobView(True, run_starts_ms=(SENT - 1001,),
                                                                      finished_ms=(SENT - 1001,)),
     {}, set(), SENT + GRACE, (Retry.TRUSTED, 0, (), 1)),
    ("a later run that ended stands for the oldest retry out", [action(SENT - 300 * S, boot=4), action(SENT)],
     JobView(True, run_starts_ms=(RUN,), finished_ms=(RUN,)), {}, set(), NOW, (Retry.STOOD, 0, (), 1)),
    ("a lapsed retry, then one awaited", [action(SENT - 300 * S, boot=4, attempt=2), action(SENT, attempt=3)],
     JobView(True), {}, set(), SENT + 1, (Retry.AWAIT, 1, (Retry.NO_EFFECT,), 2)),
    ("two lapsed: both count as attempts", [action(SENT - 300 * S, boot=4, attempt=2),
                                             action(SENT - 200 * S, boot=4, attempt=3)],
     JobView(True), {}, set(), NOW + GRACE, (None, None, (Retry.NO_EFFECT, Retry.NO_EFFECT), 3)),
]


@pytest.mark.parametrize(("name", "actions", "view", "recorded", "pending", "now", "expected"), RETRIES,
                         ids=[r[0] for r in RETRIES])
def test_confirm_retries(name: str, actions: list[Action], view: JobView, recorded: dict[int, int], pending: set[str],
                         now: int, expected: tuple[Any, ...]) -> None:
    outcome, index, lapsed, attempt = expected
    assert confirm(actions, view, recorded, pending, now) == (
        outcome, None if index is None else actions[index], lapsed, attempt)


_states = st.sampled_from(list(ActionState))
_actions = st.lists(st.builds(Action, key=st.text("abc", min_size=1, max_size=3),
                              kind=st.sampled_from(list(ActionKind)), attempt=st.integers(1, 5), state=_states,
                              boot_id=st.sampled_from([None, 3, 4, BOOT]),
                              dispatched_at_ms=st.integers(T0, NOW)), max_size=5)
_views = st.builds(JobView, exists=st.booleans(), running_at_ms=st.none() | st.integers(T0, NOW),
                   run_starts_ms=st.lists(st.integers(T0 - S, NOW), max_size=3).map(tuple),
                   finished_ms=st.lists(st.integers(T0 - S, NOW), max_size=3).map(tuple))


@given(actions=_actions, view=_views, recorded=st.dictionaries(st.sampled_from([3, 4, BOOT]), st.integers(T0, NOW)),
       pending=st.sets(st.text("abc", min_size=1, max_size=3)), now=st.integers(T0, NOW + 2 * GRACE),
       attempt=st.integers(1, 4))
def test_confirm_retries_invariants(actions: list[Action], view: JobView, recorded: dict[int, int], pending: set[str],
                                    now: int, attempt: int) -> None:
    ob = cron_ob(attempt=attempt).run()
    c = confirm_retries(ob, actions, view, recorded, pending, BOOT, now, GRACE)
    out = [a for a in actions if a.kind is ActionKind.CRON_RUN and a.state.out]
    lapsed = [a for a, _ in c.lapsed]
    assert all(o in (Retry.CUT, Retry.NO_EFFECT) for _, o in c.lapsed)
    # The retries that are out are looked at oldest first: those before the deciding one lapsed.
    if c.outcome is None:
        assert lapsed == out and c.action is None
    else:
        assert c.outcome in (Retry.STOOD, Retry.AWAIT, Retry.TRUSTED) and c.action is not None
        assert lapsed == out[:out.index(c.action)]
    # A lapsed retry was an attempt; nothing else changes the obligation.
    assert c.run == RunObligation(ob.job_id, ob.running_at_ms, ob.interrupted_at_ms,
                                  max([attempt, *(a.attempt for a in lapsed)]), ob.one_shot)
    # A retry whose answer is coming never lapses; one accepted by this gateway only when its run was cut.
    assert not any(a.key in pending for a in lapsed)
    assert all(o is Retry.CUT for a, o in c.lapsed if a.state is ActionState.ANSWERED and a.boot_id == BOOT)


# -- notices -------------------------------------------------------------------------------------


def notice(at: int, state: ActionState = ActionState.ANSWERED, boot: int = BOOT, key: str | None = None) -> Action:
    return action(at, state, boot, 1, ActionKind.AGENT_TURN, key)


NOTICES = [  # (name, version, actions, seen, pending, now, (outcome, deciding index, lapsed count))
    ("nothing sent", "9x", [], SessionSeen(), set(), NOW, (None, None, 0)),
    ("its turn recorded", "9x", [notice(SENT)], SessionSeen(SENT / 1000 + 1), set(), NOW, (Retry.STOOD, 0, 0)),
    ("9.x row: a run started since", "9x", [notice(SENT)], SessionSeen(None, SessionRow(started_at_ms=SENT)), set(),
     NOW, (Retry.STOOD, 0, 0)),
    ("2.x row: updated since", "2x", [notice(SENT)], SessionSeen(None, SessionRow(updated_at_ms=SENT - 1000)), set(),
     NOW, (Retry.STOOD, 0, 0)),
    ("2.x ignores startedAt", "2x", [notice(SENT)], SessionSeen(None, SessionRow(started_at_ms=SENT)), set(),
     SENT + GRACE, (Retry.TRUSTED, 0, 0)),
    ("its answer is coming", "9x", [notice(SENT, key="mine")], SessionSeen(), {"mine"}, NOW, (Retry.AWAIT, 0, 0)),
    ("within the grace", "9x", [notice(SENT)], SessionSeen(), set(), SENT + GRACE - 1, (Retry.AWAIT, 0, 0)),
    ("accepted by this gateway: never sent twice to it", "9x", [notice(SENT)], SessionSeen(), set(), SENT + GRACE,
     (Retry.TRUSTED, 0, 0)),
    ("lost with its gateway", "2x", [notice(SENT, boot=4)], SessionSeen(), set(), SENT + GRACE, (None, None, 1)),
    ("failed ones are history", "2x", [notice(SENT, ActionState.FAILED)], SessionSeen(), set(), NOW, (None, None, 0)),
    ("one lost, the next seen", "2x", [notice(SENT - 200 * S, boot=4), notice(SENT)],
     SessionSeen(SENT / 1000 + 1), set(), NOW, (Retry.STOOD, 0, 0)),
    ("one lost, the next awaited", "2x", [notice(SENT - 200 * S, boot=4), notice(SENT)],
     SessionSeen(), set(), SENT + 1, (Retry.AWAIT, 1, 1)),
]


@pytest.mark.parametrize(("name", "version", "actions", "seen", "pending", "now", "expected"), NOTICES,
                         ids=[n[0] for n in NOTICES])
def test_confirm_notices(name: str, version: str, actions: list[Action], seen: SessionSeen, pending: set[str],
                         now: int, expected: tuple[Any, ...]) -> None:
    outcome, index, lapsed = expected
    c = confirm_notices(actions, seen, RULES[version], pending, BOOT, now, GRACE)
    assert (c.outcome, c.action, len(c.lapsed)) == (outcome, None if index is None else actions[index], lapsed)
    assert all(o is Retry.NO_EFFECT for _, o in c.lapsed)


def test_notices_are_given_up_after_max_notices_recorded_lost() -> None:
    lost = [notice(SENT + i, ActionState.UNCONFIRMED) for i in range(MAX_NOTICES)]
    assert notices_exhausted(lost) and not notices_exhausted(lost[1:])
    assert not notices_exhausted([*lost[1:], notice(SENT, ActionState.FAILED), notice(SENT, ActionState.DISPATCHED)])


def test_idempotency_keys() -> None:
    ob = cron_ob()
    assert retry_key(ob, 2, []) == "cron-12-a2-0"
    assert retry_key(ob, 2, [action(SENT, ActionState.FAILED), action(SENT, ActionState.UNCONFIRMED),
                             action(SENT, ActionState.ANSWERED)]) == "cron-12-a2-2"
    assert notice_key(session_ob(), []) == "session-11-0"
    assert notice_key(session_ob(), [notice(SENT, ActionState.FAILED)]) == "session-11-1"


_ms = st.none() | st.integers(T0, NOW)
_rows = st.builds(SessionRow, status=st.none() | st.sampled_from(["done", "running", "failed"]), started_at_ms=_ms,
                  ended_at_ms=_ms, updated_at_ms=_ms)
_seen = st.builds(SessionSeen, recorded_at=st.none() | st.floats(T0 / 1000, NOW / 1000), row=_rows)


@given(seen=_seen, since=st.integers(T0, NOW), earlier=st.integers(0, 100 * S), version=st.sampled_from(["9x", "2x"]),
       history=st.booleans(), kind=st.sampled_from(["main", "direct", "cron", "cron-run"]))
def test_session_rules_invariants(seen: SessionSeen, since: int, earlier: int, version: str, history: bool,
                                  kind: str) -> None:
    rules = RULES[version]
    # A turn since a time is a turn since any earlier time.
    if turn_since(seen, since, rules):
        assert turn_since(seen, since - earlier, rules)
    ob = session_ob(kind)
    was_resumed, was_completed = session_state(ob, seen, rules, history)
    assert not (was_resumed and was_completed)
    assert was_resumed == resumed(ob, seen, rules)
    if version == "2x":  # 2.x resumes nothing; only its history tells a completed turn
        assert (was_resumed, was_completed) == (False, history)
    # Its own recovery is done for this session exactly when the turn resumed or had completed.
    done = own_recovery_done([ob], {}, {ob.ref: seen}, rules)
    assert done == (kind in ("cron", "cron-run") or resumed(ob, seen, rules) or completed(ob, seen.row))


@pytest.mark.parametrize(("key", "has_chat_send", "drains"), [
    ("agent:main:main", True, True), ("agent:kit:main", True, True),
    ("agent:main:telegram:dm:1", True, False), ("agent:main:main", False, False),
])
def test_a_notice_drains_the_queue_only_in_a_main_session_and_where_chat_send_exists(
        key: str, has_chat_send: bool, drains: bool) -> None:
    assert notice_drains(key, has_chat_send) is drains


def test_how_a_notice_went_out_is_read_from_its_key() -> None:
    ob = session_ob()
    assert notice_how(notice_key(ob, [], wake=True)) == "a system event with a wake"
    assert notice_how(notice_key(ob, [], chat=True)) == "a chat.send turn"
    assert notice_how(notice_key(ob, [])) == "an agent turn"


LOST_KEY, NEXT_KEY = "session-9-0-chat", "session-9-1-chat"


@pytest.mark.parametrize(("name", "actions", "seen", "shown", "expected"), [
    ("into an ended gateway, a later turn in the row, the history without it: lost",
     [notice(SENT, boot=4, key=LOST_KEY)], SessionSeen(SENT / 1000 + 1), {LOST_KEY: False}, (None, None, 1)),
    ("into an ended gateway, the history holds it: done", [notice(SENT, boot=4, key=LOST_KEY)], SessionSeen(),
     {LOST_KEY: True}, (Retry.STOOD, 0, 0)),
    ("into this gateway, the row decides", [notice(SENT, key=LOST_KEY)], SessionSeen(SENT / 1000 + 1),
     {LOST_KEY: False}, (Retry.STOOD, 0, 0)),
    ("history not asked: the row decides", [notice(SENT, boot=4, key=LOST_KEY)], SessionSeen(SENT / 1000 + 1), None,
     (Retry.STOOD, 0, 0)),
    ("the history cannot tell: the row decides", [notice(SENT, boot=4, key=LOST_KEY)],
     SessionSeen(SENT / 1000 + 1), {}, (Retry.STOOD, 0, 0)),
    ("the lost one lapses, the next one in this gateway is seen",
     [notice(SENT - 200 * S, boot=4, key=LOST_KEY), notice(SENT, key=NEXT_KEY)],
     SessionSeen(SENT / 1000 + 1), {LOST_KEY: False}, (Retry.STOOD, 1, 1)),
], ids=lambda v: v if isinstance(v, str) else "")
def test_a_notice_into_an_ended_2x_gateway_is_confirmed_by_the_history(
        name: str, actions: list[Action], seen: SessionSeen, shown: dict[str, bool] | None,
        expected: tuple[Any, ...]) -> None:
    """Real 2.26 chaos seed 7404: a notice taken 0.3 s before a kill never reached the model, and the
    next gateway's wake turn in that session moved the row past its send."""
    outcome, index, lapsed = expected
    c = confirm_notices(actions, seen, RULES["2x"], set(), BOOT, SENT + GRACE, GRACE, shown)
    assert (c.outcome, c.action, len(c.lapsed)) == (outcome, None if index is None else actions[index], lapsed)


NOTICE_TEXT = ("[System] Gateway restarted (crash, 2026-12-07 03:15:31 UTC). Previous session context may be"
               "  incomplete.")
LIMIT = 5


def user(text: Any, ts: int = SENT) -> dict[str, Any]:
    return {"role": "user", "content": text, "timestamp": ts}


@pytest.mark.parametrize(("messages", "shown"), [
    ([user([{"type": "text", "text": NOTICE_TEXT}])], True),
    ([user("System: [t] EVENT x\n\n" + NOTICE_TEXT.replace("  ", "\n"))], True),
    ([user(NOTICE_TEXT + QUOTE_LEAD + 'hello"')], True),
    ([user(unicodedata.normalize("NFD", NOTICE_TEXT.replace("Previous", "Pr\u00e9vious")) + "\x07")], False),
    ([{"role": "assistant", "content": NOTICE_TEXT, "timestamp": SENT}], False),
    ([user(NOTICE_TEXT.replace("03:15:31", "03:15:43"))], False),
    ([], False),
    # "No" proves nothing where the answer does not reach back to the send, or a message was cut short.
    ([user("x", SENT + i) for i in range(LIMIT)], None),
    ([user("x", SENT - 5_000), *(user("x", SENT + i) for i in range(LIMIT - 1))], False),
    ([user("System: [t] EVENT y\n...(truncated)...")], None),
    ([user("[chat.history omitted: message too large]")], None),
    (None, None), ("x", None)])
def test_the_history_shows_a_notice_by_its_text(messages: Any, shown: bool | None) -> None:
    notice_sent = NOTICE_TEXT + QUOTE_LEAD + 'the lost request"'  # quoted only in the first notice
    assert history_shows({"messages": messages}, notice_sent, SENT - 1000, LIMIT) is shown


def test_the_history_matches_a_notice_as_the_gateway_keeps_it() -> None:
    """2.26's chat.send keeps a message NFC-normalised and without control characters."""
    sent = unicodedata.normalize("NFD", "Pr\u00e9vious work was cut\x07.")
    kept = unicodedata.normalize("NFC", "Pr\u00e9vious work was cut.")
    assert history_shows({"messages": [user(kept)]}, sent, SENT - 1000, LIMIT) is True
