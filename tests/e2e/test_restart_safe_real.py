"""`gatewayd restart --safe` on the real 2026.9.6, during a slow cron run.

- Within the budget: the gateway drains, the run finishes, the gateway restarts, and the run is
  not retried (it completed): the model saw it once.
- With --timeout shorter than the run: the run is interrupted and recovered as a retry: the model
  sees it twice, never three times.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import pytest

from gatewayd_dev.harness import wait_until
from tests.e2e.conftest import real_gatewayd, set_model_delay
from tests.e2e.test_recovery_real import asked, store_rows, wait_in_flight
from tests.e2e.work import add_hourly

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


@pytest.mark.parametrize("timeout", [None, 4.0], ids=["drains", "timeout-interrupts"])
def test_safe_restart_during_a_slow_cron_run(tmp_path: Path, model: tuple[int, Path], timeout: float | None) -> None:
    log = model[1]
    g, sb = real_gatewayd(tmp_path, "2026.9.6", model[0],
                          {"snapshot": {"interval_s": 2.0}, "recovery": {"backoff_initial_s": 3.0}})
    mark = uuid.uuid4().hex[:8]
    try:
        g.start()
        g.wait_event("gateway_ready", timeout=240)
        g.wait_event("rpc_monitor_connected", timeout=60)
        set_model_delay(15)
        job_id = asyncio.run(add_hourly(sb, mark))
        wait_in_flight(g, log, job_id, f"CRON-{mark}")
        args = ["restart", "--safe", "--json", "-c", str(g.config_file)]
        if timeout is not None:
            args += ["--timeout", str(timeout)]
        t0 = time.monotonic()
        out = g.run_cli(*args, timeout=400)
        assert out.returncode == 0, out.stderr
        outcome = json.loads(out.stdout)
        assert outcome["new_pid"] != outcome["old_pid"]
        assert "draining: " in out.stderr and "in flight" in out.stderr  # progress was shown
        # ... naming the run it would cut at the budget, and what then happens to it
        assert f'cron "hourly-{mark}" running ' in out.stderr and "then retried after the restart" in out.stderr
        set_model_delay(1)
        if timeout is None:
            # It waited for the run to finish (about the model's 15 s), then restarted.
            assert time.monotonic() - t0 >= 5
            exited = g.wait_event("gateway_exited")
            assert exited["exit_kind"] == "planned-restart" and exited["returncode"] == 0
            wait_until(lambda: not store_rows(
                g, f"SELECT 1 FROM obligations WHERE ref = '{job_id}' AND state = 'open'"), 120,
                "nothing left open for the job")
            time.sleep(15)  # the witness window: a retry would show here
            assert len(asked(log, f"CRON-{mark}")) == 1
            assert store_rows(g, "SELECT * FROM actions") == []  # nothing sent
        else:
            exited = g.wait_event("gateway_exited")
            assert exited["exit_kind"] == "planned-restart" and exited["returncode"] == -9
            wait_until(lambda: len(asked(log, f"CRON-{mark}")) >= 2, 180, "the retry at the model")
            ob = wait_until(lambda: store_rows(
                g, f"SELECT * FROM obligations WHERE ref = '{job_id}' AND state != 'open'"), 60, "resolved")
            assert "attempt 2" in ob[0]["resolution"]
            time.sleep(10)  # the witness window
            assert len(asked(log, f"CRON-{mark}")) == 2
    finally:
        set_model_delay(0.5)
        g.cleanup()
