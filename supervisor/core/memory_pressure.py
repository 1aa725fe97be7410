"""Memory pressure: when the gateway's process tree has held too much memory for long enough that
gatewayd restarts it safely (drain, restart, recover). Pure: tree RSS samples and `now` (monotonic
seconds) in, a decision out; the shell (`supervisor.memory_watch`) samples, asks and restarts.

- Off when `limit_bytes` is 0 (the default).
- A restart needs the samples over the limit, without a break, for `window_s`: the first sample over
  the limit opens the window, any sample at or under it closes it. A one-off spike (a big tool
  output, a compaction) is not pressure; a leak is.
- Only a ready gateway is judged: a booting one's peak is not pressure, and a restart asked of a
  gateway that cannot drain yet would only cut its boot.
- After a restart, none again for `cooldown_s` (a gatewayd started again takes the last one's time
  from the store: `restore`), and every boot opens its own window.
- A gateway that comes back from a pressure restart and is over the limit for a whole window
  without once being under it was not leaking: the limit is below its working set. It is said once
  (`LimitBelowWorkingSet`) and never restarted for it again until a sample under the limit (found
  by review: it was restarted once per cool-down, for ever).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MemoryPolicy:
    limit_bytes: int = 0  # 0: off
    window_s: float = 60.0
    cooldown_s: float = 1800.0

    @property
    def enabled(self) -> bool:
        return self.limit_bytes > 0


@dataclass(frozen=True)
class PressureRestart:
    """Restart now: the tree has been over the limit this long."""

    rss_bytes: int
    limit_bytes: int
    over_for_s: float


@dataclass(frozen=True)
class LimitBelowWorkingSet:
    """No restart: the gateway came back from one over the limit and stayed there."""

    rss_bytes: int
    limit_bytes: int


class PressureRule:
    def __init__(self, policy: MemoryPolicy) -> None:
        self.policy = policy
        self.over_since: float | None = None
        self.restarted_at: float | None = None
        self.relieved = True  # a ready sample under the limit since the last pressure restart
        self.futile = False

    def restore(self, restarted_ago_s: float, now: float) -> None:
        """The last pressure restart, as the store recorded it (by an earlier gatewayd)."""
        self.restarted_at = now - max(0.0, restarted_ago_s)

    def new_boot(self) -> None:
        """A new gateway process: its own window (the cool-down carries over)."""
        self.over_since = None

    def cooling_down(self, now: float) -> bool:
        return self.restarted_at is not None and now - self.restarted_at < self.policy.cooldown_s

    def observe(self, rss_bytes: int, now: float, ready: bool) -> PressureRestart | LimitBelowWorkingSet | None:
        p = self.policy
        if not p.enabled or not ready:
            self.over_since = None
            return None
        if rss_bytes <= p.limit_bytes:
            self.over_since = None
            self.relieved, self.futile = True, False
            return None
        if self.over_since is None:
            self.over_since = now
        over_for = now - self.over_since
        if over_for < p.window_s or self.futile:
            return None
        if not self.relieved:
            self.futile = True
            return LimitBelowWorkingSet(rss_bytes, p.limit_bytes)
        if self.cooling_down(now):
            return None
        self.restarted_at, self.over_since, self.relieved = now, None, False
        return PressureRestart(rss_bytes, p.limit_bytes, over_for)
