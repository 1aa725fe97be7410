"""The clock seam: every time reading of the daemon's runtime path goes through a `Clock`, so a
test can move the wall clock against the monotonic one (a machine sleep) without sleeping.

`monotonic` measures intervals (probe periods, backoff, healthy periods); `wall` is the time of
day (what the store and `status` show, and what jumps when the machine sleeps).
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wall(self) -> float: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()
