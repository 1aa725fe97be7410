"""Alert rules: which fact makes which alert, and when a repeat is held back. Pure: facts and `now`
(monotonic seconds) in, decisions out; the shell (`supervisor.alerter`) stores and sends them.

- A gateway that goes down is one "down" alert. Further exits while it is still down (a crash loop
  restarting it every minute) make no alert each: one "still down" reminder per
  `reminder_interval_s` says how many, and only while the gateway is not up again.
- The down state ends with the recovery that follows ("recovered", listing what was retried,
  noticed and woken) once the gateway has also stayed up `recovered_after_s`: one that crashes
  again sooner is the same outage (a crash loop is not a string of down/recovered pairs), and what
  its recoveries did is kept for the one "recovered" at its end. When no recovery reports, the
  gateway up `recovery_wait_s` is "recovered" all the same.
- Any other alert with the same kind and key is sent at most once per `reminder_interval_s`
  (a port conflict re-checked every 30 s is one alert, not 120 an hour).
- While supervision is paused (maintenance) every alert is held ("paused") but the pause's own:
  one "paused" when it begins, a "still paused" reminder per `reminder_interval_s`, "resumed" at
  its end.
- At most `max_per_hour` alerts are sent in any hour; beyond that they are kept, marked suppressed.
- A notifier that fails is tried again after `retry_delay(attempt)`, up to `retry_attempts` times.

Held-back alerts are decisions too (`Alert.send` False, with the reason): the shell keeps them in the
store, so `history` shows what happened even when nothing was sent.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from supervisor.core.alert_policy import AlertPolicy
from supervisor.core.policy import describe_returncode


class AlertKind(StrEnum):
    DOWN = "down"
    STILL_DOWN = "still-down"
    RECOVERED = "recovered"
    CRASH_LOOP_ENTERED = "crash-loop-entered"
    CRASH_LOOP_LEFT = "crash-loop-left"
    HANG = "hang"
    CONFIG_ERROR = "config-error"
    GIVEN_UP = "given-up"
    MEMORY_RESTART = "memory-restart"
    DAEMON_RESTARTED = "daemon-restarted"
    CONFLICT = "conflict"
    STORE_FAILING = "store-failing"
    STORE_RECOVERED = "store-recovered"
    PAUSED = "paused"
    RESUMED = "resumed"
    TEST = "test"


CRITICAL, WARNING, INFO = "critical", "warning", "info"

# Exit kinds that take the gateway down without anyone wanting it (core.model.ExitKind values).
DOWN_KINDS = frozenset({"crash", "oom-kill", "hang-kill", "boot-timeout", "vanished", "updater-parked"})


# -- facts ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Down:
    boot: int
    exit_kind: str
    returncode: int | None
    detail: str
    crash_loop: bool
    incident: int | None = None
    last_lines: tuple[str, ...] = ()


@dataclass(frozen=True)
class Exited:
    """An exit that is not a failure (clean stop, planned or requested restart): no down alert, but
    the crash-loop flag still moves with it."""

    boot: int
    exit_kind: str
    crash_loop: bool


@dataclass(frozen=True)
class Up:
    boot: int


@dataclass(frozen=True)
class Hang:
    boot: int
    pid: int
    verdict: str


@dataclass(frozen=True)
class ConfigRefused:
    boot: int
    detail: str
    last_lines: tuple[str, ...] = ()


@dataclass(frozen=True)
class Recovered:
    """A recovery finished; what it did, one line per obligation."""

    boot: int
    done: tuple[str, ...] = ()
    given_up: tuple[str, ...] = ()


@dataclass(frozen=True)
class GivenUp:
    items: tuple[str, ...]
    key: str


@dataclass(frozen=True)
class MemoryRestart:
    boot: int
    rss_bytes: int
    limit_bytes: int


@dataclass(frozen=True)
class DaemonRestarted:
    previous_pid: int | None
    previous_state: str


@dataclass(frozen=True)
class Conflict:
    port: int
    owner: str


@dataclass(frozen=True)
class StoreFailing:
    error: str


@dataclass(frozen=True)
class StoreRecovered:
    was: str


@dataclass(frozen=True)
class PauseBegan:
    by: str
    until: float | None  # wall clock, for the text only
    reason: str = ""


@dataclass(frozen=True)
class PauseEnded:
    by: str


Fact = (PauseBegan | PauseEnded
        | Down | Exited | Up | Hang | ConfigRefused | Recovered | GivenUp | MemoryRestart | DaemonRestarted | Conflict
        | StoreFailing | StoreRecovered)


# -- decisions --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    kind: AlertKind
    key: str  # with the kind: what "the same alert" means for deduplication
    severity: str
    title: str
    body: str
    send: bool = True
    held_because: str | None = None  # why it is not sent: "duplicate" or "rate-limit"
    incident: int | None = None
    boot: int | None = None
    fields: dict[str, Any] = field(default_factory=dict)


def _lines(items: tuple[str, ...], limit: int = 20) -> str:
    shown = [f"- {x}" for x in items[:limit]]
    if len(items) > limit:
        shown.append(f"- ... and {len(items) - limit} more")
    return "\n".join(shown)


@dataclass
class AlertRules:
    policy: AlertPolicy = field(default_factory=AlertPolicy)
    down_since: float | None = None  # a down alert is out and no recovery has ended it
    down_boot: int | None = None
    exits_while_down: int = 0  # since the last down or reminder alert
    last_exit: str = ""
    last_notice_at: float = 0.0  # the last down or still-down alert
    up_since: float | None = None
    pending: Recovered | None = None  # recoveries finished during this outage, not alerted yet
    crash_loop: bool = False
    store_failing: bool = False
    paused_since: float | None = None
    pause_notice_at: float = 0.0
    pause_text: str = ""
    sent_at: dict[tuple[AlertKind, str], float] = field(default_factory=dict)
    recent: deque[float] = field(default_factory=deque)  # when each of the last hour's alerts was sent

    # -- facts in -------------------------------------------------------------------------------

    def on_fact(self, fact: Fact, now: float) -> list[Alert]:
        out: list[Alert] = []
        match fact:
            case PauseBegan():
                until = "until resumed" if fact.until is None else f"until {fact.until:.0f} (unix time)"
                self.pause_text = f"paused by {fact.by}, {until}{': ' + fact.reason if fact.reason else ''}"
                if self.paused_since is None:
                    self.paused_since = now
                self.pause_notice_at = now
                out.append(self._gate(Alert(
                    AlertKind.PAUSED, "paused", WARNING, "gatewayd supervision paused",
                    f"Supervision is {self.pause_text}: no restarts, no hang kills, no recovery; other alerts are"
                    " muted.", fields={"by": fact.by, "until": fact.until, "reason": fact.reason}), now,
                    reminder=True))
            case PauseEnded():
                if self.paused_since is not None:
                    self.paused_since = None
                    out.append(self._gate(Alert(AlertKind.RESUMED, "resumed", INFO, "gatewayd supervision resumed",
                                                f"The pause ended ({fact.by}): gatewayd supervises again.",
                                                fields={"by": fact.by}), now, reminder=True))
            case Down():
                out += self._crash_loop(fact.crash_loop, fact.boot, now)
                out += self._down(fact, now)
            case Exited():
                out += self._crash_loop(fact.crash_loop, fact.boot, now)
                self.up_since = None
            case Up():
                self.up_since = now
            case Hang():
                out.append(self._gate(Alert(
                    AlertKind.HANG, f"boot-{fact.boot}", CRITICAL, "gateway hang declared",
                    f"The gateway (pid {fact.pid}) stopped answering ({fact.verdict}); gatewayd is killing it and "
                    "will start it again.", boot=fact.boot, fields={"pid": fact.pid, "verdict": fact.verdict}), now))
            case ConfigRefused():
                self.up_since = None
                body = (f"The gateway refused its config or database ({fact.detail}). gatewayd retries once the "
                        "config file changes.")
                if fact.last_lines:
                    body += "\nLast lines:\n" + "\n".join(fact.last_lines[-10:])
                out.append(self._gate(Alert(AlertKind.CONFIG_ERROR, "config", CRITICAL,
                                            "gateway config error (exit 78)", body, boot=fact.boot,
                                            fields={"detail": fact.detail}), now))
            case Recovered():
                p = self.pending
                self.pending = fact if p is None else Recovered(fact.boot, p.done + fact.done,
                                                                 p.given_up + fact.given_up)
                out += self._settled(now)
            case GivenUp():
                out.append(self._gate(Alert(AlertKind.GIVEN_UP, fact.key, CRITICAL, "recovery gave up",
                                            "gatewayd gave up on interrupted work:\n" + _lines(fact.items),
                                            fields={"items": list(fact.items)}), now))
            case MemoryRestart():
                out.append(self._gate(Alert(
                    AlertKind.MEMORY_RESTART, f"boot-{fact.boot}", WARNING, "gateway restarted for memory pressure",
                    f"The gateway's process tree used {fact.rss_bytes >> 20} MiB (limit {fact.limit_bytes >> 20} MiB);"
                    " gatewayd restarted it.", boot=fact.boot,
                    fields={"rss_bytes": fact.rss_bytes, "limit_bytes": fact.limit_bytes}), now))
            case DaemonRestarted():
                out.append(self._gate(Alert(
                    AlertKind.DAEMON_RESTARTED, "daemon", WARNING, "gatewayd restarted after a crash",
                    f"gatewayd (previous pid {fact.previous_pid}) ended without stopping (last state "
                    f"{fact.previous_state}); a new gatewayd took over.",
                    fields={"previous_pid": fact.previous_pid, "previous_state": fact.previous_state}), now))
            case Conflict():
                self.up_since = None
                out.append(self._gate(Alert(
                    AlertKind.CONFLICT, f"port-{fact.port}", CRITICAL, "another manager holds the gateway's port",
                    f"Port {fact.port} is held by {fact.owner}, which is not gatewayd's: it is never touched. "
                    "Stop the other manager (another gatewayd, launchd or systemd job, or a gateway started by hand).",
                    fields={"port": fact.port, "owner": fact.owner}), now))
            case StoreFailing():
                if not self.store_failing:
                    self.store_failing = True
                    out.append(self._gate(Alert(
                        AlertKind.STORE_FAILING, "store", CRITICAL, "gatewayd's store is failing",
                        f"Writes to the store fail: {fact.error}. Supervision goes on; in-flight work is not recorded"
                        " until writes work again.", fields={"error": fact.error}), now))
            case StoreRecovered():
                if self.store_failing:
                    self.store_failing = False
                    out.append(self._gate(Alert(AlertKind.STORE_RECOVERED, "store", INFO,
                                                "gatewayd's store works again",
                                                f"Store writes resumed (the failure was: {fact.was}).",
                                                fields={"was": fact.was}), now))
        return out

    # -- time in ----------------------------------------------------------------------------------

    def due(self, now: float) -> list[Alert]:
        """Alerts that time alone makes due: a still-down reminder, a crash loop left, a recovery
        that never reported."""
        out: list[Alert] = []
        if self.paused_since is not None and now - self.pause_notice_at >= self.policy.reminder_interval_s:
            self.pause_notice_at = now
            out.append(self._gate(Alert(
                AlertKind.PAUSED, "paused", WARNING, "gatewayd supervision still paused",
                f"Supervision has been {self.pause_text} for {int((now - self.paused_since) // 60)} min.",
                fields={"paused_for_s": round(now - self.paused_since)}), now, reminder=True))
        if self.down_since is not None and self.up_since is None \
                and now - self.last_notice_at >= self.policy.reminder_interval_s:
            self.last_notice_at = now
            minutes = int((now - self.down_since) // 60)
            out.append(self._gate(Alert(
                AlertKind.STILL_DOWN, "down", CRITICAL, "gateway still down",
                f"The gateway has been down for {minutes} min; {self.exits_while_down} more exit(s) since the last"
                f" alert (last: {self.last_exit}). gatewayd keeps restarting it.", boot=self.down_boot,
                fields={"down_for_s": round(now - self.down_since), "exits": self.exits_while_down}),
                now, reminder=True))
            self.exits_while_down = 0
        if self.crash_loop and self.up_since is not None and now - self.up_since >= self.policy.healthy_after_s:
            out += self._crash_loop(False, None, now)
        out += self._settled(now)
        if self.down_since is not None and self.up_since is not None \
                and now - self.up_since >= self.policy.recovery_wait_s:
            out += self._recovered(Recovered(self.down_boot or 0), now, finished=False)
        return out

    def next_wake(self) -> float | None:
        """When `due` may next have something (monotonic), or None."""
        times: list[float] = []
        if self.paused_since is not None:
            times.append(self.pause_notice_at + self.policy.reminder_interval_s)
        if self.down_since is not None and self.up_since is None:
            times.append(self.last_notice_at + self.policy.reminder_interval_s)
        if self.crash_loop and self.up_since is not None:
            times.append(self.up_since + self.policy.healthy_after_s)
        if self.down_since is not None and self.up_since is not None:
            times.append(self.up_since + self.policy.recovery_wait_s)
            if self.pending is not None:
                times.append(self.up_since + self.policy.recovered_after_s)
        return min(times) if times else None

    # -- the rules --------------------------------------------------------------------------------

    def _down(self, fact: Down, now: float) -> list[Alert]:
        self.up_since = None
        how = describe_returncode(fact.returncode)
        self.last_exit = f"{fact.exit_kind}, {how}"
        if self.down_since is not None:  # still down: counted into the next reminder
            self.exits_while_down += 1
            return []
        self.down_since, self.down_boot, self.last_notice_at, self.exits_while_down = now, fact.boot, now, 0
        body = f"The gateway exited: {fact.exit_kind} ({fact.detail}). gatewayd is restarting it."
        if fact.incident is not None:
            body += f"\nIncident {fact.incident}: gatewayd history --incident {fact.incident}"
        if fact.last_lines:
            body += "\nLast lines:\n" + "\n".join(fact.last_lines[-10:])
        return [self._gate(Alert(AlertKind.DOWN, "down", CRITICAL, f"gateway down: {fact.exit_kind}", body,
                                 incident=fact.incident, boot=fact.boot,
                                 fields={"exit_kind": fact.exit_kind, "returncode": fact.returncode,
                                         "detail": fact.detail}), now, reminder=True)]

    def _settled(self, now: float) -> list[Alert]:
        """The pending recovery's alert, once nothing is down or the gateway stayed up long enough."""
        fact = self.pending
        if fact is None:
            return []
        if self.down_since is not None and (self.up_since is None
                                            or now - self.up_since < self.policy.recovered_after_s):
            return []
        self.pending = None
        return self._recovered(fact, now)

    def _recovered(self, fact: Recovered, now: float, finished: bool = True) -> list[Alert]:
        self.pending = None
        was_down = self.down_since is not None
        if not was_down and not fact.done and not fact.given_up:
            return []  # nothing was down and nothing needed doing
        down_for = round(now - self.down_since) if self.down_since is not None else None
        self.down_since, self.exits_while_down = None, 0
        parts = []
        if down_for is not None:
            parts.append(f"The gateway is up again (down for {down_for} s).")
        if not finished:
            parts.append("Its recovery has not reported yet: see gatewayd history.")
        elif fact.done or fact.given_up:
            parts.append("Recovered:\n" + _lines(fact.done) if fact.done else "Nothing needed recovering.")
            if fact.given_up:
                parts.append("Given up:\n" + _lines(fact.given_up))
        else:
            parts.append("Nothing was in flight: nothing to recover.")
        # A fresh key each time: "recovered" follows each down, and is never a duplicate of the last.
        return [self._gate(Alert(AlertKind.RECOVERED, f"after-{fact.boot}-{now:.3f}", INFO, "gateway recovered",
                                 "\n".join(parts), boot=fact.boot,
                                 fields={"done": list(fact.done), "given_up": list(fact.given_up),
                                         "down_for_s": down_for, "finished": finished}), now)]

    def _crash_loop(self, looping: bool, boot: int | None, now: float) -> list[Alert]:
        if looping == self.crash_loop:
            return []
        self.crash_loop = looping
        if looping:
            return [self._gate(Alert(AlertKind.CRASH_LOOP_ENTERED, "crash-loop", CRITICAL, "gateway crash loop",
                                     "The gateway keeps crashing; gatewayd now restarts it slowly and holds retries "
                                     "of interrupted work back.", boot=boot), now)]
        return [self._gate(Alert(AlertKind.CRASH_LOOP_LEFT, "crash-loop-left", INFO, "gateway crash loop over",
                                 "The gateway has stayed up: the crash loop is over.", boot=boot), now)]

    def _gate(self, alert: Alert, now: float, reminder: bool = False) -> Alert:
        """Deduplicate and rate-limit: the decision whether `alert` is sent."""
        if self.paused_since is not None and alert.kind not in (AlertKind.PAUSED, AlertKind.RESUMED):
            return _held(alert, "paused")
        dedupe = (alert.kind, alert.key)
        last = self.sent_at.get(dedupe)
        if not reminder and last is not None and now - last < self.policy.reminder_interval_s:
            return _held(alert, "duplicate")
        while self.recent and now - self.recent[0] >= 3600.0:
            self.recent.popleft()
        if len(self.recent) >= self.policy.max_per_hour:
            return _held(alert, "rate-limit")
        self.recent.append(now)
        self.sent_at[dedupe] = now
        if len(self.sent_at) > 512:  # a long life of per-boot keys: forget those past their interval
            self.sent_at = {k: t for k, t in self.sent_at.items() if now - t < self.policy.reminder_interval_s}
        return alert


def _held(alert: Alert, why: str) -> Alert:
    return Alert(alert.kind, alert.key, alert.severity, alert.title, alert.body, False, why, alert.incident,
                 alert.boot, alert.fields)


def test_alert(host: str) -> Alert:
    return Alert(AlertKind.TEST, "test", INFO, "gatewayd test alert",
                 f"A test alert from gatewayd on {host}: this notifier works.")
