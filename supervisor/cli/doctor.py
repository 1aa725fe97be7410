"""`gatewayd doctor`: what stands between this machine and a supervised gateway, and what to do.

Each finding is one line, `ok|warn|fail  <what>: <detail> (<what to do>)`; any `fail` makes the exit
code non-zero. Doctor only reads: it never writes the state dir (not even the token gatewayd would
generate), never opens the store for writing, and never signals a process. Secrets are never shown,
only where they come from.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import re
import sqlite3
import stat
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from supervisor import config
from supervisor.errors import ConfigError, LaunchError
from supervisor.gateway import launch
from supervisor.gateway.capabilities import for_version, parse_version
from supervisor.gateway.ports import PortOwner, port_owners
from supervisor.service import (
    LAUNCHD,
    LOCK_FILE,
    Runner,
    ServiceError,
    ServiceState,
    detect_platform,
    module,
    stop_timeout_s,
)
from supervisor.store.db import SCHEMA_VERSION, integrity, live_boot, open_readonly

OK, WARN, FAIL = "ok", "warn", "fail"
CORRUPT_MARKERS = ("malformed", "not a database", "file is encrypted", "corrupt")


@dataclass(frozen=True)
class Finding:
    level: str  # ok | warn | fail
    what: str
    detail: str
    hint: str = ""

    def line(self) -> str:
        text = f"{self.level:<4}  {self.what}: {self.detail}" + (f" ({self.hint})" if self.hint else "")
        return re.sub(r"[\r\n]+", " ", text)  # one finding, one line (a command line may hold newlines)


@dataclass
class Services:
    """What the service manager says, for the port and conflict checks."""

    platform: str | None = None
    manager: str = ""  # "launchctl" | "systemctl --user"
    ours: ServiceState | None = None
    gateways: list[ServiceState] = field(default_factory=list)
    problem: str | None = None

    @property
    def installed(self) -> bool:
        return self.ours is not None and self.ours.exists


# -- config --------------------------------------------------------------------------------------------


def config_path(config_file: Path | None, environ: Mapping[str, str]) -> Path:
    """The config file gatewayd would read (whether or not it exists); ConfigError without a home."""
    env_file = environ.get("GATEWAYD_CONFIG")
    path = config_file or (Path(env_file) if env_file else config.default_config_file())
    with contextlib.suppress(RuntimeError):  # no home to expand `~` with: config.load says so
        path = path.expanduser()
    return Path(os.path.abspath(path))


def check_config(config_file: Path | None, state_dir: str | None, environ: Mapping[str, str],
                 out: list[Finding]) -> config.Config | None:
    """The config gatewayd would run with; None (and a `fail`) when no config can be had at all: an
    empty HOME, a state_dir inside a file, and the like make even the defaults unusable."""
    try:
        path = config_path(config_file, environ)
    except ConfigError as exc:
        out.append(Finding(FAIL, "config", str(exc), "fix it; `gatewayd run` refuses to start with it"))
        return None
    writable = False
    with contextlib.suppress(OSError):
        mode = path.stat().st_mode
        writable = bool(mode & (stat.S_IWGRP | stat.S_IWOTH))
        if writable:
            out.append(Finding(FAIL, "config", f"{path} is group- or world-writable (mode {stat.filemode(mode)}): "
                               "anyone who can write it chooses what gatewayd runs", f"chmod go-w '{path}'"))
    try:
        cfg = config.load(config_file, {"state_dir": state_dir}, environ)
    except ConfigError as exc:
        if not writable:
            out.append(Finding(FAIL, "config", str(exc), "fix it; `gatewayd run` refuses to start with it"))
        return _default_config(state_dir, environ, out)
    if cfg.config_file is None:
        out.append(Finding(OK, "config", f"no config file, the defaults ({path} would be read)"))
    else:
        from_file = sum(1 for src in cfg.sources.values() if src == str(cfg.config_file))
        out.append(Finding(OK, "config", f"{cfg.config_file} ({from_file} settings from it)"))
    return cfg


def _default_config(state_dir: str | None, environ: Mapping[str, str],
                    out: list[Finding]) -> config.Config | None:
    clean = {k: v for k, v in environ.items() if not k.startswith("GATEWAYD_")}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            empty = Path(tmp) / "empty.toml"
            empty.write_text("")
            empty.chmod(0o600)
            cfg = config.load(empty, {"state_dir": state_dir}, clean)
    except ConfigError as exc:
        # The defaults fail too (the same bad state_dir, no home for the default one): nothing to
        # check the rest against. Said once, unless it is the error already reported.
        finding = Finding(FAIL, "config", str(exc), "fix it; `gatewayd run` refuses to start with it")
        if finding not in out:
            out.append(finding)
        return None
    out.append(Finding(WARN, "config", "the checks below use the defaults, not the config file"))
    return cfg


# -- the `supervisor` name -----------------------------------------------------------------------------


def check_supervisor_package(paths: Sequence[str] | None = None) -> Finding:
    """gatewayd's import package is `supervisor`, as is supervisord's (DESIGN "Layout")."""
    import supervisor

    ours = Path(supervisor.__file__).resolve().parent
    others: list[str] = []
    for entry in sys.path if paths is None else paths:
        candidate = (Path(entry or os.curdir) / "supervisor").resolve()
        if (candidate / "__init__.py").exists() and candidate != ours and str(candidate) not in others:
            others.append(str(candidate))
    if (ours / "supervisord.py").exists():
        others.append(f"supervisord's files inside {ours}")
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        dist = importlib.metadata.distribution("supervisor")
        others.append(f"the distribution supervisor {dist.version} in this environment")
    if others:
        return Finding(WARN, "supervisor package", f"another `supervisor` is importable besides gatewayd's ({ours}): "
                       f"{'; '.join(others)}",
                       "install gatewayd in its own environment: `pipx install` or `uv tool install`")
    return Finding(OK, "supervisor package", f"only gatewayd's ({ours})")


# -- openclaw, its token and port ----------------------------------------------------------------------


def check_openclaw(cfg: config.Config, environ: Mapping[str, str]) -> tuple[Finding, bool]:
    merged = {**environ, **cfg.gateway.env}
    try:
        prefix, entry = launch.resolve_entry(cfg.gateway, merged)
        version = launch.read_version(cfg.gateway, prefix, entry, merged, cfg.alerts.secret_variables)
    except LaunchError as exc:
        hint = "" if "(" in str(exc) else "set gateway.openclaw to its path, or run scripts/install-openclaw"
        return Finding(FAIL, "openclaw", str(exc), hint), False
    where = f"{entry} (node {prefix[0]})" if entry else " ".join(prefix)
    if parse_version(version) is None:
        return Finding(WARN, "openclaw", f"version {version!r} not understood, at {where}",
                       "set gateway.version to the installed version"), True
    caps = for_version(version)
    kind = "current" if caps.external_supervisor else "legacy"
    return Finding(OK, "openclaw", f"{version} ({kind}, protocol {caps.protocol}) at {where}"), True


@dataclass(frozen=True)
class GatewayView:
    port: int
    auth: launch.GatewayAuth | None
    file_cfg: launch.GatewayFileConfig
    gateway_state_dir: Path
    problem: str | None = None


def gateway_view(cfg: config.Config, environ: Mapping[str, str], openclaw_found: bool) -> GatewayView:
    """The port and credentials the daemon would use: `launch.build` itself when openclaw resolves.
    A token gatewayd would generate goes to a throwaway dir: doctor never writes the state dir."""
    merged = {**environ, **cfg.gateway.env}
    gw_state, gw_config = launch.gateway_paths(cfg.gateway, merged)
    file_cfg = launch.read_gateway_config(gw_config, merged)
    token_file = cfg.state_dir / launch.TOKEN_FILE
    auth: launch.GatewayAuth | None = None
    problem: str | None = None
    with tempfile.TemporaryDirectory() as tmp:
        own_dir = cfg.state_dir if token_file.exists() else Path(tmp)
        try:
            if openclaw_found:
                spec = launch.build(cfg.gateway, own_dir, dict(environ))
                return GatewayView(spec.port, spec.auth, file_cfg, spec.state_dir)
            # Without openclaw: the same pieces build() uses, so the token and port are still checked.
            auth = launch.resolve_auth(file_cfg, merged, launch.read_dotenv(gw_state / ".env"),
                                       own_dir / launch.TOKEN_FILE)
        except LaunchError as exc:
            problem = str(exc)
    env_port = merged.get("OPENCLAW_GATEWAY_PORT", "")
    port = cfg.gateway.port or (int(env_port) if env_port.isdigit() else 0) or file_cfg.port or launch.DEFAULT_PORT
    return GatewayView(port, auth, file_cfg, gw_state, problem)


def check_token(cfg: config.Config, view: GatewayView, services: Services) -> list[Finding]:
    if view.auth is None:
        return [Finding(FAIL, "token", view.problem or "cannot resolve the gateway's credentials",
                        f"fix gateway.auth in {view.file_cfg.path}")]
    auth = view.auth
    token_file = cfg.state_dir / launch.TOKEN_FILE
    out: list[Finding] = []
    if auth.mode == "none":
        out.append(Finding(WARN, "token", "gateway.auth.mode is none: anyone who reaches the port controls the gateway",
                           "set a token in gateway.auth"))
    elif auth.inject:
        if view.file_cfg.has_auth:
            out.append(Finding(WARN, "token", f"gateway.auth in {view.file_cfg.path} names a {auth.mode} that does "
                               f"not resolve here (an unset variable?): gatewayd would give the gateway its own "
                               f"token from {token_file}",
                               f"set that variable in {view.gateway_state_dir / '.env'}, so the gateway and its "
                               "clients agree"))
        elif token_file.exists():
            out.append(Finding(OK, "token", f"gatewayd's own ({token_file}); the gateway's config has no gateway.auth"))
        else:
            out.append(Finding(OK, "token", f"none configured: gatewayd generates one into {token_file} at its "
                               "first start"))
    elif auth.source.startswith("env "):
        manager = "the LaunchAgent" if services.platform == LAUNCHD else "the systemd unit"
        out.append(Finding(WARN, "token", f"{auth.mode} from your shell's environment ({auth.source.split()[-1]}); "
                           f"{manager} never carries secrets, so the service would not see it",
                           f"put it in {view.gateway_state_dir / '.env'}"))
    else:
        out.append(Finding(OK, "token", f"{auth.mode} from {auth.source}"))
    return out  # the token file's mode and owner: check_modes


def _ours(owner: PortOwner, state_dir: Path) -> bool:
    """The listener is gatewayd's gateway: a descendant of the running gatewayd, or the pid and create
    time of the boot the store has open (a gateway adopted across a gatewayd restart)."""
    from supervisor.instance import holder_pid

    if owner.pid is None:
        return False
    holder = holder_pid(state_dir / LOCK_FILE)
    if holder is not None:
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(owner.pid)
            if holder == owner.pid or holder in {p.pid for p in proc.parents()}:
                return True
    store = state_dir / "store.sqlite"
    if store.exists() and owner.create_time is not None:
        with contextlib.suppress(sqlite3.Error), contextlib.closing(open_readonly(store)) as conn:
            row = live_boot(conn)
            if row and row[0] == owner.pid and row[1] is not None and abs(row[1] - owner.create_time) < 1.0:
                return True
    return False


def _label(owner: PortOwner, services: Services) -> str | None:
    """The launchd label or systemd unit behind a listener, where known."""
    if owner.pid is None:
        return None
    lineage: set[int] = {owner.pid}
    with contextlib.suppress(psutil.Error):
        proc = psutil.Process(owner.pid)
        lineage |= {p.pid for p in proc.parents()}
        env = proc.environ()
        for var in ("OPENCLAW_LAUNCHD_LABEL", "OPENCLAW_SYSTEMD_UNIT"):
            if env.get(var):
                return env[var]
    for svc in services.gateways:
        if svc.pid is not None and svc.pid in lineage:
            return svc.name
    return None


def check_port(cfg: config.Config, port: int, services: Services) -> list[Finding]:
    owners = port_owners(port)
    if not owners:
        return [Finding(OK, "port", f"{port} is free (gatewayd starts the gateway on it)")]
    out: list[Finding] = []
    for owner in owners:
        if _ours(owner, cfg.state_dir):
            out.append(Finding(OK, "port", f"{port} is held by gatewayd's gateway, pid {owner.pid}"))
            continue
        label = _label(owner, services)
        who = owner.describe() + (f", of the service {label}" if label else "")
        if label and not services.installed:
            out.append(Finding(WARN, "port", f"{port} is held by {who}, not by gatewayd",
                               "`gatewayd install` switches the gateway's own service off and takes over"))
        else:
            out.append(Finding(FAIL, "port", f"{port} is held by {who}, not by gatewayd: gatewayd never signals "
                               "it and waits in state conflict",
                               f"stop it ({'its service ' + label if label else 'pid ' + str(owner.pid)}), "
                               "or set gateway.port"))
    return out


# -- services ------------------------------------------------------------------------------------------


def inspect_services(environ: Mapping[str, str], home: Path) -> Services:
    try:
        platform = detect_platform(environ)
    except ServiceError as exc:
        return Services(problem=str(exc))
    runner = Runner(environ=environ, timeout_s=20)
    mod = module(platform)
    svc = Services(platform=platform, manager="launchctl" if platform == LAUNCHD else "systemctl --user")
    try:
        svc.ours = mod.inspect(runner, mod.SERVICE_NAME, mod.definition_path(home, environ))
        svc.gateways = mod.gateway_services(runner, home)
    except ServiceError as exc:
        svc.problem = f"cannot ask {svc.manager}: {exc}"
    return svc


def check_services(cfg: config.Config, port: int, services: Services, environ: Mapping[str, str],
                   home: Path, dotenv: Path) -> list[Finding]:
    """gatewayd's service, and the gateway's own services for this port. `dotenv`: the gateway's .env."""
    if services.problem or services.platform is None:
        return [Finding(WARN, "service manager", services.problem or "unknown")]
    out: list[Finding] = []
    ours = services.ours
    assert ours is not None
    mod = module(services.platform)
    if not ours.exists:
        out.append(Finding(OK, "gatewayd service", f"{ours.name} is not installed",
                           "`gatewayd install` starts it at login and restarts it whenever it exits"))
    else:
        argv = mod.installed_argv(home, environ) or []
        timeout = mod.installed_stop_timeout(home, environ)
        want = stop_timeout_s(cfg.stop_budget_s)
        if argv and not os.access(argv[0], os.X_OK):
            out.append(Finding(FAIL, "gatewayd service", f"{ours.path} runs {argv[0]}, which is gone",
                               "run `gatewayd install` again from the current installation"))
        elif timeout is not None and timeout < want:
            out.append(Finding(WARN, "gatewayd service", f"{ours.path} allows {timeout} s to stop, less than the "
                               f"stop budget + 30 s ({want} s): the manager could kill gatewayd mid-drain",
                               "run `gatewayd install` again"))
        if ours.running:
            out.append(Finding(OK, "gatewayd service", f"{ours.describe()}"))
        elif ours.enabled:
            out.append(Finding(WARN, "gatewayd service", f"{ours.describe()}: installed but not running",
                               f"`gatewayd start`, and see {cfg.state_dir / 'logs'}"))
        else:
            out.append(Finding(OK, "gatewayd service", f"{ours.describe()}: stopped on purpose", "`gatewayd start`"))
    relevant = [g for g in services.gateways if g.name == mod.GATEWAY_SERVICE_NAME or g.port == port]
    if not relevant:
        out.append(Finding(OK, "gateway service", f"none installed for port {port} ({services.manager})"))
    for gw in relevant:
        off = (f"launchctl bootout gui/{os.getuid()}/{gw.name} && launchctl disable gui/{os.getuid()}/{gw.name}"
               if services.platform == LAUNCHD else f"systemctl --user disable --now {gw.name}")
        if gw.running:
            if services.installed:
                out.append(Finding(FAIL, "gateway service", f"{gw.describe()}: a second manager of the gateway, "
                                   "beside gatewayd's service", f"`gatewayd install` again, or `{off}`"))
            else:
                out.append(Finding(WARN, "gateway service", f"{gw.describe()} manages the gateway today",
                                   "`gatewayd install` switches it off; `gatewayd uninstall` restores it"))
        elif gw.enabled:
            level = WARN if services.installed else OK
            out.append(Finding(level, "gateway service", f"{gw.describe()}: starts again at the next login",
                               f"`{off}`" if services.installed else "`gatewayd install` disables it"))
        else:
            out.append(Finding(OK, "gateway service", f"{gw.describe()}: off"
                               + (" (`gatewayd uninstall` restores it)" if services.installed else "")))
        extra = gw.foreign_environment(dotenv)
        if extra:
            out.append(Finding(WARN, "gateway service env", f"{gw.name} gives the gateway {extra}; gatewayd's "
                               "service does not", f"put those variables in {dotenv}, which the gateway reads itself"))
    return out


