"""The pure core: no I/O, time passed in as `now` (monotonic seconds)."""
