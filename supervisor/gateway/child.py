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
import os
import signal
import time
from dataclasses import dataclass, field

import psutil

from supervisor import logs
from supervisor.errors import LaunchError
from supervisor.gateway.launch import LaunchSpec

log = logs.get("gatewayd.child")

ProcessKey = tuple[int, float]  # (pid, create time): a pid alone may be recycled


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
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.spec.argv,
                env=dict(self.spec.env),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # its own process group: signals and kills reach its whole tree
                limit=1 << 20,
            )
        except OSError as exc:
            raise LaunchError(f"cannot start {self.spec.argv[0]}: {exc.strerror or exc}") from exc
        self.key = process_key(self.proc.pid) or (self.proc.pid, time.time())
        self._drain_task = asyncio.create_task(self._drain(), name="gateway-output")
        return self.proc.pid

    async def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        stream = self.proc.stdout
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
        alive: list[psutil.Process] = []
        for key in self.descendants.values():
            p = same_process(key)
            if p is not None:
                alive.append(p)
        if self.proc is not None:
            for p in psutil.process_iter(["pid"]):
                with contextlib.suppress(psutil.Error):
                    if p.pid not in self.descendants and os.getpgid(p.pid) == self.proc.pid \
                            and p.status() != psutil.STATUS_ZOMBIE:
                        alive.append(p)
        return alive

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
            log.warning("killing leftovers of the gateway's tree", pids=[p.pid for p in left])
            self.kill_tree()
            await asyncio.to_thread(psutil.wait_procs, left, timeout_s)
        if self._drain_task is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._drain_task), 2.0)
            self._drain_task.cancel()
