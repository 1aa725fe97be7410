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
import json
import os
import select
import shutil
import signal
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psutil

from supervisor import logs
from supervisor.errors import LaunchError
from supervisor.gateway.launch import LaunchSpec

log = logs.get("gatewayd.child")

ProcessKey = tuple[int, float]  # (pid, create time): a pid alone may be recycled


# The start gate: the gateway's process starts as this stub, which execs the gateway (same pid,
# same create time) only once gatewayd has recorded the boot and writes "1" to its pipe. A gatewayd
# killed in between closes the pipe by dying, and the stub exits having started nothing: no
# gateway is ever left that no boot row names (its successor would start a second one on the
# same state; found by the chaos benchmark). Python, not a shell: the gateway is never spawned
# through a shell.
# What Python changes at its own start is undone before the exec: the signals it ignores, and
# LC_CTYPE, which it coerces to a UTF-8 locale under the C locale (argv[2]: "=value", or "-" when unset).
START_GATE = """import os, signal, sys
fd = int(sys.argv[1])
go = os.read(fd, 1)
os.close(fd)
if go != b"1":
    os._exit(0)
for name in ("SIGPIPE", "SIGXFSZ"):
    if hasattr(signal, name):
        signal.signal(getattr(signal, name), signal.SIG_DFL)
if sys.argv[2] == "-":
    os.environ.pop("LC_CTYPE", None)
else:
    os.environ["LC_CTYPE"] = sys.argv[2][1:]
try:
    os.execvp(sys.argv[3], sys.argv[3:])
except OSError as exc:
    sys.stderr.write(f"gatewayd: cannot start {sys.argv[3]}: {exc.strerror}\\n")
    os._exit(127)
"""

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


# What the relay keeps of gatewayd's environment: what Python needs to start and find `supervisor`
# (its search path, the user site under HOME, the locale). No variable that carries a secret
# (OPENCLAW_GATEWAY_TOKEN in gatewayd's own environment, say) reaches it.
RELAY_VARIABLES = frozenset({"PATH", "HOME", "TMPDIR", "TZ", "LANG"})
RELAY_PREFIXES = ("LC_", "PYTHON")


def relay_environment(environ: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if k in RELAY_VARIABLES or k.startswith(RELAY_PREFIXES)}


def hand_over(fd: int, secrets: Iterable[str]) -> None:
    """Write the secrets (a JSON list) to the relay's pipe, once, and close it. The relay reads it
    at its start; a relay already dead (EPIPE) has nothing left to redact for."""
    data = json.dumps(list(secrets)).encode("utf-8")
    try:
        with contextlib.suppress(BrokenPipeError):
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
    finally:
        os.close(fd)


@dataclass
class ExitInfo:
    returncode: int | None  # None: an adopted gateway, not our child: its code is not ours to read
    exited_at: float  # monotonic, when the loop learned of it
    killed_by_us: bool


