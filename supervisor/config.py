"""Settings: each declared once, resolved once, with where each value came from.

Precedence, lowest to highest: built-in default < config file (TOML) < environment
(`GATEWAYD_<SECTION>_<KEY>`, or `GATEWAYD_<KEY>` for top-level keys) < command-line flag.
No config file at all is fine: the defaults supervise `openclaw gateway run` on the port the
gateway's own config names. Anything wrong while loading raises `ConfigError`: one line naming
the file (or variable, or flag), the key, the value and what is allowed; never a traceback.

Every number has a documented range (durations in seconds, 0.01 s to 7 days, so `int(s * 1000)`
and every timer accept them; counts and sizes bounded too). Relative paths: in the config file,
against the file's own folder; from a command-line flag, against the working folder (the shell's,
which `install` writes out absolute); from the environment, refused (a variable is inherited by
services and children whose working folder is anyone's). `~` is the home folder everywhere.

The config file, and every symlink on the way to it, must be owned by the current user or root,
and neither it nor its folder may be writable by anyone else (a folder with the sticky bit, like
/tmp, is fine): it names the command gatewayd runs.
"""

from __future__ import annotations

import math
import os
import pwd
import stat
import string
import sys
import tomllib
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor.core.alert_policy import AlertPolicy
from supervisor.core.maintenance import MaintenancePlan, Window, cron_problem, parse_duration
from supervisor.core.memory_pressure import MemoryPolicy
from supervisor.core.policy import RestartPolicy
from supervisor.core.probestate import ProbeSettings
from supervisor.core.recovery_policy import JOB_KEYS, RecoveryPolicy
from supervisor.core.wake_plan import MODES as WAKE_MODES
from supervisor.errors import ConfigError

Validator = Callable[[Any], str | None]  # returns a problem, or None when the value is fine

MIN_DURATION_S = 0.01
MAX_DURATION_S = 7 * 86400.0  # a week: far beyond any sane timer, and int(s * 1000) is small
MAX_COUNT = 1000
MAX_ATTEMPTS = 100
MIN_LOG_BYTES = 1024
MAX_LOG_BYTES = 1 << 40  # 1 TiB
MAX_BACKUPS = 1000
MAX_MEMORY_MB = 1 << 20  # 1 TiB
NOTICE_FIELDS = ("reason", "time")  # what supervisor.core.planner.decide_session fills into the notice


def _num(v: float) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


@dataclass(frozen=True)
class Range:
    """A number in [lo, hi] (or (lo, hi] when `lo_open`, [lo, hi) when `hi_open`): finite, never NaN."""

    lo: float
    hi: float
    lo_open: bool = False
    hi_open: bool = False
    unit: str = ""
    what: str = ""  # e.g. "a port number ": said before the range
    note: str = ""  # said after it

    @property
    def text(self) -> str:
        lo, hi = ("(" if self.lo_open else "[") + _num(self.lo), _num(self.hi) + (")" if self.hi_open else "]")
        return f"{lo}, {hi}{' ' + self.unit if self.unit else ''}"

    def __call__(self, v: Any) -> str | None:
        note = f" {self.note}" if self.note else ""
        if isinstance(v, float) and not math.isfinite(v):
            return f"must be {self.what or 'a finite number '}in {self.text}{note}"
        below = v <= self.lo if self.lo_open else v < self.lo
        above = v >= self.hi if self.hi_open else v > self.hi
        return f"must be {self.what}in {self.text}{note}" if below or above else None


def _duration(zero_ok: bool = False) -> Range:
    return Range(0.0 if zero_ok else MIN_DURATION_S, MAX_DURATION_S, unit="s")


def _count(hi: int = MAX_COUNT) -> Range:
    return Range(1, hi)


PORT = Range(0, 65535, what="a port number ", note="(0: from the gateway's config)")
FRACTION = Range(0.0, 1.0, hi_open=True)


def _control(text: str) -> bool:
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


def _path_text(v: Any) -> str | None:
    return "must not contain control characters" if _control(v) else None


def _argv(v: Any) -> str | None:
    if any("\0" in a for a in v):
        return "must not contain NUL characters"
    return None


def _command(v: Any) -> str | None:
    if v and not v[0]:
        return "its first element (the program) must not be empty"
    return _argv(v)


PATH_VARIABLES = ("HOME", "OPENCLAW_HOME", "OPENCLAW_STATE_DIR", "OPENCLAW_CONFIG_PATH")  # gateway_paths reads them


def _env_table(v: Any) -> str | None:
    for name, value in v.items():
        if not name or "=" in name or "\0" in name:
            return f"{name!r}: not a variable name (empty, or has = or NUL)"
        if "\0" in value:
            return f"{name}: the value must not contain NUL characters"
        if name in PATH_VARIABLES and value.startswith("~") and os.path.expanduser(value.split("/")[0]).startswith("~"):
            return f"{name}: no such user for {value.split('/')[0]!r} (gatewayd reads it to find the gateway's files)"
    return None


