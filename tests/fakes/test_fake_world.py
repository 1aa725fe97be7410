"""The fake gateway's world (gatewayd_dev/fake_world.py) against gatewayd_dev/fake_model.py on loopback, with the
startup delays compressed: runs reach the model, and a kill -9 mid-run is followed by each version's measured
startup behaviour. The fake model's request log is the witness. Every process a test starts is killed by it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from gatewayd_dev import fake_model, sandbox
from gatewayd_dev.harness import FAKE_GATEWAY, free_port_block
from supervisor.errors import GatewayError, GatewayRpcError
from supervisor.gateway.launch import GatewayAuth, Secret
from supervisor.gateway.rpc import Event, RpcClient

FAKE = FAKE_GATEWAY
MODERN, LEGACY = "2026.9.6", "2026.2.26"
VERSIONS = (MODERN, LEGACY)
INTERRUPTED = "cron: job interrupted by gateway restart"
REPAIR_MS, CATCHUP_MS, RESUME_MS, BACKOFF_MS = 1000, 1800, 300, 2000  # repair: time to look before it
COMPRESSED = {"FAKE_GW_BOOT_DELAY": "0.05", "FAKE_GW_REPAIR_DELAY_MS": str(REPAIR_MS),
              "FAKE_GW_ONESHOT_CATCHUP_MS": str(CATCHUP_MS), "FAKE_GW_MAIN_RESUME_MS": str(RESUME_MS),
              "FAKE_GW_BACKOFF_MS": str(BACKOFF_MS)}

pytestmark = pytest.mark.timeout(60)


# ---------------------------------------------------------------------------------------------- helpers
async def wait_for(predicate: Callable[[], Awaitable[Any]], within: float, what: str, step: float = 0.05) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(step)


@dataclass
class Model:
    """gatewayd_dev/fake_model.py in a thread, with its own request log and delay file."""

    port: int
    log: Path
    delay_file: Path

    def set_delay(self, seconds: float) -> None:
        self.delay_file.write_text(f"{seconds}\n")

    def requests(self, mark: str = "") -> list[dict[str, Any]]:
        return [r for r in fake_model.read_log(self.log) if mark in r["text"]]

    async def wait_request(self, mark: str, count: int = 1, within: float = 20.0) -> list[dict[str, Any]]:
        async def seen() -> list[dict[str, Any]] | None:
            hits = self.requests(mark)
            return hits if len(hits) >= count else None
        result: list[dict[str, Any]] = await wait_for(seen, within, f"{count} model request(s) with {mark!r}")
        return result


@contextlib.contextmanager
def running_model(root: Path, delay: float = 0.0) -> Iterator[Model]:
    root.mkdir(parents=True, exist_ok=True)
    log, delay_file = root / "model.jsonl", root / "model-delay"
    delay_file.write_text(f"{delay}\n")
    server, thread, port = fake_model.start_fake_model(port=0, delay=delay, log_path=log, delay_file=delay_file)
    try:
        yield Model(port, log, delay_file)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@dataclass
class FakeGateway:
    """One fake gateway root (state dir, config, port) that can be started, killed and started again."""

    root: Path
    version: str
    model: Model
    env_extra: dict[str, str]
    heartbeat_every: str = "0m"
    port: int = field(default_factory=free_port_block)
    token: str = field(default_factory=lambda: "tok-" + uuid.uuid4().hex)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def legacy(self) -> bool:
        return self.version.startswith("2026.2")

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    def write_config(self) -> Path:
        cfg = sandbox.build_config(self.version, gw_port=self.port, model_port=self.model.port, token=self.token,
                                   hook_token="hook-x", log_file=self.root / "gw.log",
                                   heartbeat_every=self.heartbeat_every)
        path = self.root / "openclaw.json"
        path.write_text(json.dumps(cfg, indent=2))
        return path

    def start(self) -> subprocess.Popen[bytes]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FAKE_GW_", "OPENCLAW_"))}
        env |= {"FAKE_GW_VERSION": self.version, "OPENCLAW_STATE_DIR": str(self.state_dir),
                "OPENCLAW_CONFIG_PATH": str(self.write_config()), "OPENCLAW_GATEWAY_TOKEN": self.token,
                **self.env_extra}
        out = open(self.root / f"gw-{len(self.procs)}.log", "wb")  # noqa: SIM115 (the child holds it)
        argv = [sys.executable, str(FAKE), "gateway", "run", "--port", str(self.port), "--bind", "loopback"]
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        self.procs.append(proc)
        return proc

    def kill9(self) -> None:
        proc = self.procs[-1]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def cleanup(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def output(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.root.glob("gw-*.log")))

    async def world(self) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=5) as client:
            resp = await client.get(f"http://127.0.0.1:{self.port}/__fake/world")
        data: dict[str, Any] = resp.json()
        return data

    def world_file(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.state_dir / "fake-world.json").read_text())
        return data

    async def connect(self, on_event: Callable[[Event], None] | None = None, within: float = 20.0) -> RpcClient:
        """An RpcClient (gatewayd's own) once the gateway accepts it."""
        auth = GatewayAuth("token", Secret(self.token), "test", False)

        async def attempt() -> RpcClient | None:
            assert self.procs[-1].poll() is None, f"fake gateway exited: {self.output()[-2000:]}"
            rpc = RpcClient(f"ws://127.0.0.1:{self.port}/", auth, 3 if self.legacy else 4, on_event=on_event,
                            connect_timeout_s=2.0)
            try:
                await rpc.connect()
            except GatewayError:
                return None
            return rpc

        rpc: RpcClient = await wait_for(attempt, within, "the fake gateway to accept a connection", step=0.1)
        return rpc


@contextlib.asynccontextmanager
async def world_of(tmp_path: Path, version: str, *, delay: float = 0.0, heartbeat_every: str = "0m",
                   **env: str) -> AsyncIterator[tuple[FakeGateway, Model]]:
    with running_model(tmp_path / "model", delay) as model:
        gw = FakeGateway(tmp_path / "gw", version, model, {**COMPRESSED, **env}, heartbeat_every)
        gw.root.mkdir(parents=True, exist_ok=True)
        try:
            yield gw, model
        finally:
            gw.cleanup()


def iso_in(ms: int) -> str:
    return datetime.fromtimestamp((time.time() * 1000 + ms) / 1000, UTC).isoformat().replace("+00:00", "Z")


async def add_job(rpc: RpcClient, message: str, schedule: dict[str, Any] | None = None) -> dict[str, Any]:
    job: dict[str, Any] = await rpc.call("cron.add", {
        "name": f"job-{uuid.uuid4().hex[:6]}", "schedule": schedule or {"kind": "every", "everyMs": 3_600_000},
        "sessionTarget": "isolated", "wakeMode": "now", "delivery": {"mode": "none"},
        "payload": {"kind": "agentTurn", "message": message, "timeoutSeconds": 120}})
    return job


async def job_of(rpc: RpcClient, job_id: str) -> dict[str, Any] | None:
    listing = await rpc.call("cron.list", {"includeDisabled": True})
    return next((j for j in listing["jobs"] if j["id"] == job_id), None)


async def runs_of(rpc: RpcClient, job_id: str) -> list[dict[str, Any]]:
    page = await rpc.call("cron.runs", {"id": job_id, "limit": 50, "sortDir": "asc"})
    entries: list[dict[str, Any]] = page["entries"]
    return entries


def start_run(rpc: RpcClient, job_id: str) -> asyncio.Task[Any]:
    """cron.run in the background (it blocks until the run ends on 2026.2.x)."""
    return asyncio.ensure_future(rpc.call("cron.run", {"id": job_id, "mode": "force"}, timeout_s=60))


async def settle(task: asyncio.Task[Any]) -> None:
    """A background call whose connection died with the gateway: collect its error."""
    with contextlib.suppress(GatewayError, asyncio.CancelledError):
        await asyncio.wait_for(task, 5)


# ---------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("version", VERSIONS)
async def test_cron_run_reaches_the_model_and_ends_ok(tmp_path: Path, version: str) -> None:
    mark = f"CRON-{uuid.uuid4().hex[:8]}"
    async with world_of(tmp_path, version, delay=0.3) as (gw, model):
        gw.start()
        events: list[Event] = []
        rpc = await gw.connect(events.append)
        try:
            job = await add_job(rpc, f"{mark} reply PONG")
            assert job["state"]["nextRunAtMs"] == job["schedule"]["anchorMs"] + 3_600_000
            answer = await rpc.call("cron.run", {"id": job["id"], "mode": "force"}, timeout_s=30)
            if gw.legacy:
                assert answer == {"ok": True, "ran": True}  # answered once the run has ended
            else:
                assert answer["enqueued"] is True and answer["runId"].startswith(f"manual:{job['id']}:")
                info = await rpc.call("system.info")
                assert answer["processInstanceId"] == info["processInstanceId"]

            async def finished() -> list[dict[str, Any]]:
                return await runs_of(rpc, job["id"])
            [entry] = await wait_for(finished, 10, "the run-log entry")
            assert entry["status"] == "ok" and entry["summary"] == "PONG"
            assert entry["sessionKey"].startswith(f"agent:main:cron:{job['id']}:run:")
            assert [r["text"].count(mark) for r in model.requests(mark)] == [1]
            after = await job_of(rpc, job["id"])
            assert after is not None and after["state"]["lastRunStatus"] == "ok"
            assert "runningAtMs" not in after["state"]
            rows = (await rpc.call("sessions.list", {}))["sessions"]
            assert [r["key"] for r in rows] == [f"agent:main:cron:{job['id']}"]
            async def cron_finished() -> bool:
                return any(e.name == "cron" and e.payload["action"] == "finished" for e in events)
            await wait_for(cron_finished, 5, "the cron finished event")
            lifecycle = [e.payload for e in events if e.name == "agent" and e.payload["stream"] == "lifecycle"]
            # 2026.9.x names the run's model as it calls it
            assert [p["data"]["phase"] for p in lifecycle] == (["start", "model", "end"] if version.startswith("2026.9")
                                                               else ["start", "end"])
        finally:
            await rpc.close()
        assert gw.world_file()["runLog"][0]["status"] == "ok"


@pytest.mark.parametrize("version", VERSIONS)
async def test_kill_mid_run_of_a_recurring_job(tmp_path: Path, version: str) -> None:
    """9.x: interrupted run recorded as an error at ready + repair delay, not re-run; 2.x: cleared silently."""
    mark = f"HOURLY-{uuid.uuid4().hex[:8]}"
    async with world_of(tmp_path, version, delay=30) as (gw, model):
        gw.start()
        rpc = await gw.connect()
        job = await add_job(rpc, f"{mark} reply PONG")
        slot = job["state"]["nextRunAtMs"]
        run = start_run(rpc, job["id"])
        await model.wait_request(mark)
        running_at = gw.world_file()["jobs"][-1]["state"]["runningAtMs"]
        assert isinstance(running_at, int)
        gw.kill9()
        await settle(run)
        await rpc.close()
        model.set_delay(0.1)

        gw.start()
        rpc = await gw.connect()
        try:
            state = (await job_of(rpc, job["id"]) or {})["state"]
            if gw.legacy:
                assert "runningAtMs" not in state and "lastRunStatus" not in state and "lastError" not in state
                assert state["nextRunAtMs"] == slot  # the next regular slot, unchanged
                assert await runs_of(rpc, job["id"]) == []
            else:
                assert state["runningAtMs"] == running_at  # until the startup repair

                async def repaired_state() -> dict[str, Any] | None:
                    j = await job_of(rpc, job["id"])
                    return j["state"] if j and "runningAtMs" not in j["state"] else None
                state = await wait_for(repaired_state, 10, "the startup repair")
                assert (state["lastRunStatus"], state["lastStatus"], state["lastError"]) == (
                    "error", "error", INTERRUPTED)
                assert state["consecutiveErrors"] == 1 and state["lastRunAtMs"] == running_at
                world = await gw.world()
                assert world["repairedAtMs"] - world["readyAtMs"] >= REPAIR_MS
                assert state["nextRunAtMs"] == max(slot, world["repairedAtMs"] + BACKOFF_MS)
                [entry] = await runs_of(rpc, job["id"])
                assert (entry["status"], entry["error"], entry["runAtMs"]) == ("error", INTERRUPTED, running_at)
            await asyncio.sleep(0.6)  # the witness window: a re-run would reach the model by now
            assert len(model.requests(mark)) == 1, "the interrupted run is not re-run"
        finally:
            await rpc.close()


@pytest.mark.parametrize("version", VERSIONS)
async def test_kill_mid_run_of_a_one_shot(tmp_path: Path, version: str) -> None:
    """Both re-run an interrupted one-shot and delete it: 2.x at once at startup (one ok entry left),
    9.x at its startup catch-up (ready + catch-up delay), after recording the interrupted error."""
    mark = f"ONCE-{uuid.uuid4().hex[:8]}"
    async with world_of(tmp_path, version, delay=30) as (gw, model):
        gw.start()
        rpc = await gw.connect()
        job = await add_job(rpc, f"{mark} reply PONG", {"kind": "at", "at": iso_in(200)})
        assert job["deleteAfterRun"] is True
        await model.wait_request(mark)
        gw.kill9()
        await rpc.close()
        model.set_delay(0.2)

        gw.start()
        if gw.legacy:
            await model.wait_request(mark, count=2, within=5)
        rpc = await gw.connect()
        try:
            if not gw.legacy:
                async def interrupted() -> dict[str, Any] | None:
                    j = await job_of(rpc, job["id"])
                    return j["state"] if j and j["state"].get("lastError") == INTERRUPTED else None
                state = await wait_for(interrupted, 10, "the one-shot marked interrupted")
                world = await gw.world()
                assert state["startupCatchupAtMs"] == world["readyAtMs"] + CATCHUP_MS
                assert len(model.requests(mark)) == 1
                await model.wait_request(mark, count=2, within=10)
                assert time.time() * 1000 >= state["startupCatchupAtMs"]

            async def gone() -> bool:
                return await job_of(rpc, job["id"]) is None
            await wait_for(gone, 10, "the one-shot deleted after its run")
            statuses = [e["status"] for e in await runs_of(rpc, job["id"])]
            assert statuses == (["ok"] if gw.legacy else ["error", "ok"])
            await asyncio.sleep(0.5)  # the witness window: a third run would reach the model by now
            assert len(model.requests(mark)) == 2
        finally:
            await rpc.close()


@pytest.mark.parametrize("version", VERSIONS)
async def test_main_session_turn_resumed_on_modern_only(tmp_path: Path, version: str) -> None:
    mark = f"MAIN-{uuid.uuid4().hex[:8]}"
    async with world_of(tmp_path, version, delay=30) as (gw, model):
        gw.start()
        events: list[Event] = []
        rpc = await gw.connect(events.append)
        accepted = await rpc.call("agent", {"message": f"{mark} reply PONG", "idempotencyKey": mark,
                                            "agentId": "main", "sessionKey": "agent:main:main"})
        assert accepted["status"] == "accepted" and accepted["runId"] == mark
        assert ("sessionKey" in accepted) is not gw.legacy
        await model.wait_request(mark)
        rows = (await rpc.call("sessions.list", {}))["sessions"]
        if gw.legacy:
            assert "hasActiveRun" not in rows[0]
            assert any(e.payload.get("data", {}).get("phase") == "start" for e in events if e.name == "agent")
        else:
            assert rows[0]["hasActiveRun"] is True and "activeRunIds" not in rows[0]
        gw.kill9()
        await rpc.close()
        model.set_delay(0.1)

        gw.start()
        rpc = await gw.connect()
        try:
            if gw.legacy:
                await asyncio.sleep(0.8)  # the witness window: well past the resume delay (0.3 s), no resume came
                assert len(model.requests(mark)) == 1, "2026.2.x does not resume the turn"
                [row] = (await rpc.call("sessions.list", {}))["sessions"]
                assert row["key"] == "agent:main:main"
            else:
                [_, resumed] = await model.wait_request(mark, count=2, within=10)
                assert "interrupted by a gateway restart" in resumed["text"]
                world = await gw.world()
                assert resumed["ts"] * 1000 >= world["readyAtMs"] + RESUME_MS

                async def idle() -> bool:
                    [row] = (await rpc.call("sessions.list", {}))["sessions"]
                    return row["hasActiveRun"] is False and row["activeRunIds"] == []
                await wait_for(idle, 10, "the resumed turn to end")
        finally:
            await rpc.close()


async def test_wake_on_legacy_with_heartbeats_off_runs_no_turn(tmp_path: Path) -> None:
    mark = f"WAKE-{uuid.uuid4().hex[:8]}"
    async with world_of(tmp_path, LEGACY) as (gw, model):
        gw.start()
        rpc = await gw.connect()
        try:
            assert await rpc.call("wake", {"mode": "now", "text": mark}) == {"ok": True}
            with pytest.raises(GatewayRpcError, match="unexpected property 'sessionKey'"):
                await rpc.call("wake", {"mode": "now", "text": mark, "sessionKey": "agent:main:main"})
            await asyncio.sleep(0.6)  # the witness window: a heartbeat turn would reach the model by now
            assert model.requests() == [], "no heartbeat turn: heartbeats are off (0m)"
            assert await rpc.call("last-heartbeat") is None
            assert (await rpc.call("status"))["queuedSystemEvents"] == [mark]
        finally:
            await rpc.close()


@pytest.mark.parametrize(("version", "every"), [(MODERN, "0m"), (LEGACY, "30m")])
async def test_wake_now_drains_queued_events_into_a_heartbeat_turn(tmp_path: Path, version: str,
                                                                   every: str) -> None:
    """9.x always (targeted wake, even with heartbeats off); 2.x when heartbeats are on. An `agent` turn does
    not carry the queued events; system events queued before a kill are lost."""
    early, queued, later = (f"{w}-{uuid.uuid4().hex[:8]}" for w in ("EARLY", "QUEUED", "LATER"))
    async with world_of(tmp_path, version, heartbeat_every=every) as (gw, model):
        gw.start()
        rpc = await gw.connect()
        await rpc.call("system-event", {"text": early})
        gw.kill9()
        await rpc.close()
        gw.start()
        rpc = await gw.connect()
        try:
            assert (await rpc.call("status")).get("queuedSystemEvents", []) == [], "lost with the process"
            await rpc.call("wake", {"mode": "next-heartbeat", "text": queued})
            assert (await rpc.call("status"))["queuedSystemEvents"] == [queued]
            await rpc.call("agent", {"message": f"TURN {later}", "idempotencyKey": later})
            [turn] = await model.wait_request(later)
            assert queued not in turn["text"]
            await rpc.call("wake", {"mode": "now", "text": later})
            [beat] = await model.wait_request(queued)
            for text in (queued, later):  # as measured on 2026.9.6: "System: [2026-11-26 18:33:25 UTC] <text>"
                assert re.search(rf"System: \[\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC\] {text}", beat["text"])
            assert early not in beat["text"]
            heartbeat = await wait_for(lambda: rpc.call("last-heartbeat"), 5, "last-heartbeat")
            assert heartbeat["reason"] == "wake" and heartbeat["ts"] >= beat["ts"] * 1000
            assert (await rpc.call("status")).get("queuedSystemEvents", []) == []
        finally:
            await rpc.close()


@pytest.mark.parametrize("version", VERSIONS)
async def test_scheduler_runs_every_jobs_at_their_slots_once(tmp_path: Path, version: str) -> None:
    """An `every` job runs at anchor + k * everyMs; a slot that comes while the run is still going does
    not start it twice."""
    mark = f"TICK-{uuid.uuid4().hex[:8]}"
    async with world_of(tmp_path, version, delay=1.5) as (gw, model):
        gw.start()
        rpc = await gw.connect()
        try:
            job = await add_job(rpc, f"{mark} reply PONG", {"kind": "every", "everyMs": 300})
            anchor = job["schedule"]["anchorMs"]
            [first] = await model.wait_request(mark, within=5)
            assert first["ts"] * 1000 >= anchor + 300
            # The witness window: slots at +600 and +900 pass while the first run is still going; a
            # second start would reach the model.
            await asyncio.sleep(0.7)
            assert len(model.requests(mark)) == 1
            world = await gw.world()
            assert list(world["runningJobs"]) == [job["id"]]
            await model.wait_request(mark, count=2, within=5)
        finally:
            await rpc.close()


async def test_cron_run_modes_on_modern(tmp_path: Path) -> None:
    async with world_of(tmp_path, MODERN) as (gw, _):
        gw.start()
        rpc = await gw.connect()
        try:
            job = await add_job(rpc, "MODES reply PONG")
            await rpc.call("cron.update", {"id": job["id"], "patch": {"enabled": False}})
            answer = await rpc.call("cron.run", {"id": job["id"], "mode": "if-enabled"})
            assert (answer["ok"], answer["ran"], answer["reason"]) == (True, False, "disabled")
            with pytest.raises(GatewayRpcError, match="Gateway process changed"):
                await rpc.call("cron.run", {"id": job["id"], "expectedProcessInstanceId": "other"})
            due = await rpc.call("cron.run", {"id": job["id"], "mode": "due"})
            assert due["reason"] == "not-due"
            builtins = [j["name"] for j in (await rpc.call("cron.list", {"includeDisabled": True}))["jobs"]]
            assert "heartbeat-main" in builtins
        finally:
            await rpc.close()
