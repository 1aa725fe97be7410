"""The recovery policy: how often, how soon and how spread an interrupted cron run is retried, and
the notice texts. Its own small module so that loading the config does not load the planner."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class RecoveryPolicy:
    max_attempts: int = 3  # the interrupted run is attempt 1
    backoff_initial_s: float = 30.0
    backoff_max_s: float = 900.0
    jitter: float = 0.2
    coalesce_window_s: float = 120.0  # 0: never adopt a regular run as the retry
    retries_per_minute: int = 10  # spread: a restart never fires every job at once
    recheck_s: float = 15.0  # a run in progress: look again after this
    hold_after_crash_loop_s: float = 120.0
    unanswered_grace_s: float = 120.0  # an action sent by a gatewayd that died: look this long for its effect
    notice: str = "[System] Gateway restarted ({reason}, {time}). Previous session context may be incomplete."
    lost_request: str = (" A request you were working on when it restarted was interrupted and lost: check your"
                         " work and tell the user what happened.")
    # Per job, by id or by name: its own max_attempts, backoff_initial_s, backoff_max_s,
    # coalesce_window_s (max_attempts = 1: never re-run it, for a job that must not run twice).
    jobs: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


JOB_KEYS: dict[str, type] = {"max_attempts": int, "backoff_initial_s": float, "backoff_max_s": float,
                             "coalesce_window_s": float}


def policy_for(policy: RecoveryPolicy, job_id: str, name: str | None) -> RecoveryPolicy:
    """The job's own retry policy: the entry for its id, else for its name, over the global one."""
    entry = policy.jobs.get(job_id) or (policy.jobs.get(name) if name else None)
    if not entry:
        return policy
    return replace(policy, **{k: JOB_KEYS[k](v) for k, v in entry.items() if k in JOB_KEYS})
