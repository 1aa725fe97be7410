"""The control server: each connection is its own task (a slow or silent client never blocks the
daemon's loop); a handler only reads state or enqueues an intent for the supervision loop."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import struct
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from supervisor import logs
from supervisor.control.protocol import MAX_LINE, Code, ControlError, error, ok, parse_request

log = logs.get("gatewayd.control")

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
READ_TIMEOUT_S = 10.0


def socket_path(state_dir: Path) -> Path:
    """<state>/run/control.sock, or, when that is too long for a Unix socket (104 bytes on macOS;
    ~/Library/Application Support alone is long), a short path in /tmp named by the state dir's hash."""
    natural = state_dir / "run" / "control.sock"
    if len(os.fsencode(natural)) <= 100:
        return natural
    digest = hashlib.sha256(os.fsencode(state_dir.absolute())).hexdigest()[:16]
    return Path("/tmp") / f"gatewayd-{os.getuid()}" / f"{digest}.sock"


def peer_uid(sock: socket.socket) -> int | None:
    """The connecting process's uid, from the kernel (not from anything the client says)."""
    if sys.platform.startswith("linux"):
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return int(struct.unpack("3i", creds)[1])
    getpeereid = getattr(os, "getpeereid", None)  # not in the stdlib; macOS falls back below
    if getpeereid is not None:
        return int(getpeereid(sock.fileno())[0])
    if sys.platform == "darwin":
        xucred = sock.getsockopt(0, 0x001, 76)  # SOL_LOCAL, LOCAL_PEERCRED: struct xucred
        return int(struct.unpack_from("I", xucred, 4)[0])
    return None


class ControlServer:
    def __init__(self, path: Path, handlers: dict[str, Handler]) -> None:
        self.path = path
        self.handlers = handlers
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.path.parent, 0o700)
        if len(os.fsencode(self.path)) > 103:  # macOS sun_path holds 104 bytes with the NUL
            raise OSError(f"control socket path too long for a Unix socket: {self.path}")
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # we hold the instance lock: a socket here is a dead daemon's
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._client, path=str(self.path), limit=MAX_LINE)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        rid = ""
        try:
            sock = writer.get_extra_info("socket")
            uid = peer_uid(sock) if sock is not None else None
            if uid is not None and uid != os.getuid():
                writer.write(error("", Code.FORBIDDEN, f"uid {uid} may not control this gatewayd"))
                return
            try:
                line = await asyncio.wait_for(reader.readline(), READ_TIMEOUT_S)
            except (TimeoutError, ValueError):
                writer.write(error("", Code.BAD_REQUEST, "no request line (or longer than 64 KiB)"))
                return
            try:
                req = parse_request(line)
                rid = req.id
                handler = self.handlers.get(req.command)
                if handler is None:
                    raise ControlError(Code.UNKNOWN_COMMAND,
                                       f"unknown command {req.command!r} (known: {', '.join(sorted(self.handlers))})")
                writer.write(ok(rid, await handler(req.args)))
            except ControlError as exc:
                writer.write(error(rid, exc.code, str(exc)))
        except Exception as exc:
            log.error("control request failed", error=str(exc), error_type=type(exc).__name__)
            with contextlib.suppress(Exception):
                writer.write(error(rid, Code.FAILED, f"internal error: {type(exc).__name__}"))
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.drain(), 2.0)
                writer.close()
