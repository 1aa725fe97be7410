"""gatewayd as a service: a macOS LaunchAgent (`launchd`) or a systemd user unit (`systemd`).

`install` renders the definition from its template in `launchd/`, validates it, switches the
gateway's own service off (two managers must never fight over one gateway) and loads gatewayd's.
What it changed about the gateway's own service is written to `<state_dir>/service-state.json`
*before* it changes it, so `uninstall` (or a failed install's rollback) can put it back.

    ServiceError (GatewaydError)   the service manager refused, is missing, or a definition is invalid

The platform is `sys.platform`'s, or GATEWAYD_SERVICE_PLATFORM=launchd|systemd (tests, and people
who know better). Everything that talks to launchctl/systemctl goes through a `Runner`: queries
always run, changes are only printed under `--dry-run`.

The shared parts live in `service/common.py` (the backends import them from there, so the
package and its backends do not import each other); this module re-exports them and dispatches
to the backend of a platform.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from supervisor.config import home_dir
from supervisor.service.common import (
    CARRIED_OPENCLAW as CARRIED_OPENCLAW,
)
from supervisor.service.common import (
    CARRIED_PREFIX as CARRIED_PREFIX,
)
from supervisor.service.common import (
    GATEWAY_SERVICE_OWN_PREFIXES as GATEWAY_SERVICE_OWN_PREFIXES,
)
from supervisor.service.common import (
    GATEWAY_SERVICE_OWN_VARS as GATEWAY_SERVICE_OWN_VARS,
)
from supervisor.service.common import (
    LAUNCHD as LAUNCHD,
)
from supervisor.service.common import (
    LOCK_FILE as LOCK_FILE,
)
from supervisor.service.common import (
    NOFILE_LIMIT as NOFILE_LIMIT,
)
from supervisor.service.common import (
    NOT_CARRIED as NOT_CARRIED,
)
from supervisor.service.common import (
    PLATFORM_ENV as PLATFORM_ENV,
)
from supervisor.service.common import (
    PLATFORMS as PLATFORMS,
)
from supervisor.service.common import (
    RECORD_FILE as RECORD_FILE,
)
from supervisor.service.common import (
    SECRET_VARS as SECRET_VARS,
)
from supervisor.service.common import (
    STOP_MARGIN_S as STOP_MARGIN_S,
)
from supervisor.service.common import (
    SYSTEMD as SYSTEMD,
)
from supervisor.service.common import (
    TEMPLATES as TEMPLATES,
)
from supervisor.service.common import (
    Echo as Echo,
)
from supervisor.service.common import (
    Manager as Manager,
)
from supervisor.service.common import (
    Result as Result,
)
from supervisor.service.common import (
    Runner as Runner,
)
from supervisor.service.common import (
    ServiceError as ServiceError,
)
from supervisor.service.common import (
    ServiceSpec as ServiceSpec,
)
from supervisor.service.common import (
    ServiceState as ServiceState,
)
from supervisor.service.common import (
    build_spec as build_spec,
)
from supervisor.service.common import (
    check_writable as check_writable,
)
from supervisor.service.common import (
    detect_platform as detect_platform,
)
from supervisor.service.common import (
    ensure_state_dirs as ensure_state_dirs,
)
from supervisor.service.common import (
    flags_from_argv as flags_from_argv,
)
from supervisor.service.common import (
    foreign_variables as foreign_variables,
)
from supervisor.service.common import (
    new_record as new_record,
)
from supervisor.service.common import (
    read_env_names as read_env_names,
)
from supervisor.service.common import (
    read_record as read_record,
)
from supervisor.service.common import (
    refuse_if_running_outside as refuse_if_running_outside,
)
from supervisor.service.common import (
    remove_record as remove_record,
)
from supervisor.service.common import (
    run_argv as run_argv,
)
from supervisor.service.common import (
    secrets_not_carried as secrets_not_carried,
)
from supervisor.service.common import (
    service_environment as service_environment,
)
from supervisor.service.common import (
    stop_timeout_s as stop_timeout_s,
)
from supervisor.service.common import (
    template as template,
)
from supervisor.service.common import (
    wait_for_exit as wait_for_exit,
)
from supervisor.service.common import (
    write_atomic as write_atomic,
)
from supervisor.service.common import (
    write_record as write_record,
)


def module(platform: str) -> Manager:
    if platform == LAUNCHD:
        from supervisor.service import launchd

        return launchd
    from supervisor.service import systemd

    return systemd


def installed_definition(platform: str, home: Path | None = None, environ: Mapping[str, str] | None = None
                         ) -> Path | None:
    """gatewayd's installed plist or unit, or None (for `start`/`stop`: through the manager when installed)."""
    path: Path = module(platform).definition_path(home or home_dir(environ), os.environ if environ is None else environ)
    return path if path.exists() else None


def start(platform: str, runner: Runner, home: Path | None = None) -> None:
    """Start the installed service (and re-enable it: `stop` persists across logins)."""
    module(platform).start(runner, home or home_dir())


def stop(platform: str, runner: Runner, home: Path | None = None, timeout_s: float | None = None) -> None:
    """Stop the installed service and keep it stopped (disabled) until `start`. `timeout_s`: how long
    the manager may take (gatewayd drains its gateway first): the stop budget + 30 s."""
    module(platform).stop(runner, home or home_dir(), timeout_s)
