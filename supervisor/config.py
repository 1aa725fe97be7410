"""Settings: each declared once, resolved once, with where each value came from.

Precedence, lowest to highest: built-in default < config file (TOML) < environment
(`GATEWAYD_<SECTION>_<KEY>`, or `GATEWAYD_<KEY>` for top-level keys) < command-line flag.
No config file at all is fine: the defaults supervise `openclaw gateway run` on the port the
gateway's own config names. A bad file or value raises `ConfigError` naming file, key and problem.
"""

from __future__ import annotations

import os
import stat
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor.core.policy import RestartPolicy
from supervisor.core.probestate import ProbeSettings
from supervisor.core.recovery import JOB_KEYS, RecoveryPolicy
from supervisor.errors import ConfigError

Validator = Callable[[Any], str | None]  # returns a problem, or None when the value is fine


def _positive(v: Any) -> str | None:
    return None if v > 0 else "must be > 0"


def _non_negative(v: Any) -> str | None:
    return None if v >= 0 else "must be >= 0"


def _port(v: Any) -> str | None:
    return None if 0 <= v <= 65535 else "must be a port number 0-65535 (0: from the gateway's config)"


def _fraction(v: Any) -> str | None:
    return None if 0 <= v < 1 else "must be in [0, 1)"


class JobTable(dict[str, Any]):
    """Marks a setting that is a table of tables (per-job overrides)."""


def _job_overrides(v: Any) -> str | None:
    for job, entry in v.items():
        for key, value in entry.items():
            where = f'"{job}".{key}'
            if key not in JOB_KEYS:
                return f"{where}: unknown key (one of {', '.join(JOB_KEYS)})"
            if isinstance(value, bool) or not isinstance(value, int | float) or (
                    JOB_KEYS[key] is int and not isinstance(value, int)):
                return f"{where}: must be {JOB_KEYS[key].__name__}, got {value!r}"
            if key == "max_attempts" and value < 1:
                return f"{where}: must be >= 1 (1: never re-run this job)"
            if key == "coalesce_window_s" and value < 0:
                return f"{where}: must be >= 0"
            if key.startswith("backoff") and value <= 0:
                return f"{where}: must be > 0"
    return None


def _level(v: Any) -> str | None:
    return None if v in ("debug", "info", "warning", "error") else "must be debug, info, warning or error"


@dataclass(frozen=True)
class Setting:
    section: str  # "" for top level
    key: str
    type: type
    default: Any
    help: str
    validate: Validator | None = None

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}" if self.section else self.key

    @property
    def env(self) -> str:
        parts = [self.section, self.key] if self.section else [self.key]
        return "GATEWAYD_" + "_".join(parts).upper()


