"""When a look at the gateway's queue may list texts a model already has: pure, `now` in.

2026.9.6's heartbeat woken by cron or exec work shows the model every text queued at its start and
takes them from the queue only as it finishes (research section 17): after its lifecycle end, and
after the reply went out on a channel where it has one. It emits its `heartbeat` event in the same
step as it takes them, so the first `heartbeat` event after the run's end says the queue no longer
holds them. Until then no look is good. A run already going on when the connection began may be
such a heartbeat whose start went unheard: held too, until its end says what it was.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

# A heartbeat with task continuation has no time limit below 9.6's default agent timeout (48 h):
# only a hold whose run's end went unheard lapses, so it may last that long.
HOLD_MAX_S = 172_800.0
# From a heartbeat's end to its `heartbeat` event: its reply's channel send, seconds at most. A
# path that emits no event (none found in 9.6) holds no longer than this.
ENDED_HOLD_MAX_S = 120.0


@dataclass(frozen=True)
class Hold:
    since_s: float
    session: str
    ended_s: float | None = None  # its end heard: waits for the `heartbeat` event


class HeartbeatHolds:
    """The runs that hold the looks back, by run id (or `session:<key>` for one going on at connect)."""

    def __init__(self) -> None:
        self.holds: dict[str, Hold] = {}

    def going_on_at_connect(self, sessions: list[str], now_s: float) -> None:
        """Main sessions with a run going on when the connection began (read after subscribing, so
        an end after this is heard): any may be a heartbeat holding texts."""
        for key in sessions:
            self.holds.setdefault(f"session:{key.lower()}", Hold(now_s, key.lower()))

    def run_event(self, run: str, session: str, heartbeat: bool, ended: bool, now_s: float) -> bool:
        """A main-session run's event. True where it starts a hold: the look taken before may list
        what the run shows its model (a heartbeat first heard at its end, too)."""
        session = session.lower()
        pending = f"session:{session}"
        if ended and not heartbeat:
            self.holds.pop(run, None)
            self.holds.pop(pending, None)  # what went on at connect was a user's turn
            return False
        if not heartbeat:
            return False
        known = run in self.holds
        held = self.holds.pop(pending, None)
        since = held.since_s if held else self.holds[run].since_s if known else now_s
        self.holds[run] = Hold(since, session, now_s if ended else None)
        return not known and held is None

    def heartbeat_event(self) -> None:
        """The gateway's `heartbeat` event: an ended heartbeat has taken what it showed."""
        self.holds = {r: h for r, h in self.holds.items() if h.ended_s is None}

    def holding(self, now_s: float) -> bool:
        """Does any run hold the looks back now? Lapsed holds are dropped."""
        self.holds = {r: h for r, h in self.holds.items()
                      if now_s - h.since_s < HOLD_MAX_S and (h.ended_s is None or now_s - h.ended_s < ENDED_HOLD_MAX_S)}
        return bool(self.holds)


def shown_base(base: Sequence[str] | None, texts: Sequence[str]) -> tuple[str, ...]:
    """The texts a heartbeat going on may have shown the model, given a look taken after it began:
    every text it showed was queued at its start and stays queued until it finishes, so the first
    look after each hold began lists them all (with some queued since). Kept as a multiset union."""
    extra = Counter(texts) - Counter(base or ())
    added: list[str] = []
    for t in texts:
        if extra[t] > 0:
            extra[t] -= 1
            added.append(t)
    return (*(base or ()), *added)


def maybe_shown(texts: Sequence[str], base: Sequence[str]) -> tuple[int, ...]:
    """The positions of `texts` the base covers, each copy once, oldest first: texts queued after
    the base look was taken were not in the request."""
    left = Counter(base)
    out: list[int] = []
    for i, t in enumerate(texts):
        if left[t] > 0:
            left[t] -= 1
            out.append(i)
    return tuple(out)
