"""One wake per agent: the pure decision, every case."""

from __future__ import annotations

import pytest

from supervisor.core.wake_plan import Interrupted, WakeStep, WakeVerb, decide, follow_up, wake_text

NOW, DEADLINE, ENDED = 100_000, 200_000, 50_000


def conv(state: str = "open", resolution: str | None = None, kind: str = "main",
         key: str = "agent:kit:main") -> Interrupted:
    return Interrupted("session", "kit", key, kind, state, resolution, 1, None)


def cron(state: str = "open", planned: int | None = 90_000, resolution: str | None = None) -> Interrupted:
    return Interrupted("cron", "kit", "digest", None, state, resolution, 1, planned, 3)


@pytest.mark.parametrize(("items", "requeued", "mode", "now", "verb"), [
    ([], 0, "active", NOW, WakeVerb.NOTHING),
    ([cron()], 0, "off", NOW, WakeVerb.NOTHING),
    ([cron()], 0, "active", NOW, WakeVerb.WAKE),
    ([cron(planned=None)], 0, "active", NOW, WakeVerb.WAIT),  # the retry's time is not known yet
    ([cron(planned=None)], 0, "active", DEADLINE, WakeVerb.WAKE),  # ... until the deadline
    ([cron(state="done", resolution="adopted a regular run")], 0, "active", NOW, WakeVerb.WAKE),
    ([cron()], 0, "conversations", NOW, WakeVerb.NOTHING),
    ([conv()], 0, "active", NOW, WakeVerb.WAIT),  # its notice or resume may still come
    ([conv(state="done", resolution="resumed by the gateway itself"), cron()], 0, "active", NOW, WakeVerb.COVERED),
    ([conv(state="done", resolution="restart notice sent as an agent turn")], 0, "conversations", NOW,
     WakeVerb.COVERED),
    ([conv(state="done", resolution="its turn had completed before the crash")], 0, "active", NOW,
     WakeVerb.NOTHING),
    ([conv(state="done", resolution="its turn had completed before the crash"), cron()], 0, "active", NOW,
     WakeVerb.WAKE),
    ([conv(state="given-up", resolution="restart notice lost 2 times")], 0, "active", NOW, WakeVerb.WAKE),
    ([conv(state="given-up", resolution="restart notice lost 2 times")], 0, "conversations", NOW, WakeVerb.WAKE),
    ([conv(state="done", resolution="a cron run's session: the cron retry covers it", kind="cron")], 0,
     "active", NOW, WakeVerb.NOTHING),
    ([], 3, "active", NOW, WakeVerb.WAKE),  # only re-queued system events: they wait for a turn
    ([], 3, "conversations", NOW, WakeVerb.NOTHING),
    # events queued again wait in the main session: a notice there hands them over, one elsewhere does not
    ([conv(state="done", resolution="restart notice sent as a chat.send turn")], 3, "active", NOW, WakeVerb.COVERED),
    ([conv(state="done", resolution="restart notice sent as a system event with a wake")], 3, "active", NOW,
     WakeVerb.COVERED),
    # the gateway's own resume is the wake, events or not (no second turn); an agent turn drains nothing
    ([conv(state="done", resolution="resumed by the gateway itself")], 3, "active", NOW, WakeVerb.COVERED),
    ([conv(state="done", resolution="restart notice sent as an agent turn")], 3, "active", NOW, WakeVerb.WAKE),
    ([conv(state="done", resolution="restart notice sent as an agent turn", kind="telegram",
           key="agent:kit:telegram:dm:1")], 3, "active", NOW, WakeVerb.WAKE),
    ([conv(state="done", resolution="restart notice sent as an agent turn", kind="telegram",
           key="agent:kit:telegram:dm:1")], 0, "active", NOW, WakeVerb.COVERED),
])
def test_decide(items: list[Interrupted], requeued: int, mode: str, now: int, verb: WakeVerb) -> None:
    d = decide("kit", items, requeued, mode, "crash", ENDED, now, DEADLINE)
    assert d.verb is verb, d
    assert (d.text is not None) is (verb is WakeVerb.WAKE)
    assert d.why


