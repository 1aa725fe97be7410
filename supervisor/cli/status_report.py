"""What `gatewayd status` and `gatewayd history` read and print, and the exit codes of the CLI.

Shared by the status fast path (`supervisor.cli`) and the typer commands (`supervisor.cli.commands`),
so neither imports the other for it. Light on purpose: no typer, asyncio or structlog at load.

Exit codes: 0 ok, 1 unhealthy (status), 2 bad config or arguments, 3 another gatewayd runs,
4 the gateway cannot be launched, 5 the store cannot be used.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from supervisor.errors import ConfigError, GatewaydError, InstanceLocked, LaunchError, StoreError, StoreTooNew

if TYPE_CHECKING:
    from supervisor import config

EXIT_CODES: list[tuple[type[GatewaydError], int]] = [
    (ConfigError, 2), (InstanceLocked, 3), (LaunchError, 4), (StoreError, 5), (GatewaydError, 1),
]

STATUS_HEALTHY, STATUS_DEGRADED, STATUS_NEEDS_HUMAN, STATUS_STOPPED, STATUS_DOWN = 0, 1, 3, 4, 5

_ANSI = re.compile(r"\033\[[;?0-9]*[a-zA-Z]")  # what click.echo strips when not on a terminal


def echo(message: str, err: bool = False) -> None:
    """A line on stdout (or stderr), as typer.echo writes it."""
    stream = sys.stderr if err else sys.stdout
    if not stream.isatty():
        message = _ANSI.sub("", message)
    stream.write(message + "\n")
    stream.flush()


def exit_code(exc: GatewaydError) -> int:
    return next(c for t, c in EXIT_CODES if isinstance(exc, t))


def read_status(state_dir: Path) -> dict[str, Any]:
    from supervisor.instance import holder_pid
    from supervisor.store.views import status_rows

    path = state_dir / "store.sqlite"
    running = holder_pid(state_dir / "gatewayd.lock")
    out: dict[str, Any] = {"daemon": {"running": running is not None, "pid": running}, "state_dir": str(state_dir)}
    if not path.exists():
        out["supervision"] = {"state": "never-started"}
        return out
    try:
        rows = status_rows(path)
    except StoreTooNew as exc:
        # Not read as if it were ours; the daemon (supervising without tracking) still tells its
        # own state, and this says why there is no recorded one.
        out["supervision"] = {"state": "unknown", "stale": running is None}
        out["store_error"] = f"{exc}: run the newer gatewayd, or move the store aside to start a fresh one"
        return out
    d, day, inflight, recovery = rows["daemon"], rows["boots_24h"], rows["inflight"], rows["recovery"]
    boots = [rows["last_boot"]] if rows["last_boot"] else []
    out["supervision"] = {
        "state": d.get("state", "unknown"),
        "crash_loop": bool(d.get("crash_loop")),
        "consecutive_crashes": d.get("consecutive_crashes", 0),
        "message": d.get("message"),
        "updated_at": d.get("updated_at"),
        "stale": running is None,  # the daemon is down: this is the last state it recorded
    }
    if boots:
        b = boots[0]
        out["gateway"] = {k: b[k] for k in ("pid", "port", "version", "started_at", "ready_at", "ended_at",
                                            "exit_code", "exit_kind", "detail", "gateway_boot_id")}
        out["gateway"]["ready"] = bool(b["ready_at"] and not b["ended_at"] and running is not None)
    out["boots_24h"] = day
    out["inflight"] = inflight
    out["told"] = rows["told"]
    out["recovery"] = {
        "open": [o for o in recovery if o["state"] == "open"],
        "given_up": [o for o in recovery if o["state"] in ("given-up", "unconfirmed")][:20],
    }
    return out


def live_status(st: dict[str, Any], state_dir: Path) -> None:
    """Add the running daemon's own view (current even when its store cannot be written: full disk,
    lock). A daemon that holds its lock but does not answer (stopped, swamped: a full accept
    backlog) is marked `answering: false` with the reason, which makes `status` exit 1 (degraded)."""
    from supervisor.control import client, paths
    from supervisor.control.protocol import ControlError

    try:
        st["live"] = client.call(paths.client_socket_path(state_dir), "status", timeout_s=5)
    except client.DaemonDown:
        pass  # it is exiting (socket gone, lock not yet released): the store's view stands
    except ControlError as exc:
        st["daemon"]["answering"] = False
        st["daemon"]["error"] = str(exc)


def status(config_file: Path | None, state_dir: str | None, as_json: bool) -> int:
    """`gatewayd status`: print the state; return the exit code (see `status_code`)."""
    from supervisor import config

    try:
        cfg = config.load(config_file, {"state_dir": state_dir})
    except ConfigError as exc:
        echo(f"gatewayd: {exc}", err=True)
        return exit_code(exc)
    return print_status(cfg, as_json)


def print_status(cfg: config.Config, as_json: bool) -> int:
    try:
        st = read_status(cfg.state_dir)
    except GatewaydError as exc:
        echo(f"gatewayd: {exc}", err=True)
        return exit_code(exc)
    if st["daemon"]["running"]:
        live_status(st, cfg.state_dir)
    live = st.get("live") or {}
    if as_json:
        # The daemon's figures (the metrics endpoint's, as plain JSON); null while it is not running.
        st["metrics"] = live.pop("metrics", None)
        echo(json.dumps(st, indent=2, default=str))
    else:
        if live.get("store_error") or st.get("store_error"):
            echo(f"store:   FAILING: {live.get('store_error') or st.get('store_error')}")
        for f in live.get("faults") or []:
            echo(f"helper:  {f['helper']} FAILING ({f['failures']} in a row, retrying): {f['error']}")
        sup = st.get("supervision", {})
        gw = st.get("gateway", {})
        daemon = st["daemon"]
        up = f", up {ago(live['started_at'])}" if live.get("started_at") else ""
        echo(f"daemon:  {'running, pid ' + str(daemon['pid']) + up if daemon['running'] else 'not running'}")
        if daemon.get("error"):
            echo(f"control: {daemon['error']}")
        echo(f"state:   {sup.get('state')}{' (stale)' if sup.get('stale') else ''}"
             f"{' crash-loop' if sup.get('crash_loop') else ''}")
        if live.get("paused"):
            echo(pause_line(live["paused"]))
        for entry, at in sorted((live.get("maintenance_next") or {}).items()):
            if at is not None:
                echo(f"next:    {entry} at {time.strftime('%Y-%m-%d %H:%M %Z', time.localtime(at))}")
        if gw:
            alive = gw.get("ready_at") and not gw.get("ended_at")
            gone = "not running, last " if gw.get("ended_at") else ""
            echo(f"gateway: {gone}pid {gw.get('pid')} port {gw.get('port')} version {gw.get('version')}"
                 f"{' ready, up ' + ago(gw['started_at']) if alive else ''}")
            echo(f"boots in the last 24 h: {st.get('boots_24h', 0)}")
            if gw.get("exit_kind"):
                echo(f"last exit: {gw.get('exit_kind')} ({gw.get('detail')})")
        inflight = st.get("inflight", {})
        for s in inflight.get("sessions", []):
            echo(f"session: {s['key']} ({s['state']}, boot {s['boot_id']})")
        for r in inflight.get("runs", []):
            echo(f"cron run: {r['name'] or r['job_id']} started {r['running_at_ms']} ({r['state']})")
        for line in told_lines(st.get("told") or {}):
            echo(line)
    return status_code(st)


def told_lines(told: dict[str, Any]) -> list[str]:
    """What the agents were told after the latest restart that owed them anything: `woken:  after
    boot 3: kit done (wake), main covered` (an agent with nothing active is left out) and what
    became of the system events its gateway held, per state (answered: queued again; held or
    unknown: set aside, never sent twice; delivered: its model had them)."""
    if not told:
        return []
    lines = []
    wakes = [w for w in told.get("wakes") or [] if w["state"] != "nothing"]
    if wakes:
        each = ", ".join(f"{w['agent_id']} {w['state']}" + (f" ({w['method']})" if w.get("method") else "")
                         for w in wakes)
        lines.append(f"woken:   after boot {told['boot']}: {each}")
    requeued = told.get("requeued") or {}
    if requeued:
        total = sum(requeued.values())
        noun = "event" if total == 1 else "events"
        states = ", ".join(f"{state} {n}" for state, n in requeued.items())
        lines.append(f"requeued: after boot {told['boot']}: {total} system {noun} it held ({states})")
    return lines


def pause_line(p: dict[str, Any]) -> str:
    until = f"until {time.strftime('%Y-%m-%d %H:%M', time.localtime(p['until']))}" if p.get("until") is not None \
        else "until `gatewayd resume`"
    return f"paused:  by {p.get('by')}, {until}: no restarts, no hang kills, no recovery"


def ago(ts: float) -> str:
    s = max(0, int(time.time() - ts))
    return f"{s // 86400}d{s % 86400 // 3600}h" if s >= 86400 else f"{s // 3600}h{s % 3600 // 60}m" if s >= 3600 \
        else f"{s // 60}m{s % 60}s"


def status_code(st: dict[str, Any]) -> int:
    live = st.get("live") or {}
    state = live.get("state") or st.get("supervision", {}).get("state")
    if not st["daemon"]["running"]:
        return STATUS_STOPPED if state == "stopped" else STATUS_DOWN
    if st["daemon"].get("answering") is False:
        return STATUS_DEGRADED  # busy / not answering: its live state is unknown
    if state in ("config-error", "conflict"):
        return STATUS_NEEDS_HUMAN
    if state == "running" and not live.get("store_error") and not live.get("faults"):
        return STATUS_HEALTHY  # a failing helper (tracking, recovery) is degraded, however ready
    return STATUS_DEGRADED


def read_history(state_dir: Path, since: float | None) -> list[dict[str, Any]]:
    from supervisor.store.views import history_rows

    path = state_dir / "store.sqlite"
    if not path.exists():
        return []
    boots, obligations = history_rows(path, since)
    by_boot: dict[int, list[dict[str, Any]]] = {}
    for ob in obligations:
        by_boot.setdefault(ob["boot_id"], []).append(ob)
    for b in boots:
        b["interrupted"] = sorted(by_boot.get(b["id"], []), key=lambda o: o["id"])
    return boots


def drain_progress(phase: str, inflight: dict[str, Any], elapsed_s: float, budget_s: float, now_ms: int) -> str:
    """One line of `restart --safe` progress. While draining it names the cron runs still running and
    says what happens to them at the budget: the gateway is stopped and each is retried once
    after the restart (a long job, a 9-minute clean-up, is cut rather than waited for)."""
    sessions, runs = inflight.get("sessions", []), inflight.get("runs", [])
    line = f"{phase}: {len(sessions) + len(runs)} in flight, {elapsed_s:.0f}s"
    if phase != "draining" or not runs:
        return line
    named = ", ".join(f'"{r.get("name") or r.get("job_id")}" running {_age(now_ms - int(r["running_at_ms"]))}'
                      for r in runs[:3]) + (f" and {len(runs) - 3} more" if len(runs) > 3 else "")
    left = max(0.0, budget_s - elapsed_s)
    return (f"{line}; cron {named}: cut in {left:.0f}s if still running, then retried after the restart"
            " (within its attempts)")


def _age(ms: int) -> str:
    s = max(0, ms) // 1000
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def read_alerts(state_dir: Path, since: float | None) -> list[dict[str, Any]]:
    from supervisor.store.views import alert_rows

    path = state_dir / "store.sqlite"
    return alert_rows(path, since) if path.exists() else []


def read_incident(state_dir: Path, incident: int) -> dict[str, Any] | None:
    from supervisor.store.views import incident_row

    path = state_dir / "store.sqlite"
    return incident_row(path, incident) if path.exists() else None


def alert_line(a: dict[str, Any]) -> str:
    """One alert and how each notifier fared: `webhook ok`, `ntfy failed x3 (HTTP 500)`."""
    at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(a["at"]))
    by: dict[str, list[dict[str, Any]]] = {}
    for d in a["deliveries"]:
        by.setdefault(d["notifier"], []).append(d)
    fates = []
    for name, tries in by.items():
        last = tries[-1]
        fate = "ok" if last["ok"] else f"failed ({last['detail']})"
        fates.append(f"{name} {fate}{f' after {len(tries)} attempts' if len(tries) > 1 else ''}")
    state = f"held: {a['held_because']}" if a["state"] == "held" else a["state"]
    incident = f" [incident {a['incident_id']}]" if a.get("incident_id") else ""
    return f"alert {a['id']}  {at}  {a['kind']}: {a['title']}{incident} -> {state}" + \
        (f" ({', '.join(fates)})" if fates else "")


def print_incident(inc: dict[str, Any]) -> None:
    at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(inc["at"]))
    echo(f"incident {inc['id']}  {at}  boot {inc['boot_id']}: {inc['exit_kind']} ({inc['detail']})")
    how = f"signal {inc['signal']}" if inc.get("signal") else f"exit code {inc['exit_code']}"
    echo(f"exit: {how}")
    if inc.get("uptime_s") is not None:
        echo(f"uptime: {inc['uptime_s']:.1f} s")
    if inc.get("tree_rss_bytes") is not None:
        echo(f"tree RSS before: {inc['tree_rss_bytes'] / (1 << 20):.1f} MiB"
             f" (sampled {max(0.0, inc['at'] - inc['rss_sampled_at']):.1f} s before)")
    inflight = inc.get("inflight") or {}
    for key in inflight.get("sessions", []):
        echo(f"in flight: session {key}")
    for r in inflight.get("runs", []):
        echo(f"in flight: cron run {r.get('name') or r['job_id']} (started {r['running_at_ms']})")
    for a in inc.get("alerts", []):
        echo(f"alert {a['id']}: {a['kind']} ({a['state']})")
    echo(f"last {len(inc['last_lines'])} lines of the gateway's output:")
    for line in inc["last_lines"]:
        echo(f"  {line}")
