"""The launch contract: which argv, environment, port and credentials the gateway gets.

Pure resolution from settings plus a few file reads (the openclaw package.json, the gateway's
JSON5 config, its `.env`, gatewayd's token file). Nothing here starts a process except
`read_version`'s `--version` fallback for an entry with no package.json.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import json5

from supervisor.config import GatewaySettings
from supervisor.errors import LaunchError
from supervisor.gateway.capabilities import Capabilities, for_version, parse_version

DEFAULT_PORT = 18789
TOKEN_FILE = "gateway-token"

# Variables that make the gateway believe launchd or systemd owns it (it would then exit on every
# restart and wait for that manager), plus systemd's socket-activation and notify hand-overs.
SCRUBBED_EXACT = frozenset({
    "INVOCATION_ID", "JOURNAL_STREAM", "SYSTEMD_EXEC_PID", "XPC_SERVICE_NAME", "OPENCLAW_LAUNCHD_LABEL",
    "OPENCLAW_SYSTEMD_UNIT", "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "MANAGERPID",
    "OPENCLAW_SUPERVISOR_MODE", "OPENCLAW_NO_RESPAWN",
    # 2026.9.x's entry re-spawns itself when NODE_COMPILE_CACHE is set (measured): a wrapper
    # process in front of the gateway, whose death would orphan the real gateway.
    "NODE_COMPILE_CACHE", "OPENCLAW_PACKAGED_COMPILE_CACHE_RESPAWNED",
})
SCRUBBED_PREFIXES = ("LAUNCH_JOB_", "OPENCLAW_SERVICE_")
NO_WARNING_FLAG = "--disable-warning=ExperimentalWarning"


class Secret(str):
    """A string that never shows itself in a repr (and so never in a structured log by accident)."""

    def __repr__(self) -> str:
        return "Secret('***')"


@dataclass(frozen=True)
class GatewayAuth:
    mode: str  # "token" | "password" | "none"
    secret: Secret | None
    source: str  # where it came from, for `doctor`; never the value
    inject: bool  # pass it to the child as OPENCLAW_GATEWAY_TOKEN


@dataclass(frozen=True)
class GatewayFileConfig:
    """Non-secret settings read from the gateway's own config, as the gateway would read them."""

    path: Path
    found: bool
    port: int | None = None
    bind: str | None = None
    tls: bool = False
    auth_mode: str | None = None
    has_auth: bool = False
    token: str | None = None
    password: str | None = None
    problem: str | None = None
    cron_store: str | None = None  # `cron.store`: where 2026.2.x keeps its jobs file
    session_store: str | None = None  # `session.store`: where 2026.2.x keeps each agent's sessions
    hooks_token: str | None = None  # `hooks.token`: the webhook endpoint's secret (redacted, never used)
    # A heartbeat configured to run outside its agent's main session (`heartbeat.isolatedSession`, or
    # a `heartbeat.session`): gatewayd hears no such run, which may show the model queued texts.
    heartbeats_elsewhere: bool = False


