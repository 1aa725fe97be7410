"""One gatewayd per state dir: an OS lock (flock), released by the kernel when the holder dies.

The pid written into the lock file is information for people, never obeyed: a `kill -9`ed
gatewayd leaves a stale pid there, and the next one starts at once because the lock is free.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from supervisor.errors import InstanceLocked

# `holder_pid` (e.g. `gatewayd status`) holds a shared lock for an instant: a gatewayd starting
# right then retries for about 200 ms before it believes another gatewayd runs.
ACQUIRE_TRIES = 20
ACQUIRE_PAUSE_S = 0.01


class InstanceLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        for attempt in range(ACQUIRE_TRIES):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt < ACQUIRE_TRIES - 1:
                    time.sleep(ACQUIRE_PAUSE_S)
        else:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise InstanceLocked(f"another gatewayd (pid {holder}) already runs on {self.path.parent}")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def holder_pid(path: Path) -> int | None:
    """The pid a running gatewayd wrote, if the lock is held right now (None when free)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
