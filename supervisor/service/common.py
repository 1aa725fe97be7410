"""What launchd and systemd installs share: the service spec, the command runner, the record of
what was changed, templates and checks. `supervisor.service` re-exports these and dispatches to
the backend of a platform; the backends import from here, so nothing imports in a circle."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from supervisor.config import Config, home_dir
from supervisor.errors import GatewaydError
from supervisor.gateway.launch import gateway_paths, read_dotenv

PLATFORM_ENV = "GATEWAYD_SERVICE_PLATFORM"
LAUNCHD = "launchd"
SYSTEMD = "systemd"
PLATFORMS = (LAUNCHD, SYSTEMD)
RECORD_FILE = "service-state.json"
LOCK_FILE = "gatewayd.lock"
STOP_MARGIN_S = 30  # the service manager's stop timeout = gatewayd's stop budget + this (DESIGN, correction 6)
NOFILE_LIMIT = 8192
# Package data, so a wheel (pipx, uv tool) carries them; the repo's launchd/ links here.
TEMPLATES = Path(__file__).resolve().parent / "templates"

# Carried from the installing shell into the service's environment: gatewayd's own settings and the
# gateway's non-secret path variables, so the service supervises the gateway `doctor` looked at.
# Secrets are never written into a service definition (a plist is world-readable).
CARRIED_PREFIX = "GATEWAYD_"
NOT_CARRIED = frozenset({PLATFORM_ENV, "GATEWAYD_CONFIG", "GATEWAYD_STATE_DIR"})  # the last two become flags
CARRIED_OPENCLAW = ("OPENCLAW_HOME", "OPENCLAW_STATE_DIR", "OPENCLAW_CONFIG_PATH", "OPENCLAW_GATEWAY_PORT")
SECRET_VARS = ("OPENCLAW_GATEWAY_TOKEN", "OPENCLAW_GATEWAY_PASSWORD")
# What the gateway's own service sets for itself; anything else it sets, gatewayd's service lacks.
GATEWAY_SERVICE_OWN_VARS = frozenset({"PATH", "HOME", "TMPDIR", "NODE_OPTIONS", "OPENCLAW_GATEWAY_PORT",
                                      "OPENCLAW_LAUNCHD_LABEL", "OPENCLAW_SYSTEMD_UNIT", "OPENCLAW_PROFILE"})
GATEWAY_SERVICE_OWN_PREFIXES = ("OPENCLAW_SERVICE_",)

Echo = Callable[[str], None]


class ServiceError(GatewaydError):
    pass


def detect_platform(environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    forced = environ.get(PLATFORM_ENV, "").strip()
    if forced:
        if forced not in PLATFORMS:
            raise ServiceError(f"{PLATFORM_ENV}={forced!r}: must be launchd or systemd")
        return forced
    if sys.platform == "darwin":
        return LAUNCHD
    if sys.platform.startswith("linux"):
        return SYSTEMD
    raise ServiceError(f"no service manager support on {sys.platform} (only macOS launchd and Linux systemd)")


# -- running the service manager's CLI ---------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    rc: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def problem(self) -> str:
        text = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return text[-1] if text else f"exit {self.rc}"


class Runner:
    """Runs launchctl/systemctl and friends. `query` always runs (it changes nothing); `change` is
    only printed when `dry_run`, and raises ServiceError when the command fails."""

    def __init__(self, dry_run: bool = False, echo: Echo | None = None, timeout_s: float = 60.0,
                 environ: Mapping[str, str] | None = None) -> None:
        self.dry_run = dry_run
        self.echo: Echo = echo or (lambda _line: None)
        self.timeout_s = timeout_s
        self.environ = dict(os.environ if environ is None else environ)

    def which(self, name: str) -> str | None:
        return shutil.which(name, path=self.environ.get("PATH"))

    def _run(self, argv: Sequence[str], timeout_s: float | None) -> Result:
        exe = self.which(argv[0])
        if exe is None:
            raise ServiceError(f"{argv[0]} not found on PATH")
        try:
            out = subprocess.run([exe, *argv[1:]], capture_output=True, text=True, check=False,
                                 timeout=timeout_s or self.timeout_s, env=self.environ, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise ServiceError(f"{' '.join(argv)}: no answer within {exc.timeout:.0f} s") from exc
        except OSError as exc:
            raise ServiceError(f"{' '.join(argv)}: {exc.strerror}") from exc
        return Result(tuple(argv), out.returncode, out.stdout, out.stderr)

    def query(self, argv: Sequence[str], timeout_s: float | None = None) -> Result:
        return self._run(argv, timeout_s)

    def change(self, argv: Sequence[str], timeout_s: float | None = None, ok_rcs: Iterable[int] = (0,)) -> Result:
        if self.dry_run:
            self.echo(f"would run: {' '.join(argv)}")
            return Result(tuple(argv), 0)
        result = self._run(argv, timeout_s)
        if result.rc not in tuple(ok_rcs):
            raise ServiceError(f"`{' '.join(argv)}` failed (exit {result.rc}): {result.problem()}")
        return result


# -- what the service runs -----------------------------------------------------------------------------


def stop_timeout_s(stop_budget_s: float) -> int:
    """LaunchAgent ExitTimeOut / systemd TimeoutStopSec: longer than gatewayd's own stop budget, which
    is longer than the gateway's drain, so nobody SIGKILLs gatewayd while its gateway still drains."""
    return math.ceil(stop_budget_s) + STOP_MARGIN_S


