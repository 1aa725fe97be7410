"""The `gatewayd` command line: `main()`, and the fast path of `gatewayd status`.

This module is light on purpose (issue 16: `gatewayd status` must answer at once): it imports no
typer, asyncio or structlog at load. The typer app and its commands live in `supervisor.cli.commands`
and are imported only when a command needs them.
`gatewayd status [--json] [-c F] [--state-dir D]` runs without building the typer app at all; any
other form of it (`--help`, an unknown or repeated option) goes through typer as before, and both
paths print the same and exit the same.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from supervisor.cli.status_report import status

# -- the fast path -------------------------------------------------------------------------------

_STATUS_VALUE_OPTS = {"--config": "config", "-c": "config", "--state-dir": "state_dir"}


def parse_plain_status(argv: list[str]) -> dict[str, Any] | None:
    """`status` with only --json, --config/-c F and --state-dir D, each at most once: its arguments.
    None for anything else (help, completion, an unknown, repeated or odd option), which typer
    handles (and reports) itself."""
    if not argv or argv[0] != "status":
        return None
    out: dict[str, Any] = {"config": None, "state_dir": None, "as_json": False}
    seen: set[str] = set()
    rest = argv[1:]
    i = 0
    while i < len(rest):
        arg = rest[i]
        value: str | bool
        if arg == "--json":
            key, value = "as_json", True
        else:
            name, eq, inline = arg.partition("=")
            if name not in _STATUS_VALUE_OPTS or (eq and name == "-c"):
                return None
            key = _STATUS_VALUE_OPTS[name]
            if eq:
                text = inline
            elif i + 1 < len(rest):
                i += 1
                text = rest[i]
            else:
                return None
            if not text or text.startswith("-"):
                return None
            value = text
        if key in seen:
            return None
        seen.add(key)
        out[key] = value
        i += 1
    if out["config"] is not None:
        out["config"] = Path(out["config"])
    return out


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    plain = parse_plain_status(args)
    if plain is not None:
        sys.exit(status(plain["config"], plain["state_dir"], plain["as_json"]))
    from supervisor.cli.commands import app

    if argv is None:
        app(prog_name="gatewayd")
    else:
        app(args=args, prog_name="gatewayd")


if __name__ == "__main__":
    main()
