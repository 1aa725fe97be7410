"""The snapshotter: while the gateway is ready, poll what is in flight and keep it in the store.

Every `interval_s` (and at once when a `cron`, `agent` or `sessions.changed` event says something
moved), it reads `sessions.list` and `cron.list`, diffs against the last snapshot and writes only
the changes, in one transaction. A run a 2026.9.x `cron` "started" event announces is written at
once, without waiting for a poll: a gateway killed within one poll of the start would otherwise
leave no record of it (found by the chaos benchmark on the real 2026.9.6). A bad answer is a typed,
logged error: the last good snapshot stays, the loop goes on. It ends when the RPC connection
closes (the monitor reconnects).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from supervisor import logs
from supervisor.core.inflight import (
    Delta,
    Heard,
    InFlight,
    LegacyActivity,
    RunItem,
    RunKey,
    carry_heard,
    diff,
    keep_keys,
    merge_legacy_cron_sessions,
    parse_left_behind,
    parse_runs,
    parse_sessions,
    parse_started,
)
from supervisor.errors import GatewayError, GatewayProtocolError, GatewayUnavailable, StoreError
from supervisor.gateway.capabilities import Capabilities
from supervisor.gateway.rpc import Event, RpcClient, paged
from supervisor.store.snapshots import InflightRecords

log = logs.get("gatewayd.snapshot")

POKE_EVENTS = frozenset({"cron", "sessions.changed", "task"})
PAGE = 200  # cron.list's maximum page
# Heard runs already written wait in `heard` only for a poll to decide them; while polls keep
# failing (a job the gateway answers malformed, every poll) they would pile up: the oldest go.
MAX_HEARD = 10_000


class Snapshotter:
    def __init__(self, records: InflightRecords, boot: int, caps: Capabilities, interval_s: float,
                 on_delta: Callable[[Delta], None] | None = None) -> None:
        self.records = records
        self.boot = boot
        self.caps = caps
        self.interval_s = interval_s
        self.on_delta = on_delta
        self.state = InFlight()
        # Where the rows tell no turn (2.x), turns are followed by `agent` lifecycle events.
        self.activity = None if caps.session_activity_fields else LegacyActivity()
        self.poke = asyncio.Event()
        self.cycles = 0
        self.last_cycle_ms = 0.0
        # Runs heard of by `cron` events, until a poll asked for after hearing them decides.
        self.heard: Heard = {}
        self.heard_new = asyncio.Event()
        self.commit_lock = asyncio.Lock()
        # Marks `cron.list` shows from a boot that has ended (cut runs the gateway has not repaired
        # yet, or has repaired into lastError): never runs of this boot. `checked`: asked already.
        self.cut: set[RunKey] = set()
        self.checked: set[RunKey] = set()
        self.unsure: set[RunKey] = set()  # marks whose check failed this poll: kept out of it
        # Set once a `cron.list` answer's marks were all checked: recovery then knows every cut run.
        self.looked = asyncio.Event()

    def on_event(self, ev: Event) -> None:
        if ev.name == "agent":
            payload = ev.payload if isinstance(ev.payload, dict) else {}
            if self.activity is not None:
                if self.activity.feed(payload):
                    self.poke.set()
            elif payload.get("stream") == "lifecycle":
                self.poke.set()
        elif ev.name in POKE_EVENTS:
            if ev.name == "cron":
                self._hear(ev.payload)
            self.poke.set()

    def _hear(self, payload: Any) -> None:
        try:
            item = parse_started(payload)
        except GatewayProtocolError as exc:
            log.warning("cron_event_not_understood", error=str(exc))
            return
        if item is None:
            return
        log.info("cron_run_started", job_id=item.job_id, running_at_ms=item.running_at_ms)
        if item.key not in self.state.runs:
            self.heard.setdefault(item.key, (item, time.monotonic()))
            self.heard_new.set()
        if len(self.heard) > MAX_HEARD:
            written = [k for k in self.heard if k in self.state.runs]  # oldest first
            for key in written[:len(self.heard) - MAX_HEARD]:
                del self.heard[key]

    async def seed(self, rpc: RpcClient) -> None:
        """Start from what the store holds as in flight in this boot, not from nothing: a turn or
        run that ended while no snapshotter watched (a reconnect, gatewayd restarted over a live
        gateway) is then closed by the first diff instead of staying "active" until a crash makes
        it an obligation (found by the chaos benchmark: a notice for a turn that had completed).
        2026.2.x tells a session's activity only by lifecycle events, which this connection has not
        seen: each stored turn's run is asked for with `agent.wait` (timeoutMs 0); one that ended
        is dropped, one still running is followed until its end event."""
        try:
            state = await self.records.of_boot(self.boot)
        except StoreError as exc:
            log.error("snapshot_seed_failed", error=str(exc))
            return
        if self.activity is not None:
            for key, item in state.sessions.items():
                for run_id in item.run_ids:
                    if not await self._ended(rpc, run_id):
                        self.activity.runs[run_id] = key
                        if item.last_activity_ms is not None:  # the turn's start, which recovery dates it by
                            self.activity.started[run_id] = item.last_activity_ms
        self.state = state  # the first diff closes what is not in flight any more

    async def _ended(self, rpc: RpcClient, run_id: str) -> bool:
        try:
            answer = await rpc.call("agent.wait", {"runId": run_id, "timeoutMs": 0})
        except GatewayUnavailable:
            raise
        except GatewayError as exc:
            log.warning("snapshot_turn_end_unknown", run_id=run_id, error=str(exc))
            return False  # a crash then gets it a notice
        return isinstance(answer, dict) and (isinstance(answer.get("endedAt"), int | float)
                                             or answer.get("status") in ("ok", "error"))

    async def run(self, rpc: RpcClient) -> None:
        try:
            await self.seed(rpc)
        except GatewayUnavailable:
            return
        recorder = asyncio.ensure_future(self._record_heard_loop())
        try:
            await self._poll_loop(rpc)
        finally:
            recorder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recorder
            # A gateway killed just after announcing a run closes this connection at once: what
            # was heard is written before the boot's end marks it interrupted (one writer, in order).
            await self._record_heard_logged()

    async def _record_heard_loop(self) -> None:
        while True:
            await self.heard_new.wait()
            self.heard_new.clear()
            await self._record_heard_logged()

    async def _record_heard_logged(self) -> None:
        try:
            await self.record_heard()
        except StoreError as exc:
            log.error("heard_run_not_recorded", error=str(exc))

    async def record_heard(self) -> Delta:
        """Write the runs heard of by events that the snapshot does not hold yet: no RPC, so a
        slow poll does not delay them."""
        async with self.commit_lock:
            fresh = {k: item for k, (item, _) in self.heard.items() if k not in self.state.runs}
            if not fresh:
                return Delta()
            return await self._commit(InFlight(self.state.sessions, {**self.state.runs, **fresh}), "cron event")

    async def _poll_loop(self, rpc: RpcClient) -> None:
        while not rpc.closed.is_set():
            self.poke.clear()
            try:
                await self.take(rpc)
            except GatewayUnavailable:
                return
            except GatewayError as exc:
                log.error("snapshot_bad_answer", error=str(exc), error_type=type(exc).__name__)
            except StoreError as exc:
                log.error("snapshot_not_recorded", error=str(exc))
            # A closed connection ends the wait too: the monitor reconnects at once, not a poll later.
            waits = [asyncio.ensure_future(self.poke.wait()), asyncio.ensure_future(rpc.closed.wait())]
            try:
                await asyncio.wait(waits, timeout=self.interval_s, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()

    async def take(self, rpc: RpcClient) -> Delta:
        """One poll. Sessions and runs are read apart: a gateway too busy to answer one of them in
        time (seen on the real 2026.9.6 while a burst of runs started) must not cost the other, or
        runs that start then and die with the gateway are never recorded (found by the chaos
        benchmark). What could not be read keeps its last good state."""
        t0 = time.perf_counter()
        failed: GatewayError | None = None
        sessions_payload = runs_payload = None
        try:
            sessions_payload = await self._sessions(rpc)
        except GatewayUnavailable:
            raise
        except GatewayError as exc:
            failed = exc
        runs_asked = time.monotonic()
        try:
            runs_payload = await self._all_jobs(rpc)
        except GatewayUnavailable:
            raise
        except GatewayError as exc:
            if failed is not None:
                raise failed from exc  # nothing was read: the first failure is the one to tell
            failed = exc
        if runs_payload is not None:
            await self._set_aside_cut(runs_payload)
        async with self.commit_lock:  # runs heard of meanwhile are in self.state and self.heard by now
            new, undecided = self.build(sessions_payload, runs_payload, runs_asked)
            if sessions_payload is None:
                new = InFlight(self.state.sessions, new.runs)
            if runs_payload is None:
                new = InFlight(new.sessions, self.state.runs)
            considered = set(self.heard)
            delta = await self._commit(new, "poll")
            # Only now that the poll is written may the runs it decided leave `heard`: a failed
            # write keeps them there for the next write (or the last one as the connection
            # closes). Runs heard during the write stay too (found by a review).
            self.heard = {**undecided, **{k: v for k, v in self.heard.items() if k not in considered}}
        if failed is not None:
            raise failed  # logged by the loop; the half that was read is recorded
        self.cycles += 1
        self.last_cycle_ms = (time.perf_counter() - t0) * 1000
        return delta

    async def _set_aside_cut(self, runs_payload: Any) -> None:
        """Runs the answer shows cut by a restart: still marked running from a boot that has ended
        (2026.9.x repairs them a few seconds after ready), or repaired into "interrupted by gateway
        restart". A snapshot taking such a mark for a run of this boot would see it "finish" at
        the repair; one no snapshot recorded (it started while gatewayd was down, and died with its
        gateway) would be lost. Each new mark is asked of the store once: it records the unseen
        ones as interrupted runs of their boot, with an obligation each."""
        try:
            marks = parse_left_behind(runs_payload)
        except GatewayProtocolError as exc:
            log.warning("snapshot_cut_check_unreadable", error=str(exc))
            return
        # A mark the gateway no longer shows never comes back: forgotten, so these stay small.
        self.checked &= marks.keys()
        self.cut &= marks.keys()
        new = [item for key, item in marks.items() if key not in self.checked and key not in self.state.runs]
        self.unsure = set()
        if new:
            try:
                cut, added = await self.records.record_unseen(new)
            except StoreError as exc:
                # Not taken for runs of this boot meanwhile: if one were, its repair would "end" it.
                self.unsure = {item.key for item in new}
                log.error("snapshot_cut_check_failed", error=str(exc))
                return
            self.checked.update(item.key for item in new)
            self._cut_found(cut, added)
        self.looked.set()

    def _cut_found(self, cut: set[RunKey], added: list[tuple[int, RunItem]]) -> None:
        self.cut |= cut
        if cut:  # `unseen`: those no snapshot had recorded, now obligations of the boot they started in
            (log.warning if added else log.info)("runs_cut_by_restart", boot=self.boot, cut=sorted(map(list, cut)),
                                                 unseen=[[*r.key, boot] for boot, r in added])

    async def _commit(self, new: InFlight, source: str) -> Delta:
        delta = diff(self.state, new)
        if delta:
            await self.records.apply(self.boot, delta)
            if self.on_delta is not None:
                self.on_delta(delta)
            log.info("inflight_changed", boot=self.boot, source=source, sessions=sorted(new.sessions),
                     runs=len(new.runs), sessions_started=[s.key for s in delta.sessions_started],
                     sessions_ended=list(delta.sessions_ended),
                     runs_started=[list(r.key) for r in delta.runs_started],
                     runs_ended=[list(k) for k in delta.runs_ended])
        self.state = new
        return delta

    def build(self, sessions_payload: Any, runs_payload: Any,
              runs_asked: float = float("-inf")) -> tuple[InFlight, Heard]:
        """The snapshot the answers show, and the heard runs a later poll must still decide."""
        if runs_payload is not None:
            polled = {k: r for k, r in parse_runs(runs_payload).items() if k not in self.cut and k not in self.unsure}
            if self.caps.cron_marks_drift:
                polled = keep_keys(polled, self.state.runs)
            runs, undecided = carry_heard(polled, self.heard, runs_asked)
        else:
            runs, undecided = dict(self.state.runs), dict(self.heard)
        if sessions_payload is None:
            return InFlight({}, runs), undecided
        if self.activity is not None:
            sessions = parse_sessions(sessions_payload, self.activity.active(),
                                      legacy_starts=self.activity.turn_starts())
            sessions = merge_legacy_cron_sessions(sessions, runs.values())
        else:
            sessions = parse_sessions(sessions_payload)
        return InFlight(sessions, runs), undecided

    async def _sessions(self, rpc: RpcClient) -> Any:
        if not self.caps.sessions_list_filters:
            return await rpc.call("sessions.list", {})
        return await paged(rpc, "sessions.list", {"activeOnly": True}, "sessions", 500)

    async def _all_jobs(self, rpc: RpcClient) -> Any:
        # Both versions page cron.list (2.x too: its default page is the job count, capped at 200).
        return await paged(rpc, "cron.list", {"includeDisabled": True}, "jobs", PAGE)

