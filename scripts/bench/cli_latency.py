#!/usr/bin/env python3
"""How long `gatewayd status --json` takes (issue 16: the CLI answers at once).

Times `gatewayd status --json` with the daemon down, against a temporary state dir holding a real
store with a few boots (so it reads real data), interleaved with `python -c pass` in the same run
(the interpreter's own start, on this machine, now). Optionally (`--live`) also against a running
daemon supervising the fake gateway, through the control socket.

Bytecode: a real install (pipx, uv tool) has its .pyc files. A checkout run with
PYTHONDONTWRITEBYTECODE=1 recompiles gatewayd's modules on every start, which measures the compiler,
not the CLI; so by default the runs share a private PYTHONPYCACHEPREFIX warmed once (`--no-pyc`
measures without it).

Prints percentiles and the ratio; the last stdout line is one JSON object with median_ms,
baseline_median_ms, ok (median_ms <= 100, scaled by the interpreter's start where it was slower
than an idle machine's 25 ms: `scaled_goal_ms`) and the rest.

    .venv/bin/python scripts/bench/cli_latency.py            # 40 runs each
    .venv/bin/python scripts/bench/cli_latency.py --short    # 30 runs each, under 15 s
    .venv/bin/python scripts/bench/cli_latency.py --live     # also against a running daemon
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from supervisor.store.boots import BootEnd, BootRecords
from supervisor.store.db import Store

REPO = Path(__file__).resolve().parents[2]
GOAL_MS = 100.0
# The goal holds on an idle machine, whose interpreter starts in about 25 ms. The host's speed moves
# within minutes (measured here: `python -c pass` 25-38 ms, the CLI 85-130 ms, their ratio 3.25-3.57
# throughout), so where the interpreter itself started slower, the goal is scaled by it: the CLI
# against its floor, as the crash and hang detection are judged.
IDLE_START_MS = 25.0


def gatewayd_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("gatewayd")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "supervisor"]


async def make_store(state_dir: Path, boots: int = 4) -> None:
    store = Store(state_dir / "store.sqlite")
    await store.open()
    try:
        rec = BootRecords(store)
        await rec.daemon_started(4242)
        for i in range(boots):
            boot = await rec.started(5000 + i, time.time(), 18789, "2026.9.6")
            await rec.ready(boot, f"gw-{i}")
            kind = "crash" if i % 2 == 0 else "planned-restart"
            await rec.ended(boot, BootEnd(-9 if kind == "crash" else 0, kind, f"bench boot {i}", False, {}))
        await rec.state("stopped", False, 0, "bench")
    finally:
        await store.close()


def time_once(argv: list[str], env: dict[str, str], expect: set[int]) -> tuple[float, str]:
    t0 = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, timeout=60, check=False)
    ms = (time.perf_counter() - t0) * 1000
    if p.returncode not in expect:
        raise SystemExit(f"{' '.join(argv)} exited {p.returncode}: {p.stderr.strip()[-500:]}")
    return ms, p.stdout


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def summary(xs: list[float]) -> dict[str, float]:
    return {"p10": round(pct(xs, 0.10), 1), "median": round(statistics.median(xs), 1),
            "p90": round(pct(xs, 0.90), 1), "max": round(max(xs), 1)}


def measure(n: int, cmd: list[str], env: dict[str, str], expect: set[int]) -> tuple[list[float], list[float], str]:
    base: list[float] = []
    runs: list[float] = []
    out = ""
    for _ in range(n):  # interleaved: both see the same machine load
        base.append(time_once([sys.executable, "-c", "pass"], env, {0})[0])
        ms, out = time_once(cmd, env, expect)
        runs.append(ms)
    return runs, base, out


def live_run(n: int, root: Path, env: dict[str, str]) -> dict[str, float] | None:
    """`status --json` against a running daemon supervising the fake gateway."""
    from gatewayd_dev.harness import fake_settings, gatewayd

    root.mkdir()
    with gatewayd(root, fake_settings()) as g:
        g.start()
        g.wait_event("gateway_ready")
        cmd = [*gatewayd_cmd(), "status", "--json", "-c", str(g.config_file)]
        runs, _, out = measure(n, cmd, env, {0})
        assert json.loads(out)["live"]["state"] == "running"
        g.run_cli("stop", "-c", str(g.config_file))
    return summary(runs)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=40, help="runs of each command")
    p.add_argument("--short", action="store_true", help="30 runs each (under 15 s)")
    p.add_argument("--live", action="store_true", help="also time status against a running daemon")
    p.add_argument("--no-pyc", action="store_true", help="keep the environment's bytecode setting as it is")
    a = p.parse_args()
    # 30, not fewer: a CI trial's median of 12 fell on a burst of load (p10 83.5, median 126.3 ms,
    # the interpreter's own start slowed alike) where the same code measures 85-93 ms idle.
    n = 30 if a.short else a.n
    tmp = Path(tempfile.mkdtemp(prefix="gatewayd-cli-bench-"))
    try:
        state = tmp / "state"
        state.mkdir(mode=0o700)
        asyncio.run(make_store(state))
        env = dict(os.environ)
        for k in [k for k in env if k.startswith("GATEWAYD_")]:
            del env[k]
        if not a.no_pyc:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(tmp / "pyc")
        cmd = [*gatewayd_cmd(), "status", "--json", "--state-dir", str(state)]
        time_once(cmd, env, {4})  # warm: bytecode cache, page cache
        time_once([sys.executable, "-c", "pass"], env, {0})
        runs, base, out = measure(n, cmd, env, {4})
        doc = json.loads(out)
        assert doc["supervision"]["state"] == "stopped" and doc["boots_24h"] == 4, doc
        s, b = summary(runs), summary(base)
        print(f"gatewayd status --json (daemon down, {n} runs): p10 {s['p10']} median {s['median']} "
              f"p90 {s['p90']} max {s['max']} ms")
        print(f"python -c pass (same run):               p10 {b['p10']} median {b['median']} "
              f"p90 {b['p90']} max {b['max']} ms")
        ratio = round(s["median"] / b["median"], 2) if b["median"] else None
        goal = round(GOAL_MS * max(1.0, b["median"] / IDLE_START_MS), 1)
        print(f"ratio median/baseline: {ratio}; over the interpreter's start: {s['median'] - b['median']:.1f} ms")
        result: dict[str, object] = {
            "median_ms": s["median"], "baseline_median_ms": b["median"], "ratio": ratio,
            "over_baseline_ms": round(s["median"] - b["median"], 1), "p90_ms": s["p90"], "runs": n,
            "bytecode_cache": not a.no_pyc, "goal_ms": GOAL_MS, "scaled_goal_ms": goal,
            "ok": s["median"] <= goal,
        }
        if a.live:
            live = live_run(max(5, n // 2), tmp / "live", env)
            if live is not None:
                print(f"gatewayd status --json (daemon running):  p10 {live['p10']} median {live['median']} "
                      f"p90 {live['p90']} max {live['max']} ms")
                result["live_median_ms"] = live["median"]
        print(json.dumps(result))
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
