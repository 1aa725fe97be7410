#!/usr/bin/env python3
"""Crash-detection latency: SIGKILL the supervised gateway N times; time how soon gatewayd knows.

The real Daemon runs in-process against the scripted fake gateway, respawning at once. On each
GatewayReady a killer thread (not the event loop) takes t0 just before os.kill(pid, SIGKILL); the
daemon's BootEnded.exited_at is t1: detection = t1 - t0. Also timed: exit -> respawn and exit -> ready.
Store load (default on): every 5 ms a thread writes the store on a second connection and a task in
the daemon's loop writes through daemon.store. A 5-minute polling watchdog sees a crash uniformly
within 0..300 s. The last line printed is one JSON object.

    python scripts/bench/detect_latency.py [--kills N | --short] [--no-store-load]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import queue
import random
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from supervisor import config, logs  # noqa: E402
from supervisor.daemon import Daemon  # noqa: E402
from supervisor.errors import StoreError  # noqa: E402
from supervisor.events import BootEnded, BootStarted, GatewayReady  # noqa: E402
from tests.support.harness import FAKE_GATEWAY, free_port_block  # noqa: E402

WATCHDOG_P50_MS, WATCHDOG_P99_MS = 150_000, 297_000  # uniform over a 300 s poll period
GOAL_P99_MS, STALL_S, LOAD_PERIOD_S = 10, 30.0, 0.005
ROW = ("bench-load", json.dumps({"snapshot": "x" * 200}))


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q = 1: the maximum); NaN when there is nothing to rank."""
    s = sorted(values)
    return s[max(0, math.ceil(q * len(s)) - 1)] if s else math.nan


def num(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 3)


def spread(v: list[float]) -> str:
    return "  ".join(f"{k} {pct(v, q):7.3f} ms" for k, q in (("p50", .5), ("p90", .9), ("p99", .99), ("max", 1)))


class Bench:
    """Listens on the daemon's bus (on the event loop) and feeds the killer thread."""

    def __init__(self, daemon: Daemon, kills: int) -> None:
        self.daemon, self.kills = daemon, kills
        self.todo: queue.Queue[tuple[int, int] | None] = queue.Queue()
        self.sent: dict[int, float] = {}  # boot -> t0, set by the killer thread just before its kill
        self.ended: set[int] = set()
        self.pids: set[int] = set()  # every gateway pid the bus reported: the only pids ever signalled
        self.detect, self.respawn, self.ready = [], [], []  # type: list[float], list[float], list[float]
        self.last_exit: float | None = None
        self.unexpected, self.failure, self.done = 0, "", False
        self.started = asyncio.Event()
        self.progress_at = time.monotonic()
        self.rows = {"external": 0, "in_loop": 0, "errors": 0}

    def on_event(self, ev: object) -> None:
        if isinstance(ev, BootStarted):
            self.pids.add(ev.pid)
            self.started.set()
            if self.last_exit is not None:
                self.respawn.append((ev.spawned_at - self.last_exit) * 1000)
        elif isinstance(ev, GatewayReady):
            self.progress_at = time.monotonic()
            if self.last_exit is not None:
                self.ready.append((ev.ready_at - self.last_exit) * 1000)
                self.last_exit = None
            if len(self.detect) >= self.kills:
                self.finish()
            elif not self.done:
                self.todo.put((ev.boot, ev.pid))
        elif isinstance(ev, BootEnded):
            self.ended.add(ev.boot)
            t0, self.last_exit = self.sent.get(ev.boot), None
            if t0 is not None:
                self.detect.append((ev.exited_at - t0) * 1000)
                self.last_exit = ev.exited_at
            elif not self.daemon.stop_requested.is_set():
                self.unexpected += 1

    def finish(self, failure: str = "") -> None:  # on the event loop only
        self.failure = self.failure or failure
        if not self.done:
            self.done = True
            self.todo.put(None)
            self.daemon.request_stop()

    def killer(self) -> None:
        while (item := self.todo.get()) is not None:
            boot, pid = item
            time.sleep(random.uniform(0.015, 0.06))  # land at a random point of the loop's work
            if boot in self.ended or self.done:
                continue
            self.sent[boot] = time.monotonic()  # t0
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    async def watch_stall(self) -> None:
        while not self.done:
            await asyncio.sleep(1.0)
            if time.monotonic() - self.progress_at > STALL_S:
                self.finish(f"the gateway was not ready for {STALL_S:.0f} s")

    def external_writer(self, db: Path, stop: threading.Event) -> None:
        conn = sqlite3.connect(db, timeout=5.0, isolation_level=None)  # autocommit: one commit per row
        conn.execute("PRAGMA journal_mode = WAL")
        while not stop.wait(LOAD_PERIOD_S):
            try:
                conn.execute("INSERT INTO events(ts, kind, data) VALUES (?, ?, ?)", (time.time(), *ROW))
                self.rows["external"] += 1
            except sqlite3.OperationalError:
                self.rows["errors"] += 1
        conn.close()

    async def store_load(self, stop: threading.Event) -> None:
        await self.started.wait()  # the store exists and is migrated
        threading.Thread(target=self.external_writer, args=(self.daemon.store.path, stop), daemon=True).start()
        while not self.done:
            try:
                await self.daemon.store.write(lambda c: c.execute(
                    "INSERT INTO events(ts, kind, data) VALUES (?, ?, ?)", (time.time(), *ROW)))
                self.rows["in_loop"] += 1
            except (StoreError, RuntimeError):
                self.rows["errors"] += 1
            await asyncio.sleep(LOAD_PERIOD_S)


