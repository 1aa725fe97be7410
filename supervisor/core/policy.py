"""Restart policy and exit classification: pure functions of facts and `now`.

The shell gathers the facts of an exit (its code or signal, what gatewayd asked for, what the
gateway announced, who holds the port) and asks `classify`; it reports crashes and readiness to
`RestartTracker` and sleeps for the delay it gets back. Randomness (jitter) comes in as an
argument, so every case is a table test.
"""

from __future__ import annotations

import signal
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

from supervisor.core.model import ExitKind, Intent

EX_CONFIG = 78
EX_UPDATER_PARKED = 79


@dataclass(frozen=True)
class ExitFacts:
    intent: Intent
    returncode: int | None  # None: the child was not ours to reap (adopted, or vanished)
    restart_expected: bool = False  # a `shutdown` event carrying `restartExpectedMs` was seen
    adopted: bool = False  # the gateway was adopted and its exit seen live (pidfd/kqueue), not reaped
    port_held_by_other: bool = False  # after the exit, a process not ours owns the port
    killed_by_us: bool = False  # gatewayd sent SIGKILL (hang, boot timeout, stop budget)
    oom_counters: str = ""  # the kernel's OOM-kill counters that moved during the boot ("vmstat", "cgroup")


@dataclass(frozen=True)
class Classification:
    kind: ExitKind
    counts_as_crash: bool
    needs_recovery: bool  # the boot ended without a clean drain: in-flight work may be lost
    detail: str


def describe_returncode(returncode: int | None) -> str:
    if returncode is None:
        return "unknown exit"
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit {returncode}"


def classify(facts: ExitFacts) -> Classification:
    how = describe_returncode(facts.returncode)
    if facts.intent is Intent.STOP:
        # None: an adopted gateway (not our child) whose code we cannot read; it exited on our
        # SIGTERM without needing a kill, which is what a finished drain looks like.
        clean = facts.returncode in (0, None) and not facts.killed_by_us
        kind = ExitKind.CLEAN_STOP if clean else ExitKind.STOP_UNCLEAN
        return Classification(kind, False, not clean, f"operator stop, {how}")
    if facts.intent is Intent.RESTART:
        return Classification(ExitKind.PLANNED_RESTART, False, True, f"planned restart, {how}")
    if facts.intent is Intent.HANG_KILL:
        return Classification(ExitKind.HANG_KILL, True, True, f"hang declared, {how}")
    if facts.intent is Intent.BOOT_TIMEOUT:
        return Classification(ExitKind.BOOT_TIMEOUT, True, True, f"never became ready, {how}")
    if facts.returncode is None and facts.adopted:
        # Watched, at once, but not gatewayd's child: only its parent could read how it ended.
        return Classification(ExitKind.CRASH, True, True,
                              "adopted gateway exited unasked (seen at once; its exit code or signal cannot be "
                              "read: it is not gatewayd's child)")
    if facts.returncode is None:
        return Classification(ExitKind.VANISHED, True, True, "died while gatewayd was not watching")
    if facts.returncode == 0:
        # An exit 0 nobody asked for is the gateway's own restart (restart handoff, a config
        # change it applies, an agent's restart request): restart at once, no crash count.
        why = "restart announced" if facts.restart_expected else "exit 0 unasked"
        return Classification(ExitKind.RESTART_REQUESTED, False, True, why)
    if facts.returncode == EX_CONFIG:
        if facts.port_held_by_other:
            return Classification(ExitKind.CONFLICT, False, True, "exit 78, port held by another process")
        return Classification(ExitKind.CONFIG_ERROR, False, True, "exit 78, config or database refused")
    if facts.returncode == -signal.SIGKILL and facts.oom_counters and not facts.killed_by_us:
        return Classification(ExitKind.OOM_KILL, True, True,
                              f"signal SIGKILL: the kernel's OOM killer (oom_kill moved: {facts.oom_counters})")
    if facts.returncode == EX_UPDATER_PARKED:
        return Classification(ExitKind.UPDATER_PARKED, True, True, "exit 79, parked by the updater")
    return Classification(ExitKind.CRASH, True, True, how)