# -- the store -----------------------------------------------------------------------------------------


def check_store(state_dir: Path) -> Finding:
    path = state_dir / "store.sqlite"
    if not path.exists():
        return Finding(OK, "store", f"none yet at {path} (created at the first start)")
    try:
        with contextlib.closing(open_readonly(path)) as conn:
            check, version = integrity(conn)
    except sqlite3.DatabaseError as exc:
        text = str(exc).lower()
        if any(m in text for m in CORRUPT_MARKERS):
            return Finding(FAIL, "store", f"{path} is corrupt ({exc})",
                           "gatewayd moves it aside and starts a fresh one at its next start; copy it first to keep it")
        if "locked" in text or "busy" in text:
            return Finding(WARN, "store", f"{path} is locked ({exc})", "try again; gatewayd keeps it and retries")
        return Finding(FAIL, "store", f"{path} cannot be read ({exc})",
                       "check the disk and the file's permissions; gatewayd keeps it and retries")
    if check != ["ok"]:
        return Finding(FAIL, "store", f"{path} is corrupt (quick_check: {'; '.join(check[:3])})",
                       "gatewayd moves it aside and starts a fresh one at its next start; copy it first to keep it")
    if version > SCHEMA_VERSION:
        return Finding(FAIL, "store", f"{path} has schema {version}, written by a newer gatewayd (this one knows "
                       f"{SCHEMA_VERSION}); it refuses to touch it", "upgrade gatewayd")
    if version < SCHEMA_VERSION:
        return Finding(OK, "store", f"{path}: quick_check ok, schema {version} (migrated to {SCHEMA_VERSION} "
                       "at the next start)")
    return Finding(OK, "store", f"{path}: quick_check ok, schema {version}")


