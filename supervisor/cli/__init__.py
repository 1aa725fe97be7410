"""The command line: thin commands over the control socket, the store's reads and the service
managers. `entry` is the entry point and the status fast path (no typer, asyncio or structlog at
load); `commands` the typer app; `status_report` what status and history print and their exit
codes; `doctor` the installation's checks. `main` is here too: a `gatewayd` script installed
before the package existed imports it from `supervisor.cli`."""

from supervisor.cli.entry import main

__all__ = ["main"]
