"""Queued system events survive a gateway crash (issue 15, items 1 and 3), on the fake gateway's world
with the fake model's request log as the witness: each event queued before a kill -9 reaches the
model once, in order, handed over by the agent's one wake, also when gatewayd itself dies at each
step of the re-queue or of the wake."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from gatewayd_dev import fake_model, sandbox
from gatewayd_dev.harness import FAKE_GATEWAY, Gatewayd, gatewayd, wait_until
from gatewayd_dev.turns import heartbeat_then_queue, kill_at_a_main_end, kill_right_after_its_end, main_turn_to_its_end
from supervisor.crashpoints import CRASH_EXIT, REQUEUE_STEPS, WAKE_STEPS
from supervisor.gateway.launch import GatewayAuth, Secret
from supervisor.gateway.rpc import RpcClient
from tests.integration.test_faults import COMPRESSED, TOKEN, model, table

pytestmark = pytest.mark.timeout(120)


def settings(root: Path, version: str, model_port: int, gw_port: int,
             fake_env: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """gatewayd's sections for a fake gateway of `version`; `fake_env`: the fake's knobs on top."""
    # 2026.2.x's `wake now` runs only heartbeat-enabled agents (measured): a long interval that never
    # fires within the test, but enables them.
    every = "60m" if version.startswith("2026.2") else "0m"
    cfg = sandbox.build_config(version, gw_port=gw_port, model_port=model_port, token=TOKEN, hook_token="hook-x",
                               log_file=root / "gw.log", heartbeat_every=every)
    (root / "gw").mkdir(exist_ok=True)
    config_path = root / "gw" / "openclaw.json"
    config_path.write_text(json.dumps(cfg))
    env = {"FAKE_GW_VERSION": version, "OPENCLAW_STATE_DIR": str(root / "gw"),
           "OPENCLAW_CONFIG_PATH": str(config_path), **COMPRESSED, **(fake_env or {})}
    return {"gateway": {"command": [sys.executable, str(FAKE_GATEWAY)], "env": env, "config_path": str(config_path),
                        "state_dir": str(root / "gw")},
            "snapshot": {"interval_s": 0.5}}


async def queue_events(port: int, version: str, texts: list[str]) -> None:
    rpc = RpcClient(f"ws://127.0.0.1:{port}/", GatewayAuth("token", Secret(TOKEN), "", False),
                    3 if version.startswith("2026.2") else 4)
    await rpc.connect()
    try:
        for text in texts:
            await rpc.call("system-event", {"text": text})
    finally:
        await rpc.close()


def start_and_queue(g: Gatewayd, version: str, texts: list[str]) -> None:
    """gatewayd started, the texts queued and seen in its first look."""
    g.start()
    g.wait_event("rpc_monitor_connected")
    asyncio.run(queue_events(g.port, version, texts))
    wait_until(lambda: [r["text"] for r in table(g, "queued_events")] == texts, 20, "the queue looked at")


async def main_turn(port: int, version: str, text: str) -> int:
    rpc = RpcClient(f"ws://127.0.0.1:{port}/", GatewayAuth("token", Secret(TOKEN), "", False),
                    3 if version.startswith("2026.2") else 4)
    await rpc.connect()
    try:
        return await main_turn_to_its_end(rpc, text)
    finally:
        await rpc.close()


def new_input(request: dict[str, Any]) -> str:
    """A model request's user messages after its last assistant one."""
    out: list[str] = []
    for m in request.get("messages", []):
        out = [] if m.get("role") == "assistant" else [*out, json.dumps(m.get("content"))] \
            if m.get("role") == "user" else out
    return "\n".join(out)


def delivered(log: Path, mark: str) -> list[list[str]]:
    """Per model request that carried any of this test's events: their texts, in the order seen."""
    found = []
    for e in fake_model.read_log(log):
        seen = re.findall(rf"System: \[[^\]]*\] (SE\d-{mark})", e.get("text", ""))
        if seen:
            found.append(seen)
    return found


def settled(g: Gatewayd) -> list[dict[str, Any]]:
    rows = table(g, "requeues")
    return rows if rows and all(r["state"] not in ("planned", "dispatched") for r in rows) else []


def woken(g: Gatewayd) -> list[dict[str, Any]]:
    rows = table(g, "agent_wakes")
    return rows if rows and all(r["state"] in ("done", "covered", "nothing", "unconfirmed", "failed")
                                for r in rows) else []


