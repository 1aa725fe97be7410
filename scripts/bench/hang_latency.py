#!/usr/bin/env python3
"""Hang-detection latency at the default probe settings: SIGSTOP the supervised gateway N times at
random points of the probe cycle; time how soon gatewayd declares it hung, and how soon it is ready.

The real Daemon runs in-process against the scripted fake gateway (2026.9.6: HTTP probes) with
the default [probes] settings (supervisor/config.py, core/probestate.py ProbeSettings). Only the
respawn backoff and the crash loop are off (healthy_after_s at its 10 ms minimum), so that N hang
kills in a row are each a first crash after a healthy run, respawned at once as by the defaults. On each
GatewayReady a stop is scheduled a random 2 s .. 2 s + 2 probe periods later (probes are periodic:
a uniform point of their cycle; the snapshot polls' too). Timestamps come from the daemon's
EventBus, never from log lines: t0 just before os.kill(pid, SIGSTOP); verdict: BootEnded (exit
kind hang-kill).exited_at, i.e. the verdict plus the kill of the group and the loop learning of
the exit (milliseconds); ready again: the next GatewayReady.ready_at. Each probe answer is
recorded too (the probe machine is wrapped, not changed), to tell where the time goes.

Several lanes run at once to keep the wall time down, each a process of its own (one Daemon per
process: a daemon treats every other child of its process as an orphan of its gateway's tree).
The measurement is timer-bound (seconds of probe timeouts and sleeps), so lanes sharing the CPU
move it by milliseconds at most. The last line printed is one JSON object. Stopped by SIGTERM,
SIGINT or SIGHUP, every lane stops its daemon, which stops its gateway (continued first).

    python scripts/bench/hang_latency.py [--stops N] [--lanes L] [--short] [--seed S]
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
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

import supervisor.daemon
from gatewayd_dev.benchlib import Stopped, end_tree, loop_signals, num, pct, raise_on_signals
from gatewayd_dev.harness import FAKE_GATEWAY, free_port_block
from supervisor import config, logs
from supervisor.core.model import ExitKind, ProbeOutcome
from supervisor.core.probestate import ProbeMachine, ProbeSettings, Verdict
from supervisor.daemon import Daemon
from supervisor.events import BootEnded, BootStarted, GatewayReady

GOAL_P99_MS = 12_000
DEFAULTS = ProbeSettings()
FIRST_STOP_S = 2.0  # after ready: past the boot's own burst (monitor connect, first snapshot)
STALL_S = 60.0  # no progress this long (no verdict, no ready): the lane fails
SHORT_STOPS, SHORT_LANES = 2, 4


@dataclass
class Observed:
    """One probe answer as the machine saw it."""

    at: float
    outcome: ProbeOutcome
    progress: bool
    verdict: Verdict


@dataclass
class RecordingMachine(ProbeMachine):
    """The daemon's probe machine, unchanged, with every observation kept for the report."""

    observed: list[Observed] = field(default_factory=list)

    def observe(self, outcome: ProbeOutcome, now: float, progress: bool) -> Verdict:
        verdict = super().observe(outcome, now, progress)
        self.observed.append(Observed(now, outcome, progress, verdict))
        return verdict


@dataclass
class Sample:
    verdict_ms: float
    ready_ms: float | None = None
    to_first_probe_ms: float = 0.0  # t0 -> the first probe that went unanswered was sent
    timeouts: int = 0  # unanswered probes until the verdict
    progress_first: bool = False  # the first of them saw CPU use or output: it did not count


