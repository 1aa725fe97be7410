"""The chaos benchmark's judge: from the fake model's request log (the witness) and the kill times,
what was interrupted, what was lost, what was done twice. Pure: no I/O, tested in
tests/unit/test_chaos_judge.py, so a zero it prints means something.

A model request belongs to a cron item when its new input (the user messages after the last
assistant one: the prompt, and 2026.9.x's internal context after it) carries the job's mark, and to a
session turn when its text carries the session's tag (every turn the benchmark sends carries it, so
it is in the transcript of every later request of that session, the gateway's resume, gatewayd's
notice and any heartbeat turn a wake would start included). An item no request belongs to is
*unobserved* (reported: it never reached the model, so nothing can be said of it).

A request is *interrupted* by the first gateway kill (kill -9 or SIGSTOP, a freeze is an
interruption from the moment it starts) after it began, when its answer had not fully left the
model `slack` seconds before that kill (the gateway records a finished run within milliseconds of
the answer, but not in zero time); within the slack it is *ambiguous*: either outcome is right. A
request logged less than 50 ms after a kill was sent before it (no new gateway asks that soon).

Cron items, per interruption, over the window up to the item's next interruption:
- a re-run is a start that is not a regular one (the first start of an hourly or one-shot item;
  for one-minute items, `regular` says so from the gateway's run log, or cannot tell: None);
- lost: no start at all in the window within `horizon` of the kill (a regular start counts:
  adopted as the retry), unless the interrupted start was the policy's last attempt (a re-run of a
  re-run ... `max_attempts` deep): then it is *given up*, as the policy says;
- doubled: two or more re-runs in one window; a re-run after a regular start that was within the
  coalescing window before it (gatewayd should have adopted that run); a re-run where nothing was
  interrupted.
Session turns: each interrupted turn needs exactly one later request in its session (the gateway's
own resume or gatewayd's notice turn; *notified* when it carries either text): none is lost, two
are doubled; one where nothing was interrupted is doubled too.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

ONE_SHOT, HOURLY_TIMER, HOURLY_MANUAL, MINUTE = "oneshot", "hourly-timer", "hourly-manual", "minute"


@dataclass(frozen=True)
class Request:
    n: int
    ts: float
    done_ts: float | None  # None: the answer never fully left (the caller was gone, or still running)
    last_user: str  # the request's new input: the user messages after the last assistant one
    text: str  # the whole conversation


@dataclass(frozen=True)
class CronItem:
    job_id: str
    mark: str
    kind: str  # ONE_SHOT, HOURLY_TIMER, HOURLY_MANUAL or MINUTE


@dataclass(frozen=True)
class TurnItem:
    agent: str
    mark: str  # this turn's own mark
    tag: str  # the session's tag, in every turn of that session


@dataclass
class Verdict:
    interrupted_runs: int = 0
    ambiguous_runs: int = 0
    lost: int = 0
    doubled: int = 0
    adopted: int = 0  # a regular run stood for the retry
    given_up: int = 0  # the interrupted run was the policy's last attempt: nothing more is owed
    unobserved: int = 0  # items that never reached the model
    reruns: int = 0
    interrupted_sessions: int = 0
    ambiguous_sessions: int = 0
    notified: int = 0  # interrupted turns whose follow-up carried the gateway's resume or gatewayd's notice
    woken: int = 0  # ... exactly one
    resumed_by_gateway: int = 0
    noticed_by_gatewayd: int = 0
    findings: list[str] = field(default_factory=list)

    @property
    def notified_pct(self) -> float:
        return 100.0 if not self.interrupted_sessions else round(100.0 * self.notified / self.interrupted_sessions, 1)

    @property
    def woken_pct(self) -> float:
        return 100.0 if not self.interrupted_sessions else round(100.0 * self.woken / self.interrupted_sessions, 1)


Regular = Callable[[CronItem, Request], bool | None]

# 2026.9.x's own resume: "[System] ... interrupted by a gateway restart", or (seen on the real 9.6
# after a freeze) the interrupted prompt carried into the next turn as a queued message.
GATEWAY_RESUME = ("interrupted by a gateway restart", "Queued user message from a previous active turn")
GATEWAYD_NOTICE = "Gateway restarted"
AGENT_WAKE = "[gatewayd] The gateway restarted"  # core/wake_plan.py's text
FLUSH = "FLUSH"  # chaos.py's last turn, which hands over what is still queued
QUEUED_EVENT = "EVENT "  # chaos.py's queued system events: "EVENT <mark>"


HEARTBEAT_ASK = "If nothing needs attention, reply"  # both versions' heartbeat prompt


def side_turn(r: Request) -> bool:
    """A wake, a flush, or the gateway's resume of a heartbeat turn that was cut before its model
    call: a wake whose text it drained (a 9.x resume replays the prompt, not what it drained), so
    it carries no turn's mark and no wake text (fake chaos seed 5171). Or a heartbeat of the
    gateway's own that hands over queued events and is no resume or notice (2026.9.6 ran one as its
    resume of a cut turn ended with the re-queued events waiting, gatewayd having sent no wake: real
    chaos seed 7394): their delivery, judged with the events. Any other heartbeat stays judged: an
    extra wake turn on top of the gateway's own resume is a double."""
    if AGENT_WAKE in r.last_user or FLUSH in r.last_user:
        return True
    if HEARTBEAT_ASK in r.last_user and QUEUED_EVENT in r.last_user and GATEWAYD_NOTICE not in r.last_user \
            and not any(m in r.last_user for m in GATEWAY_RESUME):
        return True
    return GATEWAY_RESUME[1] in r.last_user and HEARTBEAT_ASK in r.last_user


