"""The restart notice as a system event where the gateway's wake starts a turn (2026.9.x), its
confirmation by the turn alone, and the 2.x notice quoting the interrupted request (issue 15, item 2)."""

from __future__ import annotations

import pytest

from supervisor.core.confirm import SessionSeen, confirm_notices, is_wake_notice, notice_by_wake, notice_key
from supervisor.core.inflight import QUOTE_CHARS, interrupted_request, unseen_lost_turn
from supervisor.core.obligations import Action, ActionKind, ActionState, Obligation, ObligationKind
from supervisor.core.planner import Retry, SessionVerb, decide_session
from supervisor.core.recovery_policy import RecoveryPolicy
from supervisor.core.wake_plan import wake_text
from supervisor.gateway.capabilities import for_version

S = 1000
T0 = 1_800_000_000_000
BOOT = 5
R9 = for_version("2026.9.6").recovery
R2 = for_version("2026.2.26").recovery
OB = Obligation(ObligationKind.SESSION, "agent:main:main", 3, T0 / 1000, "crash", agent_id="main",
                session_kind="main", id=11)


def notice(key: str, at: int, state: ActionState = ActionState.ANSWERED, boot: int = BOOT) -> Action:
    return Action(key, ActionKind.AGENT_TURN, 1, state, boot, at)


def test_the_first_notice_is_a_wake_only_where_the_wake_starts_turns() -> None:
    assert notice_by_wake(R9, [], OB.ref) and not notice_by_wake(R2, [], OB.ref)
    assert not notice_by_wake(R9, [], "agent:main:telegram:dm:42")  # unmeasured there: an agent turn
    first = notice(notice_key(OB, [], True), T0)
    assert is_wake_notice(first.key) and not notice_by_wake(R9, [first], OB.ref)
    assert not is_wake_notice(notice_key(OB, [first]))


@pytest.mark.parametrize(("waited_s", "outcome"), [(5, Retry.AWAIT), (59, Retry.AWAIT), (61, None)])
def test_a_wake_notice_unseen_lapses_after_its_window_even_in_this_boot(waited_s: int, outcome: Retry | None) -> None:
    wake = notice(notice_key(OB, [], True), T0)
    c = confirm_notices([wake], SessionSeen(), R9, set(), BOOT, T0 + waited_s * S, 120 * S)
    assert c.outcome is outcome
    assert (c.lapsed != ()) is (outcome is None)


def test_an_agent_notice_unseen_in_this_boot_is_trusted_after_the_grace() -> None:
    agent = notice(notice_key(OB, []), T0)
    c = confirm_notices([agent], SessionSeen(), R9, set(), BOOT, T0 + 121 * S, 120 * S)
    assert c.outcome is Retry.TRUSTED


def test_a_wake_notice_whose_turn_is_seen_stood() -> None:
    wake = notice(notice_key(OB, [], True), T0)
    c = confirm_notices([wake], SessionSeen(recorded_at=(T0 + 2 * S) / 1000), R9, set(), BOOT, T0 + 5 * S, 120 * S)
    assert c.outcome is Retry.STOOD


def msg(role: str, at: int, text: str, stop: str | None = None) -> dict[str, object]:
    m: dict[str, object] = {"role": role, "timestamp": at, "content": [{"type": "text", "text": text}]}
    if stop:
        m["stopReason"] = stop
    return m


STARTED, ENDED = T0, T0 + 30 * S


@pytest.mark.parametrize(("messages", "quote"), [
    ([msg("user", STARTED - 2, "clean the inbox")], "clean the inbox"),
    ([msg("user", STARTED - 60 * S, "older"), msg("assistant", STARTED - 59 * S, "done", "stop"),
      msg("user", STARTED - 2, "clean   the\ninbox")], "clean the inbox"),
    ([msg("user", STARTED - 2, "clean"), msg("assistant", STARTED + 5, "ok", "stop")], None),  # answered
    ([msg("user", STARTED - 60 * S, "older")], None),  # nothing since the turn's start: its first turn
    ([msg("user", ENDED + S, "written by the next gateway")], None),
    ([], None),
])
def test_interrupted_request(messages: list[dict[str, object]], quote: str | None) -> None:
    assert interrupted_request({"messages": messages}, STARTED, ENDED) == quote


