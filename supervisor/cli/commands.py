"""The `gatewayd` typer app: every command, thin; domain errors become one line and an exit code.

`supervisor.cli.entry` holds `main()`; it imports this module only when a command other than a
plain `gatewayd status` runs, so typer is never loaded for that one (what status and history read
and print is `supervisor.cli.status_report`). `register(app)` adds install, uninstall and doctor to
any typer app (the service tests use it on their own).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

import supervisor.cli.status_report as status_report
from supervisor import __version__, config, service
from supervisor.control import client, paths
from supervisor.control.protocol import ControlError, drain_budget_problem
from supervisor.core.maintenance import parse_duration
from supervisor.errors import ConfigError, GatewaydError
from supervisor.instance import holder_pid

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="gatewayd TOML config file.")]
StateDirOpt = Annotated[str | None, typer.Option("--state-dir", help="gatewayd's state dir (store, logs).")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show what would be written and run; change nothing.")]

RESTART_SLACK_S = 60.0

app = typer.Typer(add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Supervise the OpenClaw gateway: restart it at once, keep its in-flight work.")


def fail(exc: GatewaydError) -> typer.Exit:
    typer.echo(f"gatewayd: {exc}", err=True)
    return typer.Exit(status_report.exit_code(exc))


def check_wait(wait_s: float) -> None:
    """`--wait` must be usable: NaN would never end the wait, inf never give up."""
    problem = drain_budget_problem(wait_s)
    if problem is not None:
        typer.echo(f"gatewayd: --wait {problem}", err=True)
        raise typer.Exit(2)


def load_config(config_file: Path | None, **cli_values: Any) -> config.Config:
    try:
        return config.load(config_file, cli_values)
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
    import asyncio

    from supervisor import logs
    from supervisor.daemon import Daemon

    cfg = load_config(config_file, state_dir=state_dir, **{"gateway.port": port, "gateway.openclaw": openclaw,
                                                             "log_level": log_level})
    logs.setup(cfg.state_dir / "logs", cfg.log_level, cfg.logs.max_bytes, cfg.logs.backups)
    try:
        code = asyncio.run(Daemon(cfg).run())
    except GatewaydError as exc:
        raise fail(exc) from None
    raise typer.Exit(code)


@app.command()
def status(
    config_file: ConfigOpt = None,
    state_dir: StateDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """Show the supervision state; works while the daemon is down (from the store, marked stale).

    Exit codes (for scripts): 0 healthy (running and ready); 1 degraded (starting, backing off, crash
    loop, killing a hung gateway, the store failing, or the daemon busy / not answering); 3 needs a
    human (config error, port conflict); 4 stopped on purpose; 5 the daemon is down without having
    been stopped.

    Example: gatewayd status --json
    """
    raise typer.Exit(status_report.print_status(load_config(config_file, state_dir=state_dir), as_json))


@app.command()
def history(
    config_file: ConfigOpt = None,
    state_dir: StateDirOpt = None,
    since_hours: Annotated[float | None, typer.Option("--since", help="Only boots started in the last N hours.")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
    alerts: Annotated[bool, typer.Option("--alerts", help="Only the alerts, with each notifier's result.")] = False,
    incident: Annotated[int | None, typer.Option("--incident", help="One incident: how the gateway ended, its"
                                                 " last output, what was in flight.")] = None,
) -> None:
    """Each boot of the gateway: how it ended, what it interrupted, and what recovery did about it;
    then the alerts sent (or held back) and what each notifier answered.

    Example: gatewayd history --since 24 --json; gatewayd history --incident 3
    """
    cfg = load_config(config_file, state_dir=state_dir)
    since = time.time() - since_hours * 3600 if since_hours else None
    try:
        if incident is not None:
            found = status_report.read_incident(cfg.state_dir, incident)
            if found is None:
                typer.echo(f"gatewayd: no incident {incident} in {cfg.state_dir / 'store.sqlite'}", err=True)
                raise typer.Exit(1)
            if as_json:
                typer.echo(json.dumps(found, indent=2, default=str))
            else:
                status_report.print_incident(found)
            return
        alert_list = status_report.read_alerts(cfg.state_dir, since)
        boots = [] if alerts else status_report.read_history(cfg.state_dir, since)
    except GatewaydError as exc:
        raise fail(exc) from None
    if as_json:  # without --alerts, the list of boots as before: scripts read it
        typer.echo(json.dumps(alert_list if alerts else boots, indent=2, default=str))
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
    for a in alert_list:
        typer.echo(status_report.alert_line(a))


alert_app = typer.Typer(no_args_is_help=True, help="gatewayd's own alerts (see [[alerts.notify]] in the config).")
app.add_typer(alert_app, name="alert")


@alert_app.command("test")
def alert_test(config_file: ConfigOpt = None, state_dir: StateDirOpt = None) -> None:
    """Send a test alert through every configured notifier, now, and say which worked.

    Exit code 0 when all worked, 1 when one failed, 2 when none is configured.

    Example: gatewayd alert test
    """
    import asyncio
    import socket

    from supervisor.alerter import test_all
    from supervisor.core.alertrules import test_alert

    cfg = load_config(config_file, state_dir=state_dir)
    if not cfg.alerts.notifiers:
        typer.echo("gatewayd: no notifier configured: add [[alerts.notify]] tables to the config", err=True)
        raise typer.Exit(2)
    results = asyncio.run(test_all(cfg.alerts.notifiers, test_alert(socket.gethostname())))
    for n, outcome in results:
        typer.echo(f"{'ok  ' if outcome.ok else 'FAIL'}  {n.name} ({n.kind}): {outcome.detail}"
                   f" in {outcome.latency_ms} ms")
    raise typer.Exit(0 if all(o.ok for _, o in results) else 1)


def control(cfg: config.Config, command: str, args: dict[str, Any] | None = None, timeout_s: float = 10.0) -> Any:
    try:
        return client.call(paths.client_socket_path(cfg.state_dir), command, args, timeout_s)
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
    check_wait(wait_s)
    import subprocess

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
    from supervisor import logs

    logs.private_dir(cfg.state_dir / "logs")
    with open(cfg.state_dir / "logs" / "daemon.out", "ab", opener=logs.private_opener) as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            typer.echo(f"gatewayd: exited at start with code {proc.returncode}; see {cfg.state_dir}/logs/daemon.out",
                       err=True)
            raise typer.Exit(proc.returncode or 1)
        try:
            data = client.call(paths.client_socket_path(cfg.state_dir), "ping",
                               timeout_s=max(0.1, min(2.0, deadline - time.monotonic())))
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
    check_wait(wait_s)
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
    problem = drain_budget_problem(timeout) if timeout is not None else None
    if problem is not None:
        typer.echo(f"gatewayd: --timeout {problem}", err=True)  # NaN would never escalate the drain
        raise typer.Exit(2)
    cfg = load_config(config_file, state_dir=state_dir)
    args: dict[str, Any] = {"safe": safe and not force}
    if timeout is not None:
        args["timeout_s"] = timeout
    before = control(cfg, "status")
    started = control(cfg, "restart", args)
    old_boot, old_pid = started["boot"], (before.get("gateway") or {}).get("pid")
    t0 = time.monotonic()
    # The drain, then the new gateway's boot (it may take up to the boot limit), then some slack:
    # past that the restart is stuck, and saying so beats waiting for ever.
    limit_s = (timeout or cfg.stop_budget_s) + cfg.probes.boot_limit_max_s + RESTART_SLACK_S
    tty = sys.stderr.isatty()
    last = ""
    while True:
        if time.monotonic() - t0 > limit_s:
            if tty:
                typer.echo("", err=True)
            typer.echo(f"gatewayd: the restart did not finish within {limit_s:g}s (drain budget, boot limit and "
                       f"{RESTART_SLACK_S:g}s); see gatewayd status and gatewayd logs", err=True)
            raise typer.Exit(1)
        st = control(cfg, "status", timeout_s=5)
        gw = st.get("gateway") or {}
        if gw.get("boot") not in (None, old_boot) and gw.get("ready"):
            break
        phase = "draining" if gw.get("boot") == old_boot else "starting"
        budget = (timeout or cfg.stop_budget_s) if args["safe"] else 0.0
        line = status_report.drain_progress(phase, st["inflight"], time.monotonic() - t0, budget,
                                            int(time.time() * 1000))
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


@app.command()
def pause(
    config_file: ConfigOpt = None,
    state_dir: StateDirOpt = None,
    for_: Annotated[str | None, typer.Option("--for", help="How long (90s, 30m, 1h30m, 2d); default: until "
                                                           "`gatewayd resume`.")] = None,
) -> None:
    """Pause supervision for maintenance: no restarts, no hang kills, no recovery; alerts muted but a
    "paused" reminder. The gateway keeps running if it is running. Kept across a restart of gatewayd.

    Example: gatewayd pause --for 30m
    """
    args: dict[str, Any] = {}
    if for_ is not None:
        try:
            args["for_s"] = parse_duration(for_)
        except ValueError as exc:
            typer.echo(f"gatewayd: --for {exc}", err=True)
            raise typer.Exit(2) from None
    cfg = load_config(config_file, state_dir=state_dir)
    p = control(cfg, "pause", args)["paused"]
    typer.echo(status_report.pause_line(p))


@app.command()
def resume(config_file: ConfigOpt = None, state_dir: StateDirOpt = None) -> None:
    """End a pause: gatewayd supervises again, starts the gateway if it is down and recovers what was
    interrupted meanwhile.

    Example: gatewayd resume
    """
    cfg = load_config(config_file, state_dir=state_dir)
    resumed = control(cfg, "resume")["resumed"]
    typer.echo("resumed: supervising again" if resumed else "not paused: nothing to resume")


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


def install(config_file: ConfigOpt = None, state_dir: StateDirOpt = None, dry_run: DryRunOpt = False) -> None:
    """Install gatewayd as a service (macOS LaunchAgent, Linux systemd user unit) and start it.

    The gateway's own service (ai.openclaw.gateway, openclaw-gateway.service) is stopped and disabled, so two managers never fight over one gateway; `gatewayd uninstall` restores it. The service runs this installation's `gatewayd run`, with --config and --state-dir as given here.

    Example: gatewayd install --config ~/.config/gatewayd/gatewayd.toml --dry-run
    """  # noqa: E501 - one line per paragraph: typer reflows them
    cfg = load_config(config_file, state_dir=state_dir)
    try:
        platform = service.detect_platform()
        spec = service.build_spec(cfg, config_file)
        runner = service.Runner(dry_run=dry_run, echo=typer.echo, timeout_s=60)
        if dry_run:
            typer.echo("dry run: nothing is written, loaded, stopped or disabled")
        for name in service.secrets_not_carried(os.environ):
            typer.echo(f"warning: {name} is set in this shell; the service never carries secrets: put it in the "
                       "gateway's .env (its state dir) or its config")
        service.module(platform).install(spec, runner, typer.echo)
    except GatewaydError as exc:
        raise fail(exc) from None
    if not dry_run:
        typer.echo("check it with: gatewayd doctor")


def uninstall(config_file: ConfigOpt = None, state_dir: StateDirOpt = None, dry_run: DryRunOpt = False) -> None:
    """Stop and remove gatewayd's service, and restore the gateway's own service as it was.

    Without --config and --state-dir, the ones the installed service runs with are used.

    Example: gatewayd uninstall --dry-run
    """
    try:
        platform = service.detect_platform()
        mod = service.module(platform)
        home = Path.home()
        if config_file is None and state_dir is None:
            flags = service.flags_from_argv(mod.installed_argv(home, os.environ) or [])
            config_file = Path(flags["--config"]) if "--config" in flags else None
            state_dir = flags.get("--state-dir")
        try:
            cfg = config.load(config_file, {"state_dir": state_dir})
        except ConfigError as exc:
            if state_dir is None:
                raise
            # The state dir is all uninstall needs: a config file gone or broken since must not block it.
            typer.echo(f"warning: {exc}; using the defaults")
            cfg = config.load(None, {"state_dir": state_dir}, {k: v for k, v in os.environ.items()
                                                               if not k.startswith("GATEWAYD_")})
        runner = service.Runner(dry_run=dry_run, echo=typer.echo, timeout_s=60)
        if dry_run:
            typer.echo("dry run: nothing is stopped, removed or restored")
        mod.uninstall(cfg.state_dir, home, runner, typer.echo, service.stop_timeout_s(cfg.stop_budget_s))
    except GatewaydError as exc:
        raise fail(exc) from None


def doctor(
    config_file: ConfigOpt = None,
    state_dir: StateDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """Check the openclaw install, token source, port owner, services and store; say what to fix.

    Each line: `ok|warn|fail  <what>: <detail> (<what to do>)`. Exit code 0 unless a check fails.

    Example: gatewayd doctor --json
    """
    import supervisor.cli.doctor as doc

    findings = doc.diagnose(config_file, state_dir)
    if as_json:
        typer.echo(json.dumps(doc.as_json(findings), indent=2))
    else:
        for f in findings:
            typer.echo(f.line())
    raise typer.Exit(1 if any(f.level == doc.FAIL for f in findings) else 0)


def register(app: typer.Typer) -> None:
    app.command()(install)
    app.command()(uninstall)
    app.command()(doctor)


register(app)