@pytest.mark.parametrize("version", ["2026.9.6", "2026.2.26"])
@pytest.mark.parametrize("step", [None, *REQUEUE_STEPS, *WAKE_STEPS])
def test_events_queued_before_a_kill9_reach_the_model_once_in_order(tmp_path: Path, version: str,
                                                                     step: str | None) -> None:
    with model(tmp_path) as (model_port, log, _), gatewayd(tmp_path, None) as g:
        g.write_config_sections(settings(tmp_path, version, model_port, g.port))
        mark = uuid.uuid4().hex[:8]
        texts = [f"SE1-{mark}", f"SE2-{mark}", f"SE1-{mark}"]
        g.start({"GATEWAYD_CRASH_AT": step} if step else None)
        g.wait_event("rpc_monitor_connected")
        asyncio.run(queue_events(g.port, version, texts))
        wait_until(lambda: [r["text"] for r in table(g, "queued_events")] == texts, 20, "the queue looked at")
        os.kill(g.spawned_pids()[-1], signal.SIGKILL)
        if step is not None:
            assert g.procs[-1].wait(60) == CRASH_EXIT  # died at the step
            g.start()
        rows = wait_until(lambda: settled(g), 60, "every re-queue settled")
        # Died with the first send taken and not journaled: the next gatewayd sees it queued.
        first = "observed" if step == "requeue-sent" else "answered"
        assert [(r["kind"], r["state"]) for r in sorted(rows, key=lambda r: r["pos"])] == \
            [("system-event", first)] + [("system-event", "answered")] * 2, rows
        wakes = wait_until(lambda: woken(g), 60, "the agent's wake settled")
        method = "chat.send" if version.startswith("2026.2") else "wake"
        assert [(w["agent_id"], w["state"], w["method"]) for w in wakes] == [("main", "done", method)], wakes
        wait_until(lambda: delivered(log, mark), 20, "the events at the model")
        time.sleep(3)  # the witness: a window in which a second delivery would have shown up
        assert delivered(log, mark) == [texts]


def test_2x_a_wake_accepted_whose_turn_never_starts_is_unconfirmed_not_done(tmp_path: Path) -> None:
    """2026.2.26 accepted the wake's chat.send and then failed its turn (a session lock a kill had
    left, CI of stop 30); the answer alone once settled the wake done. Now only a turn seen after
    it does: none within the confirm window, and it is unconfirmed, and not sent again (its turn
    may have taken the texts)."""
    version = "2026.2.26"
    with model(tmp_path) as (model_port, log, _), gatewayd(tmp_path, None) as g:
        g.write_config_sections(settings(tmp_path, version, model_port, g.port,
                                         {"FAKE_GW_SESSION_WRITES_FAIL": "1"}))
        mark = uuid.uuid4().hex[:8]
        start_and_queue(g, version, [f"SE1-{mark}"])
        os.kill(g.spawned_pids()[-1], signal.SIGKILL)
        wait_until(lambda: settled(g), 60, "the re-queue settled")
        wakes = wait_until(lambda: woken(g), 90, "the agent's wake settled")
        assert [(w["agent_id"], w["state"], w["method"]) for w in wakes] == [("main", "unconfirmed", "chat.send")], \
            wakes
        assert "accepted, but no turn of agent:main:main seen" in wakes[0]["resolution"], wakes
        assert len(g.named("agent_wake_sent")) == 1
        assert delivered(log, mark) == []
        # `status` tells the people what the agents were told, and that this one is not confirmed.
        told = json.loads(g.run_cli("status", "--json", "-c", str(g.config_file)).stdout)["told"]
        assert (told["boot"], [(w["agent_id"], w["state"]) for w in told["wakes"]], told["requeued"]) == \
            (1, [("main", "unconfirmed")], {"answered": 1}), told
        text = g.run_cli("status", "-c", str(g.config_file)).stdout
        assert "woken:   after boot 1: main unconfirmed (chat.send)" in text, text
        assert "requeued: after boot 1: 1 system event it held (answered 1)" in text, text


def queue_kill_and_die_at(g: Gatewayd, version: str, texts: list[str], step: str) -> None:
    """Start gatewayd set to die at `step` (a crash point), queue the texts and wait for its look,
    kill the gateway: gatewayd dies at that step of recovering them, leaving the next gateway running."""
    g.start({"GATEWAYD_CRASH_AT": step})
    g.wait_event("rpc_monitor_connected")
    asyncio.run(queue_events(g.port, version, texts))
    wait_until(lambda: [r["text"] for r in table(g, "queued_events")] == texts, 20, "the queue looked at")
    os.kill(g.spawned_pids()[-1], signal.SIGKILL)
    assert g.procs[-1].wait(60) == CRASH_EXIT


