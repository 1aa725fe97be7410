"""One wake per agent that had work in flight when its gateway ended (rules: `core/wake_plan.py`).

Run once per RPC connection by the monitor, under `keepalive.Helpers`. For each recently ended boot
it waits until each agent's obligations say what is being done (notices and the gateway's own
resumes settled, retries planned, re-queued system events sent), then decides each agent's wake
once and journals it (`store/wake_journal.py`) before sending:
- 2026.9.x: `wake {mode: "now", text, sessionKey: agent:<id>:main}`, which starts a turn of that
  session even with heartbeats off and drains its queued system events into it (measured); no
  turn within CONFIRM_S, and one user turn carries the text instead (`chat.send` where system
  events were queued again, `agent` otherwise).
- 2026.2.x: its `wake` cannot name an agent and does nothing with heartbeats off (measured), so an
  `agent` turn carries the text; `chat.send` where system events were queued again for that agent,
  since it hands them to the model in the same request (measured) and `agent` does not.
No answer proves a wake: it is done when a turn of that session is seen after it. A user turn
with none within CONFIRM_S is settled unconfirmed, not sent again (it may have taken the texts).
A send journaled by a gatewayd that died before the answer is settled by looking for its turn,
never by sending it a second time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from supervisor import logs
from supervisor.core.confirm import TURN_SLACK_MS, SessionSeen, session_row, turn_since
from supervisor.core.recovery_policy import RecoveryPolicy, policy_for
from supervisor.core.wake_plan import Interrupted, WakeStep, WakeVerb, decide, follow_up
from supervisor.crashpoints import crashpoint
from supervisor.errors import GatewayError, GatewayUnavailable
from supervisor.gateway.capabilities import Capabilities
from supervisor.gateway.rpc import RpcClient, default_agent, list_sessions, user_turn
from supervisor.store.snapshots import InflightRecords
from supervisor.store.wake_journal import FINAL, WakeJournal

log = logs.get("gatewayd.wake")

SETTLE_LIMIT_S = 180.0  # after ready: decide with what is known by then
CONFIRM_S = 30.0  # a wake's turn is looked for this long (then a `wake`'s user turn, or unconfirmed)
RECENT_S = 3600.0  # boots that ended longer ago than this are not woken for (an upgrade's old boots)
POLL_S = 2.0


def _now_ms() -> int:
    return int(time.time() * 1000)


def main_key(agent: str) -> str:
    return f"agent:{agent}:main"


class Waker:
    def __init__(self, journal: WakeJournal, records: InflightRecords, policy: RecoveryPolicy, mode: str,
                 boot: int, ready_at_ms: int, caps: Capabilities, default_agent: str = "main",
                 deliver: bool = False) -> None:
        self.journal = journal
        self.records = records
        self.policy = policy
        self.mode = mode
        self.boot = boot
        self.ready_at_ms = ready_at_ms
        self.caps = caps
        self.default_agent = default_agent
        self.deliver = deliver  # an agent turn's reply on the session's own channel (recovery.notice_to_channel)

    async def run(self, rpc: RpcClient) -> None:
        self.default_agent = await default_agent(rpc, self.default_agent)  # where re-queued events wait
        while not rpc.closed.is_set():
            pending = 0
            for b in await self.journal.boots_owing(self.boot, time.time() - RECENT_S):
                pending += await self._boot(rpc, int(b["id"]), b)
            if not pending:
                return
            await asyncio.sleep(POLL_S)  # obligations settle in SQLite: no event says when

    async def _boot(self, rpc: RpcClient, boot: int, row: dict[str, Any]) -> int:
        """Decide and send what this boot owes; returns how many agents are still pending."""
        wakes = await self.journal.wakes(boot)
        items: dict[str, list[Interrupted]] = {}
        for o in await self.journal.interrupted(boot):
            agent = o["agent_id"] or self.default_agent
            items.setdefault(agent, []).append(Interrupted(
                o["kind"], agent, o["name"] or o["ref"], o["session_kind"], o["state"], o["resolution"],
                int(o["attempt"]), o["planned_at_ms"],
                policy_for(self.policy, o["ref"], o["name"]).max_attempts if o["kind"] == "cron" else 0))
        requeued, sent = await self.journal.requeued(boot)
        if requeued:
            items.setdefault(self.default_agent, [])
        reason = next((o["reason"] for o in await self.journal.interrupted(boot)), row["exit_kind"] or "restart")
        pending = 0
        now = _now_ms()
        for agent, its in items.items():
            wake = wakes.get(agent)
            if wake is None:
                its_requeued = requeued if agent == self.default_agent else 0
                if its_requeued and not sent and now < self.ready_at_ms + SETTLE_LIMIT_S * 1000:
                    pending += 1  # the wake must come after the texts it will hand to the model
                    continue
                d = decide(agent, its, its_requeued, self.mode, str(reason), int(row["ended_at"] * 1000), now,
                           self.ready_at_ms + int(SETTLE_LIMIT_S * 1000))
                if d.verb is WakeVerb.WAIT:
                    pending += 1
                    continue
                state = {WakeVerb.COVERED: "covered", WakeVerb.NOTHING: "nothing", WakeVerb.WAKE: "planned"}[d.verb]
                method = self._method(its_requeued) if d.verb is WakeVerb.WAKE else None
                await self.journal.decided(boot, agent, state, method, d.text, d.why)
                log.info("agent_wake_decided", boot=boot, agent=agent, verb=d.verb.value, why=d.why)
                if d.verb is WakeVerb.WAKE:
                    crashpoint("wake-decided")
                wake = (await self.journal.wakes(boot))[agent]
            if wake["state"] in FINAL:
                continue
            if not await self._progress(rpc, boot, agent, wake):
                pending += 1
        return pending

    def _method(self, requeued: int) -> str:
        if self.caps.recovery.wake_starts_turns:
            return "wake"
        return "chat.send" if requeued else "agent"

    async def _progress(self, rpc: RpcClient, boot: int, agent: str, wake: dict[str, Any]) -> bool:
        """One step of a decided wake (`core/wake_plan.follow_up`); True once it is settled."""
        key = main_key(agent)
        planned = wake["state"] == "planned"
        sent = 0 if planned else int(wake["dispatched_at_ms"])
        # A send again (answer lost with gatewayd) is answered later than it was first journaled:
        # its window runs from that answer, not from the first dispatch.
        since = max(sent, int(wake["updated_at"] * 1000)) if wake["state"] == "answered" else sent
        step = follow_up(wake["state"], wake["method"], wake["into_boot"] == self.boot,
                         None if planned else await self._turn_since(rpc, key, sent), _now_ms() - since,
                         int(CONFIRM_S * 1000))
        if step is WakeStep.SEND:
            if await self.journal.dispatched(boot, agent, wake["method"], self.boot, _now_ms()):
                crashpoint("wake-dispatched")
                await self._send(rpc, boot, agent, wake["method"], wake["text"])
            return False
        if step is WakeStep.SEND_AGAIN:
            await self._send(rpc, boot, agent, wake["method"], wake["text"])
            return False
        if step is WakeStep.DONE:
            await self.journal.settle(boot, agent, "done", f"{wake['method']}: a turn of {key} seen after it")
            log.info("agent_woken", boot=boot, agent=agent, method=wake["method"])
            return True
        if step is WakeStep.FALL_BACK:
            requeued = agent == self.default_agent and (await self.journal.requeued(boot))[0] > 0
            fallback = "chat.send" if requeued else "agent"  # chat.send hands queued events over too
            await self.journal.settle(boot, agent, "planned", f"the wake started no turn: {fallback} instead",
                                      method=fallback)
            log.warning("agent_wake_no_turn", boot=boot, agent=agent, fallback=fallback)
            return False
        if step is WakeStep.UNCONFIRMED:
            why = (f"{wake['method']}: accepted, but no turn of {key} seen within {CONFIRM_S:.0f} s: not sent again"
                   if wake["state"] == "answered" else "answer lost in another gateway: not sent again")
            await self.journal.settle(boot, agent, "unconfirmed", why)
            log.warning("agent_wake_unconfirmed", boot=boot, agent=agent, method=wake["method"], why=why)
            return True
        return False

    async def _send(self, rpc: RpcClient, boot: int, agent: str, method: str, text: str) -> None:
        key = main_key(agent)
        idem = f"gatewayd-wake-{boot}-{agent}"
        if method == "wake":
            params: dict[str, Any] = {"mode": "now", "text": text, "sessionKey": key}
        else:
            method, params = user_turn(text, idem if method == "chat.send" else f"{idem}-agent", agent, key,
                                       self.deliver, drain=method == "chat.send")
        try:
            answer = await rpc.call(method, params, timeout_s=30)
        except GatewayUnavailable:
            raise
        except GatewayError as exc:
            await self.journal.settle(boot, agent, "failed", f"{method}: {exc}")
            log.warning("agent_wake_refused", boot=boot, agent=agent, method=method, error=str(exc))
            return
        await self.journal.settle(boot, agent, "answered", f"{method}: {str(answer)[:200]}")
        crashpoint("wake-answered")
        log.info("agent_wake_sent", boot=boot, agent=agent, method=method)

    async def _turn_since(self, rpc: RpcClient, key: str, since_ms: int) -> bool | None:
        """A turn of the session after the send: the same look as a notice's (core/confirm.py). On
        2026.2.x that is its row written after the send (at a turn's admission, measured). None:
        not seen, and the gateway's sessions could not be read to say none came."""
        recorded = await self.records.turn_recorded_at(key)
        try:
            rows = await list_sessions(rpc, self.caps.sessions_list_filters)
        except GatewayUnavailable:
            raise
        except GatewayError as exc:
            log.warning("agent_wake_look_failed", key=key, error=str(exc))
            rows = None
        row = session_row(next((r for r in rows or [] if r.get("key") == key), None))
        if turn_since(SessionSeen(recorded, row), since_ms - TURN_SLACK_MS, self.caps.recovery):
            return True
        return None if rows is None else False
