"""A `supervisor.clock.Clock` a test moves by hand: `mono` and `wall_s` together for time passing,
`wall_s` alone for a machine sleep."""

from __future__ import annotations


class FakeClock:
    def __init__(self, mono: float = 1000.0, wall_s: float = 1_700_000_000.0) -> None:
        self.mono = mono
        self.wall_s = wall_s

    def monotonic(self) -> float:
        return self.mono

    def wall(self) -> float:
        return self.wall_s
