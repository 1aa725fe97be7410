"""The alert rules: facts and `now` in, alerts (sent or held back) out."""

from __future__ import annotations

import pytest

from supervisor.core.alert_policy import AlertPolicy, retry_delay
from supervisor.core.alertrules import (
    Alert,
    AlertKind,
    AlertRules,
    ConfigRefused,
    Conflict,
    DaemonRestarted,
    Down,
    Exited,
    GivenUp,
    Hang,
    MemoryRestart,
    Recovered,
    StoreFailing,
    StoreRecovered,
    Up,
)

POLICY = AlertPolicy(reminder_interval_s=600.0, recovery_wait_s=300.0, recovered_after_s=20.0, max_per_hour=30,
                     retry_initial_s=2.0, retry_max_s=30.0, retry_attempts=5, healthy_after_s=120.0)


def rules(**changes: float) -> AlertRules:
    return AlertRules(AlertPolicy(**{**POLICY.__dict__, **changes}))


def crash(boot: int = 1, loop: bool = False, incident: int | None = 7) -> Down:
    return Down(boot, "crash", -9, "signal SIGKILL", loop, incident, ("line 1", "line 2"))


def kinds(alerts: list[Alert]) -> list[tuple[AlertKind, bool]]:
    return [(a.kind, a.send) for a in alerts]


def test_down_alerts_once_and_links_its_incident() -> None:
    r = rules()
    [a] = r.on_fact(crash(incident=7), 100.0)
    assert (a.kind, a.send, a.incident) == (AlertKind.DOWN, True, 7)
    assert "gatewayd history --incident 7" in a.body and "line 2" in a.body
    assert a.fields["exit_kind"] == "crash" and a.fields["returncode"] == -9


def test_exits_while_down_are_counted_into_one_reminder_per_interval() -> None:
    r = rules()
    r.on_fact(crash(1), 0.0)
    for boot, t in ((2, 10.0), (3, 70.0), (4, 130.0)):
        assert r.on_fact(crash(boot), t) == []  # not one per retry
    assert r.due(599.0) == []
    assert r.next_wake() == 600.0
    [reminder] = r.due(600.0)
    assert reminder.kind is AlertKind.STILL_DOWN and reminder.send
    assert reminder.fields == {"down_for_s": 600, "exits": 3}
    assert r.due(1199.0) == []
    [again] = r.due(1200.0)
    assert again.kind is AlertKind.STILL_DOWN and again.fields["exits"] == 0


def test_no_reminder_while_the_gateway_is_up_and_recovering() -> None:
    r = rules(recovery_wait_s=5000.0)
    r.on_fact(crash(1), 0.0)
    r.on_fact(Up(2), 5.0)
    assert r.due(700.0) == [] and r.next_wake() == 5005.0
    r.on_fact(crash(2), 710.0)  # down again before any recovery reported: the same outage, no new alert
    [reminder] = r.due(710.0)  # the interval since the last notice has passed: the reminder is due now
    assert reminder.kind is AlertKind.STILL_DOWN and reminder.fields["exits"] == 1
    assert r.due(1309.0) == []


def test_recovery_after_down_is_one_recovered_alert_listing_the_work_then_down_alerts_again() -> None:
    r = rules()
    r.on_fact(crash(1), 0.0)
    r.on_fact(Up(2), 3.0)
    [a] = r.on_fact(Recovered(2, ("cron job nightly: retried - done",), ("session s: gave up",)), 40.0)
    assert a.kind is AlertKind.RECOVERED and a.send
    assert "cron job nightly: retried" in a.body and "session s: gave up" in a.body and "down for 40 s" in a.body
    assert a.fields["done"] == ["cron job nightly: retried - done"] and a.fields["finished"] is True
    assert r.due(10_000.0) == []  # nothing is down any more
    assert kinds(r.on_fact(crash(2), 50.0)) == [(AlertKind.DOWN, True)]  # a new outage, a new alert
    r.on_fact(Up(3), 51.0)
    assert r.on_fact(Recovered(3), 60.0) == []  # up 9 s: not yet
    assert r.next_wake() == 71.0
    assert kinds(r.due(71.0)) == [(AlertKind.RECOVERED, True)]  # not a duplicate of the last


