"""One contract, two implementations: the SAME assertions against the fake gateway (tests/fakes, both
versions) and against the real gateways (marked e2e; one module-scoped real gateway per version, never two
at once). What is asserted is what gatewayd relies on, parsed where it matters with gatewayd's own parser
(supervisor.core.inflight) and client (supervisor.gateway.rpc.RpcClient):

- the handshake: hello-ok protocol 4/3, scopes echoed (9.x) or no `auth` at all (2.x), bootId on 9.x only;
- `health` answers, with the heartbeat of the default agent as each version reports "every: 0m";
- `sessions.list` shapes and params (2.x rejects activeOnly/offset), `cron.list` paging fields;
- `cron.add` / `cron.run` answers per version (9.x enqueues at once with a runId and processInstanceId,
  accepts mode if-enabled and expectedProcessInstanceId; 2.x blocks until the run ends and rejects both);
- a cron run in flight: `state.runningAtMs` (parse_runs), a session row `agent:main:cron:<jobId>`, active
  per parse_sessions (9.x: hasActiveRun; 2.x: LegacyActivity fed with the agent lifecycle events), the agent
  lifecycle start/end events with runId + sessionKey, and afterwards a `cron.runs` entry with status ok;
- a main-session turn: accepted, in flight, ended, and an idempotency key that does not start a second turn;
  on 2.x its `chat.history` tells the turn in flight from the turn ended (legacy_turn_ended);
- system events: queued and listed in `status.queuedSystemEvents`; a targeted `wake now` drains them into a
  heartbeat turn on 9.x; on 2.x with heartbeats off it answers ok and no turn reaches the model.

The real part runs only when selected: `pytest -m e2e tests/contract` (or CONTRACT_REAL=1).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from gatewayd_dev.harness import MARK, free_port_block, marked_processes
from supervisor.core.inflight import (
    LegacyActivity,
    legacy_turn_ended,
    merge_legacy_cron_sessions,
    parse_runs,
    parse_sessions,
)
from supervisor.errors import GatewayError, GatewayRpcError
from supervisor.gateway.launch import GatewayAuth, Secret
from supervisor.gateway.rpc import Event, RpcClient, paged
from tests.fakes.test_fake_world import COMPRESSED, FakeGateway, Model, running_model, sandbox, wait_for

MODERN, LEGACY = "2026.9.6", "2026.2.26"
SCOPES = ("operator.read", "operator.write", "operator.admin")
MAIN = "agent:main:main"


def real(version: str) -> Any:
    # Under xdist one worker runs all of a version's tests: its module-scoped gateway starts once.
    group = pytest.mark.xdist_group(f"contract-{version}")
    return pytest.param(("real", version), id=f"real-{version}",
                        marks=[pytest.mark.e2e, pytest.mark.timeout(600), group])


TARGETS = [pytest.param(("fake", MODERN), id=f"fake-{MODERN}"), pytest.param(("fake", LEGACY), id=f"fake-{LEGACY}"),
           real(MODERN), real(LEGACY)]

pytestmark = pytest.mark.timeout(60)


@dataclass
class Target:
    kind: str  # "fake" | "real"
    version: str
    port: int
    token: str
    model: Model
    proc: subprocess.Popen[bytes]
    inflight_delay: float  # model delay that keeps a run in flight long enough to look at it
    quiet_s: float  # how long "nothing reached the model" is watched for
    within: float  # how long a run may take to reach the model
    root: Path
    events: list[Event] = field(default_factory=list)

    @property
    def legacy(self) -> bool:
        return self.version.startswith("2026.2")

    async def connect(self, on_event: Any = None) -> RpcClient:
        auth = GatewayAuth("token", Secret(self.token), "test", False)
        rpc = RpcClient(f"ws://127.0.0.1:{self.port}/", auth, 3 if self.legacy else 4, on_event=on_event,
                        connect_timeout_s=15.0)
        await rpc.connect()
        return rpc


def real_selected(config: pytest.Config) -> bool:
    return "e2e" in str(config.getoption("markexpr") or "") or os.environ.get("CONTRACT_REAL") == "1"


async def wait_ready(port: int, token: str, legacy: bool, proc: subprocess.Popen[bytes], within: float) -> None:
    auth = GatewayAuth("token", Secret(token), "test", False)

    async def attempt() -> bool:
        assert proc.poll() is None, f"gateway exited with {proc.returncode}"
        rpc = RpcClient(f"ws://127.0.0.1:{port}/", auth, 3 if legacy else 4, connect_timeout_s=5.0)
        try:
            await rpc.connect()
            await rpc.call("health", timeout_s=10)
        except GatewayError:
            return False
        finally:
            await rpc.close()
        return True

    await wait_for(attempt, within, f"the gateway on port {port} to answer", step=0.5)


def kill_tree(proc: subprocess.Popen[bytes], mark: str | None) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)
    if mark is not None:  # anything that left the process group
        for p in marked_processes(mark):
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(marked_processes(mark), timeout=10)


@pytest.fixture(scope="module", params=TARGETS)
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    kind, version = request.param
    if kind == "real" and not real_selected(request.config):
        pytest.skip("the real gateway runs only when selected: pytest -m e2e tests/contract")
    root = tmp_path_factory.mktemp(f"contract-{kind}-{version}")
    with running_model(root / "model", delay=0.1) as model:
        if kind == "fake":
            gw = FakeGateway(root / "gw", version, model, dict(COMPRESSED))
            gw.root.mkdir(parents=True, exist_ok=True)
            proc = gw.start()
            try:
                asyncio.run(wait_ready(gw.port, gw.token, gw.legacy, proc, 20))
                yield Target(kind, version, gw.port, gw.token, model, proc, inflight_delay=1.0, quiet_s=1.0,
                             within=10, root=root)
            finally:
                gw.cleanup()
            return
        port = free_port_block()
        sb = sandbox.prepare_sandbox(root / "gw", version, port, model.port)
        mark = str(uuid.uuid4())
        env = {**sandbox.launch_env(sb), MARK: mark}
        out = open(root / "gateway.log", "wb")  # noqa: SIM115 (the child holds it)
        proc = subprocess.Popen(sandbox.gateway_argv(sb), env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=root)
        out.close()
        try:
            t0 = time.monotonic()
            asyncio.run(wait_ready(port, sb.token, sb.legacy, proc, 300))
            print(f"\n[contract] real {version} answered after {time.monotonic() - t0:.1f}s")
            yield Target(kind, version, port, sb.token, model, proc, inflight_delay=8.0, quiet_s=10.0,
                         within=90, root=root)
        finally:
            kill_tree(proc, mark)


@contextlib.asynccontextmanager
async def session(target: Target) -> Any:
    """An RpcClient for calls plus a passive second connection that records every event (and, on 2.x,
    tracks turn activity the way gatewayd does)."""
    events: list[Event] = []
    legacy = LegacyActivity()

    def on_event(ev: Event) -> None:
        events.append(ev)
        if ev.name == "agent":
            legacy.feed(ev.payload)

    watcher = await target.connect(on_event)
    rpc = await target.connect()
    try:
        yield rpc, events, legacy
    finally:
        await rpc.close()
        await watcher.close()


def lifecycle(events: list[Event], phase: str, key_prefix: str) -> list[dict[str, Any]]:
    return [e.payload for e in events if e.name == "agent" and e.payload.get("stream") == "lifecycle"
            and e.payload.get("data", {}).get("phase") == phase
            and str(e.payload.get("sessionKey", "")).startswith(key_prefix)]


async def rpc_error(call: Any) -> GatewayRpcError:
    with pytest.raises(GatewayRpcError) as info:
        await call
    return info.value


# ---------------------------------------------------------------------------------------------- handshake
async def test_handshake(target: Target) -> None:
    rpc = await target.connect()
    try:
        hello = rpc.hello
        assert hello is not None
        snapshot = hello.raw["snapshot"]
        assert snapshot["sessionDefaults"]["mainSessionKey"] == MAIN
        assert {"health", "sessions.list", "cron.list", "cron.run", "cron.runs", "agent", "wake",
                "system-event"} <= hello.methods
        assert {"agent", "tick"} <= hello.events
        if target.legacy:
            assert hello.protocol == 3
            assert hello.raw.get("auth") is None and hello.scopes is None  # scopes not echoed
            assert hello.boot_id is None and hello.server_version == "dev"
            assert "system.info" not in hello.methods
        else:
            assert hello.protocol == 4
            assert hello.scopes is not None and set(hello.scopes) == set(SCOPES)
            assert hello.boot_id and uuid.UUID(hello.boot_id)
            assert hello.server_version == MODERN and "system.info" in hello.methods
        assert hello.tick_interval_ms == 30000
    finally:
        await rpc.close()


async def test_health_and_identity(target: Target) -> None:
    rpc = await target.connect()
    try:
        health = await rpc.call("health")
        assert health["ok"] is True and health["defaultAgentId"] == "main"
        [agent] = [a for a in health["agents"] if a["agentId"] == "main"]
        assert agent["isDefault"] is True
        if target.legacy:  # "0m" reads as enabled with no interval on 2.x ...
            assert (agent["heartbeat"]["enabled"], agent["heartbeat"]["every"]) == (True, "0m")
            assert agent["heartbeat"]["everyMs"] is None
            err = await rpc_error(rpc.call("system.info"))
            assert err.code == "INVALID_REQUEST"
        else:  # ... and as disabled on 9.x
            assert agent["heartbeat"]["enabled"] is False and agent["heartbeat"]["everyMs"] is None
            info = await rpc.call("system.info")
            assert uuid.UUID(info["processInstanceId"]) and isinstance(info["pid"], int)
            assert info["port"] == target.port
        status = await rpc.call("status")
        assert isinstance(status.get("queuedSystemEvents", []), list)
        last = await rpc.call("last-heartbeat")
        assert last is None or isinstance(last, dict)
    finally:
        await rpc.close()


# ---------------------------------------------------------------------------------------------- lists
async def test_sessions_list_shape_and_params(target: Target) -> None:
    rpc = await target.connect()
    try:
        page = await rpc.call("sessions.list", {})
        assert isinstance(page["sessions"], list) and isinstance(page["count"], int) and isinstance(page["ts"], int)
        assert page["defaults"]["model"] == "fake-model"
        parse_sessions(page, {} if target.legacy else None)  # gatewayd reads it
        assert isinstance(await rpc.call("sessions.list", {"limit": 1}), dict)
        if target.legacy:
            assert {"totalCount", "hasMore", "nextOffset"}.isdisjoint(page)
            for param in ("activeOnly", "offset"):
                err = await rpc_error(rpc.call("sessions.list", {param: True if param == "activeOnly" else 0}))
                assert err.code == "INVALID_REQUEST"
                assert f"invalid sessions.list params: at root: unexpected property '{param}'" in str(err)
        else:
            assert {"totalCount", "hasMore", "nextOffset", "limitApplied"} <= set(page)
            active = await rpc.call("sessions.list", {"activeOnly": True, "limit": 500, "offset": 0})
            assert all(row["hasActiveRun"] is True for row in active["sessions"])
            parse_sessions(active)
    finally:
        await rpc.close()


async def test_cron_list_paging(target: Target) -> None:
    mark = uuid.uuid4().hex[:8]
    rpc = await target.connect()
    ids: list[str] = []
    try:
        for i in range(3):
            job = await rpc.call("cron.add", {
                "name": f"page-{mark}-{i}", "schedule": {"kind": "every", "everyMs": 3_600_000},
                "sessionTarget": "isolated", "wakeMode": "now", "delivery": {"mode": "none"},
                "payload": {"kind": "agentTurn", "message": f"PAGE-{mark} reply PONG"}})
            ids.append(job["id"])
        first = await rpc.call("cron.list", {"includeDisabled": True, "limit": 1, "offset": 0})
        assert len(first["jobs"]) == 1 and first["total"] >= 3
        assert (first["offset"], first["limit"], first["hasMore"], first["nextOffset"]) == (0, 1, True, 1)
        whole = await rpc.call("cron.list", {"includeDisabled": True})
        assert whole["limit"] == whole["total"] == len(whole["jobs"]) and whole["hasMore"] is False
        assert whole["nextOffset"] is None
        err = await rpc_error(rpc.call("cron.list", {"limit": 201}))
        assert err.code == "INVALID_REQUEST"
        everything = await paged(rpc, "cron.list", {"includeDisabled": True}, "jobs", 2)  # gatewayd's pager
        assert set(ids) <= {j["id"] for j in everything["jobs"]}
        assert not any(job_id == k[0] for k in parse_runs(everything) for job_id in ids)
    finally:
        for job_id in ids:
            assert (await rpc.call("cron.remove", {"id": job_id}))["removed"] is True
        await rpc.close()


# ---------------------------------------------------------------------------------------------- cron runs
async def test_cron_run_in_flight_and_after(target: Target) -> None:
    mark = f"CRON-{uuid.uuid4().hex[:8]}"
    target.model.set_delay(target.inflight_delay)
    async with session(target) as (rpc, events, legacy):
        try:
            job = await rpc.call("cron.add", {
                "name": f"contract-{mark}", "schedule": {"kind": "every", "everyMs": 3_600_000},
                "sessionTarget": "isolated", "wakeMode": "now", "delivery": {"mode": "none"},
                "payload": {"kind": "agentTurn", "message": f"{mark} reply PONG", "timeoutSeconds": 120}})
            job_id = job["id"]
            assert job["enabled"] is True and job["schedule"]["kind"] == "every"
            assert job["state"]["nextRunAtMs"] == job["schedule"]["anchorMs"] + 3_600_000
            run = asyncio.ensure_future(rpc.call("cron.run", {"id": job_id, "mode": "force"}, timeout_s=180))
            answer: dict[str, Any] | None = None
            if not target.legacy:
                answer = await asyncio.wait_for(run, 30)  # answered at once
                assert answer is not None and answer["ok"] is True and answer["enqueued"] is True
                assert answer["runId"].startswith(f"manual:{job_id}:")
                assert answer["processInstanceId"] == (await rpc.call("system.info"))["processInstanceId"]
            await target.model.wait_request(mark, within=target.within)

            # in flight
            listing = await rpc.call("cron.list", {"includeDisabled": True})
            [item] = [r for k, r in parse_runs(listing).items() if k[0] == job_id]
            running_at = item.running_at_ms
            assert (item.payload_kind, item.session_target, item.schedule_kind) == ("agentTurn", "isolated", "every")
            if target.legacy:
                assert not run.done(), "2.x answers cron.run only when the run has ended"
            rows = {r["key"]: r for r in (await rpc.call("sessions.list", {}))["sessions"]}
            cron_key = f"agent:main:cron:{job_id}"
            assert cron_key in rows
            if target.legacy:
                assert {"hasActiveRun", "activeRunIds", "status"}.isdisjoint(rows[cron_key])
                assert any(k.startswith(cron_key) for k in legacy.active())
                sessions = parse_sessions({"sessions": list(rows.values())}, legacy.active())
                assert cron_key in merge_legacy_cron_sessions(sessions, parse_runs(listing).values())
            else:
                assert rows[cron_key]["hasActiveRun"] is True and "activeRunIds" not in rows[cron_key]
                active = await rpc.call("sessions.list", {"activeOnly": True})
                assert cron_key in parse_sessions(active)
            [started] = [e.payload for e in events if e.name == "cron" and e.payload.get("action") == "started"
                         and e.payload.get("jobId") == job_id]
            assert started["runAtMs"] == running_at

            # after
            if target.legacy:
                assert await asyncio.wait_for(run, 120) == {"ok": True, "ran": True}

            async def entries() -> list[dict[str, Any]]:
                page = await rpc.call("cron.runs", {"id": job_id, "limit": 10})
                found: list[dict[str, Any]] = page["entries"]
                return found
            [entry] = await wait_for(entries, 120, "the cron.runs entry", step=0.5)
            assert (entry["jobId"], entry["action"], entry["status"]) == (job_id, "finished", "ok")
            assert entry["runAtMs"] == running_at and entry["summary"] == "PONG"
            assert entry["sessionKey"].startswith(f"{cron_key}:run:")
            if answer is not None:
                assert entry["runId"] == answer["runId"]
            after = await rpc.call("cron.list", {"includeDisabled": True})
            assert not any(k[0] == job_id for k in parse_runs(after))
            [done] = [j for j in after["jobs"] if j["id"] == job_id]
            assert (done["state"]["lastRunStatus"], done["state"]["lastRunAtMs"]) == ("ok", running_at)

            async def finished() -> bool:
                return any(e.name == "cron" and e.payload.get("action") == "finished"
                           and e.payload.get("jobId") == job_id for e in events)
            await wait_for(finished, 10, "the cron finished event")
            [start] = lifecycle(events, "start", cron_key)
            [end] = lifecycle(events, "end", cron_key)
            assert start["runId"] == end["runId"] and start["sessionKey"] == end["sessionKey"]
            assert (":run:" in start["sessionKey"]) is not target.legacy  # 2.x: agent:<a>:cron:<jobId>
            assert not any(k.startswith(cron_key) for k in legacy.active())
            if not target.legacy:
                assert cron_key not in parse_sessions(await rpc.call("sessions.list", {"activeOnly": True}))
        finally:
            target.model.set_delay(0.1)


async def test_cron_run_params_per_version(target: Target) -> None:
    rpc = await target.connect()
    try:
        job = await rpc.call("cron.add", {
            "name": f"params-{uuid.uuid4().hex[:8]}", "enabled": False,
            "schedule": {"kind": "every", "everyMs": 3_600_000}, "sessionTarget": "isolated", "wakeMode": "now",
            "delivery": {"mode": "none"}, "payload": {"kind": "agentTurn", "message": "PARAMS reply PONG"}})
        assert job["enabled"] is False
        if target.legacy:
            for params in ({"mode": "if-enabled"}, {"mode": "force", "expectedProcessInstanceId": "x"}):
                err = await rpc_error(rpc.call("cron.run", {"id": job["id"], **params}))
                assert err.code == "INVALID_REQUEST" and "invalid cron.run params" in str(err)
        else:
            answer = await rpc.call("cron.run", {"id": job["id"], "mode": "if-enabled"})
            assert (answer["ok"], answer["ran"], answer["reason"]) == (True, False, "disabled")
            err = await rpc_error(rpc.call("cron.run", {"id": job["id"], "mode": "if-enabled",
                                                        "expectedProcessInstanceId": str(uuid.uuid4())}))
            assert err.code == "INVALID_REQUEST" and "Gateway process changed" in str(err)
        assert (await rpc.call("cron.remove", {"id": job["id"]}))["removed"] is True
    finally:
        await rpc.close()


# ---------------------------------------------------------------------------------------------- turns
async def test_main_session_turn(target: Target) -> None:
    mark = f"MAIN-{uuid.uuid4().hex[:8]}"
    key = str(uuid.uuid4())
    if target.legacy:  # an earlier turn first: 2.x writes a session's first turn only at its end
        async with session(target) as (rpc, events, legacy):
            await rpc.call("agent", {"message": f"BEFORE-{uuid.uuid4().hex[:8]} reply PONG", "agentId": "main",
                                     "idempotencyKey": str(uuid.uuid4()), "sessionKey": MAIN})

            async def before_ended() -> list[dict[str, Any]]:
                return lifecycle(events, "end", MAIN)
            await wait_for(before_ended, 120, "the earlier turn's end", step=0.2)
    target.model.set_delay(target.inflight_delay)
    async with session(target) as (rpc, events, legacy):
        try:
            params = {"message": f"{mark} reply PONG", "idempotencyKey": key, "agentId": "main", "sessionKey": MAIN}
            accepted = await rpc.call("agent", params)
            assert accepted["status"] == "accepted" and isinstance(accepted["acceptedAt"], int)
            assert accepted["runId"] == key
            if target.legacy:
                assert "sessionKey" not in accepted
            else:
                assert (accepted["sessionKey"], accepted["agentId"]) == (MAIN, "main")
            await target.model.wait_request(mark, within=target.within)
            page = await rpc.call("sessions.list", {})
            [row] = [r for r in page["sessions"] if r["key"] == MAIN]
            if target.legacy:
                assert legacy.active().get(MAIN) == (key,)
                assert MAIN in parse_sessions(page, legacy.active())
            else:
                assert row["hasActiveRun"] is True and row["status"] == "running"
                assert parse_sessions(page)[MAIN].kind == "main"
            [start] = lifecycle(events, "start", MAIN)
            assert start["runId"] == key
            started = start["data"]["startedAt"]
            if target.legacy:  # what recovery reads to tell a turn that ended while gatewayd was down
                assert legacy.turn_starts() == {MAIN: started}
                history = await rpc.call("chat.history", {"sessionKey": MAIN, "limit": 100})
                assert not legacy_turn_ended(history, started, int(time.time() * 1000))
                assert mark in history["messages"][-1]["content"][0]["text"]  # its user message, unanswered

            async def ended() -> list[dict[str, Any]]:
                return lifecycle(events, "end", MAIN)
            [end] = await wait_for(ended, 120, "the turn's lifecycle end event", step=0.2)
            assert end["runId"] == key
            assert MAIN not in legacy.active()
            if target.legacy:
                history = await rpc.call("chat.history", {"sessionKey": MAIN, "limit": 100})
                assert legacy_turn_ended(history, started, int(time.time() * 1000))
                asked, answered = history["messages"][-2:]
                assert asked["role"] == "user" and mark in asked["content"][0]["text"]
                assert abs(asked["timestamp"] - started) < 100 and answered["stopReason"] == "stop"
                assert answered["timestamp"] >= started
            page = await rpc.call("sessions.list", {})
            [row] = [r for r in page["sessions"] if r["key"] == MAIN]
            if target.legacy:
                assert MAIN not in parse_sessions(page, legacy.active())
            else:
                assert row["hasActiveRun"] is False and row["activeRunIds"] == []
                assert MAIN not in parse_sessions(page)

            again = await rpc.call("agent", params)  # the same idempotency key: no second turn
            assert again["runId"] == key
            await asyncio.sleep(target.quiet_s)  # the witness window: a second turn would reach the model by now
            assert len(target.model.requests(mark)) == 1
        finally:
            target.model.set_delay(0.1)


# ---------------------------------------------------------------------------------------------- notices
async def test_system_events_and_wake(target: Target) -> None:
    queued, woken = (f"{w}-{uuid.uuid4().hex[:8]}" for w in ("QUEUED", "WOKEN"))
    async with session(target) as (rpc, _, _legacy):
        assert await rpc.call("wake", {"mode": "next-heartbeat", "text": queued}) == {"ok": True}
        assert queued in (await rpc.call("status"))["queuedSystemEvents"]
        if target.legacy:
            err = await rpc_error(rpc.call("wake", {"mode": "now", "text": woken, "sessionKey": MAIN}))
            assert err.code == "INVALID_REQUEST" and "unexpected property 'sessionKey'" in str(err)
            assert await rpc.call("wake", {"mode": "now", "text": woken}) == {"ok": True}
            await asyncio.sleep(target.quiet_s)  # the witness window: a heartbeat turn would reach the model by now
            assert target.model.requests(woken) == [], "heartbeats off: the wake starts no turn"
            assert {queued, woken} <= set((await rpc.call("status"))["queuedSystemEvents"])
        else:
            assert await rpc.call("wake", {"mode": "now", "text": woken, "sessionKey": MAIN}) == {"ok": True}
            [beat] = await target.model.wait_request(woken, within=target.within)
            assert queued in beat["text"], "the heartbeat turn carries the queued system events"

            async def drained() -> bool:
                return queued not in (await rpc.call("status")).get("queuedSystemEvents", [])
            await wait_for(drained, 30, "the queue drained", step=0.5)
