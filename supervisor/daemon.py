"""The daemon: the boot loop. One boot after another: spawn (or adopt) the gateway, run the boot's
tasks (the gateway's exit, the intents that end a boot, the probes and the RPC monitor) in one
asyncio TaskGroup in `_run_boot`, wait for the exit, then hand off: classify it, record its end,
announce `BootEnded`, and wait as `core.policy.RestartTracker` decides before the next spawn.
The decisions come from the pure core; the parts live beside it: start-up and adoption in
`startup.py`, the probe loop in `probing.py`, readiness in `readiness.py`, the exit's facts in
`exitfacts.py`, the RPC monitor (snapshot, recovery) in `monitor.py`. What a boot's readiness
and its end set off beyond the loop hangs on the bus: `GatewayReady` starts the restart tracker's
healthy period, `BootEnded` a requested restart's handoff (`handoff.py`).

Signals and the control socket only enqueue an intent (stop, a forced stop on the second signal,
a planned restart); the boot loop acts on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor import exitfacts, logs
from supervisor.alerter import Alerter
from supervisor.boot import BootWatch
from supervisor.clock import Clock, SystemClock
from supervisor.config import Config
from supervisor.control.handlers import control_handlers
from supervisor.control.server import ControlServer, socket_path
from supervisor.core.model import ExitKind, Intent, SupervisionState, transition
from supervisor.core.policy import ExitFacts, NextStep, RestartDecision, RestartTracker, classify
from supervisor.core.probestate import ProbeMachine, Verdict
from supervisor.crashpoints import crashpoint
from supervisor.errors import (
    LaunchError,
    StoreError,
    StoreTooNew,
    StoreUnavailable,
)
from supervisor.events import (
    BootEnded,
    BootStarted,
    ConflictFound,
    EventBus,
    GatewayReady,
    HangDeclared,
    HelperFailed,
    StoreFailing,
    StoreResumed,
)
from supervisor.forensics import TreeSampler
from supervisor.gateway import launch
from supervisor.gateway.child import ExitInfo, GatewayChild, become_subreaper
from supervisor.gateway.launch import LaunchSpec
from supervisor.gateway.ports import port_owners
from supervisor.gateway.probes import probe_for
from supervisor.handoff import RestartHandoff
from supervisor.instance import InstanceLock
from supervisor.keepalive import Fault, Helpers, until_set
from supervisor.maintenance_calendar import MaintenanceCalendar
from supervisor.memory_watch import MemoryWatch
from supervisor.metrics import Metrics, Readings
from supervisor.monitor import RpcMonitor
from supervisor.pausing import PauseGate
from supervisor.probing import probe_until_kill
from supervisor.readiness import Readiness
from supervisor.startup import Startup
from supervisor.store.boots import BootEnd, BootRecords
from supervisor.store.db import Store
from supervisor.store.journal import Journal
from supervisor.store.maintenance_records import MaintenanceRecords
from supervisor.store.snapshots import InflightRecords

log = logs.get("gatewayd")

LAUNCH_RETRY_S = 30.0


@dataclass
class Daemon:
    cfg: Config
    clock: Clock = field(default_factory=SystemClock)
    bus: EventBus = field(default_factory=EventBus)
    environ: dict[str, str] | None = None
    rand: Callable[[], float] = random.random
    install_signals: bool = True

    def __post_init__(self) -> None:
        self.state = SupervisionState.STOPPED
        self.tracker = RestartTracker(self.cfg.restart)
        self.stop_requested = asyncio.Event()
        self.force_stop = asyncio.Event()
        self.restart_requested = asyncio.Event()
        self.restart_args: tuple[bool, float | None] = (True, None)
        self.started_at = self.clock.wall()
        self.store_error: str | None = None  # the last store failure, until a write succeeds again
        self.control: ControlServer | None = None
        self.store = Store(self.cfg.state_dir / "store.sqlite")
        self.records = BootRecords(self.store)
        self.inflight = InflightRecords(self.store)
        self.journal = Journal(self.store)
        self.output: logs.OutputFile | None = None
        self.current: BootWatch | None = None
        self._adopt: tuple[int, tuple[int, float]] | None = None  # (boot, (pid, create time))
        self.spec: LaunchSpec | None = None
        self.helpers = Helpers(on_fault=self._helper_failed, clock=self.clock)
        self.startup = Startup(self.records, self.inflight, self._record, self.cfg.stop_budget_s)
        self.readiness = Readiness(self.records, self._record, self._set_state, self.clock, self.bus)
        self.handoff = RestartHandoff(self.records, self._record, lambda: self.spec)
        # What a boot's readiness and its end set off beyond the boot loop.
        self.bus.subscribe(GatewayReady, lambda ev: self.tracker.on_ready(ev.ready_at))
        self.bus.subscribe(BootEnded, self.handoff.on_boot_ended)
        self.sampler = TreeSampler()  # the gateway tree's RSS: incidents, memory pressure, metrics
        self.alerter = Alerter(self.cfg, self.store, self.environ, sampler=self.sampler)
        self.bus.subscribe(self.alerter.on_event)
        self.metrics = Metrics(self.store, Readings(lambda: self.tracker.crash_loop, self._inflight_counts,
                                                    self.sampler), self.cfg.metrics_port)
        self.bus.subscribe(self.metrics.on_event)
        self.store.on_commit = self.metrics.store_write
        self.memory = MemoryWatch(self.cfg.memory, self.bus, self.clock, lambda: self.current, self.request_restart,
                                  self.records, self._record, paused=lambda: self.pausing.paused)
        self.sampler.listeners.append(self.memory.on_sample)
        self._background: set[asyncio.Task[Any]] = set()  # the daemon's own helpers (alerts), beside the boots
        # Maintenance: the pause in force and the calendar that starts pauses and safe restarts.
        self._last_intent = Intent.NONE  # why the last boot ended, as far as gatewayd ended it
        self.pausing = PauseGate(MaintenanceRecords(self.store), self.clock, self.bus, self._record)
        self.calendar = MaintenanceCalendar(self.cfg.maintenance, self.pausing.records, self.pausing, self.clock,
                                            self._restart_state, lambda: self.request_restart(True, None),
                                            self._record, str(self.cfg.config_file or "config"))

    def _helper_failed(self, fault: Fault) -> None:
        boot = self.current.boot if self.current is not None else 0
        self.bus.publish(HelperFailed(boot, fault.helper, fault.error, fault.failures))

    # -- what the control API reads ---------------------------------------------------------------

    def status_view(self) -> dict[str, Any]:
        w = self.current
        gateway: dict[str, Any] | None = None
        inflight: dict[str, Any] = {"sessions": [], "runs": []}
        if w is not None:
            gateway = {"pid": w.child.pid if w.child.key else None, "boot": w.boot, "ready": w.ready,
                       "adopted": w.child.adopted, "gateway_boot_id": w.gateway_boot_id,
                       "version": self.spec.capabilities.version if self.spec else None}
            if w.snapshotter is not None:
                state = w.snapshotter.state
                inflight = {"sessions": sorted(state.sessions),
                            "runs": [{"job_id": j, "running_at_ms": t, "name": state.runs[(j, t)].name}
                                     for j, t in sorted(state.runs)]}
        return {"started_at": self.started_at, "state": str(self.state), "crash_loop": self.tracker.crash_loop,
                "consecutive_crashes": self.tracker.consecutive, "gateway": gateway, "inflight": inflight,
                "restart_pending": self.restart_requested.is_set(), "stopping": self.stop_requested.is_set(),
                "store_error": self.store_error, "faults": [f.as_dict() for f in self.helpers.faults.values()],
                "metrics": self.metrics.figures(),
                "paused": self.pausing.pause.as_dict() if self.pausing.paused and self.pausing.pause else None,
                "maintenance_next": self.calendar.next_fires()}

    def _inflight_counts(self) -> tuple[int, int]:
        snap = self.current.snapshotter if self.current is not None else None
        return (len(snap.state.sessions), len(snap.state.runs)) if snap is not None else (0, 0)

    def current_boot(self) -> int | None:
        return self.current.boot if self.current is not None else None

    # -- intents: signals and (later) control commands come through here ---------------------------

    def request_restart(self, safe: bool, timeout_s: float | None) -> bool:
        """A planned restart (control API). False when one is already under way."""
        if self.restart_requested.is_set() or self.stop_requested.is_set():
            return False
        self.restart_args = (safe, timeout_s)
        self.restart_requested.set()
        return True

    async def pause(self, for_s: float | None, by: str) -> dict[str, Any]:
        """Maintenance (control API): no restarts, hang kills or recovery until resumed or `for_s` passed."""
        return (await self.pausing.pause_for(for_s, by)).as_dict()

    async def resume(self, by: str) -> bool:
        """The pause ends: the boot loop starts a gateway that is down, and recovery runs."""
        return await self.pausing.resume(by)

    def _restart_state(self) -> tuple[bool, bool]:
        up = self.current is not None and self.current.ready
        return up, self.restart_requested.is_set() or self.stop_requested.is_set()

    def request_stop(self) -> None:
        if self.stop_requested.is_set():
            log.warning("second_stop_request")
            self.force_stop.set()
        self.stop_requested.set()

    # -- lifecycle -------------------------------------------------------------------------------

    async def run(self) -> int:
        # Session keys, job names and recovery results: 0700, whatever umask made it.
        logs.private_dir(self.cfg.state_dir)
        lock = InstanceLock(self.cfg.state_dir / "gatewayd.lock")
        lock.acquire()
        try:
            return await self._run_locked()
        finally:
            lock.release()

    async def _run_locked(self) -> int:
        loop = asyncio.get_running_loop()
        if self.install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
            loop.add_signal_handler(signal.SIGHUP, lambda: None)  # a closed terminal must not kill the gateway
        if become_subreaper():
            log.debug("child_subreaper")
        self.output = logs.OutputFile(self.cfg.state_dir / "logs" / "gateway.log", self.cfg.logs.max_bytes,
                                     self.cfg.logs.backups)
        try:
            try:
                await self.store.open()
            except StoreUnavailable as exc:
                # Locked, full, or an I/O error: keep the file, supervise anyway, retry on each write.
                self.store_error = str(exc)
                log.error("store_unavailable_at_start", error=str(exc))
                self.bus.publish(StoreFailing(self.store_error))
            except StoreTooNew as exc:
                # A downgrade must not take the user's agents down: under KeepAlive/Restart=always an
                # exit here is a restart loop in which the gateway never starts. Supervise without
                # tracking, degraded and saying why; the store is never touched.
                self.store_error = (f"{exc}; supervising without tracking (no snapshot, no recovery): "
                                    "run the newer gatewayd, or move the store aside to start a fresh one")
                log.error("store_too_new", error=self.store_error)
                self.bus.publish(StoreFailing(self.store_error))
            await self.alerter.daemon_starting()  # before this start overwrites the last one's state
            alerts = asyncio.create_task(self.helpers.keep("alerts", self.alerter.run), name="alerts")
            self._background.add(alerts)
            self._background.add(asyncio.create_task(self.helpers.keep("metrics", self.metrics.run), name="metrics"))
            await self.pausing.load()  # a pause recorded by the previous gatewayd, still on
            for name, job in (("pause-expiry", self.pausing.run), ("maintenance-calendar", self.calendar.run)):
                self._background.add(asyncio.create_task(self.helpers.keep(name, job), name=name))
            await self._record(self.records.daemon_started(os.getpid()))
            self._adopt = await self.startup.settle_previous_boots()
            self.control = ControlServer(socket_path(self.cfg.state_dir), control_handlers(self))
            await self.control.start()
            log.info("gatewayd_started", pid=os.getpid(), state_dir=str(self.cfg.state_dir))
            await self._supervise()
            return 0
        finally:
            if self.control is not None:
                await self.control.close()
            self.handoff.close()
            for task in self._background:
                task.cancel()
            await asyncio.gather(*self._background, return_exceptions=True)  # ended before the lock goes
            if self.install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    loop.remove_signal_handler(sig)
            with contextlib.suppress(StoreError):
                await self.store.close()
            log.info("gatewayd_stopped")

    async def _set_state(self, target: SupervisionState, message: str | None = None) -> None:
        if target is not self.state:
            self.state = transition(self.state, target)
            log.info("supervision_state", state=str(target), message=message)
        await self._record(self.records.state(str(target), self.tracker.crash_loop, self.tracker.consecutive,
                                              message))

    async def _record(self, coro: Any) -> Any:
        """Store writes must not stop supervision: a failure is logged and visible, never fatal."""
        try:
            result = await coro
        except StoreError as exc:
            if self.store_error is None:
                log.error("store_write_failed", error=str(exc))
                self.bus.publish(StoreFailing(str(exc)))
            if not isinstance(exc, StoreTooNew):  # its message at start says what to do; keep it
                self.store_error = str(exc)
            return None
        if self.store_error is not None:
            log.warning("store_writes_resumed", was=self.store_error)
            self.bus.publish(StoreResumed(self.store_error))
            self.store_error = None
        return result

    # -- the supervision loop ---------------------------------------------------------------------

    async def _supervise(self) -> None:
        while not self.stop_requested.is_set():
            try:
                spec = launch.build(self.cfg.gateway, self.cfg.state_dir, self.environ,
                                    hidden=self.cfg.alerts.secret_variables)
            except LaunchError as exc:
                log.error("launch_failed", error=str(exc))
                await self._set_state(SupervisionState.CONFIG_ERROR, str(exc))
                await self._wait_stop(LAUNCH_RETRY_S)
                continue
            self.spec = spec
            logs.REDACTOR.add(spec.secrets())
            adopt, self._adopt = self._adopt, None
            # Paused: a running gateway is adopted, none is started, but for an operator's own restart.
            if adopt is None and self.pausing.paused and self._last_intent is not Intent.RESTART:
                await self._wait_unpaused()
                continue
            self._last_intent = Intent.NONE
            owners = [] if adopt else port_owners(spec.port)
            if owners:
                msg = f"port {spec.port} is held by {owners[0].describe()}; not ours, not touched"
                log.error("port_conflict", port=spec.port, owners=[o.describe() for o in owners])
                self.bus.publish(ConflictFound(spec.port, owners[0].describe()))
                await self._set_state(SupervisionState.CONFLICT, msg)
                await self._wait_stop(self.cfg.restart.conflict_retry_s)
                continue
            decision = await self._run_boot(spec, adopt)
            if decision.step is NextStep.STOP or self.stop_requested.is_set():
                break
            await self._after_exit(decision, spec)
        if self.state is not SupervisionState.STOPPED:
            await self._set_state(SupervisionState.STOPPING)
            await self._set_state(SupervisionState.STOPPED)

    async def _wait_unpaused(self) -> None:
        p = self.pausing.pause
        await self._set_state(SupervisionState.PAUSED, f"paused by {p.by if p else '?'}; no restart until resumed")
        stop = asyncio.ensure_future(self.stop_requested.wait())
        opened = asyncio.ensure_future(self.pausing.wait_open())
        try:
            await asyncio.wait({stop, opened}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            opened.cancel()

    async def _after_exit(self, decision: RestartDecision, spec: LaunchSpec) -> None:
        if self.pausing.paused and decision.step is NextStep.RESPAWN and self._last_intent is not Intent.RESTART:
            return  # no backoff to wait out: the loop waits for the pause's end, then starts it at once
        if decision.step is NextStep.WAIT_CONFIG_CHANGE:
            tail = self.output.last_lines(8) if self.output else []
            await self._set_state(SupervisionState.CONFIG_ERROR,
                                  f"exit 78: fix {spec.config_path}; retrying when it changes")
            log.error("config_refused",
                      config=str(spec.config_path), last_lines=tail)
            await self._wait_config_change(spec.config_path)
        elif decision.step is NextStep.WAIT_PORT_FREE:
            await self._set_state(SupervisionState.CONFLICT, "another gateway holds the port or lock")
            await self._wait_stop(decision.delay_s)
        else:
            state = SupervisionState.CRASH_LOOP if decision.crash_loop else SupervisionState.BACKOFF
            if decision.delay_s > 0 or state is SupervisionState.CRASH_LOOP:
                await self._set_state(state, f"respawn in {decision.delay_s:.1f}s")
            await self._wait_stop(decision.delay_s)

    async def _wait_stop(self, seconds: float) -> None:
        if seconds <= 0:
            return
        await until_set(self.stop_requested, seconds)

    async def _wait_config_change(self, path: Path) -> None:
        def stamp() -> tuple[float, int] | None:
            try:
                st = path.stat()
                return (st.st_mtime, st.st_size)
            except OSError:
                return None

        first = stamp()
        while not self.stop_requested.is_set() and stamp() == first:
            await self._wait_stop(1.0)

    async def _run_boot(self, spec: LaunchSpec, adopt: tuple[int, tuple[int, float]] | None = None
                        ) -> RestartDecision:
        assert self.output is not None
        child = GatewayChild(spec, self.output)
        await self._set_state(SupervisionState.STARTING)
        if adopt is not None and child.adopt(adopt[1]):
            boot, pid = adopt[0], adopt[1][0]
            log.info("gateway_adopted", boot=boot, pid=pid, port=spec.port,
                     note="its output still reaches gateway.log through its own relay process")
        else:
            if adopt is not None:
                await self._record(self.records.ended(adopt[0], BootEnd(
                    None, str(ExitKind.VANISHED), "ended while gatewayd was down", True, {})))
                self.bus.publish(BootEnded(adopt[0], adopt[1][0], str(ExitKind.VANISHED), None, self.clock.monotonic(),
                                           True, False, "ended while gatewayd was down"))
                if self.pausing.paused:  # the one to adopt is gone: nothing is started until the pause ends
                    return RestartDecision(NextStep.RESPAWN, 0.0, self.tracker.crash_loop, self.tracker.consecutive)
            if spec.capabilities.legacy:
                await self.startup.salvage_left_running(spec)
            await self.startup.clear_orphaned_locks(spec)
            try:
                pid = await child.spawn()
            except LaunchError as exc:
                log.error("spawn_failed", error=str(exc))
                c = classify(ExitFacts(Intent.NONE, 127))
                return self.tracker.on_exit(c, self.clock.monotonic(), self.rand())
            assert child.key is not None
            crashpoint("spawned")
            try:
                boot = await self._record(self.records.started(pid, child.key[1], spec.port,
                                                               spec.capabilities.version)) or 0
            except BaseException:
                child.close_gate()  # cancelled, or a fault: nothing starts that no one would supervise
                raise
            child.open_gate()  # recorded (or the store is failing: the gateway starts all the same)
            log.info("gateway_spawned", boot=boot, pid=pid, port=spec.port, version=spec.capabilities.version,
                     argv=list(spec.argv))
        spawned_at = self.clock.monotonic()
        self.bus.publish(BootStarted(boot, pid, spawned_at))
        watch = BootWatch(boot, child, ProbeMachine.spawned(self.cfg.probes, spawned_at),
                          oom_kills_at_start=exitfacts.oom_kill_counts())
        self.current = watch
        probe = self.metrics.timed_probe(probe_for(spec, self.cfg.probes.timeout_s))
        intent = Intent.NONE
        diagnostics: dict[str, Any] = {}
        try:
            # This boot's tasks, all of them. The block ends once the gateway has exited: the exit
            # task is the one never cancelled. Helpers run under `helpers.keep`: a failure is
            # logged, shown by `status` and retried, and never ends the group.
            async with asyncio.TaskGroup() as tasks:
                exit_task = tasks.create_task(child.wait(), name="gateway-exit")
                stop_task = tasks.create_task(self.stop_requested.wait(), name="stop-requested")
                restart_task = tasks.create_task(self.restart_requested.wait(), name="restart-requested")
                probe_task = tasks.create_task(self.helpers.keep("probes", lambda: probe_until_kill(
                    watch, probe, self.cfg.probes, self.clock, lambda: self.readiness.became_ready(watch, spec),
                    lambda: self.pausing.paused)),
                    name="probes")
                monitor_task = tasks.create_task(
                    self.helpers.keep("rpc-monitor", lambda: self._monitor(watch, spec).run()), name="rpc-monitor")
                done, _ = await asyncio.wait({exit_task, stop_task, probe_task, restart_task},
                                             return_when=asyncio.FIRST_COMPLETED)
                for task in (stop_task, restart_task, monitor_task, *(() if probe_task in done else (probe_task,))):
                    task.cancel()
                if exit_task not in done and restart_task in done and stop_task not in done:
                    intent = Intent.RESTART
                    safe, timeout_s = self.restart_args
                    log.info("planned_restart", pid=pid, safe=safe, timeout_s=timeout_s)
                    await self._record(self.records.event("planned-restart", boot,
                                                          {"safe": safe, "timeout_s": timeout_s}))
                    if safe:  # the gateway drains its work within the budget, then stops
                        await child.stop(timeout_s or self.cfg.stop_budget_s, self.force_stop)
                    else:  # at once: what it was doing is interrupted, and recovered
                        child.kill_tree()
                elif exit_task not in done:
                    if stop_task in done:
                        intent = Intent.STOP
                        await self._set_state(SupervisionState.STOPPING)
                        log.info("stopping_gateway", pid=pid, budget_s=self.cfg.stop_budget_s)
                        await child.stop(self.cfg.stop_budget_s, self.force_stop)
                    else:
                        verdict = probe_task.result()
                        intent = Intent.HANG_KILL if verdict is Verdict.HANG else Intent.BOOT_TIMEOUT
                        diagnostics = child.diagnostics()
                        await self._set_state(SupervisionState.KILLING, str(verdict))
                        log.error("gateway_unresponsive", verdict=str(verdict), pid=pid,
                                  **diagnostics)
                        self.bus.publish(HangDeclared(boot, pid, str(verdict)))
                        child.kill_tree()
        finally:
            self.restart_requested.clear()
            if not child.exited and intent is Intent.NONE:
                # Only reached through an exception in this block: never leave a gateway unsupervised.
                log.error("supervision_failed_mid_boot", pid=pid)
                child.kill_tree()
            info = await child.wait()
            await probe.close()
        await child.reap_tree()
        self.current = None
        self._last_intent = intent
        return await self._conclude(watch, spec, intent, info, diagnostics)

    async def _conclude(self, watch: BootWatch, spec: LaunchSpec, intent: Intent, info: ExitInfo,
                        diagnostics: dict[str, Any]) -> RestartDecision:
        """Hand the boot off: classify its exit, record its end, announce it, decide what is next."""
        child = watch.child
        await self.readiness.ensure_boot_row(watch, spec)
        c = classify(exitfacts.gather(watch, spec.port, intent, info))
        if c.kind in (ExitKind.CONFIG_ERROR, ExitKind.CRASH, ExitKind.OOM_KILL, ExitKind.CONFLICT):
            diagnostics.setdefault("last_lines", self.output.last_lines(10) if self.output else [])
        decision = self.tracker.on_exit(c, self.clock.monotonic(), self.rand())
        returncode = info.returncode
        # Written before it is announced, so whoever reads the log or the bus finds the boot's end stored.
        await self._record(self.records.ended(watch.boot, BootEnd(returncode, str(c.kind), c.detail,
                                                                  c.needs_recovery, diagnostics)))
        self.bus.publish(BootEnded(watch.boot, child.pid, str(c.kind), returncode, info.exited_at,
                                   c.needs_recovery, decision.crash_loop, c.detail))
        log.warning("gateway_exited", boot=watch.boot, pid=child.pid, returncode=returncode, exit_kind=str(c.kind),
                    detail=c.detail, counts_as_crash=c.counts_as_crash, needs_recovery=c.needs_recovery,
                    next=str(decision.step), delay_s=round(decision.delay_s, 3), crash_loop=decision.crash_loop,
                    consecutive_crashes=decision.consecutive_crashes, was_ready=watch.ready)
        return decision

    def _monitor(self, watch: BootWatch, spec: LaunchSpec) -> RpcMonitor:
        return RpcMonitor(watch, spec, self.cfg, self.helpers, self.inflight, self.journal, self.rand,
                          lambda: self.tracker.crash_loop, self.clock, self.bus, self.pausing.wait_open)
