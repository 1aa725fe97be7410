"""The CLI's side of the control socket.

Every call has one deadline covering connect, send and the reply. A daemon that is stopped
(SIGSTOP) or swamped fills its accept backlog: connecting then fails at once with EAGAIN, which is
retried until the deadline and then reported as `NotAnswering`, never as a traceback (issue 17).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from supervisor.control import paths
from supervisor.control.protocol import Code, ControlError

RETRY_S = 0.05


class DaemonDown(Exception):
    pass


class NotAnswering(ControlError):
    """The daemon holds its socket but does not answer in time (stopped, swamped or hung)."""

    def __init__(self, message: str) -> None:
        super().__init__(Code.FAILED, message)


def _connect(s: socket.socket, path: Path, deadline: float, command: str, timeout_s: float) -> None:
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise NotAnswering(f"gatewayd is busy / not answering: its control socket accepted no connection "
                               f"for {command!r} within {timeout_s:g}s")
        s.settimeout(remaining)
        try:
            s.connect(str(path))
            return
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise DaemonDown(f"gatewayd is not running (no control socket at {path})") from exc
        except BlockingIOError:  # EAGAIN: the accept backlog is full
            time.sleep(min(RETRY_S, max(0.0, deadline - time.monotonic())))
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                time.sleep(min(RETRY_S, max(0.0, deadline - time.monotonic())))
                continue
            if exc.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTSOCK, errno.ENAMETOOLONG):
                raise DaemonDown(f"gatewayd is not running (no control socket at {path})") from exc
            raise


def call(path: Path, command: str, args: dict[str, Any] | None = None, timeout_s: float = 10.0) -> Any:
    """Send one request; return its data, or raise ControlError (with the daemon's code; NotAnswering
    when nothing answered within timeout_s) or DaemonDown."""
    deadline = time.monotonic() + timeout_s
    rid = uuid.uuid4().hex[:8]
    try:
        paths.check_owner(path)
    except paths.UntrustedSocket as exc:
        raise ControlError(Code.FORBIDDEN, str(exc)) from None
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        _connect(s, path, deadline, command, timeout_s)
        server_uid = paths.peer_uid(s)
        if server_uid is not None and server_uid != os.getuid():
            raise ControlError(Code.FORBIDDEN, f"control socket {path} is served by uid {server_uid}, "
                                               f"not {os.getuid()}: refusing it")
        s.settimeout(max(0.001, deadline - time.monotonic()))
        s.sendall((json.dumps({"id": rid, "command": command, "args": args or {}}) + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            s.settimeout(max(0.001, deadline - time.monotonic()))
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    except TimeoutError as exc:
        raise NotAnswering(f"gatewayd is busy / not answering: no answer to {command!r} within {timeout_s:g}s") \
            from exc
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