@dataclass(frozen=True)
class ServiceSpec:
    argv: tuple[str, ...]
    environment: Mapping[str, str] = field(repr=False)
    state_dir: Path
    log_dir: Path
    stop_timeout_s: int
    home: Path
    gateway_dotenv: Path = Path("/nonexistent/.env")  # the gateway's own .env, which it reads itself

    @property
    def stdout_path(self) -> Path:
        return self.log_dir / "service.out.log"

    @property
    def stderr_path(self) -> Path:
        return self.log_dir / "service.err.log"


def run_argv(config_file: Path | None, state_dir: Path | None) -> tuple[str, ...]:
    """This installation's `gatewayd run`: its own interpreter, absolute. `-P` keeps the working
    directory off sys.path, so a `supervisor/` folder there (supervisord's) can never shadow ours."""
    argv = [os.path.abspath(sys.executable), "-P", "-m", "supervisor", "run"]
    if config_file is not None:
        argv += ["--config", str(config_file.expanduser().absolute())]
    if state_dir is not None:
        argv += ["--state-dir", str(state_dir.expanduser().absolute())]
    return tuple(argv)


def service_environment(environ: Mapping[str, str], home: Path) -> dict[str, str]:
    env = {"PATH": environ.get("PATH") or os.defpath, "HOME": str(home)}
    for name, value in sorted(environ.items()):
        if (name.startswith(CARRIED_PREFIX) and name not in NOT_CARRIED) or name in CARRIED_OPENCLAW:
            env[name] = value
    return env


def build_spec(cfg: Config, config_file: Path | None, environ: Mapping[str, str] | None = None,
               home: Path | None = None) -> ServiceSpec:
    """`config_file`: the file given on the command line (or GATEWAYD_CONFIG); the default location
    is left implicit, so the service reads it the way `gatewayd run` would."""
    environ = os.environ if environ is None else environ
    home = home or home_dir(environ, "the service definition and its HOME come from it")
    if config_file is None and environ.get("GATEWAYD_CONFIG"):
        config_file = Path(environ["GATEWAYD_CONFIG"])
    explicit_state = cfg.sources.get("state_dir", "default") != "default"
    gw_state, _ = gateway_paths(cfg.gateway, {**environ, **cfg.gateway.env})
    return ServiceSpec(
        argv=run_argv(config_file, cfg.state_dir if explicit_state else None),
        environment=service_environment(environ, home),
        state_dir=cfg.state_dir,
        log_dir=cfg.state_dir / "logs",
        stop_timeout_s=stop_timeout_s(cfg.stop_budget_s),
        home=home,
        gateway_dotenv=gw_state / ".env",
    )


def _unwritable(text: str) -> str | None:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        return "contains a control character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid text (undecodable bytes)"
    return None


def check_writable(spec: ServiceSpec, kind: str) -> None:
    """Refuse, in one line naming the value, what cannot go into a plist or unit file: a control
    character (plistlib raises ValueError; a line break would start a new unit directive) or text
    UTF-8 cannot encode. Checked before anything is rendered, written or changed."""
    items: list[tuple[str, str]] = [(f"argument {i} of the command", a) for i, a in enumerate(spec.argv)]
    items += [("the state dir", str(spec.state_dir)), ("the log folder", str(spec.log_dir))]
    for name, value in spec.environment.items():
        items += [("an environment variable name", name), (f"environment variable {name}", value)]
    for what, text in items:
        problem = _unwritable(text)
        if problem:
            shown = repr(text).encode("ascii", "backslashreplace").decode("ascii")
            raise ServiceError(f"cannot write the {kind}: {what} {shown} {problem}; use a path (or value)"
                               " without it")


def flags_from_argv(argv: Sequence[str]) -> dict[str, str]:
    """`--config`/`--state-dir` of an installed definition's argv (for `uninstall` without flags)."""
    out: dict[str, str] = {}
    for i, arg in enumerate(argv[:-1]):
        if arg in ("--config", "--state-dir"):
            out[arg] = argv[i + 1]
    return out


def secrets_not_carried(environ: Mapping[str, str]) -> list[str]:
    return [name for name in SECRET_VARS if environ.get(name)]


def foreign_variables(names: Iterable[str]) -> list[str]:
    """Variables a gateway's own service sets that are not its service plumbing (provider keys...)."""
    return sorted({n for n in names
                   if n not in GATEWAY_SERVICE_OWN_VARS and not n.startswith(GATEWAY_SERVICE_OWN_PREFIXES)})


# -- files ---------------------------------------------------------------------------------------------


