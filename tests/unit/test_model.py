"""The supervision state table: every pair checked against TRANSITIONS, and its shape."""

from __future__ import annotations

import pytest

from supervisor.core.model import TRANSITIONS, IllegalTransition, SupervisionState, transition

S = SupervisionState
ALL = list(S)
LEGAL = [(a, b) for a in ALL for b in ALL if a is not b and b in TRANSITIONS[a]]
ILLEGAL = [(a, b) for a in ALL for b in ALL if a is not b and b not in TRANSITIONS[a]]


def _id(pair: tuple[S, S]) -> str:
    return f"{pair[0].value}->{pair[1].value}"


def test_table_covers_every_state() -> None:
    assert set(TRANSITIONS) == set(ALL)
    for targets in TRANSITIONS.values():
        assert targets <= set(ALL)


@pytest.mark.parametrize("pair", LEGAL, ids=_id)
def test_transition_legal_pair_is_accepted(pair: tuple[S, S]) -> None:
    current, target = pair
    assert transition(current, target) is target


@pytest.mark.parametrize("pair", ILLEGAL, ids=_id)
def test_transition_illegal_pair_raises(pair: tuple[S, S]) -> None:
    current, target = pair
    with pytest.raises(IllegalTransition) as info:
        transition(current, target)
    # the message names both ends, on one line
    assert current.value in str(info.value) and target.value in str(info.value)
    assert "\n" not in str(info.value)


def test_transition_pairs_partition_all_distinct_pairs() -> None:
    assert len(LEGAL) + len(ILLEGAL) == len(ALL) * (len(ALL) - 1)
    assert LEGAL and ILLEGAL


@pytest.mark.parametrize("state", ALL, ids=str)
def test_transition_to_same_state_is_a_noop(state: S) -> None:
    # Staying put (a second stop while stopping, a conflict still there) is not a move.
    assert transition(state, state) is state


@pytest.mark.parametrize("state", [s for s in ALL if s is not S.STOPPING], ids=str)
def test_transition_every_state_can_move_to_stopping(state: S) -> None:
    assert S.STOPPING in TRANSITIONS[state]
    assert transition(state, S.STOPPING) is S.STOPPING


def test_transition_only_stopping_reaches_stopped() -> None:
    sources = {a for a in ALL if a is not S.STOPPED and S.STOPPED in TRANSITIONS[a]}
    assert sources == {S.STOPPING}


def test_transition_stopping_leads_only_to_stopped() -> None:
    assert TRANSITIONS[S.STOPPING] == frozenset({S.STOPPED})


@pytest.mark.parametrize("state", [s for s in ALL if s not in (S.STOPPING, S.STOPPED)], ids=str)
def test_transition_stopped_not_reachable_directly_from(state: S) -> None:
    with pytest.raises(IllegalTransition):
        transition(state, S.STOPPED)


def test_every_state_reachable_from_stopped() -> None:
    seen = {S.STOPPED}
    frontier = [S.STOPPED]
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert seen == set(ALL)


def test_every_state_can_get_back_to_starting_or_stop() -> None:
    # No trap state: from anywhere a retry (STARTING) or the operator's stop is possible.
    for a in ALL:
        if a in (S.STOPPING, S.STOPPED):
            continue
        assert S.STARTING in TRANSITIONS[a] or a is S.STARTING, a


def test_state_values_are_the_status_strings() -> None:
    assert S.CRASH_LOOP == "crash-loop"
    assert S.CONFIG_ERROR == "config-error"
    assert {s.value for s in ALL} >= {"starting", "running", "backoff", "stopped", "stopping", "conflict"}


def test_no_duplicate_state_values() -> None:
    values = [s.value for s in ALL]
    assert len(values) == len(set(values))