class NextStep(StrEnum):
    RESPAWN = "respawn"  # after `delay`
    WAIT_CONFIG_CHANGE = "wait-config-change"  # then retry once
    WAIT_PORT_FREE = "wait-port-free"  # conflict: re-check every `delay`, alerted
    STOP = "stop"  # the daemon is stopping anyway


@dataclass(frozen=True)
class RestartPolicy:
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    backoff_multiplier: float = 2.0
    jitter: float = 0.2  # +-20 % of the delay
    crash_loop_crashes: int = 5
    crash_loop_window_s: float = 600.0
    crash_loop_delay_s: float = 60.0  # slow, steady retries while in a crash loop
    healthy_after_s: float = 300.0  # ready this long: crash counter and crash loop reset
    conflict_retry_s: float = 30.0


@dataclass(frozen=True)
class RestartDecision:
    step: NextStep
    delay_s: float
    crash_loop: bool
    consecutive_crashes: int


@dataclass
class RestartTracker:
    """Crash history of one supervised gateway. Feed it readiness and exits; it answers delays."""

    policy: RestartPolicy = field(default_factory=RestartPolicy)
    consecutive: int = 0
    crash_times: deque[float] = field(default_factory=deque)
    crash_loop: bool = False
    ready_since: float | None = None

    def on_ready(self, now: float) -> None:
        self.ready_since = now

    def healthy(self, now: float) -> bool:
        return self.ready_since is not None and now - self.ready_since >= self.policy.healthy_after_s

    def refresh(self, now: float) -> None:
        """A long enough healthy run forgets past crashes (call it at any time, e.g. on status)."""
        if self.healthy(now):
            self.consecutive = 0
            self.crash_times.clear()
            self.crash_loop = False

    def on_exit(self, c: Classification, now: float, rand: float) -> RestartDecision:
        self.refresh(now)
        was_ready = self.ready_since is not None
        self.ready_since = None
        p = self.policy
        if c.kind in (ExitKind.CLEAN_STOP, ExitKind.STOP_UNCLEAN):
            return RestartDecision(NextStep.STOP, 0.0, self.crash_loop, self.consecutive)
        if c.kind is ExitKind.CONFIG_ERROR:
            return RestartDecision(NextStep.WAIT_CONFIG_CHANGE, 0.0, self.crash_loop, self.consecutive)
        if c.kind is ExitKind.CONFLICT:
            return RestartDecision(NextStep.WAIT_PORT_FREE, p.conflict_retry_s, self.crash_loop, self.consecutive)
        # A requested restart (exit 0 unasked) is the gateway's own business only once it was ready;
        # one before readiness is a boot that keeps failing: back off, or it spawns in a hot loop.
        requested_too_early = c.kind is ExitKind.RESTART_REQUESTED and not was_ready
        if not c.counts_as_crash and not requested_too_early:
            return RestartDecision(NextStep.RESPAWN, 0.0, self.crash_loop, self.consecutive)
        self.consecutive += 1
        self.crash_times.append(now)
        while self.crash_times and now - self.crash_times[0] > p.crash_loop_window_s:
            self.crash_times.popleft()
        if len(self.crash_times) >= p.crash_loop_crashes:
            self.crash_loop = True
        if self.consecutive == 1 and not self.crash_loop:
            delay = 0.0  # the first crash restarts at once
        else:
            steps = max(0, self.consecutive - 2)
            delay = min(p.backoff_max_s, p.backoff_initial_s * p.backoff_multiplier**steps)
            if self.crash_loop:
                delay = max(delay, p.crash_loop_delay_s)
            delay = with_jitter(delay, p.jitter, rand)
        return RestartDecision(NextStep.RESPAWN, delay, self.crash_loop, self.consecutive)


def with_jitter(delay: float, jitter: float, rand: float) -> float:
    """`rand` in [0, 1) maps to a factor in [1 - jitter, 1 + jitter)."""
    return max(0.0, delay * (1.0 + jitter * (2.0 * rand - 1.0)))
