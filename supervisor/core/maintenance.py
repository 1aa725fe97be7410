"""Maintenance rules: pauses and the scheduled restart, as data and decisions. Pure: wall-clock
seconds in, decisions out; the shell (`supervisor.pausing`, `supervisor.maintenance_calendar`)
keeps the pause in the store and runs the calendar.

A pause stops supervision's actions (restarts, hang kills, recovery) until it ends: at `until`
(wall clock), or at a `resume`; `until` None lasts until a resume. Who paused it (`by`: "cli" or
"calendar") is kept so `status` can say it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

BY_CLI, BY_CALENDAR = "cli", "calendar"


@dataclass(frozen=True)
class Pause:
    since: float  # wall clock
    until: float | None  # wall clock; None: until resumed
    by: str  # BY_CLI or BY_CALENDAR
    reason: str = ""

    def active(self, now: float) -> bool:
        return self.until is None or now < self.until

    def as_dict(self) -> dict[str, object]:
        return {"since": self.since, "until": self.until, "by": self.by, "reason": self.reason}


def pause_for(now: float, for_s: float | None, by: str, reason: str = "") -> Pause:
    return Pause(now, None if for_s is None else now + for_s, by, reason)


def merged(current: Pause | None, new: Pause, now: float) -> Pause:
    """A pause asked for while one is on: the longer wins (a calendar window never cuts short an
    operator's open-ended pause, and an operator's longer pause outlives the window)."""
    if current is None or not current.active(now):
        return new
    if current.until is None or (new.until is not None and new.until <= current.until):
        return current
    return new


@dataclass(frozen=True)
class Window:
    """A `[[maintenance.pause]]` entry: a pause of `for_s` starting at each slot of `cron`."""

    cron: str
    for_s: float


@dataclass(frozen=True)
class MaintenancePlan:
    """The maintenance calendar as configured (`[maintenance]`)."""

    timezone: str = ""  # an IANA name; "": the machine's own
    restarts: tuple[str, ...] = ()  # cron expressions of safe restarts
    pauses: tuple[Window, ...] = ()
    misfire_grace_s: float = 3600.0  # a restart slot missed (asleep, gatewayd down) by more is skipped


class FireOutcome(StrEnum):
    RESTART = "restart-requested"  # a safe restart was asked of the daemon
    SKIPPED_PAUSED = "skipped-paused"  # a restart slot inside a pause: nothing is restarted
    SKIPPED_DOWN = "skipped-down"  # no gateway to restart (stopped, starting, backing off)
    SKIPPED_BUSY = "skipped-busy"  # a restart or stop already under way
    PAUSED = "paused"  # a pause window began
    SKIPPED_OVER = "skipped-over"  # a pause window found only after its end (slept through it)
    MISSED = "missed"  # found later than its grace (asleep, gatewayd down): not run


def restart_outcome(paused: bool, gateway_up: bool, busy: bool) -> FireOutcome:
    """What a restart slot does. A skipped slot is still recorded, and not tried again: a nightly
    restart that comes hours late would come at a busy hour."""
    if paused:
        return FireOutcome.SKIPPED_PAUSED
    if not gateway_up:
        return FireOutcome.SKIPPED_DOWN
    if busy:
        return FireOutcome.SKIPPED_BUSY
    return FireOutcome.RESTART


# -- text in: durations and cron expressions ----------------------------------------------------------

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def parse_duration(text: str) -> float:
    """'90s', '30m', '1h30m', '2d' or a plain number of seconds. ValueError says what is allowed."""
    t = text.strip().lower()
    try:
        value = float(t)
    except ValueError:
        parts = _DURATION.findall(t)
        if not parts or "".join(n + u for n, u in parts) != t:
            raise ValueError(f"{text!r} is not a duration (e.g. 90s, 30m, 1h30m, 2d)") from None
        value = sum(float(n) * _UNITS[u] for n, u in parts)
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError(f"{text!r} must be a positive duration")
    return value


_FIELD = re.compile(r"^[0-9a-z*,/\-]+$")
_DOW_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def cron_problem(expr: str) -> str | None:
    """A first check of a crontab line (minute hour day month weekday); the calendar's parser has
    the last word. Weekdays by name only: crons disagree on whether 0 is Sunday or Monday."""
    fields = expr.split()
    if len(fields) != 5:
        return f"must have 5 fields (minute hour day month weekday), got {len(fields)}"
    for name, f in zip(("minute", "hour", "day", "month", "weekday"), fields, strict=True):
        if not _FIELD.match(f.lower()):
            return f"{name} field {f!r}: only digits, names, * , - / allowed"
    dow = fields[4].lower()
    if any(c.isdigit() for c in dow.split("/")[0]):
        return f"weekday field {fields[4]!r}: use names ({', '.join(_DOW_NAMES)}), not numbers"
    return None
