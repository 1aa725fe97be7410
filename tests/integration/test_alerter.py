"""The alerter in process, on a real store, with a loopback HTTP receiver and a recording command:
each event the daemon publishes becomes its alert at both, deliveries are retried and recorded,
and a notifier that hangs holds up nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gatewayd_dev.alert_receiver import Receiver, Recorder, receiver
from gatewayd_dev.harness import toml_value
from supervisor import alerter as alerter_module
from supervisor import config
from supervisor.alerter import Alerter
from supervisor.events import (
    BootEnded,
    BootStarted,
    ConflictFound,
    EventBus,
    GatewayReady,
    HangDeclared,
    MemoryPressureRestart,
    RecoveryFinished,
    StoreFailing,
    StoreResumed,
)
from supervisor.store.boots import BootRecords
from supervisor.store.db import Store

pytestmark = pytest.mark.timeout(60)

TOKEN = "hook-token-0123456789abcdef"


def load(tmp_path: Path, notify: list[dict[str, Any]], **alerts: Any) -> config.Config:
    alerts = {"recovered_after_s": 0.2, **alerts}
    body = "\n".join(f"{k} = {toml_value(v)}" for k, v in {"notify": notify, **alerts}.items())
    p = tmp_path / "gatewayd.toml"
    p.write_text(f'state_dir = "{tmp_path / "state"}"\n[alerts]\n{body}\n')
    p.chmod(0o600)
    return config.load(p, environ={})


class Rig:
    def __init__(self, alerter: Alerter, bus: EventBus, store: Store, cfg: config.Config) -> None:
        self.alerter, self.bus, self.store, self.cfg = alerter, bus, store, cfg

    def rows(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        conn = sqlite3.connect(self.cfg.state_dir / "store.sqlite")
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute(sql, args)]
        finally:
            conn.close()

    async def until(self, pred: Any, what: str, within: float = 10.0) -> Any:
        deadline = time.monotonic() + within
        while not (value := pred()):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.02)
        return value


@contextlib.asynccontextmanager
async def start(cfg: config.Config, environ: dict[str, str] | None = None,
                before: Any = None) -> AsyncIterator[Rig]:
    store = Store(cfg.state_dir / "store.sqlite")
    await store.open()
    if before is not None:
        await before(store)
    bus = EventBus()
    a = Alerter(cfg, store, environ or {})
    bus.subscribe(a.on_event)
    await a.daemon_starting()
    task = asyncio.create_task(a.run())
    try:
        yield Rig(a, bus, store, cfg)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await store.close()


def both(tmp_path: Path, r: Receiver, rec: Recorder, **alerts: Any) -> config.Config:
    return load(tmp_path, [{"kind": "webhook", "url": r.url, "token_env": "HOOK_TOKEN"},
                           {"kind": "command", "name": "recorder", "command": rec.command}], **alerts)


async def crash_boot(store: Store, lines: list[str], cfg: config.Config) -> int:
    records = BootRecords(store)
    boot = await records.started(4242, 1.0, 18789, "2026.9.6")
    log = cfg.state_dir / "logs" / "gateway.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("".join(f"{line}\n" for line in lines))
    return boot


async def test_kill9_is_a_down_alert_with_its_incident_at_both_notifiers(tmp_path: Path) -> None:
    rec = Recorder(tmp_path)
    with receiver() as r:
        cfg = both(tmp_path, r, rec)
        async with start(cfg, {"HOOK_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"}) as rig:
            boot = await crash_boot(rig.store, [f"line {i}" for i in range(250)] + [f"leaked {TOKEN}"], cfg)
            rig.bus.publish(BootStarted(boot, 4242, time.monotonic()))
            rig.bus.publish(BootEnded(boot, 4242, "crash", -9, time.monotonic(), True, False, "signal SIGKILL"))
            hook = await rig.until(lambda: [x for x in r.received if x["body"]["kind"] == "down"], "webhook down")
            cmd = await rig.until(lambda: [x for x in rec.records() if x["alert"]["kind"] == "down"], "command down")
            doc = hook[0]["body"]
            assert hook[0]["headers"]["Authorization"] == f"Bearer {TOKEN}"
            assert doc["incident"] and doc["incident_command"] == f"gatewayd history --incident {doc['incident']}"
            assert doc["fields"]["returncode"] == -9 and doc["severity"] == "critical"
            assert cmd[0]["alert"]["incident"] == doc["incident"]
            assert "HOOK_TOKEN" not in cmd[0]["env"]  # a notifier's secret reaches no other process
            [inc] = rig.rows("SELECT * FROM incidents WHERE id = ?", doc["incident"])
            lines = json.loads(inc["last_lines"])
            assert len(lines) == 200 and lines[0] == "line 51" and lines[-1] == "leaked ***"
            assert (inc["exit_code"], inc["signal"], inc["exit_kind"]) == (-9, "SIGKILL", "crash")
            assert inc["uptime_s"] is not None
            await rig.until(lambda: rig.rows("SELECT 1 FROM alerts WHERE kind = 'down' AND state = 'sent'"),
                            "the alert marked sent")
            assert {d["notifier"]: d["ok"] for d in rig.rows("SELECT * FROM deliveries")} == {"webhook": 1,
                                                                                              "recorder": 1}
        data = (cfg.state_dir / "store.sqlite").read_bytes()
        assert TOKEN.encode() not in data and r.url.encode() not in data


async def test_each_event_makes_its_alert(tmp_path: Path) -> None:
    rec = Recorder(tmp_path)

    async def previous_daemon_crashed(store: Store) -> None:
        await BootRecords(store).daemon_started(999)  # state 'starting', never 'stopped': it died

    with receiver() as r:
        cfg = both(tmp_path, r, rec)
        async with start(cfg, {"HOOK_TOKEN": TOKEN}, previous_daemon_crashed) as rig:
            await rig.until(lambda: "daemon-restarted" in r.kinds(), "daemon-restarted")
            boot = await crash_boot(rig.store, ["Invalid config: gateway.mode"], cfg)
            events_and_kinds: list[tuple[object, str]] = [
                (HangDeclared(boot, 4242, "hang"), "hang"),
                (BootEnded(boot, 4242, "config-error", 78, time.monotonic(), True, False, "exit 78"), "config-error"),
                (ConflictFound(18789, "pid 77 (node openclaw)"), "conflict"),
                (StoreFailing("disk I/O error"), "store-failing"),
                (StoreResumed("disk I/O error"), "store-recovered"),
                (MemoryPressureRestart(boot, 3 << 30, 2 << 30), "memory-restart"),
                (BootEnded(boot, 4242, "crash", 1, time.monotonic(), True, True, "exit 1"), "crash-loop-entered"),
            ]
            for event, kind in events_and_kinds:
                rig.bus.publish(event)
                await rig.until(lambda kind=kind: kind in r.kinds() and kind in rec.kinds(), kind)  # type: ignore[misc]
            config_alert = next(x for x in r.received if x["body"]["kind"] == "config-error")
            assert "Invalid config: gateway.mode" in config_alert["body"]["message"]
            # A crash's down alert goes out beside its crash-loop one, in no set order.
            await rig.until(lambda: "down" in r.kinds(), "down")
            rig.bus.publish(GatewayReady(boot + 1, 4243, "2026.9.6", None, time.monotonic()))
            rig.bus.publish(RecoveryFinished(boot + 1))
            await rig.until(lambda: "recovered" in r.kinds(), "recovered")


async def test_recovered_lists_what_was_retried_noticed_and_given_up(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(alerter_module, "GIVEN_UP_POLL_S", 0.1)
    with receiver() as r:
        cfg = load(tmp_path, [{"kind": "webhook", "url": r.url}])
        async with start(cfg) as rig:
            boot = await crash_boot(rig.store, ["x"], cfg)
            rig.bus.publish(BootEnded(boot, 4242, "crash", -9, time.monotonic(), True, False, "signal SIGKILL"))
            await rig.until(lambda: "down" in r.kinds(), "down")

            def obligations(c: sqlite3.Connection, boot: int = boot) -> None:
                now = time.time() + 1
                for i, (kind, ref, name, state, action) in enumerate([
                        ("cron", "job-1", "nightly", "done", "cron-run"),
                        ("session", "agent:main:main", None, "done", "agent-turn"),
                        ("cron", "job-2", "hourly", "given-up", "cron-run")]):
                    c.execute("INSERT INTO obligations(kind, ref, name, boot_id, interrupted_at, reason, state,"
                              " resolution, updated_at) VALUES (?,?,?,?,?,?,?,?,?)",
                              (kind, ref, name, boot, now, "crash", state, "because", now))
                    c.execute("INSERT INTO actions(key, obligation_id, kind, state, dispatched_at_ms, updated_at)"
                              " VALUES (?, last_insert_rowid(), ?, 'answered', ?, ?)", (f"k{i}", action, 1, now))
            await rig.store.write(obligations)
            given = await rig.until(lambda: [x for x in r.received if x["body"]["kind"] == "given-up"], "given-up")
            assert "cron job hourly" in given[0]["body"]["message"]
            rig.bus.publish(GatewayReady(boot + 1, 1, "2026.9.6", None, time.monotonic()))
            rig.bus.publish(RecoveryFinished(boot + 1))
            rec = await rig.until(lambda: [x for x in r.received if x["body"]["kind"] == "recovered"], "recovered")
            fields = rec[0]["body"]["fields"]
            assert fields["done"] == ["cron job nightly: retried - done: because",
                                      "session agent:main:main: noticed and woken - done: because"]
            assert fields["given_up"] == ["cron job hourly: retried - given-up: because"]
            assert r.kinds().count("given-up") == 1  # the poll does not report it twice


async def test_repeated_exits_are_one_down_and_a_still_down_reminder(tmp_path: Path) -> None:
    with receiver() as r:
        cfg = load(tmp_path, [{"kind": "webhook", "url": r.url}], reminder_interval_s=1.0)
        async with start(cfg) as rig:
            boot = await crash_boot(rig.store, ["x"], cfg)
            for _ in range(4):
                rig.bus.publish(BootEnded(boot, 4242, "crash", 1, time.monotonic(), True, False, "exit 1"))
            reminder = await rig.until(lambda: [x for x in r.received if x["body"]["kind"] == "still-down"],
                                       "still-down")
            assert reminder[0]["body"]["fields"]["exits"] == 3
            assert r.kinds().count("down") == 1
            held = rig.rows("SELECT COUNT(*) AS n FROM alerts")[0]["n"]
            assert held == 2  # the three repeats made no alert at all: counted into the reminder


async def test_a_failing_notifier_is_retried_with_backoff_until_it_answers(tmp_path: Path) -> None:
    with receiver(fail_first=2) as r:
        cfg = load(tmp_path, [{"kind": "webhook", "url": r.url}], retry_initial_s=0.2, retry_max_s=1.0)
        async with start(cfg) as rig:
            rig.bus.publish(HangDeclared(1, 42, "hang"))
            await rig.until(lambda: r.kinds() == ["hang"], "the third attempt")
            await rig.until(lambda: len(rig.rows("SELECT * FROM deliveries")) == 3, "3 deliveries recorded")
            rows = rig.rows("SELECT attempt, ok, detail, at FROM deliveries ORDER BY id")
            assert [(d["attempt"], d["ok"], d["detail"]) for d in rows] == [(1, 0, "HTTP 500"), (2, 0, "HTTP 500"),
                                                                            (3, 1, "HTTP 200")]
            # Each wait at least its backoff (0.2 s, then 0.4 s); a loaded machine only makes them longer.
            assert rows[1]["at"] - rows[0]["at"] >= 0.19 and rows[2]["at"] - rows[1]["at"] >= 0.39
            await rig.until(lambda: rig.rows("SELECT state FROM alerts WHERE state = 'sent'"), "sent")


async def test_a_notifier_that_gives_up_marks_the_alert_failed(tmp_path: Path) -> None:
    cfg = load(tmp_path, [{"kind": "command", "command": ["/bin/false"]}], retry_initial_s=0.05, retry_attempts=3)
    async with start(cfg) as rig:
        rig.bus.publish(HangDeclared(1, 42, "hang"))
        await rig.until(lambda: rig.rows("SELECT state FROM alerts WHERE state = 'failed'"), "failed")
        assert [d["detail"] for d in rig.rows("SELECT detail FROM deliveries")] == ["exit 1"] * 3


async def test_a_hanging_notifier_holds_up_nothing(tmp_path: Path) -> None:
    rec = Recorder(tmp_path)
    with receiver(hang=True) as r:
        cfg = load(tmp_path, [{"kind": "webhook", "url": r.url, "timeout_s": 1},
                              {"kind": "command", "command": rec.command}], retry_initial_s=0.1)
        async with start(cfg) as rig:
            began = time.monotonic()
            rig.bus.publish(HangDeclared(1, 42, "hang"))
            rig.bus.publish(HangDeclared(2, 43, "hang"))
            assert time.monotonic() - began < 0.05  # publishing only enqueues
            await rig.until(lambda: sorted(rec.kinds()) == ["hang", "hang"], "both alerts at the command", 5.0)
            await rig.until(lambda: len(rig.rows("SELECT * FROM deliveries WHERE notifier = 'webhook'")) >= 2,
                            "the hanging webhook's attempts timed out and were recorded")
            assert {d["detail"] for d in rig.rows("SELECT detail FROM deliveries WHERE notifier = 'webhook'")} \
                == {"timed out after 1 s"}


async def test_ntfy_gets_the_text_with_title_priority_and_tags(tmp_path: Path) -> None:
    with receiver() as r:
        cfg = load(tmp_path, [{"kind": "ntfy", "url_env": "NTFY_URL"}])
        async with start(cfg, {"NTFY_URL": r.url}) as rig:
            rig.bus.publish(HangDeclared(3, 42, "hang"))
            got = await rig.until(lambda: list(r.received), "the ntfy post")
            assert got[0]["body"].startswith("The gateway (pid 42) stopped answering")
            headers = {k.lower(): v for k, v in got[0]["headers"].items()}
            assert (headers["title"], headers["priority"], headers["tags"]) == ("gateway hang declared", "urgent",
                                                                                 "gatewayd,hang")
        assert r.url.encode() not in (cfg.state_dir / "store.sqlite").read_bytes()  # a secret URL stays out


TG_SCRIPT = """import json, os, sys
doc = json.load(sys.stdin)
with open(sys.argv[1], "a") as fh:
    fh.write(json.dumps({"kind": doc["kind"], "token": os.environ.get("TG_TOKEN")}) + "\\n")