def _notice(v: Any) -> str | None:
    """Only {reason} and {time}, as they are (no index, attribute or format spec): anything else
    would raise at the first notice after a crash."""
    try:
        parts = list(string.Formatter().parse(v))
    except ValueError as exc:
        return f"not a valid template ({exc}; write {{{{ and }}}} for literal braces)"
    for _text, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in NOTICE_FIELDS:
            return f"unknown placeholder {{{name}}}: only {{reason}} and {{time}} are filled in"
        if spec or conversion not in (None, "s", "r", "a"):
            return f"placeholder {{{name}}} must be plain {{{name}}} (no format spec)"
    if "\0" in v:
        return "must not contain NUL characters"
    return None


class JobTable(dict[str, Any]):
    """Marks a setting that is a table of tables (per-job overrides)."""


JOB_RANGES: dict[str, Range] = {"max_attempts": _count(MAX_ATTEMPTS), "backoff_initial_s": _duration(),
                                "backoff_max_s": _duration(), "coalesce_window_s": _duration(zero_ok=True)}


def _job_overrides(v: Any) -> str | None:
    for job, entry in v.items():
        for key, value in entry.items():
            where = f'"{job}".{key}'
            if key not in JOB_KEYS:
                return f"{where}: unknown key (one of {', '.join(JOB_KEYS)})"
            if isinstance(value, bool) or not isinstance(value, int | float) or (
                    JOB_KEYS[key] is int and not isinstance(value, int)):
                return f"{where}: must be {JOB_KEYS[key].__name__}, got {_show(value)}"
            problem = JOB_RANGES[key](value)
            if problem:
                if key == "max_attempts":
                    problem += " (1: never re-run this job)"
                return f"{where}: {problem} (got {_show(value)})"
    return None


class TableList(list[dict[str, Any]]):
    """Marks a setting that is a list of tables (`[[alerts.notify]]`, `[[maintenance.restart]]`)."""


class NotifierList(TableList):
    pass


class WindowList(TableList):
    pass


NOTIFIER_KINDS = ("webhook", "ntfy", "command", "desktop")
NOTIFIER_KEYS: dict[str, type] = {"kind": str, "name": str, "url": str, "url_env": str, "token_env": str,
                                  "command": list, "secret_env": list, "timeout_s": float}
MAX_NOTIFIERS = 20


def _env_name(v: str) -> bool:
    return bool(v) and v.replace("_", "a").isalnum() and v.isascii() and not v[0].isdigit()


def _notifier_problem(entry: dict[str, Any]) -> str | None:
    for key, value in entry.items():
        want = NOTIFIER_KEYS.get(key)
        if want is None:
            return f"{key}: unknown key (one of {', '.join(NOTIFIER_KEYS)})"
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, want) or isinstance(value, bool):
            return f"{key}: must be {want.__name__}, got {_show(value)}"
    kind = entry.get("kind")
    if kind not in NOTIFIER_KINDS:
        return f"kind: must be one of {', '.join(NOTIFIER_KINDS)} (got {_show(kind)})"
    name = entry.get("name", kind)
    if not name or _control(name):
        return f"name: must be a non-empty line (got {_show(name)})"
    for key in ("url_env", "token_env"):
        if key in entry and not _env_name(entry[key]):
            # Not quoted back: what is there instead of a name may well be the secret itself.
            return f"{key}: must be an environment variable's name (letters, digits, _), not the secret itself:" \
                   " the secret goes in that variable"
    if kind in ("webhook", "ntfy"):
        if ("url" in entry) == ("url_env" in entry):
            return f"{kind} needs exactly one of url or url_env"
        url = entry.get("url", "")
        if "url" in entry and not url.startswith(("http://", "https://")):
            return f"url: must start with http:// or https:// (got {_show(url)})"
        if "url" in entry and _control(url):
            return "url: must not contain control characters"
    elif "url" in entry or "url_env" in entry or "token_env" in entry:
        return f"url, url_env and token_env are for webhook and ntfy, not {kind}"
    if kind == "command":
        cmd = entry.get("command")
        if not cmd or not all(isinstance(a, str) for a in cmd):
            return "command: must be a non-empty list of strings (run without a shell; the alert comes as JSON" \
                   " on stdin)"
        problem = _command(cmd)
        if problem:
            return f"command: {problem}"
        secrets = entry.get("secret_env", [])
        if not all(isinstance(v, str) and _env_name(v) for v in secrets):
            return "secret_env: must be a list of environment variables' names (letters, digits, _), not the" \
                   " secrets themselves"
    elif "command" in entry or "secret_env" in entry:
        return f"command and secret_env are for kind = \"command\", not {kind}"
    if "timeout_s" in entry:
        problem = Range(1.0, 300.0, unit="s")(float(entry["timeout_s"]))
        if problem:
            return f"timeout_s: {problem} (got {_show(entry['timeout_s'])})"
    return None


def _notifiers(v: Any) -> str | None:
    if len(v) > MAX_NOTIFIERS:
        return f"at most {MAX_NOTIFIERS} notifiers"
    names: set[str] = set()
    for i, entry in enumerate(v):
        problem = _notifier_problem(entry)
        if problem:
            return f"[{i}] {problem}"
        name = entry.get("name", entry["kind"])
        if name in names:
            return f"[{i}] name: {name!r} is used twice (give each notifier its own name)"
        names.add(name)
    return None


