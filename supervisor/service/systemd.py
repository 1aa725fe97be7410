"""Linux: gatewayd as the systemd user unit `gatewayd.service`, the gateway's `openclaw-gateway.service` off.

Every call is `systemctl --user ...`: `show` (state), `daemon-reload`, `enable|disable [--now]`,
`start`, `restart`. `systemctl stop` is synchronous (it waits up to TimeoutStopSec).
"""

from __future__ import annotations

import os
import re
import shlex
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from supervisor.config import home_dir
from supervisor.errors import ConfigError
from supervisor.service.common import (
    SYSTEMD,
    Echo,
    Runner,
    ServiceError,
    ServiceSpec,
    ServiceState,
    check_writable,
    ensure_state_dirs,
    new_record,
    read_env_names,
    read_record,
    refuse_if_running_outside,
    remove_record,
    template,
    wait_for_exit,
    write_atomic,
    write_record,
)

UNIT = "gatewayd.service"
GATEWAY_UNIT = "openclaw-gateway.service"
SERVICE_NAME = UNIT
GATEWAY_SERVICE_NAME = GATEWAY_UNIT
TEMPLATE = "gatewayd.service.template"
PLACEHOLDER = re.compile(r"@([A-Z_]+)@")
SHOW_PROPERTIES = "LoadState,ActiveState,UnitFileState,MainPID,FragmentPath"
RUNNING_STATES = ("active", "activating", "reloading", "deactivating")
ENABLED_STATES = ("enabled", "enabled-runtime", "linked", "linked-runtime")


def unit_dir(home: Path, environ: Mapping[str, str]) -> Path:
    xdg = environ.get("XDG_CONFIG_HOME", "")
    # A relative XDG_CONFIG_HOME is invalid and ignored (XDG base directory spec), as systemd does.
    return (Path(xdg) if os.path.isabs(xdg) else home / ".config") / "systemd" / "user"


def definition_path(home: Path, environ: Mapping[str, str]) -> Path:
    return unit_dir(home, environ) / UNIT


def _systemctl(*args: str) -> list[str]:
    return ["systemctl", "--user", *args]


# -- the unit ------------------------------------------------------------------------------------------