async def run(bench_kills: int, store_load: bool, root: Path) -> Bench:
    (root / "gatewayd.toml").touch(mode=0o600)  # empty: no user config file or GATEWAYD_* env applies
    cfg = config.load(root / "gatewayd.toml", environ={}, cli={
        "state_dir": str(root / "state"), "gateway.command": [sys.executable, str(FAKE_GATEWAY)],
        "gateway.version": "2026.9.6", "gateway.port": free_port_block(),
        "gateway.state_dir": str(root / "gw-state"), "gateway.config_path": str(root / "gw-state" / "openclaw.json"),
        "gateway.env": {"FAKE_GW_VERSION": "2026.9.6", "FAKE_GW_BOOT_DELAY": "0.05"},
        # Each kill a first crash after a healthy run (ready 10 ms is healthy; the killer waits
        # longer): respawned at once, as the defaults respawn a first crash. No crash loop.
        "probes.interval_s": 0.2, "supervise.stop_budget_s": 10.0, "supervise.jitter": 0.0,
        "supervise.healthy_after_s": 0.01, "supervise.crash_loop_window_s": 0.01,
        "supervise.crash_loop_crashes": 1000, "supervise.backoff_initial_s": 0.01, "supervise.backoff_max_s": 0.01,
        "supervise.crash_loop_delay_s": 0.01})
    logs.setup(cfg.state_dir / "logs", cfg.log_level, console=False)
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENCLAW_", "GATEWAYD_"))}
    daemon = Daemon(cfg, environ=child_env)
    bench = Bench(daemon, bench_kills)
    daemon.bus.subscribe(bench.on_event)
    threading.Thread(target=bench.killer, name="killer", daemon=True).start()
    stop_load = threading.Event()
    aux = [asyncio.create_task(bench.watch_stall())]
    if store_load:
        aux.append(asyncio.create_task(bench.store_load(stop_load)))
    try:
        await daemon.run()
    except Exception as exc:  # reported as a failed run
        bench.failure = bench.failure or f"daemon failed: {exc!r}"
    finally:
        bench.done = True
        bench.todo.put(None)
        stop_load.set()
        for task in aux:
            task.cancel()
    return bench


def leftovers(pids: set[int]) -> int:
    """Kill any gateway the bus reported that is still alive (checked to be the fake, not a reused pid)."""
    left = 0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            p = psutil.Process(pid)
            if p.status() != psutil.STATUS_ZOMBIE and str(FAKE_GATEWAY) in p.cmdline():
                p.kill()
                left += 1
    return left


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=200)
    ap.add_argument("--short", action="store_true", help="50 kills (make bench)")
    ap.add_argument("--store-load", action=argparse.BooleanOptionalAction, default=True)
    args = ap.parse_args()
    kills = 50 if args.short else args.kills
    if kills < 1:
        ap.error("--kills must be >= 1")
    with tempfile.TemporaryDirectory(prefix="gatewayd-bench-") as tmp:
        bench = asyncio.run(run(kills, args.store_load, Path(tmp)))
        left = leftovers(bench.pids)
        gc.collect()  # late asyncio complaints still reach the daemon's log file...
        logs.setup(None, console=False)  # ...which is closed before its directory goes
    d, r, w = bench.detect, bench.respawn, bench.ready
    p50, p99 = pct(d, .5), pct(d, .99)
    ratio50, ratio99 = (round(WATCHDOG_P50_MS / p50), round(WATCHDOG_P99_MS / p99)) if d else (None, None)
    ok = p99 < GOAL_P99_MS
    print(f"{len(d)} SIGKILLs of the fake gateway; store load: {'on ' + str(bench.rows) if args.store_load else 'off'}")
    print(f"  kill -> detected : {spread(d)}")
    print(f"  exit -> respawn  : {spread(r)}")
    print(f"  exit -> ready    : {spread(w)}")
    print(f"5-minute polling watchdog: p50 {WATCHDOG_P50_MS} ms, p99 {WATCHDOG_P99_MS} ms"
          f" -> {ratio50 or 0:,}x (p50) and {ratio99 or 0:,}x (p99) slower than gatewayd")
    print(f"goal p99 < {GOAL_P99_MS} ms: {'met' if ok else 'MISSED'} (p99 {p99:.3f} ms)")
    if bench.unexpected:
        print(f"note: {bench.unexpected} gateway exit(s) not caused by the bench (not counted)")
    failure = bench.failure or (f"only {len(d)} of {kills} kills measured" if len(d) < kills else "") or (
        f"{left} gateway process(es) were left behind (now killed)" if left else "")
    if failure:
        print(f"FAILED: {failure}", file=sys.stderr)
    print(json.dumps({"kills": len(d), "p50_ms": num(p50), "p99_ms": num(p99), "max_ms": num(pct(d, 1)),
                      "respawn_p50_ms": num(pct(r, .5)), "respawn_p99_ms": num(pct(r, .99)),
                      "watchdog_p50_ms": WATCHDOG_P50_MS, "ratio_p50": ratio50, "ratio_p99": ratio99,
                      "store_load": args.store_load, "goal_p99_ms": GOAL_P99_MS, "ok": ok}))
    return 1 if failure else 0


if __name__ == "__main__":
    sys.exit(main())
