"""Probe state machine: turns probe answers, process progress and announcements into verdicts.

    booting --started--> ready --shutdown announced--> draining --answers again--> ready
       |                   |                              |
   boot limit          N timeouts with no progress     grace over and still silent
       v                   v                              v
   BOOT_TIMEOUT           HANG                           HANG

A refused connection is not a timeout: a gateway restarting in place or draining closes its
listener on purpose. Only timeouts while the process makes no progress (CPU time flat) count
toward a hang, and a hard limit catches an event loop spinning at full CPU. A wall-clock jump
(the machine slept) resets every counter: nothing is counted across a sleep.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from supervisor.core.model import ProbeOutcome

# The longest restart a `shutdown` announcement is believed for (the gateway's own drain is ~315 s).
MAX_RESTART_EXPECTED_S = 600.0


class Phase(StrEnum):
    BOOTING = "booting"
    READY = "ready"
    DRAINING = "draining"  # announced shutdown/restart: silence is expected for a while


class Verdict(StrEnum):
    NONE = "none"
    BECAME_READY = "became-ready"
    HANG = "hang"
    BOOT_TIMEOUT = "boot-timeout"


@dataclass(frozen=True)
class ProbeSettings:
    interval_s: float = 2.0
    timeout_s: float = 2.0
    hang_timeouts: int = 3  # consecutive timeouts with no progress
    hang_hard_limit_s: float = 60.0  # unresponsive this long even with CPU progress
    refused_limit_s: float = 60.0  # listener gone this long while the process lives, unannounced
    boot_limit_s: float = 180.0  # never killed for slowness before this
    boot_limit_max_s: float = 600.0  # boot progress extends the limit up to this
    boot_progress_window_s: float = 30.0
    drain_grace_s: float = 30.0  # silence allowed after a shutdown announcement (at least)


@dataclass
class ProbeMachine:
    settings: ProbeSettings
    phase: Phase = Phase.BOOTING
    booted_at: float = 0.0
    last_progress: float = 0.0
    timeouts: int = 0
    stalled: int = 0  # consecutive timeouts during which the process made no progress
    unresponsive_since: float | None = None
    refused_since: float | None = None
    grace_until: float = 0.0

    @classmethod
    def spawned(cls, settings: ProbeSettings, now: float) -> ProbeMachine:
        return cls(settings=settings, booted_at=now, last_progress=now)

    def observe(self, outcome: ProbeOutcome, now: float, progress: bool) -> Verdict:
        """One probe answer. `progress`: the process group used CPU or wrote output since the last probe."""
        s = self.settings
        if progress:
            self.last_progress = now
        if self.phase is Phase.BOOTING:
            if outcome is ProbeOutcome.OK:
                self.phase = Phase.READY
                self._reset_failures()
                return Verdict.BECAME_READY
            limit = self.booted_at + s.boot_limit_s
            if now - self.last_progress <= s.boot_progress_window_s:
                limit = max(limit, min(self.booted_at + s.boot_limit_max_s, now + s.boot_progress_window_s))
            return Verdict.BOOT_TIMEOUT if now >= limit else Verdict.NONE

        if outcome in (ProbeOutcome.OK, ProbeOutcome.STARTING):
            # STARTING after ready means it restarted in place; it answers, so it is alive.
            if self.phase is Phase.DRAINING and outcome is ProbeOutcome.OK:
                self.phase = Phase.READY
            self._reset_failures()
            return Verdict.NONE
        if outcome is ProbeOutcome.DRAINING:
            self.phase = Phase.DRAINING
            self.grace_until = max(self.grace_until, now + s.drain_grace_s)
            self._reset_failures()
            return Verdict.NONE
        in_grace = now < self.grace_until
        if outcome is ProbeOutcome.REFUSED:
            self.timeouts = 0
            self.stalled = 0
            self.unresponsive_since = None
            if in_grace:
                self.refused_since = None
                return Verdict.NONE
            if self.refused_since is None:
                self.refused_since = now
            return Verdict.HANG if now - self.refused_since >= s.refused_limit_s else Verdict.NONE
        # TIMEOUT or BAD: the gateway is there but does not answer properly.
        self.refused_since = None
        if self.unresponsive_since is None:
            self.unresponsive_since = now
        self.timeouts += 1
        # Progress measured across the first timeout may predate the hang (CPU used just before a
        # SIGSTOP): only an unbroken run of timeouts without progress counts.
        self.stalled = 0 if progress else self.stalled + 1
        if in_grace:
            return Verdict.NONE
        if self.stalled >= s.hang_timeouts:
            return Verdict.HANG
        if now - self.unresponsive_since >= s.hang_hard_limit_s:
            return Verdict.HANG
        return Verdict.NONE

    def shutdown_announced(self, now: float, restart_expected_ms: int | None) -> None:
        """A `shutdown` event or a close 1012: the gateway is stopping or restarting on purpose."""
        grace = self.settings.drain_grace_s
        if restart_expected_ms is not None:
            # Bounded: a gateway announcing an absurd restart time must not buy itself immunity.
            expected_s = min(max(restart_expected_ms, 0) / 1000.0, MAX_RESTART_EXPECTED_S)
            grace = max(grace, expected_s + self.settings.boot_limit_s)
        self.phase = Phase.DRAINING if self.phase is not Phase.BOOTING else Phase.BOOTING
        self.grace_until = max(self.grace_until, now + grace)
        self._reset_failures()

    def slept(self, now: float) -> None:
        """The wall clock jumped ahead of the monotonic clock: forget failures, give a grace."""
        self._reset_failures()
        self.last_progress = now
        if self.phase is Phase.BOOTING:
            self.booted_at = now
        self.grace_until = max(self.grace_until, now + self.settings.interval_s * self.settings.hang_timeouts)

    def _reset_failures(self) -> None:
        self.timeouts = 0
        self.stalled = 0
        self.unresponsive_since = None
        self.refused_since = None