def test_a_crash_before_the_gateway_stayed_up_is_the_same_outage() -> None:
    r = rules()
    r.on_fact(crash(1), 0.0)
    r.on_fact(Up(2), 1.0)
    assert r.on_fact(Recovered(2, ("cron job a: retried - done",)), 6.0) == []
    assert r.on_fact(crash(2), 8.0) == []  # no recovered, no second down: a crash loop is one outage
    assert r.due(100.0) == []
    r.on_fact(Up(3), 101.0)
    assert r.on_fact(Recovered(3, ("session s: noticed and woken - done",)), 105.0) == []
    [a] = r.due(121.0)
    assert a.kind is AlertKind.RECOVERED
    assert a.fields["done"] == ["cron job a: retried - done", "session s: noticed and woken - done"]


def test_recovered_with_nothing_in_flight_says_so() -> None:
    r = rules()
    r.on_fact(crash(1), 0.0)
    r.on_fact(Up(2), 1.0)
    [a] = r.on_fact(Recovered(2), 21.0)
    assert "Nothing was in flight" in a.body


def test_recovery_with_nothing_down_and_nothing_done_is_silent() -> None:
    r = rules()
    assert r.on_fact(Recovered(1), 5.0) == []
    # a planned restart's recovery that did something is worth a word
    assert kinds(r.on_fact(Recovered(2, ("cron job a: retried - done",)), 6.0)) == [(AlertKind.RECOVERED, True)]


def test_up_without_recovery_report_is_recovered_after_the_wait() -> None:
    r = rules()
    r.on_fact(crash(1), 0.0)
    r.on_fact(Up(2), 10.0)
    assert r.next_wake() == 310.0
    assert r.due(309.0) == []
    [a] = r.due(310.0)
    assert a.kind is AlertKind.RECOVERED and a.fields["finished"] is False
    assert r.due(5000.0) == []


@pytest.mark.parametrize("kind", ["clean-stop", "planned-restart", "restart-requested", "stop-unclean"])
def test_planned_exits_alert_nothing(kind: str) -> None:
    r = rules()
    assert r.on_fact(Exited(1, kind, False), 0.0) == []
    assert r.due(10_000.0) == [] and r.next_wake() is None


def test_crash_loop_entered_with_the_exit_and_left_after_a_healthy_run() -> None:
    r = rules()
    assert kinds(r.on_fact(crash(1, loop=True), 0.0)) == [(AlertKind.CRASH_LOOP_ENTERED, True), (AlertKind.DOWN, True)]
    assert r.on_fact(crash(2, loop=True), 60.0) == []  # still in the loop, still down
    r.on_fact(Up(3), 120.0)
    assert r.due(239.0) == []
    assert kinds(r.due(240.0)) == [(AlertKind.CRASH_LOOP_LEFT, True)]
    assert r.crash_loop is False


def test_crash_loop_left_when_the_policy_says_so_at_an_exit() -> None:
    r = rules()
    r.on_fact(crash(1, loop=True), 0.0)
    assert kinds(r.on_fact(Exited(2, "restart-requested", False), 10.0)) == [(AlertKind.CRASH_LOOP_LEFT, True)]


def test_a_crash_loop_that_ends_in_a_crash_is_never_left_by_a_short_up() -> None:
    r = rules()
    r.on_fact(crash(1, loop=True), 0.0)
    r.on_fact(Up(2), 100.0)
    r.on_fact(crash(2, loop=True), 200.0)  # up 100 s < healthy_after_s 120 s
    assert [a for a in r.due(300.0) if a.kind is AlertKind.CRASH_LOOP_LEFT] == []


def test_hang_alerts_per_boot_and_a_repeat_for_the_same_boot_is_held() -> None:
    r = rules()
    assert kinds(r.on_fact(Hang(1, 42, "hang"), 0.0)) == [(AlertKind.HANG, True)]
    [dup] = r.on_fact(Hang(1, 42, "hang"), 1.0)
    assert (dup.send, dup.held_because) == (False, "duplicate")
    assert kinds(r.on_fact(Hang(2, 43, "hang"), 2.0)) == [(AlertKind.HANG, True)]