@dataclass
class Lane:
    daemon: Daemon
    stops: int
    rng: random.Random
    samples: list[Sample] = field(default_factory=list)
    stopped: dict[int, tuple[int, float]] = field(default_factory=dict)  # boot -> (pid, t0)
    machines: dict[int, RecordingMachine] = field(default_factory=dict)  # boot -> its probe machine
    pids: set[int] = field(default_factory=set)  # every gateway pid the bus reported
    ended: set[int] = field(default_factory=set)
    pending: Sample | None = None  # verdict measured, ready again not yet
    pending_t0: float = 0.0
    unexpected: list[str] = field(default_factory=list)
    failure: str = ""
    done: bool = False
    progress_at: float = field(default_factory=time.monotonic)

    def on_event(self, ev: object) -> None:
        if isinstance(ev, BootStarted):
            self.progress_at = time.monotonic()
            self.pids.add(ev.pid)
        elif isinstance(ev, GatewayReady):
            self.progress_at = time.monotonic()
            watch = self.daemon.current  # published from the boot's probe loop: the current boot's
            if watch is not None and isinstance(watch.machine, RecordingMachine):
                self.machines[ev.boot] = watch.machine
            if self.pending is not None:
                self.pending.ready_ms = (ev.ready_at - self.pending_t0) * 1000
                self.samples.append(self.pending)
                self.pending = None
            if len(self.samples) >= self.stops:
                self.finish()
            elif not self.done:
                delay = self.rng.uniform(FIRST_STOP_S, FIRST_STOP_S + 2 * DEFAULTS.interval_s)
                asyncio.get_running_loop().call_later(delay, self.stop, ev.boot, ev.pid)
        elif isinstance(ev, BootEnded):
            self.progress_at = time.monotonic()
            self.ended.add(ev.boot)
            stop = self.stopped.get(ev.boot)
            if stop is None:
                if not self.daemon.stop_requested.is_set():
                    self.unexpected.append(f"boot {ev.boot} ended unasked: {ev.exit_kind}")
                return
            if ev.exit_kind != str(ExitKind.HANG_KILL):
                self.finish(f"a stopped gateway ended as {ev.exit_kind}, not as a hang kill")
                return
            sample = Sample((ev.exited_at - stop[1]) * 1000)
            self.pending, self.pending_t0 = self.explain(sample, ev.boot, stop[1]), stop[1]

    def explain(self, sample: Sample, boot: int, t0: float) -> Sample:
        """The probes after the stop, from the record of the stopped boot's probe machine."""
        machine = self.machines.get(boot)
        seen = [o for o in machine.observed if o.at > t0] if machine is not None else []
        unanswered = [o for o in seen if o.outcome is not ProbeOutcome.OK]
        if unanswered:
            sample.timeouts = len(unanswered)
            sample.progress_first = unanswered[0].progress
            # Sent about timeout_s before its answer (a timeout) was observed.
            sample.to_first_probe_ms = (unanswered[0].at - DEFAULTS.timeout_s - t0) * 1000
        return sample

    def stop(self, boot: int, pid: int) -> None:
        if self.done or boot in self.ended or boot in self.stopped:
            return
        t0 = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
            self.stopped[boot] = (pid, t0)

    def resume_stopped(self) -> None:
        """A stopped gateway cannot drain: continued, it stops the orderly way with its daemon."""
        for boot, (pid, _) in self.stopped.items():
            if boot not in self.ended:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)

    def finish(self, failure: str = "") -> None:
        self.failure = self.failure or failure
        if not self.done:
            self.done = True
            self.resume_stopped()
            self.daemon.request_stop()

    async def watch(self, deadline: float) -> None:
        while not self.done:
            await asyncio.sleep(1.0)
            if time.monotonic() - self.progress_at > STALL_S:
                self.finish(f"no verdict and no ready gateway for {STALL_S:g} s")
            elif time.monotonic() > deadline:
                self.finish("the lane's time limit passed")


