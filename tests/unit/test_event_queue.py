"""The pure rules of keeping the gateway's system-event queue across restarts."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor.core.event_queue import (
    MAX_QUEUE,
    Fate,
    LostAnswer,
    QueueLook,
    QueueUnreadable,
    is_main_session,
    lost_answer,
    parse_queue,
    plan,
    unheld,
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
