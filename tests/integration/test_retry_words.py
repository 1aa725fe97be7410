"""A retry that knows it is one (issue 15, item 4), on the fake gateway's world with the fake model's
request log as the witness: the retried run's request carries the retry words, the first run's did
not, and the job's payload is back as it was, also when gatewayd dies at each step of the change."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest

from gatewayd_dev.harness import gatewayd, wait_until
from supervisor.crashpoints import CRASH_EXIT, RETRY_WORDS_STEPS
from supervisor.gateway.launch import GatewayAuth, Secret
from supervisor.gateway.rpc import RpcClient
from tests.integration.test_faults import TOKEN, add_hourly, model, retried_once, table, world_settings

pytestmark = pytest.mark.timeout(120)

WORDS = "[gatewayd: retry, attempt "  # 2 of 3, or 3 of 3 when a cut retry counted as one


async def job_payload(port: int, version: str, job_id: str) -> dict[str, Any]:
    rpc = RpcClient(f"ws://127.0.0.1:{port}/", GatewayAuth("token", Secret(TOKEN), "", False),
                    3 if version.startswith("2026.2") else 4)
    await rpc.connect()
    try:
        jobs = (await rpc.call("cron.list", {"includeDisabled": True}))["jobs"]
        return dict(next(j for j in jobs if j["id"] == job_id)["payload"])
    finally:
        await rpc.close()


def requests_with(log: Path, text: str) -> list[str]:
    from tests.integration.test_faults import fake_model
    return [e["text"] for e in fake_model.read_log(log) if text in e.get("text", "")]


@pytest.mark.parametrize("version", ["2026.9.6", "2026.2.26"])
@pytest.mark.parametrize("step", [None, *RETRY_WORDS_STEPS])
def test_the_retry_carries_its_words_and_the_job_is_left_as_it_was(tmp_path: Path, version: str,
                                                                   step: str | None) -> None:
    with model(tmp_path) as (model_port, log, delay), gatewayd(tmp_path, None) as g:
        g.write_config_sections(world_settings(tmp_path, version, model_port, g.port))
        mark = uuid.uuid4().hex[:8]
        g.start({"GATEWAYD_CRASH_AT": step} if step else None)
        g.wait_event("rpc_monitor_connected")
        delay.write_text("3\n")
        job_id = asyncio.run(add_hourly(g.port, version, mark))
        before = asyncio.run(job_payload(g.port, version, job_id))
        wait_until(lambda: requests_with(log, f"CRON-{mark}"), 20, "the run at the model")
        g.wait_event("inflight_changed", where=lambda e: bool(e.get("runs_started")))
        delay.write_text("0.2\n")
        os.kill(g.spawned_pids()[-1], signal.SIGKILL)
        if step is not None:
            assert g.procs[-1].wait(60) == CRASH_EXIT  # died at the step, the job perhaps changed
            g.start()
        ob = retried_once(g, log, mark)
        assert ob["state"] == "done", ob
        first, retry = requests_with(log, f"CRON-{mark}")
        assert WORDS not in first
        if step in (None, "patched", "restore-sent"):
            assert WORDS in retry, retry[-600:]  # the change was in place when the run was taken
        patches = wait_until(lambda: (rows := table(g, "job_patches")) and all(
            r["state"] not in ("patching", "patched") for r in rows) and rows, 30, "the change settled")
        assert {r["state"] for r in patches} <= {"restored", "unpatched"}, patches
        assert asyncio.run(job_payload(g.port, version, job_id)) == before