# -- file modes and owners -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Private:
    """One path whose mode and owner doctor reports. `private`: nobody but the owner may read or
    enter it (0700 / 0600); otherwise only writing by others is refused (the config file and its
    folder, which gatewayd itself refuses when group- or world-writable)."""

    what: str
    path: Path
    private: bool
    directory: bool
    owners: str = "you"  # "you" | "you or root"
    optional: bool = True  # absent: not reported (it appears when gatewayd needs it)
    sticky_ok: bool = False  # a folder writable by others but sticky (/tmp) is acceptable


def _owner_name(uid: int) -> str:
    if uid == os.geteuid():
        return "you"
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def _mode_finding(item: _Private) -> Finding | None:
    try:
        st = item.path.lstat() if item.what == "control socket folder" else item.path.stat()
    except FileNotFoundError:
        if item.optional:
            return None
        return Finding(OK, item.what, f"{item.path} not created yet (gatewayd creates it "
                       f"{'0700' if item.directory else '0600'})")
    except OSError as exc:
        return Finding(WARN, item.what, f"{item.path} cannot be checked: {exc.strerror or exc}")
    mode = stat.S_IMODE(st.st_mode)
    found = f"{item.path} {mode:04o} owner {_owner_name(st.st_uid)}"
    want_mode = ("0700" if item.directory else "0600") if item.private else "not group- or world-writable"
    expected = f"expected {want_mode}, owner {item.owners}"
    problems: list[str] = []
    if stat.S_ISLNK(st.st_mode):
        problems.append("a symlink")
    elif item.directory and not stat.S_ISDIR(st.st_mode):
        problems.append("not a directory")
    elif not item.directory and not stat.S_ISREG(st.st_mode):
        problems.append("not a regular file")
    allowed_uids = {os.geteuid(), 0} if item.owners == "you or root" else {os.geteuid()}
    if st.st_uid not in allowed_uids:
        problems.append("another owner")
    if item.private:
        if mode & 0o077:
            problems.append("open to others")
    elif mode & 0o022 and not (item.sticky_ok and mode & stat.S_ISVTX):
        problems.append("writable by others")
    if not problems:
        return Finding(OK, item.what, found)
    fix = f"chmod {'700' if item.directory else '600'} '{item.path}'" if item.private \
        else f"chmod go-w '{item.path}'"
    if "another owner" in problems:
        fix = f"chown it to you, or remove it; then {fix}"
    return Finding(WARN, item.what, f"{found}: {', '.join(problems)}; {expected}", fix)