def quote(arg: str, command_line: bool = True) -> str:
    """One word of a unit file value, double-quoted: `\\` and `"` escaped, `%` (specifiers) doubled,
    and on a command line `$` (variable expansion) doubled too. No control characters: a line break
    would end the directive (and start another)."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in arg):
        raise ServiceError(f"cannot put a control character into a systemd unit: {arg!a}")
    s = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{s.replace("$", "$$") if command_line else s}"'


def unquote_command(value: str) -> list[str]:
    """ExecStart= as written by `quote`, back to an argv."""
    return [w.replace("%%", "%").replace("$$", "$") for w in shlex.split(value)]


def values(spec: ServiceSpec) -> dict[str, str]:
    return {
        "EXEC_START": " ".join(quote(a) for a in spec.argv),
        "ENVIRONMENT": " ".join(quote(f"{k}={v}", command_line=False) for k, v in spec.environment.items()),
        "TIMEOUT_STOP_SEC": str(spec.stop_timeout_s),
    }


def render(spec: ServiceSpec, text: str | None = None) -> str:
    check_writable(spec, "systemd unit")
    fill = values(spec)

    def repl(m: re.Match[str]) -> str:
        if m.group(1) not in fill:
            raise ServiceError(f"unit template {TEMPLATE}: unknown placeholder {m.group(0)}")
        return fill[m.group(1)]

    return PLACEHOLDER.sub(repl, text if text is not None else template(TEMPLATE))


def directives(text: str) -> dict[str, dict[str, list[str]]]:
    """{section: {key: [values]}} of a unit file (comments and continuation lines aside)."""
    out: dict[str, dict[str, list[str]]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            out.setdefault(section, {})
        elif "=" in line:
            key, _, value = line.partition("=")
            out.setdefault(section, {}).setdefault(key.strip(), []).append(value.strip())
    return out


def validate(text: str, spec: ServiceSpec, runner: Runner) -> list[str]:
    problems: list[str] = []
    if m := PLACEHOLDER.search(text):
        problems.append(f"unfilled placeholder {m.group(0)}")
    svc = directives(text).get("Service", {})
    exec_start = svc.get("ExecStart", [""])
    if len(exec_start) != 1 or unquote_command(exec_start[0]) != list(spec.argv):
        problems.append(f"ExecStart does not read back as {list(spec.argv)}")
    expected = {"Restart": "always", "KillMode": "process", "TimeoutStopSec": str(spec.stop_timeout_s)}
    for key, want in expected.items():
        if svc.get(key) != [want]:
            problems.append(f"{key} is {svc.get(key)}, expected {want}")
    if runner.which("systemd-analyze"):
        # The system-mode verifier: `--user` needs a running user manager (absent in CI and containers);
        # it checks the same syntax and that ExecStart's binary exists. Unknown keys and bad values
        # are only warnings with exit 0: every line about our file counts as a problem.
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / UNIT
            path.write_text(text, encoding="utf-8")
            result = runner.query(["systemd-analyze", "verify", str(path)])
            about_us = [ln.strip() for ln in (result.stdout + result.stderr).splitlines() if UNIT in ln]
            if about_us or not result.ok:
                problems.append(f"systemd-analyze verify: {'; '.join(about_us) or result.problem()}")
    return problems


# -- systemd's view ------------------------------------------------------------------------------------


def inspect(runner: Runner, unit: str, path: Path) -> ServiceState:
    result = runner.query(_systemctl("show", f"--property={SHOW_PROPERTIES}", unit))
    if not result.ok:
        raise ServiceError(f"`systemctl --user show {unit}` failed: {result.problem()}")
    props = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    if props.get("FragmentPath"):
        path = Path(props["FragmentPath"])
    env_names: list[str] = []
    env_file = None
    port = None
    try:
        svc = directives(path.read_text(encoding="utf-8")).get("Service", {})
    except OSError:
        svc = {}
    for value in svc.get("Environment", []):
        try:
            words = shlex.split(value)
        except ValueError:
            continue
        for word in words:
            name, _, val = word.partition("=")
            env_names.append(name)
            if name == "OPENCLAW_GATEWAY_PORT" and val.isdigit():
                port = int(val)
    for value in svc.get("EnvironmentFile", []):
        raw = value.lstrip("-")
        try:
            home = str(home_dir())
        except ConfigError:
            home = None
        names = read_env_names(Path(raw.replace("%h", home))) if home and "%" not in raw.replace("%h", "") \
            else None
        if names is None:
            env_file = raw
        else:
            env_names += names
    pid = int(props["MainPID"]) if props.get("MainPID", "0").isdigit() and props.get("MainPID") != "0" else None
    return ServiceState(name=unit, path=path, exists=path.exists() or props.get("LoadState") == "loaded",
                        running=props.get("ActiveState") in RUNNING_STATES,
                        enabled=props.get("UnitFileState") in ENABLED_STATES, pid=pid,
                        environment=tuple(sorted(set(env_names))), env_file=env_file, port=port)


def _installed(home: Path, environ: Mapping[str, str]) -> dict[str, list[str]]:
    try:
        return directives(definition_path(home, environ).read_text(encoding="utf-8")).get("Service", {})
    except OSError:
        return {}


def installed_argv(home: Path, environ: Mapping[str, str]) -> list[str] | None:
    try:
        return unquote_command(_installed(home, environ)["ExecStart"][0])
    except (KeyError, IndexError, ValueError):
        return None


def installed_stop_timeout(home: Path, environ: Mapping[str, str]) -> int | None:
    value = _installed(home, environ).get("TimeoutStopSec", [""])[-1]
    return int(value) if value.isdigit() else None


def gateway_services(runner: Runner, home: Path) -> list[ServiceState]:
    """The gateway's own units: `openclaw-gateway.service` and its profiles `openclaw-gateway-<profile>`."""
    d = unit_dir(home, runner.environ)
    names = {GATEWAY_UNIT} | {p.name for p in d.glob("openclaw-gateway-*.service")}
    states = [inspect(runner, name, d / name) for name in sorted(names)]
    return [s for s in states if s.exists]


# -- install / uninstall -------------------------------------------------------------------------------


def _switch_off_gateway(runner: Runner, spec: ServiceSpec, record: dict[str, Any], echo: Echo) -> None:
    gw = inspect(runner, GATEWAY_UNIT, unit_dir(spec.home, runner.environ) / GATEWAY_UNIT)
    if not gw.exists:
        echo(f"{GATEWAY_UNIT}: not installed; nothing to switch off")
        return
    prior = record.get("gateway_service") or {"name": GATEWAY_UNIT, "path": str(gw.path), "was_running": gw.running,
                                              "was_enabled": gw.enabled, "stopped": False, "disabled": False}
    prior["stopped"] = bool(prior.get("stopped")) or gw.running
    prior["disabled"] = bool(prior.get("disabled")) or gw.enabled
    record["gateway_service"] = prior
    write_record(spec.state_dir, record, runner.dry_run)  # what we are about to change, before changing it
    if gw.running or gw.enabled:
        runner.change(_systemctl("disable", "--now", GATEWAY_UNIT), timeout_s=spec.stop_timeout_s + 30)
        echo(f"{GATEWAY_UNIT}: {'stopped and ' if gw.running else ''}disabled, so systemd never starts a second "
             "gateway (`gatewayd uninstall` restores it)")
    else:
        echo(f"{GATEWAY_UNIT}: already stopped and disabled; left as is")
    extra = gw.foreign_environment(spec.gateway_dotenv)
    if extra:
        echo(f"warning: {GATEWAY_UNIT} gives the gateway {extra}; gatewayd's unit does not: put those variables "
             f"in {spec.gateway_dotenv} (the gateway reads it itself)")


