"""The CLI's side of the control socket."""

from __future__ import annotations

import json
import socket
import uuid
from pathlib import Path
from typing import Any

from supervisor.control.protocol import Code, ControlError


class DaemonDown(Exception):
    pass


def call(path: Path, command: str, args: dict[str, Any] | None = None, timeout_s: float = 10.0) -> Any:
    """Send one request; return its data, or raise ControlError (with the daemon's code) or DaemonDown."""
    rid = uuid.uuid4().hex[:8]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout_s)
    try:
        try:
            s.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise DaemonDown(f"gatewayd is not running (no control socket at {path})") from exc
        s.sendall((json.dumps({"id": rid, "command": command, "args": args or {}}) + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    except TimeoutError as exc:
        raise ControlError(Code.FAILED, f"gatewayd did not answer {command!r} within {timeout_s:g}s") from exc
    finally:
        s.close()
    try:
        doc = json.loads(buf)
    except ValueError as exc:
        raise ControlError(Code.FAILED, "gatewayd sent a malformed answer") from exc
    if doc.get("status") == "ok":
        return doc.get("data")
    raise ControlError(Code(int(doc.get("code", 1))) if doc.get("code") in set(Code) else Code.FAILED,
                       str(doc.get("error", "failed")))