async def run_lane(stops: int, seed: int, root: Path) -> Lane:
    (root / "gatewayd.toml").touch(mode=0o600)  # empty: no user config file or GATEWAYD_* env applies
    cfg = config.load(root / "gatewayd.toml", environ={}, cli={
        "state_dir": str(root / "state"), "gateway.command": [sys.executable, str(FAKE_GATEWAY)],
        "gateway.version": "2026.9.6", "gateway.port": free_port_block(),
        "gateway.state_dir": str(root / "gw-state"), "gateway.config_path": str(root / "gw-state" / "openclaw.json"),
        "gateway.env": {"FAKE_GW_VERSION": "2026.9.6"},
        # [probes] left at its defaults: they are what is measured.
        # Each hang kill a first crash after a healthy run (ready 10 ms is healthy): respawned at once.
        "supervise.stop_budget_s": 10.0, "supervise.jitter": 0.0, "supervise.healthy_after_s": 0.01,
        "supervise.crash_loop_window_s": 0.01, "supervise.crash_loop_crashes": 1000,
        "supervise.backoff_initial_s": 0.01, "supervise.backoff_max_s": 0.01, "supervise.crash_loop_delay_s": 0.01})
    if cfg.probes != DEFAULTS:
        raise RuntimeError(f"probe settings are not the defaults: {cfg.probes}")
    logs.setup(cfg.state_dir / "logs", cfg.log_level, console=False)
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENCLAW_", "GATEWAYD_"))}
    supervisor.daemon.ProbeMachine = RecordingMachine  # type: ignore[misc]
    daemon = Daemon(cfg, environ=child_env, install_signals=False)
    lane = Lane(daemon, stops, random.Random(seed))
    daemon.bus.subscribe(lane.on_event)
    loop = asyncio.get_running_loop()
    signalled: list[int] = []

    def on_signal(signum: int) -> None:
        signalled.append(signum)
        lane.finish(f"stopped by {signal.Signals(signum).name}")
        daemon.request_stop()  # a second signal: the daemon forces its gateway down

    undo = loop_signals(loop, on_signal)
    deadline = time.monotonic() + 30.0 + stops * (FIRST_STOP_S + 4 * DEFAULTS.interval_s + 30.0)
    watcher = asyncio.create_task(lane.watch(deadline))
    try:
        await daemon.run()
    except Exception as exc:  # reported as a failed run
        lane.failure = lane.failure or f"daemon failed: {exc!r}"
    finally:
        lane.done = True
        watcher.cancel()
        undo()
    if signalled:
        raise Stopped(signalled[0])
    return lane


def lane_main(stops: int, seed: int) -> dict[str, Any]:
    """One lane in this process; its samples as a JSON-able dict."""
    with tempfile.TemporaryDirectory(prefix="gatewayd-hang-bench-") as tmp:
        try:
            lane = asyncio.run(run_lane(stops, seed, Path(tmp)))
        finally:
            gc.collect()  # late asyncio complaints still reach the daemon's log file...
            logs.setup(None, console=False)  # ...which is closed before its directory goes
    left = leftovers(lane.pids)
    failure = lane.failure or (f"only {len(lane.samples)} of {stops} stops measured"
                               if len(lane.samples) < stops else "") or (
        f"{len(left)} gateway process(es) were left behind (now killed)" if left else "")
    return {"samples": [s.__dict__ for s in lane.samples], "unexpected": lane.unexpected, "failure": failure}


def run_lanes(stops: int, lanes: int, seed: int) -> list[dict[str, Any]]:
    """`lanes` worker processes, `stops` each; their last lines, in order."""
    per = [stops // lanes + (1 if i < stops % lanes else 0) for i in range(lanes)]
    procs: list[subprocess.Popen[str]] = []
    try:
        for i, n in enumerate(p for p in per if p):
            procs.append(subprocess.Popen([sys.executable, __file__, "--worker", "--stops", str(n),
                                           "--seed", str(seed + i)], stdout=subprocess.PIPE, text=True))
        outs = []
        for proc in procs:
            out, _ = proc.communicate()
            lines = out.strip().splitlines()
            try:
                outs.append(json.loads(lines[-1]))
            except (IndexError, ValueError):
                outs.append({"samples": [], "unexpected": [], "failure": f"lane exited {proc.returncode}"
                             " without a result"})
        return outs
    finally:
        for proc in procs:
            if proc.poll() is None:
                end_tree(proc.pid, 20.0)
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)


