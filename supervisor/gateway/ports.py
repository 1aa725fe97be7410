"""Who listens on a TCP port. psutil's system-wide view needs root on macOS; fall back to our
own user's processes, which is where a gateway gatewayd may signal can be anyway."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import psutil


@dataclass(frozen=True)
class PortOwner:
    pid: int | None  # None: something listens, but we may not see whose it is
    cmdline: str
    create_time: float | None

    def describe(self) -> str:
        if self.pid is None:
            return "a process gatewayd cannot see (another user?)"
        return f"pid {self.pid} ({self.cmdline or '?'})"


def _listening(conns: list[Any], port: int) -> bool:
    return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in conns)


def port_owners(port: int) -> list[PortOwner]:
    pids: set[int | None] = set()
    try:
        for c in psutil.net_connections(kind="tcp"):
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port:
                pids.add(c.pid)
    except psutil.AccessDenied:
        uid = os.getuid()
        for p in psutil.process_iter(["uids"]):
            with contextlib.suppress(psutil.Error):
                if p.info["uids"] and p.info["uids"].real == uid and _listening(p.net_connections("tcp"), port):
                    pids.add(p.pid)
    owners: list[PortOwner] = []
    for pid in pids:
        if pid is None:
            owners.append(PortOwner(None, "", None))
            continue
        try:
            p = psutil.Process(pid)
            owners.append(PortOwner(pid, " ".join(p.cmdline())[:300], p.create_time()))
        except psutil.Error:
            continue
    return owners
