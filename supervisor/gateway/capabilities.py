"""What a gateway version can do, decided in one place; the rest of gatewayd reads these facts
(the recovery planner its `recovery` rules) and never branches on a version itself.

Two behaviours are measured here (../shared/openclaw): 2026.2.26 ("legacy") and 2026.9.6
("current"). A version in between gets the behaviour of the nearest measured version at or below
it, with the feature dates the gateway's changelog gives (HTTP probes, protocol 4 and main-session
recovery since 2026.8.1, SIGUSR2 as the restart signal and the external-supervisor contract in
2026.9.x).
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass, field, replace

from supervisor.core.planner import VersionRules

VersionTuple = tuple[int, int, int]

HTTP_PROBES_SINCE: VersionTuple = (2026, 8, 1)
EXTERNAL_SUPERVISOR_SINCE: VersionTuple = (2026, 9, 0)
MAIN_SESSION_RECOVERY_SINCE: VersionTuple = (2026, 8, 1)
# Where every main-session turn's lifecycle start, heartbeats' included, was measured reaching a passive
# operator connection: 2026.2.x only (docs/research/agents-after-restart.md, section 10). A rule that is
# wrong here delivers an event twice, so no other version has it until measured.
HEARS_EVERY_TURN_START: tuple[VersionTuple, VersionTuple] = ((2026, 2, 0), (2026, 3, 0))
# Where a `sessions.messages.subscribe` connection was measured hearing every turn's start in that
# session, heartbeats' included, before its model request: 2026.9.6 (sections 12 and 13 there), and
# no other release until measured.
SUBSCRIBERS_HEAR_EVERY_TURN_START: tuple[VersionTuple, VersionTuple] = ((2026, 9, 6), (2026, 9, 7))
# Where `status` was measured listing only the default agent's main-session queue, the one every
# RPC-queued event goes to (section 1 there; the gateway drains a queue by its session key): 2026.2.x.
# Wrong, it would re-queue a text another agent's turn had drained, so no other version has it.
LISTS_DEFAULT_MAIN_QUEUE_ONLY: tuple[VersionTuple, VersionTuple] = ((2026, 2, 0), (2026, 3, 0))

# What the gateway does after a restart (DESIGN, correction 1; measured, ../shared/openclaw).
RECOVERY_LEGACY = VersionRules(
    resumes_main_sessions=False,
    settle_max_s=5.0,  # nothing of its own recovery to wait for: ready + 5 s
    oneshot_deadline_after_due_s=0.0,  # it re-runs a one-shot at startup, before it answers ready
    oneshot_min_after_ready_s=60.0,
    own_recovery_visible=False,
    session_rows_date_runs=False,  # a row says only when it was updated
    wake_starts_turns=False,  # its wake names no session, and does nothing with heartbeats off
    history_shows_drained_events=True,  # measured: the drained texts open the turn's user message
)
RECOVERY_CURRENT = VersionRules(
    resumes_main_sessions=True,
    settle_max_s=30.0,  # its repair and resume: measured 5-6.4 s after ready
    oneshot_deadline_after_due_s=60.0,  # after its startupCatchupAtMs (else nextRunAtMs)
    oneshot_min_after_ready_s=180.0,
    own_recovery_visible=True,  # cut runs' marks cleared, interrupted turns resumed
    session_rows_date_runs=True,  # startedAt, endedAt, status of the last run
    wake_starts_turns=True,  # measured with every: "0m" (docs/research/agents-after-restart.md)
)

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
    recovery: VersionRules  # what it does after a restart, which the recovery planner reads
    # sessions.list rows carry hasActiveRun / activeRunIds; without them a turn is known only from
    # `agent` lifecycle events, and an isolated cron run's session only from its job's run
    session_activity_fields: bool
    sessions_list_filters: bool  # sessions.list takes activeOnly and pages
    cron_run_blocks: bool  # cron.run answers only when the run ends (legacy)
    cron_run_mode: str  # cron.run's mode that runs a job now: "if-enabled", or legacy's "force"
    cron_marks_drift: bool  # a running job's runningAtMs moves by a few ms between polls (legacy)
    process_instance_id: bool  # system.info says processInstanceId; cron.run takes expectedProcessInstanceId
    methods: frozenset[str] = field(default_factory=frozenset)  # from hello-ok, once connected

    @property
    def legacy(self) -> bool:
        """The 2026.2.x family, for what only names it (the 2.x jobs file read at start-up)."""
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
        recovery=replace(RECOVERY_CURRENT if v >= MAIN_SESSION_RECOVERY_SINCE else RECOVERY_LEGACY,
                         hears_every_turn_start=HEARS_EVERY_TURN_START[0] <= v < HEARS_EVERY_TURN_START[1],
                         subscribers_hear_every_turn_start=SUBSCRIBERS_HEAR_EVERY_TURN_START[0] <= v
                         < SUBSCRIBERS_HEAR_EVERY_TURN_START[1],
                         lists_default_main_queue_only=LISTS_DEFAULT_MAIN_QUEUE_ONLY[0] <= v
                         < LISTS_DEFAULT_MAIN_QUEUE_ONLY[1]),
        session_activity_fields=current,
        sessions_list_filters=current,
        cron_run_blocks=not current,
        cron_run_mode="if-enabled" if current else "force",
        cron_marks_drift=not current,
        process_instance_id=current,
    )
