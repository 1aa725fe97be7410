#!/usr/bin/env python3
"""`make run`: gatewayd supervising a sandboxed OpenClaw gateway with a local fake model.

Never the user's real gateway: its own state dir, config and a free non-default port under
./run/. The user's `openclaw` on PATH is used when present (with that sandboxed state);
otherwise the pinned one from scripts/install-openclaw. A demo cron job (every minute, an
isolated agent turn) shows work flowing: each request the fake model gets is printed here.
Ctrl-C stops gatewayd, which drains and stops the gateway, then this script stops the model.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from gatewayd_dev import fake_model, sandbox
from gatewayd_dev.harness import free_port_block, toml_value
from supervisor.config import GatewaySettings
from supervisor.gateway.launch import GatewayAuth, Secret, read_version, resolve_entry
from supervisor.gateway.rpc import RpcClient

REPO = Path(__file__).resolve().parent.parent


def say(msg: str) -> None:
    """A progress line on stderr. Never raises: under `make run 2>&1 | tee run.log`, Ctrl-C kills
    tee too, and a print into its dead pipe must not cost the stop that follows (issue 17)."""
    with contextlib.suppress(OSError, ValueError):  # BrokenPipeError, a closed stderr
        print(f"[make run] {msg}", file=sys.stderr, flush=True)


def user_openclaw() -> tuple[Path, Path | None, str] | None:
    if not shutil.which("openclaw"):
        return None
    settings = GatewaySettings("openclaw", "", (), "", 0, (), "", "", {})
    prefix, entry = resolve_entry(settings, os.environ)
    if entry is None:
        return None
    version = read_version(settings, prefix, entry, os.environ)
    return entry, Path(prefix[0]) if len(prefix) == 2 else None, version


def tail_model_log(path: Path, stop: threading.Event) -> None:
    seen = 0
    while not stop.wait(0.5):
        entries = fake_model.read_log(path)
        for e in entries[seen:]:
            text = " ".join(str(e.get("text", "")).split())
            say(f"model request #{e.get('n')}: ...{text[-90:]}")
        seen = len(entries)


async def add_demo_job(sb: sandbox.Sandbox) -> None:
    auth = GatewayAuth("token", Secret(sb.token), "sandbox", False)
    rpc = RpcClient(f"ws://127.0.0.1:{sb.gw_port}/", auth, 3 if sb.legacy else 4)
    await rpc.connect()
    try:
        jobs = await rpc.call("cron.list", {"includeDisabled": True})
        if any(j.get("name") == "gatewayd-demo" for j in (jobs or {}).get("jobs", [])):
            return
        await rpc.call("cron.add", {"name": "gatewayd-demo", "schedule": {"kind": "every", "everyMs": 60000},
                                    "sessionTarget": "isolated", "delivery": {"mode": "none"},
                                    "payload": {"kind": "agentTurn", "timeoutSeconds": 120,
                                                "message": "gatewayd demo: reply with the single word PONG."}})
        say("added cron job 'gatewayd-demo' (every minute, isolated agent turn)")
    finally:
        await rpc.close()


def wait_ready(sb: sandbox.Sandbox, proc: subprocess.Popen[bytes], timeout: float = 300) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if sb.legacy:
                asyncio.run(asyncio.wait_for(_ping(sb), 5))
                return True
            r = httpx.get(f"http://127.0.0.1:{sb.gw_port}/startupz", timeout=2)
            if r.status_code == 200 and r.json().get("status") == "started":
                return True
        except Exception:
            pass
        time.sleep(1)
    return False


async def _ping(sb: sandbox.Sandbox) -> None:
    rpc = RpcClient(f"ws://127.0.0.1:{sb.gw_port}/", GatewayAuth("token", Secret(sb.token), "", False), 3)
    await rpc.connect()
    await rpc.close()


def run_gatewayd(argv: list[str], on_start: Callable[[subprocess.Popen[bytes]], None] | None = None) -> int:
    """Run gatewayd (`argv`) until it exits; Ctrl-C, SIGTERM or SIGHUP stop it: return its exit code.

    gatewayd runs in its own session: Ctrl-C reaches only this script, which forwards exactly one
    stop (a second signal would tell gatewayd to skip the gateway's drain). SIGTERM and SIGHUP
    (`kill`, a closed terminal) stop it the same way: else gatewayd and its gateway would outlive
    the script. The signal goes out before anything is printed, and no print can fail the stop.
    """
    def as_ctrl_c(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # SIGINT too: a shell that starts us in the background (`make run &` in a script) hands us SIGINT
    # ignored, and Python then installs no Ctrl-C handler of its own.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, as_ctrl_c)
    gatewayd = subprocess.Popen(argv, cwd=REPO, start_new_session=True)
    try:
        if on_start is not None:
            on_start(gatewayd)
        return gatewayd.wait()
    except KeyboardInterrupt:
        gatewayd.send_signal(signal.SIGTERM)  # first: the pipe our output goes to may be dead already
        say("stopping: gatewayd drains and stops the gateway")
        while True:
            try:
                return gatewayd.wait()
            except KeyboardInterrupt:
                gatewayd.send_signal(signal.SIGTERM)
                say("second Ctrl-C: forcing the gateway down")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--version", default="2026.9.6", help="pinned openclaw version when none is on PATH")
    p.add_argument("--root", type=Path, default=REPO / "run")
    p.add_argument("--model-delay", type=float, default=2.0)
    p.add_argument("--no-demo", action="store_true")
    a = p.parse_args()
    root = a.root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    found = user_openclaw()
    if found:
        entry, node, version = found
        say(f"using your openclaw {version} at {entry} (sandboxed state, never your real gateway)")
    else:
        entry, node, version = None, None, a.version
        say(f"no openclaw on PATH: using the pinned openclaw@{version} (scripts/install-openclaw)")
    model_log = root / "model.jsonl"
    server, thread, model_port = fake_model.start_fake_model(delay=a.model_delay, log_path=model_log)
    port = free_port_block()
    sb = sandbox.prepare_sandbox(root / "gateway", version, port, model_port, entry=entry, node=node)
    cfg = root / "gatewayd.toml"
    sections = {
        "": {"state_dir": str(root / "gatewayd")},
        "gateway": {"openclaw": str(sb.entry), "node": str(sb.node), "port": port, "args": ["--bind", "loopback"],
                    "env": dict(sb.env), "config_path": str(sb.config_path), "state_dir": str(sb.state_dir)},
    }
    lines = [f"{k} = {toml_value(v)}" for k, v in sections[""].items()]
    lines += ["[gateway]"] + [f"{k} = {toml_value(v)}" for k, v in sections["gateway"].items()]
    cfg.write_text("# written by `make run`\n" + "\n".join(lines) + "\n")
    cfg.chmod(0o600)
    say(f"gateway port {port}, fake model port {model_port}, gatewayd config {cfg}")
    say(f"try: .venv/bin/gatewayd status -c {cfg}    (Ctrl-C stops everything)")
    stop = threading.Event()
    threading.Thread(target=tail_model_log, args=(model_log, stop), daemon=True).start()

    def demo(proc: subprocess.Popen[bytes]) -> None:
        if wait_ready(sb, proc) and not a.no_demo:
            asyncio.run(add_demo_job(sb))

    try:
        return run_gatewayd([sys.executable, "-m", "supervisor", "run", "-c", str(cfg)], demo)
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


if __name__ == "__main__":
    sys.exit(main())