def kill_and_see_them_queued_again_once(g: Gatewayd, log: Path, mark: str, texts: list[str]) -> None:
    """kill -9 the gateway: every text is queued again (answered), and reaches the model once."""
    os.kill(g.spawned_pids()[-1], signal.SIGKILL)
    rows = wait_until(lambda: settled(g), 60, "every re-queue settled")
    assert [(r["text"], r["state"]) for r in sorted(rows, key=lambda r: r["pos"])] == \
        [(t, "answered") for t in texts], rows
    wait_until(lambda: delivered(log, mark), 30, "the events at the model")
    time.sleep(3)  # the witness: a window in which a second delivery would have shown up
    assert delivered(log, mark) == [texts]


@pytest.mark.parametrize("version", ["2026.9.6", "2026.2.26"])
def test_events_behind_a_main_turn_that_ended_before_the_kill_are_queued_again(tmp_path: Path,
                                                                                version: str) -> None:
    """A main-session turn that began while the events sat queued and ended before the crash moved
    its row's `updatedAt` past every look taken during it. The re-queue cannot tell that end from a
    turn that started (and drained) after them: gatewayd looks again once the end settled, so the
    events go back rather than being set aside (the chaos runs lost most of their events this way)."""
    with model(tmp_path) as (model_port, log, _), gatewayd(tmp_path, None) as g:
        g.write_config_sections(settings(tmp_path, version, model_port, g.port))
        mark = uuid.uuid4().hex[:8]
        texts = [f"SE1-{mark}", f"SE2-{mark}"]
        g.start()
        g.wait_event("rpc_monitor_connected")
        asyncio.run(queue_events(g.port, version, texts))
        wait_until(lambda: [r["text"] for r in table(g, "queued_events")] == texts, 20, "the queue looked at")
        moved_to = asyncio.run(main_turn(g.port, version, f"TURN-{mark} reply PONG"))
        wait_until(lambda: (lambda looks: looks and looks[0]["looked_at_ms"] > moved_to and not looks[0]["void"])(
            table(g, "queue_looks")), 20, "a look dated after the turn's end")
        kill_and_see_them_queued_again_once(g, log, mark, texts)


@pytest.mark.parametrize("version", ["2026.9.6", "2026.2.26"])
def test_a_main_turns_end_redates_the_look_soon_after_it(tmp_path: Path, version: str) -> None:
    """The look after a main-session turn's end comes when the end has settled, not at the next
    snapshot tick: a kill between the two used to set the texts aside (fake chaos seed 4142: 12 of
    400 events, kills 0.1-0.7 s after an end). With a 30 s snapshot interval, only the end's own
    looks can date one after it within the deadline below."""
    with model(tmp_path) as (model_port, log, _), gatewayd(tmp_path, None) as g:
        cfg = settings(tmp_path, version, model_port, g.port)
        cfg["snapshot"] = {"interval_s": 30.0}
        g.write_config_sections(cfg)
        mark = uuid.uuid4().hex[:8]
        texts = [f"SE1-{mark}", f"SE2-{mark}"]
        g.start()
        g.wait_event("rpc_monitor_connected")
        asyncio.run(queue_events(g.port, version, texts))
        moved_to = asyncio.run(main_turn(g.port, version, f"TURN-{mark} reply PONG"))  # its start looks
        wait_until(lambda: (lambda looks: looks and looks[0]["looked_at_ms"] > moved_to and not looks[0]["void"]
                            and [r["text"] for r in table(g, "queued_events")] == texts)(table(g, "queue_looks")),
                   10, "a look holding the texts, dated after the turn's end")
        kill_and_see_them_queued_again_once(g, log, mark, texts)


async def kill_the_moment_it_ends(g: Gatewayd, version: str, text: str) -> None:
    """The gateway killed the moment a main turn's end is heard, before gatewayd can look again after
    the end's row write (gatewayd's look taken again after the turn's start first)."""
    rpc = RpcClient(f"ws://127.0.0.1:{g.port}/", GatewayAuth("token", Secret(TOKEN), "", False),
                    3 if version.startswith("2026.2") else 4)
    await rpc.connect()
    try:
        await kill_right_after_its_end(rpc, g.spawned_pids()[-1], text, lambda started: (
            lambda looks: bool(looks) and not looks[0]["void"] and looks[0]["looked_at_ms"] > started)(
            table(g, "queue_looks")))
    finally:
        await rpc.close()