def test_config_error_repeats_at_most_once_per_interval() -> None:
    r = rules()
    [a] = r.on_fact(ConfigRefused(1, "exit 78, config or database refused", ("bad key foo",)), 0.0)
    assert a.kind is AlertKind.CONFIG_ERROR and a.send and "bad key foo" in a.body
    assert kinds(r.on_fact(ConfigRefused(2, "exit 78", ()), 300.0)) == [(AlertKind.CONFIG_ERROR, False)]
    assert kinds(r.on_fact(ConfigRefused(3, "exit 78", ()), 600.0)) == [(AlertKind.CONFIG_ERROR, True)]


def test_conflict_rechecked_every_30_s_is_one_alert() -> None:
    r = rules()
    sent = [a.send for t in range(0, 600, 30) for a in r.on_fact(Conflict(18789, "pid 9 (node)"), float(t))]
    assert sent == [True] + [False] * 19
    assert "pid 9 (node)" in r.on_fact(Conflict(18789, "pid 9 (node)"), 600.0)[0].body


def test_store_failing_alerts_once_until_it_works_again() -> None:
    r = rules()
    assert kinds(r.on_fact(StoreFailing("disk I/O error"), 0.0)) == [(AlertKind.STORE_FAILING, True)]
    assert r.on_fact(StoreFailing("disk I/O error"), 1.0) == []
    assert kinds(r.on_fact(StoreRecovered("disk I/O error"), 2.0)) == [(AlertKind.STORE_RECOVERED, True)]
    assert r.on_fact(StoreRecovered("x"), 3.0) == []  # nothing was failing


def test_given_up_memory_restart_and_daemon_restart_each_alert() -> None:
    r = rules()
    [g] = r.on_fact(GivenUp(("cron job nightly: retried - given-up",), "5"), 0.0)
    assert g.kind is AlertKind.GIVEN_UP and "nightly" in g.body
    [m] = r.on_fact(MemoryRestart(3, 3 << 30, 2 << 30), 0.0)
    assert m.kind is AlertKind.MEMORY_RESTART and "3072 MiB" in m.body
    [d] = r.on_fact(DaemonRestarted(1234, "running"), 0.0)
    assert d.kind is AlertKind.DAEMON_RESTARTED and "1234" in d.body


def test_rate_limit_holds_what_is_over_the_hourly_budget() -> None:
    r = rules(max_per_hour=3)
    out = [a for boot in range(1, 6) for a in r.on_fact(Hang(boot, boot, "hang"), float(boot))]
    assert [(a.send, a.held_because) for a in out] == [(True, None)] * 3 + [(False, "rate-limit")] * 2
    assert r.on_fact(Hang(9, 9, "hang"), 3601.0)[0].send  # the first one left the hour


def test_held_alerts_do_not_use_up_the_budget() -> None:
    r = rules(max_per_hour=2)
    r.on_fact(Hang(1, 1, "hang"), 0.0)
    r.on_fact(Hang(1, 1, "hang"), 1.0)  # duplicate: held, not counted
    assert r.on_fact(Hang(2, 2, "hang"), 2.0)[0].send


@pytest.mark.parametrize(("attempt", "delay"), [(1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (5, None)])
def test_retry_delay_doubles_to_the_cap_then_gives_up(attempt: int, delay: float | None) -> None:
    assert retry_delay(POLICY, attempt) == delay


def test_retry_delay_is_capped() -> None:
    assert retry_delay(AlertPolicy(retry_initial_s=10.0, retry_max_s=25.0, retry_attempts=10), 4) == 25.0


def test_dedupe_memory_stays_bounded_over_a_long_life() -> None:
    r = rules(max_per_hour=1000)
    for boot in range(2000):
        r.on_fact(Hang(boot, boot, "hang"), boot * 700.0)  # each past the last one's interval
    assert len(r.sent_at) <= 513
