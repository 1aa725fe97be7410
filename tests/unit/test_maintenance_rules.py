"""Maintenance rules: pauses as data, what a restart slot does, durations and cron lines, and the
alert rules' muting while paused."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor import config
from supervisor.core.alert_policy import AlertPolicy
from supervisor.core.alertrules import AlertKind, AlertRules, Down, PauseBegan, PauseEnded, Up
from supervisor.core.maintenance import (
    BY_CALENDAR,
    BY_CLI,
    FireOutcome,
    Pause,
    Window,
    cron_problem,
    merged,
    parse_duration,
    pause_for,
    restart_outcome,
)
from supervisor.core.model import SupervisionState, transition
from supervisor.errors import ConfigError


def test_a_pause_with_an_end_is_over_at_its_end_and_one_without_lasts() -> None:
    p = pause_for(1000.0, 60.0, BY_CLI)
    assert p == Pause(1000.0, 1060.0, BY_CLI)
    assert p.active(1059.9) and not p.active(1060.0)
    assert pause_for(1000.0, None, BY_CLI).active(1e12)


def test_the_longer_pause_wins() -> None:
    open_ended = pause_for(0.0, None, BY_CLI)
    window = pause_for(10.0, 3600.0, BY_CALENDAR)
    assert merged(open_ended, window, 10.0) is open_ended  # a window never cuts an operator's pause short
    short = pause_for(0.0, 60.0, BY_CLI)
    assert merged(short, window, 10.0) is window
    assert merged(window, short, 10.0) is window
    assert merged(pause_for(0.0, 5.0, BY_CLI), short, 10.0) is short  # the old one is over


@pytest.mark.parametrize(("paused", "up", "busy", "outcome"), [
    (False, True, False, FireOutcome.RESTART),
    (True, True, False, FireOutcome.SKIPPED_PAUSED),
    (False, False, False, FireOutcome.SKIPPED_DOWN),
    (False, True, True, FireOutcome.SKIPPED_BUSY),
    (True, False, True, FireOutcome.SKIPPED_PAUSED),
])
def test_what_a_restart_slot_does(paused: bool, up: bool, busy: bool, outcome: FireOutcome) -> None:
    assert restart_outcome(paused, up, busy) is outcome


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90.0), ("30m", 1800.0), ("1h30m", 5400.0), ("2d", 172800.0),
                                               ("45", 45.0), ("0.5h", 1800.0)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "1x", "-5", "0", "1h 30m", "nan", "inf", "30m1"])
def test_bad_durations_say_what_is_allowed(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(("expr", "problem"), [
    ("30 4 * * *", None),
    ("0 2 * * sun", None),
    ("*/15 1-5 1,15 jan-mar mon-fri", None),
    ("30 4 * *", "must have 5 fields"),
    ("30 4 * * * *", "must have 5 fields"),
    ("30 4 * * 0", "use names"),
    ("30 4 * * 1-5", "use names"),
    ("30 4 * * mon;rm", "only digits"),
])
def test_cron_lines(expr: str, problem: str | None) -> None:
    found = cron_problem(expr)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_paused_is_a_state_the_boot_loop_can_enter_and_leave() -> None:
    for state in SupervisionState:
        if state not in (SupervisionState.STOPPING, SupervisionState.PAUSED):
            transition(state, SupervisionState.PAUSED)
    for target in (SupervisionState.STARTING, SupervisionState.STOPPING):
        transition(SupervisionState.PAUSED, target)


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "gatewayd.toml"
    p.write_text(text)
    p.chmod(0o600)
    return p


def test_maintenance_config(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, '[maintenance]\ntimezone = "Europe/Berlin"\n'
                                      '[[maintenance.restart]]\ncron = "30 4 * * *"\n'
                                      '[[maintenance.pause]]\ncron = "0 2 * * sun"\nfor = "1h"\n'), environ={})
    m = cfg.maintenance
    assert (m.timezone, m.restarts, m.pauses, m.misfire_grace_s) == (
        "Europe/Berlin", ("30 4 * * *",), (Window("0 2 * * sun", 3600.0),), 3600.0)


@pytest.mark.parametrize(("text", "key", "problem"), [
    ('[maintenance]\ntimezone = "Mars/Olympus"\n', "maintenance.timezone", "IANA time zone"),
    ('[[maintenance.restart]]\ncron = "30 4 * * 0"\n', "maintenance.restart", "[0] cron: weekday field"),
    ('[[maintenance.restart]]\nwhen = "30 4 * * *"\n', "maintenance.restart", "[0] when: unknown key"),
    ('[[maintenance.pause]]\ncron = "0 2 * * sun"\n', "maintenance.pause", "[0] for: missing"),
    ('[[maintenance.pause]]\ncron = "0 2 * * sun"\nfor = "soon"\n', "maintenance.pause", "[0] for: 'soon' is not"),
    ('[[maintenance.pause]]\ncron = "0 2 * * sun"\nfor = "8d"\n', "maintenance.pause", "[0] for: must be in"),
    ('[maintenance]\nrestart = "30 4 * * *"\n', "maintenance.restart", "must be a list of tables"),
])
def test_bad_maintenance_config_is_one_line_naming_the_key(tmp_path: Path, text: str, key: str,
                                                           problem: str) -> None:
    with pytest.raises(ConfigError) as e:
        config.load(write(tmp_path, text), environ={})
    assert e.value.key == key and problem in str(e.value) and "\n" not in str(e.value)


def test_alerts_are_muted_while_paused_but_the_pause_reminds() -> None:
    r = AlertRules(AlertPolicy(reminder_interval_s=600.0))
    began = r.on_fact(PauseBegan(BY_CLI, None), 0.0)
    assert [(a.kind, a.send) for a in began] == [(AlertKind.PAUSED, True)]
    down = r.on_fact(Down(1, "crash", -9, "signal SIGKILL", False), 10.0)
    assert [(a.kind, a.send, a.held_because) for a in down] == [(AlertKind.DOWN, False, "paused")]
    assert r.next_wake() == 600.0
    assert [(a.kind, a.send) for a in r.due(600.0) if a.kind is AlertKind.PAUSED] == [(AlertKind.PAUSED, True)]
    assert all(not a.send for a in r.due(600.0) if a.kind is not AlertKind.PAUSED)
    ended = r.on_fact(PauseEnded(BY_CLI), 700.0)
    assert [(a.kind, a.send) for a in ended] == [(AlertKind.RESUMED, True)]
    r.on_fact(Up(2), 710.0)
    later = r.due(710.0 + 600.0)  # after the pause, alerts are sent again: "recovered"
    assert [(a.kind, a.send) for a in later] == [(AlertKind.RECOVERED, True)]


def test_the_readme_maintenance_example_is_a_working_config(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    example = readme[readme.index("### Maintenance"):].split("```toml\n", 1)[1].split("```", 1)[0]
    m = config.load(write(tmp_path, example), environ={}).maintenance
    assert m.restarts == ("30 4 * * *",) and m.pauses == (Window("0 2 * * sun", 3600.0),)
    assert (m.timezone, m.misfire_grace_s) == ("Europe/Berlin", 3600.0)
    from supervisor.maintenance_calendar import triggers
    assert [kind for kind, *_ in triggers(m)] == ["restart", "pause"]  # APScheduler takes every line


def test_a_cron_line_the_scheduler_refuses_is_one_line_naming_the_file_and_entry() -> None:
    from supervisor.core.maintenance import MaintenancePlan
    from supervisor.maintenance_calendar import triggers
    with pytest.raises(ConfigError) as e:
        triggers(MaintenancePlan(restarts=("30 4 * * *", "61 4 * * *")), "/etc/gatewayd.toml")
    assert e.value.key == "maintenance.restart[1].cron" and e.value.source == "/etc/gatewayd.toml"
    assert "61" in str(e.value) and "\n" not in str(e.value)
