"""gatewayd's own alerts, end to end with the scripted fake gateway: a loopback HTTP receiver and a
recording command hear each kill, crash loop, hang and restart of gatewayd itself; a hanging
notifier holds up no restart; `alert test` says which notifier works; no notifier secret leaks."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gatewayd_dev.alert_receiver import Receiver, Recorder, receiver
from gatewayd_dev.harness import Gatewayd, fake_settings, gatewayd, wait_until
from tests.integration.test_supervise import merge, stop_gatewayd

pytestmark = pytest.mark.timeout(120)

TOKEN = "hook-secret-5f0c7d2e9a41"


def store_rows(g: Gatewayd, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{g.state_dir / 'store.sqlite'}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def alerting(r: Receiver, rec: Recorder | None = None, **alerts: Any) -> dict[str, dict[str, Any]]:
    notify: list[dict[str, Any]] = [{"kind": "webhook", "url": r.url, "token_env": "HOOK_TOKEN"}]
    if rec is not None:
        notify.append({"kind": "command", "name": "recorder", "command": rec.command})
    return {"alerts": {"notify": notify, "retry_initial_s": 0.2, "recovered_after_s": 1.0, **alerts}}


@pytest.mark.parametrize("version", ["2026.9.6", "2026.2.26"])
def test_kill9_is_a_down_alert_within_5_s_and_then_recovered(tmp_path: Path, version: str) -> None:
    rec = Recorder(tmp_path)
    with receiver() as r, gatewayd(tmp_path, merge(fake_settings(version), alerting(r, rec)),
                                   env={"HOOK_TOKEN": TOKEN}) as g:
        g.start()
        g.wait_event("gateway_ready")
        g.wait_event("rpc_monitor_connected")
        pid = g.spawned_pids()[0]
        killed_at = time.time()
        os.kill(pid, signal.SIGKILL)
        down = r.wait_kind("down", timeout=10)
        assert down["at"] - killed_at < 5.0
        assert down["headers"]["Authorization"] == f"Bearer {TOKEN}"
        doc = down["body"]
        assert doc["fields"]["exit_kind"] == "crash" and doc["fields"]["returncode"] == -9
        rec.wait_kind("down", timeout=10)
        recovered = r.wait_kind("recovered", timeout=60)["body"]
        assert recovered["fields"]["finished"] is True
        incident = g.run_cli("history", "--incident", str(doc["incident"]), "-c", str(g.config_file))
        assert incident.returncode == 0, incident.stderr
        assert "signal SIGKILL" in incident.stdout and "boot 1" in incident.stdout
        assert "[gateway] ready" in incident.stdout  # the gateway's last lines
        inc = json.loads(g.run_cli("history", "--incident", str(doc["incident"]), "--json", "-c",
                                   str(g.config_file)).stdout)
        assert inc["signal"] == "SIGKILL" and inc["tree_rss_bytes"] > 0 and inc["uptime_s"] > 0
        alerts = json.loads(g.run_cli("history", "--alerts", "--json", "-c", str(g.config_file)).stdout)
        down_row = next(a for a in alerts if a["kind"] == "down")
        assert down_row["incident_id"] == doc["incident"] and down_row["state"] == "sent"
        assert {d["notifier"] for d in down_row["deliveries"] if d["ok"]} == {"webhook", "recorder"}
        text = g.run_cli("history", "-c", str(g.config_file)).stdout
        assert f"alert {down_row['id']}" in text and "webhook ok" in text
        status = g.run_cli("status", "--json", "-c", str(g.config_file)).stdout
        assert stop_gatewayd(g) == 0
        for where in (g.log_file.read_bytes(), (g.state_dir / "store.sqlite").read_bytes(), status.encode(),
                      (g.state_dir / "logs" / "gateway.log").read_bytes()):
            assert TOKEN.encode() not in where
        assert g.alive_marked() == []


def test_crash_loop_is_one_down_a_crash_loop_alert_and_reminders_not_one_per_retry(tmp_path: Path) -> None:
    settings = merge(fake_settings(FAKE_GW_EXIT_AFTER="0.3:1"),
                     {"supervise": {"backoff_initial_s": 0.05, "backoff_max_s": 0.1, "crash_loop_delay_s": 0.3,
                                    "crash_loop_crashes": 3}})
    with receiver() as r, gatewayd(tmp_path, merge(settings, alerting(r, reminder_interval_s=2.0)),
                                   env={"HOOK_TOKEN": TOKEN}) as g:
        g.start()
        r.wait_kind("crash-loop-entered", timeout=30)
        r.wait_kind("still-down", timeout=30, count=2)
        exits = len(g.named("gateway_exited"))
        assert stop_gatewayd(g) == 0
        kinds = r.kinds()
        assert kinds.count("down") == 1 and kinds.count("crash-loop-entered") == 1
        assert exits > kinds.count("still-down") + 1  # the retries outnumber the alerts
        reminders = [x["body"] for x in r.received if x["body"]["kind"] == "still-down"]
        assert sum(b["fields"]["exits"] for b in reminders) >= 2
        assert g.alive_marked() == []


def test_a_hanging_webhook_holds_up_no_restart(tmp_path: Path) -> None:
    rec = Recorder(tmp_path)
    with receiver(hang=True) as r:
        settings = alerting(r, rec)
        settings["alerts"]["notify"][0]["timeout_s"] = 30.0  # longer than this whole test's kills
        with gatewayd(tmp_path, merge(fake_settings(), settings), env={"HOOK_TOKEN": TOKEN}) as g:
            g.start()
            for n in (1, 2, 3):
                g.wait_event("gateway_ready", count=n)
                g.wait_event("rpc_monitor_connected", count=n)
                if n > 1:  # each kill its own outage: the last one's recovery reported first
                    rec.wait_kind("recovered", count=n - 1, timeout=30)
                os.kill(g.spawned_pids()[-1], signal.SIGKILL)
                rec.wait_kind("down", count=n, timeout=10)
            g.wait_event("gateway_ready", count=4, timeout=10)
            assert r.received == [] and r.requests >= 3  # every webhook delivery still hangs
            assert stop_gatewayd(g) == 0
            assert g.alive_marked() == []


def test_gatewayd_killed_and_started_again_alerts_that_it_restarted(tmp_path: Path) -> None:
    with receiver() as r, gatewayd(tmp_path, merge(fake_settings(), alerting(r)), env={"HOOK_TOKEN": TOKEN}) as g:
        g.start()
        g.wait_event("gateway_ready")
        g.procs[-1].send_signal(signal.SIGKILL)
        g.procs[-1].wait(10)
        g.start()
        alert = r.wait_kind("daemon-restarted", timeout=30)["body"]
        assert alert["fields"]["previous_pid"] == g.procs[0].pid
        g.wait_event("gateway_adopted")
        assert stop_gatewayd(g) == 0
        assert "down" not in r.kinds()  # the gateway was adopted, never down
        assert g.alive_marked() == []


def test_a_gateway_that_died_while_gatewayd_was_down_is_a_down_alert_with_its_incident(tmp_path: Path) -> None:
    with receiver() as r, gatewayd(tmp_path, merge(fake_settings(), alerting(r)), env={"HOOK_TOKEN": TOKEN}) as g:
        g.start()
        g.wait_event("gateway_ready")
        g.procs[-1].send_signal(signal.SIGKILL)
        g.procs[-1].wait(10)
        os.kill(g.spawned_pids()[0], signal.SIGKILL)
        g.start()
        down = r.wait_kind("down", timeout=30)["body"]
        assert down["fields"]["exit_kind"] == "vanished" and down["incident"]
        assert "daemon-restarted" in r.kinds()
        r.wait_kind("recovered", timeout=30)
        assert stop_gatewayd(g) == 0
        assert g.alive_marked() == []


def test_hang_is_alerted_then_the_down_alert(tmp_path: Path) -> None:
    with receiver() as r, gatewayd(tmp_path, merge(fake_settings(), alerting(r)), env={"HOOK_TOKEN": TOKEN}) as g:
        g.start()
        g.wait_event("gateway_ready")
        os.kill(g.spawned_pids()[0], signal.SIGSTOP)
        hang = r.wait_kind("hang", timeout=30)["body"]
        assert hang["fields"]["verdict"] == "hang"
        down = r.wait_kind("down", timeout=30)["body"]
        assert down["fields"]["exit_kind"] == "hang-kill" and down["incident"]
        assert stop_gatewayd(g) == 0
        assert g.alive_marked() == []


def test_alert_test_says_which_notifier_worked(tmp_path: Path) -> None:
    with receiver() as r:
        g = Gatewayd(tmp_path, 1, alerting(r) | {"alerts": {"notify": [
            {"kind": "webhook", "name": "hook", "url": r.url, "token_env": "HOOK_TOKEN"},
            {"kind": "command", "name": "broken", "command": [sys.executable, "-c", "import sys; sys.exit(3)"]},
            {"kind": "ntfy", "name": "phone", "url_env": "NTFY_URL"}]}}, env={"HOOK_TOKEN": TOKEN})
        out = g.run_cli("alert", "test", "-c", str(g.config_file))
        assert out.returncode == 1
        lines = out.stdout.splitlines()
        assert lines[0].startswith("ok    hook (webhook): HTTP 200")
        assert lines[1].startswith("FAIL  broken (command): exit 3")
        assert lines[2].startswith("FAIL  phone (ntfy): NTFY_URL is not set")
        assert r.kinds() == ["test"] and r.received[0]["headers"]["Authorization"] == f"Bearer {TOKEN}"
        assert TOKEN not in out.stdout + out.stderr


def test_alert_test_without_notifiers_says_how_to_add_one(tmp_path: Path) -> None:
    g = Gatewayd(tmp_path, 1)
    out = g.run_cli("alert", "test", "-c", str(g.config_file))
    assert out.returncode == 2 and "[[alerts.notify]]" in out.stderr


def test_an_alert_left_undelivered_by_a_dead_gatewayd_is_sent_by_the_next(tmp_path: Path) -> None:
    """The webhook refuses while gatewayd is killed; the next gatewayd goes on with that delivery,
    to the webhook only: the recording command took it already."""
    rec = Recorder(tmp_path)
    with receiver(fail_first=10_000) as r:
        settings = alerting(r, rec, retry_initial_s=5.0)
        with gatewayd(tmp_path, merge(fake_settings(), settings), env={"HOOK_TOKEN": TOKEN}) as g:
            g.start()
            g.wait_event("gateway_ready")
            g.wait_event("rpc_monitor_connected")
            os.kill(g.spawned_pids()[-1], signal.SIGKILL)
            down = rec.wait_kind("down", timeout=10)["alert"]
            wait_until(lambda: r.requests >= 1, 10, "the webhook's first (refused) attempt")
            # The recorder took it once gatewayd has recorded so (a kill before that record would
            # send it again: alerts are delivered at least once).
            wait_until(lambda: store_rows(g, "SELECT 1 FROM deliveries WHERE notifier = 'recorder' AND ok = 1"),
                       10, "the recorder's delivery recorded")
            g.procs[-1].send_signal(signal.SIGKILL)
            g.procs[-1].wait(10)
            r.fail_first = 0
            g.start()
            again = r.wait_kind("down", timeout=30)["body"]
            assert again["id"] == down["id"] and again["incident"] == down["incident"]
            g.wait_event("alert_resumed")
            def row() -> dict[str, Any]:
                alerts = json.loads(g.run_cli("history", "--alerts", "--json", "-c", str(g.config_file)).stdout)
                found: dict[str, Any] = next(a for a in alerts if a["id"] == down["id"])
                return found
            wait_until(lambda: row()["state"] == "sent", 10, "the alert recorded sent")
            hook = sorted(d["attempt"] for d in row()["deliveries"] if d["notifier"] == "webhook")
            assert hook[0] == 1 and hook[-1] >= 2  # the attempts counted on across the two gatewayds
            assert stop_gatewayd(g) == 0
            assert sum(1 for x in rec.records() if x["alert"]["kind"] == "down" and x["alert"]["id"] == down["id"]) == 1
            assert g.alive_marked() == []
