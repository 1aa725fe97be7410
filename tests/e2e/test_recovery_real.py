"""Recovery on the real gateways, with the fake model's request log as the witness.

kill -9 while a recurring isolated cron agentTurn run (fired by the gateway's own timer, an hourly
job, so its next slot cannot pass for the retry) and a main-session turn are both in flight:
- the cron run reaches the model exactly once more (gatewayd's retry, attempt 2), and no more;
- 2026.9.6 resumes the main-session turn itself and gatewayd adds nothing;
- 2026.2.26 does not, and gatewayd's restart notice reaches the model in that session, once.
"""

from __future__ import annotations

import asyncio
import calendar
import json
import os
import re
import signal
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from gatewayd_dev.harness import Gatewayd, wait_until
from tests.e2e.conftest import VERSIONS, fake_model, real_gatewayd, sandbox, set_model_delay
from tests.e2e.work import add_hourly, add_job, at_soon, gateway_rpc, hourly_soon, main_turn, send_and_leave

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

NOTICE = "Gateway restarted"
RETRY_WORDS = "[gatewayd: retry, attempt 2 of 3. The previous attempt of this run was interrupted by a gateway restart"
# The whole of it: attempt n of N, when the restart was (UTC, to the minute), what to check.
RETRY_SENTENCE = re.compile(re.escape(RETRY_WORDS) + r" at (\d{4}-\d\d-\d\d \d\d:\d\d) UTC and may have done part of"
                            r" the work: check what it finished before repeating anything\.\]")


async def job_message(sb: sandbox.Sandbox, job_id: str) -> str:
    async with gateway_rpc(sb) as rpc:
        jobs = (await rpc.call("cron.list", {"includeDisabled": True}))["jobs"]
        return str(next(j for j in jobs if j["id"] == job_id)["payload"]["message"])


