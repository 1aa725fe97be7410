"""The restart notice (issue 15, item 2) on the fake gateway's world, the fake model's requests as the
witness: on 2026.9.x, where a `wake` starts a turn of the session, the model sees the notice as a
system event, not as a user message; on 2026.2.x the notice is an agent turn that quotes the request
the gateway lost."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from pathlib import Path

import httpx
import psutil
import pytest

from gatewayd_dev.harness import gatewayd, kill, wait_until
from supervisor.gateway.launch import GatewayAuth, Secret
from supervisor.gateway.rpc import RpcClient
from tests.integration.test_faults import TOKEN, fake_model, model, obligations, world_settings

pytestmark = pytest.mark.timeout(150)


async def turn(port: int, version: str, message: str) -> None:
    """An agent turn in the main session, left running (its answer comes when the model answers)."""
    rpc = RpcClient(f"ws://127.0.0.1:{port}/", GatewayAuth("token", Secret(TOKEN), "", False),
                    3 if version.startswith("2026.2") else 4)
    await rpc.connect()
    try:
        await rpc.call("agent", {"message": message, "idempotencyKey": str(uuid.uuid4()), "agentId": "main",
                                 "sessionKey": "agent:main:main"})
    finally:
        await rpc.close()


def new_inputs(log: Path, text: str) -> list[str]:
    """The user messages after the last assistant one, of each request that carries `text` there."""
    out = []
    for e in fake_model.read_log(log):
        msgs = e.get("messages") or []
        last = max((i for i, m in enumerate(msgs) if m.get("role") == "assistant"), default=-1)
        fresh = fake_model.message_text([m for m in msgs[last + 1:] if m.get("role") == "user"])
        if text in fresh:
            out.append(fresh)
    return out


def resolved(g: object) -> list[dict[str, object]]:
    return [o for o in obligations(g) if o["kind"] == "session" and o["state"] != "open"]  # type: ignore[arg-type]


def test_9x_notice_reaches_the_model_as_a_system_event(tmp_path: Path) -> None:
    with model(tmp_path) as (model_port, log, delay), gatewayd(tmp_path, None) as g:
        settings = world_settings(tmp_path, "2026.9.6", model_port, g.port)
        settings["gateway"]["env"]["FAKE_GW_MAIN_RESUME_MS"] = "-1"  # a 9.x that did not resume this turn
        g.write_config_sections(settings)
        mark = uuid.uuid4().hex[:8]
        g.start()
        g.wait_event("rpc_monitor_connected")
        delay.write_text("5\n")
        asyncio.run(turn(g.port, "2026.9.6", f"MAIN-{mark} reply PONG"))
        wait_until(lambda: new_inputs(log, f"MAIN-{mark}"), 20, "the turn at the model")
        g.wait_event("inflight_changed", where=lambda e: bool(e.get("sessions_started")))
        delay.write_text("0.2\n")
        killed = time.time()
        kill(g.spawned_pids()[-1])
        ob = wait_until(lambda: resolved(g), 90, "the session's obligation resolved")
        assert ob[0]["resolution"] == "restart notice sent as a system event with a wake", ob
        notices = new_inputs(log, "Gateway restarted (crash")
        assert len(notices) == 1, notices
        # System text, inside the heartbeat turn's context block: not a user message of its own.
        assert re.search(r"System: \[[^\]]+\] \[System\] Gateway restarted \(crash", notices[0]), notices[0]
        assert not re.search(r"\[\w{3} \d{4}-\d\d-\d\d \d\d:\d\d UTC\] \[System\] Gateway restarted", notices[0])
        time.sleep(3)  # the witness: a window in which a fallback agent turn would have shown up
        assert len(new_inputs(log, "Gateway restarted (crash")) == 1 and killed


def world_calls(port: int, method: str) -> list[dict[str, object]]:
    """The fake gateway's own log of the RPC calls it took (GET /__fake/world)."""
    world = httpx.get(f"http://127.0.0.1:{port}/__fake/world", timeout=5).json()
    return [c for c in world["calls"] if c["method"] == method]


