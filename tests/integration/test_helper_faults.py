"""A helper task that fails is logged, shown by `status` (degraded) and started again; supervision
and tracking go on. Was: the RPC monitor ended unlogged for the rest of the boot on any exception
other than a gateway or store error, while `status` said `running` and exited 0."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from supervisor import config, logs
from supervisor.cli import status_report as cli
from supervisor.control.handlers import control_handlers
from supervisor.daemon import Daemon
from supervisor.events import BootEnded, GatewayReady, HelperFailed
from supervisor.snapshotter import Snapshotter
from tests.integration.test_sleep import write_config

pytestmark = pytest.mark.timeout(60)


async def test_a_failing_snapshot_is_shown_restarted_and_tracking_resumes(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    real_take = Snapshotter.take
    failures = 0

    async def take(self: Snapshotter, rpc: Any) -> Any:
        nonlocal failures
        if failures < 2:
            failures += 1
            raise UnicodeEncodeError("utf-8", "x-\ud83d", 2, 3, "surrogates not allowed")
        return await real_take(self, rpc)

    monkeypatch.setattr(Snapshotter, "take", take)
    cfg = config.load(write_config(tmp_path), environ={})
    logs.setup(cfg.state_dir / "logs", "info", console=False)
    d = Daemon(cfg, install_signals=False)
    d.helpers.initial_s, d.helpers.healthy_s = 0.2, 1.0
    ready, failed, ended = asyncio.Event(), asyncio.Event(), []

    def on(ev: object) -> None:
        if isinstance(ev, GatewayReady):
            ready.set()
        elif isinstance(ev, HelperFailed):
            failed.set()
        elif isinstance(ev, BootEnded):
            ended.append(ev)

    d.bus.subscribe(on)
    status = control_handlers(d)["status"]
    task = asyncio.create_task(d.run())
    try:
        await asyncio.wait_for(ready.wait(), 20)
        await asyncio.wait_for(failed.wait(), 20)
        live = await status({})
        assert [f["helper"] for f in live["faults"]] == ["snapshot"]
        assert live["faults"][0]["error"].startswith("UnicodeEncodeError")
        assert cli.status_code({"daemon": {"running": True}, "live": live}) == cli.STATUS_DEGRADED
        # Started again: it polls, and once well for a while its fault is gone.
        for _ in range(400):
            live = await status({})
            snap = d.current.snapshotter if d.current else None
            if not live["faults"] and snap is not None and snap.cycles > 0:
                break
            await asyncio.sleep(0.05)
        assert live["faults"] == [] and failures == 2
        assert d.current is not None and d.current.snapshotter is not None and d.current.snapshotter.cycles > 0
        assert cli.status_code({"daemon": {"running": True}, "live": live}) == cli.STATUS_HEALTHY
        assert ended == []  # the gateway was never touched
    finally:
        d.request_stop()
        await asyncio.wait_for(task, 30)
        logs.setup(None, "warning", console=False)