def test_the_text_says_what_was_cut_and_what_is_done() -> None:
    text = wake_text("kit", [cron(planned=1_796_536_140_000), cron(state="given-up", resolution="job disabled")],
                     2, "crash", 1_796_536_000_000)
    assert "\n" not in text
    assert text.startswith("[gatewayd] The gateway restarted (crash) at 2026-12-06 ")
    assert 'cron job "digest": retry 2 of 3 at 2026-12-06 ' in text
    assert 'cron job "digest": job disabled' in text
    assert "2 system events queued before the restart, queued again" in text


def test_a_long_list_is_counted() -> None:
    text = wake_text("kit", [cron()] * 11, 0, "crash", ENDED)
    assert text.count('cron job "digest"') == 8 and "and 3 more" in text


CONFIRM = 30_000


@pytest.mark.parametrize(("state", "method", "same_gateway", "turn_seen", "waited", "step"), [
    # decided, not sent: journal and send, whatever else is known
    ("planned", "wake", True, None, 0, WakeStep.SEND),
    ("planned", "chat.send", False, None, 10 * CONFIRM, WakeStep.SEND),
    # a turn of the session seen after the send: done, on every path
    ("answered", "wake", True, True, 0, WakeStep.DONE),
    ("answered", "agent", False, True, 10 * CONFIRM, WakeStep.DONE),
    ("dispatched", "chat.send", True, True, 0, WakeStep.DONE),
    ("dispatched", "wake", False, True, CONFIRM, WakeStep.DONE),
    # journaled into this gateway, answer lost with gatewayd, no turn: sent again (idempotent)
    ("dispatched", "chat.send", True, False, 0, WakeStep.SEND_AGAIN),
    ("dispatched", "wake", True, None, 10 * CONFIRM, WakeStep.SEND_AGAIN),
    # within the window: look again
    ("answered", "wake", True, False, CONFIRM - 1, WakeStep.LOOK),
    ("answered", "chat.send", True, False, 0, WakeStep.LOOK),
    ("dispatched", "agent", False, False, CONFIRM - 1, WakeStep.LOOK),
    # the gateway could not be asked: looked for up to twice the window
    ("answered", "chat.send", True, None, CONFIRM, WakeStep.LOOK),
    ("answered", "wake", True, None, 2 * CONFIRM - 1, WakeStep.LOOK),
    ("answered", "chat.send", True, None, 2 * CONFIRM, WakeStep.UNCONFIRMED),
    ("answered", "wake", True, None, 2 * CONFIRM, WakeStep.FALL_BACK),
    # no turn by the window's end: a wake falls back to a user turn; a user turn is not sent again
    ("answered", "wake", True, False, CONFIRM, WakeStep.FALL_BACK),
    ("dispatched", "wake", False, False, CONFIRM, WakeStep.FALL_BACK),
    ("answered", "chat.send", True, False, CONFIRM, WakeStep.UNCONFIRMED),
    ("answered", "agent", False, False, 10 * CONFIRM, WakeStep.UNCONFIRMED),
    ("dispatched", "agent", False, False, CONFIRM, WakeStep.UNCONFIRMED),
])
def test_follow_up(state: str, method: str, same_gateway: bool, turn_seen: bool | None, waited: int,
                   step: WakeStep) -> None:
    assert follow_up(state, method, same_gateway, turn_seen, waited, CONFIRM) is step


def test_an_accepted_user_turn_is_not_done_until_its_turn_is_seen() -> None:
    """2026.2.26 answered a chat.send `started` and then failed its turn (a session lock a kill had
    left): the answer alone once settled it done."""
    assert follow_up("answered", "chat.send", False, False, 0, CONFIRM) is WakeStep.LOOK
    assert follow_up("answered", "chat.send", False, False, CONFIRM, CONFIRM) is WakeStep.UNCONFIRMED
    assert follow_up("answered", "agent", True, True, 1, CONFIRM) is WakeStep.DONE