def _maintenance_entries(keys: tuple[str, ...]) -> Validator:
    def check(v: Any) -> str | None:
        if len(v) > MAX_NOTIFIERS:
            return f"at most {MAX_NOTIFIERS} entries"
        for i, entry in enumerate(v):
            for key, value in entry.items():
                if key not in keys:
                    return f"[{i}] {key}: unknown key (one of {', '.join(keys)})"
                if not isinstance(value, str):
                    return f"[{i}] {key}: must be a string, got {_show(value)}"
            if "cron" not in entry:
                return f"[{i}] cron: missing (e.g. cron = \"30 4 * * *\")"
            problem = cron_problem(entry["cron"])
            if problem:
                return f"[{i}] cron: {problem} (got {_show(entry['cron'])})"
            if "for" in keys:
                if "for" not in entry:
                    return f"[{i}] for: missing (how long each pause lasts, e.g. for = \"1h\")"
                try:
                    for_s = parse_duration(entry["for"])
                except ValueError as exc:
                    return f"[{i}] for: {exc}"
                problem = DUR(for_s)
                if problem:
                    return f"[{i}] for: {problem} (got {_show(entry['for'])})"
        return None
    return check


def _timezone(v: Any) -> str | None:
    if not v:
        return None
    try:
        zoneinfo.ZoneInfo(v)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return "must be an IANA time zone name such as Europe/Berlin (\"\": the machine's own)"
    return None


def _level(v: Any) -> str | None:
    return None if v in ("debug", "info", "warning", "error") else "must be debug, info, warning or error"


def _wake_mode(v: Any) -> str | None:
    return None if v in WAKE_MODES else "must be active, conversations or off"


@dataclass(frozen=True)
class Setting:
    section: str  # "" for top level
    key: str
    type: type
    default: Any
    help: str
    validate: Validator | None = None
    path: bool = False  # a path: `~` expanded, relative ones resolved (module doc), no control characters

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}" if self.section else self.key

    @property
    def env(self) -> str:
        parts = [self.section, self.key] if self.section else [self.key]
        return "GATEWAYD_" + "_".join(parts).upper()

    @property
    def allowed(self) -> str:
        """The documented range of a number ("" for other settings)."""
        return f"range {self.validate.text}" if isinstance(self.validate, Range) else ""


