"""2026.2.x's jobs file, read after the gateway died and before the next one starts.

A run that started while gatewayd was down, or in the last instant before a kill (2.x announces a
run with no key of its own, so only a poll records it), dies with its gateway and no snapshot holds
it. The dead gateway's jobs file still does: `state.runningAtMs`, the same key `cron.list` shows.
The next 2.x gateway clears it silently at startup, so it must be read before that one is spawned.
(2026.9.x keeps its jobs in SQLite and records an interrupted run in its run log itself.)
"""

from __future__ import annotations

from pathlib import Path

from supervisor.core.inflight import RunItem, RunKey, parse_runs
from supervisor.errors import GatewayProtocolError
from supervisor.gateway import wire


class JobStoreError(Exception):
    """The jobs file exists but cannot be read as one."""


def left_running(path: Path) -> dict[RunKey, RunItem]:
    """The runs a jobs file shows in flight; none when there is no file."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise JobStoreError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        return parse_runs(wire.decode(text))
    except GatewayProtocolError as exc:
        raise JobStoreError(f"{path}: {exc}") from exc
