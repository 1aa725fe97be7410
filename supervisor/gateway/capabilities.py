"""What a gateway version can do, decided in one place; the rest of gatewayd asks this module.

Two behaviours are measured here (../shared/openclaw): 2026.2.26 ("legacy") and 2026.9.6
("current"). A version in between gets the behaviour of the nearest measured version at or below
it, with the feature dates the gateway's changelog gives (HTTP probes and protocol 4 since
2026.8.1, SIGUSR2 as the restart signal and the external-supervisor contract in 2026.9.x).
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass, field, replace

VersionTuple = tuple[int, int, int]

HTTP_PROBES_SINCE: VersionTuple = (2026, 8, 1)
EXTERNAL_SUPERVISOR_SINCE: VersionTuple = (2026, 9, 0)
MAIN_SESSION_RECOVERY_SINCE: VersionTuple = (2026, 8, 1)

_VERSION_RE = re.compile(r"(\d{4})\.(\d{1,2})\.(\d{1,3})")


def parse_version(text: str) -> VersionTuple | None:
    m = _VERSION_RE.search(text)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


@dataclass(frozen=True)
class Capabilities:
    version: str
    protocol: int  # WebSocket RPC protocol: 4 current, 3 legacy
    http_probes: bool  # /startupz and /healthz answer JSON; legacy answers HTML 200 everywhere
    restart_signal: signal.Signals  # the gateway's in-place restart signal
    external_supervisor: bool  # OPENCLAW_SUPERVISOR_MODE=external and restart-handoff exist
    resumes_main_sessions: bool  # resumes an interrupted main-session turn by itself
    session_activity_fields: bool  # sessions.list rows carry hasActiveRun / activeRunIds
    cron_run_blocks: bool  # cron.run answers only when the run ends (legacy)
    methods: frozenset[str] = field(default_factory=frozenset)  # from hello-ok, once connected

    @property
    def legacy(self) -> bool:
        return not self.http_probes

    def with_methods(self, methods: frozenset[str]) -> Capabilities:
        return replace(self, methods=methods)

    def has_method(self, name: str) -> bool:
        return not self.methods or name in self.methods


def for_version(version: str) -> Capabilities:
    v = parse_version(version) or (0, 0, 0)
    current = v >= HTTP_PROBES_SINCE
    return Capabilities(
        version=version,
        protocol=4 if current else 3,
        http_probes=current,
        restart_signal=signal.SIGUSR2 if v >= EXTERNAL_SUPERVISOR_SINCE else signal.SIGUSR1,
        external_supervisor=v >= EXTERNAL_SUPERVISOR_SINCE,
        resumes_main_sessions=v >= MAIN_SESSION_RECOVERY_SINCE,
        session_activity_fields=current,
        cron_run_blocks=not current,
    )