DUR = _duration()
DUR0 = _duration(zero_ok=True)
SETTINGS: tuple[Setting, ...] = (
    Setting("", "state_dir", str, "", "gatewayd's own state (store, socket, logs); default: the user data folder",
            path=True),
    Setting("", "log_level", str, "info", "debug, info, warning or error", _level),
    Setting("gateway", "openclaw", str, "openclaw", "the openclaw entry: a name on PATH or a path", path=True),
    Setting("gateway", "node", str, "", "node binary; default: the one installed beside openclaw, else PATH",
            path=True),
    Setting("gateway", "command", list, [], "full argv prefix replacing [node, entry] (wrappers, tests)", _command),
    Setting("gateway", "version", str, "", "openclaw version if it cannot be read from its package.json",
            _path_text),
    Setting("gateway", "port", int, 0, "gateway port; 0: gateway.port of its config, else 18789", PORT),
    Setting("gateway", "args", list, [], "extra arguments after `gateway run --port N`", _argv),
    Setting("gateway", "config_path", str, "", "the gateway's config, handed to it; default as it resolves it",
            path=True),
    Setting("gateway", "state_dir", str, "", "the gateway's state dir, handed to it; default as it resolves it",
            path=True),
    Setting("gateway", "env", dict, {}, "extra environment for the gateway (a table of strings)", _env_table),
    Setting("supervise", "stop_budget_s", float, 330.0, "SIGTERM -> SIGKILL budget (gateway drains ~315 s)", DUR),
    Setting("supervise", "backoff_initial_s", float, 1.0, "delay after the second crash in a row", DUR),
    Setting("supervise", "backoff_max_s", float, 60.0, "backoff cap", DUR),
    Setting("supervise", "jitter", float, 0.2, "fraction of random spread on each delay", FRACTION),
    Setting("supervise", "crash_loop_crashes", int, 5, "crashes within the window that make a crash loop",
            _count()),
    Setting("supervise", "crash_loop_window_s", float, 600.0, "crash-loop window", DUR),
    Setting("supervise", "crash_loop_delay_s", float, 60.0, "delay between retries in a crash loop", DUR),
    Setting("supervise", "healthy_after_s", float, 300.0, "ready this long resets the crash count", DUR),
    Setting("supervise", "conflict_retry_s", float, 30.0, "re-check period while the port is taken", DUR),
    Setting("probes", "interval_s", float, 2.0, "liveness probe period", DUR),
    Setting("probes", "timeout_s", float, 2.0, "one probe's deadline", DUR),
    Setting("probes", "hang_timeouts", int, 3, "timeouts in a row, no CPU progress: a hang", _count()),
    Setting("probes", "hang_hard_limit_s", float, 60.0, "unresponsive this long: a hang, CPU or not", DUR),
    Setting("probes", "refused_limit_s", float, 60.0, "listener gone this long, unannounced, is a hang", DUR),
    Setting("probes", "boot_limit_s", float, 180.0, "a booting gateway is never killed before this", DUR),
    Setting("probes", "boot_limit_max_s", float, 600.0, "boot progress extends the limit up to this", DUR),
    Setting("probes", "drain_grace_s", float, 30.0, "silence allowed after a shutdown announcement", DUR),
    Setting("snapshot", "interval_s", float, 5.0, "in-flight work poll period while ready", DUR),
    Setting("recovery", "max_attempts", int, 3, "attempts per interrupted cron run (the interrupted one is 1)",
            _count(MAX_ATTEMPTS)),
    Setting("recovery", "backoff_initial_s", float, 30.0, "first retry this long after the interruption", DUR),
    Setting("recovery", "backoff_max_s", float, 900.0, "retry backoff cap (doubling)", DUR),
    Setting("recovery", "coalesce_window_s", float, 120.0, "a regular run this close to a planned retry is the retry",
            DUR0),
    Setting("recovery", "retries_per_minute", int, 10, "at most this many retries sent per minute", _count()),
    Setting("recovery", "hold_after_crash_loop_s", float, 120.0, "after a crash loop, retries wait this long",
            DUR0),
    Setting("recovery", "unanswered_grace_s", float, 120.0,
            "an action whose answer was lost: look this long for its effect before deciding again", DUR),
    Setting("recovery", "notice", str, RecoveryPolicy.notice,
            "restart notice; {reason} and {time} are filled in (no other placeholders; {{ }} for braces)", _notice),
    Setting("recovery", "notice_to_channel", bool, False,
            "the restart notice's and an agent wake's agent turn reply on the session's own channel"
            " (the agent tells its user it is back); off: the reply stays in the session", None),
    Setting("recovery", "wake_agents", str, "active",
            "after a restart, wake each agent with interrupted work (active), only those with an interrupted"
            " conversation (conversations), or none (off)", _wake_mode),
    Setting("recovery", "jobs", JobTable, JobTable(),
            "per job (by id or name): max_attempts, backoff_initial_s, backoff_max_s, coalesce_window_s;"
            " max_attempts = 1 never re-runs it", _job_overrides),
    Setting("alerts", "notify", NotifierList, NotifierList(),
            "notifiers, each a [[alerts.notify]] table: kind = webhook | ntfy | command | desktop; name; url or"
            " url_env (webhook, ntfy); token_env (a bearer token's variable); command (a list: argv, no shell);"
            " secret_env (command: the variables of its own secrets, given to it alone and redacted); timeout_s",
            _notifiers),
    Setting("alerts", "reminder_interval_s", float, 3600.0,
            "while the gateway stays down, one \"still down\" reminder this often; the same alert again at most"
            " this often", DUR),
    Setting("alerts", "recovery_wait_s", float, 600.0, "up this long with no recovery report: \"recovered\" anyway",
            DUR),
    Setting("alerts", "recovered_after_s", float, 20.0,
            "\"recovered\" once the gateway stayed up this long: a crash sooner is the same outage", DUR),
    Setting("alerts", "max_per_hour", int, 30, "at most this many alerts sent per hour (the rest kept, not sent)",
            _count()),
    Setting("alerts", "retry_initial_s", float, 2.0, "a failed delivery is tried again after this (doubling)", DUR),
    Setting("alerts", "retry_max_s", float, 300.0, "delivery retry backoff cap", DUR),
    Setting("alerts", "retry_attempts", int, 6, "attempts per delivery before giving up", _count(MAX_ATTEMPTS)),
    Setting("metrics", "port", int, 0, "Prometheus endpoint on 127.0.0.1 at this port (/metrics); 0: off",
            Range(0, 65535, what="a port number ", note="(0: off)")),
    Setting("memory", "limit_mb", int, 0, "safe restart when the gateway's process tree RSS stays above this many MB"
            " (MiB) for window_s; 0: off (2048 suits 2026.9.6, measured at 1.2-1.3 GiB)",
            Range(0, MAX_MEMORY_MB, unit="MB")),
    Setting("memory", "window_s", float, 60.0, "over the limit this long, without a sample under it: restart",
            DUR0),
    # At least a minute: whatever the limit, memory restarts can never follow each other in a loop.
    Setting("memory", "cooldown_s", float, 1800.0, "after a memory restart, none again for this long",
            Range(60.0, MAX_DURATION_S, unit="s")),
    Setting("maintenance", "timezone", str, "", "time zone of the cron expressions (an IANA name); default: the"
            " machine's", _timezone),
    Setting("maintenance", "restart", WindowList, WindowList(),
            "scheduled safe restarts, each a [[maintenance.restart]] table: cron (minute hour day month weekday;"
            " weekdays by name)", _maintenance_entries(("cron",))),
    Setting("maintenance", "pause", WindowList, WindowList(),
            "pause windows, each a [[maintenance.pause]] table: cron (when it starts), for (how long: 90s, 30m,"
            " 1h30m)", _maintenance_entries(("cron", "for"))),
    Setting("maintenance", "misfire_grace_s", float, 3600.0,
            "a restart slot missed (machine asleep, gatewayd down) by more than this is skipped, not run late",
            DUR),
    Setting("logs", "max_bytes", int, 10 * 1024 * 1024, "rotate a log file at this size",
            Range(MIN_LOG_BYTES, MAX_LOG_BYTES, unit="bytes")),
    # At least 1: with none, the rotating handler reopens the same file and never cuts it.
    Setting("logs", "backups", int, 5, "rotated files kept", Range(1, MAX_BACKUPS)),
)
BY_NAME = {s.name: s for s in SETTINGS}
SECTIONS = {s.section for s in SETTINGS if s.section}


