"""EventBus: typed and all-event subscribers, and a subscriber that raises is logged and skipped
without the publisher or the other subscribers seeing it."""

from __future__ import annotations

from structlog.testing import capture_logs

from supervisor.events import BootEnded, BootStarted, EventBus, GatewayReady

STARTED = BootStarted(1, 100, 5.0)
READY = GatewayReady(1, 100, "2026.9.6", "b-1", 6.0)
ENDED = BootEnded(1, 100, "crash", 1, 7.0, True)


def test_a_typed_subscriber_gets_its_type_only_and_an_untyped_one_everything() -> None:
    bus = EventBus()
    ended: list[BootEnded] = []
    everything: list[object] = []
    bus.subscribe(BootEnded, ended.append)
    bus.subscribe(everything.append)
    for ev in (STARTED, READY, ENDED):
        bus.publish(ev)
    assert ended == [ENDED]
    assert everything == [STARTED, READY, ENDED]


def test_a_subscriber_that_raises_is_logged_and_the_others_still_hear() -> None:
    bus = EventBus()
    before: list[object] = []
    after: list[object] = []

    def broken(ev: GatewayReady) -> None:
        raise KeyError("capabilities")

    bus.subscribe(before.append)
    bus.subscribe(GatewayReady, broken)
    bus.subscribe(after.append)
    with capture_logs() as logs:
        bus.publish(READY)  # does not raise
        bus.publish(ENDED)
    assert before == after == [READY, ENDED]
    failed = [e for e in logs if e["event"] == "event_listener_failed"]
    assert len(failed) == 1
    assert failed[0]["event_type"] == "GatewayReady" and failed[0]["error"] == "KeyError: 'capabilities'"
    assert "broken" in failed[0]["listener"]
    assert "Traceback" in failed[0]["traceback"] and 'raise KeyError("capabilities")' in failed[0]["traceback"]
