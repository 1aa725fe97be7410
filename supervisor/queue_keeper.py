"""Keeps the gateway's queue of system events across its restarts (rules: `core/event_queue.py`).

Two helpers per RPC connection, both run by the monitor under `keepalive.Helpers`:
- `QueueWatch` looks at `status.queuedSystemEvents` every snapshot interval, and at once when the
  gateway says something may have changed it (a `presence` broadcast follows every RPC
  `system-event`, a `heartbeat` event ends a heartbeat turn, an `agent` lifecycle start in a main
  session drains that session's queue). A main-session turn start voids the last look first, so a
  gateway killed before the next look never gets back texts its model has received; on 2026.2.x,
  whose `status` lists the default agent's main queue alone, only that session's start does
  (`core/event_queue.drains_listed`; the look keeps which session its answer named). A main-session
  turn's end moves its row's `updatedAt` past every look taken during the turn, so the look is taken
  again (re-dated, even unchanged) once the row has settled after the end. Where the watcher heard
  the gateway to its exit, it keeps what it heard after the last look (the sessions whose every
  turn start it hears, those with a run going on, the ends heard), which explains some moves of
  their rows as no turn that took its texts (`core/event_queue.unexplained_moves`).
- `Requeue`, once per connection: for every ended boot whose queue was looked at, plans each text's
  fate against what the new gateway holds, then queues again the lost ones in their order with
  `system-event {text}`; the agent's wake (`waker.py`) then hands them to the model now rather
  than at its next heartbeat. Every send is journaled before it goes out; a send whose answer was lost is
  settled by looking at the queue, never by sending again.

Both versions take `system-event` without a session key into the main session where unaddressed
events go (2026.2.x ignores any key, measured); that is where gatewayd queues them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from supervisor import logs
from supervisor.core.confirm import settle_deadline_ms
from supervisor.core.event_queue import (
    END_ROW_AFTER_MS,
    EVERY_MAIN,
    EventFate,
    Fate,
    LostAnswer,
    QueueLook,
    QueueUnreadable,
    TurnEnd,
    drained_after,
    drains_listed,
    ended_before,
    is_main_session,
    judged_looks,
    listed_session_of,
    lost_answer,
    parse_queue,
    plan,
    unexplained_moves,
    user_turn_alone,
)
from supervisor.core.heartbeat_hold import HeartbeatHolds, maybe_shown, shown_base
from supervisor.core.inflight import lenient_ms
from supervisor.core.wake_plan import OWN_PREFIX
from supervisor.crashpoints import crashpoint
from supervisor.errors import GatewayError, GatewayProtocolError, GatewayUnavailable
from supervisor.gateway.capabilities import Capabilities
from supervisor.gateway.rpc import Event, RpcClient, agent_roster, default_agent, list_sessions
from supervisor.keepalive import until_set
from supervisor.store.system_events import MAX_TURN_ENDS, SystemEventRecords

log = logs.get("gatewayd.queue")

LOOK_EVENTS = frozenset({"presence", "heartbeat"})
# After a main-session turn's lifecycle end, the look is re-dated this long after it, twice: 2026.2.26
# writes the row's end 2-7 ms after the event (2026.9.6 before it, measured). A look dated before that
# write leaves the texts set aside at a crash (never queued twice), so a slow write costs only that;
# the second look is for a loaded machine, the first for a kill soon after the end (fake chaos seed
# 4142: 6 kills 0.1-0.7 s after a turn's end set 12 texts aside behind a single look at 0.5 s).
END_SETTLES_S = (0.05, 0.5)
# How long a cancelled watcher waits for its gateway's exit and the last of its events: the daemon
# cancels it as the exit is seen, or right before it kills a hung gateway.
EXIT_HEARD_S = 1.0
END_HEARD_LAG_MS = 200  # a turn's end heard later than this after the gateway sent it: the connection lagged
TURN_SLACK_MS = 1000  # clocks: the row's time and ours are both the machine's, read apart
HISTORY_LIMIT = 200  # the main session's last messages: the dead gateway's turns since its last look
SUBSCRIBE = "sessions.messages.subscribe"
SUBSCRIBE_TIMEOUT_S = 3.0  # the first look waits for the subscriptions: a slow answer leaves it unheard
RUNS_TIMEOUT_S = 10.0  # the runs going on as it subscribed
RUNS_UNKNOWN_HOLD_S = 600.0  # those unreadable: every heard main session held this long, at most
MAX_RUNS = 256  # the runs going on, and those ended, kept to match their events (far more than run at once)


def _now_ms() -> int:
    return int(time.time() * 1000)


class QueueWatch:
    def __init__(self, records: SystemEventRecords, boot: int, interval_s: float,
                 own_markers: tuple[str, ...] = (OWN_PREFIX,),
                 gateway_exit: Callable[[], Awaitable[object]] | None = None,
                 hears_every_start: bool = False, one_listed_queue: bool = False) -> None:
        self.records = records
        self.own_markers = own_markers
        self.boot = boot
        self.interval_s = interval_s
        self.gateway_exit = gateway_exit  # waits for this boot's gateway to exit
        # The main sessions whose every turn start this connection hears: all where the version shows
        # them to every operator connection (2026.2.x), else those it subscribed to (`_listen`).
        self.audible: frozenset[str] | None = None if hears_every_start else frozenset()
        self.subscribe = False  # the connection offers the session's message subscription (2026.9.x)
        self.one_listed_queue = one_listed_queue  # `status` lists the default agent's main queue only (2.x)
        # That session, as the last `status` answer named it: until one has, every main session's turn
        # counts as a drain (nothing is then queued twice).
        self.listed_session: str | None = None
        self.shutdown_heard = False
        self.lagged = False  # a turn's end was heard long after the gateway sent it
        self.missed = False  # an event could not be taken (its handler failed)
        self.poke = asyncio.Event()
        self.drained = asyncio.Event()  # a main-session turn started since the last look
        self.redate_at: list[float] = []  # (monotonic) when a main-session turn's end has settled
        self.redate = False  # store the next look even if unchanged: a turn ended since the last
        self.running: dict[str, str] = {}  # run -> session: the main-session runs going on, as heard, oldest first
        self.finished: dict[str, None] = {}  # runs whose end it heard (a later event of theirs is no run)
        # Sessions (lower case) known to run nothing: a run's end heard there and none heard since. A
        # run may go on unheard in any other (one that began before this connection and has shown
        # nothing yet, or 9.6's resume before its first event).
        self.idle: set[str] = set()
        self.quiet: set[str] = set()  # idle at the last stored look, and no run heard there since
        self.stirred: set[str] = set()  # sessions with a run heard since the current look's call began
        self.ends: list[TurnEnd] = []  # ends heard in sessions whose every start it hears, not stored yet
        # Heartbeat runs (2026.9.x) that may show the model texts the queue still lists: no look is
        # good while one goes on (`core/heartbeat_hold`).
        self.holds = HeartbeatHolds()
        self.shown: tuple[str, ...] | None = None  # what the heartbeats held may have shown (`shown_base`)
        self.rebase = False  # a hold began since the base was taken: the next look adds to it
        self.last_shown: tuple[int, ...] = ()
        self.last: tuple[str, ...] | None = None
        self.looks = 0

    def on_event(self, ev: Event) -> None:
        try:
            self._on_event(ev)
        except Exception:
            self.missed = True  # an event it could not take may have been a turn's start
            raise

    def _on_event(self, ev: Event) -> None:
        if ev.name == "shutdown":  # it stops broadcasting turns before it closes, while they may still run
            self.shutdown_heard = True
        if ev.name in LOOK_EVENTS:
            if ev.name == "heartbeat":
                data = ev.payload if isinstance(ev.payload, dict) else {}
                self.holds.heartbeat_event(data.get("status"), data.get("reason"))
            self.poke.set()
        elif ev.name == "agent":
            payload = ev.payload if isinstance(ev.payload, dict) else {}
            key = payload.get("sessionKey")
            if is_main_session(key):
                self._main_run_event(str(key), payload)

    def _main_run_event(self, key: str, payload: dict[str, Any]) -> None:
        data = payload.get("data")
        data = data if isinstance(data, dict) else {}
        phase = data.get("phase") if payload.get("stream") == "lifecycle" else None
        run = payload.get("runId") if isinstance(payload.get("runId"), str) else None
        now_ms = _now_ms()
        at = lenient_ms(data.get("endedAt")) or lenient_ms(payload.get("ts")) or now_ms
        if phase in ("end", "error"):
            # Heard late, the connection lagged: a gateway killed then loses the frames it had not
            # written yet, a later turn's start among them, so it keeps nothing as heard. Judged from
            # ends only: a real 9.6 turn's other events (its streamed text) reached a loaded test
            # machine late enough to set texts aside that the watcher had heard whole.
            self.lagged = self.lagged or now_ms - at > END_HEARD_LAG_MS
        if not drains_listed(key, self.listed_session):
            return  # a turn of a session whose queue the look does not list (2026.2.x)
        if run is not None and run in self.finished:
            if phase != "start":
                return  # an event after its run's end
            self.finished.pop(run)  # a start is never ignored, even one reusing an ended run's id
        self.idle.discard(key.lower())
        self.quiet.discard(key.lower())
        self.stirred.add(key.lower())
        if run is not None and self.holds.run_event(run, key, payload.get("isHeartbeat") is True, phase == "start",
                                                    phase in ("end", "error"), time.monotonic()):
            self.drained.set()  # a look since its start (one before the connection, too) may list what it holds
            self.rebase = True
        if phase == "start":
            if run is not None:
                self._going_on(run, key)
            self.drained.set()
            self.poke.set()
            return
        if run not in self.running:
            # The first sign of a run whose start went unheard. In a session whose starts this
            # connection may miss, it may have drained the queue after the look. In one whose every
            # start it hears, it began before the first look (its drain too) or shows no start at all
            # (2026.9.6's resume of a cut turn, which drains nothing, and moved the row seconds
            # before this): the look stays good, and is taken again to pass that move.
            if not self._hears_every_start(key):
                self.drained.set()
            self.redate = True
            self.poke.set()
        if run is not None:
            self._going_on(run, key)
        if phase in ("end", "error"):  # a failed turn's row is written too
            self.running.pop(str(run), None)
            self.finished = {**dict.fromkeys(list(self.finished)[1 - MAX_RUNS:]), str(run): None}
            if self._hears_every_start(key):
                self.ends = [*self.ends[1 - MAX_TURN_ENDS:], TurnEnd(key, at, lenient_ms(data.get("startedAt")))]
                if all(s.lower() != key.lower() for s in self.running.values()):
                    self.idle.add(key.lower())  # one turn at a time per session: known idle from here
            # A later end pushes the looks back: they follow the last end, which moved the row last.
            now = time.monotonic()
            self.redate_at = [now + s for s in END_SETTLES_S]
            self.poke.set()  # the loop's wait was set before this end: wait again, for the settle

    def _going_on(self, run: str, key: str) -> None:
        if run not in self.running:
            self.running = {**dict(list(self.running.items())[1 - MAX_RUNS:]), run: key}

    async def run(self, rpc: RpcClient) -> None:
        try:
            with contextlib.suppress(GatewayUnavailable):
                await self._listen(rpc)  # before the first look: the starts after it must be heard
            while not rpc.closed.is_set():
                self.poke.clear()
                now = time.monotonic()
                if any(t <= now for t in self.redate_at):
                    self.redate_at, self.redate = [t for t in self.redate_at if t > now], True
                await self._void_if_drained()
                with contextlib.suppress(GatewayUnavailable):
                    await self.look(rpc)
                waits = [asyncio.ensure_future(self.poke.wait()), asyncio.ensure_future(rpc.closed.wait())]
                timeout = max(0.0, min([self.interval_s, *(t - time.monotonic() for t in self.redate_at)]))
                try:
                    await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waits:
                        w.cancel()
        finally:
            # The daemon cancels the watcher as it sees the gateway's exit, often while this tail
            # writes: a cancelled store write may never run, so the tail (bounded: one wait of at
            # most EXIT_HEARD_S, two writes) is finished before the cancellation goes on.
            tail = asyncio.ensure_future(self._last_words(rpc))
            try:
                await asyncio.shield(tail)
            except asyncio.CancelledError:
                await tail
                raise

    async def _last_words(self, rpc: RpcClient) -> None:
        # A turn that started just before the gateway died (the same tick as the close) must still
        # void the look: its texts may have reached the model.
        await self._void_if_drained()
        # Ended with the gateway alive (a reconnect, a stop, a shutdown), a turn may start unheard: the
        # look no longer counts as watched to the gateway's end.
        to_exit = await self._heard_to_exit(rpc)
        await self._void_if_drained()  # a start read while waiting for the exit
        if not to_exit:
            await self.records.unheard(self.boot)
            return
        # What it heard from the look to the exit: only for a look of this connection's own, still good,
        # on a connection that kept up with the gateway and lost no frame.
        heard = (EVERY_MAIN,) if self.audible is None else tuple(sorted(self.audible))
        kept = bool(heard) and self.last is not None and not self.lagged and not self.missed and not rpc.bad_frames
        # One line per gateway's end: what a set-aside look of this boot was judged on.
        log.info("queue_heard_to_exit", boot=self.boot, kept=kept, looked=self.last is not None,
                 lagged=self.lagged, missed=self.missed, bad_frames=rpc.bad_frames,
                 running=sorted(set(self.running.values())), quiet=sorted(self.quiet), ends=len(self.ends))
        if kept:
            await self.records.heard_to_end(self.boot, heard, tuple(sorted(self.quiet)), self.ends)

    def _hears_every_start(self, key: str) -> bool:
        return self.audible is None or key.lower() in {a.lower() for a in self.audible}

    async def _listen(self, rpc: RpcClient) -> None:
        """2026.9.x shows a heartbeat's turn (which drains its session's queue) only to the session's
        message subscribers (research section 10): subscribe to every agent's main session, so that
        a turn start there voids the look as on 2026.2.x. A session the gateway does not confirm stays
        unheard: a row of it dated after the look then sets the texts aside."""
        if self.audible is None or not self.subscribe:
            return

        async def subscribe(key: str) -> str | None:
            try:
                answer = await rpc.call(SUBSCRIBE, {"key": key}, timeout_s=SUBSCRIBE_TIMEOUT_S)
            except GatewayUnavailable:
                raise
            except GatewayError as exc:
                log.warning("queue_subscribe_refused", boot=self.boot, session=key, error=str(exc))
                return None
            if not isinstance(answer, dict) or answer.get("subscribed") is not True:
                log.warning("queue_subscribe_refused", boot=self.boot, session=key, answer=str(answer)[:200])
                return None
            canonical = answer.get("key")  # its events name the session as the gateway spells it
            return canonical if isinstance(canonical, str) and canonical else key

        agents = await agent_roster(rpc, timeout_s=SUBSCRIBE_TIMEOUT_S)
        keys = await asyncio.gather(*(subscribe(f"agent:{agent}:main") for agent in agents),
                                    return_exceptions=True)  # every answer awaited, none left behind
        for k in keys:
            if isinstance(k, BaseException):
                raise k
        self.audible = frozenset(k for k in keys if isinstance(k, str))
        log.debug("queue_sessions_heard", boot=self.boot, sessions=sorted(self.audible))
        await self._held_at_connect(rpc, self.audible)

    async def _held_at_connect(self, rpc: RpcClient, audible: frozenset[str]) -> None:
        """What may be held as this connection begins (2026.9.x, after subscribing, so that an end
        after it is heard): marks an earlier connection to this gateway stored, and the runs going on
        now, any of which may be a heartbeat whose start this connection never heard."""
        now = time.monotonic()
        heard = {a.lower() for a in audible}
        carried = await self.records.last_look(self.boot)  # an earlier connection's, to this gateway
        if carried is not None and carried.maybe_shown:
            self.shown = tuple(carried.texts[i] for i in carried.maybe_shown if i < len(carried.texts))
            self.holds.carried(now)
        try:
            # (the first `sessions.list` after a restart took up to 3.9 s, research section 14)
            answer = await rpc.call("sessions.list", {"activeOnly": True}, timeout_s=RUNS_TIMEOUT_S)
            rows = answer.get("sessions") if isinstance(answer, dict) else None
            if not isinstance(rows, list):
                raise GatewayProtocolError("sessions.list: no sessions list")
        except GatewayUnavailable:
            raise
        except GatewayError as exc:  # unknown: any session may run one, held for a bounded time
            log.warning("queue_runs_unreadable", boot=self.boot, error=str(exc)[:200])
            self.holds.going_on_at_connect(sorted(heard), now, lapse_s=RUNS_UNKNOWN_HOLD_S)
        else:
            self.holds.going_on_at_connect([str(r["key"]) for r in rows if isinstance(r, dict)
                                            and str(r.get("key")).lower() in heard
                                            and (r.get("status") == "running" or r.get("hasActiveRun") is True)], now)
        self.rebase = True  # the first look adds what it lists to what was carried

    async def _heard_to_exit(self, rpc: RpcClient) -> bool:
        """Did this connection carry the gateway's every event to its exit? Yes once the gateway has
        exited and the connection was read to its close and dropped with the process: no close frame
        and no `shutdown` (a gateway that shuts down stops broadcasting turns first, and one closed by
        either side may run turns unheard before it dies; the reader hands over every frame it read
        before it marks the connection closed)."""
        if self.gateway_exit is None:
            return False
        try:
            async with asyncio.timeout(EXIT_HEARD_S):
                await self.gateway_exit()
                await rpc.closed.wait()
        except TimeoutError:
            return False
        return rpc.dropped and not self.shutdown_heard

    async def _void_if_drained(self) -> None:
        if self.drained.is_set():
            # Voided even when the look was empty: texts queued again into this gateway after it
            # (`with_late_sends`) may be in what the turn drained, and no end heard before the start
            # may explain a row any more.
            self.ends.clear()
            await self.records.void(self.boot)
            self.drained.clear()  # once written: a write cancelled with the loop is done by its tail
            self.last = None

    async def look(self, rpc: RpcClient) -> None:
        at_ms = _now_ms()
        self.stirred = set()  # (a run whose events come while `status` is answered may be in it or not)
        releases = self.holds.releases
        try:
            status = await rpc.call("status", {})
            texts = parse_queue(status)
        except GatewayUnavailable:
            raise
        except (GatewayError, QueueUnreadable) as exc:
            log.warning("queue_unreadable", boot=self.boot, error=str(exc))
            return
        if self.one_listed_queue:  # named in the same answer as the queue, so a change of default is seen
            self.listed_session = listed_session_of(status)
        if self.drained.is_set():
            return  # a turn started while the answer was on its way: look again before trusting it
        if self.holds.releases != releases:
            # 9.6 reads the queue early in its answer: one read before a heartbeat took what it showed
            # may arrive after the event that released the hold.
            self.poke.set()
            return
        # gatewayd's own wake and notice texts are no user's events: never queued again as such.
        texts = tuple(t for t in texts if not any(t.startswith(m) for m in self.own_markers))
        shown: tuple[int, ...] = ()
        if self.holds.holding(time.monotonic()):
            # What it lists may be in a heartbeat's request, except what was queued after the first
            # look since that heartbeat began: those are judged as any text, the rest set aside.
            if self.shown is None or self.rebase:
                self.shown, self.rebase = shown_base(self.shown, texts), False
            shown = maybe_shown(texts, self.shown)
        else:
            self.shown, self.rebase = None, False
        redate, self.redate = self.redate and bool(texts), False
        if texts != self.last or shown != self.last_shown or redate:
            # Idle at the look's time, no run heard since its call began: a message steered into a run
            # drains the queue without a start of its own, so only these sessions are quiet.
            self.quiet = self.idle - self.stirred
            self.ends = [e for e in self.ends if e.at_ms >= at_ms - END_ROW_AFTER_MS]
            await self.records.look(self.boot, texts, at_ms, self.listed_session, shown)
            self.last, self.last_shown = texts, shown
            self.looks += 1
            log.debug("queue_looked", boot=self.boot, queued=len(texts))


class Requeue:
    def __init__(self, records: SystemEventRecords, boot: int, caps: Capabilities,
                 own_settled: asyncio.Event, ready_at_ms: int, heartbeats_elsewhere: bool = False) -> None:
        self.records = records
        # 2026.9.x, a heartbeat configured outside the main session: unheard, it may show the model
        # texts it leaves queued (research section 17), so no look of a dead boot is trusted, and a
        # send whose answer was lost is never sent again (such a run drains and moves no main row).
        self.unheard_heartbeats = heartbeats_elsewhere and caps.recovery.session_rows_date_runs
        self.caps = caps
        self.boot = boot
        self.own_settled = own_settled
        self.ready_at_ms = ready_at_ms
        self._history: tuple[Any] | None = None  # the main session's chat.history, read once per connection

    async def run(self, rpc: RpcClient) -> None:
        pending = await self.records.unplanned(self.boot)
        # A gateway that started again holds nothing of the dead one's memory: a text equal to one of
        # its new events is another event (`plan` can also take what a surviving process holds).
        held: tuple[str, ...] = ()
        for look, watched, ended_ms in pending:
            fates: list[EventFate] = []
            parts = judged_looks(look, await self.records.sent_into(look.boot))
            # A turn drains the whole queue: the history shows a drain by any text the gateway held
            # (one it rewrote may be known by another), so every part is matched by them all.
            every = tuple(t for part in parts for t in part.texts)
            for part in parts:
                fates += [replace(f, pos=f.pos + len(fates))
                          for f in await self._judge(rpc, part, held, watched, ended_ms, every)]
            await self.records.plan(look.boot, fates)
            crashpoint("requeue-planned")
        items = await self.records.open_items()
        if items and self.caps.recovery.resumes_main_sessions:
            # A version that resumes cut main-session turns does so a few seconds after ready. Texts
            # queued before that resume starts would sit in a queue whose next look comes after a
            # main-session turn began: a gateway killed then leaves them set aside (fake chaos, seed
            # 3131). Planned is durable: a gateway that dies meanwhile gets them from the next one.
            await until_set(self.own_settled,
                            (settle_deadline_ms(self.caps.recovery, self.ready_at_ms) - _now_ms()) / 1000)
        for item in items:
            await self._settle_or_send(rpc, item)

    async def _judge(self, rpc: RpcClient, look: QueueLook, held: tuple[str, ...], watched: bool,
                     ended_ms: int, every: tuple[str, ...]) -> list[EventFate]:
        """The fate of each text of a dead boot's look (or of the texts queued again into it after the
        look, dated at their first send: `judged_looks`). `every`: all the texts that gateway held."""
        # A main-session turn between the look and the end may have drained it, watched or not
        # (the watcher may miss a turn that starts as the gateway dies, or one while it was down).
        # No slack here: the look's time is taken before its `status` call, so a turn that the
        # row dates at or before it had drained the queue before the look read it.
        # What gatewayd heard from the look to the end explains some row moves as no turn that
        # took the texts (`unexplained_moves`), where it heard that gateway's every event.
        heard = look if watched and not look.void else None
        row = await self._turn_row_since(rpc, look.looked_at_ms + 1, ended_ms, slack_ms=0, heard=heard,
                                         listed=look.listed)
        turn_after = row is not None
        # A heard end explains its row, but a message steered into that run before it drained the
        # queue with no start: where the history keeps what a turn took (2.x), it decides too.
        ask = look.void or turn_after or (heard is not None and bool(heard.ends))
        drained = await self._drained(rpc, look.looked_at_ms, every, ended_ms) if ask else None
        if self.unheard_heartbeats:
            look = replace(look, maybe_shown=tuple(range(len(look.texts))))
        fates = plan(look, held, watched, turn_after, drained)
        unknown = sum(1 for f in fates if f.fate is Fate.UNKNOWN)
        # Set aside (never queued twice) is a loss unless the agent had them: a warning, with the
        # row and what was heard, so a kept chaos store and log say which move counted.
        (log.warning if unknown else log.info)(
            "requeue_planned", boot=look.boot, requeue=sum(1 for f in fates if f.fate is Fate.REQUEUE),
            texts=len(fates), unknown=unknown, delivered=sum(1 for f in fates if f.fate is Fate.DELIVERED),
            looked_at_ms=look.looked_at_ms, void=look.void, watched=watched, ended_ms=ended_ms, turn_row=row,
            drained=drained, heard=list(heard.heard) if heard else None,
            quiet=list(heard.quiet) if heard else None,
            ends=[(e.session, e.at_ms, e.started_ms) for e in heard.ends] if heard else None)
        return fates

    async def _drained(self, rpc: RpcClient, since_ms: int, texts: tuple[str, ...], until_ms: int) -> bool | None:
        """Did a turn of the default agent's main session (where `status` lists the queue) drain it
        after the look, where the version's history keeps what a turn drained; None: unknown."""
        if not self.caps.recovery.history_shows_drained_events or not self.caps.has_method("chat.history"):
            return None
        if self._history is None:  # every look of this run is of the dead boots: one read serves them all
            history = await self._read_history(rpc, f"agent:{await default_agent(rpc)}:main")
            if history is None:
                return None  # not kept: the next look asks again
            self._history = (history,)
        return drained_after(self._history[0], texts, since_ms, until_ms)

    async def _read_history(self, rpc: RpcClient, key: str) -> Any | None:
        """A session's `chat.history` (its last HISTORY_LIMIT messages); None where the gateway refused
        it (logged). A lost connection raises: judged again on the next one."""
        try:
            return await rpc.call("chat.history", {"sessionKey": key, "limit": HISTORY_LIMIT})
        except GatewayUnavailable:
            raise
        except GatewayError as exc:
            log.warning("queue_history_unreadable", session=key, error=str(exc)[:200])
            return None

    async def _fate_in_ended_boot(self, rpc: RpcClient, item: dict[str, Any], sent_at: int) -> LostAnswer:
        """Sent into a gateway that has ended since: that boot's own look decides. A look taken after
        the send that lists the text: it arrived, and that boot's re-queue carries it. A void one:
        unknown, not sent twice. A clean look without it, or no look since the send (that gateway
        died before it looked again; fake chaos seed 5172, one text): if it arrived, it died with
        that gateway's memory, unless a main-session turn ran between the send and that gateway's end
        to drain it (one that ran while gatewayd was down or reconnecting leaves a clean look)."""
        into = int(item["into_boot"])
        look = await self.records.last_look(into)
        if look is not None and look.looked_at_ms >= sent_at and item["kind"] == "system-event" \
                and item["text"] in look.texts:
            return LostAnswer.ARRIVED
        if look is not None and look.void:  # voided after the send, maybe: a turn may have drained it
            return LostAnswer.UNSURE
        # A row shows only its session's last run: one dated after that gateway's end (the next one's
        # resume or notice) may hide a turn there that drained the text, so it counts as one too.
        return lost_answer(False, self.unheard_heartbeats or await self._main_turn_since(
            rpc, sent_at, await self.records.end_ms(into), later_hides=True, listed=look.listed if look else None))

    async def _main_turn_since(self, rpc: RpcClient, since_ms: int, until_ms: int | None = None,
                               slack_ms: int = TURN_SLACK_MS, later_hides: bool = False,
                               heard: QueueLook | None = None, listed: str | None = None) -> bool:
        return await self._turn_row_since(rpc, since_ms, until_ms, slack_ms, later_hides, heard, listed) is not None

    async def _turn_row_since(self, rpc: RpcClient, since_ms: int, until_ms: int | None = None,
                              slack_ms: int = TURN_SLACK_MS, later_hides: bool = False,
                              heard: QueueLook | None = None, listed: str | None = None) -> dict[str, Any] | None:
        """The row that says a main session has taken a turn between `since_ms` and `until_ms` (a dead gateway's end:
        the next gateway's own turns are no drain of the dead one's queue)? Its row says when its
        last run started (2026.9.x `startedAt`) or when a turn was last accepted (2026.2.x
        `updatedAt`), unless what gatewayd heard after the look (`heard`) explains it. Only sessions
        whose turns drain what the look listed count: `listed`, the look's one session (2026.2.x),
        else every main session. Unreadable counts as yes: nothing is then sent twice. The answer
        (session, its row's times) is logged where texts are set aside, so a chaos run's kept store
        and log say which move counted."""
        try:
            rows = await list_sessions(rpc, self.caps.sessions_list_filters)
        except GatewayUnavailable:
            raise
        except GatewayError as exc:
            return {"session": None, "error": str(exc)[:200]}
        for row in rows:
            if drains_listed(key := row.get("key"), listed):
                started, updated = lenient_ms(row.get("startedAt")), lenient_ms(row.get("updatedAt"))
                at = [started, updated] if heard is None else unexplained_moves(str(key), started, updated, heard)
                if any(a is not None and a >= since_ms - slack_ms and
                       (until_ms is None or a <= until_ms or later_hides) for a in at) \
                        and not await self._ended_unsteered(rpc, str(key), row, since_ms - slack_ms, until_ms):
                    return {"session": key, "started_ms": started, "updated_ms": updated}
        return None

    async def _ended_unsteered(self, rpc: RpcClient, key: str, row: dict[str, Any], since_ms: int,
                               until_ms: int | None) -> bool:
        """2026.9.x: a row whose last run started before `since_ms` and had ended with nothing written
        after (`ended_before`), and whose history shows that run was a user's turn, unsteered
        (`user_turn_alone`): no run there took the texts after `since_ms`. Unreadable is no."""
        started, run_id, status = lenient_ms(row.get("startedAt")), row.get("lastRunId"), row.get("status")
        if not self.caps.recovery.session_rows_date_runs or not self.caps.has_method("chat.history") \
                or started is None or not isinstance(run_id, str) \
                or not ended_before(status if isinstance(status, str) else None, started,
                                    lenient_ms(row.get("endedAt")), lenient_ms(row.get("updatedAt")), since_ms):
            return False
        history = await self._read_history(rpc, key)
        if history is None:
            return False
        alone = user_turn_alone(history, run_id, started, _now_ms() if until_ms is None else until_ms)
        log.info("queue_row_ended_before", session=key, started_ms=started, since_ms=since_ms, user_turn_alone=alone)
        return alone is True

    async def _held(self, rpc: RpcClient) -> tuple[str, ...] | None:
        try:
            return parse_queue(await rpc.call("status", {}))
        except GatewayUnavailable:
            raise
        except (GatewayError, QueueUnreadable) as exc:
            log.warning("queue_unreadable", boot=self.boot, error=str(exc))
            return None

    async def _settle_or_send(self, rpc: RpcClient, item: dict[str, Any]) -> None:
        if item["state"] == "dispatched":
            # Journaled by a gatewayd that died before the answer: look, and send again only when
            # the text cannot have arrived (not queued, and no main-session turn since to drain it).
            sent_at = int(item["dispatched_at_ms"])
            if item["into_boot"] != self.boot:
                fate = await self._fate_in_ended_boot(rpc, item, sent_at)
                queued = fate is LostAnswer.ARRIVED
            else:
                held = await self._held(rpc)
                if held is None:
                    raise QueueUnreadable("status: the queue could not be read to settle an unanswered send")
                # By position: the queue must hold one more copy of the text than the sends of it
                # before this one that took effect (equal texts are distinct events).
                before = await self.records.settled_copies(int(item["boot_id"]), int(item["pos"]), item["text"])
                queued = item["kind"] == "system-event" and held.count(item["text"]) > before
                fate = lost_answer(queued, self.unheard_heartbeats or await self._main_turn_since(rpc, sent_at))
            if fate is not LostAnswer.NEVER:
                await self.records.settle(int(item["id"]), fate.value,
                                          "seen queued after the send" if queued else
                                          "answer lost and a main-session turn ran since: not sent again")
                return
            await self.records.replan(int(item["id"]))
            item = {**item, "state": "planned"}
        if not await self.records.dispatched(int(item["id"]), self.boot, _now_ms()):
            return
        crashpoint("requeue-dispatched")
        method, params = "system-event", {"text": item["text"]}
        try:
            answer = await rpc.call(method, params)
        except GatewayUnavailable:
            raise  # the answer is lost with the connection: the next connection looks
        except GatewayError as exc:
            await self.records.settle(int(item["id"]), "failed", f"{method}: {exc}")
            log.warning("requeue_refused", boot=item["boot_id"], method=method, error=str(exc))
            return
        crashpoint("requeue-sent")  # the gateway has it, the journal says dispatched: the next gatewayd looks
        await self.records.settle(int(item["id"]), "answered", f"{method}: {str(answer)[:200]}")
        crashpoint("requeue-answered")
        log.info("requeued", boot=item["boot_id"], kind=item["kind"], pos=item["pos"])
