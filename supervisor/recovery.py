"""Recovery: after the gateway is ready again, finish each interrupted piece of work exactly once.

The shell around `core.planner`: it waits for the gateway's own startup recovery to settle, reads
each open obligation's job (or session) afresh right before acting, journals every action before
sending it, and records its answer. Obligations live in the store, so a gatewayd that dies halfway
picks up where it was; an action journaled but never answered is resolved by looking at the
gateway (a run that started after it was sent), never by sending it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from supervisor import logs
from supervisor.core.inflight import legacy_turn_ended, lenient_ms
from supervisor.core.planner import (
    MS,
    Decision,
    JobView,
    RecoveryPolicy,
    Retry,
    RunObligation,
    SessionVerb,
    Verb,
    VersionRules,
    decide_run,
    decide_session,
    notice_outcome,
    planned_at_ms,
    policy_for,
    retry_outcome,
    runs_after_send,
    send_gap_ms,
)
from supervisor.crashpoints import crashpoint
from supervisor.errors import GatewayError, GatewayRpcError, GatewayUnavailable, StoreError
from supervisor.gateway.capabilities import Capabilities
from supervisor.gateway.rpc import RpcClient, paged
from supervisor.store.journal import Journal
from supervisor.store.snapshots import InflightRecords

log = logs.get("gatewayd.recovery")

REASONS = {"crash": "crash", "hang-kill": "hang", "boot-timeout": "boot timeout", "planned-restart": "planned restart",
           "restart-requested": "restart", "vanished": "died while unsupervised", "stop-unclean": "unclean stop",
           "config-error": "config error", "conflict": "port conflict", "updater-parked": "update"}


INTERRUPTED = "interrupted"  # 2026.9.x logs an interrupted run as "cron: job interrupted by gateway restart"
HISTORY_LIMIT = 40  # the dead gateway's last messages, with the few written since its restart
CONFIRM_POLL_MS = 2000  # while a retry's run or a notice's turn is awaited
FIRST_LOOK_S = 30.0  # at most this long for the snapshotter's first poll before deciding there is nothing to do
MAX_NOTICES = 2  # a notice lost with its gateway is sent again, this many in all


def now_ms() -> int:
    return int(time.time() * MS)


async def _wait_for_event(event: asyncio.Event, timeout_s: float) -> None:
    """Until the event is set or the time is up. asyncio.wait, not wait_for: Python 3.11's wait_for
    loses a cancellation that lands as the event is set (the connection closing as the gateway dies,
    the moment the boot's end cancels its helpers)."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=timeout_s)
    finally:
        waiter.cancel()


class Recovery:
    def __init__(self, journal: Journal, policy: RecoveryPolicy, caps: Capabilities, boot: int, ready_at_ms: int,
                 records: InflightRecords, rand: Callable[[], float],
                 hold_until_ms: int = 0, first_look: asyncio.Event | None = None) -> None:
        self.journal = journal
        self.policy = policy
        self.caps = caps
        self.rules = VersionRules.for_caps(caps.legacy)
        self.boot = boot
        self.ready_at_ms = ready_at_ms
        self.records = records
        self.rand = rand
        self.hold_until_ms = hold_until_ms
        self.first_look = first_look  # the snapshotter's first poll, which records runs cut unseen
        self.settled_at_ms = ready_at_ms + int(self.rules.settle_max_s * MS)
        self.next_send_ms = 0
        self.grace_ms = int(policy.unanswered_grace_s * MS)
        self.instance_id: str | None = None
        self._inflight: set[str] = set()  # action keys sent by this process and not answered yet
        self._rows: tuple[int, dict[str, Any]] | None = None  # sessions.list, when read, by key
        self._background: set[asyncio.Task[None]] = set()

    async def run(self, rpc: RpcClient) -> None:
        try:
            await self._run(rpc)
        finally:
            for t in self._background:
                t.cancel()

    async def _run(self, rpc: RpcClient) -> None:
        if self.first_look is not None:
            await _wait_for_event(self.first_look, FIRST_LOOK_S)
        if not await self.journal.open_obligations():
            return
        if self.caps.has_method("system.info") and not self.caps.legacy:
            with contextlib.suppress(GatewayError):
                info = await rpc.call("system.info", {})
                iid = info.get("processInstanceId") if isinstance(info, dict) else None
                self.instance_id = iid if isinstance(iid, str) else None
        await self._settle(rpc)
        log.info("recovery_settled", boot=self.boot,
                 after_ready_ms=now_ms() - self.ready_at_ms)
        while not rpc.closed.is_set():
            obligations = await self.journal.open_obligations()
            if not obligations and not self._inflight:
                log.info("recovery_done", boot=self.boot)
                return
            now = now_ms()
            next_at = now + 60_000  # a rescan every minute, whatever the timers say
            if now < self.hold_until_ms:
                next_at = self.hold_until_ms
                obligations = []
            jobs: dict[str, Any] | None = None
            # Notices first: they are due now, while retries wait for their backoff anyway.
            obligations.sort(key=lambda o: o["kind"] != "session")
            for ob in obligations:
                if ob["kind"] == "cron":
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
            await _wait_for_event(rpc.closed, max(0.05, (next_at - now_ms()) / MS))

    async def _settle(self, rpc: RpcClient) -> None:
        """Wait for the gateway's own startup recovery (9.x: its interrupted-run repair and main-session
        resume, measured 5-6.4 s after ready; at most ready + 30 s). 2.x: ready + 5 s."""
        while now_ms() < self.settled_at_ms:
            if not self.caps.legacy and await self._own_recovery_done(rpc):
                self.settled_at_ms = now_ms()
                return
            await asyncio.sleep(1.0)

    async def _own_recovery_done(self, rpc: RpcClient) -> bool:
        obligations = await self.journal.open_obligations()
        jobs = await self._jobs(rpc)
        for ob in obligations:
            if ob["kind"] == "cron":
                job = jobs.get(ob["ref"])
                state = job.get("state", {}) if isinstance(job, dict) else {}
                if isinstance(state, dict) and state.get("runningAtMs") == ob["running_at_ms"]:
                    return False  # not repaired yet
            elif ob["session_kind"] not in ("cron", "cron-run") and not await self._resumed(rpc, ob) \
                    and not await self._completed(rpc, ob):
                return False  # not resumed (yet), and its turn had not ended before the crash
        return True

    async def _resumed(self, rpc: RpcClient, ob: dict[str, Any]) -> bool:
        """Did the session take a turn since its interruption (the gateway's own resume, in this
        boot or in one that died during recovery)? The snapshot may have missed a short turn (or
        gatewayd was down during it); 2026.9.x's row says when the session's last run started."""
        since = int(ob["interrupted_at"] * MS)
        if await self.records.seen_active(ob["ref"], None, since):
            return True
        started = lenient_ms((await self._session_rows(rpc)).get(ob["ref"], {}).get("startedAt"))
        return started is not None and started >= since

    async def _completed(self, rpc: RpcClient, ob: dict[str, Any]) -> bool:
        """2026.9.x: the session's last run had ended before the interruption and none started
        since (status done): the turn gatewayd's snapshot still had as running had finished."""
        row = (await self._session_rows(rpc)).get(ob["ref"], {})
        started, ended = lenient_ms(row.get("startedAt")), lenient_ms(row.get("endedAt"))
        return (row.get("status") == "done" and started is not None and ended is not None and ended >= started
                and ended <= int(ob["interrupted_at"] * MS))

    async def _ended_before_crash(self, rpc: RpcClient, ob: dict[str, Any]) -> bool:
        """2026.2.x: the turn gatewayd last saw running had ended before the gateway died (while
        gatewayd was down, so no snapshot saw its end): its session's history says so. Found by
        the chaos benchmark (fake 2026.2.26: 2 notices after such a turn in 221 kills). Asked only
        before any notice is out: after that, the notice's own turn decides."""
        if ob["session_kind"] in ("cron", "cron-run"):
            return False
        started = await self.records.turn_started(int(ob["boot_id"]), ob["ref"])
        if started is None:
            return False  # undated: the notice goes out, as before this check
        try:
            history = await rpc.call("chat.history", {"sessionKey": ob["ref"], "limit": HISTORY_LIMIT})
            return legacy_turn_ended(history, started, int(ob["interrupted_at"] * MS))
        except GatewayUnavailable:
            raise  # the connection is gone: decided again on the next one, no notice sent into it
        except GatewayError as exc:  # unknown: the notice goes out, as before this check
            log.warning("recovery_history_unreadable", session=ob["ref"], error=str(exc))
            return False

    async def _turn_since(self, rpc: RpcClient, key: str, since_ms: int) -> bool:
        """Did the session take a turn since `since_ms`? The snapshot's record, else the session's
        row: 2026.9.x says when its last run started, 2026.2.x when it was last updated."""
        if await self.records.seen_active(key, None, since_ms):
            return True
        row = (await self._session_rows(rpc)).get(key, {})
        at = lenient_ms(row.get("startedAt" if not self.caps.legacy else "updatedAt"))
        return at is not None and at >= since_ms

    async def _session_rows(self, rpc: RpcClient) -> dict[str, Any]:
        now = now_ms()
        if self._rows is None or now - self._rows[0] > CONFIRM_POLL_MS // 2:
            try:
                payload = await paged(rpc, "sessions.list", {}, "sessions", 500)
            except GatewayRpcError:
                return {}
            rows = payload.get("sessions", []) if isinstance(payload, dict) else []
            self._rows = (now, {r["key"]: r for r in rows if isinstance(r, dict) and isinstance(r.get("key"), str)})
        return self._rows[1]

    async def _jobs(self, rpc: RpcClient) -> dict[str, Any]:
        payload = await paged(rpc, "cron.list", {"includeDisabled": True}, "jobs", 200)
        jobs = payload.get("jobs", []) if isinstance(payload, dict) else []
        return {j["id"]: j for j in jobs if isinstance(j, dict) and isinstance(j.get("id"), str)}

    async def _run_log(self, rpc: RpcClient, job_id: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(starts of logged runs, starts of those that ended other than by our interruption)."""
        try:
            payload = await rpc.call("cron.runs", {"id": job_id, "limit": 50})
        except GatewayRpcError:
            return (), ()
        entries = payload.get("entries", []) if isinstance(payload, dict) else []
        starts: list[int] = []
        finished: list[int] = []
        for e in entries:
            at = lenient_ms(e.get("runAtMs")) if isinstance(e, dict) else None
            if at is None:
                continue
            starts.append(at)
            if INTERRUPTED not in str(e.get("error") or ""):
                finished.append(at)
        return tuple(starts), tuple(finished)

    async def _cron(self, rpc: RpcClient, ob: dict[str, Any], jobs: dict[str, Any]) -> int | None:
        job = jobs.get(ob["ref"])
        state = job.get("state", {}) if isinstance(job, dict) else {}
        state = state if isinstance(state, dict) else {}
        starts, finished = await self._run_log(rpc, ob["ref"]) if job is not None else ((), ())
        running = lenient_ms(state.get("runningAtMs"))
        all_starts = starts + ((running,) if running is not None else ())
        # A retry is done when its run is seen, not when cron.run answers: the gateway may die
        # between the answer and the run's start, or cut the run before the snapshot recorded it
        # (then no obligation covers it; found by the chaos benchmark). Seen means it ended, or the
        # snapshot recorded it (a crash during it then opens an obligation of its own). A retry
        # journaled by a gatewayd that died before the answer is settled the same way, by looking,
        # never by sending again. Cut unseen, or no run at all within the grace: it was an attempt,
        # and the next decision may send another.
        obligation = RunObligation(ob["ref"], int(ob["running_at_ms"]), int(ob["interrupted_at"] * MS),
                                   int(ob["attempt"]), bool(ob["one_shot"]))
        for action in await self.journal.actions_for(ob["id"]):
            if action["kind"] != "cron-run" or action["state"] not in ("dispatched", "answered"):
                continue
            sent, key = int(action["dispatched_at_ms"]), action["key"]
            after = runs_after_send(obligation, sent, all_starts)
            recorded = bool(after) and await self.journal.run_recorded(ob["ref"], after[0], int(action["boot_id"]))
            this_boot = action["state"] == "answered" and action["boot_id"] == self.boot
            outcome = retry_outcome(after, finished, running, recorded, key in self._inflight, this_boot,
                                    now_ms() - sent, self.grace_ms)
            if outcome is Retry.STOOD:
                if action["state"] == "dispatched":
                    await self.journal.answered(key, "answered", {"observed": "a run started after dispatch"})
                await self.journal.resolve(ob["id"], "done", f"retried (attempt {action['attempt']}), run observed")
                log.info("recovery_retry_observed", job=ob["ref"], name=ob["name"], attempt=action["attempt"])
                crashpoint("recorded")
                return None
            if outcome is Retry.AWAIT:
                return now_ms() + CONFIRM_POLL_MS
            if outcome is Retry.TRUSTED:
                await self.journal.resolve(ob["id"], "done", f"retried (attempt {action['attempt']}), accepted;"
                                           " its run was not seen")
                log.warning("recovery_retry_trusted", job=ob["ref"],
                            name=ob["name"], attempt=action["attempt"])
                return None
            why = "its run was cut before it was recorded" if outcome is Retry.CUT else "no run after dispatch"
            await self.journal.answered(key, "unconfirmed", {"observed": why})
            await self.journal.count_attempt(ob["id"], int(action["attempt"]))
            obligation = replace(obligation, attempt=max(obligation.attempt, int(action["attempt"])))
            log.warning("recovery_retry_did_not_stand", job=ob["ref"], reason=why,
                        attempt=action["attempt"])
        view = JobView(exists=job is not None, enabled=bool(job.get("enabled", True)) if job else False,
                       running_at_ms=running, run_starts_ms=all_starts, finished_ms=finished,
                       startup_catchup_at_ms=lenient_ms(state.get("startupCatchupAtMs")),
                       next_run_at_ms=lenient_ms(state.get("nextRunAtMs")))
        policy = policy_for(self.policy, ob["ref"], ob["name"])
        planned = ob["planned_at_ms"]
        if planned is None:
            planned = planned_at_ms(obligation, policy, self.rand(), self.settled_at_ms)
            await self.journal.plan(ob["id"], planned)
            crashpoint("planned")
        decision = decide_run(obligation, view, policy, self.rules, now_ms=now_ms(),
                              ready_at_ms=self.ready_at_ms, planned_ms=int(planned))
        return await self._act_cron(rpc, ob, decision)

    async def _act_cron(self, rpc: RpcClient, ob: dict[str, Any], d: Decision) -> int | None:
        fields = {"job": ob["ref"], "name": ob["name"], "running_at_ms": ob["running_at_ms"], "reason": d.reason}
        if d.verb is Verb.WAIT:
            return d.until_ms
        if d.verb is Verb.ADOPT:
            await self.journal.resolve(ob["id"], "done", f"{d.reason} (run at {d.run_at_ms})")
            log.info("recovery_run_adopted", run_at_ms=d.run_at_ms, **fields)
            return None
        if d.verb in (Verb.DONE, Verb.GIVE_UP):
            await self.journal.resolve(ob["id"], "done" if d.verb is Verb.DONE else "given-up", d.reason)
            (log.info if d.verb is Verb.DONE else log.warning)(f"recovery: {d.verb}", **fields)
            return None
        now = now_ms()
        if now < self.next_send_ms:
            return self.next_send_ms
        failed = sum(1 for a in await self.journal.actions_for(ob["id"]) if a["state"] in ("failed", "unconfirmed"))
        key = f"cron-{ob['id']}-a{d.attempt}-{failed}"
        if not await self.journal.dispatched(key, ob["id"], "cron-run", d.attempt, self.boot, now):
            return None
        crashpoint("journaled")
        self.next_send_ms = now + send_gap_ms(self.policy.retries_per_minute)
        params: dict[str, Any] = {"id": ob["ref"], "mode": "force" if self.caps.legacy else "if-enabled"}
        if self.instance_id:
            params["expectedProcessInstanceId"] = self.instance_id
        log.info("recovery_retry_sent", attempt=d.attempt, key=key, **fields)
        if self.caps.cron_run_blocks:
            # 2.x answers only when the run ends: the retry is under way once sent; its answer is
            # recorded when it comes.
            self._inflight.add(key)
            task = asyncio.create_task(self._blocking_run(rpc, key, params))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            return now + CONFIRM_POLL_MS  # done once its run is seen
        self._inflight.add(key)
        try:
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
                await self.journal.resolve(ob["id"], "given-up", "job disabled")
                return None
            return now + int(self.policy.recheck_s * MS)
        await self.journal.answered(key, "answered", answer)
        crashpoint("answered")
        return now_ms() + CONFIRM_POLL_MS  # done once its run is seen

    async def _blocking_run(self, rpc: RpcClient, key: str, params: dict[str, Any]) -> None:
        try:
            answer = await rpc.call("cron.run", params, timeout_s=3600)
            crashpoint("dispatched")
            await self.journal.answered(key, "answered", answer)
            crashpoint("answered")
        except GatewayError as exc:
            log.warning("recovery_blocking_retry_unanswered", error=str(exc))
        except StoreError as exc:
            log.error("recovery_answer_not_recorded", error=str(exc))
        finally:
            self._inflight.discard(key)

    async def _session(self, rpc: RpcClient, ob: dict[str, Any]) -> int | None:
        settled = now_ms() >= self.settled_at_ms
        previous = await self.journal.actions_for(ob["id"])  # the notices sent for it, if any
        resumed = self.rules.resumes_main_sessions and await self._resumed(rpc, ob)
        completed = not resumed and (await self._completed(rpc, ob) if self.rules.resumes_main_sessions
                                     else not previous and await self._ended_before_crash(rpc, ob))
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ob["interrupted_at"]))
        d = decide_session(ob["session_kind"] or "", resumed, settled, self.rules, self.policy,
                           REASONS.get(ob["reason"], ob["reason"]), when, completed)
        fields = {"session": ob["ref"], "agent": ob["agent_id"], "reason": d.reason}
        if d.verb is SessionVerb.WAIT:
            return self.settled_at_ms
        if d.verb is SessionVerb.NOTHING:
            await self.journal.resolve(ob["id"], "done", d.reason)
            log.info("recovery_session_needs_nothing", **fields)
            return None
        # A notice is done when a turn in the session is seen after it was sent (the gateway may
        # die between accepting it and running it). Unseen after the grace: sent again only if the
        # gateway that accepted it is gone, at most twice; a notice is never sent twice to one gateway.
        for action in previous:
            if action["state"] not in ("dispatched", "answered"):
                continue
            sent = int(action["dispatched_at_ms"])
            seen = await self._turn_since(rpc, ob["ref"], sent - 1000)
            this_boot = action["state"] == "answered" and action["boot_id"] == self.boot
            outcome = notice_outcome(seen, action["key"] in self._inflight, this_boot, now_ms() - sent, self.grace_ms)
            if outcome is Retry.AWAIT:
                return now_ms() + CONFIRM_POLL_MS
            if outcome in (Retry.STOOD, Retry.TRUSTED):
                if action["state"] == "dispatched":
                    await self.journal.answered(action["key"], "answered", {"observed": "a turn after dispatch"})
                note = "" if outcome is Retry.STOOD else " (accepted; its turn was not seen)"
                await self.journal.resolve(ob["id"], "done", f"restart notice sent as an agent turn{note}")
                (log.info if outcome is Retry.STOOD else log.warning)("recovery_notice_observed" if
                                                                       outcome is Retry.STOOD else
                                                                       "recovery: restart notice not seen; trusting"
                                                                       " the gateway", **fields)
                crashpoint("recorded")
                return None
            await self.journal.answered(action["key"], "unconfirmed", {"observed": "no turn after dispatch"})
            log.warning("recovery_notice_lost", key=action["key"], **fields)
        if sum(1 for a in previous if a["state"] == "unconfirmed") >= MAX_NOTICES:
            await self.journal.resolve(ob["id"], "given-up", f"restart notice lost {MAX_NOTICES} times")
            log.error("recovery_notice_given_up", **fields)
            return None
        key = f"session-{ob['id']}-{len(previous)}"
        if not await self.journal.dispatched(key, ob["id"], "agent-turn", 1, self.boot, now_ms()):
            return None
        crashpoint("journaled")
        self._inflight.add(key)
        try:
            answer = await rpc.call("agent", {"message": d.text, "idempotencyKey": key, "agentId": ob["agent_id"],
                                              "sessionKey": ob["ref"]}, timeout_s=30)
            crashpoint("dispatched")
        except GatewayRpcError as exc:
            await self.journal.answered(key, "failed", {"code": exc.code, "error": str(exc)})
            await self.journal.resolve(ob["id"], "given-up", f"notice refused: {exc.code}")
            log.warning("recovery_notice_refused", error=str(exc), **fields)
            return None
        finally:
            self._inflight.discard(key)
        await self.journal.answered(key, "answered", answer)
        crashpoint("answered")
        log.info("recovery_notice_sent", key=key, **fields)
        return now_ms() + CONFIRM_POLL_MS  # done once its turn is seen