SETTINGS: tuple[Setting, ...] = (
    Setting("", "state_dir", str, "", "gatewayd's own state (store, socket, logs); default: the user data folder"),
    Setting("", "log_level", str, "info", "debug, info, warning or error", _level),
    Setting("gateway", "openclaw", str, "openclaw", "the openclaw entry: a name on PATH or a path"),
    Setting("gateway", "node", str, "", "node binary; default: the one installed beside openclaw, else PATH"),
    Setting("gateway", "command", list, [], "full argv prefix replacing [node, entry] (wrappers, tests)"),
    Setting("gateway", "version", str, "", "openclaw version if it cannot be read from its package.json"),
    Setting("gateway", "port", int, 0, "gateway port; 0: gateway.port of its config, else 18789", _port),
    Setting("gateway", "args", list, [], "extra arguments after `gateway run --port N`"),
    Setting("gateway", "config_path", str, "", "the gateway's config; default as the gateway resolves it"),
    Setting("gateway", "state_dir", str, "", "the gateway's state dir; default as the gateway resolves it"),
    Setting("gateway", "env", dict, {}, "extra environment for the gateway (a table of strings)"),
    Setting("supervise", "stop_budget_s", float, 330.0, "SIGTERM -> SIGKILL budget (gateway drains ~315 s)", _positive),
    Setting("supervise", "backoff_initial_s", float, 1.0, "delay after the second crash in a row", _positive),
    Setting("supervise", "backoff_max_s", float, 60.0, "backoff cap", _positive),
    Setting("supervise", "jitter", float, 0.2, "fraction of random spread on each delay", _fraction),
    Setting("supervise", "crash_loop_crashes", int, 5, "crashes within the window that make a crash loop", _positive),
    Setting("supervise", "crash_loop_window_s", float, 600.0, "crash-loop window", _positive),
    Setting("supervise", "crash_loop_delay_s", float, 60.0, "delay between retries in a crash loop", _positive),
    Setting("supervise", "healthy_after_s", float, 300.0, "ready this long resets the crash count", _positive),
    Setting("supervise", "conflict_retry_s", float, 30.0, "re-check period while the port is taken", _positive),
    Setting("probes", "interval_s", float, 2.0, "liveness probe period", _positive),
    Setting("probes", "timeout_s", float, 2.0, "one probe's deadline", _positive),
    Setting("probes", "hang_timeouts", int, 3, "timeouts in a row, no CPU progress: a hang", _positive),
    Setting("probes", "hang_hard_limit_s", float, 60.0, "unresponsive this long: a hang, CPU or not", _positive),
    Setting("probes", "refused_limit_s", float, 60.0, "listener gone this long, unannounced, is a hang", _positive),
    Setting("probes", "boot_limit_s", float, 180.0, "a booting gateway is never killed before this", _positive),
    Setting("probes", "boot_limit_max_s", float, 600.0, "boot progress extends the limit up to this", _positive),
    Setting("probes", "drain_grace_s", float, 30.0, "silence allowed after a shutdown announcement", _positive),
    Setting("snapshot", "interval_s", float, 5.0, "in-flight work poll period while ready", _positive),
    Setting("recovery", "max_attempts", int, 3, "attempts per interrupted cron run (the interrupted one is 1)",
            _positive),
    Setting("recovery", "backoff_initial_s", float, 30.0, "first retry this long after the interruption", _positive),
    Setting("recovery", "backoff_max_s", float, 900.0, "retry backoff cap (doubling)", _positive),
    Setting("recovery", "coalesce_window_s", float, 120.0, "a regular run this close to a planned retry is the retry",
            _non_negative),
    Setting("recovery", "retries_per_minute", int, 10, "at most this many retries sent per minute", _positive),
    Setting("recovery", "hold_after_crash_loop_s", float, 120.0, "after a crash loop, retries wait this long",
            _non_negative),
    Setting("recovery", "unanswered_grace_s", float, 120.0,
            "an action whose answer was lost: look this long for its effect before deciding again", _positive),
    Setting("recovery", "notice", str, RecoveryPolicy.notice, "restart notice; {reason} and {time} are filled in"),
    Setting("recovery", "jobs", JobTable, JobTable(),
            "per job (by id or name): max_attempts, backoff_initial_s, backoff_max_s, coalesce_window_s;"
            " max_attempts = 1 never re-runs it", _job_overrides),
    Setting("logs", "max_bytes", int, 10 * 1024 * 1024, "rotate a log file at this size", _positive),
    Setting("logs", "backups", int, 5, "rotated files kept", _non_negative),
)
BY_NAME = {s.name: s for s in SETTINGS}
SECTIONS = {s.section for s in SETTINGS if s.section}


def default_state_dir(home: Path | None = None) -> Path:
    home = home or Path.home()
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / "gatewayd"
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else home / ".local" / "share") / "gatewayd"


def default_config_file(home: Path | None = None) -> Path:
    home = home or Path.home()
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / "gatewayd" / "gatewayd.toml"
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return (Path(xdg) if xdg else home / ".config") / "gatewayd" / "gatewayd.toml"


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
    sources: Mapping[str, str] = field(default_factory=dict)  # setting name -> "default" | file | env | "cli"


