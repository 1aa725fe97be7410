"""The re-queue's journal against a real store and a scripted gateway: what it sends again after a
send whose answer was lost into a gateway that has ended since, and when a look was watched."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from supervisor.core.event_queue import ACCEPT_TO_DRAIN_MS, RUN_BEFORE_DRAIN_MS, EventFate, Fate
from supervisor.errors import GatewayRpcError
from supervisor.gateway.capabilities import for_version
from supervisor.queue_keeper import Requeue
from supervisor.store.boots import BootEnd, BootRecords
from supervisor.store.db import Store
from supervisor.store.system_events import SystemEventRecords

MAIN = "agent:main:main"


class ScriptedGateway:
    """Answers the calls the re-queue makes; records what it was asked to queue."""

    def __init__(self, main_row_ms: int, other_rows: dict[str, int] | None = None,
                 main_started_ms: int | None = None, main_run: dict[str, Any] | None = None) -> None:
        self.main_row_ms = main_row_ms
        self.main_run = main_run or {}  # 2026.9.x: the last run's status and endedAt
        self.main_started_ms = main_started_ms  # 2026.9.x rows also say when their last run started
        self.other_rows = other_rows or {}  # other sessions' rows: key -> updatedAt
        self.queued: list[str] = []
        self.history: list[dict[str, Any]] | None = []  # the main session's chat.history messages

    async def call(self, method: str, params: dict[str, Any], **_: Any) -> Any:
        if method == "sessions.list":
            started = {} if self.main_started_ms is None else {"startedAt": self.main_started_ms}
            return {"sessions": [{"key": MAIN, "updatedAt": self.main_row_ms, **started, **self.main_run},
                                 *({"key": k, "updatedAt": v} for k, v in self.other_rows.items())]}
        if method == "status":
            return {"queuedSystemEvents": []}
        if method == "health":
            return {"defaultAgentId": "main"}
        if method == "chat.history":
            if self.history is None:
                raise GatewayRpcError("chat.history", "UNAVAILABLE", "scripted refusal")
            return {"messages": self.history}
        if method == "system-event":
            self.queued.append(params["text"])
            return {"ok": True}
        raise AssertionError(f"unexpected call {method}")


async def requeue_into(records: SystemEventRecords, boot: int, version: str, now: int, gateway: ScriptedGateway,
                       heartbeats_elsewhere: bool = False) -> None:
    """One re-queue run of boot `boot` (its gateway's own resume settled) against the scripted gateway."""
    settled = asyncio.Event()
    settled.set()
    await Requeue(records, boot, for_version(version), settled, now,
                  heartbeats_elsewhere=heartbeats_elsewhere).run(gateway)  # type: ignore[arg-type]


async def send_lost_into_second(store: Store, records: SystemEventRecords, sent_at: int) -> list[int]:
    """Three boots: X looked at in the first, planned again, and its send journaled into the second
    at `sent_at` with no answer (the gatewayd that sent it died)."""
    first, second, third = await boots(store, 3)
    await records.look(first, ("X",), sent_at - 10_000)
    await records.plan(first, [EventFate(0, "X", Fate.REQUEUE, "lost with the gateway's memory")])
    item = (await records.open_items())[0]
    assert await records.dispatched(int(item["id"]), second, sent_at)
    return [first, second, third]


async def boots(store: Store, n: int) -> list[int]:
    rec = BootRecords(store)
    out = []
    for i in range(n):
        boot = await rec.started(1000 + i, time.time(), 18789, "2026.2.26")
        await rec.ready(boot, f"gw-{i}")
        if i < n - 1:
            await rec.ended(boot, BootEnd(-9, "crash", "killed", True, {}))
        out.append(boot)
    return out


@pytest.mark.parametrize("look_after_send", [True, False, "void"])
@pytest.mark.parametrize(("main_row", "sent_again"), [("after-send", False), ("before-send", True),
                                                      ("next-gateway", False)])
async def test_a_send_into_an_ended_gateway_is_sent_again_only_when_no_turn_could_have_drained_it(
        tmp_path: Path, main_row: str, sent_again: bool, look_after_send: bool | str) -> None:
    """The send into boot 2 lost its answer; boot 2's last look, after the send, is clean, or boot 2
    died before it looked again. Neither says the text never arrived: a main-session turn between the
    send and boot 2's end (while gatewayd was down or reconnecting) may have drained it to the model.
    A row dated in the next gateway (its resume) shows only that last run, and may hide such a turn.
    With no turn since the send, a text that arrived died with boot 2's memory: sent again. A look
    voided (a turn's start heard), maybe after the send: never sent again."""
    store = Store(tmp_path / "store.sqlite")
    await store.open()
    try:
        records = SystemEventRecords(store)
        now = int(time.time() * 1000)
        sent_at = now - 20_000
        first, second, third = await send_lost_into_second(store, records, sent_at)
        await records.look(second, (), sent_at + (5_000 if look_after_send is True else -5_000))  # clean
        if look_after_send == "void":
            await records.void(second)
            sent_again = False
        await records.plan(second, [])
        row_ms = {"after-send": sent_at + 2_000, "before-send": sent_at - 10_000, "next-gateway": now + 1_000}
        gateway = ScriptedGateway(row_ms[main_row])
        await requeue_into(records, third, "2026.2.26", now, gateway)
        [row] = await records.items_of(first)
        assert gateway.queued == (["X"] if sent_again else [])
        assert row["state"] == ("answered" if sent_again else "unconfirmed"), row
    finally:
        await store.close()


@pytest.mark.parametrize("connection_ended_first", [True, False])
@pytest.mark.parametrize("gatewayd_restarted", [True, False])
async def test_a_look_is_watched_only_when_no_gatewayd_started_between_it_and_the_end(
        tmp_path: Path, gatewayd_restarted: bool, connection_ended_first: bool) -> None:
    """Watched: the gatewayd that took the look heard the gateway to its end. Not when it died and
    another adopted the gateway, nor when the look's connection ended first (a reconnect gap, a stop):
    turns may have run unheard in between."""
    store = Store(tmp_path / "store.sqlite")
    await store.open()
    try:
        records = SystemEventRecords(store)
        rec = BootRecords(store)
        await rec.daemon_started(4242)  # the one that took the look
        if gatewayd_restarted:
            await rec.daemon_started(4243)  # it died; this one adopted the gateway
        boot = await rec.started(1000, time.time(), 18789, "2026.2.26")
        await rec.ended(boot, BootEnd(-9, "crash", "killed", True, {}))
        end = await store.read(lambda c: c.execute("SELECT ended_at FROM boots WHERE id = ?", (boot,)).fetchone()[0])
        await records.look(boot, ("X",), int((end - 2.0) * 1000))
        starts = await store.read(lambda c: [i for (i,) in c.execute(
            "SELECT id FROM events WHERE kind = 'daemon-started' ORDER BY id")])
        for event_id, at in zip(starts, (end - 3.0, end - 1.0), strict=False):  # before the look, between
            await store.write(lambda c, i=event_id, t=at: c.execute("UPDATE events SET ts = ? WHERE id = ?", (t, i)))
        if connection_ended_first:
            await records.unheard(boot)
        await rec.started(1001, time.time(), 18789, "2026.2.26")
        [(look, watched, _)] = await records.unplanned(boot + 1)
        assert look.texts == ("X",)
        assert watched is not (gatewayd_restarted or connection_ended_first)
    finally:
        await store.close()


async def sent_after_the_look(store: Store, records: SystemEventRecords, sent_at: int,
                              look_at: int) -> tuple[int, int]:
    """Boot 1 lost X; X was queued again into boot 2 at `sent_at` (answered), after boot 2's last
    look (at `look_at`, listing Y); boot 2 died, boot 3 runs. Returns boots 2 and 3."""
    first, second, third = await boots(store, 3)
    await records.look(first, ("X",), look_at - 10_000)
    await records.plan(first, [EventFate(0, "X", Fate.REQUEUE, "lost with the gateway's memory")])
    [item] = await records.open_items()
    assert await records.dispatched(int(item["id"]), second, sent_at)
    await records.settle(int(item["id"]), "answered", "system-event: ok")
    await records.look(second, ("Y",), look_at)
    return second, third


@pytest.mark.parametrize(("main_row", "fates"), [
    ("before-the-look", ("planned", "planned")),
    ("between-the-look-and-the-send", ("unknown", "planned")),
    ("just-before-the-send", ("unknown", "unknown")),  # accepted before it, its drain may follow it
    ("after-the-send", ("unknown", "unknown")),
    ("void", ("unknown", "unknown")),
])
async def test_a_text_queued_again_after_the_last_look_is_judged_from_its_own_send(
        tmp_path: Path, main_row: str, fates: tuple[str, str]) -> None:
    """Boot 2's last look lists Y; X, lost with boot 1, was queued again into boot 2 after that look,
    and boot 2 died before it looked again. A main-session turn between the look and X's send may
    have drained Y, never X (fake chaos seed 5171 set such texts aside with the look). A turn
    accepted within ACCEPT_TO_DRAIN_MS before the send may drain after it: set aside, never doubled.
    A void look keeps X with it (the turn that voided it may have started after the send)."""
    store = Store(tmp_path / "store.sqlite")
    await store.open()
    try:
        records = SystemEventRecords(store)
        now = int(time.time() * 1000)
        sent_at, look_at = now - 20_000, now - 30_000
        second, third = await sent_after_the_look(store, records, sent_at, look_at)
        if main_row == "void":
            await records.void(second)
        row_ms = {"before-the-look": look_at - 1_000, "between-the-look-and-the-send": look_at + 2_000,
                  "just-before-the-send": sent_at - ACCEPT_TO_DRAIN_MS // 2, "after-the-send": sent_at + 2_000,
                  "void": look_at - 1_000}
        gateway = ScriptedGateway(row_ms[main_row])
        await requeue_into(records, third, "2026.2.26", now, gateway)
        rows = {r["text"]: r for r in await records.items_of(second)}
        assert (rows["Y"]["pos"], rows["X"]["pos"]) == (0, 1)
        assert (rows["Y"]["state"], rows["X"]["state"]) == tuple(
            "answered" if f == "planned" else f for f in fates), rows
        assert gateway.queued == [t for t, f in zip(("Y", "X"), fates, strict=True) if f == "planned"]
    finally:
        await store.close()


async def test_a_drain_the_history_shows_by_any_text_of_the_gateway_covers_the_late_ones(tmp_path: Path) -> None:
    """A turn drains the whole queue: a 2.x request after the send that carries the look's text Y
    (the late X in a form the gateway rewrote) drained X too. The late part is matched by every text
    the gateway held, never by its own alone (a review found X queued again so)."""
    store = Store(tmp_path / "store.sqlite")
    await store.open()
    try:
        records = SystemEventRecords(store)
        now = int(time.time() * 1000)
        sent_at, look_at = now - 20_000, now - 30_000
        second, third = await sent_after_the_look(store, records, sent_at, look_at)
        gateway = ScriptedGateway(sent_at + 2_000)
        gateway.history = [
            {"role": "user", "content": "earlier", "timestamp": look_at - 5_000},
            {"role": "user", "content": "System: [2026-12-07 10:00:00 UTC] Y\nSystem: [2026-12-07 10:00:01 UTC]"
                                        " X (rewritten)\n\nhello", "timestamp": sent_at + 2_000}]
        await requeue_into(records, third, "2026.2.26", now, gateway)
        rows = {r["text"]: r["state"] for r in await records.items_of(second)}
        assert rows == {"Y": "delivered", "X": "delivered"}, rows
        assert gateway.queued == []
    finally:
        await store.close()


@pytest.mark.parametrize(("case", "requeued"), [
    ("ended-before-the-look", True),
    ("started-just-before-the-look", False),  # its drain may follow the look
    ("still-running", False),
    ("written-after-its-end", False),  # something moved the row after the run's end
    ("a-message-steered-into-it", False),  # takes the queue with no start of its own
    ("a-heartbeat", False),  # no request shown: woken by cron, it keeps what the model saw queued
    ("history-unreadable", False),
    ("2x", False),  # a 2.x row says only when it was updated
])
async def test_a_9x_user_turn_that_started_before_the_look_and_ended_unsteered_took_none_of_its_texts(
        tmp_path: Path, case: str, requeued: bool) -> None:
    """gatewayd was killed after its last look at boot 1, and boot 1 was killed while it was down:
    nothing was heard after the look. The main row then moved after the look, but by the end of a
    user's turn that started before it (fake chaos seed 7452: 104 and 256 ms before, 4 texts set
    aside). That turn took the queue before it stamped its start, so not the texts the look still
    listed (research section 15): queued again. Every other case is set aside, never doubled."""
    store = Store(tmp_path / "store.sqlite")
    await store.open()
    try:
        records = SystemEventRecords(store)
        now = int(time.time() * 1000)
        look_at = now - 30_000
        first, second = await boots(store, 2)
        await records.look(first, ("X", "Y"), look_at)
        started = look_at - (RUN_BEFORE_DRAIN_MS // 2 if case == "started-just-before-the-look" else 104)
        ended = look_at + 3_000
        run = {"status": "running" if case == "still-running" else "done", "endedAt": ended, "lastRunId": "r1"}
        updated = ended + (5_000 if case == "written-after-its-end" else 12)
        gateway = ScriptedGateway(updated, main_started_ms=started, main_run=run)
        own = "r0" if case == "a-heartbeat" else "r1"  # a heartbeat's request is hidden: an older turn's shows
        gateway.history = [{"role": "user", "content": "its request", "timestamp": started - 200,
                            "idempotencyKey": f"{own}:user"},
                           {"role": "assistant", "content": "PONG", "timestamp": started + 10}]
        if case == "a-message-steered-into-it":
            gateway.history.append({"role": "user", "content": "and this too", "timestamp": look_at + 500})
        if case == "history-unreadable":
            gateway.history = None
        await requeue_into(records, second, "2026.2.26" if case == "2x" else "2026.9.6", now, gateway)
        states = [r["state"] for r in await records.items_of(first)]
        assert gateway.queued == (["X", "Y"] if requeued else [])
        assert states == (["answered"] * 2 if requeued else ["unknown"] * 2), states
    finally:
        await store.close()


async def test_what_a_heartbeat_may_have_shown_is_kept_with_the_look_and_set_aside(tmp_path: Path) -> None:
    """The positions a 2026.9.x heartbeat going on may have shown the model are stored with the look,
    read back with the dead boot's look, and set aside; the rest is queued again."""
    store = Store(tmp_path / "store.sqlite")
    await store.open()
    try:
        records = SystemEventRecords(store)
        now = int(time.time() * 1000)
        first, second = await boots(store, 2)
        await records.look(first, ("X", "Y", "X"), now - 30_000, maybe_shown=(0, 2))
        [(look, _, _)] = await records.unplanned(second)
        assert look.maybe_shown == (0, 2)
        gateway = ScriptedGateway(now - 40_000)
        await requeue_into(records, second, "2026.9.6", now, gateway)
        assert gateway.queued == ["Y"]
        assert [r["state"] for r in await records.items_of(first)] == ["unknown", "answered", "unknown"]
    finally:
        await store.close()


@pytest.mark.parametrize("into_ended_boot", [True, False])
@pytest.mark.parametrize(("version", "sent_again"), [("2026.9.6", False), ("2026.2.26", True)])
async def test_with_a_heartbeat_outside_the_main_session_no_9x_lost_answer_is_sent_again(
        tmp_path: Path, version: str, sent_again: bool, into_ended_boot: bool) -> None:
    """A re-queue whose answer was lost, not in the queue since, and no main-session turn since the
    send: sent again, except on 2026.9.x with a heartbeat outside the main session, which may have
    taken it to the model unheard and moves no main row. Into a gateway that has ended since, or
    into the one gatewayd adopts."""
    store = Store(tmp_path / "store.sqlite")
    await store.open()
    try:
        records = SystemEventRecords(store)
        now = int(time.time() * 1000)
        sent_at = now - 20_000
        first, second, third = await send_lost_into_second(store, records, sent_at)
        await records.look(second, (), sent_at + 5_000)  # clean: it is not queued
        if into_ended_boot:
            await records.plan(second, [])
        gateway = ScriptedGateway(sent_at - 10_000)  # the main row's last move: before the send
        await requeue_into(records, third if into_ended_boot else second, version, now, gateway,
                           heartbeats_elsewhere=True)
        [row] = await records.items_of(first)
        assert gateway.queued == (["X"] if sent_again else [])
        assert row["state"] == ("answered" if sent_again else "unconfirmed"), row
    finally:
        await store.close()


@pytest.mark.parametrize(("version", "requeued"), [("2026.9.6", False), ("2026.2.26", True)])
async def test_with_a_heartbeat_outside_the_main_session_no_9x_look_is_trusted(
        tmp_path: Path, version: str, requeued: bool) -> None:
    """`heartbeat.isolatedSession` (or another `heartbeat.session`): 2026.9.x runs it unheard, and
    woken by cron it shows the model texts it leaves queued: every text is set aside."""
    store = Store(tmp_path / "store.sqlite")
    await store.open()
    try:
        records = SystemEventRecords(store)
        now = int(time.time() * 1000)
        first, second = await boots(store, 2)
        await records.look(first, ("X",), now - 30_000)
        gateway = ScriptedGateway(now - 40_000)
        await requeue_into(records, second, version, now, gateway, heartbeats_elsewhere=True)
        assert gateway.queued == (["X"] if requeued else [])
    finally:
        await store.close()
