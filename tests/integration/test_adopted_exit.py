"""An adopted gateway's exit wakes the loop as a child's does: through its pidfd (Linux) or kqueue
(macOS), with no listener check in between. The stand-in is a process that is not gatewayd's child
(a shell started it and exited), as an adopted gateway is not."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from supervisor.gateway import child as child_module
from supervisor.gateway.child import GatewayChild, ProcessKey, process_key

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(not hasattr(os, "pidfd_open") and sys.platform != "darwin",
                                 reason="no exit notification for a process that is not our child")]

# Far below the 60 s after which a gateway whose listener is gone is declared hung (the only other
# way gatewayd would learn of the exit), far above any scheduling delay.
SEEN_WITHIN_S = 10.0


def not_our_child() -> ProcessKey:
    out = subprocess.run(["sh", "-c", "sleep 120 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True,
                         check=True)
    pid = int(out.stdout)
    key = process_key(pid)
    assert key is not None and psutil.Process(pid).ppid() != os.getpid()
    return key


def kill_quietly(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def our_child() -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "120"])


async def test_an_adopted_process_killed_while_the_loop_is_busy_is_seen_when_the_loop_is_free() -> None:
    key = not_our_child()
    try:
        child = GatewayChild(None, None)  # type: ignore[arg-type]  # adopt() needs neither spec nor output
        assert child.adopt(key)
        freed = 0.0

        def busy() -> None:  # the kill lands while the loop runs a blocking step (a store write, say)
            nonlocal freed
            os.kill(key[0], signal.SIGKILL)
            time.sleep(1.0)
            freed = time.monotonic()

        asyncio.get_running_loop().call_soon(busy)
        info = await asyncio.wait_for(child.wait(), SEEN_WITHIN_S + 1.0)
        assert info.returncode is None and not info.killed_by_us
        assert info.exited_at - freed < SEEN_WITHIN_S
    finally:
        kill_quietly(key[0])


async def test_a_process_reaped_between_the_identity_check_and_the_watch_is_an_exit_not_an_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Found reading the pidfd path: pidfd_open (or kqueue's kevent) of a pid already reaped raises
    ProcessLookupError, which escaped adopt() and ended gatewayd's supervision loop. The race is
    made certain here: the identity check sees the process, which is reaped before the watch."""
    proc = our_child()
    key = process_key(proc.pid)
    assert key is not None
    real_check = child_module.same_process

    def check_then_reap(k: ProcessKey) -> psutil.Process | None:
        found = real_check(k)
        if found is not None:
            proc.kill()
            proc.wait()  # reaped: the pid names nothing any more
        return found

    monkeypatch.setattr(child_module, "same_process", check_then_reap)
    child = GatewayChild(None, None)  # type: ignore[arg-type]
    try:
        assert child.adopt(key)
        info = await asyncio.wait_for(child.wait(), SEEN_WITHIN_S)
        assert info.returncode is None and child.adopted
    finally:
        proc.kill()
        proc.wait()
