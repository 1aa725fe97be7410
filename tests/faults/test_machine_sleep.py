"""The machine sleeps, end to end: gatewayd, the output relay and the gateway are all stopped for two
minutes (SIGSTOP, as a suspended laptop freezes them) and then continued. A gateway that answers
again within its probe budget is not declared hung, and the recovery action that fell due during
the sleep is sent once, not once per missed timer tick. (The clock-seam form of the same fault, the
wall clock jumping while the monotonic clock does not, is tests/integration/test_sleep.py.)

Slow (the sleep is two real minutes): `make test-faults`, which `make test` and CI also run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from pathlib import Path

import psutil
import pytest

from gatewayd_dev.harness import gatewayd, wait_until
from tests.integration.test_faults import add_hourly, asked, model, obligations, world_settings

pytestmark = pytest.mark.timeout(300)

SLEEP_S = 120.0


def test_both_processes_stopped_for_two_minutes_no_hang_kill_and_no_duplicate_action(tmp_path: Path) -> None:
    with model(tmp_path) as (model_port, log, delay), gatewayd(tmp_path, None) as g:
        g.write_config_sections(world_settings(tmp_path, "2026.9.6", model_port, g.port))
        # The retry falls due in the middle of the sleep.
        g.write_config_sections({"recovery": {"backoff_initial_s": 30.0}})
        mark = uuid.uuid4().hex[:8]
        g.start()
        g.wait_event("rpc_monitor_connected")
        delay.write_text("3\n")
        asyncio.run(add_hourly(g.port, "2026.9.6", mark))
        wait_until(lambda: asked(log, f"CRON-{mark}") == 1, 20, "the run at the model")
        g.wait_event("inflight_changed", where=lambda e: bool(e.get("runs_started")))
        delay.write_text("0.2\n")
        os.kill(g.spawned_pids()[-1], signal.SIGKILL)
        g.wait_event("gateway_ready", count=2)
        wait_until(lambda: [o for o in obligations(g) if o["kind"] == "cron"], 10, "the obligation")
        g.wait_event("recovery_settled")
        gateway = g.spawned_pids()[-1]

        frozen = [psutil.Process(g.procs[-1].pid), *g.alive_marked()]
        assert gateway in {p.pid for p in frozen}
        for p in frozen:
            p.send_signal(signal.SIGSTOP)
        try:
            time.sleep(SLEEP_S)  # the sleep itself: two minutes in which nothing of gatewayd's may run
            assert asked(log, f"CRON-{mark}") == 1  # nothing ran while asleep
        finally:
            for p in frozen:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.send_signal(signal.SIGCONT)
        woke = time.time()

        wait_until(lambda: [o for o in obligations(g) if o["kind"] == "cron" and o["state"] != "open"], 60,
                   "the obligation resolved after waking")
        wait_until(lambda: asked(log, f"CRON-{mark}") >= 2, 30, "the retry at the model")
        time.sleep(5.0)  # the witness window: a second retry (a burst of missed ticks) would show here
        assert asked(log, f"CRON-{mark}") == 2
        ob = next(o for o in obligations(g) if o["kind"] == "cron")
        assert ob["state"] == "done", ob
        # The gateway answered again at once: the same process, no hang verdict, no restart.
        assert g.spawned_pids()[-1] == gateway
        assert g.named("gateway_unresponsive") == []
        assert len(g.named("gateway_exited")) == 1  # only the kill -9 before the sleep
        assert g.procs[-1].poll() is None and time.time() - woke < 120
        g.procs[-1].send_signal(signal.SIGTERM)
        assert g.procs[-1].wait(30) == 0
