"""The `gatewayd` command line: thin typer commands; domain errors become one line and an exit code.

Exit codes: 0 ok, 1 unhealthy (status), 2 bad config or arguments, 3 another gatewayd runs,
4 the gateway cannot be launched, 5 the store cannot be used.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from supervisor import __version__, cli_service, config, logs, service
from supervisor.control import client
from supervisor.control.protocol import ControlError
from supervisor.control.server import socket_path
from supervisor.errors import ConfigError, GatewaydError, InstanceLocked, LaunchError, StoreError
from supervisor.instance import holder_pid
from supervisor.store.db import open_readonly, row_dicts
from supervisor.store.inflight import read_current
from supervisor.store.journal import read_history as journal_history

app = typer.Typer(add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Supervise the OpenClaw gateway: restart it at once, keep its in-flight work.")

EXIT_CODES: list[tuple[type[GatewaydError], int]] = [
    (ConfigError, 2), (InstanceLocked, 3), (LaunchError, 4), (StoreError, 5), (GatewaydError, 1),
]

STATUS_HEALTHY, STATUS_DEGRADED, STATUS_NEEDS_HUMAN, STATUS_STOPPED, STATUS_DOWN = 0, 1, 3, 4, 5

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="gatewayd TOML config file.")]
StateDirOpt = Annotated[str | None, typer.Option("--state-dir", help="gatewayd's state dir (store, logs).")]


def fail(exc: GatewaydError) -> typer.Exit:
    typer.echo(f"gatewayd: {exc}", err=True)
    code = next(c for t, c in EXIT_CODES if isinstance(exc, t))
    return typer.Exit(code)


def load_config(config_file: Path | None, **cli: Any) -> config.Config:
    try:
        return config.load(config_file, cli)
    except ConfigError as exc:
        raise fail(exc) from None


@app.command()
def run(
    config_file: ConfigOpt = None,
    state_dir: StateDirOpt = None,
    port: Annotated[int | None, typer.Option(help="Gateway port (default: from its config).")] = None,
    openclaw: Annotated[str | None, typer.Option(help="openclaw entry: a name on PATH or a path.")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning or error.")] = None,
) -> None:
    """Run gatewayd in the foreground, supervising the gateway (what launchd and systemd run).

    Example: gatewayd run --state-dir /tmp/gwd --port 18789
    """
    cfg = load_config(config_file, state_dir=state_dir, **{"gateway.port": port, "gateway.openclaw": openclaw,
                                                             "log_level": log_level})
    logs.setup(cfg.state_dir / "logs", cfg.log_level, cfg.logs.max_bytes, cfg.logs.backups)
    from supervisor.daemon import Daemon

    try:
        code = asyncio.run(Daemon(cfg).run())
    except GatewaydError as exc:
        raise fail(exc) from None
    raise typer.Exit(code)


def read_status(state_dir: Path) -> dict[str, Any]:
    path = state_dir / "store.sqlite"
    running = holder_pid(state_dir / "gatewayd.lock")
    out: dict[str, Any] = {"daemon": {"running": running is not None, "pid": running}, "state_dir": str(state_dir)}
    if not path.exists():
        out["supervision"] = {"state": "never-started"}
        return out
    try:
        conn = open_readonly(path)
        try:
            daemon = row_dicts(conn.execute("SELECT * FROM daemon WHERE id = 1"))
            boots = row_dicts(conn.execute("SELECT * FROM boots ORDER BY id DESC LIMIT 1"))
            day = conn.execute("SELECT COUNT(*) FROM boots WHERE started_at > ?", (time.time() - 86400,)).fetchone()[0]
            inflight = read_current(conn)
            recovery = journal_history(conn, 200)
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: {exc}") from exc
    d = daemon[0] if daemon else {}
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
    out["recovery"] = {
        "open": [o for o in recovery if o["state"] == "open"],
        "given_up": [o for o in recovery if o["state"] in ("given-up", "unconfirmed")][:20],
    }
    return out


@app.command()
def status(
    config_file: ConfigOpt = None,
    state_dir: StateDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """Show the supervision state; works while the daemon is down (from the store, marked stale).

    Exit codes (for scripts): 0 healthy (running and ready); 1 degraded (starting, backing off, crash
    loop, killing a hung gateway, or the store failing); 3 needs a human (config error, port
    conflict); 4 stopped on purpose; 5 the daemon is down without having been stopped.

    Example: gatewayd status --json
    """
    cfg = load_config(config_file, state_dir=state_dir)
    try:
        st = read_status(cfg.state_dir)
    except GatewaydError as exc:
        raise fail(exc) from None
    if st["daemon"]["running"]:
        # The daemon's own view: current even when its store cannot be written (full disk, lock).
        with contextlib.suppress(client.DaemonDown, ControlError):
            st["live"] = client.call(socket_path(cfg.state_dir), "status", timeout_s=5)
    live = st.get("live") or {}
    if as_json:
        typer.echo(json.dumps(st, indent=2, default=str))
    else:
        if live.get("store_error"):
            typer.echo(f"store:   FAILING: {live['store_error']}")
        sup = st.get("supervision", {})
        gw = st.get("gateway", {})
        daemon = st["daemon"]
        up = f", up {ago(live['started_at'])}" if live.get("started_at") else ""
        typer.echo(f"daemon:  {'running, pid ' + str(daemon['pid']) + up if daemon['running'] else 'not running'}")
        typer.echo(f"state:   {sup.get('state')}{' (stale)' if sup.get('stale') else ''}"
                   f"{' crash-loop' if sup.get('crash_loop') else ''}")
        if gw:
            alive = gw.get("ready_at") and not gw.get("ended_at")
            gone = "not running, last " if gw.get("ended_at") else ""
            typer.echo(f"gateway: {gone}pid {gw.get('pid')} port {gw.get('port')} version {gw.get('version')}"
                       f"{' ready, up ' + ago(gw['started_at']) if alive else ''}")
            typer.echo(f"boots in the last 24 h: {st.get('boots_24h', 0)}")
            if gw.get("exit_kind"):
                typer.echo(f"last exit: {gw.get('exit_kind')} ({gw.get('detail')})")
        inflight = st.get("inflight", {})
        for s in inflight.get("sessions", []):
            typer.echo(f"session: {s['key']} ({s['state']}, boot {s['boot_id']})")
        for r in inflight.get("runs", []):
            typer.echo(f"cron run: {r['name'] or r['job_id']} started {r['running_at_ms']} ({r['state']})")
    raise typer.Exit(status_code(st))


def ago(ts: float) -> str:
    s = max(0, int(time.time() - ts))
    return f"{s // 86400}d{s % 86400 // 3600}h" if s >= 86400 else f"{s // 3600}h{s % 3600 // 60}m" if s >= 3600 \
        else f"{s // 60}m{s % 60}s"


def status_code(st: dict[str, Any]) -> int:
    live = st.get("live") or {}
    state = live.get("state") or st.get("supervision", {}).get("state")
    if not st["daemon"]["running"]:
        return STATUS_STOPPED if state == "stopped" else STATUS_DOWN
    if state in ("config-error", "conflict"):
        return STATUS_NEEDS_HUMAN
    if state == "running" and not live.get("store_error"):
        return STATUS_HEALTHY
    return STATUS_DEGRADED


def read_history(state_dir: Path, since: float | None) -> list[dict[str, Any]]:
    path = state_dir / "store.sqlite"
    if not path.exists():
        return []
    try:
        conn = open_readonly(path)
        try:
            boots = row_dicts(conn.execute(
                "SELECT id, pid, version, started_at, ready_at, ended_at, exit_code, exit_kind, detail, needs_recovery"
                " FROM boots WHERE started_at >= ? ORDER BY id", (since or 0,)))
            obligations = journal_history(conn, 10_000)
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: {exc}") from exc
    by_boot: dict[int, list[dict[str, Any]]] = {}
    for ob in obligations:
        by_boot.setdefault(ob["boot_id"], []).append(ob)
    for b in boots:
        b["interrupted"] = sorted(by_boot.get(b["id"], []), key=lambda o: o["id"])
    return boots


@app.command()
def history(
    config_file: ConfigOpt = None,
    state_dir: StateDirOpt = None,
    since_hours: Annotated[float | None, typer.Option("--since", help="Only boots started in the last N hours.")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """Each boot of the gateway: how it ended, what it interrupted, and what recovery did about it.

    Example: gatewayd history --since 24 --json
    """
    cfg = load_config(config_file, state_dir=state_dir)
    try:
        boots = read_history(cfg.state_dir, time.time() - since_hours * 3600 if since_hours else None)
    except GatewaydError as exc:
        raise fail(exc) from None
    if as_json:
        typer.echo(json.dumps(boots, indent=2, default=str))
        return
    for b in boots:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(b["started_at"]))
        end = b["exit_kind"] or ("running" if b["ended_at"] is None else "?")
        typer.echo(f"boot {b['id']}  {started}  pid {b['pid']}  {b['version']}  -> {end}"
                   f"{' (' + b['detail'] + ')' if b['detail'] else ''}")
        for ob in b["interrupted"]:
            what = ob["name"] or ob["ref"]
            done = f" - {ob['resolution']}" if ob["resolution"] else ""
            typer.echo(f"    {ob['kind']:7} {what}: {ob['state']}{done}")


def control(cfg: config.Config, command: str, args: dict[str, Any] | None = None, timeout_s: float = 10.0) -> Any:
    try:
        return client.call(socket_path(cfg.state_dir), command, args, timeout_s)
    except client.DaemonDown as exc:
        typer.echo(f"gatewayd: {exc}", err=True)
        raise typer.Exit(7) from None
    except ControlError as exc:
        typer.echo(f"gatewayd: {exc}", err=True)
        raise typer.Exit(int(exc.code) or 1) from None


@app.command()
def start(config_file: ConfigOpt = None, state_dir: StateDirOpt = None,
          wait_s: Annotated[float, typer.Option("--wait", help="Seconds to wait for the daemon to answer.")] = 30.0
          ) -> None:
    """Start gatewayd: through launchd/systemd when installed, else in the background.

    Example: gatewayd start --state-dir ~/gwd
    """
    cfg = load_config(config_file, state_dir=state_dir)
    platform = service.detect_platform()
    if service.installed_definition(platform) is not None:
        try:
            service.start(platform, service.Runner())
        except GatewaydError as exc:
            raise fail(exc) from None
        typer.echo(f"gatewayd started through {platform}")
        return
    if holder_pid(cfg.state_dir / "gatewayd.lock") is not None:
        typer.echo("gatewayd: already running", err=True)
        raise typer.Exit(3)
    argv = [sys.executable, "-P", "-m", "supervisor", "run"]  # -P: no ./supervisor (supervisord's) shadows ours
    if config_file:
        argv += ["--config", str(config_file)]
    if state_dir:
        argv += ["--state-dir", state_dir]
    (cfg.state_dir / "logs").mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(cfg.state_dir / "logs" / "daemon.out", "ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            typer.echo(f"gatewayd: exited at start with code {proc.returncode}; see {cfg.state_dir}/logs/daemon.out",
                       err=True)
            raise typer.Exit(proc.returncode or 1)
        try:
            data = client.call(socket_path(cfg.state_dir), "ping", timeout_s=2)
            typer.echo(f"gatewayd started (pid {data['pid']})")
            return
        except (client.DaemonDown, ControlError):
            time.sleep(0.2)
    typer.echo(f"gatewayd: no answer within {wait_s:g}s; see {cfg.state_dir}/logs/daemon.out", err=True)
    raise typer.Exit(1)


@app.command()
def stop(config_file: ConfigOpt = None, state_dir: StateDirOpt = None,
         wait_s: Annotated[float, typer.Option("--wait", help="Seconds to wait for gatewayd to exit.")] = 400.0
         ) -> None:
    """Stop gatewayd and the gateway (it drains first). It stays stopped until `gatewayd start`,
    also when installed as a service (the service is stopped and disabled, not just signalled).

    Example: gatewayd stop
    """
    cfg = load_config(config_file, state_dir=state_dir)
    platform = service.detect_platform()
    if service.installed_definition(platform) is not None:
        try:
            service.stop(platform, service.Runner(), timeout_s=service.stop_timeout_s(cfg.stop_budget_s))
        except GatewaydError as exc:
            raise fail(exc) from None
        typer.echo(f"gatewayd stopped through {platform} (stays stopped until `gatewayd start`)")
        return
    pid = control(cfg, "ping")["pid"]
    control(cfg, "stop")
    deadline = time.monotonic() + wait_s
    while holder_pid(cfg.state_dir / "gatewayd.lock") is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    if holder_pid(cfg.state_dir / "gatewayd.lock") is not None:
        typer.echo(f"gatewayd: still stopping after {wait_s:g}s (pid {pid})", err=True)
        raise typer.Exit(1)
    typer.echo(f"gatewayd stopped (pid {pid})")


@app.command()
def restart(
    config_file: ConfigOpt = None,
    state_dir: StateDirOpt = None,
    safe: Annotated[bool, typer.Option("--safe/--now", help="Drain in-flight work first (default), or restart "
                                                           "at once and recover what was interrupted.")] = True,
    timeout: Annotated[float | None, typer.Option(help="Drain budget in seconds (default: the stop budget).")]
    = None,
    force: Annotated[bool, typer.Option(help="Same as --now.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON on stdout.")] = False,
) -> None:
    """Restart the gateway: snapshot, drain within a budget, restart, recover; shows progress.

    Example: gatewayd restart --safe --timeout 120
    """
    cfg = load_config(config_file, state_dir=state_dir)
    args: dict[str, Any] = {"safe": safe and not force}
    if timeout is not None:
        if timeout <= 0:
            typer.echo("gatewayd: --timeout must be > 0", err=True)
            raise typer.Exit(2)
        args["timeout_s"] = timeout
    before = control(cfg, "status")
    started = control(cfg, "restart", args)
    old_boot, old_pid = started["boot"], (before.get("gateway") or {}).get("pid")
    t0 = time.monotonic()
    tty = sys.stderr.isatty()
    last = ""
    while True:
        st = control(cfg, "status", timeout_s=5)
        gw = st.get("gateway") or {}
        if gw.get("boot") not in (None, old_boot) and gw.get("ready"):
            break
        n = len(st["inflight"]["sessions"]) + len(st["inflight"]["runs"])
        phase = "draining" if gw.get("boot") == old_boot else "starting"
        line = f"{phase}: {n} in flight, {time.monotonic() - t0:.0f}s"
        if line != last:
            typer.echo(("\r" if tty else "") + line + ("" if tty else "\n"), err=True, nl=False)
            last = line
        time.sleep(0.5)
    if tty:
        typer.echo("", err=True)
    outcome = {"old_pid": old_pid, "new_pid": gw.get("pid"), "old_boot": old_boot, "new_boot": gw.get("boot"),
               "seconds": round(time.monotonic() - t0, 1), "safe": args["safe"],
               "was_in_flight": before["inflight"]}
    if as_json:
        typer.echo(json.dumps(outcome))
    else:
        typer.echo(f"restarted: pid {old_pid} -> {gw.get('pid')} in {outcome['seconds']}s "
                   f"({'drained' if args['safe'] else 'immediate'}); recovery: gatewayd history")


@app.command("logs")
def show_logs(
    config_file: ConfigOpt = None,
    state_dir: StateDirOpt = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")] = False,
    lines: Annotated[int, typer.Option("-n", help="How many lines to show first.")] = 50,
    gateway: Annotated[bool, typer.Option("--gateway", help="The gateway's own output instead of gatewayd's.")]
    = False,
) -> None:
    """Show gatewayd's log (JSON lines) or, with --gateway, the gateway's output.

    Example: gatewayd logs -f -n 20
    """
    cfg = load_config(config_file, state_dir=state_dir)
    path = cfg.state_dir / "logs" / ("gateway.log" if gateway else "gatewayd.log")
    if not path.exists():
        typer.echo(f"gatewayd: no log yet at {path}", err=True)
        raise typer.Exit(1)
    with open(path, "rb") as fh:
        tail = fh.read().splitlines()[-lines:] if lines > 0 else []
        for raw in tail:
            typer.echo(raw.decode(errors="replace"))
        while follow:
            chunk = fh.readline()
            if chunk:
                typer.echo(chunk.decode(errors="replace").rstrip("\n"))
            else:
                time.sleep(0.3)


@app.command()
def version() -> None:
    """Print gatewayd's version."""
    typer.echo(__version__)


cli_service.register(app)


def main() -> None:
    app(prog_name="gatewayd")


if __name__ == "__main__":
    main()