def interruption(req: Request, kills: Sequence[float], slack: float) -> tuple[str, float]:
    """("interrupted" | "ambiguous" | "completed" | "running", the kill that decided it)."""
    i = bisect.bisect_right(kills, req.ts)
    if i == len(kills):
        return ("running" if req.done_ts is None else "completed"), 0.0
    kill = kills[i]
    if req.done_ts is None or req.done_ts > kill:
        return "interrupted", kill
    if req.done_ts > kill - slack:
        return "ambiguous", kill
    return "completed", kill


SENT_BEFORE_KILL_S = 0.05


def _sent_before_kill(req: Request, kills: Sequence[float]) -> Request:
    """A request logged less than 50 ms after a kill was sent before it: the kill's time is noted
    once os.kill returns and the model logs a request once it has read it (found in a fake run: a
    resume logged 14 ms after the kill that cut it). No new gateway asks anything that soon: the
    fake one, the fastest, boots in 0.1 s after its spawn, and 2026.2.x re-runs missed jobs before
    it is ready (a fake run showed one 0.45 s after a kill, so the answer's slack is too wide)."""
    i = bisect.bisect_right(kills, req.ts) - 1
    if i >= 0 and req.ts - kills[i] < SENT_BEFORE_KILL_S:
        return replace(req, ts=kills[i] - 1e-6)
    return req


def judge(requests: Sequence[Request], cron_items: Sequence[CronItem], turns: Sequence[TurnItem],
          gateway_kills: Sequence[float], regular: Regular, slack: float = 0.5, *,
          coalesce_s: float = 120.0, horizon_s: float = float("inf"), max_attempts: int = 3) -> Verdict:
    kills = sorted(gateway_kills)
    # An agent's wake names the jobs it lists (so their marks), and a flush drains the queue: neither
    # is a run or a turn of the work judged here (chaos.py judges them on their own).
    reqs = sorted((_sent_before_kill(r, kills) for r in requests if not side_turn(r)), key=lambda r: r.ts)
    v = Verdict()
    for item in cron_items:
        _judge_cron(item, [r for r in reqs if item.mark in r.last_user], kills, regular, slack, coalesce_s,
                    horizon_s, max_attempts, v)
    for tag in sorted({t.tag for t in turns}):
        _judge_session(tag, [t for t in turns if t.tag == tag], reqs, kills, slack, v)
    return v