def check_modes(cfg: config.Config, config_file: Path | None = None) -> list[Finding]:
    """The modes and owners of what holds secrets or decides what gatewayd runs, one line each: the
    config file and its folder (`config_file`, the one gatewayd would read, is reported even when it
    was refused), the state dir (0700), the store and its -wal/-shm (0600), gatewayd's token file
    (0600), the logs dir (0700), its log files (0600) and the control socket's folder (0700)."""
    from supervisor.control.paths import client_socket_path

    state = cfg.state_dir
    items: list[_Private] = []
    config_file = config_file or cfg.config_file  # cfg's, after a refused file, is the defaults' stand-in
    if config_file is not None and os.path.lexists(config_file):
        items += [_Private("config file", config_file, False, False, "you or root", optional=False),
                  _Private("config folder", config_file.parent, False, True, "you or root", optional=False,
                           sticky_ok=True)]
    items += [_Private("state dir", state, True, True, optional=False)]
    items += [_Private("store file", Path(f"{state / 'store.sqlite'}{suffix}"), True, False)
              for suffix in ("", "-wal", "-shm")]
    items += [_Private("token file", state / launch.TOKEN_FILE, True, False),
              _Private("logs dir", state / "logs", True, True, optional=False),
              *(_Private("log file", state / "logs" / name, True, False)
                for name in ("gatewayd.log", "gateway.log", "daemon.out")),
              _Private("control socket folder", client_socket_path(state).parent, True, True, optional=False)]
    return [f for f in map(_mode_finding, items) if f is not None]


