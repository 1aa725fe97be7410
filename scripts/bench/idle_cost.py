#!/usr/bin/env python3
"""Idle cost: gatewayd's own RSS and CPU while it supervises a ready real gateway at default polling.

Starts the fake model, a sandboxed real gateway (openclaw 2026.9.6 by default) under `gatewayd run`
with default probe and snapshot settings, waits for readiness, then samples gatewayd's process
(only gatewayd: not the gateway) every second for --minutes. Goal: RSS < 60 MB, CPU < 0.5 % of one
core. The last line printed is one JSON object. Stopped by SIGTERM, SIGINT or SIGHUP (or failing),
it stops gatewayd and kills whatever is left of its tree: nothing it started keeps running.

    python scripts/bench/idle_cost.py [--minutes 10 | --short] [--version 2026.9.6]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from gatewayd_dev import fake_model, sandbox
from gatewayd_dev.benchlib import Stopped, end_tree, raise_on_signals
from gatewayd_dev.harness import free_port_block, toml_value

REPO = Path(__file__).resolve().parents[2]

SHORT_MINUTES, SETTLE_S, READY_TIMEOUT_S = 0.75, 10.0, 300.0
STOP_GRACE_S = 45.0  # gatewayd's stop (budget set to 30 s below) before the tree is killed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--short", action="store_true", help=f"{SHORT_MINUTES * 60:g} s of samples (make bench)")
    p.add_argument("--version", default="2026.9.6")
    a = p.parse_args()
    raise_on_signals()
    minutes = SHORT_MINUTES if a.short else a.minutes
    try:
        result = measure(minutes, a.version)
    except (Exception, Stopped) as exc:  # reported as a failed run; what it started is gone by now
        print(f"FAILED: {exc}", file=sys.stderr)
        print(json.dumps({"minutes": minutes, "version": a.version, "ok": False, "error": str(exc)}))
        return 1
    print(f"gatewayd idle over {minutes:g} min{' (short form: fewer samples)' if a.short else ''}: RSS max"
          f" {result['rss_mb_max']} MB (mean {result['rss_mb_mean']}), CPU mean {result['cpu_pct_mean']} % of one core"
          f" (p99 {result['cpu_pct_p99']} %)")
    print(f"goal RSS < 60 MB and CPU < 0.5 %: {'met' if result['ok'] else 'MISSED'}")
    print(json.dumps(result))
    return 0


def measure(minutes: float, version: str) -> dict[str, object]:
    root = Path(tempfile.mkdtemp(prefix="gatewayd-idle-"))
    server, thread, model_port = fake_model.start_fake_model(delay=0.2, log_path=root / "model.jsonl")
    proc: subprocess.Popen[bytes] | None = None
    try:
        port = free_port_block()
        sb = sandbox.prepare_sandbox(root / "gw", version, port, model_port)
        cfg = root / "gatewayd.toml"
        gw = {"openclaw": str(sb.entry), "node": str(sb.node), "port": port, "args": ["--bind", "loopback"],
              "env": dict(sb.env), "config_path": str(sb.config_path), "state_dir": str(sb.state_dir)}
        # Default probe and snapshot settings; only the stop budget is shorter, so a teardown is bounded.
        cfg.write_text(f'state_dir = {toml_value(str(root / "state"))}\n[gateway]\n'
                       + "".join(f"{k} = {toml_value(v)}\n" for k, v in gw.items())
                       + "[supervise]\nstop_budget_s = 30.0\n")
        cfg.chmod(0o600)
        proc = subprocess.Popen([sys.executable, "-m", "supervisor", "run", "-c", str(cfg)], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        log = root / "state" / "logs" / "gatewayd.log"
        deadline = time.monotonic() + READY_TIMEOUT_S
        while '"gateway_ready"' not in (log.read_text() if log.exists() else ""):
            if proc.poll() is not None:
                raise RuntimeError(f"gatewayd exited early ({proc.returncode})")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the gateway was not ready within {READY_TIMEOUT_S:g} s")
            time.sleep(0.5)
        me = psutil.Process(proc.pid)
        time.sleep(SETTLE_S)  # let the first snapshots and connections settle before measuring
        rss: list[float] = []
        cpu: list[float] = []
        last_t, last_cpu = time.monotonic(), sum(me.cpu_times()[:2])
        end = time.monotonic() + minutes * 60
        while time.monotonic() < end:
            time.sleep(1.0)
            now, used = time.monotonic(), sum(me.cpu_times()[:2])
            cpu.append(100.0 * (used - last_cpu) / (now - last_t))
            last_t, last_cpu = now, used
            rss.append(me.memory_info().rss / 2**20)
        if proc.poll() is not None:
            raise RuntimeError(f"gatewayd exited during the measurement ({proc.returncode})")
        result: dict[str, object] = {
            "minutes": minutes, "samples": len(rss), "rss_mb_max": round(max(rss), 1),
            "rss_mb_mean": round(statistics.fmean(rss), 1), "cpu_pct_mean": round(statistics.fmean(cpu), 3),
            "cpu_pct_p99": round(sorted(cpu)[int(0.99 * (len(cpu) - 1))], 3), "version": version,
            "goal_rss_mb": 60, "goal_cpu_pct": 0.5}
        result["ok"] = max(rss) < 60 and statistics.fmean(cpu) < 0.5
        return result
    finally:
        if proc is not None:
            killed = end_tree(proc.pid, STOP_GRACE_S)
            if killed:
                print(f"note: {len(killed)} process(es) of gatewayd's tree had to be killed: {killed}", file=sys.stderr)
        server.shutdown()
        server.server_close()
        thread.join(5)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
