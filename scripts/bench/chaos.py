#!/usr/bin/env python3
"""Chaos: break the supervised gateway at random moments, many times, and count what was lost or
done twice, with the fake model's request log as the witness (gatewayd_dev/chaos_judge.py).

Workload (two agents: `main` with heartbeats on at a long interval, `ops` with them off), per cycle
and agent: an hourly isolated agentTurn job fired by the gateway's own timer, an hourly one fired
by `cron.run`, a one-shot (every cycle, or every 4th on 2026.9.x real, whose own catch-up of an
interrupted one-shot takes ~120 s), and a main-session turn (an `agent` turn; every other cycle
the main agent's is a user's `chat.send`, which takes the queued events into its request); two system
events queued (`system-event`, to the default agent's main session) before the work starts; plus one
every-minute job per agent for the whole run (every 10 s on the fake, its clock compressed like every
other delay there). After each cycle's recovery, and at the end, a `chat.send` to the main session
hands over whatever is still queued (a user writing after the restart).
The model answers slowly while the work is in flight, so kills land mid-run.

Each cycle: wait until the work reaches the model, kill at a random moment within the model's
delay, then wait for the recovery to settle (the gateway ready again, no open obligation in
gatewayd's store, every request answered, a quiet period). Kills: kill -9 of the gateway (75 %),
SIGSTOP of the gateway (12.5 %: a hang gatewayd must kill), kill -9 of gatewayd itself (12.5 %,
restarted as launchd would; half of those also kill -9 the gateway while gatewayd is down).
`--freeze-share F` makes F of them SIGSTOPs instead (the kill -9 share shrinks; seeds give the same
run at the default).

    python scripts/bench/chaos.py --gateway fake [--version V ...] [--kills 200] [--seed S]
    python scripts/bench/chaos.py --gateway real --kills 20      # both real versions, by hand
    python scripts/bench/chaos.py --short                        # make bench: fake, 4 kills per version
    python scripts/bench/chaos.py --gateway real --version 2026.9.6 --freeze-share 0.875   # hang-kills

The last line is one JSON object: totals (kills, lost, doubled, notified_pct, woken_pct,
gatewayd_kills) and the same per version, with the system events (each reaches the model exactly
once) and the wakes (each agent with work cut in a boot woken once: sent and seen once, or covered
by a turn the restart caused), reported as `events_ok`; `ok` is the runs' and turns' verdict.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import sqlite3
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from gatewayd_dev import fake_model, sandbox
from gatewayd_dev.benchlib import Stopped, raise_on_signals
from gatewayd_dev.chaos_judge import (
    HOURLY_MANUAL,
    HOURLY_TIMER,
    MINUTE,
    ONE_SHOT,
    CronItem,
    GatewayExit,
    Request,
    TurnItem,
    Verdict,
    complete_witness,
    judge,
    judge_exits,
)
from gatewayd_dev.harness import FAKE_GATEWAY, Gatewayd, free_port_block
from supervisor.core.inflight import SAME_RUN_MS
from supervisor.gateway.launch import GatewayAuth, Secret
from supervisor.gateway.rpc import RpcClient

REPO = Path(__file__).resolve().parents[2]

AGENTS = ("main", "ops")
SYSTEM_AGENT = "main"  # the default agent: unaddressed system events land in its main session
VERSIONS = ("2026.9.6", "2026.2.26")
FAKE_TOKEN = "tok-" + "c" * 32
SHORT_KILLS = 4
# A killed gateway's exit seen later than this is a finding: kill -9 is seen at once (the child
# watcher, or an adopted gateway's pidfd/kqueue), a SIGSTOP by the hang verdict (6-8 s idle, 19 s
# seen on the real 2.26 with other gateways loading the machine); the listener check's 60 s is late.
LATE_EXIT_S = 45.0
GATEWAYD_SHARE = 0.125  # of the first blows: kill -9 of gatewayd
FREEZE_SHARE = 0.125  # ... SIGSTOP of the gateway (the rest: its kill -9)


@dataclass(frozen=True)
class Pace:
    """Timings per target: the fake's clock is compressed, the real gateway's is not."""

    slow_s: float  # the model's delay while work is in flight
    quick_s: float  # ... during recovery
    minute_ms: int  # the "every minute" job's period
    start_timeout_s: float  # the cycle's work reaching the model
    settle_timeout_s: float
    quiet_s: float  # no new request of the cycle's work for this long: settled
    restart_gap_s: float  # gatewayd down at most this long after its own kill
    oneshot_every: int  # a one-shot in every n-th cycle
    recovery_kill_s: float  # a second kill lands this long at most after the gateway is back
    horizon_s: float  # an interrupted run not re-run within this is lost
    slack_s: float  # a kill this soon after the answer left the model: the gateway may not have recorded it


FAKE_PACE = Pace(4.0, 0.3, 10_000, 15.0, 90.0, 1.5, 1.0, 1, 3.0, 300.0, 0.5)
# The real gateways finish a run (run log, session store) up to seconds after the answer under load.
REAL_PACE = Pace(12.0, 1.0, 60_000, 90.0, 420.0, 8.0, 3.0, 1, 20.0, 900.0, 2.0)


@dataclass
class Tally:
    kills: int = 0
    gateway_kill9: int = 0
    gateway_stops: int = 0
    gatewayd_kills: int = 0
    gateway_killed_while_down: int = 0
    unsettled: int = 0
    adoption_failures: int = 0  # gatewayd restarted while its gateway lived, and did not adopt it
    gateway_kill_times: list[float] = field(default_factory=list)
    signalled: dict[int, float] = field(default_factory=dict)  # gateway pid -> when it was killed or frozen
    stop_asked_at: float | None = None  # when gatewayd was asked to stop, at the end


def new_input(messages: Any) -> str:
    """What a request brings that its conversation did not have: every user message after the last
    assistant one. 2026.9.x appends an internal-context user message after the prompt itself, so
    the last user message alone is not the prompt (found on the real gateway)."""
    msgs = [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []
    last_assistant = max((i for i, m in enumerate(msgs) if m.get("role") == "assistant"), default=-1)
    return fake_model.message_text([m for m in msgs[last_assistant + 1:] if m.get("role") == "user"])


class EventTail:
    """gatewayd's JSON log, read incrementally (a long run writes a lot of it)."""

    def __init__(self, path: Path) -> None:
        self.path, self.pos, self.counts, self.last = path, 0, dict[str, int](), dict[str, dict[str, Any]]()

    def poll(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1
        self.pos += end
        for line in data[:end].splitlines():
            with contextlib.suppress(ValueError):
                e = json.loads(line)
                name = e.get("event")
                if isinstance(name, str):
                    self.counts[name] = self.counts.get(name, 0) + 1
                    self.last[name] = e

    def count(self, name: str) -> int:
        self.poll()
        return self.counts.get(name, 0)


def wait_for(pred: Any, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return bool(pred())


class Chaos:
    def __init__(self, target: str, version: str, root: Path, rng: random.Random, pace: Pace,
                 freeze_share: float = FREEZE_SHARE) -> None:
        self.target, self.version, self.root, self.rng, self.pace = target, version, root, rng, pace
        self.freeze_share = freeze_share
        self.legacy = version.startswith("2026.2")
        self.log, self.done_log = root / "model.jsonl", root / "model.done.jsonl"
        self.delay_file = root / "model-delay"
        self.tally = Tally()
        self.cron_items: list[CronItem] = []
        self.turns: list[TurnItem] = []
        self.cycle_jobs: list[list[str]] = []
        self.entries: dict[str, list[dict[str, Any]]] = {}  # the gateway's run log, per job
        self.watched_marks: list[str] = []
        self.queued_events: list[str] = []  # marks of the system events queued, in their order

    # ------------------------------------------------------------------------------------------ set-up
    def start(self) -> None:
        self.set_delay(self.pace.quick_s)
        self.server, self.thread, model_port = fake_model.start_fake_model(
            port=0, delay=self.pace.quick_s, log_path=self.log, delay_file=self.delay_file, done_log=self.done_log)
        port = free_port_block()
        base: dict[str, dict[str, Any]] = {
            "": {"log_level": "info"},
            "logs": {"max_bytes": 1 << 30},
            "supervise": {"crash_loop_crashes": 1000},  # kills on purpose (~5 a minute) are not a crash loop
            "recovery": {"retries_per_minute": 120},
        }
        if self.target == "fake":
            cfg = sandbox.build_config(self.version, gw_port=port, model_port=model_port, token=FAKE_TOKEN,
                                       hook_token="hook-" + "d" * 16, log_file=self.root / "gw.log",
                                       heartbeat_every="60m", agents=list(AGENTS))
            gw = self.root / "gw"
            gw.mkdir()
            (gw / "openclaw.json").write_text(json.dumps(cfg))
            self.token = FAKE_TOKEN
            env = {"FAKE_GW_VERSION": self.version, "OPENCLAW_STATE_DIR": str(gw),
                   "OPENCLAW_CONFIG_PATH": str(gw / "openclaw.json"), "FAKE_GW_BOOT_DELAY": "0.1",
                   "FAKE_GW_REPAIR_DELAY_MS": "300", "FAKE_GW_ONESHOT_CATCHUP_MS": "3000",
                   "FAKE_GW_MAIN_RESUME_MS": "500", "FAKE_GW_BACKOFF_MS": "5000",
                   # The session tag the judge finds notices by lives in the transcript; 2.x drops an
                   # interrupted turn, so a short transcript ends up holding notices only.
                   "FAKE_GW_TRANSCRIPT_KEEP": "100000"}
            base["gateway"] = {"command": [sys.executable, str(FAKE_GATEWAY)], "env": env,
                               "config_path": str(gw / "openclaw.json"), "state_dir": str(gw)}
            base["snapshot"] = {"interval_s": 0.5}
            base["recovery"].update(backoff_initial_s=0.5, unanswered_grace_s=3.0)
        else:
            sb = sandbox.prepare_sandbox(self.root / "gw", self.version, port, model_port, heartbeat_every="60m",
                                         agents=list(AGENTS))
            self.token = sb.token
            base["gateway"] = {"openclaw": str(sb.entry), "node": str(sb.node), "args": ["--bind", "loopback"],
                               "env": dict(sb.env), "config_path": str(sb.config_path), "state_dir": str(sb.state_dir)}
            base["supervise"].update(stop_budget_s=120.0)
            base["probes"] = {"interval_s": 1.0, "timeout_s": 2.0}
            base["snapshot"] = {"interval_s": 2.0}
            base["recovery"].update(backoff_initial_s=5.0, unanswered_grace_s=15.0)
        self.g = Gatewayd(self.root, port, base)
        self.events = EventTail(self.g.log_file)
        self.g.start()
        if not wait_for(lambda: self.events.count("rpc_monitor_connected") >= 1 or self.g.procs[-1].poll() is not None,
                        300, 0.2) or self.g.procs[-1].poll() is not None:
            raise RuntimeError(f"gatewayd never connected to the gateway; see {self.g.log_file} and {self.root}")
        # One finished turn per session first: the session's tag is then in every later request of
        # that session (2026.2.x keeps no trace of an interrupted turn, so its notice would carry none).
        warm = [self.turn(agent, "warm") for agent in AGENTS]
        self.rpc(self.fire([call for _, call in warm]))
        if not wait_for(lambda: all(self.watched([mark]) for mark, _ in warm), 120, 0.1) or not self.wait_answered(120):
            raise RuntimeError("the warm-up turns did not finish; see the model log")
        for agent in AGENTS:
            mark = f"K{agent}{uuid.uuid4().hex[:6]}"
            job = self.rpc(self.add_job(f"minute-{agent}", {"kind": "every", "everyMs": self.pace.minute_ms,
                                                             "anchorMs": int(time.time() * 1000) + 1000}, mark, agent))
            self.cron_items.append(CronItem(job, mark, MINUTE))

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            if self.g.procs and self.g.procs[-1].poll() is None:
                self.tally.stop_asked_at = time.time()
                self.g.procs[-1].send_signal(signal.SIGTERM)
                self.g.procs[-1].wait(180)
        self.g.cleanup()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    # ------------------------------------------------------------------------------------------ gateway RPC
    @contextlib.asynccontextmanager
    async def client(self) -> AsyncIterator[RpcClient]:
        rpc = RpcClient(f"ws://127.0.0.1:{self.g.port}/", GatewayAuth("token", Secret(self.token), "", False),
                        3 if self.legacy else 4)
        await rpc.connect()
        try:
            yield rpc
        finally:
            await rpc.close()

    def rpc(self, coro: Any) -> Any:
        return asyncio.run(coro)

    async def add_job(self, name: str, schedule: dict[str, Any], mark: str, agent: str) -> str:
        async with self.client() as rpc:
            job = await rpc.call("cron.add", {
                "name": name, "schedule": schedule, "sessionTarget": "isolated", "delivery": {"mode": "none"},
                "agentId": agent, "payload": {"kind": "agentTurn", "message": f"{mark} reply PONG",
                                              "timeoutSeconds": 600}})
            return str(job["id"] if "id" in job else job["job"]["id"])

    async def fire(self, calls: list[tuple[str, dict[str, Any]]]) -> None:
        """Start things whose answer comes late (2.x's blocking cron.run, an agent turn), all at
        once: sent one after another they would start seconds apart on 2.x."""
        async with self.client() as rpc:
            pending = [asyncio.ensure_future(rpc.call(method, params, timeout_s=30)) for method, params in calls]
            await asyncio.wait(pending, timeout=1)
            for call in pending:
                call.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def queue_events(self, tag: str, count: int = 2) -> None:
        async with self.client() as rpc:
            for _ in range(count):
                mark = f"{tag}E{uuid.uuid4().hex[:6]}"
                await rpc.call("system-event", {"text": f"EVENT {mark}"})
                self.queued_events.append(mark)

    def flush_events(self) -> None:
        """Hand over what is still queued (a `chat.send` turn drains the main session's queue on both
        versions), and wait for it to reach the model."""
        mark = f"FLUSH{uuid.uuid4().hex[:6]}"
        self.watched_marks.append(mark)
        self.rpc(self.fire([("chat.send", {"sessionKey": "agent:main:main", "message": f"{mark} reply PONG",
                                           "idempotencyKey": str(uuid.uuid4())})]))
        wait_for(lambda: bool(self.watched([mark])), self.pace.settle_timeout_s, 0.1)
        self.wait_answered(self.pace.settle_timeout_s)

    def turn(self, agent: str, mark_prefix: str, chat: bool = False) -> tuple[str, tuple[str, dict[str, Any]]]:
        """A main-session turn: an `agent` turn, or (`chat`) a user's `chat.send`, which hands the
        session's queued system events to the model in its request (an `agent` turn leaves them)."""
        mark = f"{mark_prefix}{agent}{uuid.uuid4().hex[:6]}"
        self.turns.append(TurnItem(agent, mark, f"AGENT-{agent}"))
        self.watched_marks.append(mark)
        message, key, idem = f"AGENT-{agent} {mark} reply PONG", f"agent:{agent}:main", str(uuid.uuid4())
        if chat:
            return mark, ("chat.send", {"sessionKey": key, "message": message, "idempotencyKey": idem})
        return mark, ("agent", {"message": message, "idempotencyKey": idem, "agentId": agent, "sessionKey": key})

    async def cron_runs(self, job_id: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        async with self.client() as rpc:
            offset = 0
            while True:
                page = await rpc.call("cron.runs", {"id": job_id, "limit": 50, "offset": offset})
                out += [e for e in page.get("entries", []) if isinstance(e, dict)]
                if not page.get("hasMore") or not isinstance(page.get("nextOffset"), int):
                    return out
                offset = page["nextOffset"]

    def collect_runs(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            if job_id not in self.entries:
                with contextlib.suppress(Exception):
                    self.entries[job_id] = self.rpc(self.cron_runs(job_id))

    async def remove(self, job_ids: list[str]) -> None:
        async with self.client() as rpc:
            for job_id in job_ids:
                with contextlib.suppress(Exception):
                    await rpc.call("cron.remove", {"id": job_id})

    # ------------------------------------------------------------------------------------------ witness
    def set_delay(self, seconds: float) -> None:
        self.delay_file.write_text(f"{seconds}\n")

    def requests(self) -> list[Request]:
        done: dict[int, float] = {}
        for e in fake_model.read_log(self.done_log):
            if e.get("ok"):  # an answer cut short (the caller gone) is no completion
                done.setdefault(int(e["n"]), float(e["ts"]))
        out = []
        for e in fake_model.read_log(self.log):
            last = new_input(e.get("messages"))
            out.append(Request(int(e["n"]), float(e["ts"]), done.get(int(e["n"])), last, e.get("text", "")))
        return out

    def answered_all(self, reqs: list[Request]) -> bool:
        ended = {int(e["n"]) for e in fake_model.read_log(self.done_log)}
        return all(r.n in ended for r in reqs)

    def watched(self, marks: list[str]) -> list[Request]:
        return [r for r in self.requests() if any(m in r.text for m in marks)]

    def wait_answered(self, timeout: float) -> bool:
        """Every request of the watched work answered, and none new for the quiet period."""
        def quiet() -> bool:
            reqs = self.watched(self.watched_marks + [f"AGENT-{a}" for a in AGENTS])
            return self.answered_all(reqs) and (
                not reqs or time.time() - max(r.ts for r in reqs) > self.pace.quiet_s)
        return wait_for(quiet, timeout, 0.1)

    def open_obligations(self) -> int:
        try:
            conn = sqlite3.connect(f"file:{self.g.state_dir / 'store.sqlite'}?mode=ro", uri=True, timeout=5)
            try:
                return sum(int(conn.execute(sql).fetchone()[0]) for sql in (
                    "SELECT count(*) FROM obligations WHERE state = 'open'",
                    "SELECT count(*) FROM requeues WHERE state IN ('planned', 'dispatched')",
                    "SELECT count(*) FROM agent_wakes WHERE state IN ('planned', 'dispatched', 'answered')"))
            finally:
                conn.close()
        except sqlite3.Error:
            return -1

    # ------------------------------------------------------------------------------------------ one cycle
    def gateway_pid(self) -> int:
        self.events.poll()
        spawned, adopted = self.events.last.get("gateway_spawned"), self.events.last.get("gateway_adopted")
        latest = max((e for e in (spawned, adopted) if e), key=lambda e: str(e.get("timestamp", "")))
        return int(latest["pid"])

    def cycle(self, n: int) -> str:
        tag = f"C{n:03d}"
        self.set_delay(self.pace.slow_s)
        marks: list[str] = []
        jobs_now: list[str] = []
        calls: list[tuple[str, dict[str, Any]]] = []
        soon = int(time.time() * 1000) + 1500
        with_oneshot = n % self.pace.oneshot_every == 0
        for agent in AGENTS:
            mark = f"{tag}T{agent}{uuid.uuid4().hex[:4]}"
            job = self.rpc(self.add_job(f"hourly-{mark}", {"kind": "every", "everyMs": 3_600_000, "anchorMs": soon},
                                        mark, agent))
            self.cron_items.append(CronItem(job, mark, HOURLY_TIMER))
            jobs_now.append(job)
            marks.append(mark)
            mark = f"{tag}M{agent}{uuid.uuid4().hex[:4]}"
            job = self.rpc(self.add_job(f"manual-{mark}", {"kind": "every", "everyMs": 3_600_000,
                                                           "anchorMs": soon + 3_000_000}, mark, agent))
            self.cron_items.append(CronItem(job, mark, HOURLY_MANUAL))
            jobs_now.append(job)
            calls.append(("cron.run", {"id": job}))
            marks.append(mark)
            if with_oneshot:
                mark = f"{tag}O{agent}{uuid.uuid4().hex[:4]}"
                at = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(soon / 1000 + 1))
                job = self.rpc(self.add_job(f"oneshot-{mark}", {"kind": "at", "at": at}, mark, agent))
                self.cron_items.append(CronItem(job, mark, ONE_SHOT))
                jobs_now.append(job)
                marks.append(mark)
            # Every other cycle the main agent's turn is a user's chat.send: the events queued
            # below go into its request, which the kill then cuts (the other cycles they sit
            # queued at the kill, for gatewayd to queue again).
            mark, call = self.turn(agent, f"{tag}S", chat=agent == SYSTEM_AGENT and n % 2 == 0)
            calls.append(call)
            marks.append(mark)
        self.watched_marks += marks
        self.rpc(self.queue_events(tag))
        self.rpc(self.fire(calls))

        def started() -> list[float]:
            return [r.ts for r in self.watched(marks) if any(m in r.last_user for m in marks)]
        # Everything at the model, or as much as reaches it while the first is still in flight
        # (2026.2.x runs one cron job at a time: the rest queue behind it).
        wait_for(lambda: len(started()) >= len(marks) or (started() and time.time() > min(started())
                 + 0.6 * self.pace.slow_s), self.pace.start_timeout_s, 0.05)
        starts = started() or [time.time()]
        # A random moment while the work is in flight: after the last start, before the first answer.
        earliest, latest = max(starts) + 0.05, min(starts) + 0.95 * self.pace.slow_s
        kill_at = self.rng.uniform(earliest, max(earliest, latest))
        time.sleep(max(0.0, kill_at - time.time()))  # the random moment itself: nothing to await
        kinds = [self.kill(during_recovery=False)]
        self.set_delay(self.pace.quick_s)
        # A second blow while gatewayd recovers: the gateway dies again under gatewayd's retries
        # and notices, or gatewayd dies with actions journaled (attempts counted across boots).
        if self.rng.random() < 0.3 and wait_for(self.back, self.pace.settle_timeout_s, 0.1):
            time.sleep(self.rng.uniform(0, self.pace.recovery_kill_s))  # a random moment of the recovery
            kinds.append(self.kill(during_recovery=True))
        settled = self.settle()
        if not settled:
            self.tally.unsettled += 1
        # A user writes after the restart: what is still queued (or queued again) reaches the model
        # now. Without it the gateway's cap of 20 queued events would drop the oldest by itself.
        self.flush_events()
        with open(self.root / "kills.jsonl", "a") as f:
            f.write(json.dumps({"cycle": n, "kinds": kinds, "settled": settled}) + "\n")
        # Jobs stay a few cycles, so a late re-run (9.x's own catch-up, ~2 min) still shows.
        self.cycle_jobs.append(jobs_now)
        if len(self.cycle_jobs) > 5:
            old = self.cycle_jobs.pop(0)
            self.collect_runs(old)  # the gateway's own record of them, before they go
            with contextlib.suppress(Exception):
                self.rpc(self.remove(old))
        return " then ".join(kinds) + ("" if settled else " (NOT SETTLED)")

    def back(self) -> bool:
        return self.events.count("rpc_monitor_connected") > self.ready_before

    def kill(self, during_recovery: bool) -> str:
        self.tally.kills += 1
        self.ready_before = self.events.count("rpc_monitor_connected")
        exits_before = self.events.count("gateway_exited")
        r = self.rng.random()
        if during_recovery:
            r = 0.0 if r < 0.6 else 1.0  # kill -9 of the gateway or of gatewayd, no freeze
        if r < 1 - GATEWAYD_SHARE - (0.0 if during_recovery else self.freeze_share):
            pid = self.gateway_pid()
            os.kill(pid, signal.SIGKILL)
            self.tally.gateway_kill_times.append(time.time())
            self.tally.signalled[pid] = time.time()
            self.tally.gateway_kill9 += 1
            self.expect_exits(exits_before, 1)
            return "kill -9 gateway" + (" (recovering)" if during_recovery else "")
        if r < 1 - GATEWAYD_SHARE:
            pid = self.gateway_pid()
            os.kill(pid, signal.SIGSTOP)
            self.tally.gateway_kill_times.append(time.time())
            self.tally.signalled[pid] = time.time()
            self.tally.gateway_stops += 1
            self.expect_exits(exits_before, 1)
            return "SIGSTOP gateway"
        gateway = self.gateway_pid()
        proc = self.g.procs[-1]
        proc.kill()
        proc.wait(30)
        self.tally.gatewayd_kills += 1
        what = "kill -9 gatewayd" + (" (recovering)" if during_recovery else "")
        time.sleep(self.rng.uniform(0, self.pace.restart_gap_s))  # launchd's restart comes when it comes
        also = self.rng.random() < 0.5
        if also:
            with contextlib.suppress(ProcessLookupError):
                os.kill(gateway, signal.SIGKILL)
                self.tally.gateway_kill_times.append(time.time())
                self.tally.signalled[gateway] = time.time()
                self.tally.gateway_killed_while_down += 1
                what += " + kill -9 gateway while it is down"
        adopted_before = self.events.count("gateway_adopted")
        self.g.start()
        if not also:
            # The gateway lives on: the new gatewayd must adopt that very process, not start another.
            ok = wait_for(lambda: self.events.count("gateway_adopted") > adopted_before, 60, 0.1)
            if not ok or int(self.events.last["gateway_adopted"]["pid"]) != gateway:
                self.tally.adoption_failures += 1
        return what

    def expect_exits(self, before: int, expected: int) -> None:
        """The kill's exit seen before the cycle goes on (whether each exit had a cause, and came in
        time, is judged at the end: `judge_exits`)."""
        wait_for(lambda: self.events.count("gateway_exited") >= before + expected, 60, 0.05)

    def settle(self) -> bool:
        if not wait_for(self.back, self.pace.settle_timeout_s, 0.1):
            return False
        deadline = time.monotonic() + self.pace.settle_timeout_s
        while time.monotonic() < deadline:
            if self.open_obligations() == 0 and self.wait_answered(max(1.0, deadline - time.monotonic())) \
                    and self.open_obligations() == 0:
                return True
            time.sleep(0.2)
        return False

    # ------------------------------------------------------------------------------------------ the verdict
    def dispatched_retries(self) -> dict[str, list[int]]:
        """When gatewayd sent cron.run, per job (its journal): on 2026.2.x, whose run log does not
        say which runs were manual, a start right after one is gatewayd's re-run."""
        try:
            conn = sqlite3.connect(f"file:{self.g.state_dir / 'store.sqlite'}?mode=ro", uri=True, timeout=5)
            try:
                rows = conn.execute("SELECT o.ref, a.dispatched_at_ms FROM actions a JOIN obligations o"
                                    " ON o.id = a.obligation_id WHERE a.kind = 'cron-run'").fetchall()
            finally:
                conn.close()
        except sqlite3.Error:
            return {}
        out: dict[str, list[int]] = {}
        for ref, at in rows:
            out.setdefault(str(ref), []).append(int(at))
        return out

    def with_run_history(self, requests: list[Request]) -> list[Request]:
        """The witness, completed by the gateway's own record of cut runs (see `complete_witness`)."""
        cut, starts = self.cut_runs()
        return complete_witness(requests, self.cron_items, self.entries, cut, starts, SAME_RUN_MS,
                                self.tally.gateway_kill_times)

    def cut_runs(self) -> tuple[dict[str, list[tuple[int, int]]], dict[str, list[tuple[int, int]]]]:
        """Runs the gateway listed as running (`runningAtMs` in its cron.list) when its boot ended:
        2026.2.x keeps no other trace of them, and a run cut before its model call (a 2.x isolated
        run spends seconds setting up first) is otherwise invisible to the witness."""
        try:
            conn = sqlite3.connect(f"file:{self.g.state_dir / 'store.sqlite'}?mode=ro", uri=True, timeout=5)
            try:
                rows = conn.execute("SELECT job_id, running_at_ms, state, boot_id FROM inflight_runs").fetchall()
            finally:
                conn.close()
        except sqlite3.Error:
            return {}, {}
        cut: dict[str, list[tuple[int, int]]] = {}
        starts: dict[str, list[tuple[int, int]]] = {}
        for job_id, at, state, boot in rows:
            starts.setdefault(str(job_id), []).append((int(at), int(boot)))
            if state == "interrupted":
                cut.setdefault(str(job_id), []).append((int(at), int(boot)))
        return cut, starts

    def events_verdict(self) -> dict[str, Any]:
        """Queued system events and agent wakes, with the model's requests as the witness: each event
        reaches the model in exactly one request's new input, and each wake gatewayd sent in exactly
        one (the wake's text names the agent and the dead gateway's end, unique per restart)."""
        reqs = self.requests()
        findings: list[str] = []
        seen = {m: [r.n for r in reqs if f"EVENT {m}" in r.last_user] for m in self.queued_events}
        lost = [m for m, ns in seen.items() if not ns]
        doubled = [m for m, ns in seen.items() if len(ns) > 1]
        findings += [f"event {m} never reached the model" for m in lost[:5]]
        findings += [f"event {m} reached the model in requests {seen[m]}" for m in doubled[:5]]
        try:
            conn = sqlite3.connect(f"file:{self.g.state_dir / 'store.sqlite'}?mode=ro", uri=True, timeout=5)
            try:
                wakes = conn.execute("SELECT boot_id, agent_id, state, text FROM agent_wakes").fetchall()
                unknown = int(conn.execute("SELECT count(*) FROM requeues WHERE state = 'unknown'").fetchone()[0])
                # Set aside where gatewayd was down across a main-session turn's end and the gateway
                # died before it came back: neither the row nor 2.x's history (a HEARTBEAT_OK turn is
                # cut from it) can tell that end from a turn that drained the queue.
                unwatched = [t for (t,) in conn.execute(
                    "SELECT text FROM requeues WHERE state = 'unknown' AND resolution LIKE '%not watched%'")]
                # Every agent with work cut in a boot (the judge above proves each cut item has its
                # obligation: none lost) is woken for it: its wake sent and seen, or covered by a
                # turn the restart caused. A conversation that had completed before the crash is
                # no active work.
                owed = set(conn.execute(
                    "SELECT boot_id, COALESCE(agent_id, 'main') FROM obligations WHERE kind = 'cron'"
                    " OR (COALESCE(session_kind, '') NOT IN ('cron', 'cron-run')"
                    " AND COALESCE(resolution, '') NOT LIKE '%completed before%')").fetchall())
            finally:
                conn.close()
        except sqlite3.Error as exc:
            wakes, unknown, owed, unwatched = [], 0, set(), []
            findings.append(f"the store could not be read: {exc}")
        # Sent wakes, settled done (a turn seen after them) or unconfirmed (none seen): either way
        # the model is the judge of whether it arrived, and of whether it arrived twice.
        sent = [(b, a, t) for b, a, st, t in wakes if st in ("done", "unconfirmed") and t]
        counts = [sum(1 for r in reqs if t.split(". Work of agent")[0] in r.last_user
                      and f"Work of agent {a} " in r.last_user) for _, a, t in sent]
        missing = [w for w, c in zip(sent, counts, strict=True) if c == 0]
        twice = [w for w, c in zip(sent, counts, strict=True) if c > 1]
        findings += [f"wake of {a} for boot {b} never reached the model" for b, a, _ in missing[:5]]
        findings += [f"wake of {a} for boot {b} reached the model more than once" for b, a, _ in twice[:5]]
        woken = {(b, a) for b, a, st, _ in wakes if st in ("done", "covered")} | \
            {(b, a) for (b, a, _), c in zip(sent, counts, strict=True) if c}
        unwoken = sorted(owed - woken - {(b, a) for b, a, _ in missing})  # a missing one is named above
        findings += [f"agent {a} had work cut in boot {b} and was not woken" for b, a in unwoken[:5]]
        return {"events_queued": len(self.queued_events), "events_lost": len(lost), "events_doubled": len(doubled),
                "events_set_aside": unknown,
                "events_lost_set_aside_unwatched": sum(1 for m in lost if any(f"EVENT {m}" in t for t in unwatched)),
                "wakes_sent": len(sent), "wakes_unconfirmed": sum(1 for w in wakes if w[2] == "unconfirmed"),
                "wakes_covered": sum(1 for w in wakes if w[2] == "covered"), "wakes_missing": len(missing),
                "wakes_doubled": len(twice), "agents_unwoken": len(unwoken), "event_findings": findings}

    def verdict(self) -> Verdict:
        self.collect_runs([item.job_id for item in self.cron_items])
        entries = self.entries
        sent = self.dispatched_retries()

        def regular(item: CronItem, req: Request) -> bool | None:
            """Was this start of a one-minute job a regular one (its schedule) or a re-run? 2026.9.x
            names a run started by cron.run `manual:...` in its run log; on 2026.2.x a start within
            10 s after gatewayd sent cron.run for the job is that re-run."""
            ts_ms = req.ts * 1000
            if self.legacy:
                return not any(at - 1000 <= ts_ms <= at + 10_000 for at in sent.get(item.job_id, []))
            near = [e for e in entries.get(item.job_id, []) if isinstance(e.get("runAtMs"), int)
                    and e["runAtMs"] - 1000 <= ts_ms <= e["runAtMs"] + 15_000]
            if near:
                run_id = max(near, key=lambda e: int(e["runAtMs"])).get("runId")
                return not (isinstance(run_id, str) and run_id.startswith("manual:"))
            return None

        (self.root / "run-history.json").write_text(json.dumps(entries))  # to judge again
        return judge(self.with_run_history(self.requests()), self.cron_items, self.turns,
                     self.tally.gateway_kill_times, regular, slack=self.pace.slack_s, horizon_s=self.pace.horizon_s)

    def gateway_exits(self) -> list[GatewayExit]:
        """gatewayd's `gateway_exited` lines (read after it stopped: its last one is the final stop's)."""
        out = []
        for e in self.g.named("gateway_exited"):
            with contextlib.suppress(KeyError, TypeError, ValueError):
                at = datetime.fromisoformat(str(e["timestamp"])).timestamp()
                out.append(GatewayExit(int(e["pid"]), str(e["exit_kind"]), at))
        return out

def ev_findings(ev: dict[str, Any]) -> list[str]:
    out = [f"{ev[k]} {k.replace('_', ' ')}" for k in ("events_lost", "events_doubled", "wakes_missing",
                                                      "wakes_doubled", "agents_unwoken") if ev.get(k)]
    return out + list(ev.get("event_findings", []))


def run_version(target: str, version: str, kills: int, seed: int, keep: bool,
                freeze_share: float = FREEZE_SHARE) -> dict[str, Any]:
    pace = FAKE_PACE if target == "fake" else REAL_PACE
    if target == "real" and not version.startswith("2026.2"):
        pace = Pace(**{**pace.__dict__, "oneshot_every": 4})
    root = REPO / ".cache" / "chaos" / f"{target}-{version}-{int(time.time())}"
    root.mkdir(parents=True)
    rng = random.Random(seed)
    chaos = Chaos(target, version, root, rng, pace, freeze_share)
    t0 = time.monotonic()
    try:
        chaos.start()
        for n in range(1, kills + 1):
            c0 = time.monotonic()
            what = chaos.cycle(n)
            print(f"[{target} {version}] {n}/{kills} {what}: settled after {time.monotonic() - c0:.1f} s", flush=True)
        chaos.settle()
        chaos.flush_events()
        (root / "gateway-kills.json").write_text(json.dumps(chaos.tally.gateway_kill_times))  # to judge again
        v = chaos.verdict()
        ev = chaos.events_verdict()
    finally:
        chaos.stop()
    t = chaos.tally
    exits = judge_exits(chaos.gateway_exits(), t.signalled, t.stop_asked_at, LATE_EXIT_S)
    result = {"kills": t.kills, "lost": v.lost, "doubled": v.doubled, "notified_pct": v.notified_pct,
              "woken_pct": v.woken_pct, "gatewayd_kills": t.gatewayd_kills, "gateway_kill9": t.gateway_kill9,
              "gateway_stops": t.gateway_stops, "gateway_killed_while_gatewayd_down": t.gateway_killed_while_down,
              "interrupted_runs": v.interrupted_runs, "ambiguous_runs": v.ambiguous_runs, "reruns": v.reruns,
              "adopted": v.adopted, "given_up": v.given_up, "interrupted_sessions": v.interrupted_sessions,
              "ambiguous_sessions": v.ambiguous_sessions, "resumed_by_gateway": v.resumed_by_gateway,
              "noticed_by_gatewayd": v.noticed_by_gatewayd, "unobserved_items": v.unobserved,
              "items": len(chaos.cron_items) + len(chaos.turns), "unsettled": t.unsettled,
              "adoption_failures": t.adoption_failures, "unexpected_gateway_exits": exits.unexpected,
              "late_gateway_exits": exits.late,
              "minutes": round((time.monotonic() - t0) / 60, 1), "seed": seed, **ev,
              "findings": (exits.findings + v.findings + ev_findings(ev))[:20]}
    for f in exits.findings + v.findings + ev_findings(ev):
        print(f"  {f}")
    if not keep and not v.findings and not exits.findings and not ev_findings(ev) and not t.unsettled:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"  kept for inspection: {root}")
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gateway", choices=("fake", "real"), default="fake")
    p.add_argument("--version", action="append", dest="versions")
    p.add_argument("--kills", type=int, default=None, help="per version (fake: 200, real: 20)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--short", action="store_true", help=f"fake, {SHORT_KILLS} kills per version (make bench)")
    p.add_argument("--keep", action="store_true", help="keep the run's folder")
    p.add_argument("--freeze-share", type=float, default=FREEZE_SHARE,
                   help=f"share of first blows that SIGSTOP the gateway (0-{1 - GATEWAYD_SHARE}; the rest but "
                        f"gatewayd's {GATEWAYD_SHARE} are kill -9)")
    a = p.parse_args()
    raise_on_signals()  # SIGTERM, SIGINT, SIGHUP: still stop gatewayd and its gateway
    if not 0 <= a.freeze_share <= 1 - GATEWAYD_SHARE:
        p.error(f"--freeze-share: {a.freeze_share} is not within 0-{1 - GATEWAYD_SHARE}")
    if a.short and a.gateway != "fake":
        p.error("--short is the fake gateway's")
    kills = a.kills or (SHORT_KILLS if a.short else 20 if a.gateway == "real" else 200)
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1 << 30)
    per: dict[str, Any] = {}
    try:
        for version in a.versions or VERSIONS:
            per[version] = run_version(a.gateway, version, kills, seed, a.keep, a.freeze_share)
            print(f"[{a.gateway} {version}] " + json.dumps({k: v for k, v in per[version].items()
                                                            if k != "findings"}), flush=True)
    except (Exception, Stopped) as exc:  # gatewayd and its gateway are stopped by now (run_version)
        print(f"FAILED: {exc!r}", file=sys.stderr)
        print(json.dumps({"target": a.gateway, "seed": seed, "ok": False, "error": repr(exc)}))
        return 1
    if a.short:
        print(f"short form: {kills} kills per version (a smoke test of lost/doubled, not a soak)")
    total = {"target": a.gateway, "kills": sum(r["kills"] for r in per.values()),
             "lost": sum(r["lost"] for r in per.values()), "doubled": sum(r["doubled"] for r in per.values()),
             "notified_pct": min(r["notified_pct"] for r in per.values()),
             "woken_pct": min(r["woken_pct"] for r in per.values()),
             "gatewayd_kills": sum(r["gatewayd_kills"] for r in per.values()), "versions": per}
    clean = all(r["unsettled"] == 0 and r["adoption_failures"] == 0 and r["unexpected_gateway_exits"] == 0
                and r["late_gateway_exits"] == 0 and r["interrupted_runs"] > 0 for r in per.values())
    # Reported, not gating `ok` (which stays the runs' and turns' verdict): on 2026.9.x system events
    # re-queued behind the gateway's own resume, or drained into a turn the crash cut, are still
    # lost (docs/chaos-log.md, seeds 2027 and 2828; issue 15 is open for it).
    total["events_ok"] = not any(ev_findings(r) for r in per.values())
    total["ok"] = total["lost"] == 0 and total["doubled"] == 0 and total["woken_pct"] == 100.0 \
        and total["notified_pct"] == 100.0 and clean
    print(json.dumps(total))
    return 0 if total["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