# -- all of it -----------------------------------------------------------------------------------------


def diagnose(config_file: Path | None = None, state_dir: str | None = None,
             environ: Mapping[str, str] | None = None, home: Path | None = None) -> list[Finding]:
    environ = dict(os.environ if environ is None else environ)
    home = home or Path.home()
    out: list[Finding] = []
    cfg = check_config(config_file, state_dir, environ, out)
    if cfg is None:
        return out  # the fail line says why; every other check needs a config

    def guard(what: str, check: Callable[[], list[Finding]]) -> None:
        # A doctor that crashes helps nobody: an unexpected error is one more finding.
        try:
            out.extend(check())
        except Exception as exc:
            out.append(Finding(FAIL, what, f"the check itself failed: {type(exc).__name__}: {exc}",
                               "report this as a bug"))

    guard("supervisor package", lambda: [check_supervisor_package()])
    found, openclaw_found = check_openclaw(cfg, environ)
    out.append(found)
    view = gateway_view(cfg, environ, openclaw_found)
    services = inspect_services(environ, home)
    guard("token", lambda: check_token(cfg, view, services))
    guard("port", lambda: check_port(cfg, view.port, services))
    guard("service", lambda: check_services(cfg, view.port, services, environ, home, view.gateway_state_dir / ".env"))
    guard("store", lambda: [check_store(cfg.state_dir)])
    guard("permissions", lambda: check_modes(cfg, config_path(config_file, environ)))
    return out


def as_json(findings: Sequence[Finding]) -> dict[str, object]:
    return {"ok": not any(f.level == FAIL for f in findings), "findings": [asdict(f) for f in findings]}