@pytest.mark.parametrize("version", ["2026.9.6", "2026.2.26"])
def test_events_behind_a_main_turn_whose_end_the_kill_follows_at_once_are_queued_again(
        tmp_path: Path, version: str) -> None:
    """The end moved the row past the last look, and the kill came before gatewayd could look again
    (fake chaos seed 5172 set 10 of 400 events aside so). gatewayd heard the end and every event to
    the gateway's exit, and no start: the row is that end's, and the events go back, once. 2026.2.x
    shows every turn's start to every connection; 2026.9.6 a heartbeat's only to the session's
    message subscribers, which gatewayd is (before it, fake chaos seed 6371 set 4 of 400 aside)."""
    with model(tmp_path) as (model_port, log, delay), gatewayd(tmp_path, None) as g:
        g.write_config_sections(settings(tmp_path, version, model_port, g.port))
        mark = uuid.uuid4().hex[:8]
        texts = [f"SE1-{mark}", f"SE2-{mark}"]
        start_and_queue(g, version, texts)
        delay.write_text("5\n")  # the turn runs while gatewayd looks again after its start
        asyncio.run(kill_the_moment_it_ends(g, version, f"TURN-{mark} reply PONG"))
        delay.write_text("0.2\n")
        rows = wait_until(lambda: settled(g), 60, "every re-queue settled")
        assert [(r["text"], r["state"]) for r in sorted(rows, key=lambda r: r["pos"])] == \
            [(t, "answered") for t in texts], rows
        wait_until(lambda: delivered(log, mark), 30, "the events at the model")
        time.sleep(3)  # the witness: a window in which a second delivery would have shown up
        assert delivered(log, mark) == [texts]


@pytest.mark.parametrize("version", ["2026.9.6", "2026.2.26"])
def test_events_queued_during_a_heartbeat_whose_end_the_kill_follows_at_once_are_queued_again(
        tmp_path: Path, version: str) -> None:
    """As with any main turn: texts queued while a heartbeat runs (after its drain), then its end, and
    the kill before gatewayd can look again. 2026.9.6 shows a heartbeat's start and end only to the
    session's message subscribers: gatewayd, subscribed, heard both, so the row is the end's and the
    texts go back, once (unsubscribed, it set them aside)."""
    with model(tmp_path) as (model_port, log, delay), gatewayd(tmp_path, None) as g:
        g.write_config_sections(settings(tmp_path, version, model_port, g.port))
        mark = uuid.uuid4().hex[:8]
        texts = [f"SE1-{mark}", f"SE2-{mark}"]
        g.start()
        g.wait_event("rpc_monitor_connected")
        delay.write_text("5\n")

        async def run() -> None:
            rpc = RpcClient(f"ws://127.0.0.1:{g.port}/", GatewayAuth("token", Secret(TOKEN), "", False),
                            3 if version.startswith("2026.2") else 4)
            await rpc.connect()
            try:
                await kill_right_after_its_end(rpc, g.spawned_pids()[-1], f"WAKE-{mark}", lambda started: (
                    lambda looks: bool(looks) and not looks[0]["void"] and looks[0]["looked_at_ms"] > started
                    and [r["text"] for r in table(g, "queued_events")] == texts)(table(g, "queue_looks")),
                    start=lambda rpc, text: heartbeat_then_queue(  # subscribed, it hears the end
                        rpc, text, log, texts, subscribe=not version.startswith("2026.2"), timeout_s=20))
            finally:
                await rpc.close()

        asyncio.run(run())
        delay.write_text("0.2\n")
        rows = wait_until(lambda: settled(g), 60, "every re-queue settled")
        assert [(r["text"], r["state"]) for r in sorted(rows, key=lambda r: r["pos"])] == \
            [(t, "answered") for t in texts], rows
        wait_until(lambda: delivered(log, mark), 30, "the events at the model")
        time.sleep(3)  # the witness: a window in which a second delivery would have shown up
        assert delivered(log, mark) == [texts]