def leftovers(pids: set[int]) -> list[int]:
    """Gateways the bus reported that are still alive (checked to be the fake, not a reused pid): killed."""
    left = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            p = psutil.Process(pid)
            if p.status() != psutil.STATUS_ZOMBIE and str(FAKE_GATEWAY) in p.cmdline():
                p.kill()
                left.append(pid)
    return left


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stops", type=int, default=40)
    ap.add_argument("--lanes", type=int, default=4, help="daemons (processes) stopping their gateways at once")
    ap.add_argument("--short", action="store_true", help=f"{SHORT_LANES} lanes x {SHORT_STOPS} stops (make bench)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    raise_on_signals()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    stops, lanes = (SHORT_LANES * SHORT_STOPS, SHORT_LANES) if args.short else (args.stops, args.lanes)
    if stops < 1 or lanes < 1:
        ap.error("--stops and --lanes must be >= 1")
    if args.worker:
        try:
            out = lane_main(stops, seed)
        except (Exception, Stopped) as exc:  # the lane's failure, told to the parent on its last line
            out = {"samples": [], "unexpected": [], "failure": f"lane failed: {exc!r}"}
        print(json.dumps(out))
        return 1 if out["failure"] else 0
    t_start = time.monotonic()
    try:
        results = run_lanes(stops, min(lanes, stops), seed)
    except Stopped as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        print(json.dumps({"stops": 0, "ok": False, "error": str(exc)}))
        return 1
    samples = [Sample(**s) for r in results for s in r["samples"]]
    failures = [r["failure"] for r in results if r["failure"]]
    v = [s.verdict_ms for s in samples]
    w = [s.ready_ms for s in samples if s.ready_ms is not None]
    first = [s.to_first_probe_ms for s in samples]
    slow = [s for s in samples if s.progress_first]
    p50, p99 = pct(v, .5), pct(v, .99)
    ok = not failures and len(samples) == stops and p99 <= GOAL_P99_MS
    d = DEFAULTS
    print(f"{len(samples)} SIGSTOPs of the fake gateway, {min(lanes, stops)} lanes, default probes (interval"
          f" {d.interval_s:g} s, timeout {d.timeout_s:g} s, {d.hang_timeouts} timeouts without progress),"
          f" seed {seed}, {time.monotonic() - t_start:.0f} s" + (" (short form: few samples, p99 = max)"
                                                                 if args.short else ""))
    for name, values in (("stop -> hang verdict", v), ("stop -> ready again", w), ("stop -> 1st probe", first)):
        print(f"  {name:21}: " + "  ".join(f"{k} {pct(values, q) / 1000:6.2f} s"
                                           for k, q in (("p50", .5), ("p90", .9), ("p99", .99), ("max", 1))))
    print(f"  unanswered probes to the verdict: {sorted({s.timeouts for s in samples})}; first one saw CPU use"
          f" or output (so did not count) in {len(slow)} of {len(samples)}")
    # Probes run at a fixed rate: one that timed out is followed at once by the next.
    gap = max(0.0, d.interval_s - d.timeout_s)
    floor = d.hang_timeouts * d.timeout_s + (d.hang_timeouts - 1) * gap
    print(f"  by construction: 0..{d.interval_s:g} s to the next probe + {d.hang_timeouts} x {d.timeout_s:g} s"
          f" timeouts back to back (fixed-rate probing) = {floor:g}..{floor + d.interval_s:g} s"
          f" (+{max(d.interval_s, d.timeout_s):g} s when the first timeout saw progress)")
    print(f"goal verdict p99 <= {GOAL_P99_MS / 1000:g} s: {'met' if ok else 'MISSED'} (p99 {p99 / 1000:.3f} s"
          + (f", over by {(p99 - GOAL_P99_MS) / 1000:.3f} s" if p99 > GOAL_P99_MS else "") + ")")
    for r in results:
        for u in r["unexpected"]:
            print(f"note: {u} (not counted)")
    for f in failures:
        print(f"FAILED: {f}", file=sys.stderr)
    print(json.dumps({"stops": len(samples), "lanes": min(lanes, stops), "p50_ms": num(p50), "p99_ms": num(p99),
                      "max_ms": num(pct(v, 1)), "ready_p50_ms": num(pct(w, .5)), "ready_p99_ms": num(pct(w, .99)),
                      "first_probe_p99_ms": num(pct(first, .99)), "progress_on_first_timeout": len(slow),
                      "goal_p99_ms": GOAL_P99_MS, "short": args.short, "seed": seed, "ok": ok}))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
