#!/usr/bin/env python3
"""Build a sandboxed OpenClaw gateway root for tests (never touches ~/.openclaw).

Layout of ROOT:
  ROOT/openclaw.json      config (gateway token, hook token, fake provider, heartbeat, logging)
  ROOT/home               OPENCLAW_HOME
  ROOT/state              OPENCLAW_STATE_DIR
  ROOT/tmp                TMPDIR
  ROOT/logs/openclaw.log  logging.file (JSON lines)

Public API:
  cache_prefix(version) -> Path        <repo>/.cache/openclaw/openclaw-<version>
  find_entry(version) -> Path          .../node_modules/openclaw/openclaw.mjs (installs when missing)
  find_node(version) -> Path           the Node that version was installed with
  compile_cache_dir(version) -> Path   shared Node compile cache (one per version), linked
                                       as ROOT/tmp/node-compile-cache
  jiti_cache_dir(version) -> Path      jiti cache (2026.2.x plugins), one per version and pytest-xdist
                                       worker, linked as ROOT/tmp/jiti
  build_config(version, ...) -> dict   the openclaw.json content
  prepare_sandbox(root, version, gw_port, model_port, ...) -> Sandbox
  gateway_argv(sb) -> list[str]        [node, entry, "gateway", "run", "--port", P, "--bind", "loopback"]
  launch_env(sb, base=None) -> dict    base env (default os.environ) + sb.env + the per-version
                                       launch-contract variables (see below)

CLI:
  python -m gatewayd_dev.sandbox prepare ROOT --version V --gw-port N --model-port M [--heartbeat 0m]
         [--token T] [--hook-token H] [--agent main --agent ops ...]     -> prints the Sandbox as JSON
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("GATEWAYD_OPENCLAW_CACHE", REPO / ".cache" / "openclaw"))
COMPILE_CACHE = REPO / ".cache" / "node-compile-cache"
JITI_CACHE = REPO / ".cache" / "jiti"
INSTALL_SCRIPT = REPO / "scripts" / "install-openclaw"

DEFAULT_VERSION = "2026.9.6"


def _is_legacy(version: str) -> bool:
    """2026.2.x: protocol 3, JSON state files, no HTTP probes, smaller config schema."""
    try:
        year, month = (int(x) for x in version.split(".")[:2])
    except ValueError:
        return False
    return (year, month) < (2026, 9)


def cache_prefix(version: str) -> Path:
    return CACHE / f"openclaw-{version}"


def _node_in(prefix: Path) -> Path | None:
    candidates = [prefix / "node_modules" / ".bin" / "node"]
    candidates += sorted((prefix / "node_modules").glob("node-*/bin/node"))
    for c in candidates:
        if c.exists() and os.access(c, os.X_OK):
            return c
    return None


def find_entry(version: str) -> Path:
    """Path of openclaw.mjs for `version`; runs scripts/install-openclaw when it is missing."""
    prefix = cache_prefix(version)
    entry = prefix / "node_modules" / "openclaw" / "openclaw.mjs"
    if entry.exists() and (prefix / ".installed.json").exists() and _node_in(prefix):
        return entry
    out = subprocess.run([sys.executable, str(INSTALL_SCRIPT), version, "--cache", str(CACHE)],
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    lines = [ln for ln in out.splitlines() if ln.strip()]
    path = Path(lines[-1].strip()) if lines else entry
    if not path.exists():
        raise FileNotFoundError(f"install-openclaw {version} did not produce {path}")
    return path


def find_node(version: str) -> Path:
    node = _node_in(cache_prefix(version))
    if node is None:
        find_entry(version)
        node = _node_in(cache_prefix(version))
    if node is None:
        raise FileNotFoundError(f"no node binary under {cache_prefix(version)}")
    return node


def compile_cache_dir(version: str) -> Path:
    return COMPILE_CACHE / version


def jiti_cache_dir(version: str) -> Path:
    # jiti writes its cache files in place, so two gateways booting at once must not share one:
    # each pytest-xdist worker (which runs its tests one at a time) keeps its own, and so does
    # everything else (one process at a time: `make run`, a benchmark, a probe).
    return JITI_CACHE / version / os.environ.get("PYTEST_XDIST_WORKER", "main")


def _symlink_dir(link: Path, target: Path) -> None:
    if link.is_symlink() and Path(os.readlink(link)) != target:
        link.unlink()
    if not link.is_symlink():
        if link.exists():
            shutil.rmtree(link)
        link.symlink_to(target, target_is_directory=True)


@dataclass
class Sandbox:
    root: Path
    version: str
    entry: Path
    node: Path
    config_path: Path
    state_dir: Path
    env: dict[str, str]
    token: str
    hook_token: str
    gw_port: int
    model_port: int
    log_file: Path
    compile_cache: Path = field(default=None)  # type: ignore[assignment]
    home: Path = field(default=None)  # type: ignore[assignment]
    tmp_dir: Path = field(default=None)  # type: ignore[assignment]
    agents: list[str] = field(default_factory=lambda: ["main"])

    @property
    def legacy(self) -> bool:
        return _is_legacy(self.version)

    def to_json(self) -> dict:
        d = asdict(self)
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}


def build_config(version: str, *, gw_port: int, model_port: int, token: str, hook_token: str,
                 log_file: Path, heartbeat_every: str = "0m",
                 agents: list[str] | None = None) -> dict:
    """openclaw.json for `version` (the tested shapes from running-offline.md / legacy-2026.2.md)."""
    legacy = _is_legacy(version)
    agents = list(agents or ["main"])
    if "main" not in agents:
        agents.insert(0, "main")
    provider: dict = {
        "baseUrl": f"http://127.0.0.1:{model_port}/v1", "apiKey": "fake-local",
        "api": "openai-completions",
        "models": [{"id": "fake-model", "name": "Fake Model", "reasoning": False,
                    "input": ["text"],
                    "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0},
                    "contextWindow": 128000, "maxTokens": 4096}],
    }
    if not legacy:
        provider["timeoutSeconds"] = 300
    defaults: dict = {"model": {"primary": "fake/fake-model", "fallbacks": []},
                      "heartbeat": {"every": heartbeat_every}}
    agents_cfg: dict = {"defaults": defaults}
    if len(agents) > 1:
        if legacy:
            # 2026.2.x: agents.list roster; `default: true` marks the default agent.
            agents_cfg["list"] = [{"id": a, **({"default": True} if a == "main" else {})}
                                  for a in agents]
        else:
            # 2026.9.x: keyed agents.entries; `default` is retired, the default (owner of
            # ambient work, unscoped main-session routing) is agents.defaults.systemAgent.
            # A multi-agent roster must say agents.ownership="explicit" (validated).
            agents_cfg["ownership"] = "explicit"
            agents_cfg["entries"] = {a: {} for a in agents}
            defaults["systemAgent"] = {"agentId": "main"}
    cfg: dict = {
        "gateway": {"mode": "local", "port": gw_port, "bind": "loopback",
                    "auth": {"mode": "token", "token": token}},
        "hooks": {"enabled": True, "token": hook_token, "path": "/hooks",
                  "allowedAgentIds": agents},
        "models": {"mode": "merge", "providers": {"fake": provider}},
        "agents": agents_cfg,
        "logging": {"file": str(log_file)},
        "update": {"checkOnStart": False},
    }
    if legacy:
        cfg["browser"] = {"enabled": False}
        cfg["canvasHost"] = {"enabled": False}
    else:
        cfg["skills"] = {"workshop": {"autonomous": {"mode": "off"}}}
        cfg["plugins"] = {"entries": {"memory-core": {"config": {"dreaming": {"enabled": False}}}}}
        cfg["telemetry"] = {"enabled": False}
    return cfg


def prepare_sandbox(root: Path, version: str, gw_port: int, model_port: int, *,
                    heartbeat_every: str = "0m", token: str | None = None,
                    hook_token: str | None = None, agents: list[str] | None = None,
                    entry: Path | None = None, node: Path | None = None) -> Sandbox:
    """Create ROOT's folders and openclaw.json; return what a launcher needs.

    Idempotent: an existing root keeps its state; the config is rewritten."""
    root = Path(root).resolve()
    agents = list(agents or ["main"])
    if "main" not in agents:
        agents.insert(0, "main")
    for a in agents:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", a):
            raise ValueError(f"bad agent id {a!r}")
    # A given entry (the user's own openclaw) is used as is; otherwise the pinned install.
    entry = entry or find_entry(version)
    node = node or find_node(version)
    home, state, tmp, logs = root / "home", root / "state", root / "tmp", root / "logs"
    for d in (home, state, tmp, logs):
        d.mkdir(parents=True, exist_ok=True)
    # Shared Node compile cache without NODE_COMPILE_CACHE: on 2026.9.x a NODE_COMPILE_CACHE in
    # the env makes openclaw.mjs re-spawn itself (a wrapper process in front of the gateway,
    # whose SIGKILL orphans the gateway). Both versions default to $TMPDIR/node-compile-cache,
    # so that path is a symlink to the shared per-version folder instead.
    cc = compile_cache_dir(version)
    cc.mkdir(parents=True, exist_ok=True)
    # 2026.2.x also keeps a jiti transpile cache (~15 MB, plugins in TypeScript) in $TMPDIR/jiti:
    # with it warm a boot takes ~6 s instead of ~30 s, so it is kept per version as well.
    jc = jiti_cache_dir(version)
    jc.mkdir(parents=True, exist_ok=True)
    _symlink_dir(tmp / "node-compile-cache", cc)
    _symlink_dir(tmp / "jiti", jc)
    token = token or "gw-" + secrets.token_hex(16)
    hook_token = hook_token or "hook-" + secrets.token_hex(16)
    log_file = logs / "openclaw.log"
    config_path = root / "openclaw.json"
    cfg = build_config(version, gw_port=gw_port, model_port=model_port, token=token,
                       hook_token=hook_token, log_file=log_file,
                       heartbeat_every=heartbeat_every, agents=agents)
    tmpcfg = config_path.with_suffix(".json.tmp")
    tmpcfg.write_text(json.dumps(cfg, indent=2) + "\n")
    os.chmod(tmpcfg, 0o600)
    os.replace(tmpcfg, config_path)
    env = {
        "OPENCLAW_HOME": str(home),
        "OPENCLAW_STATE_DIR": str(state),
        "OPENCLAW_CONFIG_PATH": str(config_path),
        "OPENCLAW_DISABLE_BONJOUR": "1",
        "OPENCLAW_NO_AUTO_UPDATE": "1",
        "OPENCLAW_OFFLINE": "1",
        "OPENCLAW_SKIP_CHANNELS": "1",
        "TMPDIR": str(tmp),
    }
    return Sandbox(root=root, version=version, entry=entry, node=node, config_path=config_path,
                   state_dir=state, env=env, token=token, hook_token=hook_token,
                   gw_port=gw_port, model_port=model_port, log_file=log_file,
                   compile_cache=cc, home=home, tmp_dir=tmp, agents=agents)


def gateway_argv(sb: Sandbox) -> list[str]:
    return [str(sb.node), str(sb.entry), "gateway", "run", "--port", str(sb.gw_port),
            "--bind", "loopback"]


# Variables that make the gateway believe launchd/systemd (or another supervisor) owns it.
# NODE_COMPILE_CACHE is dropped too: on 2026.9.x it makes the entry re-spawn itself (wrapper).
_INHERITED_MARKERS = ("NODE_COMPILE_CACHE", "OPENCLAW_PACKAGED_COMPILE_CACHE_RESPAWNED",
                      "LAUNCH_JOB_LABEL", "LAUNCH_JOB_NAME", "OPENCLAW_LAUNCHD_LABEL",
                      "OPENCLAW_SYSTEMD_UNIT", "OPENCLAW_SERVICE_MARKER", "INVOCATION_ID",
                      "SYSTEMD_EXEC_PID", "JOURNAL_STREAM", "OPENCLAW_GATEWAY_TOKEN",
                      "OPENCLAW_NO_RESPAWN")


def launch_env(sb: Sandbox, base: dict[str, str] | None = None) -> dict[str, str]:
    """A full child environment for a test launch: base + sb.env + launch-contract variables."""
    env = dict(os.environ if base is None else base)
    for k in _INHERITED_MARKERS:
        env.pop(k, None)
    env.update(sb.env)
    if sb.legacy:
        env["OPENCLAW_SERVICE_MARKER"] = "gatewayd"
        flag = "--disable-warning=ExperimentalWarning"
        opts = env.get("NODE_OPTIONS", "")
        if flag not in opts.split():
            env["NODE_OPTIONS"] = (opts + " " + flag).strip()
    else:
        env["OPENCLAW_SUPERVISOR_MODE"] = "external"
        env.setdefault("OPENCLAW_SERVICE_REPAIR_POLICY", "external")
    return env


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Prepare a sandboxed OpenClaw gateway root")
    sub = p.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("prepare")
    pp.add_argument("root", type=Path)
    pp.add_argument("--version", default=DEFAULT_VERSION)
    pp.add_argument("--gw-port", type=int, required=True)
    pp.add_argument("--model-port", type=int, required=True)
    pp.add_argument("--heartbeat", default="0m")
    pp.add_argument("--token")
    pp.add_argument("--hook-token")
    pp.add_argument("--agent", action="append", dest="agents")
    a = p.parse_args(argv)
    sb = prepare_sandbox(a.root, a.version, a.gw_port, a.model_port, heartbeat_every=a.heartbeat,
                         token=a.token, hook_token=a.hook_token, agents=a.agents)
    out = sb.to_json()
    out["argv"] = gateway_argv(sb)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