def _is_regular(item: CronItem, req: Request, first: Request, regular: Regular) -> bool | None:
    if item.kind == MINUTE:
        return regular(item, req)
    return req is first


def _judge_cron(item: CronItem, starts: list[Request], kills: Sequence[float], regular: Regular, slack: float,
                coalesce_s: float, horizon_s: float, max_attempts: int, v: Verdict) -> None:
    if not starts:
        v.unobserved += 1
        return
    first = starts[0]
    cuts: list[tuple[float, bool, int]] = []  # (kill, certain, attempt of the run it cut)
    attempt = 0
    for req in starts:
        # A re-run right after a cut is the next attempt of the same work; anything else starts anew.
        after_cut = bool(cuts) and req.ts > cuts[-1][0] and _is_regular(item, req, first, regular) is False
        attempt = attempt + 1 if after_cut else 1
        state, kill = interruption(req, kills, slack)
        if state in ("interrupted", "ambiguous") and (not cuts or cuts[-1][0] != kill):
            cuts.append((kill, state == "interrupted", attempt))
    v.interrupted_runs += sum(1 for _, certain, _ in cuts if certain)
    v.ambiguous_runs += sum(1 for _, certain, _ in cuts if not certain)
    for i, (kill, certain, cut_attempt) in enumerate(cuts):
        end = cuts[i + 1][0] if i + 1 < len(cuts) else float("inf")
        window = [r for r in starts if kill < r.ts <= end]
        kinds = [_is_regular(item, r, first, regular) for r in window]
        reruns = sum(1 for k in kinds if k is False)
        on_top = [r for r, k in zip(window, kinds, strict=True) if k is False and any(
            k2 is True and r.ts - coalesce_s <= r2.ts < r.ts for r2, k2 in zip(window, kinds, strict=True))]
        v.reruns += reruns
        if certain and not any(r.ts <= kill + horizon_s for r in window) and cut_attempt >= max_attempts:
            v.given_up += 1
        elif certain and not any(r.ts <= kill + horizon_s for r in window):
            v.lost += 1
            v.findings.append(f"lost: {item.kind} {item.job_id} ({item.mark}) interrupted at {kill:.3f}, not re-run "
                              f"within {horizon_s:g} s")
        elif reruns >= 2:
            v.doubled += 1
            v.findings.append(f"doubled: {item.kind} {item.job_id} ({item.mark}) re-ran {reruns}x after the kill "
                              f"at {kill:.3f}: {[round(r.ts, 3) for r in window]}")
        elif on_top:
            v.doubled += 1
            v.findings.append(f"doubled: {item.kind} {item.job_id} ({item.mark}) re-ran at {on_top[0].ts:.3f} after "
                              f"a regular run it should have adopted (kill at {kill:.3f})")
        elif reruns == 0 and window:
            v.adopted += 1
    before = cuts[0][0] if cuts else float("inf")
    stray = [r for r in starts if r.ts <= before and _is_regular(item, r, first, regular) is False]
    if stray:
        v.doubled += len(stray)
        v.findings.append(f"doubled: {item.kind} {item.job_id} ({item.mark}) re-ran with nothing interrupted: "
                          f"{[round(r.ts, 3) for r in stray]}")


