"""A main-session row moved after a good last look may be no turn that took the look's texts: what
the watcher heard from the look to the gateway's exit (the sessions whose every turn start it hears,
those with a run going on after the look, the ends heard there) explains some moves, and the
re-queue then queues the texts again instead of setting them aside (fake chaos seed 5172: 10 of
400 events set aside behind a turn's end; seed 7402: 4 of 400 behind 2026.9.6's own resume, which
shows no start). A run going on after the look keeps every move but its end's: a message steered
into it drains the queue with no start of its own."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from supervisor import queue_keeper
from supervisor.core.event_queue import (
    END_ROW_AFTER_MS,
    END_ROW_BEFORE_MS,
    EVERY_MAIN,
    START_ROW_MS,
    Fate,
    QueueLook,
    TurnEnd,
    drains_listed,
    listed_session_of,
    plan,
    unexplained_moves,
)
from supervisor.errors import GatewayRpcError
from supervisor.gateway.capabilities import for_version
from supervisor.gateway.rpc import Event
from supervisor.queue_keeper import QueueWatch, Requeue
from supervisor.store.boots import BootEnd, BootRecords
from supervisor.store.db import Store
from supervisor.store.system_events import SystemEventRecords
from tests.unit.test_requeue_journal import MAIN, ScriptedGateway


@pytest.mark.parametrize(("version", "hears"), [("2026.2.26", True), ("2026.2.3", True), ("2026.9.6", False),
                                               ("2026.5.1", False), ("dev", False)])
def test_only_a_measured_version_is_taken_to_show_every_turns_start(version: str, hears: bool) -> None:
    """Where a turn's start may go unheard, a row next to a heard end may be a turn that drained
    the queue: only 2026.2.x was measured showing them all (heartbeats included)."""
    assert for_version(version).recovery.hears_every_turn_start is hears


KIT = "agent:kit:main"


@pytest.mark.parametrize(("version", "hears"), [("2026.9.6", True), ("2026.9.0", False), ("2026.9.7", False),
                                               ("2026.2.26", False), ("2026.10.1", False), ("dev", False)])
def test_only_a_measured_version_is_taken_to_show_subscribers_every_turns_start(version: str, hears: bool) -> None:
    """Subscribed to each main session's messages, gatewayd hears every start there (heartbeats'
    included) only where that was measured: 2026.9.6."""
    assert for_version(version).recovery.subscribers_hear_every_turn_start is hears


def heard(sessions: tuple[str, ...], quiet: tuple[str, ...] = (), ends: tuple[TurnEnd, ...] = ()) -> QueueLook:
    return QueueLook(1, ("X",), 1_000, ends=ends, heard=sessions, quiet=quiet)


@pytest.mark.parametrize(("session", "look", "moves"), [
    # known to run nothing from the look on: an updatedAt move took no text to a model; a startedAt
    # after the look is a start that went unheard
    (MAIN, heard((EVERY_MAIN,), quiet=(MAIN,)), [5_000]), (MAIN, heard((MAIN,), quiet=(MAIN,)), [5_000]),
    ("agent:Kit:main", heard((KIT,), quiet=(KIT,)), [5_000]),
    (KIT, heard((EVERY_MAIN,), quiet=(MAIN,)), [5_000, 6_000]),  # kit may have run unheard
    (MAIN, heard((KIT,), quiet=(MAIN,)), [5_000, 6_000]),  # main's starts are not all heard
    # not heard: every move counts
    (MAIN, heard((KIT,)), [5_000, 6_000]), (MAIN, heard(()), [5_000, 6_000]), (MAIN, heard(("",)), [5_000, 6_000]),
    # a run may have gone on after the look: only its end's moves are explained (a steer drains
    # without a start)
    (MAIN, heard((EVERY_MAIN,)), [5_000, 6_000]),
    (MAIN, heard((EVERY_MAIN,), ends=(TurnEnd(MAIN, 6_000 + END_ROW_BEFORE_MS),)), [5_000]),
    (MAIN, heard((EVERY_MAIN,), ends=(TurnEnd(MAIN, 6_000 - END_ROW_AFTER_MS),)), [5_000]),
    (MAIN, heard((EVERY_MAIN,), ends=(TurnEnd(MAIN, 6_000 + END_ROW_BEFORE_MS + 1),)), [5_000, 6_000]),
    (MAIN, heard((EVERY_MAIN,), ends=(TurnEnd(MAIN, 6_000 - END_ROW_AFTER_MS - 1),)), [5_000, 6_000]),
    (MAIN, heard((EVERY_MAIN,), ends=(TurnEnd(MAIN, 6_003, 5_000),)), []),  # 9.x: its own start
    (MAIN, heard((EVERY_MAIN,), ends=(TurnEnd(MAIN, 6_003, 5_000 + START_ROW_MS),)), []),
    (MAIN, heard((EVERY_MAIN,), ends=(TurnEnd(MAIN, 6_003, 5_000 - START_ROW_MS - 1),)), [5_000]),
    (MAIN, heard((EVERY_MAIN,), ends=(TurnEnd(MAIN, 9_000, 5_000),)), [6_000]),
    (MAIN, heard((EVERY_MAIN,), ends=(TurnEnd(KIT, 6_003, 5_000),)), [5_000, 6_000]),  # another session's
    (MAIN, heard((EVERY_MAIN,), ends=(TurnEnd("agent:Main:main", 6_003),)), [5_000]),
    (MAIN, heard((KIT,), ends=(TurnEnd(MAIN, 6_003, 5_000),)), [5_000, 6_000]),  # not all its starts heard
])
def test_a_row_move_is_explained_only_by_what_was_heard_of_its_own_session(session: str, look: QueueLook,
                                                                         moves: list[int]) -> None:
    assert unexplained_moves(session, 5_000, 6_000, look) == moves


def test_a_row_without_times_has_no_move() -> None:
    assert unexplained_moves(MAIN, None, None, heard(())) == []
    look = heard((EVERY_MAIN,), ends=(TurnEnd(MAIN, 9_000, None),))
    assert unexplained_moves(MAIN, None, 6_000, look) == [6_000]
    assert unexplained_moves(MAIN, None, 6_000, heard((EVERY_MAIN,), quiet=(MAIN,))) == []


def lifecycle(phase: str, key: str = MAIN, ended_at: int | None = None, run: str = "run-1") -> Event:
    data: dict[str, Any] = {"phase": phase, **({"endedAt": ended_at} if ended_at is not None else {})}
    return Event("agent", {"runId": run, "stream": "lifecycle", "sessionKey": key, "data": data}, None, 0.0)


class QueueRpc:
    """A connection whose `status` lists one queued text (or fails: `answers=False`), with two agents,
    whose main sessions it lets subscribe to unless `refuses` names them."""

    def __init__(self, answers: bool = True, refuses: tuple[str, ...] = (), unconfirmed: tuple[str, ...] = (),
                 names_default: bool = True) -> None:
        self.closed = asyncio.Event()
        self.dropped = True  # as when the gateway's process dies under it
        self.bad_frames = 0
        self.answers = answers
        self.refuses = refuses
        self.unconfirmed = unconfirmed  # answered {subscribed: false}
        self.asked = asyncio.Event()
        self.calls: list[str] = []
        self.timeouts: list[float] = []  # of the calls made before the first look
        self.subscribing = 0
        self.names_default = names_default  # `status.heartbeat.defaultAgentId`, as 2026.2.x answers

    async def call(self, method: str, params: dict[str, Any], timeout_s: float = 10.0) -> Any:
        self.calls.append(method)
        if method == "health":  # the roster as configured: the gateway answers keys in lower case
            self.timeouts.append(timeout_s)
            return {"defaultAgentId": "main", "agents": [{"agentId": "main"}, {"agentId": "Kit"}]}
        if method == "sessions.messages.subscribe":
            self.timeouts.append(timeout_s)
            # Both asked at once, not one after the other: each waits here for the other.
            self.subscribing += 1
            for _ in range(100):
                if self.subscribing >= 2:
                    break
                await asyncio.sleep(0.01)
            else:
                raise GatewayRpcError(method, "TIMEOUT", "no answer")
            if params["key"] in self.refuses:
                raise GatewayRpcError(method, "INVALID_REQUEST", "unknown agent")
            return {"subscribed": params["key"] not in self.unconfirmed, "key": params["key"].lower()}
        if method == "sessions.list":  # (2026.9.x) the runs going on as it subscribed: none
            self.timeouts.append(timeout_s)
            return {"sessions": []}
        assert method == "status"
        self.asked.set()
        if not self.answers:
            raise GatewayRpcError("status", "UNAVAILABLE", "busy")
        named = {"heartbeat": {"defaultAgentId": "main"}} if self.names_default else {}
        return {"queuedSystemEvents": ["X"], **named}


async def stored_heard(store: Store, boot: int) -> tuple[list[str] | None, list[str] | None, list[tuple[str, int]]]:
    """What the watcher kept of its hearing: the sessions heard, those quiet, the ends (session, ms)."""
    def read(c: Any) -> tuple[list[str] | None, list[str] | None, list[tuple[str, int]]]:
        row = c.execute("SELECT heard_sessions, quiet_sessions FROM queue_looks WHERE boot_id = ?", (boot,)).fetchone()
        ends = [(str(r[0]), int(r[1])) for r in c.execute(
            "SELECT session_key, at_ms FROM queue_turn_ends WHERE boot_id = ? ORDER BY at_ms", (boot,))]
        return (None if row[0] is None else json.loads(row[0]), None if row[1] is None else json.loads(row[1]), ends)
    return await store.read(read)


async def watching(tmp_path: Path) -> tuple[Store, SystemEventRecords, int]:
    store = Store(tmp_path / "store.sqlite")
    await store.open()
    boot = await BootRecords(store).started(1000, time.time(), 18789, "2026.2.26")
    return store, SystemEventRecords(store), boot


async def until_looked(records: SystemEventRecords, boot: int) -> None:
    for _ in range(500):  # the store's state, polled: the watcher's first look
        if await records.last_look(boot) is not None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no look stored within 5 s")


KEPT = ("exit", "cancelled-as-it-exits", "start-not-heard", "another-runs-end")
SUBSCRIBING = ("subscribed", "subscription-refused", "subscription-unconfirmed", "not-subscribed",
               "unheard-run-in-a-refused-session")


@pytest.mark.parametrize("case", [*KEPT, "start-after-the-end", "gateway-alive", "closed-with-a-frame",
                                  "shutdown-heard", "no-look-of-its-own", "starts-unheard", "heard-late",
                                  "a-frame-dropped", "a-handler-failed", *SUBSCRIBING])
async def test_the_watcher_keeps_the_sessions_it_heard_only_when_it_heard_the_gateway_to_its_exit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    monkeypatch.setattr(queue_keeper, "EXIT_HEARD_S", 0.2)
    store, records, boot = await watching(tmp_path)
    try:
        exited = asyncio.Event()
        refused = case in ("subscription-refused", "unheard-run-in-a-refused-session")
        rpc = QueueRpc(answers=case != "no-look-of-its-own", refuses=(MAIN,) if refused else (),
                       unconfirmed=(MAIN,) if case == "subscription-unconfirmed" else ())
        # 2026.9.x shows a heartbeat's start only to the session's message subscribers: the watcher
        # subscribes to every agent's main session where the connection offers it.
        watch = QueueWatch(records, boot, 30.0, gateway_exit=exited.wait,
                           hears_every_start=case not in ("starts-unheard", *SUBSCRIBING))
        watch.subscribe = case in SUBSCRIBING and case != "not-subscribed"
        # The turns began before the look (their starts heard, then the look taken again after them).
        if case != "start-not-heard":
            watch.on_event(lifecycle("start"))
            watch.on_event(lifecycle("start", KIT, run="run-kit"))
        task = asyncio.create_task(watch.run(rpc))  # type: ignore[arg-type]
        if case == "no-look-of-its-own":  # this connection's look failed: the stored one is an earlier one's
            await rpc.asked.wait()
            await records.look(boot, ("X",), int(time.time() * 1000))
        else:
            await until_looked(records, boot)
        # The gateway's own time of the end; heard late, the connection lagged behind the gateway, and a
        # gateway killed then loses the frames it had not written (a later turn's start among them).
        ended_at = int(time.time() * 1000) - (5 if case != "heard-late" else 2_000)
        # A run whose start this connection did not hear: one that began before it, or 2026.9.6's resume
        # of a cut turn (no start on any connection, measured).
        unheard_run = case in ("another-runs-end", "unheard-run-in-a-refused-session")
        watch.on_event(lifecycle("end", ended_at=ended_at, run="run-2" if unheard_run else "run-1"))
        if case == "subscribed":
            watch.on_event(lifecycle("end", KIT, ended_at=ended_at + 1, run="run-kit"))
        if case == "start-after-the-end":
            watch.on_event(lifecycle("start"))
        if case == "a-frame-dropped":  # unreadable: it may have been a turn's start
            rpc.bad_frames = 1
        if case == "a-handler-failed":
            def fails(key: str, payload: dict[str, Any]) -> None:
                raise RuntimeError("boom")
            monkeypatch.setattr(watch, "_main_run_event", fails)
            with pytest.raises(RuntimeError):
                watch.on_event(lifecycle("start", run="run-3"))
        if case == "shutdown-heard":  # it stops broadcasting turns, then closes: turns may run unheard
            watch.on_event(Event("shutdown", {"reason": "stop"}, None, 0.0))
        if case == "closed-with-a-frame":  # closed by the gateway (1012, 1008) or by gatewayd, then died
            rpc.dropped = False
        if case == "gateway-alive":  # a reconnect, or the daemon's stop: the gateway lives on, unheard
            rpc.closed.set()
            await task
        elif case == "cancelled-as-it-exits":
            rpc.closed.set()
            # A witness window: the watcher enters its tail and waits for the exit there, when the
            # daemon, which has seen the exit, cancels it (no event says the tail is waiting).
            await asyncio.sleep(0.05)
            task.cancel()
            exited.set()
            with pytest.raises(asyncio.CancelledError):
                await task
        else:
            exited.set()
            rpc.closed.set()
            await task
        heard, quiet, ends = await stored_heard(store, boot)
        if case == "subscribed":
            # Every subscription answered before the first look: a start after the look is heard.
            assert rpc.calls[:3] == ["health", "sessions.messages.subscribe", "sessions.messages.subscribe"]
            assert "status" not in rpc.calls[:3]
            assert rpc.timeouts[:3] and all(t <= queue_keeper.SUBSCRIBE_TIMEOUT_S for t in rpc.timeouts[:3])
            assert rpc.timeouts[3:] == [queue_keeper.RUNS_TIMEOUT_S]  # the runs going on, read once
            assert heard == [KIT, MAIN]  # as the gateway spells them
            assert ends == [(MAIN, ended_at), (KIT, ended_at + 1)]
        elif case in ("subscription-refused", "subscription-unconfirmed"):
            assert heard == [KIT]  # the one it confirmed; main's end is not kept
            assert ends == []
        elif case in KEPT:
            assert heard == [EVERY_MAIN]  # 2026.2.x shows every start to every connection
            assert ends == [(MAIN, ended_at)]  # the end's own time, from the event
        else:
            assert (heard, quiet, ends) == (None, None, []), case
        if heard is not None:
            # kit's run never ended: never quiet. Main's ended after the look: quiet only if a look was
            # taken again after its end (its row moved before that look).
            assert quiet is not None and set(quiet) <= {MAIN, KIT}
            if case != "subscribed":  # (there kit's run ends too)
                assert KIT not in quiet
        look = await records.last_look(boot)
        # An end whose start it did not hear, in a session whose starts it may miss: the turn may have
        # drained the queue after the look.
        assert look is not None and look.void is (case in ("start-after-the-end", "unheard-run-in-a-refused-session"))
        # Ended before the gateway did, the look no longer counts as watched to its end.
        unheard = await store.read(lambda c: c.execute(
            "SELECT unheard FROM queue_looks WHERE boot_id = ?", (boot,)).fetchone()[0])
        assert unheard == (case in ("gateway-alive", "closed-with-a-frame", "shutdown-heard"))
    finally:
        await store.close()


@pytest.mark.parametrize("hears_every_start", [True, False])
def test_an_end_is_matched_to_a_start_heard_among_the_latest_runs(hears_every_start: bool) -> None:
    """The watcher remembers the last MAX_RUNS starts it heard. In a session whose starts it may
    miss, the end of a run forgotten since (or never heard) voids the look; a remembered one does
    not. In one whose every start it hears, no end does, and each is kept."""
    watch = QueueWatch(None, 1, 30.0, hears_every_start=hears_every_start)  # type: ignore[arg-type]
    for i in range(queue_keeper.MAX_RUNS + 1):
        watch.on_event(lifecycle("start", run=f"run-{i}"))
    watch.drained.clear()
    watch.on_event(lifecycle("end", ended_at=1_000, run="run-0"))  # forgotten: the oldest
    assert watch.drained.is_set() is not hears_every_start
    watch.drained.clear()
    watch.on_event(lifecycle("end", ended_at=2_000, run=f"run-{queue_keeper.MAX_RUNS}"))
    assert not watch.drained.is_set()
    bad = Event("agent", {"runId": ["x"], "stream": "lifecycle", "sessionKey": MAIN,
                          "data": {"phase": "end", "endedAt": 3_000}}, None, 0.0)
    watch.on_event(bad)  # an id that is no string: no run of its start
    assert watch.drained.is_set() is not hears_every_start
    kept = [(MAIN, 1_000), (MAIN, 2_000), (MAIN, 3_000)] if hears_every_start else []
    assert [(e.session, e.at_ms) for e in watch.ends] == kept


CASES = {  # case: (heard, quiet, ends as (ms after the row's move, started ms or None), row's startedAt, requeued)
    "quiet": ((EVERY_MAIN,), (MAIN,), (), None, True),
    "quiet-9x": ((KIT, MAIN), (MAIN,), (), None, True),
    "quiet-9x-started-after-the-look": ((KIT, MAIN), (MAIN,), (), "moved", False),  # a start went unheard
    "the-ends-row": ((EVERY_MAIN,), (), ((3, None),), None, True),
    "the-ends-row-2x-history-shows-a-drain": ((EVERY_MAIN,), (), ((3, None),), None, False),  # a steer
    "9x-the-ends-row-and-start": ((KIT, MAIN), (), ((-5, "moved"),), "moved", True),  # a resume's end
    "a-steer": ((EVERY_MAIN,), (), (), None, False),
    "far-from-the-end": ((EVERY_MAIN,), (), ((END_ROW_BEFORE_MS + 500, None),), None, False),
    "9x-another-start": ((KIT, MAIN), (), ((-5, None),), "moved", False),
    "another-session-heard": ((KIT,), (KIT,), (), None, False),
    "none-heard": ((), (), (), None, False),
    "void": ((EVERY_MAIN,), (MAIN,), (), None, False),
    "gatewayd-restarted": ((EVERY_MAIN,), (MAIN,), (), None, False),
    "unreadable": ((EVERY_MAIN,), (MAIN,), (), None, False),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_what_was_heard_after_the_look_decides_whether_a_row_move_sets_the_texts_aside(
        tmp_path: Path, case: str) -> None:
    """The main row moved after the last look, and the gateway died before the look could be taken
    again. Heard to its end, with main known to run nothing from the look on (a drain cut before its
    start), or a move the heard end made (9.6's resume included): the texts go back. Otherwise (a
    message steered into a running turn moves the row with no start): set aside, never sent twice;
    on 2.x the history, which keeps a steered request, decides even a move the end explains."""
    heard, quiet, end_specs, started, requeued = CASES[case]
    store = Store(tmp_path / "store.sqlite")
    await store.open()
    try:
        records = SystemEventRecords(store)
        rec = BootRecords(store)
        await rec.daemon_started(4242)
        boot = await rec.started(1000, time.time(), 18789, "2026.2.26")
        looked = int(time.time() * 1000) - 3_000
        moved = looked + 1_000
        await store.write(lambda c: c.execute(  # the gatewayd that took the look started before it
            "UPDATE events SET ts = ? WHERE kind = 'daemon-started'", (looked / 1000 - 5,)))
        await records.look(boot, ("X", "Y"), looked)
        ends = [TurnEnd(MAIN, moved + after, moved - 500 if own == "moved" else own) for after, own in end_specs]
        await records.heard_to_end(boot, heard, quiet, ends)
        if case == "unreadable":  # a hand-edited store: read as nothing heard
            await store.write(lambda c: c.execute("UPDATE queue_looks SET quiet_sessions = '{bad'"))
        if case == "void":
            await records.void(boot)
        if case == "gatewayd-restarted":  # the one that heard the end died; the next found the boot ended
            await rec.daemon_started(4243)
        await rec.ended(boot, BootEnd(-9, "crash", "killed", True, {}))
        now = await rec.started(1001, time.time(), 18789, "2026.2.26")
        # 2026.9.x rows also carry their last run's start: a resume writes its own at its end.
        gateway = ScriptedGateway(moved, main_started_ms=moved - 500 if started == "moved" else None)
        if case == "the-ends-row-2x-history-shows-a-drain":  # a message steered into the run that ended
            gateway.history = [{"role": "user", "content": "earlier", "timestamp": looked - 60_000},
                               {"role": "user", "content": "System: [t] Y\n\nnow this", "timestamp": moved - 200}]
        settled = asyncio.Event()
        settled.set()
        # What was heard is kept whatever the version (2026.9.x: by subscription), so the next boot's
        # version does not matter.
        await Requeue(records, now, for_version("2026.9.6" if "9x" in case else "2026.2.26"), settled,
                      int(time.time() * 1000)).run(gateway)  # type: ignore[arg-type]
        rows = await records.items_of(boot)
        assert gateway.queued == (["X", "Y"] if requeued else [])
        kept = "delivered" if "history-shows" in case else "unknown"
        assert [r["state"] for r in rows] == (["answered"] * 2 if requeued else [kept] * 2), rows
    finally:
        await store.close()


class Looks:
    """A connection whose `status` lists one text, looked at on demand; `during` runs while it answers."""

    def __init__(self) -> None:
        self.during: Any = lambda: None

    async def call(self, method: str, params: dict[str, Any], timeout_s: float = 10.0) -> Any:
        self.during()
        return {"queuedSystemEvents": ["X"]}


def agent_event(stream: str, run: str, key: str = MAIN, **data: Any) -> Event:
    return Event("agent", {"runId": run, "stream": stream, "sessionKey": key, "data": data}, None, 0.0)


async def test_a_session_is_quiet_only_once_known_to_run_nothing(tmp_path: Path) -> None:
    """Quiet is relative to the look stored last: idle at its time (a run's end heard there, nothing
    since) and no run heard there since its call began. A session never seen idle may run something
    unheard (a run that began before the connection; 9.6's resume before its first event). The first
    sign of a run whose start went unheard takes the look again."""
    store, records, boot = await watching(tmp_path)
    try:
        watch = QueueWatch(records, boot, 30.0, hears_every_start=True)
        rpc = Looks()
        await watch.look(rpc)  # type: ignore[arg-type]
        assert watch.quiet == set()  # nothing known of any session yet
        watch.on_event(lifecycle("start", run="run-1"))
        watch.drained.clear()
        watch.redate = True
        await watch.look(rpc)  # type: ignore[arg-type]
        assert watch.quiet == set()  # run-1 goes on at the look
        watch.on_event(lifecycle("end", ended_at=int(time.time() * 1000), run="run-1"))
        assert watch.quiet == set() and not watch.drained.is_set()
        watch.redate = True  # the settle after the end
        await watch.look(rpc)  # type: ignore[arg-type]
        assert watch.quiet == {MAIN}  # known idle from the end on
        watch.on_event(agent_event("assistant", "run-1", text="..."))  # an event after its run's end
        assert watch.quiet == {MAIN} and not watch.redate
        watch.on_event(agent_event("assistant", "resume", text="..."))  # a run whose start went unheard
        assert watch.quiet == set() and watch.redate and not watch.drained.is_set()
        await watch.look(rpc)  # type: ignore[arg-type]
        assert watch.quiet == set()  # it goes on at the look taken again
        watch.on_event(lifecycle("end", ended_at=int(time.time() * 1000), run="resume"))
        watch.on_event(lifecycle("end", KIT, ended_at=int(time.time() * 1000), run="kit-run"))
        watch.redate = True
        await watch.look(rpc)  # type: ignore[arg-type]
        assert watch.quiet == {MAIN, KIT}
        # A run heard while `status` is answered may have moved the row after the look's time: the
        # look taken then counts it as going on, even if it ended before the answer.
        rpc.during = lambda: (watch.on_event(agent_event("assistant", "late", text="...")),
                              watch.on_event(lifecycle("end", ended_at=int(time.time() * 1000), run="late")))
        watch.redate = True
        await watch.look(rpc)  # type: ignore[arg-type]
        assert watch.quiet == {KIT}
        watch.on_event(lifecycle("start", KIT, run="kit-run"))  # a start is heard even under an ended run's id
        assert watch.drained.is_set() and watch.quiet == set()
    finally:
        await store.close()


@pytest.mark.parametrize(("version", "one"), [("2026.2.26", True), ("2026.2.3", True), ("2026.9.6", False),
                                             ("2026.5.1", False), ("dev", False)])
def test_only_a_measured_version_is_taken_to_list_the_default_agents_queue_only(version: str, one: bool) -> None:
    """Wrong, the rule would queue again a text another agent's turn had drained: 2026.2.x only."""
    assert for_version(version).recovery.lists_default_main_queue_only is one


@pytest.mark.parametrize(("key", "listed", "drains"), [
    (MAIN, None, True), (KIT, None, True), (MAIN, MAIN, True), (KIT, MAIN, False), (MAIN, "agent:Main:main", True),
    (KIT, KIT, True), ("agent:main:cron:j1", None, False), ("agent:main:cron:j1", MAIN, False), (None, None, False),
    (3, MAIN, False)])
def test_only_a_turn_of_a_listed_queues_session_drains_it(key: object, listed: str | None, drains: bool) -> None:
    """2026.2.26 drains a queue by its session key, and `status` lists the default agent's main
    queue only: another agent's main turn drains nothing listed. Not known: every main session."""
    assert drains_listed(key, listed) is drains


@pytest.mark.parametrize("case", ["2x", "2x-status-names-no-default", "9x"])
async def test_on_2x_another_agents_main_turn_leaves_the_look_good(tmp_path: Path, case: str) -> None:
    """Fake chaos seed 7391 set 4 of 400 events aside so: a main turn of agent ops started right
    after the last look (main's turn right before it), the gateway then killed; `status` listed only
    main's queue, which that turn could not drain. Where the version lists every main queue, or the
    `status` answer did not name the default agent, any main session's start still voids the look."""
    store, records, boot = await watching(tmp_path)
    try:
        rpc = QueueRpc(names_default=case != "2x-status-names-no-default")
        watch = QueueWatch(records, boot, 30.0, hears_every_start=True, one_listed_queue=case != "9x")
        watch.on_event(lifecycle("start", KIT, run="run-kit-0"))  # before any `status` named the default
        assert watch.drained.is_set()
        task = asyncio.create_task(watch.run(rpc))  # type: ignore[arg-type]
        await until_looked(records, boot)
        listed = MAIN if case == "2x" else None
        assert watch.listed_session == listed
        watch.on_event(lifecycle("start", KIT, run="run-kit"))
        watch.on_event(lifecycle("end", KIT, ended_at=int(time.time() * 1000) - 5_000, run="run-kit"))
        assert watch.lagged  # another session's end heard late still says the connection lagged
        rpc.closed.set()
        await task
        look = await records.last_look(boot)
        assert look is not None and look.void is (case != "2x") and look.listed == listed
    finally:
        await store.close()


@pytest.mark.parametrize(("version", "listed", "late_row", "requeued"), [
    ("2026.2.26", MAIN, KIT, True), ("2026.2.26", MAIN, MAIN, False), ("2026.2.26", None, KIT, False),
    ("2026.9.6", None, KIT, False)])
async def test_another_agents_main_row_after_the_look_sets_texts_aside_only_where_it_could_drain_them(
        tmp_path: Path, version: str, listed: str | None, late_row: str, requeued: bool) -> None:
    """The re-queue reads the rows from the next gateway: one main row is dated after the look, the
    other before it. The look's own answer named the session whose queue it listed (2026.2.x): a
    later turn of another session drained nothing of it, and the texts go back. Not named (9.x, or
    a 2.x answer without it, or a look taken before gatewayd kept it): set aside. Whatever the next
    gateway's default agent is, the look's decides."""
    store = Store(tmp_path / "store.sqlite")
    await store.open()
    try:
        records = SystemEventRecords(store)
        rec = BootRecords(store)
        boot = await rec.started(1000, time.time(), 18789, version)
        looked = int(time.time() * 1000) - 2_000
        await records.look(boot, ("X", "Y"), looked, listed)
        await rec.ended(boot, BootEnd(-9, "crash", "killed", True, {}))
        now = await rec.started(1001, time.time(), 18789, version)
        gateway = ScriptedGateway(looked + 5 if late_row == MAIN else looked - 500,
                                  {KIT: looked + 5 if late_row == KIT else looked - 500})
        settled = asyncio.Event()
        settled.set()
        await Requeue(records, now, for_version(version), settled, int(time.time() * 1000)).run(gateway)  # type: ignore[arg-type]
        rows = await records.items_of(boot)
        assert gateway.queued == (["X", "Y"] if requeued else [])
        assert [r["state"] for r in rows] == (["answered"] * 2 if requeued else ["unknown"] * 2), rows
    finally:
        await store.close()


@pytest.mark.parametrize(("status", "listed"), [
    ({"heartbeat": {"defaultAgentId": "main"}}, MAIN), ({"heartbeat": {"defaultAgentId": "Kit"}}, "agent:Kit:main"),
    ({"heartbeat": {"defaultAgentId": ""}}, None), ({"heartbeat": {"defaultAgentId": 3}}, None),
    ({"heartbeat": {"defaultAgentId": "a:b"}}, None), ({"heartbeat": []}, None), ({}, None), ([], None)])
def test_the_listed_session_is_read_from_the_status_answer(status: Any, listed: str | None) -> None:
    assert listed_session_of(status) == listed


def heartbeat_event(phase: str, run: str, ended_at: int | None = None) -> Event:
    data: dict[str, Any] = {"phase": phase, **({"endedAt": ended_at} if ended_at is not None else {})}
    return Event("agent", {"runId": run, "stream": "lifecycle", "sessionKey": MAIN, "data": data,
                           "isHeartbeat": True}, None, 0.0)


class Queue:
    """A connection whose `status` lists `texts`."""

    def __init__(self, *texts: str) -> None:
        self.texts = list(texts)

    async def call(self, method: str, params: dict[str, Any], timeout_s: float = 10.0) -> Any:
        return {"queuedSystemEvents": list(self.texts)}


@pytest.mark.parametrize("first_heard", ["start", "model", "end"])
async def test_texts_a_9x_heartbeat_may_have_shown_the_model_are_marked_until_it_has_taken_them(
        tmp_path: Path, first_heard: str) -> None:
    """Woken by a main-session cron job, 2026.9.6's heartbeat shows the model every text queued at its
    start and takes them only as it finishes, in the step that emits its `heartbeat` event, after its
    end (research section 17): a look during it lists texts the model has, and a gateway killed then
    would have them queued again. The look before it is voided (also where its start went unheard,
    its first sign any event, its end too); the looks until the `heartbeat` event after its end mark
    what the first of them listed (set aside at a crash), not what was queued since."""
    store, records, boot = await watching(tmp_path)
    try:
        watch = QueueWatch(records, boot, 30.0, hears_every_start=True)
        rpc = Queue("X")
        await watch.look(rpc)  # type: ignore[arg-type]
        watch.on_event(heartbeat_event(first_heard, "hb-1", ended_at=int(time.time() * 1000)))
        assert watch.drained.is_set()
        await watch._void_if_drained()
        looked = await records.last_look(boot)
        assert looked is not None and looked.void
        await watch.look(rpc)  # type: ignore[arg-type]
        held = await records.last_look(boot)
        assert held is not None and not held.void and held.texts == ("X",) and held.maybe_shown == (0,)
        rpc.texts = ["Y", "X"]  # (a queue keeps its order: a test's freedom) Y queued since
        if first_heard != "end":
            watch.on_event(heartbeat_event("model", "hb-1"))
            watch.on_event(heartbeat_event("end", "hb-1", ended_at=int(time.time() * 1000)))
        await watch.look(rpc)  # type: ignore[arg-type]  (ended, not yet finished)
        held = await records.last_look(boot)
        assert held is not None and held.texts == ("Y", "X") and held.maybe_shown == (1,)
        watch.on_event(Event("heartbeat", {"status": "ok-empty", "reason": "cron:j1"}, None, 0.0))
        rpc.texts = ["Y"]  # it took X as it finished
        await watch.look(rpc)  # type: ignore[arg-type]
        after = await records.last_look(boot)
        assert after is not None and not after.void and after.texts == ("Y",) and after.maybe_shown == ()
        planned = plan(held, (), watched_end=True, turn_after_look=False)
        assert [f.fate for f in planned] == [Fate.REQUEUE, Fate.UNKNOWN]
    finally:
        await store.close()


async def heartbeat_begun(records: SystemEventRecords, boot: int) -> tuple[QueueWatch, Queue]:
    """A watcher that heard heartbeat hb-1 start, and its first look since (listing X)."""
    watch = QueueWatch(records, boot, 30.0, hears_every_start=True)
    rpc = Queue("X")
    watch.on_event(heartbeat_event("start", "hb-1"))
    await watch._void_if_drained()
    await watch.look(rpc)  # type: ignore[arg-type]
    return watch, rpc


async def test_a_second_heartbeat_adds_what_it_may_show(tmp_path: Path) -> None:
    """Another agent's heartbeat beginning while one holds may show texts queued since the first
    hold's base look: the first look after it adds them."""
    store, records, boot = await watching(tmp_path)
    try:
        watch, rpc = await heartbeat_begun(records, boot)
        rpc.texts = ["X", "Y"]
        await watch.look(rpc)  # type: ignore[arg-type]
        assert (await records.last_look(boot)).maybe_shown == (0,)  # type: ignore[union-attr]
        watch.on_event(Event("agent", {"runId": "hb-2", "stream": "lifecycle", "sessionKey": KIT,
                                       "data": {"phase": "start"}, "isHeartbeat": True}, None, 0.0))
        await watch._void_if_drained()
        await watch.look(rpc)  # type: ignore[arg-type]
        assert (await records.last_look(boot)).maybe_shown == (0, 1)  # type: ignore[union-attr]
    finally:
        await store.close()


async def test_a_user_turn_holds_no_look_back(tmp_path: Path) -> None:
    """A user's turn takes the whole queue at its start (`isHeartbeat: false`): the look after its
    start is good at once."""
    store, records, boot = await watching(tmp_path)
    try:
        watch = QueueWatch(records, boot, 30.0, hears_every_start=True)
        rpc = Looks()
        start = lifecycle("start", run="turn-1")
        assert isinstance(start.payload, dict)
        start.payload["isHeartbeat"] = False
        watch.on_event(start)
        await watch._void_if_drained()
        await watch.look(rpc)  # type: ignore[arg-type]
        looked = await records.last_look(boot)
        assert looked is not None and not looked.void and not watch.holds.holding(time.monotonic())
    finally:
        await store.close()


class RunningAtConnect(QueueRpc):
    """2026.9.x, main's session running something as the watcher subscribes."""

    async def call(self, method: str, params: dict[str, Any], timeout_s: float = 10.0) -> Any:
        if method == "sessions.list":
            return {"sessions": [{"key": MAIN, "status": "running", "hasActiveRun": True},
                                 {"key": KIT, "status": "done", "hasActiveRun": False}]}
        return await super().call(method, params, timeout_s)


@pytest.mark.parametrize(("heartbeat", "marked_at_its_end"), [(False, ()), (True, (0,))])
async def test_a_run_going_on_as_the_watcher_subscribes_holds_the_looks_until_its_end_says_what_it_was(
        tmp_path: Path, heartbeat: bool, marked_at_its_end: tuple[int, ...]) -> None:
    """A run that began before this connection may be a heartbeat showing the model what the queue
    lists (a gatewayd started again, adopting its gateway mid-heartbeat): what the looks list is
    marked until its end, and, a heartbeat's, the `heartbeat` event after it."""
    store, records, boot = await watching(tmp_path)
    try:
        watch = QueueWatch(records, boot, 30.0)
        watch.subscribe = True
        rpc = RunningAtConnect()
        await watch._listen(rpc)  # type: ignore[arg-type]
        await watch.look(rpc)  # type: ignore[arg-type]
        assert (await records.last_look(boot)).maybe_shown == (0,)  # type: ignore[union-attr]
        end = lifecycle("end", ended_at=int(time.time() * 1000), run="before")
        assert isinstance(end.payload, dict)
        end.payload["isHeartbeat"] = heartbeat
        watch.on_event(end)
        await watch._void_if_drained()
        watch.redate = True
        await watch.look(rpc)  # type: ignore[arg-type]
        assert (await records.last_look(boot)).maybe_shown == marked_at_its_end  # type: ignore[union-attr]
        watch.on_event(Event("heartbeat", {"status": "ok-empty"}, None, 0.0))
        watch.redate = True
        await watch.look(rpc)  # type: ignore[arg-type]
        looked = await records.last_look(boot)
        assert looked is not None and not looked.void and looked.maybe_shown == ()
    finally:
        await store.close()


async def test_an_answer_read_before_a_hold_was_released_is_not_stored(tmp_path: Path) -> None:
    """9.6 reads the queue early in its `status` answer: the heartbeat may finish (take what it
    showed, emit its event) before that answer arrives. The watcher looks again instead."""
    store, records, boot = await watching(tmp_path)
    try:
        watch, rpc = await heartbeat_begun(records, boot)
        watch.on_event(heartbeat_event("end", "hb-1", ended_at=int(time.time() * 1000)))
        rpc.texts = ["X", "Y"]
        marked = await records.last_look(boot)
        # The event that releases the hold arrives while the answer (still listing X) is on its way.
        slow = Queue("X", "Y")
        original = slow.call

        async def answer_after_the_release(method: str, params: dict[str, Any], timeout_s: float = 10.0) -> Any:
            watch.on_event(Event("heartbeat", {"status": "ok-empty"}, None, 0.0))
            return await original(method, params, timeout_s)
        slow.call = answer_after_the_release  # type: ignore[method-assign]
        await watch.look(slow)  # type: ignore[arg-type]
        assert await records.last_look(boot) == marked and watch.poke.is_set()
        rpc.texts = ["Y"]
        await watch.look(rpc)  # type: ignore[arg-type]
        after = await records.last_look(boot)
        assert after is not None and after.texts == ("Y",) and after.maybe_shown == ()
    finally:
        await store.close()


class Unlisted(RunningAtConnect):
    async def call(self, method: str, params: dict[str, Any], timeout_s: float = 10.0) -> Any:
        if method == "sessions.list":
            raise GatewayRpcError(method, "UNAVAILABLE", "busy")
        return await super().call(method, params, timeout_s)


@pytest.mark.parametrize("case", ["carried", "runs-unreadable"])
async def test_a_new_connection_keeps_marking_what_may_still_be_in_a_request(tmp_path: Path, case: str) -> None:
    """An earlier connection's last look marked X (a heartbeat may still be sending its reply, and
    take X only after it): the new connection keeps X marked until a `heartbeat` event. Where the
    runs going on cannot be read, every heard main session is held, for a bounded time."""
    store, records, boot = await watching(tmp_path)
    try:
        if case == "carried":
            await records.look(boot, ("X",), int(time.time() * 1000), maybe_shown=(0,))
        watch = QueueWatch(records, boot, 30.0)
        watch.subscribe = True
        rpc = Unlisted() if case == "runs-unreadable" else QueueRpc()
        await watch._listen(rpc)  # type: ignore[arg-type]
        await watch.look(rpc)  # type: ignore[arg-type]
        assert (await records.last_look(boot)).maybe_shown == (0,)  # type: ignore[union-attr]
        if case == "runs-unreadable":
            assert {h.lapse_s for h in watch.holds.holds.values()} == {queue_keeper.RUNS_UNKNOWN_HOLD_S}
            return
        watch.on_event(Event("heartbeat", {"status": "ok-empty"}, None, 0.0))
        await watch.look(rpc)  # type: ignore[arg-type]
        assert (await records.last_look(boot)).maybe_shown == ()  # type: ignore[union-attr]
    finally:
        await store.close()
