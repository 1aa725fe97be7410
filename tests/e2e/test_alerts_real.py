"""gatewayd's alerts on the real gateways: kill -9 while a cron run and a main-session turn are in
flight gives a "down" alert within 5 s (at a loopback webhook and at a recording command), linked
to its incident, and then one "recovered" alert that lists what recovery did about each."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from gatewayd_dev.alert_receiver import Recorder, receiver
from gatewayd_dev.harness import wait_until
from tests.e2e.conftest import VERSIONS, real_gatewayd, set_model_delay
from tests.e2e.test_recovery_real import asked, start_work, store_rows

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


@pytest.mark.long
@pytest.mark.parametrize("version", VERSIONS)
def test_kill9_is_a_down_alert_within_5_s_then_recovered_lists_the_work(tmp_path: Path, model: tuple[int, Path],
                                                                         version: str) -> None:
    log = model[1]
    rec = Recorder(tmp_path)
    mark = uuid.uuid4().hex[:8]
    with receiver() as r:
        settings = {"snapshot": {"interval_s": 2.0}, "recovery": {"backoff_initial_s": 5.0},
                    "alerts": {"notify": [{"kind": "webhook", "url": r.url},
                                          {"kind": "command", "name": "recorder", "command": rec.command}],
                               "recovered_after_s": 5.0}}
        g, _sb = real_gatewayd(tmp_path, version, model[0], settings)
        try:
            g.start()
            g.wait_event("gateway_ready", timeout=240)
            g.wait_event("rpc_monitor_connected", timeout=60)
            set_model_delay(20)
            job_id = asyncio.run(start_work(_sb, mark))
            wait_until(lambda: asked(log, f"CRON-{mark}") and asked(log, f"MAIN-{mark}"), 90,
                       "the cron run and the main-session turn at the model")
            wait_until(lambda: store_rows(g, f"SELECT 1 FROM inflight_runs WHERE job_id = '{job_id}'")
                       and store_rows(g, "SELECT 1 FROM inflight_sessions WHERE key = 'agent:main:main'"),
                       30, "both in the snapshot")
            set_model_delay(1)
            killed_at = time.time()
            os.kill(g.spawned_pids()[-1], signal.SIGKILL)
            down = r.wait_kind("down", timeout=10)
            assert down["at"] - killed_at < 5.0
            assert rec.wait_kind("down", timeout=10)["at"] - killed_at < 5.0
            incident = down["body"]["incident"]
            inc = json.loads(g.run_cli("history", "--incident", str(incident), "--json", "-c",
                                       str(g.config_file)).stdout)
            assert inc["signal"] == "SIGKILL" and inc["tree_rss_bytes"] > 0 and inc["last_lines"]
            assert [run["job_id"] for run in inc["inflight"]["runs"]] == [job_id]
            assert "agent:main:main" in inc["inflight"]["sessions"]

            recovered = r.wait_kind("recovered", timeout=400)["body"]
            done = recovered["fields"]["done"]
            assert any(d.startswith(f"cron job hourly-{mark}: retried - done") for d in done), done
            session = next(d for d in done if d.startswith("session agent:main:main"))
            if version == "2026.2.26":
                assert "noticed and woken - done" in session
            else:
                assert "resumed by the gateway itself" in session
            assert r.kinds().count("down") == 1 and recovered["fields"]["given_up"] == []
            rec.wait_kind("recovered", timeout=30)
        finally:
            set_model_delay(0.5)
            g.cleanup()
