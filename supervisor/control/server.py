"""The control server: each connection is its own task (a slow or silent client never blocks the
daemon's loop); a handler only reads state or enqueues an intent for the supervision loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from supervisor import logs
from supervisor.control import paths
from supervisor.control.protocol import MAX_LINE, Code, ControlError, error, ok, parse_request

log = logs.get("gatewayd.control")

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
READ_TIMEOUT_S = 10.0
DRAIN_TIMEOUT_S = 2.0


socket_path = paths.server_socket_path  # the daemon's side; clients use paths.client_socket_path
peer_uid = paths.peer_uid


class ControlServer:
    def __init__(self, path: Path, handlers: dict[str, Handler]) -> None:
        self.path = path
        self.handlers = handlers
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = os.lstat(folder)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            raise OSError(f"control socket folder {folder} is not a directory of uid {os.getuid()}")
        if stat.S_IMODE(st.st_mode) & 0o077:
            os.chmod(folder, 0o700)
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
                async with asyncio.timeout(2.0):
                    await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        paths.forget(self.path)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        rid = ""
        try:
            sock = writer.get_extra_info("socket")
            uid = peer_uid(sock) if sock is not None else None
            if uid is not None and uid != os.getuid():
                writer.write(error("", Code.FORBIDDEN, f"uid {uid} may not control this gatewayd"))
                return
            try:
                async with asyncio.timeout(READ_TIMEOUT_S):
                    line = await reader.readline()
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
            log.error("control_request_failed", error=str(exc), error_type=type(exc).__name__)
            with contextlib.suppress(Exception):
                writer.write(error(rid, Code.FAILED, f"internal error: {type(exc).__name__}"))
        finally:
            drained = False
            with contextlib.suppress(Exception):
                async with asyncio.timeout(DRAIN_TIMEOUT_S):
                    await writer.drain()
                drained = True
            # Closed whether or not the reply went out: a client that never reads must not keep the
            # connection (and its buffer) open for ever.
            with contextlib.suppress(Exception):
                if drained:
                    writer.close()
                else:
                    writer.transport.abort()
