"""The notifier senders: one attempt of one alert through one notifier, with a deadline, never
raising. A webhook gets the alert as JSON (POST, httpx), ntfy its text (POST to the topic URL), a
command its JSON on stdin (no shell, its own session, killed at the deadline), and on macOS the
desktop a notification (osascript, the text passed as arguments, never as script).

Secrets (a bearer token, a URL that is itself a secret) are read from the environment by variable
name at each send and added to the redactor; what comes back (`Outcome.detail`) names what failed,
never the URL or the token, since it is logged and stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from supervisor import logs
from supervisor.config import Notifier
from supervisor.core.alertrules import Alert
from supervisor.gateway.child import HELPER_PIDS
from supervisor.gateway.launch import SECRET_VARIABLES


@dataclass(frozen=True)
class Outcome:
    ok: bool
    detail: str  # one line: "HTTP 200", "exit 0", "timed out after 10 s", "TOKEN_VAR is not set"
    latency_ms: int = 0


def document(alert: Alert, alert_id: int | None, host: str | None = None) -> dict[str, Any]:
    """The alert as its JSON document (webhook body, command stdin)."""
    return {"source": "gatewayd", "host": host or socket.gethostname(), "id": alert_id, "kind": str(alert.kind),
            "severity": alert.severity, "title": alert.title, "message": alert.body, "at": time.time(),
            "boot": alert.boot, "incident": alert.incident,
            "incident_command": f"gatewayd history --incident {alert.incident}" if alert.incident else None,
            "fields": alert.fields}


def _secret(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name) or None
    if value:
        logs.REDACTOR.add([value])
    return value


def command_environment(environ: Mapping[str, str], notifiers: tuple[Notifier, ...],
                        own: Notifier | None = None) -> dict[str, str]:
    """gatewayd's environment without the gateway's secrets and the notifiers' own, except the
    secrets the command declared (`secret_env`: its bot token): it learns no other secret."""
    hidden = {*SECRET_VARIABLES, *(v for n in notifiers for v in n.secret_variables)}
    mine = set(own.secret_env) if own is not None else set()
    for name in mine:
        _secret(environ, name)  # redacted from its output, whatever it prints
    return {k: v for k, v in environ.items() if k not in hidden or k in mine}


async def send(n: Notifier, alert: Alert, doc: dict[str, Any], environ: Mapping[str, str],
               client: httpx.AsyncClient, all_notifiers: tuple[Notifier, ...] = ()) -> Outcome:
    began = time.monotonic()
    try:
        async with asyncio.timeout(n.timeout_s):
            outcome = await _send(n, alert, doc, environ, client, all_notifiers or (n,))
    except TimeoutError:
        outcome = Outcome(False, f"timed out after {n.timeout_s:g} s")
    except Exception as exc:  # any failure of one notifier is its outcome (httpx.InvalidURL is no HTTPError)
        outcome = Outcome(False, type(exc).__name__)
    return Outcome(outcome.ok, logs.REDACTOR.text(outcome.detail), int((time.monotonic() - began) * 1000))


async def _send(n: Notifier, alert: Alert, doc: dict[str, Any], environ: Mapping[str, str],
                client: httpx.AsyncClient, all_notifiers: tuple[Notifier, ...]) -> Outcome:
    match n.kind:
        case "webhook" | "ntfy":
            url = _secret(environ, n.url_env) if n.url_env else n.url
            if not url:
                return Outcome(False, f"{n.url_env} is not set")
            headers: dict[str, str] = {}
            if n.token_env:
                token = _secret(environ, n.token_env)
                if not token:
                    return Outcome(False, f"{n.token_env} is not set")
                headers["Authorization"] = f"Bearer {token}"
            if n.kind == "webhook":
                r = await client.post(url, json=doc, headers=headers, timeout=n.timeout_s)
            else:
                headers |= {"Title": _ascii(alert.title), "Priority": _NTFY_PRIORITY.get(alert.severity, "default"),
                            "Tags": f"gatewayd,{alert.kind}"}
                r = await client.post(url, content=alert.body.encode("utf-8"), headers=headers, timeout=n.timeout_s)
            return Outcome(r.is_success, f"HTTP {r.status_code}")
        case "command":
            return await _run(list(n.command), json.dumps(doc).encode("utf-8"),
                              command_environment(environ, all_notifiers, n))
        case "desktop":
            if sys.platform != "darwin":
                return Outcome(False, "desktop notifications need macOS")
            script = ["-e", "on run argv", "-e", "display notification (item 2 of argv) with title (item 1 of argv)",
                      "-e", "end run"]
            return await _run(["osascript", *script, alert.title, alert.body[:500]], b"",
                              command_environment(environ, all_notifiers))
    return Outcome(False, f"unknown kind {n.kind}")


_NTFY_PRIORITY = {"critical": "urgent", "warning": "high", "info": "default"}


def _ascii(text: str) -> str:
    return text.encode("ascii", errors="replace").decode("ascii")


async def _run(argv: list[str], stdin: bytes, env: dict[str, str]) -> Outcome:
    """Run without a shell in its own session; on cancellation (the deadline) its whole group is killed."""
    try:
        proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True)
    except OSError as exc:
        return Outcome(False, f"cannot run {argv[0]}: {exc.strerror or type(exc).__name__}")
    HELPER_PIDS.add(proc.pid)
    try:
        _, err = await proc.communicate(stdin)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                await asyncio.shield(proc.wait())
        HELPER_PIDS.discard(proc.pid)
    if proc.returncode == 0:
        return Outcome(True, "exit 0")
    # Redacted whole before it is cut: a secret across the cut would not match any more.
    tail = " ".join(logs.REDACTOR.text(err.decode("utf-8", errors="replace")).split())[-200:]
    return Outcome(False, f"exit {proc.returncode}{': ' + tail if tail else ''}")
