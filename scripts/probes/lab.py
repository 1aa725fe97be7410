#!/usr/bin/env python3
"""A small CLI lab around ONE sandboxed real OpenClaw gateway + the fake model (probes only).

State of a lab lives in LABDIR (default /work/main/.cache/probes/lab):
  LABDIR/lab.json     ports, version, pids (gateway process group, fake model)
  LABDIR/model.jsonl  the fake model's request log (the witness)
  LABDIR/gw/          the sandbox root (gatewayd_dev/sandbox.py layout), kept across restarts

Commands (all bind loopback only; each `call` opens its own WebSocket connection):
  lab.py up VERSION [--heartbeat 0m] [--agent kit ...] [--fresh]   start model (if needed) + gateway
  lab.py kill9          SIGKILL the gateway's process group (state is kept)
  lab.py restart        start the gateway again on the same root/ports (after kill9)
  lab.py down           SIGKILL gateway group + stop the fake model
  lab.py call METHOD [JSON_PARAMS] [--timeout S]   print the RPC answer (or error) as JSON
  lab.py reqs [--since N] [--full]   print model requests (n, then each message role + content)
  lab.py config         print the sandbox's openclaw.json
  lab.py delay SECONDS  the fake model's reply delay from now on (LABDIR/model.delay, read per request)

Only one lab runs at a time (the brief: one real gateway at a time on this 2-core machine).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from gatewayd_dev import sandbox
from gatewayd_dev.harness import free_port_block
from supervisor.gateway.launch import GatewayAuth, Secret
from supervisor.gateway.rpc import RpcClient

REPO = Path(__file__).resolve().parents[2]
LABDIR = Path(os.environ.get("LABDIR", REPO / ".cache" / "probes" / "lab"))


def _state() -> dict:
    p = LABDIR / "lab.json"
    return json.loads(p.read_text()) if p.exists() else {}


def _save(st: dict) -> None:
    LABDIR.mkdir(parents=True, exist_ok=True)
    (LABDIR / "lab.json").write_text(json.dumps(st, indent=2))


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def _start_model(st: dict) -> None:
    if _alive(st.get("model_pid")):
        return
    log = LABDIR / "model.jsonl"
    port = st.get("model_port") or free_port_block(2)
    out = open(LABDIR / "model.out", "a")  # noqa: SIM115 (held by the child for its life)
    p = subprocess.Popen([sys.executable, "-m", "gatewayd_dev.fake_model", "--port", str(port),
                          "--delay", "0.3", "--delay-file", str(LABDIR / "model.delay"),
                          "--log", str(log)], stdout=out, stderr=out,
                         start_new_session=True)
    st["model_pid"], st["model_port"] = p.pid, port
    time.sleep(0.5)


def _sb(st: dict) -> sandbox.Sandbox:
    return sandbox.prepare_sandbox(LABDIR / "gw", st["version"], st["gw_port"], st["model_port"],
                                   heartbeat_every=st["heartbeat"], token=st["token"],
                                   hook_token=st["hook_token"], agents=st["agents"])


async def _rpc(st: dict) -> RpcClient:
    legacy = sandbox._is_legacy(st["version"])
    rpc = RpcClient(f"ws://127.0.0.1:{st['gw_port']}/", GatewayAuth("token", Secret(st["token"]), "", False),
                    3 if legacy else 4, instance_id="probe-lab")
    await rpc.connect()
    return rpc


async def _wait_ready(st: dict, budget: float = 180) -> float:
    t0 = time.time()
    while time.time() - t0 < budget:
        try:
            rpc = await _rpc(st)
            try:
                await rpc.call("health", {}, timeout_s=5)
            finally:
                await rpc.close()
            return time.time() - t0
        except Exception:
            await asyncio.sleep(1)
    raise SystemExit("gateway not ready")


def _start_gateway(st: dict, extra_cfg: dict | None = None) -> None:
    sb = _sb(st)
    if st.get("cfg_patch"):
        cfg = json.loads(sb.config_path.read_text())
        _merge(cfg, st["cfg_patch"])
        sb.config_path.write_text(json.dumps(cfg, indent=2))
    env = sandbox.launch_env(sb)
    env["OPENCLAW_GATEWAY_TOKEN"] = st["token"]
    out = open(LABDIR / "gateway.out", "a")  # noqa: SIM115 (held by the child for its life)
    out.write(f"\n==== start {time.strftime('%H:%M:%S')} ====\n")
    out.flush()
    p = subprocess.Popen(sandbox.gateway_argv(sb), env=env, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                         start_new_session=True, cwd=str(sb.root))
    st["gw_pgid"] = p.pid
    _save(st)
    took = asyncio.run(_wait_ready(st))
    print(json.dumps({"ready_after_s": round(took, 1), "pgid": p.pid, "gw_port": st["gw_port"],
                      "version": st["version"]}))


def _merge(dst: dict, src: dict) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = v


def _kill_group(pgid: int | None) -> None:
    if not pgid:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    for _ in range(50):
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)


def cmd_up(a: argparse.Namespace) -> None:
    st = _state()
    if _alive(st.get("gw_pgid")):
        raise SystemExit(f"a lab gateway already runs (pgid {st['gw_pgid']}); `lab.py down` first")
    if a.fresh and (LABDIR / "gw").exists():
        subprocess.run(["rm", "-rf", str(LABDIR / "gw")], check=True)
    LABDIR.mkdir(parents=True, exist_ok=True)
    _start_model(st)
    st.update(version=a.version, heartbeat=a.heartbeat, agents=["main"] + (a.agent or []),
              gw_port=free_port_block(), token=st.get("token") or "gw-probe-token-0123456789abcdef",
              hook_token="hook-probe-token-0123456789abcdef",
              cfg_patch=json.loads(a.cfg_patch) if a.cfg_patch else None)
    _save(st)
    _start_gateway(st)


def cmd_restart(a: argparse.Namespace) -> None:
    st = _state()
    if _alive(st.get("gw_pgid")):
        raise SystemExit("gateway still alive")
    _start_gateway(st)


def cmd_kill9(a: argparse.Namespace) -> None:
    st = _state()
    _kill_group(st.get("gw_pgid"))
    print(json.dumps({"killed_pgid": st.get("gw_pgid"), "at": time.time()}))


def cmd_down(a: argparse.Namespace) -> None:
    st = _state()
    _kill_group(st.get("gw_pgid"))
    _kill_group(st.get("model_pid"))
    st.pop("gw_pgid", None)
    st.pop("model_pid", None)
    _save(st)
    print("down")


def cmd_call(a: argparse.Namespace) -> None:
    st = _state()

    async def go():
        rpc = await _rpc(st)
        try:
            params = json.loads(a.params) if a.params else {}
            try:
                res = await rpc.call(a.method, params, timeout_s=a.timeout)
                print(json.dumps(res, indent=1 if a.pretty else None, default=str))
            except Exception as exc:
                print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        finally:
            await rpc.close()

    asyncio.run(go())


def read_reqs() -> list[dict]:
    p = LABDIR / "model.jsonl"
    if not p.exists():
        return []
    out = [json.loads(ln) for ln in p.read_text().splitlines() if ln.strip()]
    for i, r in enumerate(out, 1):  # the model restarts its own count; number by position in the log
        r["model_n"], r["n"] = r.get("n"), i
    return out


def cmd_reqs(a: argparse.Namespace) -> None:
    for r in read_reqs():
        if r["n"] <= a.since:
            continue
        print(f"--- request n={r['n']} ts={time.strftime('%H:%M:%S', time.localtime(r['ts']))} "
              f"messages={len(r['messages'])}")
        msgs = r["messages"] if a.full else [m for m in r["messages"] if m.get("role") != "system"]
        for m in msgs:
            c = m.get("content")
            if isinstance(c, list):
                c = "\n".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in c)
            c = str(c)
            if not a.full and len(c) > a.width:
                c = c[:a.width] + f"...[{len(c)} chars]"
            print(f"  [{m.get('role')}] {c!r}")


def cmd_delay(a: argparse.Namespace) -> None:
    (LABDIR / "model.delay").write_text(f"{a.seconds}\n")


def cmd_config(a: argparse.Namespace) -> None:
    st = _state()
    print((LABDIR / "gw" / "openclaw.json").read_text() if st else "{}")


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("up")
    u.add_argument("version")
    u.add_argument("--heartbeat", default="0m")
    u.add_argument("--agent", action="append")
    u.add_argument("--fresh", action="store_true")
    u.add_argument("--cfg-patch", help="JSON merged into openclaw.json before each start")
    u.set_defaults(f=cmd_up)
    sub.add_parser("kill9").set_defaults(f=cmd_kill9)
    sub.add_parser("restart").set_defaults(f=cmd_restart)
    sub.add_parser("down").set_defaults(f=cmd_down)
    c = sub.add_parser("call")
    c.add_argument("method")
    c.add_argument("params", nargs="?")
    c.add_argument("--timeout", type=float, default=15)
    c.add_argument("--pretty", action="store_true")
    c.set_defaults(f=cmd_call)
    r = sub.add_parser("reqs")
    r.add_argument("--since", type=int, default=0)
    r.add_argument("--full", action="store_true")
    r.add_argument("--width", type=int, default=300)
    r.set_defaults(f=cmd_reqs)
    sub.add_parser("config").set_defaults(f=cmd_config)
    d = sub.add_parser("delay")
    d.add_argument("seconds", type=float)
    d.set_defaults(f=cmd_delay)
    a = p.parse_args()
    a.f(a)


if __name__ == "__main__":
    main()
