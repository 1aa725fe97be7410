#!/usr/bin/env python3
"""`make bench`: every benchmark's short form, each under a hard timeout; one summary line each.

Fails (exit 1) when a benchmark exits non-zero, times out, has no JSON object as its last stdout
line, or says `"ok": false`. One after another by default. `--together` runs idle_cost,
hang_latency and chaos at once first (timer-bound or correctness figures), then the millisecond
ones alone: faster, but on this 2-core machine, with other work running, the three together
missed their own deadlines (a real gateway booting beside two fake-gateway benchmarks).
A benchmark that times out gets SIGTERM (its own teardown stops what it started), then, after a
grace, SIGKILL for whatever is left of its process tree, recorded before the SIGTERM (gatewayd and
its gateway run in sessions of their own). Stopped itself by SIGTERM, SIGINT or SIGHUP, this does
the same to every benchmark still running.

    python scripts/bench/check.py [--only NAME[,NAME...]] [--together]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from gatewayd_dev.benchlib import Stopped, end_tree, raise_on_signals, tree

BENCH = Path(__file__).resolve().parent
# Modules of scripts/bench that are not benchmarks of their own.
HELPERS = frozenset({"check", "chaos_rejudge"})
GRACE_S = 45.0  # a timed-out benchmark's own teardown (idle_cost stops a real gateway: up to 45 s)


@dataclass(frozen=True)
class Spec:
    name: str
    timeout_s: float
    alone: bool  # measured with nothing else of the bench running
    figures: tuple[str, ...]  # JSON keys shown in the summary


SPECS = (
    Spec("idle_cost", 240.0, False, ("rss_mb_max", "cpu_pct_mean")),
    Spec("hang_latency", 120.0, False, ("stops", "p50_ms", "p99_ms", "ready_p99_ms")),
    Spec("chaos", 420.0, False, ("kills", "lost", "doubled", "notified_pct", "woken_pct")),
    Spec("detect_latency", 150.0, True, ("p50_ms", "p99_ms", "floor_p99_ms", "over_floor_p99_ms", "floor_goal_met",
                                         "respawn_p99_ms", "no_load_over_floor_p99_ms")),
    Spec("snapshot_cycle", 120.0, True, ("cycle_ms_p50", "own_ms_p50", "write_ms_p99_pooled",
                                         "active_only_cycle_ms_p50", "active_only_own_ms_p50")),
    Spec("recovery_latency", 120.0, True, ("p95_ms_100", "max_cron_run_per_minute_50_jobs_at_10")),
    Spec("cli_latency", 60.0, True, ("median_ms", "baseline_median_ms")),
    Spec("alert_latency", 90.0, False, ("kills", "p50_ms", "p99_ms")),
)


@dataclass
class Run:
    spec: Spec
    proc: subprocess.Popen[bytes]
    out: Any
    err: Any
    started: float = field(default_factory=time.monotonic)
    wall_s: float = 0.0
    timed_out: bool = False
    result: dict[str, Any] | None = None
    verdict: str = ""

    @property
    def overdue(self) -> bool:
        return time.monotonic() - self.started > self.spec.timeout_s


def start(spec: Spec, tmp: Path) -> Run:
    out, err = (open(tmp / f"{spec.name}.{k}", "w+b") for k in ("out", "err"))  # noqa: SIM115 - closed in finish
    # A session of its own: its whole group gets the SIGTERM of a timeout, and nothing of ours.
    proc = subprocess.Popen([sys.executable, str(BENCH / f"{spec.name}.py"), "--short"], stdout=out, stderr=err,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    return Run(spec, proc, out, err)


def stop(run: Run) -> None:
    """SIGTERM its group; after the grace, SIGKILL what is left of its tree (recorded first)."""
    recorded = tree(run.proc.pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(run.proc.pid, signal.SIGTERM)
    left = end_tree(run.proc.pid, GRACE_S, recorded)
    if left:
        print(f"  {run.spec.name}: {len(left)} process(es) still running after {GRACE_S:g} s were killed: {left}")


def finish(run: Run) -> None:
    run.proc.wait()
    run.wall_s = time.monotonic() - run.started
    run.out.seek(0)
    run.err.seek(0)
    lines = run.out.read().decode(errors="replace").strip().splitlines()
    stderr = run.err.read().decode(errors="replace").strip().splitlines()
    run.out.close()
    run.err.close()
    with contextlib.suppress(IndexError, ValueError):
        last = json.loads(lines[-1])
        run.result = last if isinstance(last, dict) else None
    if run.timed_out:
        run.verdict = f"TIMEOUT after {run.spec.timeout_s:g} s"
    elif run.result is None:
        run.verdict = "ERROR: no JSON object as the last stdout line"
    elif run.proc.returncode != 0:
        run.verdict = f"ERROR: exit {run.proc.returncode}"
    elif run.result.get("ok") is not True:
        run.verdict = "MISSED: ok is not true"
    else:
        run.verdict = "ok"
    figures = ", ".join(f"{k} {run.result[k]}" for k in run.spec.figures if run.result and k in run.result)
    print(f"{run.spec.name:17} {run.verdict:10} {run.wall_s:6.1f} s  {figures}", flush=True)
    if run.verdict != "ok":
        for line in (stderr or lines)[-8:]:
            print(f"    | {line}")


def supervise(runs: list[Run]) -> None:
    """Wait for every run, stopping those past their timeout."""
    pending = list(runs)
    while pending:
        for run in list(pending):
            if run.proc.poll() is not None:
                pending.remove(run)
                finish(run)
            elif run.overdue and not run.timed_out:
                run.timed_out = True
                stop(run)
        time.sleep(0.2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated benchmark names")
    ap.add_argument("--together", action="store_true", help="idle_cost, hang_latency and chaos at once first")
    args = ap.parse_args()
    raise_on_signals()
    only = {n for n in args.only.split(",") if n}
    specs = [s for s in SPECS if not only or s.name in only]
    if unknown := only - {s.name for s in SPECS}:
        ap.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    # A listed benchmark that is gone fails the check (a rename must not pass as "all ok"), and a
    # benchmark nobody listed is named, so it does not go unrun unnoticed.
    if missing := [s.name for s in specs if not (BENCH / f"{s.name}.py").exists()]:
        print(f"FAILED: listed benchmark(s) missing: {', '.join(missing)}", file=sys.stderr)
        return 1
    listed = {s.name for s in SPECS} | HELPERS
    if unlisted := sorted(p.stem for p in BENCH.glob("*.py") if p.stem not in listed):
        print(f"FAILED: benchmark(s) not listed in check.py SPECS: {', '.join(unlisted)}", file=sys.stderr)
        return 1
    print(f"short forms of: {', '.join(s.name for s in specs)}", flush=True)
    t0 = time.monotonic()
    runs: list[Run] = []
    try:
        with tempfile.TemporaryDirectory(prefix="gatewayd-bench-check-") as tmp:
            together = [s for s in specs if not s.alone and args.together]
            if together:
                batch = [start(s, Path(tmp)) for s in together]
                runs += batch
                supervise(batch)
            for spec in [s for s in specs if s not in together]:
                batch = [start(spec, Path(tmp))]
                runs += batch
                supervise(batch)
    except Stopped as exc:
        print(f"check stopped ({exc}); stopping the benchmarks still running", file=sys.stderr)
        for run in runs:
            if run.proc.poll() is None:
                with contextlib.suppress(psutil.Error):
                    stop(run)
        return 1
    failed = [r.spec.name for r in runs if r.verdict != "ok"]
    print(f"{len(runs) - len(failed)}/{len(runs)} ok in {time.monotonic() - t0:.0f} s wall"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
