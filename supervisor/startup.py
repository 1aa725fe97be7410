"""Gatewayd's own start-up: the boots a previous gatewayd left without an end (adopt the latest
gateway if it still runs, stop an older one, record the rest as ended while gatewayd was down),
and, before each spawn, what a dead gateway left that the next one would trip on: 2026.2.x's jobs
file, read before a new gateway clears it, and session locks cut empty by a kill.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from supervisor import logs
from supervisor.core.model import ExitKind
from supervisor.errors import StoreError
from supervisor.gateway import jobstore, session_locks
from supervisor.gateway.child import ProcessKey, process_key
from supervisor.gateway.launch import LaunchSpec
from supervisor.store.boots import BootEnd, BootRecords
from supervisor.store.snapshots import InflightRecords

log = logs.get("gatewayd")

# The daemon's store writer: a failed write is logged and made visible there, and answers None.
Record = Callable[[Awaitable[Any]], Awaitable[Any]]


class Startup:
    def __init__(self, records: BootRecords, inflight: InflightRecords, record: Record, stop_budget_s: float) -> None:
        self.records = records
        self.inflight = inflight
        self._record = record
        self.stop_budget_s = stop_budget_s

    async def settle_previous_boots(self) -> tuple[int, ProcessKey] | None:
        """A boot with no recorded end: the gateway died while gatewayd was down, or still runs.
        Returns the boot and process to adopt, if its gateway still runs."""
        adopt: tuple[int, ProcessKey] | None = None
        try:
            rows = await self.records.unfinished()
        except StoreError as exc:
            log.error("previous_boots_unreadable", error=str(exc))
            return None
        for i, row in enumerate(rows):
            pid, ctime = row.get("pid"), row.get("create_time")
            alive = isinstance(pid, int) and isinstance(ctime, float) and process_key(pid) == (pid, ctime)
            if alive and i == len(rows) - 1:
                # Ours by its recorded identity, and the latest: adopt it, don't kill it. Stopping it
                # would interrupt every run in flight, the very thing gatewayd exists to prevent.
                assert isinstance(pid, int) and isinstance(ctime, float)
                adopt = (int(row["id"]), (pid, ctime))
                log.info("previous_gateway_alive", boot=row["id"], pid=pid)
                continue
            if alive:  # an older one still alive: never two gateways
                await self._stop_stale(pid)  # type: ignore[arg-type]
                end = BootEnd(None, str(ExitKind.STOP_UNCLEAN), "stopped a gateway left by a previous gatewayd",
                              True, {})
            else:
                end = BootEnd(None, str(ExitKind.VANISHED), "ended while gatewayd was down", True, {})
            await self._record(self.records.ended(int(row["id"]), end))
            log.warning("previous_boot_unended", boot=row["id"], pid=pid, alive=alive,
                        exit_kind=end.exit_kind)
        return adopt

    async def salvage_left_running(self, spec: LaunchSpec) -> None:
        """2.x: runs the dead gateway's jobs file still shows running, which no snapshot saw,
        become obligations before the next gateway clears the marks (gateway/jobstore.py)."""
        if spec.cron_store is None:
            return
        try:
            runs = await asyncio.to_thread(jobstore.left_running, spec.cron_store)
        except jobstore.JobStoreError as exc:
            log.error("jobs_file_unreadable", error=str(exc))
            return
        if not runs:
            return
        result = await self._record(self.inflight.record_unseen(runs.values()))
        if result is None:
            log.error("jobs_file_runs_not_recorded",
                      runs=[list(k) for k in runs])
            return
        added = result[1]
        # `unseen`: the runs no snapshot had recorded, now obligations of the boot they started in.
        (log.warning if added else log.info)("jobs_file_runs_left_running",
                                             runs=[list(k) for k in runs],
                                             unseen=[[*r.key, boot] for boot, r in added])

    async def clear_orphaned_locks(self, spec: LaunchSpec) -> None:
        """Session locks a killed gateway left empty, which would fail the next gateway's session
        writes for half a minute (core/orphan_locks.py). Whatever goes wrong here is logged with
        the file it concerns and never stops the spawn: the gateway's own rule then applies."""
        try:
            done = await asyncio.to_thread(session_locks.clear_orphaned, spec.state_dir, spec.session_store)
        except Exception as exc:  # the spawn goes ahead whatever this finds
            log.error("session_locks_not_cleared", state_dir=str(spec.state_dir), error=f"{type(exc).__name__}: {exc}")
            return
        for path, why in done.removed:
            log.warning("session_lock_removed", file=path, why=why)
        for path, error in done.failed:
            log.error("session_lock_not_cleared", file=path, error=error)

    async def _stop_stale(self, pid: int) -> None:
        import psutil

        try:
            proc = psutil.Process(pid)
            os.killpg(pid, signal.SIGTERM) if os.getpgid(pid) == pid else proc.terminate()
            await asyncio.to_thread(psutil.wait_procs, [proc], self.stop_budget_s)
            # Whatever is left of its group goes too (the group id stays ours while it has members).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        except (psutil.Error, ProcessLookupError, PermissionError):
            pass