# -- one line, always ----------------------------------------------------------------------------------


def _oneline(text: str) -> str:
    """Control and other unprintable characters escaped: a message is one line whatever it quotes."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _show(value: Any, limit: int = 200) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int too long for str()
        text = f"<{type(value).__name__} too large to show>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


# -- home and the default locations --------------------------------------------------------------------


def home_dir(environ: Mapping[str, str] | None = None, why: str = "") -> Path:
    """The home folder: $HOME, else the passwd entry. An empty or relative HOME, or none at all,
    is a ConfigError saying so (not `/.local` or a RuntimeError later)."""
    environ = os.environ if environ is None else environ
    need = f" ({why})" if why else ""
    if "HOME" in environ:
        home = environ["HOME"]
        if not home:
            raise ConfigError("HOME", "", f"is empty, so there is no home folder{need}; set HOME")
        if not os.path.isabs(home) or _control(home):
            raise ConfigError("HOME", "", f"is not an absolute path: {_show(home)}{need}; set HOME")
        return Path(home)
    try:
        home = pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        home = ""
    if not home or not os.path.isabs(home):
        raise ConfigError("HOME", "", f"is not set and uid {os.getuid()} has no home in the user database{need};"
                          " set HOME")
    return Path(home)


def _xdg(name: str, environ: Mapping[str, str]) -> Path | None:
    """An XDG base folder, when set and absolute: the spec says relative ones are invalid and ignored."""
    value = environ.get(name, "")
    return Path(value) if os.path.isabs(value) and not _control(value) else None


def default_state_dir(home: Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    if sys.platform == "darwin":
        home = home or home_dir(environ, "it holds the default state_dir")
        return home / "Library" / "Application Support" / "gatewayd"
    xdg = _xdg("XDG_DATA_HOME", environ)
    if xdg is not None:
        return xdg / "gatewayd"
    return (home or home_dir(environ, "it holds the default state_dir")) / ".local" / "share" / "gatewayd"


def default_config_file(home: Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    if sys.platform == "darwin":
        home = home or home_dir(environ, "it holds the default config file")
        return home / "Library" / "Application Support" / "gatewayd" / "gatewayd.toml"
    xdg = _xdg("XDG_CONFIG_HOME", environ)
    if xdg is not None:
        return xdg / "gatewayd" / "gatewayd.toml"
    return (home or home_dir(environ, "it holds the default config file")) / ".config" / "gatewayd" / "gatewayd.toml"


@dataclass(frozen=True)
class GatewaySettings:
    openclaw: str
    node: str
    command: tuple[str, ...]
    version: str
    port: int
    args: tuple[str, ...]
    config_path: str
    state_dir: str
    env: Mapping[str, str]


@dataclass(frozen=True)
class Notifier:
    """One `[[alerts.notify]]` entry. Secrets only by the name of the variable that holds them."""

    kind: str
    name: str
    url: str = ""
    url_env: str = ""
    token_env: str = ""
    command: tuple[str, ...] = ()
    # A command's own secrets (its bot token): given to that command only, hidden from the gateway
    # and every other process, and redacted wherever its output is logged or stored.
    secret_env: tuple[str, ...] = ()
    timeout_s: float = 10.0

    @property
    def secret_variables(self) -> tuple[str, ...]:
        return tuple(v for v in (self.url_env, self.token_env, *self.secret_env) if v)


@dataclass(frozen=True)
class AlertSettings:
    notifiers: tuple[Notifier, ...] = ()
    policy: AlertPolicy = field(default_factory=AlertPolicy)

    @property
    def secret_variables(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(v for n in self.notifiers for v in n.secret_variables))


def _notifier(entry: dict[str, Any]) -> Notifier:
    return Notifier(kind=entry["kind"], name=entry.get("name", entry["kind"]), url=entry.get("url", ""),
                    url_env=entry.get("url_env", ""), token_env=entry.get("token_env", ""),
                    command=tuple(entry.get("command", ())), secret_env=tuple(entry.get("secret_env", ())),
                    timeout_s=float(entry.get("timeout_s", 10.0)))


@dataclass(frozen=True)
class LogSettings:
    max_bytes: int
    backups: int


@dataclass(frozen=True)
class Config:
    state_dir: Path
    log_level: str
    gateway: GatewaySettings
    restart: RestartPolicy
    stop_budget_s: float
    probes: ProbeSettings
    logs: LogSettings
    config_file: Path | None
    snapshot_interval_s: float = 5.0
    recovery: RecoveryPolicy = field(default_factory=RecoveryPolicy)
    wake_agents: str = "active"  # core.wake_plan.MODES
    notice_to_channel: bool = False
    sources: Mapping[str, str] = field(default_factory=dict)  # setting name -> "default" | file | env | "cli"
    alerts: AlertSettings = field(default_factory=AlertSettings)
    metrics_port: int = 0  # 0: no endpoint
    memory: MemoryPolicy = field(default_factory=MemoryPolicy)
    maintenance: MaintenancePlan = field(default_factory=MaintenancePlan)


# -- values --------------------------------------------------------------------------------------------


def _coerce(setting: Setting, value: Any, source: str) -> Any:
    t = setting.type
    if t is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            value = float(value)
        except OverflowError:
            raise ConfigError(source, setting.name, f"must be in {setting.allowed.removeprefix('range ')}"
                              f" (got {_show(value)})") from None
    if t is list:
        if not isinstance(value, list | tuple) or not all(isinstance(x, str) for x in value):
            raise ConfigError(source, setting.name, "must be a list of strings")
        value = list(value)
    elif t is dict:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(source, setting.name, "must be a table of strings")
    elif issubclass(t, TableList):
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise ConfigError(source, setting.name, f"must be a list of tables, e.g. [[{setting.name}]]")
        value = t(value)
    elif t is JobTable:
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            raise ConfigError(source, setting.name, 'must be a table of tables, e.g. [recovery.jobs."daily-report"]')
        value = JobTable(value)
    elif not isinstance(value, t) or isinstance(value, bool) != (t is bool):
        raise ConfigError(source, setting.name, f"must be {t.__name__}, got {type(value).__name__} {_show(value)}")
    problem = _path_text(value) if setting.path else None
    if problem is None and setting.validate is not None:
        problem = setting.validate(value)
    if problem:
        # A notifier's problem quotes its own field; the whole list could quote a webhook's URL.
        got = "" if t is NotifierList else f" (got {_show(value)})"
        raise ConfigError(source, setting.name, f"{problem}{got}")
    return value


def _from_env_text(setting: Setting, text: str, var: str) -> Any:
    try:
        if setting.type is int:
            return int(text)
        if setting.type is float:
            return float(text)
        if setting.type is list:
            return text.split() if text.strip() else []
        if setting.type is bool:
            if text.strip().lower() in ("true", "1", "yes", "on"):
                return True
            if text.strip().lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError(text)
        if setting.type in (dict, JobTable) or issubclass(setting.type, TableList):
            raise ConfigError(var, setting.name, "tables cannot be set from the environment; use the config file")
    except ValueError:
        raise ConfigError(var, setting.name, f"must be {setting.type.__name__}, got {_show(text)}") from None
    return text


def _is_path_like(setting: Setting, value: str) -> bool:
    """gateway.openclaw and gateway.node are names on PATH unless they hold a `/` or start with `~`."""
    if not value:
        return False
    if setting.name in ("gateway.openclaw", "gateway.node"):
        return os.sep in value or value.startswith("~")
    return True


def _place(setting: Setting, value: str, source: str, anchor: Callable[[], Path] | None,
           get_home: Callable[[], Path]) -> str:
    """A path setting's value made absolute: `~` expanded, relative resolved against `anchor`
    (the config file's folder, or the working folder for a flag), refused without one (env)."""
    if not _is_path_like(setting, value):
        return value
    if value == "~" or value.startswith("~/"):
        value = str(get_home()) + value[1:]
    elif value.startswith("~"):
        expanded = os.path.expanduser(value)
        if expanded.startswith("~"):
            raise ConfigError(source, setting.name, f"no such user for {_show(value.split('/')[0])}"
                              f" (got {_show(value)})")
        value = expanded
    if os.path.isabs(value):
        return value
    if anchor is None:
        raise ConfigError(source, setting.name, f"must be an absolute path here: an environment variable has no"
                          f" folder to be relative to (got {_show(value)})")
    try:
        base = anchor()
    except OSError as exc:  # the working folder was deleted
        raise ConfigError(source, setting.name, f"cannot resolve a relative path: {exc.strerror}"
                          f" (got {_show(value)})") from None
    return os.path.join(base, value)


def _folder_of(path: Path) -> Callable[[], Path]:
    return lambda: path.parent


def _check_state_dir(state_dir: Path, source: str) -> None:
    """The state dir, or its nearest existing ancestor, must be a directory (else: refused now, not
    a NotADirectoryError from somewhere later)."""
    p = state_dir
    while True:
        try:
            st = os.stat(p)
        except (FileNotFoundError, NotADirectoryError):
            if p.parent == p:
                return
            p = p.parent
            continue
        except OSError as exc:
            raise ConfigError(source, "state_dir", f"cannot reach {p}: {exc.strerror}"
                              f" (got {str(state_dir)!r})") from None
        if not stat.S_ISDIR(st.st_mode):
            what = "is" if p == state_dir else "would be inside"
            raise ConfigError(source, "state_dir", f"{what} {p}, which is not a directory"
                              f" (got {str(state_dir)!r})")
        return


# -- the file ------------------------------------------------------------------------------------------


def _check_owner(src: str, what: str, p: Path, st: os.stat_result) -> None:
    me = os.geteuid()
    if st.st_uid not in (me, 0):
        raise ConfigError(src, "", f"{what} {p} is owned by uid {st.st_uid}, not by you (uid {me}) or root;"
                          " refusing it (it names the command gatewayd runs)")


def _check_folder(src: str, folder: Path) -> None:
    try:
        st = os.stat(folder)
    except OSError as exc:
        raise ConfigError(src, "", f"cannot check its folder {folder}: {exc.strerror}") from None
    _check_owner(src, "its folder", folder, st)
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
        raise ConfigError(src, "", f"its folder {folder} is group- or world-writable; refusing it"
                          " (chmod go-w)")


MAX_SYMLINKS = 40


def _open_checked(src: str, path: Path) -> bytes:
    """Follow the path link by link: every link and the file itself owned by us or root, every folder
    on the way too and not writable by others, the file not group/world-writable; then read that
    very file (opened without following links, and checked to be the one inspected)."""
    if "\0" in str(path):
        raise ConfigError(src, "", "the path contains a NUL character")
    p = Path(os.path.abspath(path))
    try:
        for _ in range(MAX_SYMLINKS):
            p = Path(os.path.realpath(p.parent)) / p.name
            _check_folder(src, p.parent)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                _check_owner(src, "the symlink", p, st)
                p = p.parent / os.readlink(p)
                continue
            break
        else:
            raise ConfigError(src, "", "too many levels of symlinks")
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(src, "", f"{p} is not a regular file")
        _check_owner(src, "the file", p, st)
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise ConfigError(src, "", "is group- or world-writable; refusing it (chmod go-w)")
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as fh:
            opened = os.fstat(fh.fileno())
            if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino):
                raise ConfigError(src, "", "changed while it was being checked; try again")
            return fh.read()
    except OSError as exc:
        raise ConfigError(src, "", f"cannot read: {exc.strerror or exc}") from None


