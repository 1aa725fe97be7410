#!/usr/bin/env python3
"""Alert latency: SIGKILL the supervised gateway N times; time each kill until the "down" alert
reaches a notifier (a webhook on loopback, in a thread of this process, stamping each request as it
arrives). Goal: p99 < 5 s.

The real Daemon runs in-process against the scripted fake gateway, its alerts going to the webhook.
Each kill is its own outage: the killer waits for the previous one's "recovered" alert at the
webhook (the fake gateway has nothing in flight, so recovery ends at once; `recovered_after_s` is
at its floor), then takes t0 on the wall clock just before os.kill(pid, SIGKILL); the latency is
the webhook's arrival stamp (same clock) - t0: classification, the incident record, the alert's
record and the HTTP POST. The last line printed is one JSON object with `p99_ms`. Stopped by
SIGTERM, SIGINT or SIGHUP, the daemon stops its gateway; any gateway left is killed.

    python scripts/bench/alert_latency.py [--kills N | --short]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from gatewayd_dev.alert_receiver import Receiver, receiver
from gatewayd_dev.benchlib import Stopped, loop_signals, num, pct, raise_on_signals
from gatewayd_dev.harness import FAKE_GATEWAY, free_port_block
from supervisor import config, logs
from supervisor.daemon import Daemon
from supervisor.events import BootStarted

GOAL_P99_MS = 5000.0
SHORT_KILLS = 20
STALL_S = 30.0  # no alert this long after a kill (or no recovery after one): the run fails


def arrivals(r: Receiver, kind: str) -> list[float]:
    with r.lock:
        return [x["at"] for x in r.received if isinstance(x["body"], dict) and x["body"]["kind"] == kind]


async def until(pred: Any, what: str) -> Any:
    deadline = time.monotonic() + STALL_S
    while not (value := pred()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {what} within {STALL_S:g} s")
        await asyncio.sleep(0.005)  # the bench's own wait: the webhook is a thread of this process
    return value


class Bench:
    def __init__(self, daemon: Daemon, r: Receiver, kills: int) -> None:
        self.daemon, self.r, self.kills = daemon, r, kills
        self.pid: int | None = None
        self.pids: set[int] = set()
        self.latencies: list[float] = []
        self.failure = ""

    def on_event(self, ev: object) -> None:
        if isinstance(ev, BootStarted):
            self.pid = ev.pid
            self.pids.add(ev.pid)

    async def killer(self) -> None:
        try:
            await until(lambda: self.daemon.current is not None and self.daemon.current.ready, "first readiness")
            for n in range(self.kills):
                if n:  # the previous outage is over once its "recovered" alert arrived
                    await until(lambda n=n: len(arrivals(self.r, "recovered")) >= n, f"recovered alert {n}")
                await until(lambda: self.daemon.current is not None and self.daemon.current.ready, "readiness")
                await asyncio.sleep(random.uniform(0.0, 0.2))  # a random point of the gateway's run
                pid = self.pid
                assert pid is not None
                t0 = time.time()
                os.kill(pid, signal.SIGKILL)
                downs = await until(lambda n=n: len(arrivals(self.r, "down")) > n and arrivals(self.r, "down"),
                                    f"down alert {n + 1}")
                self.latencies.append((downs[n] - t0) * 1000)
        except Exception as exc:  # reported as a failed run
            self.failure = repr(exc)
        finally:
            self.daemon.request_stop()


async def run(kills: int, root: Path, r: Receiver) -> Bench:
    (root / "gatewayd.toml").touch(mode=0o600)  # empty: no user config file or GATEWAYD_* env applies
    cfg = config.load(root / "gatewayd.toml", environ={}, cli={
        "state_dir": str(root / "state"), "gateway.command": [sys.executable, str(FAKE_GATEWAY)],
        "gateway.version": "2026.9.6", "gateway.port": free_port_block(),
        "gateway.state_dir": str(root / "gw-state"), "gateway.config_path": str(root / "gw-state" / "openclaw.json"),
        "gateway.env": {"FAKE_GW_VERSION": "2026.9.6", "FAKE_GW_BOOT_DELAY": "0.05"},
        "probes.interval_s": 0.2, "supervise.stop_budget_s": 10.0, "supervise.jitter": 0.0,
        # Every kill a first crash: respawned at once, never a crash loop.
        "supervise.healthy_after_s": 0.01, "supervise.crash_loop_window_s": 0.01,
        "supervise.crash_loop_crashes": 1000,
        "alerts.notify": [{"kind": "webhook", "url": r.url, "timeout_s": 5.0}],
        "alerts.recovered_after_s": 0.01, "alerts.max_per_hour": 1000})
    logs.setup(cfg.state_dir / "logs", cfg.log_level, console=False)
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENCLAW_", "GATEWAYD_"))}
    daemon = Daemon(cfg, environ=child_env, install_signals=False)
    bench = Bench(daemon, r, kills)
    daemon.bus.subscribe(bench.on_event)
    signalled: list[int] = []

    def on_signal(signum: int) -> None:
        signalled.append(signum)
        bench.failure = bench.failure or f"stopped by {signal.Signals(signum).name}"
        daemon.request_stop()

    undo = loop_signals(asyncio.get_running_loop(), on_signal)
    killer = asyncio.create_task(bench.killer())
    try:
        await daemon.run()
    except Exception as exc:  # reported as a failed run
        bench.failure = bench.failure or f"daemon failed: {exc!r}"
    finally:
        killer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await killer
        undo()
    if signalled:
        raise Stopped(signalled[0])
    return bench


def leftovers(pids: set[int]) -> int:
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
    ap.add_argument("--kills", type=int, default=100)
    ap.add_argument("--short", action="store_true", help=f"{SHORT_KILLS} kills (make bench)")
    args = ap.parse_args()
    raise_on_signals()
    kills = SHORT_KILLS if args.short else args.kills
    if kills < 1:
        ap.error("--kills must be >= 1")
    failure, lat, left = "", [], 0
    try:
        with receiver() as r, tempfile.TemporaryDirectory(prefix="gatewayd-bench-") as tmp:
            bench: Bench | None = None
            try:
                bench = asyncio.run(run(kills, Path(tmp), r))
                failure, lat = bench.failure, bench.latencies
            finally:
                left = leftovers(bench.pids) if bench else 0
                gc.collect()
                logs.setup(None, console=False)  # the daemon's log file is closed before its directory goes
    except (Exception, Stopped) as exc:  # reported as a failed run; its gateway is gone by now
        failure = failure or repr(exc)
    if not failure and len(lat) < kills:
        failure = f"only {len(lat)} of {kills} kills measured"
    if not failure and left:
        failure = f"{left} gateway process(es) were left behind (now killed)"
    p99 = pct(lat, .99)
    print(f"{len(lat)} SIGKILLs of the fake gateway: kill -> \"down\" alert at the webhook:"
          f" p50 {pct(lat, .5):.1f} ms  p90 {pct(lat, .9):.1f} ms  p99 {p99:.1f} ms  max {pct(lat, 1):.1f} ms")
    if args.short:
        print(f"short form: {kills} kills (p99 of {kills} samples is their maximum)")
    ok = not failure and p99 < GOAL_P99_MS
    print(f"goal: p99 < {GOAL_P99_MS:g} ms: {'met' if ok else 'MISSED'}")
    if failure:
        print(f"FAILED: {failure}", file=sys.stderr)
    print(json.dumps({"kills": len(lat), "short": args.short, "p50_ms": num(pct(lat, .5)), "p99_ms": num(p99),
                      "max_ms": num(pct(lat, 1)), "goal_p99_ms": GOAL_P99_MS, "ok": ok}))
    return 1 if failure else 0


if __name__ == "__main__":
    sys.exit(main())