def _judge_session(tag: str, turns: list[TurnItem], reqs: Sequence[Request], kills: Sequence[float], slack: float,
                   v: Verdict) -> None:
    """Every request of the session after a turn's start and before the next turn's is a follow-up
    of that turn (its resume or gatewayd's notice)."""
    in_session = [r for r in reqs if tag in r.text]
    starts: list[tuple[Request, TurnItem]] = []
    for t in turns:
        first = next((r for r in in_session if t.mark in r.last_user), None)
        if first is not None:
            starts.append((first, t))
        else:
            v.unobserved += 1
    starts.sort(key=lambda s: s[0].ts)
    start_ns = {s[0].n for s in starts}
    for i, (first, t) in enumerate(starts):
        end = starts[i + 1][0].ts if i + 1 < len(starts) else float("inf")
        chain = [first] + [r for r in in_session if first.ts < r.ts < end and r.n not in start_ns]
        # Each cut of the chain (the turn, or a resume or notice that was cut in its turn) needs
        # exactly one follow-up after it, before the next cut.
        cuts: list[tuple[float, bool]] = []
        for r in chain:
            state, kill = interruption(r, kills, slack)
            if state in ("interrupted", "ambiguous") and (not cuts or cuts[-1][0] != kill):
                cuts.append((kill, state == "interrupted"))
        before = cuts[0][0] if cuts else float("inf")
        early = [r for r in chain[1:] if r.ts <= before]
        if early:
            v.doubled += 1
            v.findings.append(f"doubled: session turn {t.mark} ({t.agent}) completed, yet {len(early)} more "
                              f"turn(s) followed: {[r.last_user[:60] for r in early]}")
        for j, (kill, certain) in enumerate(cuts):
            upto = cuts[j + 1][0] if j + 1 < len(cuts) else float("inf")
            after = [r for r in chain if kill < r.ts <= upto]
            if not certain:
                v.ambiguous_sessions += 1
                if len(after) > 1:
                    v.doubled += 1
                    v.findings.append(f"doubled: session turn {t.mark} ({t.agent}) resumed {len(after)}x (ambiguous)")
                continue
            v.interrupted_sessions += 1
            resumed = any(any(m in r.last_user for m in GATEWAY_RESUME) for r in after)
            noticed = any(GATEWAYD_NOTICE in r.last_user for r in after)
            v.resumed_by_gateway += resumed
            v.noticed_by_gatewayd += noticed
            if resumed or noticed:
                v.notified += 1
            if len(after) == 1:
                v.woken += 1
            elif not after:
                v.lost += 1
                v.findings.append(f"lost: session turn {t.mark} ({t.agent}) interrupted at {kill:.3f}, not resumed")
            else:
                v.doubled += 1
                v.findings.append(f"doubled: session turn {t.mark} ({t.agent}) resumed {len(after)}x after the kill "
                                  f"at {kill:.3f}: {[r.last_user[:60] for r in after]}")


