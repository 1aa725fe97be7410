"""gatewayd supervising the scripted fake gateway: crash, hang, config error, stop, orphans."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from gatewayd_dev.harness import FAKE_GATEWAY, Gatewayd, fake_settings, gatewayd, wait_until
from supervisor.crashpoints import CRASH_EXIT

pytestmark = pytest.mark.timeout(90)


def merge(*parts: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for part in parts:
        for section, values in part.items():
            target = out.setdefault(section, {})
            for k, v in values.items():
                if isinstance(v, dict) and isinstance(target.get(k), dict):
                    target[k] = {**target[k], **v}
                else:
                    target[k] = v
    return out


def fake_call(g: Gatewayd, path: str) -> str:
    return httpx.post(f"http://127.0.0.1:{g.port}/__fake/{path}", timeout=5).text


def boots(g: Gatewayd) -> list[dict[str, Any]]:
    conn = sqlite3.connect(f"file:{g.state_dir / 'store.sqlite'}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM boots ORDER BY id")]
    finally:
        conn.close()


def stop_gatewayd(g: Gatewayd, sig: signal.Signals = signal.SIGTERM, timeout: float = 30) -> int:
    proc = g.procs[-1]
    proc.send_signal(sig)
    rc = proc.wait(timeout)
    if rc != 0:
        out = (g.root / f"gatewayd-{len(g.procs) - 1}.out").read_text()[-3000:]
        raise AssertionError(f"gatewayd exited {rc}:\n{out}")
    return rc


@pytest.mark.parametrize("version", ["2026.9.6", "2026.2.26"])
def test_kill9_of_gateway_restarts_it_at_once(tmp_path: Path, version: str) -> None:
    with gatewayd(tmp_path, fake_settings(version)) as g:
        g.start()
        g.wait_event("gateway_ready")
        first = g.spawned_pids()[0]
        os.kill(first, signal.SIGKILL)
        ended = g.wait_event("gateway_exited")
        assert ended["exit_kind"] == "crash" and ended["returncode"] == -9
        assert ended["delay_s"] == 0.0  # the first crash restarts at once
        g.wait_event("gateway_ready", count=2)
        assert g.spawned_pids()[1] != first
        assert stop_gatewayd(g) == 0
        rows = boots(g)
        assert [r["exit_kind"] for r in rows] == ["crash", "clean-stop"]
        assert rows[0]["version"] == version
        assert g.alive_marked() == []


@pytest.mark.parametrize("version", ["2026.9.6", "2026.2.26"])
def test_sigstop_is_declared_a_hang_and_the_gateway_replaced(tmp_path: Path, version: str) -> None:
    with gatewayd(tmp_path, fake_settings(version)) as g:
        g.start()
        g.wait_event("gateway_ready")
        first = g.spawned_pids()[0]
        os.kill(first, signal.SIGSTOP)
        hang = g.wait_event("gateway_unresponsive")
        assert hang["verdict"] == "hang" and hang["status"] == "stopped"
        ended = g.wait_event("gateway_exited")
        assert ended["exit_kind"] == "hang-kill"
        g.wait_event("gateway_ready", count=2)
        assert not psutil.pid_exists(first) or psutil.Process(first).status() == psutil.STATUS_ZOMBIE
        assert stop_gatewayd(g) == 0
        assert g.alive_marked() == []


def test_listener_closed_after_shutdown_announcement_is_not_a_hang(tmp_path: Path) -> None:
    # A gateway that announces a restart and stops answering for a while is restarting on purpose.
    # DESIGN: "a child that closes its listener for 12 s after a shutdown event must not be killed".
    with gatewayd(tmp_path, merge(fake_settings(), {"probes": {"refused_limit_s": 2.0}})) as g:
        g.start()
        g.wait_event("gateway_ready")
        g.wait_event("rpc_monitor_connected")
        fake_call(g, "silence?seconds=12&expected_ms=3000")
        g.wait_event("gateway_announced_shutdown")
        wait_until(lambda: not _port_open(g.port), 10, "the listener closed")
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{g.port}/healthz", timeout=1).status_code == 200
                   if _port_open(g.port) else False, 20, "the gateway answering again")
        assert g.named("gateway_unresponsive") == []
        assert len(g.spawned_pids()) == 1
        assert stop_gatewayd(g) == 0


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_exit_78_waits_for_the_config_to_change_then_retries_once(tmp_path: Path) -> None:
    gw_config = tmp_path / "gw-state" / "openclaw.json"
    gw_config.parent.mkdir(parents=True)
    gw_config.write_text('{"gateway": {"mode": "local"}}')
    with gatewayd(tmp_path, fake_settings(FAKE_GW_EXIT_AT_BOOT="78")) as g:
        g.start()
        ended = g.wait_event("gateway_exited")
        assert ended["exit_kind"] == "config-error" and ended["next"] == "wait-config-change"
        waiting = g.wait_event("config_refused")
        assert any("Invalid config" in line for line in waiting["last_lines"])
        st = g.run_cli("status", "-c", str(g.config_file), "--json")
        assert json.loads(st.stdout)["supervision"]["state"] == "config-error" and st.returncode == 3
        assert len(g.spawned_pids()) == 1  # no loop
        gw_config.write_text('{"gateway": {"mode": "local", "port": 1}}')
        g.wait_event("gateway_exited", count=2)
        assert len(g.spawned_pids()) == 2
        assert stop_gatewayd(g) == 0


def test_gateway_ignoring_sigterm_is_killed_after_the_budget(tmp_path: Path) -> None:
    settings = merge(fake_settings(FAKE_GW_IGNORE_TERM="1"), {"supervise": {"stop_budget_s": 1.0}})
    with gatewayd(tmp_path, settings) as g:
        g.start()
        g.wait_event("gateway_ready")
        assert stop_gatewayd(g) == 0
        ended = g.wait_event("gateway_exited")
        assert ended["exit_kind"] == "stop-unclean" and ended["returncode"] == -9
        assert g.alive_marked() == []


@pytest.mark.parametrize("escape", [False, True], ids=["same-group", "own-session"])
def test_stop_leaves_no_grandchild(tmp_path: Path, escape: bool) -> None:
    with gatewayd(tmp_path, fake_settings()) as g:
        g.start()
        g.wait_event("gateway_ready")
        answer = fake_call(g, "grandchild?session=1" if escape else "grandchild")
        grandchild = int(answer.split()[-1])
        assert psutil.pid_exists(grandchild)
        assert stop_gatewayd(g) == 0
        assert not any(p.pid == grandchild for p in g.alive_marked())
        assert g.alive_marked() == []


def test_gateway_environment_is_clean(tmp_path: Path) -> None:
    dump = tmp_path / "env.json"
    leaked = {"INVOCATION_ID": "x", "JOURNAL_STREAM": "8:1", "SYSTEMD_EXEC_PID": "1", "LAUNCH_JOB_LABEL": "l",
              "XPC_SERVICE_NAME": "ai.openclaw.gateway", "OPENCLAW_SERVICE_MARKER": "openclaw",
              "OPENCLAW_SERVICE_KIND": "gateway", "OPENCLAW_LAUNCHD_LABEL": "ai.openclaw.gateway",
              "OPENCLAW_SYSTEMD_UNIT": "openclaw-gateway.service", "NOTIFY_SOCKET": "/run/x"}
    with gatewayd(tmp_path, fake_settings(FAKE_GW_ENV_DUMP=str(dump)), env={**leaked, "KEEP_ME": "yes"}) as g:
        g.start()
        g.wait_event("gateway_ready")
        env = json.loads(dump.read_text())
        for name in leaked:
            assert name not in env, name
        assert env["KEEP_ME"] == "yes" and env["PATH"] == os.environ["PATH"]
        assert env["OPENCLAW_SUPERVISOR_MODE"] == "external"
        assert "--disable-warning=ExperimentalWarning" in env["NODE_OPTIONS"].split()
        assert len(env["OPENCLAW_GATEWAY_TOKEN"]) >= 32  # generated: no token in env or config
        token_file = g.state_dir / "gateway-token"
        assert token_file.read_text().strip() == env["OPENCLAW_GATEWAY_TOKEN"]
        assert token_file.stat().st_mode & 0o777 == 0o600
        assert stop_gatewayd(g) == 0


def test_legacy_gateway_gets_the_service_marker_not_supervisor_mode(tmp_path: Path) -> None:
    dump = tmp_path / "env.json"
    with gatewayd(tmp_path, fake_settings("2026.2.26", FAKE_GW_ENV_DUMP=str(dump))) as g:
        g.start()
        g.wait_event("gateway_ready")
        env = json.loads(dump.read_text())
        assert env["OPENCLAW_SERVICE_MARKER"] == "gatewayd"
        assert "OPENCLAW_SUPERVISOR_MODE" not in env
        assert stop_gatewayd(g) == 0


def test_tokens_never_reach_logs_or_status(tmp_path: Path) -> None:
    token = "tok-" + "s3cr3t" * 6
    with gatewayd(tmp_path, fake_settings(), env={"OPENCLAW_GATEWAY_TOKEN": token}) as g:
        g.start()
        g.wait_event("gateway_ready")
        os.kill(g.spawned_pids()[0], signal.SIGKILL)
        g.wait_event("gateway_ready", count=2)
        status = g.run_cli("status", "-c", str(g.config_file), "--json")
        assert stop_gatewayd(g) == 0
        gateway_log = (g.state_dir / "logs" / "gateway.log").read_text()
        assert "auth token=***" in gateway_log  # the fake prints it; gatewayd redacts it
        for path in g.state_dir.rglob("*"):
            if path.is_file():
                assert token.encode() not in path.read_bytes(), path
        assert token not in status.stdout


def test_requested_restart_respawns_at_once_without_counting_a_crash(tmp_path: Path) -> None:
    with gatewayd(tmp_path, fake_settings()) as g:
        g.start()
        g.wait_event("gateway_ready")
        g.wait_event("rpc_monitor_connected")
        fake_call(g, "restart?expected_ms=1500")
        ended = g.wait_event("gateway_exited")
        assert ended["exit_kind"] == "restart-requested" and ended["counts_as_crash"] is False
        assert ended["delay_s"] == 0.0 and ended["consecutive_crashes"] == 0
        handoff = g.wait_event("restart_handoff")
        assert handoff["status"] == "accepted"
        g.wait_event("gateway_ready", count=2)
        assert stop_gatewayd(g) == 0


def test_crash_loop_is_a_visible_state_that_keeps_retrying(tmp_path: Path) -> None:
    settings = merge(fake_settings(FAKE_GW_EXIT_AFTER="0.3:1"),
                     {"supervise": {"backoff_initial_s": 0.05, "backoff_max_s": 0.1, "crash_loop_delay_s": 0.3,
                                    "crash_loop_crashes": 5}})
    with gatewayd(tmp_path, settings) as g:
        g.start()
        fifth = g.wait_event("gateway_exited", count=5)
        assert fifth["crash_loop"] is True
        g.wait_event("supervision_state", where=lambda e: e["state"] == "crash-loop")
        g.wait_event("gateway_spawned", count=7)  # never a silent stop
        for e in g.named("gateway_exited")[:4]:
            assert e["crash_loop"] is False
        assert stop_gatewayd(g) == 0
        assert g.alive_marked() == []


def test_port_held_by_an_unrelated_program_is_a_conflict_and_is_not_killed(tmp_path: Path) -> None:
    with gatewayd(tmp_path, fake_settings()) as g:
        holder = subprocess.Popen([sys.executable, "-c", (
            "import socket,sys,time\n"
            "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            f"s.bind(('127.0.0.1',{g.port}))\n"
            "s.listen(); print('ok', flush=True); time.sleep(600)")], stdout=subprocess.PIPE)  # until killed
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == b"ok"
            g.start()
            conflict = g.wait_event("port_conflict")
            assert str(holder.pid) in " ".join(conflict["owners"])
            g.wait_event("supervision_state", where=lambda e: e["state"] == "conflict")
            assert g.spawned_pids() == []
            assert holder.poll() is None
            assert stop_gatewayd(g) == 0
            assert holder.poll() is None
        finally:
            holder.kill()
            holder.wait()
            assert holder.stdout is not None
            holder.stdout.close()


def test_single_instance_and_restart_after_kill9_of_gatewayd(tmp_path: Path) -> None:
    with gatewayd(tmp_path, fake_settings()) as g:
        first = g.start()
        g.wait_event("gateway_ready")
        second = g.start()
        assert second.wait(30) == 3
        out = (tmp_path / "gatewayd-1.out").read_text().strip().splitlines()
        assert out[-1].startswith("gatewayd: another gatewayd (pid ") and str(first.pid) in out[-1]
        old_gateway = g.spawned_pids()[0]
        first.kill()
        first.wait()
        third = g.start()  # the lock died with its holder: starts at once
        adopted = g.wait_event("gateway_adopted")
        # Adopt, don't kill: the gateway left running keeps its pid and its work.
        assert adopted["pid"] == old_gateway and adopted["boot"] == 1
        g.wait_event("gateway_ready", count=2)
        assert g.spawned_pids() == [old_gateway]
        os.kill(old_gateway, signal.SIGKILL)  # its exit is seen (pidfd), though it is not our child
        ended = g.wait_event("gateway_exited")
        assert ended["pid"] == old_gateway and ended["counts_as_crash"] is True
        g.wait_event("gateway_spawned", count=2)
        g.wait_event("gateway_ready", count=3)
        third.send_signal(signal.SIGTERM)
        assert third.wait(30) == 0
        assert g.alive_marked() == []


def test_gatewayd_killed_between_spawn_and_record_leaves_no_gateway_behind(tmp_path: Path) -> None:
    """Found by the chaos benchmark: gatewayd killed just after spawning a gateway, before its boot
    was recorded, left a gateway no row named; the next gatewayd started a second one on the same
    state, which met the first one's lock. Now the gateway waits at its start gate until its boot
    is recorded: killed in between, gatewayd leaves nothing running, and the next one starts one."""
    with gatewayd(tmp_path, fake_settings()) as g:
        first = g.start({"GATEWAYD_CRASH_AT": "spawned"})
        assert first.wait(30) == CRASH_EXIT
        wait_until(lambda: g.alive_marked() == [], 30, "the gated gateway and its relay gone")
        assert boots(g) == []
        second = g.start()
        g.wait_event("gateway_ready")
        assert g.named("gateway_adopted") == [] and len(g.spawned_pids()) == 1
        assert [b["pid"] for b in boots(g)] == g.spawned_pids()
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0
        assert g.alive_marked() == []


def test_the_gateway_is_spawned_without_a_shell(tmp_path: Path) -> None:
    """gatewayd's own child is the gateway: its argv, nothing in between (its start gate execs
    into it, keeping the pid gatewayd recorded), with the environment gatewayd gave it: the gate's
    Python coerces a C LC_CTYPE to a UTF-8 locale at its start, which it undoes (LC_ALL empty:
    else that coercion would not happen)."""
    with gatewayd(tmp_path, fake_settings(LC_CTYPE="C", LC_ALL="")) as g:
        daemon = g.start()
        g.wait_event("gateway_ready")
        gateway = psutil.Process(g.spawned_pids()[0])
        assert gateway.ppid() == daemon.pid
        assert gateway.cmdline()[:2] == [sys.executable, str(FAKE_GATEWAY)]
        assert gateway.create_time() == pytest.approx(boots(g)[0]["create_time"], abs=0.01)
        assert gateway.environ()["LC_CTYPE"] == "C"
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0


def test_stale_pid_in_lock_file_is_neither_obeyed_nor_killed(tmp_path: Path) -> None:
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # lives until killed
    try:
        with gatewayd(tmp_path, fake_settings()) as g:
            g.state_dir.mkdir(parents=True)
            (g.state_dir / "gatewayd.lock").write_text(f"{bystander.pid}\n")
            g.start()
            g.wait_event("gateway_ready")
            assert stop_gatewayd(g) == 0
            assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_status_while_daemon_is_down_is_marked_stale(tmp_path: Path) -> None:
    with gatewayd(tmp_path, fake_settings()) as g:
        g.start()
        g.wait_event("gateway_ready")
        live = g.run_cli("status", "-c", str(g.config_file), "--json")
        assert live.returncode == 0
        data = json.loads(live.stdout)
        assert data["daemon"]["running"] is True and data["supervision"]["state"] == "running"
        assert stop_gatewayd(g) == 0
        down = g.run_cli("status", "-c", str(g.config_file), "--json")
        data = json.loads(down.stdout)
        assert down.returncode == 4
        assert data["daemon"]["running"] is False and data["supervision"]["stale"] is True
        assert data["supervision"]["state"] == "stopped"


def test_bad_config_is_one_line_naming_file_and_key(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[probes]\ninterval_s = 'fast'\n")
    cfg.chmod(0o600)
    r = subprocess.run([sys.executable, "-m", "supervisor", "run", "-c", str(cfg)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0
    assert str(cfg) in r.stderr and "probes.interval_s" in r.stderr


def test_regression_grandchild_started_just_before_a_crash_is_reaped(tmp_path: Path) -> None:
    """Found here: a grandchild in its own session, started after the last look at the tree and
    orphaned by a kill -9 of the gateway, escaped. gatewayd is a child subreaper on Linux: it
    comes back to gatewayd and is killed; the exit itself is seen at once."""
    with gatewayd(tmp_path, merge(fake_settings(), {"probes": {"refused_limit_s": 60.0}})) as g:
        g.start()
        g.wait_event("gateway_ready")
        grandchild = int(fake_call(g, "grandchild?session=1").split()[-1])
        wait_until(lambda: grandchild in {c.pid for c in psutil.Process(g.spawned_pids()[0]).children()}, 5,
                   "the grandchild")
        os.kill(g.spawned_pids()[0], signal.SIGKILL)
        ended = g.wait_event("gateway_exited", timeout=10)
        assert ended["exit_kind"] == "crash" and ended["returncode"] == -9
        g.wait_event("gateway_ready", count=2)
        assert stop_gatewayd(g) == 0
        assert g.alive_marked() == []


@pytest.mark.parametrize("escape", [False, True], ids=["same-group", "own-session"])
def test_grandchild_holding_the_port_after_a_crash_is_killed_and_the_gateway_restarts(tmp_path: Path,
                                                                                     escape: bool) -> None:
    """The gateway dies and a helper it forked still holds its listening socket: the port is taken
    by gatewayd's own descendant, not by another program. gatewayd kills it (it is recorded as its
    child's tree, or came back to gatewayd as subreaper) and the next gateway gets the port: no
    conflict state, no waiting."""
    with gatewayd(tmp_path, fake_settings()) as g:
        g.start()
        g.wait_event("gateway_ready")
        holder = int(fake_call(g, "grandchild?port=1" + ("&session=1" if escape else "")).split()[-1])
        assert any(c.laddr.port == g.port and c.status == psutil.CONN_LISTEN
                   for c in psutil.Process(holder).net_connections())
        os.kill(g.spawned_pids()[0], signal.SIGKILL)
        ended = g.wait_event("gateway_exited", timeout=10)
        assert ended["exit_kind"] == "crash"
        g.wait_event("gateway_ready", count=2, timeout=30)
        assert not psutil.pid_exists(holder) or psutil.Process(holder).status() == psutil.STATUS_ZOMBIE
        assert [e for e in g.named("supervision_state") if e.get("state") == "conflict"] == []
        assert stop_gatewayd(g) == 0
        assert g.alive_marked() == []