def test_9x_a_heartbeat_right_behind_a_turns_end_is_heard_through_the_subscription(tmp_path: Path) -> None:
    """A heartbeat queued behind a main turn drains the queue within the window that dates a row by
    the turn's end gatewayd heard, and the model has the events when the kill comes. Its start, heard
    through the subscription (2026.9.6 shows it to no other connection), voids the look, and its row's
    `startedAt`, written before the model call, is after the look: the events are set aside, never
    queued again (twice at the model)."""
    version = "2026.9.6"
    with model(tmp_path) as (model_port, log, delay), gatewayd(tmp_path, None) as g:
        # The drain after gatewayd's looks at the end (at once and 50 ms on), and well within the
        # window that dates a row by the end (250 ms); the kill before its look at 500 ms.
        g.write_config_sections(settings(tmp_path, version, model_port, g.port,
                                         {"FAKE_GW_HEARTBEAT_DRAIN_MS": "120"}))
        mark = uuid.uuid4().hex[:8]
        texts = [f"SE1-{mark}", f"SE2-{mark}"]
        start_and_queue(g, version, texts)
        delay.write_text("3\n")
        t0 = time.time()
        asyncio.run(agent_turn(g.port, version, f"TURN-{mark} reply PONG"))  # an agent turn drains nothing
        wait_until(lambda: any(f"TURN-{mark}" in e.get("text", "") and e.get("ts", 0) >= t0
                               for e in fake_model.read_log(log)), 20, "the main turn at the model")
        asyncio.run(send(g.port, version, "wake", {"mode": "now", "text": f"WAKE-{mark}"}))
        # Killed as the request arrives, before gatewayd's next look could find the queue drained: the
        # row, next to the heard end, is all that is left to judge by.
        wait_until(lambda: delivered(log, mark), 30, "the heartbeat's request with the events", step=0.002)
        os.kill(g.spawned_pids()[-1], signal.SIGKILL)
        delay.write_text("0.2\n")
        # Planned: from a look voided by the start (set aside), or from the empty one taken after it.
        wait_until(lambda: any(r["boot_id"] == 1 and r["planned"] for r in table(g, "queue_looks")),
                   60, "the dead boot's look planned")
        # The start was heard: the look was voided, or taken again after the drain (a deaf watcher's
        # look would still list the texts, and only the row's `startedAt` would keep them back).
        [look] = [r for r in table(g, "queue_looks") if r["boot_id"] == 1]
        in_look = [r["text"] for r in table(g, "queued_events") if r["boot_id"] == 1]
        assert look["void"] or not set(texts) & set(in_look), (look, in_look)
        rows = table(g, "requeues")
        assert all(r["state"] == "unknown" for r in rows), rows
        time.sleep(3)  # the witness: a window in which a second delivery would have shown up
        assert delivered(log, mark) == [texts]


@pytest.mark.parametrize("version", ["2026.9.6", "2026.2.26"])
def test_events_a_cron_woken_heartbeat_shows_the_model_are_never_queued_again(tmp_path: Path, version: str) -> None:
    """A main-session cron job's wake: 2026.9.6's heartbeat shows the model every text queued at its
    start (the job's and an ordinary one) and keeps them queued until its end (research section 17),
    so a look during it lists texts the model has. The gateway killed then: set aside, never queued
    again (2026.2.x takes them at the start, as any heartbeat)."""
    with model(tmp_path) as (model_port, log, delay), gatewayd(tmp_path, None) as g:
        g.write_config_sections(settings(tmp_path, version, model_port, g.port))
        mark = uuid.uuid4().hex[:8]
        start_and_queue(g, version, [f"SE1-{mark}"])
        delay.write_text("5\n")

        job = asyncio.run(send(g.port, version, "cron.add", {
            "name": f"reminder-{mark}", "schedule": {"kind": "every", "everyMs": 3_600_000},
            "sessionTarget": "main", "wakeMode": "now", "payload": {"kind": "systemEvent", "text": f"SE2-{mark}"}}))
        asyncio.run(send(g.port, version, "cron.run", {"id": job["id"] if "id" in job else job["job"]["id"],
                                                       "mode": "force"}))
        wait_until(lambda: delivered(log, mark), 30, "the heartbeat's request with both texts", step=0.01)
        time.sleep(1.5)  # the window for gatewayd's looks during the heartbeat (each lists both texts on 9.6)
        os.kill(g.spawned_pids()[-1], signal.SIGKILL)
        delay.write_text("0.2\n")
        wait_until(lambda: any(r["boot_id"] == 1 and r["planned"] for r in table(g, "queue_looks")),
                   60, "the dead boot's look planned")
        rows = table(g, "requeues")
        assert all(r["state"] == "unknown" for r in rows), rows
        time.sleep(3)  # the witness: a window in which a second delivery would have shown up
        assert delivered(log, mark) == [[f"SE1-{mark}", f"SE2-{mark}"]]


