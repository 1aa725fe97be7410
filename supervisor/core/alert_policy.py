"""The alert policy: reminder spacing, hourly limit and delivery retries. Its own small module so
that loading the config does not load the alert rules."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AlertPolicy:
    reminder_interval_s: float = 3600.0
    recovery_wait_s: float = 600.0
    recovered_after_s: float = 20.0
    max_per_hour: int = 30
    retry_initial_s: float = 2.0
    retry_max_s: float = 300.0
    retry_attempts: int = 6
    healthy_after_s: float = 300.0  # RestartPolicy's: ready this long ends a crash loop


def retry_delay(policy: AlertPolicy, attempt: int) -> float | None:
    """The wait before attempt `attempt + 1` of one delivery (attempt counts from 1), or None:
    given up."""
    if attempt >= policy.retry_attempts:
        return None
    return min(policy.retry_max_s, policy.retry_initial_s * 2.0 ** (attempt - 1))