def store_rows(g: Gatewayd, sql: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(f"file:{g.state_dir / 'store.sqlite'}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql)]
    finally:
        conn.close()


def asked(log: Path, text: str, since: float = 0.0) -> list[dict[str, Any]]:
    return [e for e in fake_model.read_log(log) if text in e.get("text", "") and e.get("ts", 0) >= since]


async def start_work(sb: sandbox.Sandbox, mark: str) -> str:
    """A timer-fired hourly run and a main-session turn, both left in flight."""
    async with gateway_rpc(sb) as rpc:
        job_id = await add_job(rpc, f"hourly-{mark}", hourly_soon(), f"CRON-{mark} reply PONG")
        await send_and_leave(rpc, "agent", main_turn(f"MAIN-{mark} reply PONG"))
        return job_id


async def add_oneshot(sb: sandbox.Sandbox, mark: str) -> str:
    async with gateway_rpc(sb) as rpc:
        return await add_job(rpc, f"oneshot-{mark}", at_soon(), f"ONESHOT-{mark} reply PONG")


def wait_in_flight(g: Gatewayd, log: Path, job_id: str, text: str) -> None:
    """The run has reached the model (it is mid-flight) and gatewayd's snapshot has recorded it."""
    wait_until(lambda: asked(log, text), 60, f"{text} at the model")
    wait_until(lambda: store_rows(g, f"SELECT 1 FROM inflight_runs WHERE job_id = '{job_id}'"), 30,
               "the run in the snapshot")


def assert_no_secrets(g: Gatewayd, sb: sandbox.Sandbox) -> None:
    """After a full run: no gateway or hook token in gatewayd's logs, store, status or history."""
    outputs = [g.run_cli(cmd, "--json", "-c", str(g.config_file)).stdout for cmd in ("status", "history")]
    for secret in (sb.token, sb.hook_token):
        for path in g.state_dir.rglob("*"):
            if path.is_file() and path.name != "gateway-token":
                assert secret.encode() not in path.read_bytes(), path
        for text in outputs:
            assert secret not in text
    assert json.loads(outputs[1])  # history has the boots


@pytest.mark.parametrize("version", VERSIONS)
def test_kill9_mid_run_retries_once_and_resumes_the_session_once(tmp_path: Path, model: tuple[int, Path],
                                                                  version: str) -> None:
    log = model[1]
    settings = {"snapshot": {"interval_s": 2.0}, "recovery": {"backoff_initial_s": 5.0}}
    g, sb = real_gatewayd(tmp_path, version, model[0], settings)
    mark = uuid.uuid4().hex[:8]
    t0 = time.time()
    try:
        g.start()
        g.wait_event("gateway_ready", timeout=240)
        g.wait_event("rpc_monitor_connected", timeout=60)
        set_model_delay(20)
        job_id = asyncio.run(start_work(sb, mark))
        wait_until(lambda: asked(log, f"CRON-{mark}") and asked(log, f"MAIN-{mark}"), 90,
                   "the cron run and the main-session turn at the model")
        wait_until(lambda: store_rows(g, f"SELECT 1 FROM inflight_runs WHERE job_id = '{job_id}'")
                   and store_rows(g, "SELECT 1 FROM inflight_sessions WHERE key = 'agent:main:main'"),
                   30, "both in the snapshot")
        set_model_delay(1)
        os.kill(g.spawned_pids()[-1], signal.SIGKILL)
        killed_at = time.time()
        g.wait_event("gateway_ready", count=2, timeout=240)
        if version == "2026.2.26":
            # The dead gateway's jobs file, read before the next one started, shows the run the
            # snapshot recorded (its mark 1 ms before `cron.list`'s key, measured): nothing unseen,
            # nothing added twice.
            snapped = [r["running_at_ms"] for r in store_rows(
                g, f"SELECT * FROM inflight_runs WHERE job_id = '{job_id}' AND boot_id = 1")]
            read = g.wait_event("jobs_file_runs_left_running")
            marks = [at for job, at in read["runs"] if job == job_id]
            assert len(snapped) == 1 and len(marks) == 1 and 0 <= snapped[0] - marks[0] < 1000, (snapped, marks)
            assert read["unseen"] == []
        else:
            # The next gateway's `cron.list` shows the cut run (marked running, or repaired into
            # "interrupted by gateway restart") under the snapshot's very key: set aside, not a
            # run of the new boot, and nothing unseen.
            snapped = [[r["job_id"], r["running_at_ms"]] for r in store_rows(
                g, f"SELECT * FROM inflight_runs WHERE job_id = '{job_id}' AND boot_id = 1")]
            cut = g.wait_event("runs_cut_by_restart", timeout=60)
            assert snapped == [k for k in cut["cut"] if k[0] == job_id] and cut["unseen"] == [], (snapped, cut)

        # The cron run: exactly one retry reaches the model, recorded as attempt 2.
        wait_until(lambda: len(asked(log, f"CRON-{mark}")) >= 2, 180, "gatewayd's retry at the model")
        ob = wait_until(lambda: store_rows(
            g, f"SELECT * FROM obligations WHERE kind = 'cron' AND ref = '{job_id}' AND state != 'open'"),
            60, "the cron obligation resolved")
        assert ob[0]["state"] == "done" and "attempt 2" in ob[0]["resolution"], ob
        # (2026.2.x answers cron.run only when the run ends: wait for the answer to be journaled.)
        actions = wait_until(lambda: [a for a in store_rows(
            g, f"SELECT * FROM actions WHERE obligation_id = {ob[0]['id']}") if a["state"] != "dispatched"], 120,
            "the retry's answer journaled")
        assert [(a["kind"], a["attempt"], a["state"]) for a in actions] == [("cron-run", 2, "answered")]
        # The retry knew it was one: its request carried the words, the first run's did not, and
        # the job's payload is back as it was.
        first, retry = asked(log, f"CRON-{mark}")[:2]
        assert RETRY_WORDS not in first["text"] and RETRY_WORDS in retry["text"]
        said = RETRY_SENTENCE.search(retry["text"])
        assert said is not None, retry["text"][:600]
        restart = calendar.timegm(time.strptime(said.group(1), "%Y-%m-%d %H:%M"))
        assert restart - 60 <= killed_at <= restart + 120, (said.group(1), killed_at)  # to the minute
        assert asyncio.run(job_message(sb, job_id)) == f"CRON-{mark} reply PONG"
        assert [p["state"] for p in store_rows(g, "SELECT state FROM job_patches")] == ["restored"]

        # The main-session turn: resumed by exactly one of them.
        session = wait_until(lambda: store_rows(
            g, "SELECT * FROM obligations WHERE kind = 'session' AND ref = 'agent:main:main' AND state != 'open'"),
            120, "the session obligation resolved")
        if version == "2026.9.6":
            assert session[0]["resolution"] == "resumed by the gateway itself"
            wait_until(lambda: len(asked(log, f"MAIN-{mark}", killed_at)) >= 1, 60, "the gateway's own resume")
            assert g.named("recovery_notice_sent") == []  # gatewayd added nothing
        else:
            assert session[0]["resolution"] == "restart notice sent as a chat.send turn"
            wait_until(lambda: asked(log, NOTICE, killed_at), 60, "gatewayd's notice at the model")

        # And nothing more: a quiet period with no further cron run or notice.
        quiet_from = time.time()
        time.sleep(15)  # the witness: a window in which any duplicate would have shown up
        assert len(asked(log, f"CRON-{mark}")) == 2
        assert len(asked(log, NOTICE, killed_at)) <= 1
        assert not asked(log, f"CRON-{mark}", quiet_from)
        assert not any(g.named("recovery_retry_sent")[1:])
        assert_no_secrets(g, sb)
    finally:
        set_model_delay(0.5)
        g.cleanup()
    assert time.time() - t0 < 600


@pytest.mark.parametrize("version", [pytest.param("2026.9.6", marks=pytest.mark.long), "2026.2.26"])
def test_kill9_mid_oneshot_adds_no_run_to_the_gateways_own(tmp_path: Path, model: tuple[int, Path],
                                                          version: str) -> None:
    """Both versions re-run an interrupted one-shot themselves (2.x at startup, 9.x by its catch-up
    ~120 s after ready): the model sees the prompt twice, as the gateway alone causes, never three
    times; gatewayd only verifies and records the gateway's re-run."""
    log = model[1]
    g, sb = real_gatewayd(tmp_path, version, model[0], {"snapshot": {"interval_s": 2.0}})
    mark = uuid.uuid4().hex[:8]
    try:
        g.start()
        g.wait_event("gateway_ready", timeout=240)
        g.wait_event("rpc_monitor_connected", timeout=60)
        set_model_delay(20)
        job_id = asyncio.run(add_oneshot(sb, mark))
        wait_in_flight(g, log, job_id, f"ONESHOT-{mark}")
        set_model_delay(1)
        os.kill(g.spawned_pids()[-1], signal.SIGKILL)
        g.wait_event("gateway_ready", count=2, timeout=240)
        ob = wait_until(lambda: store_rows(
            g, f"SELECT * FROM obligations WHERE kind = 'cron' AND ref = '{job_id}' AND state != 'open'"),
            300, "the one-shot obligation resolved")
        assert ob[0]["state"] == "done", ob
        assert store_rows(g, f"SELECT * FROM actions WHERE obligation_id = {ob[0]['id']}") == []  # nothing sent
        wait_until(lambda: len(asked(log, f"ONESHOT-{mark}")) >= 2, 60, "the gateway's own re-run")
        time.sleep(10)  # the witness window: a third request would show here
        assert len(asked(log, f"ONESHOT-{mark}")) == 2
    finally:
        set_model_delay(0.5)
        g.cleanup()


@pytest.mark.parametrize(("version", "step"), [("2026.2.26", "journaled"), ("2026.2.26", "dispatched"),
                                               ("2026.9.6", "journaled")])
def test_gatewayd_killed_mid_recovery_still_retries_exactly_once(tmp_path: Path, model: tuple[int, Path],
                                                                 version: str, step: str) -> None:
    """gatewayd dies at a named step of recovery (GATEWAYD_CRASH_AT); started again, it adopts the
    gateway and completes the recovery: one retry reaches the model, never two."""
    log = model[1]
    settings = {"snapshot": {"interval_s": 2.0},
                "recovery": {"backoff_initial_s": 3.0, "unanswered_grace_s": 15.0}}
    g, sb = real_gatewayd(tmp_path, version, model[0], settings)
    mark = uuid.uuid4().hex[:8]
    try:
        g.start({"GATEWAYD_CRASH_AT": step})
        g.wait_event("gateway_ready", timeout=240)
        g.wait_event("rpc_monitor_connected", timeout=60)
        set_model_delay(15)
        job_id = asyncio.run(add_hourly(sb, mark))
        wait_in_flight(g, log, job_id, f"CRON-{mark}")
        set_model_delay(1)
        os.kill(g.spawned_pids()[-1], signal.SIGKILL)
        assert g.procs[-1].wait(300) == 70  # died at the crash point
        g.start()
        g.wait_event("gateway_adopted", timeout=60)
        ob = wait_until(lambda: store_rows(
            g, f"SELECT * FROM obligations WHERE kind = 'cron' AND ref = '{job_id}' AND state != 'open'"),
            180, "the cron obligation resolved")
        assert ob[0]["state"] == "done", ob
        wait_until(lambda: len(asked(log, f"CRON-{mark}")) >= 2, 120, "the retry at the model")
        time.sleep(10)  # the witness window: a second retry would show here
        assert len(asked(log, f"CRON-{mark}")) == 2
    finally:
        set_model_delay(0.5)
        g.cleanup()


@pytest.mark.parametrize("version", VERSIONS)
def test_gatewayd_killed_while_a_run_is_in_flight_adopts_the_gateway(tmp_path: Path, model: tuple[int, Path],
                                                                     version: str) -> None:
    """An upgrade or crash of gatewayd itself: the gateway is adopted, not killed, and the run in
    flight completes without a retry (found here: with gatewayd as the reader of the gateway's
    output pipe, its death made the gateway die too; the output now goes through a relay).
    First gatewayd dies between spawning the gateway and recording it (found by the chaos
    benchmark: a gateway no boot row named, and its successor started a second one, which met the
    first one's lock): the gateway never started, and the next gatewayd starts one."""
    log = model[1]
    g, sb = real_gatewayd(tmp_path, version, model[0], {"snapshot": {"interval_s": 2.0}})
    mark = uuid.uuid4().hex[:8]
    try:
        g.start({"GATEWAYD_CRASH_AT": "spawned"})
        assert g.procs[-1].wait(60) == 70
        wait_until(lambda: g.alive_marked() == [], 30, "nothing left running")
        g.start()
        g.wait_event("gateway_ready", timeout=240)
        g.wait_event("rpc_monitor_connected", timeout=60)
        gateway = g.spawned_pids()[-1]
        set_model_delay(10)
        job_id = asyncio.run(add_hourly(sb, mark))
        wait_until(lambda: asked(log, f"CRON-{mark}"), 60, "the cron run at the model")
        g.procs[-1].kill()  # gatewayd dies mid-run
        g.procs[-1].wait()
        g.start()
        adopted = g.wait_event("gateway_adopted", timeout=60)
        assert adopted["pid"] == gateway
        wait_until(lambda: store_rows(
            g, f"SELECT 1 FROM inflight_runs WHERE job_id = '{job_id}' AND state = 'finished'"), 90, "the run finished")
        set_model_delay(0.5)
        time.sleep(10)  # the witness window: a retry would show here
        assert len(asked(log, f"CRON-{mark}")) == 1
        assert g.spawned_pids() == [gateway] and g.named("gateway_exited") == []
        assert store_rows(g, "SELECT * FROM obligations") == []  # nothing was interrupted
        # and its output still reaches gateway.log
        assert (g.state_dir / "logs" / "gateway.log").stat().st_size > 0
    finally:
        set_model_delay(0.5)
        g.cleanup()
