"""The alerter: the shell around `core.alertrules`. It hears the daemon's events on the bus (the
listener only enqueues, so publishing never waits), turns them into facts (recording an incident
for each unplanned exit first, so the "down" alert can name it), asks the rules, keeps every
decision in the store and hands each alert to every notifier in a task of its own.

Supervision never waits on it: a notifier that hangs costs its own task its deadline, then a retry
after a growing delay (`core.alertrules.retry_delay`), and nothing else. The daemon runs `run`
under `keepalive.Helpers.keep`; a store that fails is logged and the alert is sent all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from supervisor import logs, notifiers
from supervisor.config import Config, Notifier
from supervisor.core.alert_policy import retry_delay
from supervisor.core.alertrules import (
    DOWN_KINDS,
    Alert,
    AlertRules,
    ConfigRefused,
    Conflict,
    DaemonRestarted,
    Down,
    Exited,
    Fact,
    GivenUp,
    Hang,
    MemoryRestart,
    PauseBegan,
    PauseEnded,
    Recovered,
    StoreFailing,
    StoreRecovered,
    Up,
)
from supervisor.errors import StoreError
from supervisor.events import (
    BootEnded,
    BootStarted,
    ConflictFound,
    GatewayReady,
    HangDeclared,
    MemoryPressureRestart,
    Paused,
    RecoveryFinished,
    Resumed,
)
from supervisor.events import StoreFailing as StoreFailingEvent
from supervisor.events import StoreResumed as StoreResumedEvent
from supervisor.forensics import TreeSampler, incident_of
from supervisor.store.alerts import AlertRecords, describe_obligation
from supervisor.store.db import Store

log = logs.get("gatewayd.alerts")

GIVEN_UP_POLL_S = 10.0
RESEND_WITHIN_S = 3600.0  # an alert left unsent by the last gatewayd is sent again if this recent
INCIDENT_KINDS = DOWN_KINDS | {"config-error", "conflict"}  # unplanned exits that keep an incident


class Alerter:
    def __init__(self, cfg: Config, store: Store, environ: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic, sampler: TreeSampler | None = None) -> None:
        self.notifiers: tuple[Notifier, ...] = cfg.alerts.notifiers
        self.policy = cfg.alerts.policy
        self.rules = AlertRules(cfg.alerts.policy)
        self.records = AlertRecords(store)
        self.environ = os.environ if environ is None else environ
        self.clock = clock
        self.output = cfg.state_dir / "logs" / "gateway.log"
        self.sampler = sampler if sampler is not None else TreeSampler()  # the daemon's one sampler
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.host = socket.gethostname()
        self.resolved_mark = time.time()  # obligations resolved after this are not reported yet
        self.given_up_seen: set[int] = set()
        self._store_quiet = False  # a failing store is logged once, not per alert
        self._tasks: set[asyncio.Task[None]] = set()
        self.client: httpx.AsyncClient | None = None
        # Known from the start, so no log line or stored text can ever carry them.
        logs.REDACTOR.add(v for n in self.notifiers for var in n.secret_variables if (v := self.environ.get(var)))

    # -- in: the bus ------------------------------------------------------------------------------

    def on_event(self, event: object) -> None:
        """The bus listener: never blocks, never raises."""
        self.queue.put_nowait(event)

    async def daemon_starting(self) -> None:
        """Before this gatewayd records its own start: did the previous one end without stopping?"""
        try:
            row = await self.records.previous_daemon()
        except StoreError:
            return
        if row is not None and row.get("state") != "stopped":
            self.queue.put_nowait(DaemonRestarted(row.get("pid"), str(row.get("state"))))

    # -- the loop ---------------------------------------------------------------------------------

    async def run(self) -> None:
        async with httpx.AsyncClient() as client:
            self.client = client
            try:
                await self._resend_unfinished()
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(self.sampler.run(), name="tree-rss")
                    tasks.create_task(self._poll_given_up(), name="given-up-poll")
                    await self._loop()
            finally:
                for t in self._tasks:
                    t.cancel()

    async def _loop(self) -> None:
        while True:
            wake = self.rules.next_wake()
            timeout = None if wake is None else max(0.0, wake - self.clock())
            event = None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    event = await self.queue.get()
            if event is not None:
                for fact in await self._facts(event):
                    for alert in self.rules.on_fact(fact, self.clock()):
                        await self.emit(alert)
            for alert in self.rules.due(self.clock()):
                await self.emit(alert)

    async def _facts(self, event: object) -> list[Fact]:
        match event:
            case BootStarted():
                self.sampler.watch(event.pid)
            case GatewayReady():
                return [Up(event.boot)]
            case BootEnded():
                return await self._ended(event)
            case HangDeclared():
                return [Hang(event.boot, event.pid, event.verdict)]
            case RecoveryFinished():
                rows = await self._resolved()
                self.given_up_seen.update(r["id"] for r in rows if r["state"] == "given-up")
                return [Recovered(event.boot, tuple(describe_obligation(r) for r in rows if r["state"] != "given-up"),
                                  tuple(describe_obligation(r) for r in rows if r["state"] == "given-up"))]
            case ConflictFound():
                return [Conflict(event.port, event.owner)]
            case StoreFailingEvent():
                return [StoreFailing(event.error)]
            case StoreResumedEvent():
                return [StoreRecovered(event.was)]
            case Paused():
                return [PauseBegan(event.by, event.until, event.reason)]
            case Resumed():
                return [PauseEnded(event.by)]
            case MemoryPressureRestart():
                return [MemoryRestart(event.boot, event.rss_bytes, event.limit_bytes)]
            case DaemonRestarted() | GivenUp():  # facts found by the alerter itself
                return [event]
        return []

    async def _ended(self, event: BootEnded) -> list[Fact]:
        incident: int | None = None
        lines: tuple[str, ...] = ()
        if event.exit_kind in INCIDENT_KINDS:
            inc = incident_of(event, self.sampler, self.output)
            lines = inc.last_lines
            incident = await self._stored(self.records.incident(inc))
            log.info("incident_recorded", incident=incident, boot=event.boot, exit_kind=event.exit_kind,
                     tree_rss_bytes=inc.tree_rss_bytes)
        self.sampler.pid = None
        if event.exit_kind in DOWN_KINDS:
            return [Down(event.boot, event.exit_kind, event.returncode, event.detail, event.crash_loop, incident,
                         lines)]
        facts: list[Fact] = [Exited(event.boot, event.exit_kind, event.crash_loop)]
        if event.exit_kind == "config-error":
            facts.append(ConfigRefused(event.boot, event.detail, lines))
        elif event.exit_kind == "conflict":
            facts.append(Conflict(0, "another gateway (exit 78: port or lock held)"))
        return facts

    async def _resolved(self) -> list[dict[str, Any]]:
        mark = time.time()
        rows = await self._stored(self.records.resolved_since(self.resolved_mark)) or []
        self.resolved_mark = max(self.resolved_mark, max((r["updated_at"] for r in rows), default=mark))
        return list(rows)

    async def _poll_given_up(self) -> None:
        """Retries given up are alerted when they happen, not only with the recovery's end."""
        since = time.time()
        while True:
            await asyncio.sleep(GIVEN_UP_POLL_S)
            rows = await self._stored(self.records.resolved_since(since)) or []
            fresh = [r for r in rows if r["state"] == "given-up" and r["id"] not in self.given_up_seen]
            since = max([since, *(r["updated_at"] for r in rows)])
            if fresh:
                self.given_up_seen.update(r["id"] for r in fresh)
                self.queue.put_nowait(GivenUp(tuple(describe_obligation(r) for r in fresh),
                                              "-".join(str(r["id"]) for r in fresh)))

    # -- out: the store and the notifiers -----------------------------------------------------------

    async def emit(self, alert: Alert) -> None:
        state = "held" if not alert.send else "sending" if self.notifiers else "no-notifier"
        alert_id = await self._stored(self.records.alert(alert, state))
        log.warning("alert", alert_id=alert_id, kind=str(alert.kind), title=alert.title, sent=alert.send,
                    held_because=alert.held_because, incident=alert.incident,
                    notifiers=[n.name for n in self.notifiers] if alert.send else [])
        if alert.send and self.notifiers:
            self._deliver_in_background(alert, alert_id)

    async def _resend_unfinished(self) -> None:
        """Deliveries the last gatewayd had not finished when it stopped or died go on here, to the
        notifiers that had not taken them, with their attempts counted on."""
        left = await self._stored(self.records.unfinished(time.time() - RESEND_WITHIN_S)) or []
        for alert_id, alert, tries in left:
            log.info("alert_resumed", alert_id=alert_id, kind=str(alert.kind),
                     notifiers=[n.name for n in self.notifiers if tries.get(n.name, 0) >= 0])
            self._deliver_in_background(alert, alert_id, tries)

    def _deliver_in_background(self, alert: Alert, alert_id: int | None,
                               tries: Mapping[str, int] | None = None) -> None:
        """One task per alert: supervision never waits on a notifier (cancelled when the alerter ends)."""
        task = asyncio.create_task(self._deliver_all(alert, alert_id, tries))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver_all(self, alert: Alert, alert_id: int | None, tries: Mapping[str, int] | None = None) -> None:
        """To every notifier; `tries`: attempts already made per notifier by an earlier gatewayd
        (-1: it took the alert, not sent again)."""
        tries = tries or {}
        doc = notifiers.document(alert, alert_id, self.host)

        async def one(n: Notifier) -> bool:
            made = tries.get(n.name, 0)
            if made < 0:
                return True  # it took the alert before
            if made and retry_delay(self.policy, made) is None:
                return False  # its attempts were used up before: none past the policy
            return await self._deliver(n, alert, alert_id, doc, made + 1)

        results = await asyncio.gather(*(one(n) for n in self.notifiers))
        state = "no-notifier" if not results else "sent" if all(results) else "partial" if any(results) else "failed"
        if alert_id is not None:
            await self._stored(self.records.finished(alert_id, state))

    async def _deliver(self, n: Notifier, alert: Alert, alert_id: int | None, doc: dict[str, Any],
                       attempt: int = 1) -> bool:
        while True:
            assert self.client is not None
            outcome = await notifiers.send(n, alert, doc, self.environ, self.client, self.notifiers)
            if alert_id is not None:
                await self._stored(self.records.delivery(alert_id, n.name, attempt, outcome.ok, outcome.detail,
                                                         outcome.latency_ms))
            if outcome.ok:
                log.info("alert_delivered", alert_id=alert_id, notifier=n.name, attempt=attempt,
                         latency_ms=outcome.latency_ms)
                return True
            delay = retry_delay(self.policy, attempt)
            log.warning("alert_delivery_failed", alert_id=alert_id, notifier=n.name, attempt=attempt,
                        detail=outcome.detail, retry_in_s=delay)
            if delay is None:
                return False
            await asyncio.sleep(delay)
            attempt += 1

    async def _stored(self, coro: Any) -> Any:
        """A failing store must not stop an alert (the store failing is itself one)."""
        try:
            result = await coro
        except StoreError as exc:
            if not self._store_quiet:
                log.error("alert_not_recorded", error=str(exc))
            self._store_quiet = True
            return None
        self._store_quiet = False
        return result


async def test_all(notifier_list: tuple[Notifier, ...], alert: Alert,
                   environ: Mapping[str, str] | None = None) -> list[tuple[Notifier, notifiers.Outcome]]:
    """`gatewayd alert test`: one attempt through every notifier at once."""
    env = os.environ if environ is None else environ
    doc = notifiers.document(alert, None)
    async with httpx.AsyncClient() as client:
        outcomes = await asyncio.gather(*(notifiers.send(n, alert, doc, env, client, notifier_list)
                                          for n in notifier_list))
    return list(zip(notifier_list, outcomes, strict=True))

