"""`restart --safe` progress names the long runs it is about to cut (issue 15, item 6)."""

from __future__ import annotations

from supervisor.cli.status_report import drain_progress

NOW = 1_796_540_000_000


def test_a_long_run_is_named_with_its_age_and_its_fate() -> None:
    inflight = {"sessions": ["agent:main:main"],
                "runs": [{"job_id": "j1", "name": "email-cleanup", "running_at_ms": NOW - 492_000}]}
    line = drain_progress("draining", inflight, 30.4, 120.0, NOW)
    assert line == ('draining: 2 in flight, 30s; cron "email-cleanup" running 8m12s: cut in 90s if still running,'
                    " then retried after the restart (within its attempts)")


def test_without_runs_or_after_the_drain_it_is_the_count() -> None:
    assert drain_progress("draining", {"sessions": ["s"], "runs": []}, 3, 120, NOW) == "draining: 1 in flight, 3s"
    run = {"job_id": "j1", "name": "x", "running_at_ms": NOW}
    assert drain_progress("starting", {"sessions": [], "runs": [run]}, 9, 120, NOW) == "starting: 1 in flight, 9s"


def test_many_runs_are_counted_and_the_budget_never_goes_negative() -> None:
    runs = [{"job_id": f"j{i}", "name": f"n{i}", "running_at_ms": NOW - 5_000} for i in range(5)]
    line = drain_progress("draining", {"sessions": [], "runs": runs}, 200, 120, NOW)
    assert '"n0" running 5s, "n1" running 5s, "n2" running 5s and 2 more: cut in 0s' in line
