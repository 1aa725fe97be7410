"""macOS: gatewayd as the LaunchAgent `ai.openclaw.gatewayd`, the gateway's own `ai.openclaw.gateway` off.

launchctl verbs used (domain `gui/<uid>`): `print` (loaded? pid), `print-disabled`, `bootstrap`,
`bootout`, `enable`, `disable`. `disable` persists across logins; `bootout` only unloads.
"""

from __future__ import annotations

import os
import plistlib
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from xml.parsers.expat import ExpatError

from supervisor.service.common import (
    LAUNCHD,
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

LABEL = "ai.openclaw.gatewayd"
GATEWAY_LABEL = "ai.openclaw.gateway"
SERVICE_NAME = LABEL
GATEWAY_SERVICE_NAME = GATEWAY_LABEL
TEMPLATE = "ai.openclaw.gatewayd.plist.template"
PLACEHOLDER = re.compile(r"^@([A-Z_]+)@$")
NOT_LOADED_RCS = (3, 113)  # bootout of a job that is not loaded: ESRCH, "could not find service"


def domain() -> str:
    return f"gui/{os.getuid()}"


def agents_dir(home: Path) -> Path:
    return home / "Library" / "LaunchAgents"


def definition_path(home: Path, environ: Mapping[str, str] | None = None) -> Path:
    del environ
    return agents_dir(home) / f"{LABEL}.plist"


def gateway_plist(home: Path) -> Path:
    return agents_dir(home) / f"{GATEWAY_LABEL}.plist"


# -- the plist -----------------------------------------------------------------------------------------


def values(spec: ServiceSpec) -> dict[str, Any]:
    return {
        "PROGRAM_ARGUMENTS": list(spec.argv),
        "EXIT_TIMEOUT": spec.stop_timeout_s,
        "STDOUT_PATH": str(spec.stdout_path),
        "STDERR_PATH": str(spec.stderr_path),
        "ENVIRONMENT": dict(spec.environment),
    }


def render(spec: ServiceSpec, text: str | None = None) -> bytes:
    """The template is a plist whose "@NAME@" strings stand for typed values; filling them in
    through plistlib (not text substitution) leaves no escaping to get wrong; what plistlib cannot
    hold (control characters) is refused first, in one line naming it."""
    check_writable(spec, "plist")
    try:
        doc = plistlib.loads((text if text is not None else template(TEMPLATE)).encode("utf-8"))
    except (plistlib.InvalidFileException, ValueError, ExpatError) as exc:
        raise ServiceError(f"plist template {TEMPLATE} is not a valid plist: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("Label") != LABEL:
        raise ServiceError(f"plist template {TEMPLATE}: Label must be {LABEL}")
    fill = values(spec)
    for key, value in doc.items():
        m = PLACEHOLDER.match(value) if isinstance(value, str) else None
        if m:
            if m.group(1) not in fill:
                raise ServiceError(f"plist template {TEMPLATE}: unknown placeholder {value} at {key}")
            doc[key] = fill[m.group(1)]
    return plistlib.dumps(doc, sort_keys=False)


def validate(data: bytes, spec: ServiceSpec, runner: Runner) -> list[str]:
    """Problems with a rendered plist (empty: fine), and says which validators ran."""
    problems: list[str] = []
    try:
        doc = plistlib.loads(data)
    except (plistlib.InvalidFileException, ValueError, ExpatError) as exc:
        return [f"plistlib cannot parse it: {exc}"]
    expected = {"Label": LABEL, "ProgramArguments": list(spec.argv), "RunAtLoad": True, "KeepAlive": True,
                "ExitTimeOut": spec.stop_timeout_s, "ProcessType": "Interactive",
                "StandardOutPath": str(spec.stdout_path), "StandardErrorPath": str(spec.stderr_path),
                "EnvironmentVariables": dict(spec.environment)}
    for key, want in expected.items():
        if doc.get(key) != want:
            problems.append(f"{key} is {doc.get(key)!r}, expected {want!r}")
    leftovers = [k for k, v in doc.items() if isinstance(v, str) and PLACEHOLDER.match(v)]
    if leftovers:
        problems.append(f"unfilled placeholders: {', '.join(leftovers)}")
    if not os.path.isabs(spec.argv[0]):
        problems.append(f"ProgramArguments[0] {spec.argv[0]!r} is not absolute")
    if runner.which("plutil"):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{LABEL}.plist"
            path.write_bytes(data)
            result = runner.query(["plutil", "-lint", str(path)])
            if not result.ok:
                problems.append(f"plutil -lint: {result.problem()}")
    return problems


# -- launchd's view ------------------------------------------------------------------------------------


def _target(label: str) -> str:
    return f"{domain()}/{label}"


def disabled_labels(runner: Runner) -> set[str]:
    result = runner.query(["launchctl", "print-disabled", domain()])
    # `"label" => disabled` (macOS 13+) or `"label" => true` (older).
    return {m.group(1) for m in re.finditer(r'"([^"]+)"\s*=>\s*(?:disabled|true)\b', result.stdout)}


def inspect(runner: Runner, label: str, path: Path, disabled: set[str] | None = None) -> ServiceState:
    result = runner.query(["launchctl", "print", _target(label)])
    pid = None
    if result.ok and (m := re.search(r"^\s*pid = (\d+)", result.stdout, re.M)):
        pid = int(m.group(1))
    env_names: tuple[str, ...] = ()
    env_file = None
    port = None
    try:
        doc = plistlib.loads(path.read_bytes())
    except (OSError, plistlib.InvalidFileException, ValueError, ExpatError):
        doc = None
    if isinstance(doc, dict):
        env = doc.get("EnvironmentVariables")
        if isinstance(env, dict):
            env_names = tuple(sorted(env))
            raw_port = str(env.get("OPENCLAW_GATEWAY_PORT", ""))
            port = int(raw_port) if raw_port.isdigit() else None
        # `openclaw gateway install` may wrap the gateway: `/bin/sh <dir>/<label>-env-wrapper.sh <label>.env ...`
        args = [a for a in doc.get("ProgramArguments") or [] if isinstance(a, str)]
        env_arg = next((a for a in args if a.endswith(".env")), None)
        if env_arg:
            wrapper = next((Path(a) for a in args if a.endswith(".sh")), None)
            candidate = Path(env_arg) if os.path.isabs(env_arg) or wrapper is None else wrapper.parent / env_arg
            names = read_env_names(candidate)
            if names is None:
                env_file = env_arg
            else:
                env_names = tuple(sorted({*env_names, *names}))
    if disabled is None:
        disabled = disabled_labels(runner)
    return ServiceState(name=label, path=path, exists=path.exists(), running=result.ok,
                        enabled=label not in disabled, pid=pid, environment=env_names, env_file=env_file, port=port)


def _installed(home: Path) -> dict[str, Any]:
    try:
        doc = plistlib.loads(definition_path(home).read_bytes())
    except (OSError, plistlib.InvalidFileException, ValueError, ExpatError):
        return {}
    return doc if isinstance(doc, dict) else {}


def installed_argv(home: Path, environ: Mapping[str, str] | None = None) -> list[str] | None:
    del environ
    args = _installed(home).get("ProgramArguments")
    return [str(a) for a in args] if isinstance(args, list) else None


def installed_stop_timeout(home: Path, environ: Mapping[str, str] | None = None) -> int | None:
    del environ
    value = _installed(home).get("ExitTimeOut")
    return value if isinstance(value, int) else None


def gateway_services(runner: Runner, home: Path) -> list[ServiceState]:
    """The gateway's own LaunchAgents: `ai.openclaw.gateway` and its profiles `ai.openclaw.<profile>`."""
    disabled = disabled_labels(runner)
    out = []
    for path in sorted(agents_dir(home).glob("ai.openclaw.*.plist")):
        label = path.name.removesuffix(".plist")
        if label != LABEL:
            out.append(inspect(runner, label, path, disabled))
    return out


# -- install / uninstall -------------------------------------------------------------------------------


def _switch_off_gateway(runner: Runner, spec: ServiceSpec, record: dict[str, Any], echo: Echo) -> None:
    path = gateway_plist(spec.home)
    if not path.exists():
        echo(f"{GATEWAY_LABEL}: no {path}; nothing to switch off")
        return
    gw = inspect(runner, GATEWAY_LABEL, path)
    prior = record.get("gateway_service") or {"name": GATEWAY_LABEL, "path": str(path), "was_running": gw.running,
                                              "was_enabled": gw.enabled, "stopped": False, "disabled": False}
    prior["stopped"] = bool(prior.get("stopped")) or gw.running
    prior["disabled"] = bool(prior.get("disabled")) or gw.enabled
    record["gateway_service"] = prior
    write_record(spec.state_dir, record, runner.dry_run)  # what we are about to change, before changing it
    if gw.running:
        runner.change(["launchctl", "bootout", _target(GATEWAY_LABEL)], ok_rcs=(0, *NOT_LOADED_RCS))
    if gw.enabled:
        runner.change(["launchctl", "disable", _target(GATEWAY_LABEL)])
    if gw.running or gw.enabled:
        echo(f"{GATEWAY_LABEL}: {'booted out and ' if gw.running else ''}disabled, so launchd never starts a "
             f"second gateway (`gatewayd uninstall` restores it)")
    else:
        echo(f"{GATEWAY_LABEL}: already stopped and disabled; left as is")
    extra = gw.foreign_environment(spec.gateway_dotenv)
    if extra:
        echo(f"warning: {GATEWAY_LABEL}'s plist gives the gateway {extra}; gatewayd's service does not: put "
             f"those variables in {spec.gateway_dotenv} (the gateway reads it itself)")


def _restore_gateway(runner: Runner, record: Mapping[str, Any], echo: Echo) -> None:
    gw = record.get("gateway_service")
    if not isinstance(gw, dict):
        return
    label, path = str(gw.get("name", GATEWAY_LABEL)), Path(str(gw.get("path")))
    if gw.get("disabled"):
        runner.change(["launchctl", "enable", _target(label)])
    if gw.get("stopped"):
        if not path.exists():
            echo(f"warning: {label} was running before gatewayd was installed, but {path} is gone; not restarted")
        elif not runner.query(["launchctl", "print", _target(label)]).ok:
            runner.change(["launchctl", "bootstrap", domain(), str(path)])
    done = [w for w, flag in (("enabled", gw.get("disabled")), ("started", gw.get("stopped"))) if flag]
    echo(f"{label}: {' and '.join(done) + ' again' if done else 'left as it was'}")


def install(spec: ServiceSpec, runner: Runner, echo: Echo) -> None:
    plist = definition_path(spec.home)
    data = render(spec)
    problems = validate(data, spec, runner)
    if problems:
        raise ServiceError(f"the rendered plist is invalid: {'; '.join(problems)}")
    echo(f"validated {LABEL}.plist: plistlib{', plutil -lint' if runner.which('plutil') else ' (no plutil here)'}")
    record = read_record(spec.state_dir) or {}
    if record.get("platform") not in (None, LAUNCHD):
        raise ServiceError(f"{spec.state_dir} is installed as a {record['platform']} service; uninstall it first")
    loaded = runner.query(["launchctl", "print", _target(LABEL)]).ok
    if not loaded:
        refuse_if_running_outside(spec.state_dir)
    fresh = not record
    record = {**new_record(LAUNCHD, plist), **{k: v for k, v in record.items() if k == "gateway_service"}}
    ensure_state_dirs(spec, runner.dry_run)
    wrote = False
    try:
        _switch_off_gateway(runner, spec, record, echo)
        write_record(spec.state_dir, record, runner.dry_run)
        current = plist.read_bytes() if plist.exists() else None
        if loaded and current == data:
            echo(f"{LABEL}: already loaded with this definition")
            return
        if loaded:  # a new definition: launchd reads a plist only at bootstrap
            runner.change(["launchctl", "bootout", _target(LABEL)], timeout_s=spec.stop_timeout_s + 30,
                          ok_rcs=(0, *NOT_LOADED_RCS))
        if runner.dry_run:
            echo(f"would write {plist}:\n{data.decode()}")
        else:
            write_atomic(plist, data, 0o644)
            wrote = current is None
            echo(f"wrote {plist}")
        runner.change(["launchctl", "enable", _target(LABEL)])  # `gatewayd stop` disables it
        runner.change(["launchctl", "bootstrap", domain(), str(plist)])
    except ServiceError as exc:
        if runner.dry_run:
            raise
        notes = _rollback(runner, spec, record, plist if wrote else None, fresh, echo)
        raise ServiceError(f"{exc}; {notes}") from exc
    echo(f"{LABEL}: loaded; launchd starts gatewayd now, at every login, and again whenever it exits")
    echo(f"logs: {spec.log_dir} (gatewayd.log, gateway.log; launchd's own: {spec.stdout_path.name}, "
         f"{spec.stderr_path.name})")


def _rollback(runner: Runner, spec: ServiceSpec, record: Mapping[str, Any], written: Path | None, fresh: bool,
              echo: Echo) -> str:
    try:
        if written is not None:
            written.unlink(missing_ok=True)
        _restore_gateway(runner, record, echo)
        if fresh:
            remove_record(spec.state_dir, dry_run=False)
        return f"rolled back: {GATEWAY_LABEL} restored" if record.get("gateway_service") else "rolled back"
    except ServiceError as exc:
        return f"and the rollback failed too ({exc}): run `gatewayd uninstall`"


def uninstall(state_dir: Path, home: Path, runner: Runner, echo: Echo, stop_timeout_s: int) -> None:
    plist = definition_path(home)
    if runner.query(["launchctl", "print", _target(LABEL)]).ok:
        runner.change(["launchctl", "bootout", _target(LABEL)], timeout_s=stop_timeout_s + 30,
                      ok_rcs=(0, *NOT_LOADED_RCS))
        if not runner.dry_run and not wait_for_exit(state_dir, stop_timeout_s, echo):
            raise ServiceError(f"gatewayd still holds {state_dir} {stop_timeout_s} s after bootout; "
                               "the gateway's own service was not restored")
        echo(f"{LABEL}: booted out (gatewayd stopped its gateway)")
    if plist.exists():
        if runner.dry_run:
            echo(f"would remove {plist}")
        else:
            plist.unlink()
            echo(f"removed {plist}")
    record = read_record(state_dir)
    if record is None:
        echo(f"no {state_dir}/service-state.json: the gateway's own service was not changed by gatewayd; "
             "left as it is")
        return
    if record.get("platform") not in (None, LAUNCHD):
        raise ServiceError(f"{state_dir} records a {record['platform']} install, not launchd")
    _restore_gateway(runner, record, echo)
    remove_record(state_dir, runner.dry_run)


def start(runner: Runner, home: Path) -> None:
    runner.change(["launchctl", "enable", _target(LABEL)])
    if not runner.query(["launchctl", "print", _target(LABEL)]).ok:
        runner.change(["launchctl", "bootstrap", domain(), str(definition_path(home))])


def stop(runner: Runner, home: Path, timeout_s: float | None = None) -> None:
    del home
    runner.change(["launchctl", "disable", _target(LABEL)])  # not again at the next login
    runner.change(["launchctl", "bootout", _target(LABEL)], timeout_s=timeout_s, ok_rcs=(0, *NOT_LOADED_RCS))