@dataclass
class GatewayChild:
    spec: LaunchSpec
    output: logs.OutputFile
    proc: asyncio.subprocess.Process | None = None
    key: ProcessKey | None = None
    adopted: bool = False
    descendants: dict[int, ProcessKey] = field(default_factory=dict)
    killed_by_us: bool = False
    _output_size: int = 0
    _relay: asyncio.subprocess.Process | None = None
    _gate: int | None = None  # the write end of the spawned gateway's start gate, until opened
    _cpu_seen: float = 0.0
    _relay_task: asyncio.Task[None] | None = None
    _exit: ExitInfo | None = None
    _pid: int | None = None
    _exit_fut: asyncio.Future[int | None] | None = None
    _exit_watch: Any = None  # the task or the fd/kqueue watching an adopted gateway's exit

    @property
    def pid(self) -> int:
        assert self._pid is not None
        return self._pid

    def _exited_with(self, returncode: int | None) -> None:
        if self._exit_fut is not None and not self._exit_fut.done():
            self._exit = ExitInfo(returncode, time.monotonic(), self.killed_by_us)
            self._exit_fut.set_result(returncode)

    async def spawn(self) -> int:
        """The gateway writes to a pipe read by a relay process (supervisor.logrelay), not by gatewayd:
        if gatewayd dies the gateway keeps a reader and lives on to be adopted. A pipe, not a file,
        so secrets are redacted before anything is written. The gateway waits at its start gate
        until `open_gate`: gatewayd records the boot in between."""
        program = self.spec.argv[0]
        if shutil.which(program, path=self.spec.env.get("PATH", os.defpath)) is None:
            raise LaunchError(f"cannot start {program}: not found or not executable")
        read_fd, write_fd = os.pipe()
        gate_read = -1
        secrets_read, secrets_write = os.pipe()
        try:
            gate_read, self._gate = os.pipe()
            # The secrets to redact go through a pipe of their own (fd number on argv), never the
            # relay's environment: /proc/<pid>/environ would show them for the relay's whole life.
            relay = await asyncio.create_subprocess_exec(
                sys.executable, "-P", "-m", "supervisor.logrelay", str(self.output.path), str(self.output.max_bytes),
                str(self.output.backups), str(secrets_read), stdin=read_fd, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL, start_new_session=True, pass_fds=(secrets_read,),
                env=relay_environment(os.environ))
            HELPER_PIDS.add(relay.pid)
            self._relay = relay
            os.close(secrets_read)
            secrets_read = -1
            fd, secrets_write = secrets_write, -1
            hand_over(fd, self.spec.secrets())
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-S", "-c", START_GATE, str(gate_read),
                "=" + self.spec.env["LC_CTYPE"] if "LC_CTYPE" in self.spec.env else "-", *self.spec.argv,
                pass_fds=(gate_read,),
                env=dict(self.spec.env),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=write_fd,
                stderr=write_fd,
                start_new_session=True,  # its own process group: signals and kills reach its whole tree
            )
        except BaseException as exc:
            self.close_gate()  # a stub already started exits, having started nothing
            if isinstance(exc, OSError):
                raise LaunchError(f"cannot start {program}: {exc.strerror or exc}") from exc
            raise
        finally:
            os.close(read_fd)
            os.close(write_fd)
            for leftover in (gate_read, secrets_read, secrets_write):
                if leftover >= 0:
                    os.close(leftover)
        self._pid = self.proc.pid
        self.key = process_key(self.proc.pid) or (self.proc.pid, time.time())
        loop = asyncio.get_running_loop()
        self._exit_fut = loop.create_future()
        self._exit_watch = asyncio.create_task(self._watch_spawned(self.proc), name="gateway-exit")
        self._relay_task = asyncio.create_task(self._reap_relay(relay), name="gateway-output-relay")
        return self.proc.pid

    def open_gate(self) -> None:
        """Let the spawned gateway start (its boot is recorded, or cannot be and never will)."""
        gate, self._gate = self._gate, None
        if gate is not None:
            with contextlib.suppress(OSError):  # it died already: its exit is reported as usual
                os.write(gate, b"1")
            os.close(gate)

    def close_gate(self) -> None:
        """Make the stub exit without starting the gateway (gatewayd's own death does the same)."""
        gate, self._gate = self._gate, None
        if gate is not None:
            os.close(gate)

    async def _watch_spawned(self, proc: asyncio.subprocess.Process) -> None:
        self._exited_with(await proc.wait())

    def adopt(self, key: ProcessKey) -> bool:
        """Watch a gateway a previous gatewayd started (same pid and create time) instead of
        killing it: stopping it would interrupt every run in flight. Its exit is seen through a
        pidfd (Linux) or kqueue (macOS); its output went to the old gatewayd and is not captured."""
        if same_process(key) is None:
            return False
        loop = asyncio.get_running_loop()
        pid = key[0]
        if not hasattr(os, "pidfd_open") and sys.platform != "darwin":
            return False  # no exit notification here: not adoptable
        self._pid, self.key, self.adopted = pid, key, True
        self._exit_fut = loop.create_future()
        try:
            if hasattr(os, "pidfd_open"):
                fd = os.pidfd_open(pid)
                self._exit_watch = fd
                loop.add_reader(fd, self._adopted_exit, fd)
            elif sys.platform == "darwin":
                kq = select.kqueue()
                try:
                    kq.control([select.kevent(pid, select.KQ_FILTER_PROC, select.KQ_EV_ADD, select.KQ_NOTE_EXIT)], 0)
                except OSError:
                    kq.close()
                    raise
                self._exit_watch = kq
                loop.add_reader(kq.fileno(), self._adopted_exit, kq.fileno())
        except ProcessLookupError:
            # Gone, and reaped by its parent, between the check and the watch: its exit is seen
            # now (the error escaped before, and ended gatewayd).
            self._exited_with(None)
            return True
        if same_process(key) is None:  # it died between the check and the watch, a zombie now
            self._exited_with(None)
        return True

    def _adopted_exit(self, fd: int) -> None:
        asyncio.get_running_loop().remove_reader(fd)
        watch, self._exit_watch = self._exit_watch, None
        with contextlib.suppress(OSError):
            watch.close() if hasattr(watch, "close") else os.close(fd)
        self._exited_with(None)

    async def _reap_relay(self, relay: asyncio.subprocess.Process) -> None:
        try:
            await relay.wait()  # it ends at EOF: when the gateway and its tree have closed the pipe
        finally:
            HELPER_PIDS.discard(relay.pid)

    async def wait(self) -> ExitInfo:
        assert self._exit_fut is not None
        await asyncio.shield(self._exit_fut)
        assert self._exit is not None
        return self._exit

    @property
    def exited(self) -> bool:
        return self._exit_fut is not None and self._exit_fut.done()

    def signal(self, sig: signal.Signals) -> bool:
        """Signal the gateway process itself (not its group): it drains and ends its own tree."""
        if self._pid is None or self.exited:
            return False
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
                return True
            return False
        p = same_process(self.key) if self.key else None  # adopted: never signal a recycled pid
        if p is None:
            return False
        with contextlib.suppress(psutil.Error):
            p.send_signal(sig)
            return True
        return False

    def record_descendants(self) -> None:
        if self._pid is None or self.exited:
            return
        try:
            for c in psutil.Process(self._pid).children(recursive=True):
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
        if self._pid is not None and not self.exited:
            with contextlib.suppress(psutil.Error):
                t = psutil.Process(self._pid).cpu_times()
                total = t.user + t.system
        moved = total > self._cpu_seen + 0.005
        self._cpu_seen = max(self._cpu_seen, total)
        size = self.output.size()
        printed, self._output_size = size != self._output_size, size
        return moved or printed

    def diagnostics(self) -> dict[str, object]:
        """What a hang looked like, recorded before the kill."""
        info: dict[str, object] = {"last_lines": self.output.last_lines(10)}
        if self._pid is not None and not self.exited:
            with contextlib.suppress(psutil.Error):
                p = psutil.Process(self._pid)
                t = p.cpu_times()
                info.update(status=p.status(), cpu_s=round(t.user + t.system, 3), threads=p.num_threads(),
                            rss_mb=round(p.memory_info().rss / 2**20, 1))
        return info

    def kill_tree(self) -> None:
        """SIGKILL the process group and every recorded descendant that is still the same process."""
        self.record_descendants()
        self.killed_by_us = True
        if self._pid is not None and not self.exited:  # the group id is ours while its leader lives
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._pid, signal.SIGKILL)
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
        if self._pid is not None:
            for p in psutil.process_iter(["pid"]):
                with contextlib.suppress(psutil.Error, OSError):
                    if p.pid not in self.descendants and os.getpgid(p.pid) == self._pid \
                            and p.status() != psutil.STATUS_ZOMBIE:
                        alive.append(p)
        return alive

    def _adopted_orphans(self) -> list[psutil.Process]:
        """Our own children that are not the gateway nor a helper of ours: as a subreaper, these are
        the gateway tree's orphans (started after our last look at the tree)."""
        if self._pid is None or self.key is None:
            return []
        found = []
        with contextlib.suppress(psutil.Error):
            for c in psutil.Process().children():
                with contextlib.suppress(psutil.Error):
                    if c.pid != self._pid and c.pid not in HELPER_PIDS and c.pid not in self.descendants \
                            and c.create_time() >= self.key[1] - 0.01 and c.status() != psutil.STATUS_ZOMBIE:
                        found.append(c)
        return found

    async def stop(self, budget_s: float, force: asyncio.Event | None = None) -> ExitInfo:
        """SIGTERM, wait for the drain up to the budget (or until `force` is set), then SIGKILL the
        tree. Returns when the gateway is reaped and nothing of its tree is left."""
        assert self._pid is not None
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
                log.warning("drain_over_budget", pid=self._pid,
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
            log.warning("killing_leftovers", pids=[p.pid for p in left])
            for p in left:
                with contextlib.suppress(psutil.Error):
                    p.kill()
            await asyncio.to_thread(psutil.wait_procs, left, timeout_s)
        if self._relay_task is not None:  # the relay flushes the gateway's last lines, then exits
            relay = self._relay_task
            await asyncio.wait({relay}, timeout=2.0)
            if relay.done() and not relay.cancelled() and relay.exception() is not None:
                log.error("log_relay_failed", error=repr(relay.exception()))
