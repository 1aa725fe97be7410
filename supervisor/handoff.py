"""A requested restart confirmed through the gateway's own handoff record: on `BootEnded` of an
exit classified as a restart the gateway asked for, on a gateway that knows it has an external
supervisor, run `openclaw gateway restart-handoff consume` and record what it says.

Best effort, in the background: the exit already decided the respawn; this only records the
gateway's word for it (the store's `restart-handoff` event).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from supervisor import logs
from supervisor.core.model import ExitKind
from supervisor.events import BootEnded
from supervisor.gateway.child import HELPER_PIDS
from supervisor.gateway.launch import LaunchSpec
from supervisor.startup import Record
from supervisor.store.boots import BootRecords

log = logs.get("gatewayd")

CONSUME_TIMEOUT_S = 60.0


class RestartHandoff:
    def __init__(self, records: BootRecords, record: Record, spec: Callable[[], LaunchSpec | None]) -> None:
        self.records = records
        self._record = record
        self._spec = spec  # the launch spec of the boot being handed off
        self._tasks: set[asyncio.Task[None]] = set()

    def on_boot_ended(self, ev: BootEnded) -> None:
        spec = self._spec()
        if ev.exit_kind == ExitKind.RESTART_REQUESTED and spec is not None and spec.capabilities.external_supervisor:
            self.start(spec, ev.pid, ev.boot)

    def start(self, spec: LaunchSpec, pid: int, boot: int) -> None:
        task = asyncio.create_task(self.consume(spec, pid, boot), name="restart-handoff")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()

    async def consume(self, spec: LaunchSpec, pid: int, boot: int) -> None:
        prefix = spec.argv[: spec.argv.index("gateway")]
        argv = [*prefix, "gateway", "restart-handoff", "consume", "--expected-pid", str(pid), "--json"]
        proc: asyncio.subprocess.Process | None = None
        try:
            proc = await asyncio.create_subprocess_exec(*argv, env=dict(spec.env), stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.DEVNULL,
                                                        stdin=asyncio.subprocess.DEVNULL)
            HELPER_PIDS.add(proc.pid)
            async with asyncio.timeout(CONSUME_TIMEOUT_S):
                out, _ = await proc.communicate()
        except (OSError, TimeoutError) as exc:
            log.warning("restart_handoff_failed", error=str(exc))
            return
        finally:
            if proc is not None:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
                HELPER_PIDS.discard(proc.pid)
        data = _json_object(out.decode(errors="replace").strip())
        status = data.get("status")
        log.info("restart_handoff", pid=pid, status=status, reason=data.get("reason"))
        await self._record(self.records.event("restart-handoff", boot, {"status": status}))


def _json_object(text: str) -> dict[str, Any]:
    """The JSON object the command printed, after whatever it printed before it; {} if none."""
    try:
        data = json.loads(text[text.find("{"):]) if "{" in text else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