def _coerce(setting: Setting, value: Any, source: str) -> Any:
    t = setting.type
    if t is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if t is list:
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            raise ConfigError(source, setting.name, "must be a list of strings")
    elif t is dict:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(source, setting.name, "must be a table of strings")
    elif t is JobTable:
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            raise ConfigError(source, setting.name, 'must be a table of tables, e.g. [recovery.jobs."daily-report"]')
        value = JobTable(value)
    elif not isinstance(value, t) or isinstance(value, bool) != (t is bool):
        raise ConfigError(source, setting.name, f"must be {t.__name__}, got {type(value).__name__} {value!r}")
    if setting.validate is not None:
        problem = setting.validate(value)
        if problem:
            raise ConfigError(source, setting.name, f"{problem} (got {value!r})")
    return value


def _from_env_text(setting: Setting, text: str, var: str) -> Any:
    try:
        if setting.type is int:
            return int(text)
        if setting.type is float:
            return float(text)
        if setting.type is list:
            return text.split() if text.strip() else []
        if setting.type in (dict, JobTable):
            raise ConfigError(var, setting.name, "tables cannot be set from the environment; use the config file")
    except ValueError:
        raise ConfigError(var, setting.name, f"must be {setting.type.__name__}, got {text!r}") from None
    return text


def read_file(path: Path) -> dict[str, Any]:
    """Flatten a TOML config into {setting name: value}, refusing unknown keys and unsafe files."""
    src = str(path)
    try:
        st = path.stat()
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(src, "", f"cannot read: {exc.strerror}") from exc
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(src, "", "is group- or world-writable; refusing it (chmod go-w)")
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(src, "", f"not valid TOML: {exc}") from exc
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


def load(
    config_file: Path | None = None,
    cli: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Resolve every setting. `cli` maps setting names to values given as flags (None = not given)."""
    environ = os.environ if environ is None else environ
    cli = {k: v for k, v in (cli or {}).items() if v is not None}
    explicit = config_file is not None or "GATEWAYD_CONFIG" in environ
    path = config_file or (Path(environ["GATEWAYD_CONFIG"]) if "GATEWAYD_CONFIG" in environ else default_config_file())
    file_values: dict[str, Any] = {}
    if path.exists() or explicit:
        file_values = read_file(path)
    else:
        path = None  # type: ignore[assignment]
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for s in SETTINGS:
        if s.name in cli:
            values[s.name], sources[s.name] = _coerce(s, cli[s.name], "--" + s.key.replace("_", "-")), "cli"
        elif s.env in environ:
            raw = _from_env_text(s, environ[s.env], s.env)
            values[s.name], sources[s.name] = _coerce(s, raw, s.env), s.env
        elif s.name in file_values:
            values[s.name], sources[s.name] = _coerce(s, file_values[s.name], str(path)), str(path)
        else:
            values[s.name], sources[s.name] = s.default, "default"
    if values["supervise.backoff_initial_s"] > values["supervise.backoff_max_s"]:
        raise ConfigError(sources["supervise.backoff_initial_s"], "supervise.backoff_initial_s",
                          "must not exceed supervise.backoff_max_s")
    if values["probes.boot_limit_s"] > values["probes.boot_limit_max_s"]:
        raise ConfigError(sources["probes.boot_limit_s"], "probes.boot_limit_s",
                          "must not exceed probes.boot_limit_max_s")
    state_dir = Path(values["state_dir"]).expanduser() if values["state_dir"] else default_state_dir()
    v = values
    return Config(
        state_dir=state_dir.absolute(),
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
        recovery=RecoveryPolicy(
            max_attempts=v["recovery.max_attempts"], backoff_initial_s=v["recovery.backoff_initial_s"],
            backoff_max_s=v["recovery.backoff_max_s"], coalesce_window_s=v["recovery.coalesce_window_s"],
            retries_per_minute=v["recovery.retries_per_minute"],
            hold_after_crash_loop_s=v["recovery.hold_after_crash_loop_s"], notice=v["recovery.notice"],
            unanswered_grace_s=v["recovery.unanswered_grace_s"], jobs=dict(v["recovery.jobs"]),
        ),
    )
