"""The supervisor core on the real gateway: kill -9, SIGSTOP, its own restart, SIGTERM to gatewayd.

One gatewayd per version runs the whole story, since every boot of the real gateway costs ~20 s."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import psutil
import pytest

from gatewayd_dev.harness import Gatewayd, wait_until
from supervisor.gateway.ports import port_owners
from tests.e2e.conftest import real_gatewayd

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

BOOT_S = 240.0


def stop_and_check_nothing_left(g: Gatewayd) -> None:
    proc = g.procs[-1]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(180) == 0
    ended = g.named("gateway_exited")[-1]
    assert ended["exit_kind"] == "clean-stop", ended
    wait_until(lambda: not g.alive_marked(), 30, "every process of the gateway's tree gone")
    assert port_owners(g.port) == []


def assert_port_owned_by_spawned_pid(g: Gatewayd) -> int:
    pid = g.spawned_pids()[-1]
    owners = {o.pid for o in port_owners(g.port)}
    assert owners == {pid}, f"listener {owners} is not the spawned pid {pid}: a wrapper process?"
    return pid


def startupz(port: int) -> dict[str, object]:
    r = httpx.get(f"http://127.0.0.1:{port}/startupz", timeout=5)
    assert r.status_code == 200
    body: dict[str, object] = r.json()
    return body


def test_current_gateway_crash_hang_own_restart_and_stop(tmp_path: Path, model: tuple[int, Path]) -> None:
    g, _sb = real_gatewayd(tmp_path, "2026.9.6", model[0])
    try:
        g.start()
        g.wait_event("gateway_ready", timeout=BOOT_S)
        first = assert_port_owned_by_spawned_pid(g)
        assert startupz(g.port)["status"] == "started"

        os.kill(first, signal.SIGKILL)  # a crash
        crash = g.wait_event("gateway_exited")
        assert crash["exit_kind"] == "crash" and crash["delay_s"] == 0.0
        g.wait_event("gateway_ready", count=2, timeout=BOOT_S)
        second = assert_port_owned_by_spawned_pid(g)
        assert second != first and not psutil.pid_exists(first)
        assert startupz(g.port)["status"] == "started"

        os.kill(second, signal.SIGSTOP)  # a hang: the process lives, nothing answers
        hang = g.wait_event("gateway_unresponsive", timeout=60)
        assert hang["verdict"] == "hang"
        assert g.wait_event("gateway_exited", count=2)["exit_kind"] == "hang-kill"
        g.wait_event("gateway_ready", count=3, timeout=BOOT_S)
        third = assert_port_owned_by_spawned_pid(g)

        # The gateway's own restart (SIGUSR2 on 2026.9.x) under OPENCLAW_SUPERVISOR_MODE=external:
        # it hands off and exits 0; gatewayd restarts it at once and counts no crash.
        g.wait_event("rpc_monitor_connected", timeout=60, where=lambda e: e["boot"] == 3)
        os.kill(third, signal.SIGUSR2)
        own = g.wait_event("gateway_exited", count=3, timeout=120)
        assert own["exit_kind"] == "restart-requested" and own["counts_as_crash"] is False, own
        assert own["delay_s"] == 0.0
        g.wait_event("gateway_ready", count=4, timeout=BOOT_S)
        assert_port_owned_by_spawned_pid(g)

        stop_and_check_nothing_left(g)
        kinds = [e["exit_kind"] for e in g.named("gateway_exited")]
        assert kinds == ["crash", "hang-kill", "restart-requested", "clean-stop"]
    finally:
        g.cleanup()


def test_legacy_gateway_crash_and_stop(tmp_path: Path, model: tuple[int, Path]) -> None:
    g, _sb = real_gatewayd(tmp_path, "2026.2.26", model[0])
    try:
        g.start()
        ready = g.wait_event("gateway_ready", timeout=BOOT_S)
        first = assert_port_owned_by_spawned_pid(g)
        # No HTTP probes on this version: readiness came from the WebSocket handshake + health.
        html = httpx.get(f"http://127.0.0.1:{g.port}/startupz", timeout=5)
        assert "html" in html.headers.get("content-type", "")
        assert ready["pid"] == first

        os.kill(first, signal.SIGKILL)
        crash = g.wait_event("gateway_exited")
        # One process (no wrapper): the exit is the gateway's own SIGKILL, not a wrapper's exit 1.
        assert crash["exit_kind"] == "crash" and crash["returncode"] == -9
        g.wait_event("gateway_ready", count=2, timeout=BOOT_S)
        assert_port_owned_by_spawned_pid(g)
        stop_and_check_nothing_left(g)
    finally:
        g.cleanup()
