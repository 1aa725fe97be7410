"""When a look may list texts a 2026.9.x heartbeat has shown the model (`core/heartbeat_hold`)."""

from __future__ import annotations

import pytest

from supervisor.core.heartbeat_hold import ENDED_HOLD_MAX_S, HOLD_MAX_S, HeartbeatHolds, maybe_shown, shown_base

MAIN = "agent:main:main"


FINISHED = ("ok-empty", "cron:j1")


def event(holds: HeartbeatHolds, run: str, phase: str, now_s: float, heartbeat: bool = True,
          session: str = MAIN) -> bool:
    return holds.run_event(run, session, heartbeat, phase == "start", phase in ("end", "error"), now_s)


def test_a_heartbeat_holds_from_its_first_event_to_the_heartbeat_event_after_its_end() -> None:
    holds = HeartbeatHolds()
    assert event(holds, "hb", "start", 0) is True  # void the look before, rebase after
    assert event(holds, "hb", "model", 1) is False
    holds.heartbeat_event(*FINISHED)  # another agent's: this one has not ended
    assert holds.holding(2)
    assert event(holds, "hb", "end", 3) is False
    assert holds.holding(3)  # ended, its reply maybe still on its way to a channel
    holds.heartbeat_event("skipped", "requests-in-flight")  # a wake skipped before any run
    assert holds.holding(3)
    releases = holds.releases
    holds.heartbeat_event("skipped", "duplicate")  # a finished run's
    assert not holds.holding(3) and holds.releases == releases + 1


def test_a_heartbeat_first_heard_after_its_start_voids_the_look_and_holds() -> None:
    holds = HeartbeatHolds()
    assert event(holds, "hb", "end", 0) is True
    assert holds.holding(1)
    holds.heartbeat_event(*FINISHED)
    assert not holds.holding(1)


def test_a_users_turn_holds_nothing() -> None:
    holds = HeartbeatHolds()
    assert event(holds, "turn", "start", 0, heartbeat=False) is False
    assert not holds.holding(0)
    assert event(holds, "turn", "end", 1, heartbeat=False) is False
    assert not holds.holding(1)


@pytest.mark.parametrize(("heartbeat", "held_after_its_end"), [(True, True), (False, False)])
def test_a_run_going_on_at_connect_holds_until_its_end_says_what_it_was(heartbeat: bool,
                                                                         held_after_its_end: bool) -> None:
    holds = HeartbeatHolds()
    holds.going_on_at_connect(["Agent:Main:Main"], 0)
    assert holds.holding(1)
    assert event(holds, "r", "model", 2, heartbeat) is False  # held already, or a user's turn
    assert holds.holding(2) is heartbeat
    event(holds, "r", "end", 3, heartbeat)
    assert holds.holding(3) is held_after_its_end
    holds.heartbeat_event(*FINISHED)
    assert not holds.holding(3)


def test_a_heartbeats_start_after_a_run_going_on_at_connect_begins_its_own_hold() -> None:
    """One run at a time per session: the run held from connect has ended unheard."""
    holds = HeartbeatHolds()
    holds.going_on_at_connect([MAIN], 0)
    assert event(holds, "hb", "start", 5) is True
    assert set(holds.holds) == {"hb"}


def test_another_sessions_end_releases_nothing() -> None:
    holds = HeartbeatHolds()
    holds.going_on_at_connect([MAIN], 0)
    event(holds, "k", "end", 1, heartbeat=False, session="agent:kit:main")
    assert holds.holding(1)


def test_what_an_earlier_connection_held_waits_for_a_heartbeat_event() -> None:
    holds = HeartbeatHolds()
    holds.carried(0)
    assert holds.holding(1)
    holds.heartbeat_event(*FINISHED)
    assert not holds.holding(1)


def test_holds_lapse() -> None:
    holds = HeartbeatHolds()
    event(holds, "hb", "start", 0)
    assert holds.holding(HOLD_MAX_S - 1)
    releases = holds.releases
    assert not holds.holding(HOLD_MAX_S) and holds.releases == releases + 1
    event(holds, "hb2", "end", 10)
    assert holds.holding(10 + ENDED_HOLD_MAX_S - 1)
    assert not holds.holding(10 + ENDED_HOLD_MAX_S)
    holds.going_on_at_connect([MAIN], 100, lapse_s=600)
    assert holds.holding(699) and not holds.holding(700)


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
