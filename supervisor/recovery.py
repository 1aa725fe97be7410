"""Recovery: after the gateway is ready again, finish each interrupted piece of work exactly once.

The shell around `core.planner` and `core.confirm`, which decide: it waits for the gateway's own
startup recovery to settle, reads each open obligation's job (or session) afresh right before
acting, journals every action before sending it, and records its answer. Obligations live in the
store, so a gatewayd that dies halfway picks up where it was; an action journaled but never
answered is resolved by looking at the gateway (a run that started after it was sent), never by
sending it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from supervisor import logs
from supervisor.core.confirm import (
    MAX_NOTICES,
    TURN_SLACK_MS,
    SessionSeen,
    confirm_notices,
    confirm_retries,
    history_shows,
    job_state,
    job_view,
    needs_history,
    notice_by_wake,
    notice_drains,
    notice_how,
    notice_key,
    notices_exhausted,
    own_recovery_done,
    retry_key,
    run_log,
    session_row,
    session_state,
    settle_deadline_ms,
)
from supervisor.core.inflight import (
    agent_of,
    interrupted_request,
    kind_of,
    legacy_turn_ended,
    lenient_ms,
    unseen_lost_turn,
)
from supervisor.core.obligations import Action, ActionState, Obligation, ObligationKind
from supervisor.core.planner import (
    CRON_SESSION_KINDS,
    MS,
    Decision,
    JobView,
    Retry,
    SessionVerb,
    Verb,
    decide_run,
    decide_session,
    planned_at_ms,
    send_gap_ms,
)
from supervisor.core.recovery_policy import RecoveryPolicy, policy_for
from supervisor.core.retry_words import words
from supervisor.crashpoints import crashpoint
from supervisor.errors import GatewayError, GatewayRpcError, GatewayUnavailable, StoreError
from supervisor.gateway.capabilities import Capabilities
from supervisor.gateway.rpc import RpcClient, list_sessions, paged, user_turn
from supervisor.keepalive import until_set
from supervisor.retry_patch import RetryPatcher
from supervisor.store.job_patches import JobPatchRecords
from supervisor.store.journal import Journal
from supervisor.store.snapshots import InflightRecords
from supervisor.store.system_events import SystemEventRecords

log = logs.get("gatewayd.recovery")

REASONS = {"crash": "crash", "oom-kill": "out of memory",
           "hang-kill": "hang", "boot-timeout": "boot timeout", "planned-restart": "planned restart",
           "restart-requested": "restart", "vanished": "died while unsupervised", "stop-unclean": "unclean stop",
           "config-error": "config error", "conflict": "port conflict", "updater-parked": "update"}


T = TypeVar("T")

HISTORY_LIMIT = 40  # the dead gateway's last messages, with the few written since its restart
# Where a notice is looked for: enough to reach back past a notice turn's own tool calls; an answer
# that does not reach back to the send proves nothing (`core/confirm.history_shows`).
NOTICE_HISTORY_LIMIT = 200
REQUEUE_WAIT_S = 120.0  # a notice that drains the queue waits this long after ready for the re-queue
CONFIRM_POLL_MS = 2000  # while a retry's run or a notice's turn is awaited
FIRST_LOOK_S = 30.0  # at most this long for the snapshotter's first poll before deciding there is nothing to do


def now_ms() -> int:
    return int(time.time() * MS)


class Recovery:
    def __init__(self, journal: Journal, policy: RecoveryPolicy, caps: Capabilities, boot: int, ready_at_ms: int,
                 records: InflightRecords, rand: Callable[[], float],
                 hold_until_ms: int = 0, first_look: asyncio.Event | None = None, deliver: bool = False,
                 own_settled: asyncio.Event | None = None) -> None:
        self.journal = journal
        self.deliver = deliver  # the notice turn's reply on the session's own channel (recovery.notice_to_channel)
        self.policy = policy
        self.caps = caps
        self.rules = caps.recovery
        self.boot = boot
        self.ready_at_ms = ready_at_ms
        self.records = records
        self.rand = rand
        self.hold_until_ms = hold_until_ms
        self.first_look = first_look  # the snapshotter's first poll, which records runs cut unseen
        # Set once the gateway's own startup recovery is over (seen done, or its deadline): the
        # re-queue of system events waits for it (queue_keeper.Requeue).
        self.own_settled = own_settled if own_settled is not None else asyncio.Event()
        self.settled_at_ms = settle_deadline_ms(self.rules, ready_at_ms)
        self.next_send_ms = 0
        self.grace_ms = int(policy.unanswered_grace_s * MS)
        self.instance_id: str | None = None
        self._inflight: set[str] = set()  # action keys sent by this process and not answered yet
        self._rows: tuple[int, dict[str, Any]] | None = None  # sessions.list, when read, by key
        self._jobs_read_ms = 0  # when cron.list was last read (`decide_run` trusts a fresh one only)
        self._background: set[asyncio.Task[None]] = set()
        self.patcher = RetryPatcher(JobPatchRecords(records.store), boot)
        self.queue = SystemEventRecords(records.store)
        self._requeue_done = False

    async def run(self, rpc: RpcClient) -> None:
        try:
            await self._run(rpc)
        finally:
            for t in self._background:
                t.cancel()

    async def _run(self, rpc: RpcClient) -> None:
        if self.first_look is not None:
            await until_set(self.first_look, FIRST_LOOK_S)
        await self.patcher.restore_left(rpc)  # no job stays changed by a retry an earlier gatewayd cut
        if not self.rules.resumes_main_sessions and self.caps.has_method("chat.history"):
            await self._find_unseen_turns(rpc)
        if not await self.journal.open_obligations():
            self.own_settled.set()  # nothing of the dead gateway's for this one to resume
            return
        if self.caps.process_instance_id and self.caps.has_method("system.info"):
            with contextlib.suppress(GatewayError):
                info = await rpc.call("system.info", {})
                iid = info.get("processInstanceId") if isinstance(info, dict) else None
                self.instance_id = iid if isinstance(iid, str) else None
        await self._settle(rpc)
        self.own_settled.set()
        log.info("recovery_settled", boot=self.boot,
                 after_ready_ms=now_ms() - self.ready_at_ms)
        while not rpc.closed.is_set():
            await self._restore_jobs(rpc)
            obligations = await self.journal.open_obligations()
            if not obligations and not self._inflight and not await self.patcher.records.unsettled():
                log.info("recovery_done", boot=self.boot)
                return
            now = now_ms()
            next_at = now + 60_000  # a rescan every minute, whatever the timers say
            if now < self.hold_until_ms:
                next_at = self.hold_until_ms
                obligations = []
            jobs: dict[str, Any] | None = None
            # Notices first: they are due now, while retries wait for their backoff anyway.
            obligations.sort(key=lambda o: o.kind is not ObligationKind.SESSION)
            for ob in obligations:
                if ob.kind is ObligationKind.CRON:
                    if jobs is None:
                        jobs = await self._jobs(rpc)
                    when = await self._cron(rpc, ob, jobs)
                else:
                    when = await self._session(rpc, ob)
                if when is not None:
                    next_at = min(next_at, when)
            # Until the next action is due, or the connection closes: a helper that lost its
            # cancellation otherwise held the boot's end until this rescan, up to a minute (found:
            # an adopted gateway's kill -9 seen 60.9 s late by the fake chaos run, seed 5151).
            await until_set(rpc.closed, max(0.05, (next_at - now_ms()) / MS))

    async def _settle(self, rpc: RpcClient) -> None:
        """Wait for the gateway's own startup recovery: where the version's is visible (9.x), until
        it is seen done, else until the version's deadline (core/confirm.py)."""
        while now_ms() < self.settled_at_ms:
            if self.rules.own_recovery_visible and await self._own_recovery_done(rpc):
                self.settled_at_ms = now_ms()
                return
            await asyncio.sleep(1.0)

    async def _own_recovery_done(self, rpc: RpcClient) -> bool:
        obligations = await self.journal.open_obligations()
        jobs = await self._jobs(rpc)
        marks = {ob.ref: lenient_ms(job_state(jobs.get(ob.ref)).get("runningAtMs"))
                 for ob in obligations if ob.kind is ObligationKind.CRON}
        sessions = {ob.ref: await self._session_seen(rpc, ob) for ob in obligations
                    if ob.kind is ObligationKind.SESSION and ob.session_kind not in CRON_SESSION_KINDS}
        return own_recovery_done(obligations, marks, sessions, self.rules)

    async def _session_seen(self, rpc: RpcClient, ob: Obligation) -> SessionSeen:
        """The session's turns as the store recorded them (not the cut turn's stale row) and its row
        shows them now."""
        recorded = await self.records.turn_recorded_at(ob.ref, ob.interrupted_at_ms)
        return SessionSeen(recorded, session_row((await self._session_rows(rpc)).get(ob.ref)))

    async def _restore_jobs(self, rpc: RpcClient) -> None:
        """A restore that failed inside a connection (a timeout, a refusal) is tried again at every
        pass, and recovery is not done while a job still carries a retry's words."""
        try:
            await self.patcher.restore_left(rpc, running=self._inflight)
        except GatewayUnavailable:
            raise
        except GatewayError as exc:
            log.warning("retry_words_restore_failed", error=str(exc))

    async def _find_unseen_turns(self, rpc: RpcClient) -> None:
        """2026.2.x: a session turn that started while gatewayd was down and died with its gateway
        before gatewayd was back left no snapshot, and this version does not resume it: its row's
        `updatedAt` (set at accept) falls in the dead gateway's life, and its history ends with the
        request unanswered (measured). Each such turn becomes an obligation (one notice). 9.x
        resumes such turns itself."""
        boots = await self.records.unseen_turn_checks(self.boot)
        if not boots:
            return
        rows = await list_sessions(rpc, self.caps.sessions_list_filters)
        known = {(ob.boot_id, ob.ref) for ob in await self.journal.open_obligations()}
        marker = self._notice_marker()
        for b in boots:
            # Its own life only: a turn of a later gateway belongs to that one's check.
            since = int(b["started_at"] * MS)
            until = int(b["next_started_at"] * MS) if b["next_started_at"] is not None else self.ready_at_ms
            found: list[tuple[str, str, str, int]] = []
            for row in rows:
                key, at = row["key"], lenient_ms(row.get("updatedAt"))
                if at is None or not since <= at < until or (b["id"], key) in known \
                        or kind_of(key) in CRON_SESSION_KINDS:
                    continue
                try:
                    history = await rpc.call("chat.history", {"sessionKey": key, "limit": HISTORY_LIMIT})
                except GatewayRpcError as exc:  # this session unreadable: the others are still looked at
                    log.warning("recovery_history_unreadable", session=key, error=str(exc))
                    continue
                started = unseen_lost_turn(history, since, until, marker)
                if started is not None:
                    found.append((key, agent_of(key), kind_of(key), started))
            await self.records.record_unseen_turns(int(b["id"]), found, float(b["ended_at"]), "vanished")
            if found:
                log.info("recovery_unseen_turns_found", boot=b["id"], sessions=[f[0] for f in found])

    def _notice_marker(self) -> str:
        """What every restart notice of gatewayd's begins with (the configured text up to its first field)."""
        return self.policy.notice.split("{", 1)[0].strip() or "Gateway restarted"

    async def _history(self, rpc: RpcClient, ob: Obligation) -> tuple[bool, str | None]:
        """2026.2.x, from the session's history: had the turn gatewayd last saw running ended before
        the gateway died (while gatewayd was down, so no snapshot saw its end; found by the chaos
        benchmark, fake 2026.2.26: 2 notices after such a turn in 221 kills)? And the interrupted
        request, for the notice to quote."""
        # A turn found cut unseen carries its start (its request's time) in the obligation.
        started = await self.records.turn_started(ob.boot_id, ob.ref) or ob.running_at_ms or None
        if started is None:
            return False, None  # undated: the notice goes out, as before this check
        read = await self._read_history(rpc, ob.ref, HISTORY_LIMIT, lambda history: (
            legacy_turn_ended(history, started, ob.interrupted_at_ms),
            interrupted_request(history, started, ob.interrupted_at_ms, self._notice_marker())))
        return read if read is not None else (False, None)  # unknown: the notice goes out, as before this check

    async def _read_history(self, rpc: RpcClient, key: str, limit: int, parse: Callable[[Any], T]) -> T | None:
        """What `parse` makes of the session's `chat.history`; None where the gateway refused it or
        answered what `parse` cannot read (logged). A lost connection raises: decided again on the
        next one, nothing sent into this one."""
        try:
            return parse(await rpc.call("chat.history", {"sessionKey": key, "limit": limit}))
        except GatewayUnavailable:
            raise
        except GatewayError as exc:
            log.warning("recovery_history_unreadable", session=key, error=str(exc))
            return None

    async def _notice_shown(self, rpc: RpcClient, ob: Obligation, text: str, previous: Sequence[Action]
                            ) -> dict[str, bool] | None:
        """2026.2.x: for each notice that went into a gateway that has ended since, does the
        session's history hold it (`confirm_notices`)? Its text as journaled (else as it would be
        sent now). Left out where the history cannot tell; None: not asked, or unreadable (the row
        decides, as before)."""
        gone = [a for a in previous if a.state.out and a.boot_id != self.boot]
        if self.rules.resumes_main_sessions or not self.caps.has_method("chat.history") or not gone:
            return None
        shown = await self._read_history(rpc, ob.ref, NOTICE_HISTORY_LIMIT, lambda history: {
            a.key: history_shows(history, a.text or text, a.dispatched_at_ms - TURN_SLACK_MS, NOTICE_HISTORY_LIMIT)
            for a in gone})
        return None if shown is None else {k: v for k, v in shown.items() if v is not None}

    async def _requeue_pending(self) -> bool:
        """System events of dead boots not queued again yet (`queue_keeper.Requeue` runs beside
        this), for at most REQUEUE_WAIT_S after ready: a notice is never held back for good."""
        if self._requeue_done or now_ms() >= self.ready_at_ms + REQUEUE_WAIT_S * MS:
            return False
        # Once settled it stays so for this connection: only ended boots' looks are queued again,
        # and none ends while this gateway runs.
        self._requeue_done = not await self.queue.outstanding(self.boot)
        return not self._requeue_done

    async def _session_rows(self, rpc: RpcClient) -> dict[str, Any]:
        now = now_ms()
        if self._rows is None or now - self._rows[0] > CONFIRM_POLL_MS // 2:
            try:
                rows = await list_sessions(rpc, self.caps.sessions_list_filters)
            except GatewayRpcError:
                return {}
            self._rows = (now, {r["key"]: r for r in rows})
        return self._rows[1]

    async def _jobs(self, rpc: RpcClient) -> dict[str, Any]:
        asked = now_ms()  # before the call: a run begun while it is answered is newer than the view
        payload = await paged(rpc, "cron.list", {"includeDisabled": True}, "jobs", 200)
        self._jobs_read_ms = asked
        jobs = payload.get("jobs", []) if isinstance(payload, dict) else []
        return {j["id"]: j for j in jobs if isinstance(j, dict) and isinstance(j.get("id"), str)}

    async def _run_log(self, rpc: RpcClient, job_id: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        try:
            return run_log(await rpc.call("cron.runs", {"id": job_id, "limit": 50}))
        except GatewayRpcError:
            return (), ()

    async def _view(self, rpc: RpcClient, job_id: str, jobs: dict[str, Any]) -> JobView:
        """The job as `jobs` shows it, with its run log read now."""
        job = jobs.get(job_id)
        starts, finished = await self._run_log(rpc, job_id) if job is not None else ((), ())
        return job_view(job, starts, finished)

    async def _cron(self, rpc: RpcClient, ob: Obligation, jobs: dict[str, Any]) -> int | None:
        view = await self._view(rpc, ob.ref, jobs)
        actions = await self.journal.actions_for(ob.id)
        recorded = await self.journal.latest_runs(ob.ref, (a.boot_id for a in actions
                                                           if a.state.out and a.boot_id is not None))
        c = confirm_retries(ob.run(), actions, view, recorded, self._inflight, self.boot, now_ms(), self.grace_ms)
        for action, lapse in c.lapsed:
            why = "its run was cut before it was recorded" if lapse is Retry.CUT else "no run after dispatch"
            await self.journal.answered(action.key, "unconfirmed", {"observed": why})
            await self.journal.count_attempt(ob.id, action.attempt)
            log.warning("recovery_retry_did_not_stand", job=ob.ref, reason=why, attempt=action.attempt)
        if c.outcome is Retry.STOOD and c.action is not None:
            if c.action.state is ActionState.DISPATCHED:
                await self.journal.answered(c.action.key, "answered", {"observed": "a run started after dispatch"})
            await self.journal.resolve(ob.id, "done", f"retried (attempt {c.action.attempt}), run observed")
            log.info("recovery_retry_observed", job=ob.ref, name=ob.name, attempt=c.action.attempt)
            crashpoint("recorded")
            return None
        if c.outcome is Retry.AWAIT:
            return now_ms() + CONFIRM_POLL_MS
        if c.outcome is Retry.TRUSTED and c.action is not None:
            await self.journal.resolve(ob.id, "done", f"retried (attempt {c.action.attempt}), accepted;"
                                       " its run was not seen")
            log.warning("recovery_retry_trusted", job=ob.ref, name=ob.name, attempt=c.action.attempt)
            return None
        obligation = c.run or ob.run()
        policy = policy_for(self.policy, ob.ref, ob.name)
        planned = ob.planned_at_ms
        if planned is None:
            planned = planned_at_ms(obligation, policy, self.rand(), self.settled_at_ms)
            await self.journal.plan(ob.id, planned)
            crashpoint("planned")
        decision = decide_run(obligation, view, policy, self.rules, now_ms=now_ms(),
                              ready_at_ms=self.ready_at_ms, planned_ms=planned, view_read_ms=self._jobs_read_ms)
        if decision.verb is Verb.REFRESH:
            if now_ms() < self.next_send_ms:
                return self.next_send_ms  # no send could go yet: read the job when one can
            fresh = await self._jobs(rpc)
            jobs.clear()  # the pass's view, for the obligations after this one too
            jobs.update(fresh)
            log.debug("recovery_job_read_again", job=ob.ref)
            # The same obligation and plan, on the fresh view: decided once more, whatever its age by now.
            decision = decide_run(obligation, await self._view(rpc, ob.ref, jobs), policy, self.rules,
                                  now_ms=now_ms(), ready_at_ms=self.ready_at_ms, planned_ms=planned)
        return await self._act_cron(rpc, ob, decision)

    async def _act_cron(self, rpc: RpcClient, ob: Obligation, d: Decision) -> int | None:
        fields = {"job": ob.ref, "name": ob.name, "running_at_ms": ob.running_at_ms, "reason": d.reason}
        if d.verb is Verb.WAIT:
            return d.until_ms
        if d.verb is Verb.ADOPT:
            await self.journal.resolve(ob.id, "done", f"{d.reason} (run at {d.run_at_ms})")
            log.info("recovery_run_adopted", run_at_ms=d.run_at_ms, **fields)
            return None
        if d.verb is Verb.REFRESH:  # decided again on a fresh view by `_cron`: never sent as it stands
            return now_ms() + CONFIRM_POLL_MS
        if d.verb in (Verb.DONE, Verb.GIVE_UP):
            await self.journal.resolve(ob.id, "done" if d.verb is Verb.DONE else "given-up", d.reason)
            (log.info if d.verb is Verb.DONE else log.warning)(f"recovery: {d.verb}", **fields)
            return None
        now = now_ms()
        if now < self.next_send_ms:
            return self.next_send_ms
        key = retry_key(ob, d.attempt, await self.journal.actions_for(ob.id))
        if not await self.journal.dispatched(key, ob.id, "cron-run", d.attempt, self.boot, now):
            return None
        crashpoint("journaled")
        self.next_send_ms = now + send_gap_ms(self.policy.retries_per_minute)
        params: dict[str, Any] = {"id": ob.ref, "mode": self.caps.cron_run_mode}
        if self.instance_id:
            params["expectedProcessInstanceId"] = self.instance_id
        log.info("recovery_retry_sent", attempt=d.attempt, key=key, **fields)
        retry_words = words(d.attempt, policy_for(self.policy, ob.ref, ob.name).max_attempts, ob.interrupted_at_ms)
        if self.caps.cron_run_blocks:
            # 2.x answers only when the run ends: the retry is under way once sent; its answer is
            # recorded when it comes.
            self._inflight.add(key)
            task = asyncio.create_task(self._blocking_run(rpc, key, params, retry_words))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            return now + CONFIRM_POLL_MS  # done once its run is seen
        self._inflight.add(key)
        try:
            async with self.patcher.carrying(rpc, ob.ref, key, retry_words):
                answer = await rpc.call("cron.run", params, timeout_s=30)
            crashpoint("dispatched")
        except GatewayRpcError as exc:
            await self.journal.answered(key, "failed", {"code": exc.code, "error": str(exc)})
            log.warning("recovery_retry_refused", error=str(exc), **fields)
            return now + int(self.policy.recheck_s * MS)
        finally:
            self._inflight.discard(key)
        if isinstance(answer, dict) and answer.get("ran") is False:
            await self.journal.answered(key, "failed", answer)
            if answer.get("reason") == "disabled":
                await self.journal.resolve(ob.id, "given-up", "job disabled")
                return None
            return now + int(self.policy.recheck_s * MS)
        await self.journal.answered(key, "answered", answer)
        crashpoint("answered")
        return now_ms() + CONFIRM_POLL_MS  # done once its run is seen

    async def _blocking_run(self, rpc: RpcClient, key: str, params: dict[str, Any], retry_words: str) -> None:
        try:
            async with self.patcher.carrying(rpc, params["id"], key, retry_words):
                answer = await rpc.call("cron.run", params, timeout_s=3600)
            crashpoint("dispatched")
            await self.journal.answered(key, "answered", answer)
            crashpoint("answered")
        except GatewayError as exc:
            log.warning("recovery_blocking_retry_unanswered", error=str(exc))
        except StoreError as exc:
            log.error("recovery_answer_not_recorded", error=str(exc))
        except Exception:  # a task of its own: nothing else would hear of it; the run is confirmed by sight
            log.exception("recovery_blocking_retry_failed", key=key)
        finally:
            self._inflight.discard(key)

    async def _session(self, rpc: RpcClient, ob: Obligation) -> int | None:
        settled = now_ms() >= self.settled_at_ms
        previous = await self.journal.actions_for(ob.id)  # the notices sent for it, if any
        # Read only where a rule below looks at it: what the version resumes, or a notice that is out.
        seen = (await self._session_seen(rpc, ob) if self.rules.resumes_main_sessions
                or any(a.state.out for a in previous) else SessionSeen())
        history = await self._history(rpc, ob) if needs_history(ob, self.rules, previous) else None
        ended = history is not None and history[0]
        resumed, completed = session_state(ob, seen, self.rules, ended)
        if any(a.state.out for a in previous):
            resumed = completed = False  # a turn now is the notice's own: confirm_notices says so below
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ob.interrupted_at))
        d = decide_session(ob.session_kind or "", resumed, settled, self.rules, self.policy,
                           REASONS.get(ob.reason, ob.reason), when, completed,
                           quote=history[1] if history is not None else None)
        fields = {"session": ob.ref, "agent": ob.agent_id, "reason": d.reason}
        if d.verb is SessionVerb.WAIT:
            return self.settled_at_ms
        if d.verb is SessionVerb.NOTHING:
            await self.journal.resolve(ob.id, "done", d.reason)
            log.info("recovery_session_needs_nothing", **fields)
            return None
        shown = await self._notice_shown(rpc, ob, d.text, previous)
        c = confirm_notices(previous, seen, self.rules, self._inflight, self.boot, now_ms(), self.grace_ms, shown)
        for action, _ in c.lapsed:
            await self.journal.answered(action.key, "unconfirmed", {"observed": "no turn after dispatch"})
            log.warning("recovery_notice_lost", key=action.key, **fields)
        if c.outcome is Retry.AWAIT:
            return now_ms() + CONFIRM_POLL_MS
        if c.outcome in (Retry.STOOD, Retry.TRUSTED) and c.action is not None:
            if c.action.state is ActionState.DISPATCHED:
                await self.journal.answered(c.action.key, "answered", {"observed": "a turn after dispatch"})
            note = "" if c.outcome is Retry.STOOD else " (accepted; its turn was not seen)"
            how = notice_how(c.action.key)
            await self.journal.resolve(ob.id, "done", f"restart notice sent as {how}{note}")
            if c.outcome is Retry.STOOD:
                log.info("recovery_notice_observed", **fields)
            else:
                log.warning("recovery: restart notice not seen; trusting the gateway", **fields)
            crashpoint("recorded")
            return None
        if notices_exhausted(previous):
            await self.journal.resolve(ob.id, "given-up", f"restart notice lost {MAX_NOTICES} times")
            log.error("recovery_notice_given_up", **fields)
            return None
        by_wake = notice_by_wake(self.rules, previous, ob.ref)
        drain = not by_wake and notice_drains(ob.ref, self.caps.has_method("chat.send"))
        if (by_wake or drain) and await self._requeue_pending():
            # Its turn hands the session's queue to the model: the texts queued again go first.
            return now_ms() + CONFIRM_POLL_MS
        key = notice_key(ob, previous, by_wake, drain)
        if not await self.journal.dispatched(key, ob.id, "agent-turn", 1, self.boot, now_ms(), d.text):
            return None
        crashpoint("journaled")
        self._inflight.add(key)
        try:
            if by_wake:  # a turn of the session, the notice shown to the model as system text
                answer = await rpc.call("wake", {"mode": "now", "text": d.text, "sessionKey": ob.ref}, timeout_s=30)
            else:
                method, params = user_turn(d.text, key, ob.agent_id, ob.ref, self.deliver, drain)
                answer = await rpc.call(method, params, timeout_s=30)
            crashpoint("dispatched")
        except GatewayRpcError as exc:
            await self.journal.answered(key, "failed", {"code": exc.code, "error": str(exc)})
            await self.journal.resolve(ob.id, "given-up", f"notice refused: {exc.code}")
            log.warning("recovery_notice_refused", error=str(exc), **fields)
            return None
        finally:
            self._inflight.discard(key)
        await self.journal.answered(key, "answered", answer)
        crashpoint("answered")
        log.info("recovery_notice_sent", key=key, **fields)
        return now_ms() + CONFIRM_POLL_MS  # done once its turn is seen