def template(name: str) -> str:
    path = TEMPLATES / name
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ServiceError(f"service template {path} is missing ({exc.strerror}); reinstall gatewayd") from exc


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def ensure_state_dirs(spec: ServiceSpec, dry_run: bool) -> None:
    # launchd does not create the folders of StandardOutPath/StandardErrorPath: it would fail to start.
    if not dry_run:
        spec.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        spec.log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)


def read_record(state_dir: Path) -> dict[str, Any] | None:
    path = state_dir / RECORD_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ServiceError(f"{path}: unreadable ({exc}); fix or remove it") from exc
    if not isinstance(data, dict):
        raise ServiceError(f"{path}: not a JSON object; fix or remove it")
    return data


def write_record(state_dir: Path, record: Mapping[str, Any], dry_run: bool) -> None:
    if dry_run:
        return
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(state_dir / RECORD_FILE, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode(), 0o600)


def remove_record(state_dir: Path, dry_run: bool) -> None:
    if not dry_run:
        (state_dir / RECORD_FILE).unlink(missing_ok=True)


def new_record(platform: str, definition: Path) -> dict[str, Any]:
    return {"version": 1, "platform": platform, "definition": str(definition),
            "installed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def refuse_if_running_outside(state_dir: Path) -> None:
    """A gatewayd started by hand (`gatewayd start`) holds the state dir: the service's gatewayd would
    exit at once (another gatewayd runs) and be restarted again and again."""
    from supervisor.instance import holder_pid

    pid = holder_pid(state_dir / LOCK_FILE)
    if pid is not None:
        raise ServiceError(f"gatewayd already runs on {state_dir} (pid {pid}), outside the service manager: "
                           "stop it first (`gatewayd stop`), then install")


def wait_for_exit(state_dir: Path, timeout_s: float, echo: Echo, poll_s: float = 0.2) -> bool:
    """After the service manager was told to stop gatewayd: wait until it let go of its instance
    lock (it stops its gateway first), so the gateway's own service never starts into a busy port."""
    from supervisor.instance import holder_pid

    lock = state_dir / LOCK_FILE
    pid = holder_pid(lock)
    if pid is None:
        return True
    echo(f"waiting for gatewayd (pid {pid}) to stop its gateway (up to {timeout_s:.0f} s)...")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(poll_s)
        if holder_pid(lock) is None:
            return True
    return False


@dataclass(frozen=True)
class ServiceState:
    """One service as its manager sees it. launchd: `running` = loaded (bootstrapped), `enabled` = not
    in `print-disabled`. systemd: `running` = active, `enabled` = UnitFileState enabled."""

    name: str
    path: Path
    exists: bool  # the definition file is there
    running: bool
    enabled: bool
    pid: int | None = None
    environment: tuple[str, ...] = ()  # names of the variables its definition sets (never values)
    env_file: str | None = None  # an environment file its definition loads and gatewayd could not read
    port: int | None = None  # OPENCLAW_GATEWAY_PORT in its definition, if any

    def foreign_environment(self, dotenv: Path) -> str | None:
        """What this (gateway) service gives the gateway that gatewayd's service will not, or None.
        Names already in the gateway's own `.env` (`dotenv`), which the gateway reads itself, are fine."""
        covered = set(read_env_names(dotenv) or ())
        names = [n for n in foreign_variables(self.environment) if n not in covered]
        parts = ([", ".join(names)] if names else []) + ([f"what the env file {self.env_file} holds"]
                                                          if self.env_file else [])
        return " and ".join(parts) or None

    def describe(self) -> str:
        state = "running" if self.running else "not running"
        pid = f", pid {self.pid}" if self.pid else ""
        return f"{self.name} ({state}{pid}, {'enabled' if self.enabled else 'disabled'})"


def read_env_names(path: Path) -> tuple[str, ...] | None:
    """The variable names an env file sets (never the values), or None when it cannot be read."""
    if not path.is_file():
        return None
    return tuple(sorted(read_dotenv(path)))


# -- dispatch ------------------------------------------------------------------------------------------


class Manager(Protocol):
    """What `launchd` and `systemd` (the modules) both provide."""

    SERVICE_NAME: str  # gatewayd's label / unit
    GATEWAY_SERVICE_NAME: str  # the gateway's own label / unit

    def definition_path(self, home: Path, environ: Mapping[str, str]) -> Path: ...
    def inspect(self, runner: Runner, name: str, path: Path) -> ServiceState: ...
    def gateway_services(self, runner: Runner, home: Path) -> list[ServiceState]: ...
    def installed_argv(self, home: Path, environ: Mapping[str, str]) -> list[str] | None: ...
    def installed_stop_timeout(self, home: Path, environ: Mapping[str, str]) -> int | None: ...
    def install(self, spec: ServiceSpec, runner: Runner, echo: Echo) -> None: ...
    def uninstall(self, state_dir: Path, home: Path, runner: Runner, echo: Echo, stop_timeout_s: int) -> None: ...
    def start(self, runner: Runner, home: Path) -> None: ...
    def stop(self, runner: Runner, home: Path, timeout_s: float | None = None) -> None: ...