def complete_witness(requests: Sequence[Request], items: Sequence[CronItem],
                     entries: Mapping[str, Sequence[Mapping[str, Any]]],
                     cut: Mapping[str, Sequence[tuple[int, int]]], starts: Mapping[str, Sequence[tuple[int, int]]],
                     same_run_ms: int, gateway_kills: Sequence[float] = ()) -> list[Request]:
    """The witness, completed by the gateway's own record of cut runs: its run log (`entries`;
    2026.9.x logs "interrupted") and gatewayd's store (runs listed as running when their boot
    ended: `cut`, and every recorded start: `starts`, each as (runningAtMs, boot)). Such a run
    counts as cut even if its answer had left the model (the gateway never recorded it done), and
    one cut before it reached the model becomes a start of its own, so the retry that follows is
    not taken for a double. Its model request, if it made one, is the first with its mark after it
    started and before the job's next run. A mark within `same_run_ms` is the same run (2026.2.x
    moves it by a few ms, found in a real run), but never one recorded in another boot, nor one
    that started after a gateway kill that came after the mark (a mark moves within one boot):
    found by the fake 2.26 chaos runs, seeds 1515 and 1717, where a one-shot cut 28 to 83 ms after
    its start was re-run by the next gateway 0.5 to 0.7 s later, and that re-run (recorded in the
    next boot, or seen only in the run log) was taken for the cut run itself (judged lost)."""
    kills_ms = sorted(k * 1000 for k in gateway_kills)
    out = list(requests)
    synthetic = -1
    for item in items:
        runs = [e for e in entries.get(item.job_id, []) if isinstance(e.get("runAtMs"), int)]
        marks: dict[int, int | None] = {e["runAtMs"]: None for e in runs if "interrupted" in str(e.get("error") or "")}
        marks.update(cut.get(item.job_id, []))
        known: list[tuple[int, int | None]] = [*starts.get(item.job_id, []), *((e["runAtMs"], None) for e in runs)]
        done = {e.get("runAtMs") for e in runs if "interrupted" not in str(e.get("error") or "")}
        for at, boot in sorted(marks.items()):
            if at in done:
                continue  # (the gateway's run log says it ended after all)
            later = [t for t, b in known if t > at + same_run_ms or (t > at and (
                (boot is not None and b is not None and b != boot)
                or bisect.bisect_right(kills_ms, at) < bisect.bisect_left(kills_ms, t)))]
            # Without a later start, up to the gateway kill that ended its boot: no request after
            # it can be this run's. (A fixed 15 s cut off a real 9.6 run that spent 20 s under load
            # between its start and its model call: the request became a second re-run.)
            ended = kills_ms[bisect.bisect_right(kills_ms, at)] + SENT_BEFORE_KILL_S * 1000 \
                if bisect.bisect_right(kills_ms, at) < len(kills_ms) else at + 15_000
            upto = min(later, default=ended) / 1000
            mine = [i for i, r in enumerate(out) if item.mark in r.last_user and at / 1000 - 1 <= r.ts < upto]
            for i in mine[:1]:
                out[i] = Request(out[i].n, out[i].ts, None, out[i].last_user, out[i].text)
            if not mine:
                out.append(Request(synthetic, at / 1000, None, item.mark, item.mark))
                synthetic -= 1
    return out


# ---------------------------------------------------------------------------------------- gateway exits

STOP_KINDS = frozenset({"clean-stop", "stop-unclean"})


@dataclass(frozen=True)
class GatewayExit:
    """One `gateway_exited` line of gatewayd's log."""

    pid: int
    kind: str  # exit_kind
    at: float  # wall time of the line: gatewayd has seen the exit and recorded it by then


@dataclass
class ExitVerdict:
    unexpected: int = 0  # exits the benchmark did not cause: a fault of gatewayd or of the gateway
    late: int = 0  # caused, but seen more than `late_s` after the kill
    findings: list[str] = field(default_factory=list)


def judge_exits(exits: Sequence[GatewayExit], signalled: Mapping[int, float], stop_asked_at: float | None,
                late_s: float) -> ExitVerdict:
    """Each gateway exit matched to its cause, by pid: the benchmark's kill -9 or SIGSTOP of that
    very process (at `signalled[pid]`, before the exit), or its stop of gatewayd at the end (a stop
    kind, after `stop_asked_at`). Any other exit is unexpected. Counting exits against kills instead
    took the final stop for an unexpected exit, and took a gateway killed while gatewayd was down
    (gatewayd logs no exit for it: it records the boot as ended while it was down) for one caused:
    a run with such kills hid one unexpected exit for each."""
    v = ExitVerdict()
    for e in exits:
        killed_at = signalled.get(e.pid)
        if killed_at is not None and killed_at <= e.at:
            if e.at - killed_at > late_s:
                v.late += 1
                v.findings.append(f"gateway pid {e.pid} killed at {killed_at:.3f}: its exit ({e.kind}) seen "
                                  f"{e.at - killed_at:.1f} s later")
        elif e.kind in STOP_KINDS and stop_asked_at is not None and e.at >= stop_asked_at:
            continue
        else:
            v.unexpected += 1
            v.findings.append(f"gateway pid {e.pid} exited ({e.kind}) at {e.at:.3f}: nothing the benchmark did")
    return v
