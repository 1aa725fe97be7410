"""What the control commands do: read the daemon's state, or enqueue an intent for its loop."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from supervisor import __version__
from supervisor.control.protocol import Code, ControlError, drain_budget_problem
from supervisor.control.server import Handler

if TYPE_CHECKING:
    from supervisor.daemon import Daemon


def control_handlers(d: Daemon) -> dict[str, Handler]:
    async def ping(args: dict[str, Any]) -> Any:
        return {"pid": os.getpid(), "version": __version__, "started_at": d.started_at}

    async def status(args: dict[str, Any]) -> Any:
        w = d.current
        gateway: dict[str, Any] | None = None
        inflight: dict[str, Any] = {"sessions": [], "runs": []}
        if w is not None:
            gateway = {"pid": w.child.pid if w.child.key else None, "boot": w.boot, "ready": w.ready,
                       "adopted": w.child.adopted, "gateway_boot_id": w.gateway_boot_id,
                       "version": d.spec.capabilities.version if d.spec else None}
            if w.snapshotter is not None:
                inflight = {"sessions": sorted(w.snapshotter.state.sessions),
                            "runs": [{"job_id": j, "running_at_ms": t} for j, t in sorted(w.snapshotter.state.runs)]}
        return {"pid": os.getpid(), "started_at": d.started_at, "state": str(d.state),
                "crash_loop": d.tracker.crash_loop,
                "consecutive_crashes": d.tracker.consecutive, "gateway": gateway, "inflight": inflight,
                "restart_pending": d.restart_requested.is_set(), "stopping": d.stop_requested.is_set(),
                "store_error": d.store_error,
                "faults": [f.as_dict() for f in d.helpers.faults.values()]}

    async def stop(args: dict[str, Any]) -> Any:
        d.request_stop()
        return {"stopping": True}

    async def restart(args: dict[str, Any]) -> Any:
        safe = args.get("safe", True)
        timeout = args.get("timeout_s")
        if not isinstance(safe, bool):
            raise ControlError(Code.BAD_REQUEST, "args.safe must be a boolean")
        problem = drain_budget_problem(timeout) if timeout is not None else None
        if problem is not None:
            raise ControlError(Code.BAD_REQUEST, f"args.timeout_s {problem}")
        if d.current is None:
            raise ControlError(Code.CONFLICT, f"no gateway to restart (state {d.state})")
        boot = d.current.boot
        if not d.request_restart(safe, float(timeout) if timeout is not None else None):
            raise ControlError(Code.CONFLICT, "a restart or stop is already under way")
        return {"restarting": True, "boot": boot, "safe": safe}

    return {"ping": ping, "status": status, "stop": stop, "restart": restart}