def read_file(path: Path) -> dict[str, Any]:
    """Flatten a TOML config into {setting name: value}, refusing unknown keys and unsafe files."""
    src = str(path)
    raw = _open_checked(src, path)
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(src, "", f"not valid TOML: {exc}") from None
    except (ValueError, RecursionError) as exc:  # an integer of thousands of digits; nesting too deep
        raise ConfigError(src, "", f"not valid TOML: {type(exc).__name__}: {exc}") from None
    flat: dict[str, Any] = {}
    for key, value in doc.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(src, key, "must be a table")
            for sub, subvalue in value.items():
                name = f"{key}.{sub}"
                if name not in BY_NAME:
                    raise ConfigError(src, name, "unknown key")
                flat[name] = subvalue
        elif key in BY_NAME:
            flat[key] = value
        else:
            raise ConfigError(src, key, "unknown key")
    return flat


# -- load ----------------------------------------------------------------------------------------------


def load(
    config_file: Path | None = None,
    cli: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Resolve every setting. `cli` maps setting names to values given as flags (None = not given).
    `environ` supplies the GATEWAYD_* variables; HOME and XDG_* are always the process's own."""
    try:
        return _load(config_file, cli, environ)
    except ConfigError as exc:
        raise ConfigError(_oneline(exc.source), _oneline(exc.key), _oneline(exc.problem)) from None


def _load(config_file: Path | None, cli: Mapping[str, Any] | None, environ: Mapping[str, str] | None) -> Config:
    environ = os.environ if environ is None else environ
    cli = {k: v for k, v in (cli or {}).items() if v is not None}
    home: list[Path] = []
    anchor: Callable[[], Path] | None

    def get_home() -> Path:
        if not home:
            home.append(home_dir(why="`~` stands for it"))
        return home[0]

    explicit = config_file is not None or "GATEWAYD_CONFIG" in environ
    if config_file is not None:
        path: Path | None = Path(config_file)
        where = "--config"
    elif "GATEWAYD_CONFIG" in environ:
        path, where = Path(environ["GATEWAYD_CONFIG"]), "GATEWAYD_CONFIG"
        if not path.is_absolute() and not str(path).startswith("~"):
            raise ConfigError(where, "", f"must be an absolute path: an environment variable has no folder to be"
                              f" relative to (got {str(path)!r})")
    else:
        path, where = default_config_file(), "default"
    assert path is not None
    if _control(str(path)):
        raise ConfigError(where, "", f"the config file's path must not contain control characters"
                          f" (got {str(path)!r})")
    if str(path) == "~" or str(path).startswith("~/"):
        path = get_home() / str(path)[2:]
    elif str(path).startswith("~"):  # ~user/...: that user's home, never a folder named "~user" here
        expanded = os.path.expanduser(str(path))
        if expanded.startswith("~"):
            raise ConfigError(where, "", f"no such user's home in {str(path)!r}")
        path = Path(expanded)
    path = Path(os.path.abspath(path))
    file_values: dict[str, Any] = {}
    if explicit or os.path.lexists(path):
        file_values = read_file(path)
    else:
        path = None
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for s in SETTINGS:
        if s.name in cli:
            source = "--" + s.key.replace("_", "-")
            value, anchor = _coerce(s, cli[s.name], source), Path.cwd
            sources[s.name] = "cli"
        elif s.env in environ:
            source = s.env
            text = environ[s.env]
            parsed = _from_env_text(s, text, s.env)
            try:
                value, anchor = _coerce(s, parsed, source), None
            except ConfigError as exc:
                if str(parsed) == text:
                    raise
                raise ConfigError(exc.source, exc.key, f"{exc.problem} from the text {_show(text)}") from None
            sources[s.name] = s.env
        elif s.name in file_values:
            assert path is not None
            source = str(path)
            value, anchor = _coerce(s, file_values[s.name], source), _folder_of(path)
            sources[s.name] = source
        else:
            values[s.name], sources[s.name] = s.default, "default"
            continue
        if s.path and value:
            value = _place(s, value, source, anchor, get_home)
        values[s.name] = value
    # A bad file value is reported even when the environment or a flag overrides it.
    for name, raw in file_values.items():
        if sources[name] != str(path):
            _coerce(BY_NAME[name], raw, str(path))

    def where_of(name: str) -> str:
        src = sources[name]
        return {"cli": "--" + BY_NAME[name].key.replace("_", "-")}.get(src, src)

    for lower, upper in (("supervise.backoff_initial_s", "supervise.backoff_max_s"),
                         ("alerts.retry_initial_s", "alerts.retry_max_s"),
                         ("probes.boot_limit_s", "probes.boot_limit_max_s")):
        if values[lower] > values[upper]:
            if sources[lower] == "default":  # blame the one that was set
                raise ConfigError(where_of(upper), upper, f"must be at least {lower}"
                                  f" (got {_num(values[upper])} < {_num(values[lower])})")
            raise ConfigError(where_of(lower), lower, f"must not exceed {upper}"
                              f" (got {_num(values[lower])} > {_num(values[upper])})")
    if values["state_dir"]:
        state_dir, state_source = Path(values["state_dir"]), where_of("state_dir")
    else:
        state_dir = default_state_dir()
        state_source = "XDG_DATA_HOME" if sys.platform != "darwin" and _xdg("XDG_DATA_HOME", os.environ) else "HOME"
    state_dir = Path(os.path.abspath(state_dir))
    _check_state_dir(state_dir, state_source)
    v = values
    return Config(
        state_dir=state_dir,
        log_level=v["log_level"],
        gateway=GatewaySettings(
            openclaw=v["gateway.openclaw"], node=v["gateway.node"], command=tuple(v["gateway.command"]),
            version=v["gateway.version"], port=v["gateway.port"], args=tuple(v["gateway.args"]),
            config_path=v["gateway.config_path"], state_dir=v["gateway.state_dir"], env=dict(v["gateway.env"]),
        ),
        restart=RestartPolicy(
            backoff_initial_s=v["supervise.backoff_initial_s"], backoff_max_s=v["supervise.backoff_max_s"],
            jitter=v["supervise.jitter"], crash_loop_crashes=v["supervise.crash_loop_crashes"],
            crash_loop_window_s=v["supervise.crash_loop_window_s"],
            crash_loop_delay_s=v["supervise.crash_loop_delay_s"], healthy_after_s=v["supervise.healthy_after_s"],
            conflict_retry_s=v["supervise.conflict_retry_s"],
        ),
        stop_budget_s=v["supervise.stop_budget_s"],
        probes=ProbeSettings(
            interval_s=v["probes.interval_s"], timeout_s=v["probes.timeout_s"],
            hang_timeouts=v["probes.hang_timeouts"], hang_hard_limit_s=v["probes.hang_hard_limit_s"],
            refused_limit_s=v["probes.refused_limit_s"], boot_limit_s=v["probes.boot_limit_s"],
            boot_limit_max_s=v["probes.boot_limit_max_s"], drain_grace_s=v["probes.drain_grace_s"],
        ),
        logs=LogSettings(max_bytes=v["logs.max_bytes"], backups=v["logs.backups"]),
        config_file=path,
        sources=sources,
        snapshot_interval_s=v["snapshot.interval_s"],
        wake_agents=v["recovery.wake_agents"],
        notice_to_channel=v["recovery.notice_to_channel"],
        recovery=RecoveryPolicy(
            max_attempts=v["recovery.max_attempts"], backoff_initial_s=v["recovery.backoff_initial_s"],
            backoff_max_s=v["recovery.backoff_max_s"], coalesce_window_s=v["recovery.coalesce_window_s"],
            retries_per_minute=v["recovery.retries_per_minute"],
            hold_after_crash_loop_s=v["recovery.hold_after_crash_loop_s"], notice=v["recovery.notice"],
            unanswered_grace_s=v["recovery.unanswered_grace_s"], jobs=dict(v["recovery.jobs"]),
        ),
        alerts=AlertSettings(
            notifiers=tuple(_notifier(e) for e in v["alerts.notify"]),
            policy=AlertPolicy(
                reminder_interval_s=v["alerts.reminder_interval_s"], recovery_wait_s=v["alerts.recovery_wait_s"],
                recovered_after_s=v["alerts.recovered_after_s"],
                max_per_hour=v["alerts.max_per_hour"], retry_initial_s=v["alerts.retry_initial_s"],
                retry_max_s=v["alerts.retry_max_s"], retry_attempts=v["alerts.retry_attempts"],
                healthy_after_s=v["supervise.healthy_after_s"]),
        ),
        metrics_port=v["metrics.port"],
        memory=MemoryPolicy(limit_bytes=v["memory.limit_mb"] * 1024 * 1024, window_s=v["memory.window_s"],
                            cooldown_s=v["memory.cooldown_s"]),
        maintenance=MaintenancePlan(
            timezone=v["maintenance.timezone"], restarts=tuple(e["cron"] for e in v["maintenance.restart"]),
            pauses=tuple(Window(e["cron"], parse_duration(e["for"])) for e in v["maintenance.pause"]),
            misfire_grace_s=v["maintenance.misfire_grace_s"]),
    )
