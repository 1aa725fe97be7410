"""A machine sleep through gatewayd's clock seam: the wall clock jumps 2 minutes while the monotonic
clock does not, as after a real suspend. gatewayd notices, forgets probe failures, gives a grace,
and does not kill a gateway that answers again."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import pytest

from gatewayd_dev.harness import fake_settings, free_port_block, toml_value
from supervisor import config, logs
from supervisor.daemon import Daemon
from supervisor.events import BootEnded, GatewayReady

pytestmark = pytest.mark.timeout(60)


class JumpClock:
    def __init__(self) -> None:
        self.offset = 0.0

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time() + self.offset


def write_config(tmp_path: Path) -> Path:
    settings = fake_settings()
    gw = {**settings["gateway"], "port": free_port_block()}
    text = f"state_dir = {toml_value(str(tmp_path / 'state'))}\n[gateway]\n"
    text += "".join(f"{k} = {toml_value(v)}\n" for k, v in gw.items())
    text += "[probes]\ninterval_s = 0.3\ntimeout_s = 0.3\nhang_timeouts = 2\n"
    path = tmp_path / "gatewayd.toml"
    path.write_text(text)
    path.chmod(0o600)
    return path


async def test_a_sleep_gap_resets_probe_failures_and_kills_nothing(tmp_path: Path) -> None:
    cfg = config.load(write_config(tmp_path), environ={})
    logs.setup(cfg.state_dir / "logs", "debug", console=False)
    clock = JumpClock()
    d = Daemon(cfg, clock=clock, install_signals=False)
    ready, ended = asyncio.Event(), []
    d.bus.subscribe(lambda ev: ready.set() if isinstance(ev, GatewayReady) else
                    ended.append(ev) if isinstance(ev, BootEnded) else None)
    task = asyncio.create_task(d.run())
    try:
        await asyncio.wait_for(ready.wait(), 20)
        pid = d.current.child.pid if d.current else 0
        # The whole machine slept: the gateway was frozen too, and the wall clock moved 2 minutes.
        log_file = cfg.state_dir / "logs" / "gatewayd.log"

        def logged(event: str, **fields: str) -> bool:
            for line in log_file.read_text().splitlines():
                e = json.loads(line) if line.startswith("{") else {}
                if e.get("event") == event and all(e.get(k) == v for k, v in fields.items()):
                    return True
            return False

        async def wait_logged(event: str, **fields: str) -> None:
            for _ in range(200):
                if logged(event, **fields):
                    return
                await asyncio.sleep(0.05)
            raise AssertionError(f"{event} {fields} not logged")

        os.kill(pid, signal.SIGSTOP)
        await wait_logged("probe_failed", outcome="timeout")  # a probe timed out while "asleep"
        clock.offset += 120.0
        os.kill(pid, signal.SIGCONT)
        await wait_logged("clock_jump")
        await asyncio.sleep(2.0)  # the witness window: several probe periods after waking, same gateway
        assert ended == [] and d.current is not None and d.current.child.pid == pid
    finally:
        d.request_stop()
        await asyncio.wait_for(task, 30)
        logs.setup(None, "warning", console=False)