async def send(port: int, version: str, method: str, params: dict[str, Any]) -> Any:
    rpc = RpcClient(f"ws://127.0.0.1:{port}/", GatewayAuth("token", Secret(TOKEN), "", False),
                    3 if version.startswith("2026.2") else 4)
    await rpc.connect()
    try:
        return await rpc.call(method, params)
    finally:
        await rpc.close()


async def chat_send(port: int, version: str, text: str) -> None:
    await send(port, version, "chat.send", {"sessionKey": "agent:main:main", "message": text,
                                            "idempotencyKey": uuid.uuid4().hex})


async def agent_turn(port: int, version: str, text: str) -> None:
    """An `agent` turn in the main session, left running (it does not drain the queue)."""
    await send(port, version, "agent", {"message": text, "idempotencyKey": uuid.uuid4().hex, "agentId": "main",
                                        "sessionKey": "agent:main:main"})


def test_9x_requeue_waits_for_the_gateways_own_resume(tmp_path: Path) -> None:
    """2026.9.x resumes a cut main-session turn a few seconds after ready. Texts queued again before
    that resume starts would be set aside by a crash right after it (a main-session turn after the
    last look: the fake chaos lost events so, seed 3131). The re-queue is sent once the gateway's
    own startup recovery is over; the events still reach the model once, at the next drain."""
    version = "2026.9.6"
    with model(tmp_path) as (model_port, log, delay), gatewayd(tmp_path, None) as g:
        g.write_config_sections(settings(tmp_path, version, model_port, g.port))
        mark = uuid.uuid4().hex[:8]
        texts = [f"SE1-{mark}", f"SE2-{mark}"]
        start_and_queue(g, version, texts)
        delay.write_text("30\n")
        t0 = time.time()
        asyncio.run(agent_turn(g.port, version, f"TURN-{mark} reply PONG"))
        wait_until(lambda: any(f"TURN-{mark}" in e.get("text", "") and e.get("ts", 0) >= t0
                               for e in fake_model.read_log(log)), 20, "the main turn at the model")
        wait_until(lambda: (lambda looks: looks and not looks[0]["void"] and
                            [r["text"] for r in table(g, "queued_events")] == texts)(table(g, "queue_looks")),
                   20, "the look taken again after the turn's start")
        delay.write_text("0.2\n")
        os.kill(g.spawned_pids()[-1], signal.SIGKILL)
        settled_at = g.wait_event("recovery_settled", where=lambda e: e.get("boot") == 2, timeout=60)
        rows = wait_until(lambda: settled(g), 60, "every re-queue settled")
        assert [(r["text"], r["state"]) for r in sorted(rows, key=lambda r: r["pos"])] == \
            [(t, "answered") for t in texts], rows
        # Settled because the resume was seen, not at the version's 30 s deadline.
        assert settled_at["after_ready_ms"] < 20_000, settled_at
        settled_ms = datetime.fromisoformat(str(settled_at["timestamp"])).timestamp() * 1000
        assert all(r["dispatched_at_ms"] >= settled_ms - 5 for r in rows), (settled_ms, rows)
        # The resume is the agent's wake: the events wait in the queue for the next turn that
        # takes them, here a user's message.
        asyncio.run(chat_send(g.port, version, f"USER-{mark} reply PONG"))
        wait_until(lambda: delivered(log, mark), 30, "the events at the model")
        time.sleep(3)  # the witness: a window in which a second delivery would have shown up
        assert delivered(log, mark) == [texts]


@pytest.mark.parametrize("version", ["2026.9.6", "2026.2.26"])
def test_a_text_queued_again_into_a_gateway_that_dies_before_its_next_look_is_queued_again(
        tmp_path: Path, version: str) -> None:
    """gatewayd dies the moment a re-queued text is answered (the crash point), and the gateway that
    took it is killed before any look listed it: the text is in no look of that boot, only in the
    journal of what was sent into it. It goes to the next gateway, once (fake chaos seed 4141 lost
    7 of 400 events this way, the second blow landing during the recovery)."""
    with model(tmp_path) as (model_port, log, _), gatewayd(tmp_path, None) as g:
        g.write_config_sections(settings(tmp_path, version, model_port, g.port))
        mark = uuid.uuid4().hex[:8]
        texts = [f"SE1-{mark}", f"SE2-{mark}"]
        queue_kill_and_die_at(g, version, texts, "requeue-answered")  # one text answered into the next gateway
        os.kill(g.spawned_pids()[-1], signal.SIGKILL)  # that gateway dies while gatewayd is down
        g.start()
        rows = wait_until(lambda: (r := settled(g)) and len(r) >= 3 and r, 60, "every re-queue settled")
        wait_until(lambda: delivered(log, mark), 30, "the events at the model")
        time.sleep(3)  # the witness: a window in which a second delivery would have shown up
        # Each reached the model once: counted in each request's new input (its user messages after
        # the last answer), since the second restart's wake carries the first's in its history.
        seen = [t for e in fake_model.read_log(log) for t in
                re.findall(rf"System: \[[^\]]*\] (SE\d-{mark})", new_input(e))]
        assert sorted(seen) == sorted(texts), (delivered(log, mark), rows)