NOTICE = ('[System] Gateway restarted (crash, 2026-12-06 11:07:54 UTC). Previous session context may be incomplete.'
          ' A request you were working on when it restarted was interrupted and lost: check your work and tell'
          ' the user what happened. The interrupted request was: "AGENT-main clean "the" inbox"')
DRAINED = "System: [2026-12-06 11:07:57 UTC] EVENT one\nSystem: [2026-12-06 11:07:57 UTC] EVENT two\n\n"


@pytest.mark.parametrize(("text", "quote"), [
    (DRAINED + "[Sun 2026-12-06 11:08 UTC] clean the inbox", "clean the inbox"),  # the events are no request
    (DRAINED + NOTICE, 'AGENT-main clean "the" inbox'),  # a cut notice: the request it quoted
    (NOTICE.split(" The interrupted")[0], None),  # a cut notice that quoted nothing
    ("System: [2026-12-06 11:07:57 UTC] EVENT only", None),
    ("first part\n\nSystem: [x] not drained, the user's own words", "first part System: [x] not drained, the user's"
                                                                      " own words"),
])
def test_a_quote_leaves_out_drained_events_and_a_cut_notice_quotes_its_own_quote(text: str, quote: str | None) -> None:
    got = interrupted_request({"messages": [msg("user", STARTED, text)]}, STARTED, ENDED, "[System] Gateway restarted")
    assert got == quote


def test_a_long_request_is_shortened_and_bad_history_is_none() -> None:
    long = interrupted_request({"messages": [msg("user", STARTED, "x" * 1000)]}, STARTED, ENDED)
    assert long is not None and len(long) == QUOTE_CHARS and long.endswith("…")
    assert interrupted_request({"messages": "nope"}, STARTED, ENDED) is None
    assert interrupted_request(None, STARTED, ENDED) is None


def test_the_2x_notice_quotes_the_request() -> None:
    d = decide_session("main", False, True, R2, RecoveryPolicy(), "crash", "2026-12-06 08:00:00 UTC",
                       quote="clean the inbox")
    assert d.verb is SessionVerb.AGENT_TURN and d.text is not None
    assert d.text.endswith(' The interrupted request was: "clean the inbox"')
    plain = decide_session("main", False, True, R2, RecoveryPolicy(), "crash", "t")
    assert plain.text is not None and "interrupted request was" not in plain.text


MARK = "[System] Gateway restarted ("


@pytest.mark.parametrize(("messages", "found"), [
    ([msg("user", STARTED, "sort the invoices")], STARTED),
    ([msg("user", STARTED, "sort"), msg("assistant", STARTED + 9, "done", "stop")], None),  # it ended
    ([msg("user", STARTED - 60 * S, "before this gateway")], None),  # an older orphan: not this life's
    ([msg("user", ENDED + S, "the next gateway's")], None),
    # a notice of gatewayd's own, cut: never noticed again
    ([msg("user", STARTED, "[Sun 2026-12-06 08:43 UTC] [System] Gateway restarted (crash, ...)")], None),
    # a wake of gatewayd's own (a chat.send turn, here with the events it drained), cut: no user's turn
    # (fake chaos seed 7451: its notice quoted it, and the wake's text reached the model twice)
    ([msg("user", STARTED, "System: [2026-12-07 11:41:15 UTC] EVENT x\n\n[Mon 2026-12-07 11:41 UTC] "
                           f"{wake_text('main', [], 2, 'crash', T0)}")], None),
    ([], None),  # a first turn is written only at its end: nothing to find
])
def test_a_turn_started_and_cut_unseen(messages: list[dict[str, object]], found: int | None) -> None:
    assert unseen_lost_turn({"messages": messages}, STARTED - 10 * S, ENDED, MARK) == found


def test_a_cut_wake_of_gatewayds_own_is_never_quoted() -> None:
    wake = wake_text("main", [], 2, "crash", T0)
    text = f"System: [2026-12-07 11:41:15 UTC] EVENT x\n\n[Mon 2026-12-07 11:41 UTC] {wake}"
    assert interrupted_request({"messages": [msg("user", STARTED, text)]}, STARTED, ENDED) is None


def test_unseen_lost_turn_reads_bad_history_as_nothing() -> None:
    assert unseen_lost_turn("nope", 0, 1, MARK) is None
