"""The pure rules of keeping the gateway's system-event queue across restarts."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor.core.event_queue import (
    ACCEPT_TO_DRAIN_MS,
    END_ROW_BEFORE_MS,
    END_WRITE_MS,
    MAX_QUEUE,
    RUN_BEFORE_DRAIN_MS,
    Fate,
    LostAnswer,
    QueueLook,
    QueueUnreadable,
    TurnEnd,
    drained_after,
    ended_before,
    is_main_session,
    judged_looks,
    lost_answer,
    parse_queue,
    plan,
    unheld,
    user_turn_alone,
    with_late_sends,
)


def test_parse_queue_reads_texts_in_order() -> None:
    assert parse_queue({"queuedSystemEvents": ["a", "b", "a"]}) == ("a", "b", "a")


def test_parse_queue_absent_field_is_an_empty_queue() -> None:
    assert parse_queue({"runtimeVersion": "2026.9.6"}) == ()


@pytest.mark.parametrize(("answer", "field"), [
    (None, "status"),
    ([], "status"),
    ({"queuedSystemEvents": "a"}, "status.queuedSystemEvents"),
    ({"queuedSystemEvents": ["a", 3]}, "status.queuedSystemEvents[1]"),
    ({"queuedSystemEvents": ["a", "  "]}, "status.queuedSystemEvents[1]"),
    ({"queuedSystemEvents": ["x"] * (MAX_QUEUE + 1)}, "status.queuedSystemEvents"),
])
def test_parse_queue_names_the_bad_field(answer: object, field: str) -> None:
    with pytest.raises(QueueUnreadable) as err:
        parse_queue(answer)
    assert str(err.value).startswith(field + ":")


@pytest.mark.parametrize(("key", "main"), [
    ("agent:main:main", True), ("agent:kit:main", True), ("agent:main:cron:j1", False),
    ("agent:main:other", False), ("agent::main", False), ("main", False), (None, False), (3, False),
])
def test_is_main_session(key: object, main: bool) -> None:
    assert is_main_session(key) is main


@pytest.mark.parametrize(("texts", "held", "missing"), [
    (["a", "b"], [], [True, True]),
    (["a", "b"], ["a", "b"], [False, False]),
    (["a", "b", "a"], ["a"], [True, True, False]),  # a queue loses its oldest first
    (["a", "b", "a"], ["b", "a"], [True, False, False]),
    (["a", "b"], ["b", "a"], [True, False]),  # in order: the held a comes after b
    (["a"], ["z", "a", "q"], [False]),
])
def test_unheld_matches_in_order_each_held_text_once(texts: list[str], held: list[str], missing: list[bool]) -> None:
    assert unheld(texts, held) == missing


@given(st.lists(st.sampled_from("abc"), max_size=8), st.lists(st.sampled_from("abc"), max_size=8))
def test_unheld_never_claims_more_held_than_the_gateway_holds(texts: list[str], held: list[str]) -> None:
    kept = [t for t, m in zip(texts, unheld(texts, held), strict=True) if not m]
    for text in set(kept):
        assert kept.count(text) <= held.count(text)
    if not held:
        assert all(unheld(texts, held))


LOOK = QueueLook(boot=3, texts=("new mail", "reminder", "new mail"), looked_at_ms=1_000)


@pytest.mark.parametrize(("void", "watched", "turn", "held", "fates"), [
    (False, True, False, (), [Fate.REQUEUE] * 3),
    (False, True, True, (), [Fate.UNKNOWN] * 3),  # watched, but the watcher may have missed the turn
    (False, True, False, ("new mail",), [Fate.REQUEUE, Fate.REQUEUE, Fate.HELD]),
    (False, True, False, LOOK.texts, [Fate.HELD] * 3),
    (True, True, False, (), [Fate.UNKNOWN] * 3),
    (False, False, True, (), [Fate.UNKNOWN] * 3),
    (False, False, False, (), [Fate.REQUEUE] * 3),  # unwatched, but no turn since the look: not drained
    (True, False, False, LOOK.texts, [Fate.UNKNOWN] * 3),
])
def test_plan_every_case(void: bool, watched: bool, turn: bool, held: tuple[str, ...], fates: list[Fate]) -> None:
    look = QueueLook(LOOK.boot, LOOK.texts, LOOK.looked_at_ms, void)
    result = plan(look, held, watched, turn)
    assert [f.fate for f in result] == fates
    assert [(f.pos, f.text) for f in result] == list(enumerate(LOOK.texts))
    assert all(f.why for f in result)


def test_plan_of_an_empty_look_is_nothing() -> None:
    assert plan(QueueLook(1, (), 0), (), True, False) == []


@pytest.mark.parametrize(("queued", "turn", "fate"), [
    (q, t, LostAnswer.ARRIVED if q else LostAnswer.UNSURE if t else LostAnswer.NEVER)
    for q, t in itertools.product([True, False], repeat=2)
])
def test_lost_answer_sends_again_only_what_cannot_have_arrived(queued: bool, turn: bool, fate: LostAnswer) -> None:
    assert lost_answer(queued, turn) is fate


# 2026.2.x's chat.history keeps what a turn drained: "System: [time] text" lines at the head of the
# turn's user message (measured on the real 2026.2.26, chat.send after a system-event).
def _msg(role: str, at: int, text: str) -> dict[str, object]:
    return {"role": role, "timestamp": at, "content": [{"type": "text", "text": text}]}


EARLIER = [_msg("user", 500, "[Sun 2026-12-06 10:42 UTC] earlier turn"), _msg("assistant", 600, "PONG")]
DRAINED = _msg("user", 1_200, "System: [2026-12-06 10:42:49 UTC] new mail\nSystem: [2026-12-06 10:42:50 UTC] para1\n"
                              "\npara2\n\n[Sun 2026-12-06 10:43 UTC] TURN-B reply PONG")
PLAIN = _msg("user", 1_100, "[Sun 2026-12-06 10:43 UTC] an agent turn, nothing drained")


@pytest.mark.parametrize(("messages", "texts", "verdict"), [
    ([*EARLIER, DRAINED], ("new mail",), True),
    ([*EARLIER, DRAINED], ("para1\n\npara2", "rewritten by the gateway"), True),  # one found: the queue went
    ([*EARLIER, DRAINED], ("new", "mail"), False),  # a text is matched whole, never a part of another
    ([*EARLIER, PLAIN], ("new mail",), False),  # a turn that did not drain
    (EARLIER, ("new mail",), None),  # a turn ran, no request written: a pruned heartbeat turn
    ([DRAINED], ("new mail",), None),  # nothing before the look: a first turn is written only at its end
    ([*EARLIER, _msg("user", 9000, DRAINED["content"][0]["text"])], ("new mail",), None),  # the next gateway's
])
def test_drained_after_reads_the_turns_between_the_look_and_the_end(
        messages: list[dict[str, object]], texts: tuple[str, ...], verdict: bool | None) -> None:
    assert drained_after({"messages": messages}, texts, 1_000, 5_000) is verdict


def test_a_long_text_is_found_by_the_start_the_history_keeps() -> None:
    long = "x" * 15_000
    cut = _msg("user", 1_200, f"System: [t] {long[:12_000]}\n\nrequest")
    assert drained_after({"messages": [*EARLIER, cut]}, (long,), 1_000, 5_000) is True


@pytest.mark.parametrize("history", [{"messages": "x"}, None, {"messages": [1]}])
def test_drained_after_cannot_tell_from_a_malformed_answer(history: object) -> None:
    assert drained_after(history, ("a",), 1_000, 5_000) is None


@pytest.mark.parametrize(("void", "turn"), itertools.product([True, False], repeat=2))
def test_plan_with_the_history_decides_instead_of_the_void_and_the_turn(void: bool, turn: bool) -> None:
    look = QueueLook(LOOK.boot, LOOK.texts, LOOK.looked_at_ms, void)
    assert [f.fate for f in plan(look, ("reminder",), True, turn, drained=True)] == [Fate.DELIVERED] * 3
    assert [f.fate for f in plan(look, ("reminder",), True, turn, drained=False)] == [
        Fate.REQUEUE, Fate.HELD, Fate.REQUEUE]
    unknown = plan(look, (), True, turn, drained=None)
    assert [f.fate for f in unknown] == [Fate.UNKNOWN if void or turn else Fate.REQUEUE] * 3


@pytest.mark.parametrize(("void", "turn"), itertools.product([True, False], repeat=2))
def test_not_drained_by_the_history_is_trusted_only_where_gatewayd_watched(void: bool, turn: bool) -> None:
    # 2.x cuts a HEARTBEAT_OK turn (which drains) from the history: unwatched, one may hide behind a
    # later turn that drained nothing, so the void and the row's turn decide as without a history.
    look = QueueLook(LOOK.boot, LOOK.texts, LOOK.looked_at_ms, void)
    unwatched = plan(look, (), False, turn, drained=False)
    assert [f.fate for f in unwatched] == [Fate.UNKNOWN if void or turn else Fate.REQUEUE] * 3
    assert [f.fate for f in plan(look, (), False, turn, drained=True)] == [Fate.DELIVERED] * 3


def test_texts_sent_into_a_gateway_after_its_last_look_join_that_look() -> None:
    look = QueueLook(7, ("a", "b"), 10_000)
    sends = [("old", 9_999), ("b", 10_000), ("c", 10_001), ("c", 20_000)]
    out = with_late_sends(look, sends)
    # "old" went before the look; the look's "b" may be the send of "b" (its status read the queue
    # after it arrived): neither is added, so nothing is queued twice.
    assert out.texts == ("a", "b", "c", "c") and out.looked_at_ms == 10_000 and out.boot == 7
    assert with_late_sends(look, [("x", 9_000)]) is look


@given(st.lists(st.tuples(st.sampled_from("xyz"), st.integers(0, 30_000)), max_size=8),
       st.lists(st.sampled_from("xyz"), max_size=4), st.booleans())
def test_late_sends_never_add_a_text_the_look_may_hold(sends: list[tuple[str, int]], texts: list[str],
                                                        void: bool) -> None:
    look = QueueLook(3, tuple(texts), 12_000, void)
    out = with_late_sends(look, sends)
    assert out.texts[:len(texts)] == tuple(texts) and out.void == void and out.looked_at_ms == 12_000
    added = out.texts[len(texts):]
    after = [t for t, at in sends if at >= 12_000]
    for t in set(added):  # each added copy is a send after the look beyond the copies the look lists
        assert added.count(t) == max(0, after.count(t) - texts.count(t))
    assert all(t in after for t in added)


def test_texts_sent_after_the_look_are_judged_from_their_first_send() -> None:
    look = QueueLook(7, ("a", "b"), 10_000, ends=(TurnEnd("agent:main:main", 10_500),), listed="agent:main:main",
                     heard=("agent:main:main",), quiet=("agent:main:main",))
    sends = [("old", 9_999), ("b", 10_000), ("c", 20_000), ("d", 21_000)]
    own, late = judged_looks(look, sends)
    assert own == look  # the look's own texts, its own time; "b" is the look's (never added twice)
    # The rest as a look of their own, dated before the first late send by the accept-to-drain lag,
    # with what was heard from the look to the end (it holds from the send on too).
    assert late == replace(look, texts=("c", "d"), looked_at_ms=20_000 - ACCEPT_TO_DRAIN_MS)
    # A send within the lag of the look, a void look, nothing late: one look, as `with_late_sends`.
    assert judged_looks(look, [("c", 10_000 + ACCEPT_TO_DRAIN_MS)]) == [replace(look, texts=("a", "b", "c"))]
    assert judged_looks(replace(look, void=True), sends) == [with_late_sends(replace(look, void=True), sends)]
    assert judged_looks(look, [("b", 30_000)]) == [look]


@given(st.lists(st.tuples(st.sampled_from("xyz"), st.integers(0, 30_000)), max_size=8),
       st.lists(st.sampled_from("xyz"), max_size=4), st.booleans())
def test_judged_looks_hold_the_same_texts_as_the_look_with_its_late_sends(
        sends: list[tuple[str, int]], texts: list[str], void: bool) -> None:
    look = QueueLook(3, tuple(texts), 12_000, void)
    parts = judged_looks(look, sends)
    assert sum((p.texts for p in parts), ()) == with_late_sends(look, sends).texts
    assert parts[0].looked_at_ms == 12_000 and all(p.looked_at_ms >= 12_000 for p in parts)
    assert len(parts) == 1 or (not void and parts[0] == look and not parts[1].void)


AT = 100_000


@pytest.mark.parametrize(("status", "started", "ended", "updated", "explained"), [
    ("done", AT - 104, AT + 3_000, AT + 3_012, True),  # fake chaos seed 7452
    ("failed", AT - 5_000, AT + 1, AT + 1, True),
    ("done", AT - RUN_BEFORE_DRAIN_MS, AT + 10, AT + 10, True),
    ("done", AT - RUN_BEFORE_DRAIN_MS + 1, AT + 10, AT + 10, False),  # may have drained after the look
    ("done", AT + 10, AT + 20, AT + 20, False),  # started after the look
    ("running", AT - 5_000, AT + 1, AT + 1, False),  # a later run admitted
    (None, AT - 5_000, AT + 1, AT + 1, False),
    ("done", None, AT + 1, AT + 1, False),  # a first run's row during it
    ("done", AT - 5_000, None, AT + 1, False),
    ("done", AT - 5_000, AT + 1, None, False),
    ("done", AT - 5_000, AT - 6_000, AT + 1, False),  # an end before its start: not one run
    ("done", AT - 5_000, AT + 1_000, AT + 1_000 + END_WRITE_MS, True),
    ("done", AT - 5_000, AT + 1_000, AT + 1_001 + END_WRITE_MS, False),  # written after its end
    ("done", AT - 5_000, AT + 1_000, AT + 1_000 - END_ROW_BEFORE_MS, True),
    ("done", AT - 5_000, AT + 1_000, AT + 999 - END_ROW_BEFORE_MS, False),
])
def test_ended_before_every_case(status: str | None, started: int | None, ended: int | None,
                                 updated: int | None, explained: bool) -> None:
    assert ended_before(status, started, ended, updated, AT) is explained


def msg(role: str, at: object, key: str | None = None, meta: bool = False) -> dict[str, object]:
    out: dict[str, object] = {"role": role, "content": "x", "timestamp": at}
    if key is not None:
        out |= {"__openclaw": {"idempotencyKey": key}} if meta else {"idempotencyKey": key}
    return out


OWN = msg("user", AT - 200, "r1:user")  # the run's own request, stamped at its admission


@pytest.mark.parametrize(("messages", "alone"), [
    ([OWN, msg("assistant", AT + 900)], True),
    ([msg("user", AT - 200, "r1:user", meta=True)], True),
    ([msg("user", AT - 200, "r0:user"), msg("assistant", AT + 900)], False),  # another run's: a heartbeat ran
    ([msg("assistant", AT - 200, "r1:user")], False),
    ([OWN, msg("user", AT + 500)], False),  # a message steered into it
    ([msg("user", AT + 500), OWN], False),  # (9.6 lists a steer after the tool result it follows)
    ([OWN, msg("user", AT + 5_001)], True),  # the next gateway's
    ([OWN, msg("user", AT)], True),
    ([OWN, msg("user", "bad")], True),
    ([1, OWN], True),
    ([], False),
])
def test_user_turn_alone_every_case(messages: list[object], alone: bool) -> None:
    assert user_turn_alone({"messages": messages}, "r1", AT, AT + 5_000) is alone


def test_user_turn_alone_needs_a_run_id() -> None:
    assert user_turn_alone({"messages": [msg("user", AT - 200, ":user")]}, "", AT, AT + 5_000) is False


@pytest.mark.parametrize("history", [None, [], "x", {"messages": "x"}])
def test_user_turn_alone_cannot_tell_from_a_malformed_answer(history: object) -> None:
    assert user_turn_alone(history, "r1", AT, AT + 5_000) is None


def test_a_text_a_heartbeat_may_have_shown_is_set_aside_and_the_rest_judged() -> None:
    look = QueueLook(boot=3, texts=("a", "b", "c"), looked_at_ms=1_000, maybe_shown=(1,))
    assert [f.fate for f in plan(look, (), watched_end=True, turn_after_look=False)] == \
        [Fate.REQUEUE, Fate.UNKNOWN, Fate.REQUEUE]
    assert [f.fate for f in plan(look, ("b",), watched_end=False, turn_after_look=False)] == \
        [Fate.REQUEUE, Fate.UNKNOWN, Fate.REQUEUE]


def test_texts_sent_after_a_held_look_are_none_a_heartbeat_showed() -> None:
    look = QueueLook(boot=3, texts=("a",), looked_at_ms=1_000, maybe_shown=(0,))
    first, late = judged_looks(look, [("x", 10_000)])
    assert first.maybe_shown == (0,) and late.texts == ("x",) and late.maybe_shown == ()
    [joined] = judged_looks(look, [("x", 1_500)])
    assert joined.texts == ("a", "x") and joined.maybe_shown == (0,)