@dataclass(frozen=True)
class LaunchSpec:
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(repr=False)
    port: int
    host: str
    tls: bool
    auth: GatewayAuth
    capabilities: Capabilities
    config_path: Path
    state_dir: Path
    cron_store: Path | None = None  # 2026.2.x's jobs file (`cron.store`, else $STATE/cron/jobs.json)
    session_store: str | None = None  # `session.store` as configured (`{agentId}` in it), else the default
    # Every other secret configured for the gateway (the hooks token, a token or password beside the
    # one in use): never sent anywhere, only redacted from the logs.
    other_secrets: tuple[Secret, ...] = field(default=(), repr=False)
    heartbeats_elsewhere: bool = False  # `GatewayFileConfig.heartbeats_elsewhere`

    @property
    def http_base(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self._host_literal}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://{self._host_literal}:{self.port}/"

    @property
    def _host_literal(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def secrets(self) -> tuple[str, ...]:
        """Every configured secret (the auth secret first), for redaction."""
        return tuple(dict.fromkeys(s for s in (self.auth.secret, *self.other_secrets) if s))


def resolve_entry(settings: GatewaySettings, environ: Mapping[str, str]) -> tuple[list[str], Path | None]:
    """argv prefix that runs openclaw, and the openclaw.mjs behind it when there is one."""
    if settings.command:
        return list(settings.command), None
    name = settings.openclaw
    found = name if os.sep in name else shutil.which(name, path=environ.get("PATH"))
    if not found or not Path(found).exists():
        raise LaunchError(f"openclaw not found: {name!r} (set gateway.openclaw, or run scripts/install-openclaw)")
    entry = Path(found).resolve()
    if entry.suffix not in (".mjs", ".js", ".cjs"):
        return [str(entry)], None
    node = settings.node or _node_beside(entry) or shutil.which("node", path=environ.get("PATH"))
    if not node:
        raise LaunchError(f"no node binary for {entry} (set gateway.node)")
    return [str(Path(node).absolute()), str(entry)], entry


def _node_beside(entry: Path) -> str | None:
    # scripts/install-openclaw puts the pinned Node in the same npm prefix as openclaw.
    for parent in entry.parents:
        if parent.name == "node_modules":
            candidate = parent / ".bin" / "node"
            if candidate.exists():
                return str(candidate)
            return None
    return None


def read_version(settings: GatewaySettings, prefix: list[str], entry: Path | None,
                 environ: Mapping[str, str], hidden: Collection[str] = ()) -> str:
    """The gateway's version: configured, from its package.json, or from `openclaw --version`,
    run without gatewayd's own secrets (`hidden`) in its environment."""
    if settings.version:
        return settings.version
    if entry is not None:
        pkg = entry.parent / "package.json"
        try:
            data = json.loads(pkg.read_text())  # npm's package.json is JSON (143 KB in 2026.9.6)
            if isinstance(data, dict) and isinstance(data.get("version"), str):
                return str(data["version"])
        except (OSError, ValueError):
            pass
    try:
        env = {k: v for k, v in environ.items() if k not in hidden}
        out = subprocess.run([*prefix, "--version"], capture_output=True, text=True, timeout=60,
                             env=env, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LaunchError(f"cannot run {prefix[-1]} --version: {exc}") from exc
    if parse_version(out.stdout) is None:
        raise LaunchError(f"{prefix[-1]} --version printed no version (set gateway.version)")
    m = re.search(r"\d{4}\.\d{1,2}\.\d{1,3}", out.stdout)
    assert m is not None
    return m.group(0)


def gateway_paths(settings: GatewaySettings, environ: Mapping[str, str]) -> tuple[Path, Path]:
    """(state dir, config path) as the gateway resolves them from its environment."""
    home = Path(environ.get("OPENCLAW_HOME") or environ.get("HOME") or Path.home()).expanduser()
    state = settings.state_dir or environ.get("OPENCLAW_STATE_DIR") or str(home / ".openclaw")
    state_dir = Path(state).expanduser()
    config = settings.config_path or environ.get("OPENCLAW_CONFIG_PATH") or str(state_dir / "openclaw.json")
    return state_dir, Path(config).expanduser()


def _substitute(value: Any, environ: Mapping[str, str]) -> str | None:
    if isinstance(value, dict) and value.get("source") == "env":
        ref = value.get("id") or value.get("name")
        return environ.get(ref) if isinstance(ref, str) else None
    if not isinstance(value, str):
        return None
    missing = False

    def repl(m: re.Match[str]) -> str:
        nonlocal missing
        if m.group(1) not in environ:
            missing = True
        return environ.get(m.group(1), "")

    out = re.sub(r"\$\{([A-Z0-9_]+)\}", repl, value)
    return None if missing or not out else out


_JSON5_ERROR = re.compile(r"<string>:(\d+) Unexpected (.*) at column (\d+)", re.S)
_SURROGATE = re.compile("[\ud800-\udfff]")


def parse_json5(text: str) -> Any:
    """The value of a JSON5 document (the gateway's config), read by the `json5` package.

    Two fixes over the package: an escaped UTF-16 surrogate pair (`"\\ud83e\\udd9e"`) becomes one
    character, as in the gateway's own reader (the package keeps two lone surrogates); and every
    failure is a ValueError with a one-line message, also a document nested too deeply for the
    package's recursive parser (about 50 levels; a real config has about 10).
    """
    try:
        value = json5.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply to read") from None
    except ValueError as exc:
        msg = str(exc)
        if m := _JSON5_ERROR.fullmatch(msg):
            msg = f"line {m.group(1)} column {m.group(3)}: unexpected {m.group(2)}"
        raise ValueError("".join(c if c.isprintable() else repr(c)[1:-1] for c in msg)) from None
    return _join_surrogates(value) if "\\u" in text else value


def _join_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass") \
            if _SURROGATE.search(value) else value
    if isinstance(value, list):
        return [_join_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_join_surrogates(k): _join_surrogates(v) for k, v in value.items()}
    return value


def read_gateway_config(path: Path, environ: Mapping[str, str],
                        dotenv: Mapping[str, str] | None = None) -> GatewayFileConfig:
    """`dotenv`: the gateway's .env, which its own environment includes: it also resolves a `${VAR}`
    in `hooks.token` (a secret to redact; over-resolving one is harmless)."""
    try:
        doc = parse_json5(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return GatewayFileConfig(path=path, found=False)
    except (OSError, ValueError) as exc:
        return GatewayFileConfig(path=path, found=True, problem=f"{path}: cannot read: {exc}")
    cron_store, session_store = _store_of(doc, "cron"), _store_of(doc, "session")
    hooks = doc.get("hooks") if isinstance(doc, dict) else None
    hooks_token = _substitute(hooks.get("token"), {**(dotenv or {}), **environ}) \
        if isinstance(hooks, dict) else None
    elsewhere = heartbeats_elsewhere(doc)
    gw = doc.get("gateway") if isinstance(doc, dict) else None
    if not isinstance(gw, dict):
        return GatewayFileConfig(path=path, found=True, cron_store=cron_store, session_store=session_store,
                                 hooks_token=hooks_token, heartbeats_elsewhere=elsewhere)
    auth = gw.get("auth")
    auth = auth if isinstance(auth, dict) else None
    tls = gw.get("tls")
    port = gw.get("port")
    return GatewayFileConfig(
        path=path,
        found=True,
        port=port if isinstance(port, int) and not isinstance(port, bool) else None,
        bind=gw.get("bind") if isinstance(gw.get("bind"), str) else None,
        tls=bool(isinstance(tls, dict) and tls.get("enabled")),
        auth_mode=auth.get("mode") if auth and isinstance(auth.get("mode"), str) else None,
        has_auth=auth is not None,
        token=_substitute(auth.get("token"), environ) if auth else None,
        password=_substitute(auth.get("password"), environ) if auth else None,
        cron_store=cron_store,
        session_store=session_store,
        hooks_token=hooks_token,
        heartbeats_elsewhere=elsewhere,
    )


def _store_of(doc: object, section: str) -> str | None:
    """`<section>.store`, where the config names a file of its own (`cron`, `session`)."""
    block = doc.get(section) if isinstance(doc, dict) else None
    store = block.get("store") if isinstance(block, dict) else None
    return store if isinstance(store, str) and store.strip() else None


def heartbeats_elsewhere(doc: object) -> bool:
    """Does any agent's heartbeat run outside its main session: `isolatedSession: true`, or a
    `session` other than "main" (`agents.defaults`, 2026.9.x's `agents.entries`, 2026.2.x's
    `agents.list`)? A `$include` anywhere counts as yes: gatewayd does not read the included files,
    so it cannot tell, and a yes only sets texts aside."""
    if _includes(doc):
        return True
    agents = doc.get("agents") if isinstance(doc, dict) else None
    if not isinstance(agents, dict):
        return False
    entries = agents.get("entries")
    listed = agents.get("list")
    blocks = [agents.get("defaults"), *(entries.values() if isinstance(entries, dict) else ()),
              *(listed if isinstance(listed, list) else ())]
    for block in blocks:
        hb = block.get("heartbeat") if isinstance(block, dict) else None
        session = hb.get("session") if isinstance(hb, dict) else None
        if isinstance(hb, dict) and (hb.get("isolatedSession") is True
                                     or (isinstance(session, str) and session.strip() not in ("", "main"))):
            return True
    return False


def _includes(node: object) -> bool:
    if isinstance(node, dict):
        return "$include" in node or any(_includes(v) for v in node.values())
    return isinstance(node, list) and any(_includes(v) for v in node)


def read_dotenv(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return values
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.removeprefix("export ").partition("=")
        value = raw.strip()
        if value[:1] in ("'", '"') and (end := value.find(value[0], 1)) > 0:
            value = value[1:end]  # quoted: kept as is (a `#` too); whatever follows the quote is dropped
        else:
            # unquoted: ` # ...` (a `#` after whitespace) starts a comment; `a#b` is a value
            value = re.split(r"\s#", raw, maxsplit=1)[0].strip().strip("'\"")
        values[key.strip()] = value
    return values


def resolve_auth(file_cfg: GatewayFileConfig, environ: Mapping[str, str], dotenv: Mapping[str, str],
                 token_file: Path) -> GatewayAuth:
    """Secrets, in order: gatewayd's environment, the state dir's .env, the config (literal or env ref).
    A token is generated only when the config has no `gateway.auth` at all."""
    mode = file_cfg.auth_mode or ("password" if file_cfg.password and not file_cfg.token else "token")
    if mode == "none":
        return GatewayAuth("none", None, "gateway.auth.mode none", False)
    if mode == "password":
        for source, value in (("env OPENCLAW_GATEWAY_PASSWORD", environ.get("OPENCLAW_GATEWAY_PASSWORD")),
                              (".env OPENCLAW_GATEWAY_PASSWORD", dotenv.get("OPENCLAW_GATEWAY_PASSWORD")),
                              (f"{file_cfg.path} gateway.auth.password", file_cfg.password)):
            if value:
                return GatewayAuth("password", Secret(value), source, False)
        raise LaunchError(f"{file_cfg.path}: gateway.auth.mode is password but no password is set or resolvable")
    for source, value in (("env OPENCLAW_GATEWAY_TOKEN", environ.get("OPENCLAW_GATEWAY_TOKEN")),
                          (".env OPENCLAW_GATEWAY_TOKEN", dotenv.get("OPENCLAW_GATEWAY_TOKEN")),
                          (f"{file_cfg.path} gateway.auth.token", file_cfg.token)):
        if value:
            return GatewayAuth("token", Secret(value), source, False)
    # No token anywhere (no auth section, or a token mode whose secret we cannot resolve): inject
    # our own; the gateway honours OPENCLAW_GATEWAY_TOKEN and would otherwise invent one.
    return GatewayAuth("token", Secret(load_or_create_token(token_file)), f"generated ({token_file})", True)


def load_or_create_token(path: Path) -> str:
    try:
        existing = path.read_text(encoding="utf-8").strip()
        if existing:
            return existing
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(24)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return token


def child_environment(base: Mapping[str, str], extra: Mapping[str, str], caps: Capabilities,
                      auth: GatewayAuth, hidden: Collection[str] = ()) -> dict[str, str]:
    """`hidden`: gatewayd's own secrets' variables (the notifiers' tokens): never the gateway's,
    nor of any tool or agent it runs."""
    env = {k: v for k, v in base.items()
           if k not in SCRUBBED_EXACT and not k.startswith(SCRUBBED_PREFIXES) and k not in hidden}
    env.update(extra)
    # Node re-executes openclaw to add this flag unless it is already there: one process, not a
    # wrapper whose exit code hides the gateway's.
    node_options = env.get("NODE_OPTIONS", "")
    if NO_WARNING_FLAG not in node_options.split():
        env["NODE_OPTIONS"] = f"{node_options} {NO_WARNING_FLAG}".strip()
    if caps.external_supervisor:
        env["OPENCLAW_SUPERVISOR_MODE"] = "external"
        env["OPENCLAW_SERVICE_REPAIR_POLICY"] = "external"
    else:
        # Legacy: a supervisor marker makes its own restarts exit (code 0) instead of spawning a
        # detached replacement that no supervisor owns (measured, legacy-2026.2.md).
        env["OPENCLAW_SERVICE_MARKER"] = "gatewayd"
    if auth.inject and auth.secret:
        env["OPENCLAW_GATEWAY_TOKEN"] = str(auth.secret)
    return env


def probe_host(bind: str | None) -> str:
    # Every bind mode but tailnet listens on loopback too (lan/auto bind 0.0.0.0), and a probe
    # from this machine needs nothing else; a tailnet-only gateway is not supported yet.
    del bind
    return "127.0.0.1"


def build(settings: GatewaySettings, state_dir: Path, environ: Mapping[str, str] | None = None,
          hidden: Collection[str] = ()) -> LaunchSpec:
    """Everything needed to spawn and talk to the gateway. `state_dir` is gatewayd's own."""
    base = dict(os.environ if environ is None else environ)
    merged = {**base, **settings.env}
    prefix, entry = resolve_entry(settings, merged)
    version = read_version(settings, prefix, entry, merged, hidden)
    caps = for_version(version)
    gw_state, gw_config = gateway_paths(settings, merged)
    dotenv = read_dotenv(gw_state / ".env")
    file_cfg = read_gateway_config(gw_config, merged, dotenv)
    if file_cfg.problem:
        raise LaunchError(file_cfg.problem)
    auth = resolve_auth(file_cfg, merged, dotenv, state_dir / TOKEN_FILE)
    port = settings.port or _int(merged.get("OPENCLAW_GATEWAY_PORT")) or file_cfg.port or DEFAULT_PORT
    argv = (*prefix, "gateway", "run", "--port", str(port), *settings.args)
    env = child_environment(base, settings.env, caps, auth, hidden)
    # The paths gatewayd reads (its jobs file, session locks, config) are the ones the gateway uses:
    # a configured one is handed to it, over whatever the environment says. With the state dir goes
    # the config gatewayd read (2.26 falls back to ~/.openclaw's when the state dir holds none).
    if settings.state_dir:
        env["OPENCLAW_STATE_DIR"] = str(gw_state)
    if settings.config_path or settings.state_dir:
        env["OPENCLAW_CONFIG_PATH"] = str(gw_config)
    cron_store = Path(file_cfg.cron_store).expanduser() if file_cfg.cron_store else gw_state / "cron" / "jobs.json"
    return LaunchSpec(argv=argv, env=env, port=port, host=probe_host(file_cfg.bind), tls=file_cfg.tls,
                      auth=auth, capabilities=caps, config_path=gw_config, state_dir=gw_state,
                      cron_store=cron_store if cron_store.is_absolute() else gw_state / cron_store,
                      session_store=file_cfg.session_store,
                      other_secrets=configured_secrets(file_cfg, merged, dotenv, argv),
                      heartbeats_elsewhere=file_cfg.heartbeats_elsewhere)


SECRET_VARIABLES = ("OPENCLAW_GATEWAY_TOKEN", "OPENCLAW_GATEWAY_PASSWORD")


def configured_secrets(file_cfg: GatewayFileConfig, environ: Mapping[str, str],
                       dotenv: Mapping[str, str], argv: Sequence[str] = ()) -> tuple[Secret, ...]:
    """Every secret configured for the gateway, wherever it comes from (the environment, its .env,
    its config file), including those `resolve_auth` did not pick and the hooks token: the gateway
    may print any of them, and the logs must not."""
    found = [file_cfg.token, file_cfg.password, file_cfg.hooks_token,
             *(env.get(var) for env in (environ, dotenv) for var in SECRET_VARIABLES),
             *_argv_secrets(argv)]
    # Provider keys and the like (OPENAI_API_KEY, SLACK_BOT_TOKEN, ...) by their names; 4 characters
    # at least, since a name is only a guess and "1" or "on" would garble every log line.
    found += [v for env in (environ, dotenv) for name, v in env.items()
              if _SECRET_NAME_PARTS & set(name.upper().split("_")) and len(v) >= 4]
    return tuple(Secret(v) for v in dict.fromkeys(found) if v)


_SECRET_NAME_PARTS = frozenset({"KEY", "APIKEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "CREDENTIALS"})
_SECRET_FLAGS = ("--token", "--password", "--hooks-token", "--auth-token", "--api-key")


def _argv_secrets(argv: Sequence[str]) -> list[str]:
    """Values given to the gateway on its command line (`gateway.args = ["--token", X]`): the
    argv is logged at each spawn."""
    out = []
    for i, arg in enumerate(argv):
        for flag in _SECRET_FLAGS:
            if arg == flag and i + 1 < len(argv):
                out.append(argv[i + 1])
            elif arg.startswith(flag + "="):
                out.append(arg[len(flag) + 1:])
    return out


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None