def _restore_gateway(runner: Runner, record: Mapping[str, Any], echo: Echo) -> None:
    gw = record.get("gateway_service")
    if not isinstance(gw, dict):
        return
    unit = str(gw.get("name", GATEWAY_UNIT))
    if gw.get("disabled"):
        runner.change(_systemctl("enable", *(["--now"] if gw.get("stopped") else []), unit))
    elif gw.get("stopped"):
        runner.change(_systemctl("start", unit))
    done = [w for w, flag in (("enabled", gw.get("disabled")), ("started", gw.get("stopped"))) if flag]
    echo(f"{unit}: {' and '.join(done) + ' again' if done else 'left as it was'}")


def install(spec: ServiceSpec, runner: Runner, echo: Echo) -> None:
    path = definition_path(spec.home, runner.environ)
    text = render(spec)
    problems = validate(text, spec, runner)
    if problems:
        raise ServiceError(f"the rendered unit is invalid: {'; '.join(problems)}")
    echo(f"validated {UNIT}: "
         f"{'systemd-analyze verify' if runner.which('systemd-analyze') else 'read back (no systemd-analyze here)'}")
    record = read_record(spec.state_dir) or {}
    if record.get("platform") not in (None, SYSTEMD):
        raise ServiceError(f"{spec.state_dir} is installed as a {record['platform']} service; uninstall it first")
    me = inspect(runner, UNIT, path)
    if not me.running:
        refuse_if_running_outside(spec.state_dir)
    fresh = not record
    record = {**new_record(SYSTEMD, path), **{k: v for k, v in record.items() if k == "gateway_service"}}
    ensure_state_dirs(spec, runner.dry_run)
    wrote = False
    try:
        _switch_off_gateway(runner, spec, record, echo)
        write_record(spec.state_dir, record, runner.dry_run)
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text and me.running and me.enabled:
            echo(f"{UNIT}: already enabled and running with this definition")
            return
        if current != text:
            if runner.dry_run:
                echo(f"would write {path}:\n{text}")
            else:
                write_atomic(path, text.encode("utf-8"), 0o644)
                wrote = current is None
                echo(f"wrote {path}")
        runner.change(_systemctl("daemon-reload"))
        runner.change(_systemctl("enable", "--now", UNIT))
        if me.running and current != text:  # enable --now leaves a running unit on its old definition
            runner.change(_systemctl("restart", UNIT), timeout_s=spec.stop_timeout_s + 30)
    except ServiceError as exc:
        if runner.dry_run:
            raise
        notes = _rollback(runner, spec, record, path if wrote else None, fresh, echo)
        raise ServiceError(f"{exc}; {notes}") from exc
    echo(f"{UNIT}: enabled and started; systemd starts gatewayd at login and again whenever it exits")
    echo(f"logs: {spec.log_dir} (gatewayd.log, gateway.log), and `journalctl --user -u {UNIT}`")


def _rollback(runner: Runner, spec: ServiceSpec, record: Mapping[str, Any], written: Path | None, fresh: bool,
              echo: Echo) -> str:
    try:
        if written is not None:
            written.unlink(missing_ok=True)
            runner.change(_systemctl("daemon-reload"))
        _restore_gateway(runner, record, echo)
        if fresh:
            remove_record(spec.state_dir, dry_run=False)
        return f"rolled back: {GATEWAY_UNIT} restored" if record.get("gateway_service") else "rolled back"
    except ServiceError as exc:
        return f"and the rollback failed too ({exc}): run `gatewayd uninstall`"


def uninstall(state_dir: Path, home: Path, runner: Runner, echo: Echo, stop_timeout_s: int) -> None:
    path = definition_path(home, runner.environ)
    me = inspect(runner, UNIT, path)
    if me.running or me.enabled:
        runner.change(_systemctl("disable", "--now", UNIT), timeout_s=stop_timeout_s + 30)
        if not runner.dry_run and not wait_for_exit(state_dir, stop_timeout_s, echo):
            raise ServiceError(f"gatewayd still holds {state_dir} {stop_timeout_s} s after its stop; "
                               "the gateway's own service was not restored")
        echo(f"{UNIT}: stopped and disabled (gatewayd stopped its gateway)")
    if path.exists():
        if runner.dry_run:
            echo(f"would remove {path}")
        else:
            path.unlink()
            echo(f"removed {path}")
        runner.change(_systemctl("daemon-reload"))
    record = read_record(state_dir)
    if record is None:
        echo(f"no {state_dir}/service-state.json: the gateway's own service was not changed by gatewayd; "
             "left as it is")
        return
    if record.get("platform") not in (None, SYSTEMD):
        raise ServiceError(f"{state_dir} records a {record['platform']} install, not systemd")
    _restore_gateway(runner, record, echo)
    remove_record(state_dir, runner.dry_run)


def start(runner: Runner, home: Path) -> None:
    del home
    runner.change(_systemctl("enable", "--now", UNIT))


def stop(runner: Runner, home: Path, timeout_s: float | None = None) -> None:
    del home
    runner.change(_systemctl("disable", "--now", UNIT), timeout_s=timeout_s)  # not again at the next login
