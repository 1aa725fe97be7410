"""The RPC monitor of one boot: a persistent WebSocket connection to the ready gateway, which hears
its `shutdown` announcements and its identity, and runs, per connection, the snapshotter, the
recovery and the tick watch (each kept alive by `keepalive.Helpers`). It reconnects until the
gateway exits; the daemon cancels it then.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from supervisor import logs
from supervisor.boot import BootWatch
from supervisor.clock import Clock
from supervisor.config import Config
from supervisor.core.inflight import lenient_ms
from supervisor.errors import GatewayError, GatewayUnavailable
from supervisor.events import EventBus, RecoveryFinished, ShutdownAnnounced
from supervisor.gateway.capabilities import Capabilities
from supervisor.gateway.launch import LaunchSpec
from supervisor.gateway.rpc import CLOSE_SERVICE_RESTART, Event, RpcClient
from supervisor.keepalive import Helpers, until_set
from supervisor.queue_keeper import SUBSCRIBE, QueueWatch, Requeue
from supervisor.recovery import Recovery
from supervisor.snapshotter import Snapshotter
from supervisor.store.journal import Journal
from supervisor.store.snapshots import InflightRecords
from supervisor.store.system_events import SystemEventRecords
from supervisor.store.wake_journal import WakeJournal
from supervisor.waker import Waker

log = logs.get("gatewayd")


async def _until_closed(coro: Awaitable[None]) -> None:
    """A helper whose connection closed under it has nothing left to do on it: it ends quietly,
    and the monitor's next connection starts it again. Any other failure is the keeper's."""
    with contextlib.suppress(GatewayUnavailable):
        await coro


async def _after(first: Awaitable[None], then: Callable[[], Awaitable[None]]) -> None:
    await first
    await then()


class RpcMonitor:
    def __init__(self, watch: BootWatch, spec: LaunchSpec, cfg: Config, helpers: Helpers, inflight: InflightRecords,
                 journal: Journal, rand: Callable[[], float], crash_loop: Callable[[], bool], clock: Clock,
                 bus: EventBus, unpaused: Callable[[], Awaitable[None]] | None = None) -> None:
        self.watch = watch
        self.spec = spec
        self.cfg = cfg
        self.helpers = helpers
        self.inflight = inflight
        self.journal = journal
        self.rand = rand
        self.crash_loop = crash_loop  # asked at each connection: retries are held back in a crash loop
        self.clock = clock
        self.bus = bus
        self.unpaused = unpaused  # waits while supervision is paused: recovery is held until then
        self.queue_records = SystemEventRecords(inflight.store)
        self.wake_journal = WakeJournal(inflight.store)

    async def run(self) -> None:
        """A persistent RPC connection for `shutdown` announcements and the gateway's identity.
        It connects once the gateway is ready (a booting gateway refuses or defers handshakes)."""
        watch, spec = self.watch, self.spec
        await watch.ready_event.wait()
        delay = 0.5
        while not watch.child.exited:
            snapshotter = Snapshotter(self.inflight, watch.boot, spec.capabilities, self.cfg.snapshot_interval_s)
            watch.snapshotter = snapshotter
            queue = QueueWatch(self.queue_records, watch.boot, self.cfg.snapshot_interval_s,
                               gateway_exit=watch.child.wait,
                               hears_every_start=spec.capabilities.recovery.hears_every_turn_start,
                               one_listed_queue=spec.capabilities.recovery.lists_default_main_queue_only)

            def on_event(ev: Event, snapshotter: Snapshotter = snapshotter, queue: QueueWatch = queue) -> None:
                try:  # each listener hears every event, whatever the other does with it
                    queue.on_event(ev)
                finally:
                    snapshotter.on_event(ev)
                if ev.name == "shutdown":
                    payload = ev.payload if isinstance(ev.payload, dict) else {}
                    expected_ms = lenient_ms(payload.get("restartExpectedMs"))
                    watch.shutdown_announced = True
                    watch.restart_expected = watch.restart_expected or expected_ms is not None
                    watch.machine.shutdown_announced(self.clock.monotonic(), expected_ms)
                    log.info("gateway_announced_shutdown", reason=payload.get("reason"),
                             restart_expected_ms=expected_ms)
                    self.bus.publish(ShutdownAnnounced(watch.boot, expected_ms))

            rpc = RpcClient(spec.ws_url, spec.auth, spec.capabilities.protocol, on_event=on_event)
            try:
                hello = await rpc.connect()
                delay = 0.5
                watch.gateway_boot_id = hello.boot_id
                log.info("rpc_monitor_connected", boot=watch.boot, protocol=hello.protocol,
                         server_version=hello.server_version, gateway_boot_id=hello.boot_id,
                         methods=len(hello.methods))
                caps = spec.capabilities.with_methods(hello.methods)
                snapshotter.caps = caps
                queue.subscribe = caps.recovery.subscribers_hear_every_turn_start and caps.has_method(SUBSCRIBE)
                await self._serve(rpc, hello.tick_interval_ms, snapshotter, queue, caps)
                await rpc.closed.wait()
                if rpc.close_code == CLOSE_SERVICE_RESTART and not watch.shutdown_announced:
                    watch.shutdown_announced = True
                    watch.machine.shutdown_announced(self.clock.monotonic(), None)
            except GatewayError as exc:
                if watch.ready:
                    log.debug("rpc_monitor_connect_failed", error=str(exc))
            finally:
                await rpc.close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _serve(self, rpc: RpcClient, tick_interval_ms: int, snapshotter: Snapshotter, queue: QueueWatch,
                     caps: Capabilities) -> None:
        """One connection's helpers; each ends when the connection closes (the monitor then
        reconnects and starts them again)."""
        watch = self.watch
        hold = watch.ready_at_ms + int(self.cfg.recovery.hold_after_crash_loop_s * 1000) \
            if self.crash_loop() else 0

        async def unpaused() -> None:
            if self.unpaused is not None:
                await self.unpaused()

        own_settled = asyncio.Event()  # the gateway's own startup recovery is over (Recovery says)

        async def recover() -> None:  # a fresh planner each start: the journal is what it resumes from
            await unpaused()
            await _until_closed(Recovery(self.journal, self.cfg.recovery, caps, watch.boot, watch.ready_at_ms,
                                         self.inflight, self.rand, hold, snapshotter.looked,
                                         deliver=self.cfg.notice_to_channel, own_settled=own_settled).run(rpc))
            if not rpc.closed.is_set():  # it returned with its connection open: nothing is left to do
                self.bus.publish(RecoveryFinished(watch.boot))

        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.helpers.keep("snapshot", lambda: snapshotter.run(rpc)), name="snapshot")
            tasks.create_task(self.helpers.keep("recovery", recover), name="recovery")
            tasks.create_task(self.helpers.keep("queue-watch", lambda: _until_closed(queue.run(rpc))),
                              name="queue-watch")
            tasks.create_task(self.helpers.keep("requeue", lambda: _until_closed(_after(unpaused(), lambda: Requeue(
                self.queue_records, watch.boot, caps, own_settled, watch.ready_at_ms,
                heartbeats_elsewhere=self.spec.heartbeats_elsewhere).run(rpc)))), name="requeue")
            tasks.create_task(self.helpers.keep("wakes", lambda: _until_closed(_after(unpaused(), lambda: Waker(
                self.wake_journal, self.inflight, self.cfg.recovery, self.cfg.wake_agents, watch.boot,
                watch.ready_at_ms, caps, deliver=self.cfg.notice_to_channel).run(rpc)))), name="wakes")
            tasks.create_task(self.helpers.keep("tick-watch", lambda: tick_watch(rpc, tick_interval_ms)),
                              name="tick-watch")


async def tick_watch(rpc: RpcClient, tick_interval_ms: int) -> None:
    """The server sends `tick` every tickIntervalMs: a connection silent for twice that (plus a
    margin) is dead even if TCP has not noticed; close it, and the monitor reconnects."""
    limit_s = 2 * tick_interval_ms / 1000 + 5.0
    while not rpc.closed.is_set():
        # Not the clock seam: `last_frame_at` is stamped by gateway/rpc.py with time.monotonic, and
        # the two readings must come from one clock.
        silent = time.monotonic() - rpc.last_frame_at
        if silent > limit_s:
            log.warning("rpc_monitor_silent", silent_s=round(silent, 1))
            await rpc.close()
            return
        await until_set(rpc.closed, max(0.5, limit_s - silent))
