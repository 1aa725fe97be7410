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
# From a heartbeat's end to its `heartbeat` event: its reply's channel send, with the channel's own
# retries. A path that emits no event (none found in 9.6) holds no longer than this. A hold only
# marks what the first look after it began listed, so a long one costs little.
ENDED_HOLD_MAX_S = 3_600.0
# The reasons a `heartbeat` event gives for a wake skipped before any run (9.6's heartbeat runner
# and wake stage): no run finished there, so it releases nothing.
NOT_RUN = frozenset({"disabled", "alerts-disabled", "flood", "min-spacing", "not-due", "quiet-hours",
                     "requests-in-flight", "cron-in-progress", "no-pending-event", "empty-heartbeat-file",
                     "preempted", "agent-runner-cancelled"})


@dataclass(frozen=True)
class Hold:
    since_s: float
    session: str
    ended_s: float | None = None  # its end heard: waits for the `heartbeat` event
    lapse_s: float = HOLD_MAX_S


class HeartbeatHolds:
    """The runs that hold the looks back, by run id (or `session:<key>` for one going on at connect,
    `carried` for what an earlier connection to the same gateway held)."""

    def __init__(self) -> None:
        self.holds: dict[str, Hold] = {}
        self.releases = 0  # how many times holds were released: a look whose answer spans one is taken again

    def going_on_at_connect(self, sessions: list[str], now_s: float, lapse_s: float = HOLD_MAX_S) -> None:
        """Main sessions with a run going on when the connection began (read after subscribing, so
        an end after this is heard): any may be a heartbeat holding texts."""
        for key in sessions:
            self.holds.setdefault(f"session:{key.lower()}", Hold(now_s, key.lower(), lapse_s=lapse_s))

    def carried(self, now_s: float) -> None:
        """An earlier connection's last look marked texts: a heartbeat may not have finished yet (a
        reconnect during its reply's channel send). Held as one ended, to the next `heartbeat` event."""
        self.holds.setdefault("carried", Hold(now_s, "*", ended_s=now_s))

    def run_event(self, run: str, session: str, heartbeat: bool, start: bool, ended: bool, now_s: float) -> bool:
        """A main-session run's event. True where it begins a hold: the look taken before may list
        what the run shows its model (a heartbeat first heard at its end, too), and the first look
        after adds to what the holds cover."""
        session = session.lower()
        pending = f"session:{session}"
        if not heartbeat:
            # One run at a time per session: what went on there at connect is a user's turn, which
            # took the queue at its start (9.6 marks every frame of a heartbeat's, measured).
            self.holds.pop(pending, None)
            if ended:
                self.holds.pop(run, None)
            return False
        if start:  # one run at a time per session: whatever went on there has ended
            self.holds.pop(pending, None)
            self.holds[run] = Hold(now_s, session)
            return True
        known = run in self.holds
        held = self.holds.pop(pending, None)
        since = held.since_s if held else self.holds[run].since_s if known else now_s
        self.holds[run] = Hold(since, session, now_s if ended else None)
        return not known and held is None

    def heartbeat_event(self, status: object, reason: object) -> None:
        """The gateway's `heartbeat` event: an ended heartbeat has taken what it showed, unless the
        event is of a wake skipped before any run."""
        if status == "skipped" and reason in NOT_RUN:
            return
        kept = {r: h for r, h in self.holds.items() if h.ended_s is None}
        if len(kept) != len(self.holds):
            self.holds, self.releases = kept, self.releases + 1

    def holding(self, now_s: float) -> bool:
        """Does any run hold the looks back now? Lapsed holds are dropped."""
        kept = {r: h for r, h in self.holds.items()
                if now_s - h.since_s < h.lapse_s and (h.ended_s is None or now_s - h.ended_s < ENDED_HOLD_MAX_S)}
        if len(kept) != len(self.holds):
            self.holds, self.releases = kept, self.releases + 1
        return bool(self.holds)


def shown_base(base: Sequence[str] | None, texts: Sequence[str]) -> tuple[str, ...]:
    """The texts a heartbeat going on may have shown the model, given a look taken after it began:
    every text it showed was queued at its start and stays queued until it finishes, so the first
    look after each hold began lists them all (with some queued since). Kept as a multiset union:
    the base, and what of `texts` it does not cover."""
    covered = set(maybe_shown(texts, base or ()))
    return (*(base or ()), *(t for i, t in enumerate(texts) if i not in covered))


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
