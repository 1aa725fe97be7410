"""What happens when a boot's gateway becomes ready: its readiness recorded in the store (the
first time, for an adopted gateway), the `BootWatch` marked ready (which starts the RPC monitor),
the launch contract checked (the listener on the port is the child or its own), the supervision
state `running`, then `GatewayReady` published.

Also the late boot row: a boot that began while the store could not be written gets its row as
soon as a write works, here at readiness or at its exit, so its snapshot and its end are kept.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from supervisor import logs
from supervisor.boot import BootWatch
from supervisor.clock import Clock
from supervisor.core.model import SupervisionState
from supervisor.events import EventBus, GatewayReady
from supervisor.gateway.launch import LaunchSpec
from supervisor.gateway.ports import port_owners
from supervisor.startup import Record
from supervisor.store.boots import BootRecords

log = logs.get("gatewayd")

SetState = Callable[[SupervisionState], Awaitable[None]]


class Readiness:
    def __init__(self, records: BootRecords, record: Record, set_state: SetState, clock: Clock,
                 bus: EventBus) -> None:
        self.records = records
        self._record = record
        self._set_state = set_state
        self.clock = clock
        self.bus = bus

    async def ensure_boot_row(self, watch: BootWatch, spec: LaunchSpec) -> None:
        """A boot that began while the store could not be written (full disk, lock) gets its row as
        soon as a write works, so its snapshot and its end are recorded too."""
        if watch.boot == 0 and watch.child.key is not None:
            boot = await self._record(self.records.started(watch.child.pid, watch.child.key[1], spec.port,
                                                           spec.capabilities.version))
            if boot:
                watch.boot = boot
                log.info("boot_recorded_late", boot=boot, pid=watch.child.pid)

    async def became_ready(self, watch: BootWatch, spec: LaunchSpec) -> None:
        await self.ensure_boot_row(watch, spec)
        # For an adopted gateway the recorded time is the one its previous gatewayd saw: recovery
        # must judge "did the gateway resume this itself" from there, not from the adoption (found
        # by the chaos benchmark: gatewayd killed mid-recovery, and its successor noticed a session
        # the gateway had already resumed before the adoption).
        first_ready = await self._record(self.records.ready(watch.boot, watch.gateway_boot_id,
                                                            keep_first=watch.child.adopted))
        watch.ready = True
        watch.ready_at_ms = int((first_ready if first_ready is not None else self.clock.wall()) * 1000)
        watch.ready_event.set()
        owners = port_owners(spec.port)
        ours = {watch.child.pid, *watch.child.descendants}
        if owners and not all(o.pid in ours for o in owners if o.pid is not None):
            log.error("launch_contract_broken",
                      port=spec.port, owners=[o.describe() for o in owners], child=watch.child.pid)
        await self._set_state(SupervisionState.RUNNING)
        now = self.clock.monotonic()
        log.info("gateway_ready", boot=watch.boot, pid=watch.child.pid, after_s=round(now - watch.machine.booted_at, 2))
        self.bus.publish(GatewayReady(watch.boot, watch.child.pid, spec.capabilities.version,
                                      watch.gateway_boot_id, now))