print("telegram refused bot token " + os.environ.get("TG_TOKEN", "?"), file=sys.stderr)
sys.exit(1)
"""


async def test_a_command_gets_its_declared_secret_alone_and_what_it_prints_of_it_is_redacted(tmp_path: Path) -> None:
    secret = "tg-bot-7f3a9c0d1e2b4a5c"
    script, out = tmp_path / "tg.py", tmp_path / "tg.jsonl"
    script.write_text(TG_SCRIPT)
    rec = Recorder(tmp_path)
    cfg = load(tmp_path, [{"kind": "command", "name": "tg", "command": [sys.executable, str(script), str(out)],
                           "secret_env": ["TG_TOKEN"]},
                          {"kind": "command", "name": "recorder", "command": rec.command}], retry_initial_s=60.0)
    async with start(cfg, {"TG_TOKEN": secret, "PATH": "/usr/bin:/bin"}) as rig:
        rig.bus.publish(ConflictFound(18789, "pid 1"))
        other = await rig.until(lambda: rec.records(), "the recorder's alert")
        assert "TG_TOKEN" not in other[0]["env"]  # another command never learns it
        got = await rig.until(lambda: out.exists() and out.read_text(), "the telegram script ran")
        assert json.loads(got.splitlines()[0])["token"] == secret  # its own secret, given to it
        failed = await rig.until(lambda: rig.rows("SELECT * FROM deliveries WHERE notifier = 'tg'"), "its failure")
        assert "telegram refused bot token ***" in failed[0]["detail"] and secret not in failed[0]["detail"]
    assert secret.encode() not in (cfg.state_dir / "store.sqlite").read_bytes()


async def sending_alert(store: Store, deliveries: list[tuple[str, int, bool]]) -> None:
    """An alert a dead gatewayd was still delivering: its row 'sending', with these attempts made."""
    def tx(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO alerts(id, at, kind, key, severity, title, body, state)"
                  " VALUES (7, ?, 'down', 'k', 'critical', 'gateway down', 'body', 'sending')", (time.time(),))
        c.executemany("INSERT INTO deliveries(alert_id, notifier, attempt, at, ok, detail, latency_ms)"
                      " VALUES (7, ?, ?, ?, ?, 'x', 1)", [(n, a, time.time(), int(ok)) for n, a, ok in deliveries])
    await store.write(tx)


async def test_a_resumed_alert_goes_only_to_notifiers_with_attempts_left(tmp_path: Path) -> None:
    rec = Recorder(tmp_path)
    with receiver() as r:
        cfg = both(tmp_path, r, rec, retry_attempts=3)
        # the webhook used its 3 attempts, the recorder took it: nothing is sent again
        async with start(cfg, {"PATH": "/usr/bin:/bin"},
                         before=lambda s: sending_alert(s, [("webhook", a, False) for a in (1, 2, 3)]
                                                        + [("recorder", 1, True)])) as rig:
            await rig.until(lambda: rig.rows("SELECT 1 FROM alerts WHERE id = 7 AND state = 'partial'"), "settled")
            assert r.requests == 0 and rec.records() == []
            assert len(rig.rows("SELECT * FROM deliveries WHERE alert_id = 7")) == 4


async def test_a_resumed_alert_with_no_notifier_left_is_not_called_sent(tmp_path: Path) -> None:
    cfg = load(tmp_path, [])
    async with start(cfg, {}, before=lambda s: sending_alert(s, [("webhook", 1, False)])) as rig:
        await rig.until(lambda: rig.rows("SELECT 1 FROM alerts WHERE id = 7 AND state = 'no-notifier'"), "settled")
