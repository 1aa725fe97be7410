"""The gateway as a child process: spawn in its own process group, drain its output, notice its
exit at once (asyncio's child watcher wakes the loop on the exit, no polling), stop it along the
SIGTERM -> drain budget -> SIGKILL ladder, and leave no process of its tree behind.

Only one reaper of the child exists: asyncio's. Descendants are recorded by (pid, create time)
while the child runs, so a grandchild that left the process group (its own session: browsers,
MCP servers, PTYs) is still found and killed, and a recycled pid is never signalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import time
from dataclasses import dataclass, field

import psutil

from supervisor import logs
from supervisor.errors import LaunchError
from supervisor.gateway.launch import LaunchSpec

log = logs.get("gatewayd.child")

ProcessKey = tuple[int, float]  # (pid, create time): a pid alone may be recycled


PR_SET_CHILD_SUBREAPER = 36
HELPER_PIDS: set[int] = set()  # gatewayd's own short-lived children (e.g. `restart-handoff consume`)


def become_subreaper() -> bool:
    """Linux: orphans of the gateway's tree are re-parented to gatewayd instead of init, so a
    descendant it started just before dying (not yet recorded) is still found and reaped."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def process_key(pid: int) -> ProcessKey | None:
    try:
        return (pid, psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def same_process(key: ProcessKey) -> psutil.Process | None:
    """The live process with this exact identity, or None (gone, or the pid was reused)."""
    try:
        p = psutil.Process(key[0])
        if abs(p.create_time() - key[1]) < 0.01 and p.status() != psutil.STATUS_ZOMBIE:
            return p
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        pass
    return None


@dataclass
class ExitInfo:
    returncode: int
    exited_at: float  # monotonic, when the loop learned of it
    killed_by_us: bool


@dataclass
class GatewayChild:
    spec: LaunchSpec
    output: logs.OutputLog
    proc: asyncio.subprocess.Process | None = None
    key: ProcessKey | None = None
    descendants: dict[int, ProcessKey] = field(default_factory=dict)
    killed_by_us: bool = False
    last_output_at: float = 0.0
    _cpu_seen: float = 0.0
    _drain_task: asyncio.Task[None] | None = None
    _exit: ExitInfo | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def spawn(self) -> int:
        # Our own pipe, not asyncio's PIPE: asyncio's `wait()` also waits for EOF on a PIPE, and a
        # grandchild holding the gateway's stderr (an MCP server, a double-forked tool) would hide
        # the gateway's exit until it closed.
        read_fd, write_fd = os.pipe()
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.spec.argv,
                env=dict(self.spec.env),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=write_fd,
                stderr=write_fd,
                start_new_session=True,  # its own process group: signals and kills reach its whole tree
            )
        except OSError as exc:
            os.close(read_fd)
            raise LaunchError(f"cannot start {self.spec.argv[0]}: {exc.strerror or exc}") from exc
        finally:
            os.close(write_fd)
        self.key = process_key(self.proc.pid) or (self.proc.pid, time.time())
        reader = asyncio.StreamReader(limit=1 << 20)
        await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", buffering=0))
        self._drain_task = asyncio.create_task(self._drain(reader), name="gateway-output")
        return self.proc.pid

    async def _drain(self, stream: asyncio.StreamReader) -> None:
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line longer than the limit: take what is buffered
                line = await stream.read(1 << 20)
            if not line:
                return
            self.last_output_at = time.monotonic()
            self.output.write_line(line)

    async def wait(self) -> ExitInfo:
        assert self.proc is not None
        if self._exit is None:
            rc = await self.proc.wait()
            self._exit = ExitInfo(rc, time.monotonic(), self.killed_by_us)
        return self._exit

    @property
    def exited(self) -> bool:
        return self.proc is not None and self.proc.returncode is not None

    def signal(self, sig: signal.Signals) -> bool:
        """Signal the gateway process itself (not its group): it drains and ends its own tree."""
        if self.proc is None or self.exited:
            return False
        try:
            self.proc.send_signal(sig)
            return True
        except ProcessLookupError:
            return False

    def record_descendants(self) -> None:
        if self.proc is None or self.exited:
            return
        try:
            for c in psutil.Process(self.proc.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    self.descendants.setdefault(c.pid, (c.pid, c.create_time()))
        except psutil.Error:
            pass

    def progress(self) -> bool:
        """Did the gateway use CPU or print since the last call? (hang detection's 'no progress').

        Only the gateway process itself counts: its event loop is what answers probes, and its
        helper processes (2026.9.x's spawn broker and sqlite worker) keep ticking while it is
        stopped or stuck."""
        total = 0.0
        if self.proc is not None and not self.exited:
            with contextlib.suppress(psutil.Error):
                t = psutil.Process(self.proc.pid).cpu_times()
                total = t.user + t.system
        moved = total > self._cpu_seen + 0.005
        self._cpu_seen = max(self._cpu_seen, total)
        printed = self.last_output_at > 0 and time.monotonic() - self.last_output_at < 1.0
        return moved or printed

    def diagnostics(self) -> dict[str, object]:
        """What a hang looked like, recorded before the kill."""
        info: dict[str, object] = {"last_lines": self.output.last_lines(10)}
        if self.proc is not None and not self.exited:
            with contextlib.suppress(psutil.Error):
                p = psutil.Process(self.proc.pid)
                t = p.cpu_times()
                info.update(status=p.status(), cpu_s=round(t.user + t.system, 3), threads=p.num_threads(),
                            rss_mb=round(p.memory_info().rss / 2**20, 1))
        return info

    def kill_tree(self) -> None:
        """SIGKILL the process group and every recorded descendant that is still the same process."""
        self.record_descendants()
        self.killed_by_us = True
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        for key in list(self.descendants.values()):
            p = same_process(key)
            if p is not None:
                with contextlib.suppress(psutil.Error):
                    p.kill()

    def leftovers(self) -> list[psutil.Process]:
        alive: list[psutil.Process] = self._adopted_orphans()
        for key in self.descendants.values():
            p = same_process(key)
            if p is not None:
                alive.append(p)
        if self.proc is not None:
            for p in psutil.process_iter(["pid"]):
                with contextlib.suppress(psutil.Error, OSError):
                    if p.pid not in self.descendants and os.getpgid(p.pid) == self.proc.pid \
                            and p.status() != psutil.STATUS_ZOMBIE:
                        alive.append(p)
        return alive

    def _adopted_orphans(self) -> list[psutil.Process]:
        """Our own children that are not the gateway nor a helper of ours: as a subreaper, these are
        the gateway tree's orphans (started after our last look at the tree)."""
        if self.proc is None or self.key is None:
            return []
        found = []
        with contextlib.suppress(psutil.Error):
            for c in psutil.Process().children():
                with contextlib.suppress(psutil.Error):
                    if c.pid != self.proc.pid and c.pid not in HELPER_PIDS and c.pid not in self.descendants \
                            and c.create_time() >= self.key[1] - 0.01 and c.status() != psutil.STATUS_ZOMBIE:
                        found.append(c)
        return found

    async def stop(self, budget_s: float, force: asyncio.Event | None = None) -> ExitInfo:
        """SIGTERM, wait for the drain up to the budget (or until `force` is set), then SIGKILL the
        tree. Returns when the gateway is reaped and nothing of its tree is left."""
        assert self.proc is not None
        self.record_descendants()
        if not self.exited:
            self.signal(signal.SIGTERM)
            waiter = asyncio.ensure_future(self.wait())
            forced = asyncio.ensure_future(force.wait()) if force is not None else None
            pending = {waiter} | ({forced} if forced else set())
            await asyncio.wait(pending, timeout=budget_s, return_when=asyncio.FIRST_COMPLETED)
            if forced is not None:
                forced.cancel()
            if not waiter.done():
                log.warning("gateway drain over budget, killing its process group", pid=self.proc.pid,
                            budget_s=budget_s)
                self.kill_tree()
            await waiter
        await self.reap_tree()
        return await self.wait()

    async def reap_tree(self, timeout_s: float = 10.0) -> None:
        """After the gateway's exit: kill what is left of its tree and wait until it is gone."""
        left = self.leftovers()
        if left:
            # One by one through psutil (it checks identity): the group id may be free by now.
            log.warning("killing leftovers of the gateway's tree", pids=[p.pid for p in left])
            for p in left:
                with contextlib.suppress(psutil.Error):
                    p.kill()
            await asyncio.to_thread(psutil.wait_procs, left, timeout_s)
        if self._drain_task is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._drain_task), 2.0)
            self._drain_task.cancel()