@pytest.mark.parametrize("to_channel", [False, True], ids=["reply-in-session", "reply-to-channel"])
def test_2x_notice_quotes_the_lost_request(tmp_path: Path, to_channel: bool) -> None:
    with model(tmp_path) as (model_port, log, delay), gatewayd(tmp_path, None) as g:
        settings = world_settings(tmp_path, "2026.2.26", model_port, g.port)
        settings["recovery"]["notice_to_channel"] = to_channel
        g.write_config_sections(settings)
        mark = uuid.uuid4().hex[:8]
        g.start()
        g.wait_event("rpc_monitor_connected")
        asyncio.run(turn(g.port, "2026.2.26", f"WARM-{mark} reply PONG"))  # a first turn is written only at its end
        wait_until(lambda: g.named("inflight_changed") and not [e for e in new_inputs(log, f"WARM-{mark}")
                                                              if False], 20, "the warm-up turn")
        wait_until(lambda: fake_model.read_log(log) and len(fake_model.read_log(log)) >= 1, 20, "warm-up at model")
        time.sleep(1)  # the warm-up's answer (0.2 s) written to the transcript: no event says so on 2.x
        delay.write_text("5\n")
        asyncio.run(turn(g.port, "2026.2.26", f"MAIN-{mark} clean the inbox"))
        wait_until(lambda: new_inputs(log, f"MAIN-{mark}"), 20, "the turn at the model")
        g.wait_event("inflight_changed", where=lambda e: bool(e.get("sessions_started")), count=2)
        delay.write_text("0.2\n")
        kill(g.spawned_pids()[-1])
        ob = wait_until(lambda: resolved(g), 90, "the session's obligation resolved")
        assert ob[0]["resolution"] == "restart notice sent as a chat.send turn", ob
        notices = new_inputs(log, "Gateway restarted (crash")
        assert len(notices) == 1, notices
        assert f'The interrupted request was: "MAIN-{mark} clean the inbox"' in notices[0], notices[0]
        # recovery.notice_to_channel: the notice turn's reply goes out on the session's channel. A main
        # session's notice is a chat.send: it hands over the session's queued system events too.
        [call] = [c for c in world_calls(g.port, "chat.send") if "Gateway restarted" in str(c["params"])]
        assert call["params"].get("deliver") is (True if to_channel else None), call  # type: ignore[union-attr]


def test_2x_turn_started_and_cut_while_gatewayd_was_down_gets_one_notice(tmp_path: Path) -> None:
    """Issue 15, item 5: gatewayd is killed, a turn starts (nobody watching) and its gateway dies
    before gatewayd is back. No snapshot saw it; the session's history shows the request unanswered."""
    with model(tmp_path) as (model_port, log, delay), gatewayd(tmp_path, None) as g:
        g.write_config_sections(world_settings(tmp_path, "2026.2.26", model_port, g.port))
        mark = uuid.uuid4().hex[:8]
        g.start()
        g.wait_event("rpc_monitor_connected")
        asyncio.run(turn(g.port, "2026.2.26", f"WARM-{mark} reply PONG"))  # a first turn is written only at its end
        wait_until(lambda: g.named("inflight_changed") and any(
            e.get("sessions_ended") for e in g.named("inflight_changed")), 20, "the warm-up turn ended")
        gateway = g.spawned_pids()[-1]
        g.procs[-1].kill()
        g.procs[-1].wait(10)
        delay.write_text("30\n")
        asyncio.run(turn(g.port, "2026.2.26", f"UNSEEN-{mark} sort the invoices"))
        wait_until(lambda: new_inputs(log, f"UNSEEN-{mark}"), 20, "the unseen turn at the model")
        kill(gateway)
        wait_until(lambda: not psutil.pid_exists(gateway) or psutil.Process(gateway).status() == psutil.STATUS_ZOMBIE,
                   10, "the gateway dead")
        delay.write_text("0.2\n")
        g.start()
        g.wait_event("recovery_unseen_turns_found")
        ob = wait_until(lambda: resolved(g), 90, "the session's obligation resolved")
        assert ob[0]["resolution"] == "restart notice sent as a chat.send turn" and ob[0]["boot_id"] == 1, ob
        notices = new_inputs(log, "Gateway restarted (")
        assert len(notices) == 1, notices
        assert f'The interrupted request was: "UNSEEN-{mark} sort the invoices"' in notices[0], notices[0]
        time.sleep(3)  # the witness: a window in which a second notice would have shown up
        assert len(new_inputs(log, "Gateway restarted (")) == 1
