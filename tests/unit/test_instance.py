"""One gatewayd per state dir: an OS lock, never a pid file that is obeyed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.errors import InstanceLocked
from supervisor.instance import InstanceLock, holder_pid

ROOT = Path(__file__).resolve().parents[2]
HOLDER = """
import sys
from supervisor.instance import InstanceLock
InstanceLock(__import__("pathlib").Path(sys.argv[1])).acquire()
print("locked", flush=True)
sys.stdin.read()  # hold until killed
"""


@pytest.fixture
def lock_path(tmp_path: Path) -> Path:
    return tmp_path / "state dir" / "gatewayd.lock"


@pytest.fixture
def holder(lock_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the lock (it waits on its stdin, no sleeps)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock_path), str(ROOT)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


def test_acquire_creates_the_dir_and_writes_our_pid(lock_path: Path) -> None:
    lock = InstanceLock(lock_path)
    lock.acquire()
    try:
        assert lock_path.read_text().strip() == str(os.getpid())
        assert holder_pid(lock_path) == os.getpid()
    finally:
        lock.release()


def test_second_acquire_on_same_dir_raises_naming_the_holder(lock_path: Path) -> None:
    first = InstanceLock(lock_path)
    first.acquire()
    try:
        with pytest.raises(InstanceLocked) as info:
            InstanceLock(lock_path).acquire()
        assert f"pid {os.getpid()}" in str(info.value)
        assert str(lock_path.parent) in str(info.value)
        assert "\n" not in str(info.value)
    finally:
        first.release()


def test_acquire_after_release_succeeds(lock_path: Path) -> None:
    first = InstanceLock(lock_path)
    first.acquire()
    first.release()
    assert holder_pid(lock_path) is None
    second = InstanceLock(lock_path)
    second.acquire()
    second.release()


def test_release_twice_is_harmless(lock_path: Path) -> None:
    lock = InstanceLock(lock_path)
    lock.acquire()
    lock.release()
    lock.release()


def test_holder_pid_none_when_no_file(lock_path: Path) -> None:
    assert holder_pid(lock_path) is None


def test_holder_pid_none_when_free(lock_path: Path) -> None:
    lock_path.parent.mkdir(parents=True)
    lock_path.write_text("12345\n")
    assert holder_pid(lock_path) is None


def test_other_process_holds_the_lock(lock_path: Path, holder: subprocess.Popen[str]) -> None:
    assert holder_pid(lock_path) == holder.pid
    with pytest.raises(InstanceLocked) as info:
        InstanceLock(lock_path).acquire()
    assert f"pid {holder.pid}" in str(info.value)


def test_lock_of_a_sigkilled_holder_is_free_at_once(lock_path: Path, holder: subprocess.Popen[str]) -> None:
    os.kill(holder.pid, signal.SIGKILL)
    assert holder.wait(timeout=10) == -signal.SIGKILL
    # the stale pid is still in the file, but nobody holds the lock
    assert lock_path.read_text().strip() == str(holder.pid)
    assert holder_pid(lock_path) is None
    lock = InstanceLock(lock_path)
    lock.acquire()
    try:
        assert lock_path.read_text().strip() == str(os.getpid())
    finally:
        lock.release()


def test_lock_file_naming_an_unrelated_live_pid_is_not_obeyed(lock_path: Path) -> None:
    other = os.getppid()
    os.kill(other, 0)  # alive
    lock_path.parent.mkdir(parents=True)
    lock_path.write_text(f"{other}\n")
    assert holder_pid(lock_path) is None
    lock = InstanceLock(lock_path)
    lock.acquire()
    try:
        assert lock_path.read_text() == f"{os.getpid()}\n"  # overwritten, not appended
        os.kill(other, 0)  # and never signalled
    finally:
        lock.release()


def test_longer_stale_content_is_truncated(lock_path: Path) -> None:
    lock_path.parent.mkdir(parents=True)
    lock_path.write_text("999999999999 some old text\n")
    lock = InstanceLock(lock_path)
    lock.acquire()
    try:
        assert lock_path.read_text() == f"{os.getpid()}\n"
    finally:
        lock.release()


def test_acquire_is_not_refused_by_a_concurrent_holder_pid_probe(lock_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import fcntl

    from supervisor import instance

    lock_path.parent.mkdir(parents=True)
    lock_path.write_text("4242\n")  # stale pid of a dead gatewayd
    # A status check is inside holder_pid, between its flock(LOCK_SH) and flock(LOCK_UN) ...
    probe_fd = os.open(lock_path, os.O_RDONLY)
    fcntl.flock(probe_fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    probing = True
    real_flock = fcntl.flock

    def flock(fd: int, op: int) -> None:
        nonlocal probing
        try:
            real_flock(fd, op)
        except BlockingIOError:
            if probing:  # ... and finishes right after acquire's first attempt
                real_flock(probe_fd, fcntl.LOCK_UN)
                probing = False
            raise

    monkeypatch.setattr(instance.fcntl, "flock", flock)
    try:
        lock = InstanceLock(lock_path)
        lock.acquire()
        lock.release()
    finally:
        os.close(probe_fd)


def test_acquire_retries_briefly_then_refuses_a_real_holder(lock_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from supervisor import instance

    sleeps: list[float] = []
    monkeypatch.setattr(instance.time, "sleep", sleeps.append)
    first = InstanceLock(lock_path)
    first.acquire()
    try:
        with pytest.raises(InstanceLocked):
            InstanceLock(lock_path).acquire()
    finally:
        first.release()
    assert len(sleeps) == instance.ACQUIRE_TRIES - 1
    assert 0.1 <= sum(sleeps) <= 0.5
