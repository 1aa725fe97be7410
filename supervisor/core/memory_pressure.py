"""Memory pressure: when the gateway's process tree has held too much memory for long enough that
gatewayd restarts it safely (drain, restart, recover). Pure: tree RSS samples and `now` (monotonic
seconds) in, a decision out; the shell (`supervisor.memory_watch`) samples, asks and restarts.

- Off when `limit_bytes` is 0 (the default).
- A restart needs the samples over the limit, without a break, for `window_s`: the first sample over
  the limit opens the window, any sample at or under it closes it. A one-off spike (a big tool
  output, a compaction) is not pressure; a leak is.
- Only a ready gateway is judged: a booting one's peak is not pressure, and a restart asked of a
  gateway that cannot drain yet would only cut its boot.
- After a restart, none again for `cooldown_s`, and every boot opens its own window: a gateway that
  comes back over the limit (the limit is below its working set, not a leak) is restarted at most
  once per cool-down, never in a loop.
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


class PressureRule:
    def __init__(self, policy: MemoryPolicy) -> None:
        self.policy = policy
        self.over_since: float | None = None
        self.restarted_at: float | None = None

    def new_boot(self) -> None:
        """A new gateway process: its own window (the cool-down carries over)."""
        self.over_since = None

    def cooling_down(self, now: float) -> bool:
        return self.restarted_at is not None and now - self.restarted_at < self.policy.cooldown_s

    def observe(self, rss_bytes: int, now: float, ready: bool) -> PressureRestart | None:
        p = self.policy
        if not p.enabled or not ready or rss_bytes <= p.limit_bytes:
            self.over_since = None
            return None
        if self.over_since is None:
            self.over_since = now
        over_for = now - self.over_since
        if over_for < p.window_s or self.cooling_down(now):
            return None
        self.restarted_at, self.over_since = now, None
        return PressureRestart(rss_bytes, p.limit_bytes, over_for)