def test_9x_an_older_boots_wake_sent_ahead_of_the_gateways_own_resume_waits_behind_it(tmp_path: Path) -> None:
    """gatewayd dies with an older boot's wake decided and not sent; while it is down a main turn
    starts and its gateway is killed. The next gatewayd sends the old wake at once, seconds ahead of
    the gateway's own resume of the cut turn. Measured on the real 2026.9.6 (5 of 5, research section
    14): the wake's heartbeat waits while a main-session restart recovery is pending or running, so
    the cut turn is resumed first, once, and the wake's turn comes after it. (The fake once ran the
    wake first and resumed the wake instead: fake chaos seed 7392's 2 lost turns were the fake's.)"""
    version = "2026.9.6"
    with model(tmp_path) as (model_port, log, delay), gatewayd(tmp_path, None) as g:
        # The resume as the real one's: seconds after ready.
        g.write_config_sections(settings(tmp_path, version, model_port, g.port, {"FAKE_GW_MAIN_RESUME_MS": "4000"}))
        mark = uuid.uuid4().hex[:8]
        texts = [f"SE1-{mark}", f"SE2-{mark}"]
        queue_kill_and_die_at(g, version, texts, "wake-decided")  # boot 1's wake decided, not sent
        assert [(w["boot_id"], w["state"]) for w in table(g, "agent_wakes")] == [(1, "planned")]
        delay.write_text("30\n")
        t0 = time.time()
        asyncio.run(agent_turn(g.port, version, f"TURN-{mark} reply PONG"))  # gatewayd is down: unseen
        wait_until(lambda: any(f"TURN-{mark}" in e.get("text", "") and e.get("ts", 0) >= t0
                               for e in fake_model.read_log(log)), 20, "the main turn at the model")
        os.kill(g.spawned_pids()[-1], signal.SIGKILL)
        delay.write_text("0.2\n")
        t1 = time.time()
        g.start()
        wakes = wait_until(lambda: woken(g), 60, "the agent's wake settled")
        assert [(w["boot_id"], w["state"], w["method"]) for w in wakes] == [(1, "done", "wake")], wakes
        resumed = wait_until(lambda: [e for e in fake_model.read_log(log) if e.get("ts", 0) >= t1
                                      and f"TURN-{mark}" in new_input(e)], 30, "the cut turn resumed")
        assert "interrupted by a gateway restart" in new_input(resumed[0]), resumed[0]
        assert wakes[0]["dispatched_at_ms"] < resumed[0]["ts"] * 1000, (wakes, resumed[0]["ts"])  # sent ahead
        woke = wait_until(lambda: [e for e in fake_model.read_log(log) if e.get("ts", 0) >= t1
                                   and "[gatewayd] The gateway restarted" in new_input(e)], 30, "the wake's turn")
        assert woke[0]["ts"] > resumed[0]["ts"], (woke[0]["ts"], resumed[0]["ts"])
        # The events queued again into the second gateway are set aside: a main turn ran there after
        # the last look while gatewayd was down, and 2026.9.x's `chat.send` would have drained them.
        assert {(r["boot_id"], r["state"]) for r in table(g, "requeues")} == {(1, "answered"), (2, "unknown")}
        time.sleep(3)  # the witness: a window in which a second resume would have shown up
        assert len([e for e in fake_model.read_log(log) if e.get("ts", 0) >= t1
                    and f"TURN-{mark}" in new_input(e)]) == 1
        assert len([e for e in fake_model.read_log(log) if e.get("ts", 0) >= t1
                    and "[gatewayd] The gateway restarted" in new_input(e)]) == 1
        assert delivered(log, mark) == []  # lost, never doubled: see the set-aside above


async def kill_at_the_resumes_end(port: int, pid: int) -> None:
    """kill -9 the gateway the moment a main-session turn's end is heard (a passive connection hears
    the resume's end on 2026.9.6, not its start)."""
    rpc = RpcClient(f"ws://127.0.0.1:{port}/", GatewayAuth("token", Secret(TOKEN), "", False), 4)
    killed = kill_at_a_main_end(rpc, pid)
    await rpc.connect()
    try:
        async with asyncio.timeout(60):
            await killed.wait()
    finally:
        await rpc.close()


