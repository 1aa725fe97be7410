"""`gatewayd install | uninstall | doctor`: typer commands, added to the main app by `register(app)`.

`supervisor.cli` is imported inside the commands (not at the top) because it imports this module.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from supervisor import config, service
from supervisor.errors import ConfigError, GatewaydError

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="gatewayd TOML config file.")]
StateDirOpt = Annotated[str | None, typer.Option("--state-dir", help="gatewayd's state dir (store, logs).")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show what would be written and run; change nothing.")]


def install(config_file: ConfigOpt = None, state_dir: StateDirOpt = None, dry_run: DryRunOpt = False) -> None:
    """Install gatewayd as a service (macOS LaunchAgent, Linux systemd user unit) and start it.

    The gateway's own service (ai.openclaw.gateway, openclaw-gateway.service) is stopped and disabled, so two managers never fight over one gateway; `gatewayd uninstall` restores it. The service runs this installation's `gatewayd run`, with --config and --state-dir as given here.

    Example: gatewayd install --config ~/.config/gatewayd/gatewayd.toml --dry-run
    """  # noqa: E501 - one line per paragraph: typer reflows them
    from supervisor import cli

    cfg = cli.load_config(config_file, state_dir=state_dir)
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
        raise cli.fail(exc) from None
    if not dry_run:
        typer.echo("check it with: gatewayd doctor")


def uninstall(config_file: ConfigOpt = None, state_dir: StateDirOpt = None, dry_run: DryRunOpt = False) -> None:
    """Stop and remove gatewayd's service, and restore the gateway's own service as it was.

    Without --config and --state-dir, the ones the installed service runs with are used.

    Example: gatewayd uninstall --dry-run
    """
    from supervisor import cli

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
        raise cli.fail(exc) from None


def doctor(
    config_file: ConfigOpt = None,
    state_dir: StateDirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """Check the openclaw install, token source, port owner, services and store; say what to fix.

    Each line: `ok|warn|fail  <what>: <detail> (<what to do>)`. Exit code 0 unless a check fails.

    Example: gatewayd doctor --json
    """
    from supervisor.service import doctor as doc

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
