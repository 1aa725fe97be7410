"""When a look may list texts a 2026.9.x heartbeat has shown the model (`core/heartbeat_hold`)."""

from __future__ import annotations

import pytest

from supervisor.core.heartbeat_hold import ENDED_HOLD_MAX_S, HOLD_MAX_S, HeartbeatHolds, maybe_shown, shown_base

MAIN = "agent:main:main"


def test_a_heartbeat_holds_from_its_first_event_to_the_heartbeat_event_after_its_end() -> None:
    holds = HeartbeatHolds()
    assert holds.run_event("hb", MAIN, heartbeat=True, ended=False, now_s=0) is True  # void the look before
    assert holds.run_event("hb", MAIN, heartbeat=True, ended=False, now_s=1) is False
    holds.heartbeat_event()  # a skip of another wake while it runs: it has not finished
    assert holds.holding(2)
    assert holds.run_event("hb", MAIN, heartbeat=True, ended=True, now_s=3) is False
    assert holds.holding(3)  # ended, its reply maybe still on its way to a channel
    holds.heartbeat_event()
    assert not holds.holding(3)


def test_a_heartbeat_first_heard_at_its_end_voids_the_look_and_holds() -> None:
    holds = HeartbeatHolds()
    assert holds.run_event("hb", MAIN, heartbeat=True, ended=True, now_s=0) is True
    assert holds.holding(1)
    holds.heartbeat_event()
    assert not holds.holding(1)


def test_a_users_turn_holds_nothing() -> None:
    holds = HeartbeatHolds()
    assert holds.run_event("turn", MAIN, heartbeat=False, ended=False, now_s=0) is False
    assert not holds.holding(0)
    assert holds.run_event("turn", MAIN, heartbeat=False, ended=True, now_s=1) is False
    assert not holds.holding(1)


@pytest.mark.parametrize(("heartbeat", "held_after_its_end"), [(True, True), (False, False)])
def test_a_run_going_on_at_connect_holds_until_its_end_says_what_it_was(heartbeat: bool,
                                                                         held_after_its_end: bool) -> None:
    holds = HeartbeatHolds()
    holds.going_on_at_connect(["Agent:Main:Main"], 0)
    assert holds.holding(1)
    assert holds.run_event("r", MAIN, heartbeat=heartbeat, ended=False, now_s=2) is False  # held already
    assert holds.holding(2)
    holds.run_event("r", MAIN, heartbeat=heartbeat, ended=True, now_s=3)
    assert holds.holding(3) is held_after_its_end
    holds.heartbeat_event()
    assert not holds.holding(3)


def test_another_sessions_end_releases_nothing() -> None:
    holds = HeartbeatHolds()
    holds.going_on_at_connect([MAIN], 0)
    holds.run_event("k", "agent:kit:main", heartbeat=False, ended=True, now_s=1)
    assert holds.holding(1)


def test_holds_lapse() -> None:
    holds = HeartbeatHolds()
    holds.run_event("hb", MAIN, heartbeat=True, ended=False, now_s=0)
    assert holds.holding(HOLD_MAX_S - 1)
    assert not holds.holding(HOLD_MAX_S)
    holds.run_event("hb2", MAIN, heartbeat=True, ended=True, now_s=10)
    assert holds.holding(10 + ENDED_HOLD_MAX_S - 1)
    assert not holds.holding(10 + ENDED_HOLD_MAX_S)


@pytest.mark.parametrize(("base", "texts", "union"), [
    (None, ["a", "b", "a"], ("a", "b", "a")),
    (("a", "b"), ["a", "a", "c"], ("a", "b", "a", "c")),
    (("a",), [], ("a",)),
    (("a", "a"), ["a"], ("a", "a")),
])
def test_shown_base_is_a_multiset_union(base: tuple[str, ...] | None, texts: list[str],
                                        union: tuple[str, ...]) -> None:
    assert shown_base(base, texts) == union


@pytest.mark.parametrize(("texts", "base", "positions"), [
    (["a", "c", "a", "b"], ("a", "b"), (0, 3)),  # each copy of the base once, oldest first
    (["c"], ("a",), ()),
    ([], ("a",), ()),
    (["a", "a"], ("a", "a", "a"), (0, 1)),
])
def test_maybe_shown_marks_what_the_base_covers(texts: list[str], base: tuple[str, ...],
                                                positions: tuple[int, ...]) -> None:
    assert maybe_shown(texts, base) == positions
