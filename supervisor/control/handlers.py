"""What the control commands do: read the daemon's state, or enqueue an intent for its loop."""

from __future__ import annotations

import os
from typing import Any, Protocol

from supervisor import __version__
from supervisor.control.protocol import Code, ControlError, drain_budget_problem
from supervisor.control.server import Handler

MAX_PAUSE_S = 7 * 86400.0  # NaN and infinities fail the range check too


class Supervisor(Protocol):
    """What the control layer may ask of the daemon: a view of its state, and two intents. It
    never reaches into the daemon's parts (imports point down: the daemon imports this module)."""

    started_at: float

    def status_view(self) -> dict[str, Any]: ...

    def current_boot(self) -> int | None: ...

    def request_stop(self) -> None: ...

    def request_restart(self, safe: bool, timeout_s: float | None) -> bool: ...

    async def pause(self, for_s: float | None, by: str) -> dict[str, Any]: ...

    async def resume(self, by: str) -> bool: ...


def control_handlers(d: Supervisor) -> dict[str, Handler]:
    async def ping(args: dict[str, Any]) -> Any:
        return {"pid": os.getpid(), "version": __version__, "started_at": d.started_at}

    async def status(args: dict[str, Any]) -> Any:
        return {"pid": os.getpid(), **d.status_view()}

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
        boot = d.current_boot()
        if boot is None:
            raise ControlError(Code.CONFLICT, f"no gateway to restart (state {d.status_view()['state']})")
        if not d.request_restart(safe, float(timeout) if timeout is not None else None):
            raise ControlError(Code.CONFLICT, "a restart or stop is already under way")
        return {"restarting": True, "boot": boot, "safe": safe}

    async def pause(args: dict[str, Any]) -> Any:
        for_s = args.get("for_s")
        if for_s is not None and (isinstance(for_s, bool) or not isinstance(for_s, int | float)
                                  or not 0 < for_s <= MAX_PAUSE_S):
            raise ControlError(Code.BAD_REQUEST, f"args.for_s must be seconds in (0, {MAX_PAUSE_S:g}]")
        return {"paused": await d.pause(None if for_s is None else float(for_s), "cli")}

    async def resume(args: dict[str, Any]) -> Any:
        return {"resumed": await d.resume("cli")}

    return {"ping": ping, "status": status, "stop": stop, "restart": restart, "pause": pause, "resume": resume}