@pytest.mark.parametrize("cut", ["during-the-resume", "at-the-resumes-end"])
def test_9x_events_behind_the_gateways_own_resume_are_queued_again_once(tmp_path: Path, cut: str) -> None:
    """2026.9.6 resumes a cut main turn with no lifecycle start and drains nothing (research section
    13), but the resume moves the session's row and its end reaches every connection. Texts queued
    before it, then the gateway killed during the resume or the moment its end is heard, before
    gatewayd looks again: gatewayd heard every start of that session to the end, and none came, so
    the row is no turn that took them, and they go back, once (fake chaos seed 7402 set 4 of 400
    aside so)."""
    version = "2026.9.6"
    with model(tmp_path) as (model_port, log, delay), gatewayd(tmp_path, None) as g:
        # The resume as the real one's: seconds after ready.
        cfg = settings(tmp_path, version, model_port, g.port, {"FAKE_GW_MAIN_RESUME_MS": "3000"})
        cfg["snapshot"] = {"interval_s": 30.0}  # only the events make it look again
        g.write_config_sections(cfg)
        mark = uuid.uuid4().hex[:8]
        texts = [f"SE1-{mark}", f"SE2-{mark}"]
        g.start()
        g.wait_event("rpc_monitor_connected")
        delay.write_text("30\n")
        t0 = time.time()
        asyncio.run(agent_turn(g.port, version, f"TURN-{mark} reply PONG"))
        wait_until(lambda: any(f"TURN-{mark}" in e.get("text", "") and e.get("ts", 0) >= t0
                               for e in fake_model.read_log(log)), 20, "the main turn at the model")
        delay.write_text("30\n" if cut == "during-the-resume" else "1\n")
        os.kill(g.spawned_pids()[-1], signal.SIGKILL)
        g.wait_event("rpc_monitor_connected", where=lambda e: e.get("boot") == 2, timeout=60)
        t1 = time.time()
        asyncio.run(queue_events(g.port, version, texts))  # before the resume, 3 s after ready
        looked = wait_until(lambda: [r["looked_at_ms"] for r in table(g, "queue_looks") if r["boot_id"] == 2
                                     and not r["void"]] if [r["text"] for r in table(g, "queued_events")
                                                            if r["boot_id"] == 2] == texts else [],
                            20, "the second gateway's queue looked at")
        if cut == "during-the-resume":
            wait_until(lambda: any(e.get("ts", 0) >= t1 and f"TURN-{mark}" in new_input(e)
                                   for e in fake_model.read_log(log)), 20, "the resume at the model")
            # Its first event (the model it calls) took the look again, past the row's move at its start.
            wait_until(lambda: [r for r in table(g, "queue_looks") if r["boot_id"] == 2
                                and r["looked_at_ms"] > looked[0] and not r["void"]], 20, "the look taken again")
            os.kill(g.spawned_pids()[-1], signal.SIGKILL)
        else:
            asyncio.run(kill_at_the_resumes_end(g.port, g.spawned_pids()[-1]))
        resumed = [e for e in fake_model.read_log(log) if e.get("ts", 0) >= t1 and f"TURN-{mark}" in new_input(e)]
        assert resumed and resumed[0]["ts"] * 1000 > looked[0], (looked, resumed)  # after the first look
        assert delivered(log, mark) == []  # the resume took none of them
        g.wait_event("rpc_monitor_connected", where=lambda e: e.get("boot") == 3, timeout=60)
        rows = wait_until(lambda: [r for r in settled(g) if r["boot_id"] == 2], 60, "every re-queue settled")
        assert [(r["text"], r["state"]) for r in sorted(rows, key=lambda r: r["pos"])] == \
            [(t, "answered") for t in texts], rows
        [look] = [r for r in table(g, "queue_looks") if r["boot_id"] == 2]
        assert (look["heard_sessions"], look["quiet_sessions"]) == ('["agent:main:main"]', "[]"), look
        delay.write_text("0.2\n")
        asyncio.run(chat_send(g.port, version, f"USER-{mark} reply PONG"))  # the next drain
        wait_until(lambda: delivered(log, mark), 60, "the events at the model")
        time.sleep(3)  # the witness: a window in which a second delivery would have shown up
        assert delivered(log, mark) == [texts]
