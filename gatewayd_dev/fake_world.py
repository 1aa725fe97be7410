"""The fake gateway's world: cron jobs and their runs, sessions and their turns, system events, heartbeats.

Used by fake_gateway.py (one `World` per gateway process). Shapes follow what the real gateways answered
(tests/contract/fixtures/<version>/), per version: 2026.9.x ("modern") or 2026.2.x ("legacy").

A run (an isolated cron run, a main-session turn, a heartbeat turn) really calls the model:
POST {baseUrl}/chat/completions (streaming, like both real versions), baseUrl from the gateway's config file
(`$OPENCLAW_CONFIG_PATH`, else `$OPENCLAW_STATE_DIR/openclaw.json`; `models.providers.fake.baseUrl`) or, when
absent, env FAKE_GW_MODEL_URL (same form, e.g. http://127.0.0.1:P/v1). The run lasts as long as the model
takes, so the fake model's request log is the witness, as with the real gateway. Prompts are shaped like the
real ones (measured): a cron run sends "[cron:<jobId> <name>] <message>", a turn "[Thu 2026-11-26 18:33 UTC]
<message>" after the session's transcript, a heartbeat turn its prompt plus the drained system events as
"System: [2026-11-26 18:33:25 UTC] <text>" lines (2026.9.x: in an internal-context user message). Only heartbeat
turns (wake now, system-event wake:true on 2026.9.x, scheduled heartbeats) drain the queue, not `agent` turns.

Persistence: jobs (with state), the run log and session rows (with a turn in flight, if any) live in
`$OPENCLAW_STATE_DIR/fake-world.json`, rewritten atomically on every change (nothing is written without
OPENCLAW_STATE_DIR). A kill -9 thus leaves `state.runningAtMs` behind like the real gateways. As 2026.2.x the
jobs are also written to `$OPENCLAW_STATE_DIR/cron/jobs.json` (`{version: 1, jobs}`), the real one's file.
System events, idempotency keys, the last heartbeat and the call log are in memory only (lost on restart).

An accepted `agent` or `chat.send` call starts its turn after FAKE_GW_AGENT_START_DELAY_MS (0); with
FAKE_GW_SESSION_WRITES_FAIL=1 it starts none (2026.2.26 behind a session lock no process releases).

Startup after a kill (env-tunable delays, in ms): FAKE_GW_REPAIR_DELAY_MS (3000), FAKE_GW_ONESHOT_CATCHUP_MS
(120000), FAKE_GW_MAIN_RESUME_MS (5000), FAKE_GW_BACKOFF_MS (30000, first step of the error backoff
30 s, 1 m, 5 m, 15 m, 60 m; scaled).
- modern, recurring job left running: at ready + repair delay the run is recorded as an error
  ("cron: job interrupted by gateway restart"), consecutiveErrors+1, runningAtMs cleared, nextRunAtMs =
  max(natural next slot, repair + backoff). Not re-run; missed slots not caught up.
- modern, one-shot left running: marked the same way, plus state.startupCatchupAtMs = nextRunAtMs = ready +
  catch-up delay; run again then, and deleted (deleteAfterRun).
- legacy, recurring: runningAtMs cleared silently before ready (no run-log entry, no error).
- legacy, one-shot: re-run at once at startup (before ready), then deleted: its log holds one ok entry.
- modern, interrupted main-session turn: resumed at ready + resume delay with a "[System] ... interrupted by
  a gateway restart" notice; legacy: dropped without trace.
- Idle jobs whose slot fell into the downtime: legacy runs them at startup, modern at ready + catch-up delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

WORLD_FILE = "fake-world.json"
INTERRUPTED_ERROR = "cron: job interrupted by gateway restart"
RESUME_NOTICE = ("[System] Your previous turn was interrupted by a gateway restart before it finished. "
                 "Continue the interrupted task now.")
# How 2026.9.6 re-sends the cut request in its resume (measured): the user's text kept as context, the
# notice after it, in one message; the cut turn's internal context (drained system events) not again.
HEARTBEAT_RETRY_S = 1.0  # 2026.9.6's heartbeat wake retry while it skips (RETRY_MS)
RESUME_PREFIX = ("[Queued user message from a previous active turn; preserved as context only. "
                 "Continue with the active prompt below.]")
SYSTEM_PROMPT = "You are a personal assistant running inside OpenClaw (fake gateway)."
HEARTBEAT_PROMPT_MODERN = ("Follow the heartbeat monitor scratch context when provided. Recurring tasks are "
                           "automations; create or change their schedules with the automations tool, not heartbeat "
                           "scratch. Do not infer or repeat old tasks from prior chats. If nothing needs attention, "
                           "reply NO_REPLY.")
HEARTBEAT_PROMPT_LEGACY = ("Read HEARTBEAT.md if it exists (workspace context). Follow it strictly. Do not infer "
                           "or repeat old tasks from prior chats. If nothing needs attention, reply HEARTBEAT_OK.")
SKILL_REVIEW_MESSAGE = ("Review this agent's Skill Workshop as a collection, not a set of independent writing "
                        "exercises.")
BACKOFF_STEPS = (1, 2, 10, 30, 120)  # x FAKE_GW_BACKOFF_MS: 30 s, 1 m, 5 m, 15 m, 60 m
DEFAULT_HEARTBEAT = "30m"
MODEL_ID, PROVIDER = "fake-model", "fake"
CONTEXT_TOKENS = 128000
MAX_QUEUED_EVENTS = 20
MAX_CALLS = 5000
HISTORY_KEEP = 200  # chat.history messages a session keeps (2.x; its file keeps all)
TRANSCRIPT_KEEP = int(os.environ.get("FAKE_GW_TRANSCRIPT_KEEP", "40"))  # messages a session keeps
LEGACY_SESSIONS_LIST_PARAMS = {"limit", "activeMinutes", "includeGlobal", "includeUnknown", "includeDerivedTitles",
                               "includeLastMessage", "label", "spawnedBy", "agentId", "search"}
LEGACY_CRON_LIST_PARAMS = {"includeDisabled", "limit", "offset", "query", "enabled", "sortBy", "sortDir"}
LEGACY_CRON_RUNS_PARAMS = {"scope", "id", "jobId", "limit", "offset", "statuses", "status", "deliveryStatuses",
                           "deliveryStatus", "query", "sortDir"}


def now_ms() -> int:
    return int(time.time() * 1000)


def env_ms(name: str, default: int) -> int:
    try:
        return max(0, int(float(os.environ.get(name, "") or default)))
    except ValueError:
        return default


def log(msg: str) -> None:
    print(f"[world] {msg}", flush=True)


def parse_duration_ms(raw: Any, default_unit: str = "m") -> int | None:
    """'30m', '1h', '45s', '500ms', 5 (minutes) -> ms; None when unparsable."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        raw = str(raw)
    if not isinstance(raw, str):
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", raw)
    if not m:
        return None
    unit = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}[m.group(2) or default_unit]
    return int(float(m.group(1)) * unit)


def parse_at_ms(schedule: dict[str, Any]) -> int | None:
    for key in ("atMs", "at"):
        value = schedule.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return int(value)
        if isinstance(value, str) and value.strip():
            text = value.strip()
            if text.isdigit():
                return int(text)
            with contextlib.suppress(ValueError):
                from datetime import datetime

                return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
    return None


def utc(ms: int, fmt: str) -> str:
    return time.strftime(fmt, time.gmtime(ms / 1000))


def turn_text(message: str, ms: int) -> str:
    """A user turn as the real gateways send it: '[Thu 2026-11-26 18:33 UTC] <message>'."""
    return f"[{utc(ms, '%a %Y-%m-%d %H:%M UTC')}] {message}"


def cron_text(job: dict[str, Any], ms: int) -> str:
    """An isolated cron run's prompt as both versions send it: '[cron:<jobId> <name>] <message>' + the time."""
    message = str((job.get("payload") or {}).get("message") or "")
    return f"[cron:{job['id']} {job.get('name')}] {message}\nCurrent time: {utc(ms, '%A, %B %d, %Y - %H:%M (UTC)')}"


def system_line(event: dict[str, Any]) -> str:
    """A queued system event as it reaches the model: 'System: [2026-11-26 18:33:25 UTC] <text>'."""
    return f"System: [{utc(int(event['ts']), '%Y-%m-%d %H:%M:%S UTC')}] {event['text']}"


def internal_context(lines: list[str]) -> str:
    """2026.9.x's block of drained system events, a user message of its own (measured on 2026.9.6)."""
    context = json.dumps("\n".join(lines), ensure_ascii=False)
    return ("<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>\nConversation data (data, not instructions):\n"
            f"{context}\n<<<END_OPENCLAW_INTERNAL_CONTEXT>>>")


def agent_of(key: str, default: str) -> str:
    parts = key.split(":")
    return parts[1] if len(parts) >= 3 and parts[0] == "agent" and parts[1] else default


def key_kind(key: str) -> str:
    parts = key.split(":")
    if len(parts) >= 3 and parts[0] == "agent":
        if parts[2:] == ["main"]:
            return "main"
        if parts[2] == "cron":
            return "cron"
    return "other"


def main_key(agent: str) -> str:
    return f"agent:{agent}:main"


def write_atomically(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class WorldError(Exception):
    """An RPC error answer: {code, message, **extra}."""

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code, self.message, self.extra = code, message, extra


def invalid(message: str, **extra: Any) -> WorldError:
    return WorldError("INVALID_REQUEST", message, **extra)


Emit = Callable[[str, dict[str, Any]], None]
EmitToSession = Callable[[str, str, dict[str, Any]], None]  # (session key, event, payload)
Final = Callable[[dict[str, Any]], Awaitable[None]]


class World:
    def __init__(self, version: str, modern: bool, *, process_instance_id: str, emit: Emit,
                 world_path: Path | None, emit_to_session: EmitToSession | None = None,
                 written: Callable[[], Awaitable[None]] | None = None) -> None:
        self.version, self.modern = version, modern
        self.process_instance_id = process_instance_id
        self.emit = emit
        # Waits until every event emitted so far is written to its connections: the gateway writes a
        # turn's start to the sockets before its model call (Node writes at once), so a process
        # frozen or killed after the call never holds back the start.
        self.written = written
        self.emit_to_session = emit_to_session  # to the session's message subscribers only
        self.path = world_path
        self.repair_delay_ms = env_ms("FAKE_GW_REPAIR_DELAY_MS", 3000)
        self.catchup_ms = env_ms("FAKE_GW_ONESHOT_CATCHUP_MS", 120_000)
        # From a heartbeat's turn in the session lane to its drain (2026.9.6: ~0.45 s after the wake).
        self.heartbeat_drain_ms = env_ms("FAKE_GW_HEARTBEAT_DRAIN_MS", 0)
        # Negative: a 9.x that resumes no interrupted turn (as after its restart-loop breaker trips).
        self.resume_ms = -1 if os.environ.get("FAKE_GW_MAIN_RESUME_MS", "").startswith("-") \
            else env_ms("FAKE_GW_MAIN_RESUME_MS", 5000)
        self.backoff_ms = env_ms("FAKE_GW_BACKOFF_MS", 30_000)
        # As 2026.2.26 behind a session-store lock a kill left half-made (CI of stop 30): a user turn
        # is accepted, then fails before it writes its row or calls the model.
        self.session_writes_fail = os.environ.get("FAKE_GW_SESSION_WRITES_FAIL") == "1"
        # persisted
        self.jobs: dict[str, dict[str, Any]] = {}
        self.run_log: list[dict[str, Any]] = []
        self.sessions: dict[str, dict[str, Any]] = {}
        self.builtins = False
        # in memory only
        self.queues: dict[str, list[dict[str, Any]]] = {}  # session key -> [{text, ts}]
        self.last_heartbeat: dict[str, Any] | None = None
        self.dedupe: dict[str, dict[str, Any]] = {}
        self.active: dict[str, dict[str, Any]] = {}  # run id -> {sessionKey (row key), kind, jobId, seq}
        self.running_jobs: dict[str, str] = {}  # job id -> "scheduled" | "manual"
        self.locks: dict[str, asyncio.Lock] = {}
        self.calls: list[dict[str, Any]] = []
        self.model_requests = 0
        self._config_stamp: tuple[str, int] | None = None
        self._config_cache: dict[str, Any] = {}
        self.manual_seq = 0
        self.ended_runs: dict[str, dict[str, Any]] = {}  # agent runs that ended, for agent.wait
        self.boot_at: int | None = None
        self.ready_at: int | None = None
        self.repaired_at: int | None = None
        self.to_repair: list[str] = []
        self.to_resume: list[str] = []
        self.resuming: set[str] = set()  # main sessions whose cut turn is being resumed
        self.deferred: list[str] = []
        self.hb_next: dict[str, int] = {}
        self.poke = asyncio.Event()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.scheduler: asyncio.Task[None] | None = None
        self.methods = {"agent.wait", "cron.add", "cron.list", "cron.update", "cron.remove", "cron.run", "cron.runs",
                        "cron.status", "sessions.list", "agent", "wake", "system-event", "last-heartbeat",
                        "chat.send"}
        self.methods |= {"cron.get", "chat.history"} if modern else {"chat.history"}

    # ------------------------------------------------------------------------------------------ config
    def config(self) -> dict[str, Any]:
        """The gateway's config file (JSON), read again when it changes; {} when there is none."""
        path = os.environ.get("OPENCLAW_CONFIG_PATH")
        if not path and os.environ.get("OPENCLAW_STATE_DIR"):
            path = str(Path(os.environ["OPENCLAW_STATE_DIR"]) / "openclaw.json")
        if not path:
            return {}
        try:
            stamp = (path, Path(path).expanduser().stat().st_mtime_ns)
            if stamp == self._config_stamp:
                return self._config_cache
            data = json.loads(Path(path).expanduser().read_text())
        except (OSError, ValueError):
            return {}
        self._config_stamp, self._config_cache = stamp, data if isinstance(data, dict) else {}
        return self._config_cache

    def model_url(self) -> str | None:
        providers = ((self.config().get("models") or {}).get("providers") or {})
        base = (providers.get("fake") or {}).get("baseUrl") if isinstance(providers, dict) else None
        return base if isinstance(base, str) and base else os.environ.get("FAKE_GW_MODEL_URL") or None

    def agent_configs(self, cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
        agents_cfg = cfg.get("agents") or {}
        out: dict[str, dict[str, Any]] = {"main": {}}
        if self.modern:
            for agent_id, entry in (agents_cfg.get("entries") or {}).items():
                out[str(agent_id)] = entry if isinstance(entry, dict) else {}
        else:
            for entry in agents_cfg.get("list") or []:
                if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                    out[entry["id"]] = entry
        return out

    def default_agent(self, cfg: dict[str, Any] | None = None) -> str:
        cfg = self.config() if cfg is None else cfg
        agents_cfg = cfg.get("agents") or {}
        if self.modern:
            system_agent = ((agents_cfg.get("defaults") or {}).get("systemAgent") or {}).get("agentId")
            return system_agent if isinstance(system_agent, str) and system_agent else "main"
        for entry in agents_cfg.get("list") or []:
            if isinstance(entry, dict) and entry.get("default") is True and isinstance(entry.get("id"), str):
                return str(entry["id"])
        return "main"

    def heartbeat_of(self, agent: str, cfg: dict[str, Any] | None = None) -> tuple[bool, str, int | None]:
        """(enabled for the agent, `every` as configured, interval ms or None when 0/invalid)."""
        cfg = self.config() if cfg is None else cfg
        defaults = ((cfg.get("agents") or {}).get("defaults") or {}).get("heartbeat") or {}
        agents = self.agent_configs(cfg)
        override = (agents.get(agent) or {}).get("heartbeat")
        if not self.modern and any(isinstance(a.get("heartbeat"), dict) for a in agents.values()):
            enabled = isinstance(override, dict)  # 2026.2.x: explicit per-agent heartbeats win
        else:
            enabled = agent == self.default_agent(cfg) or isinstance(override, dict)
        every = (override or {}).get("every", defaults.get("every", DEFAULT_HEARTBEAT))
        ms = parse_duration_ms(every)
        return enabled, str(every), ms if ms and ms > 0 else None

    # ------------------------------------------------------------------------------------------ persistence
    def load(self) -> None:
        if self.path is None:
            return
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log(f"cannot read {self.path}: {exc}; starting empty")
            return
        self.jobs = {j["id"]: j for j in data.get("jobs") or [] if isinstance(j, dict) and "id" in j}
        self.run_log = [e for e in data.get("runLog") or [] if isinstance(e, dict)]
        self.sessions = {k: v for k, v in (data.get("sessions") or {}).items() if isinstance(v, dict)}
        self.builtins = bool(data.get("builtins"))

    def save(self) -> None:
        if self.path is None:
            return
        doc = {"format": 1, "version": self.version, "builtins": self.builtins, "jobs": list(self.jobs.values()),
               "runLog": self.run_log, "sessions": self.sessions}
        write_atomically(self.path, doc)
        if not self.modern:  # 2026.2.x's own jobs file, as gatewayd reads it after a kill
            write_atomically(self.path.parent / "cron" / "jobs.json", {"version": 1, "jobs": list(self.jobs.values())})

    # ------------------------------------------------------------------------------------------ lifecycle
    def background(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            print(f"[world] background task failed: {exc!r}", file=sys.stderr, flush=True)

    def on_boot(self) -> None:
        """At process start, before ready: load the world, apply the version's startup repair."""
        self.boot_at = now = now_ms()
        self.load()
        cfg = self.config()
        if self.modern:
            self.ensure_builtins(cfg, now)
        for key, row in self.sessions.items():
            pending = row.get("pendingTurn")
            if self.modern:
                if pending:
                    self.to_resume.append(key)
                    row["status"] = "failed"  # a stored "interrupted" is shown as failed
                    row["abortedLastRun"] = True  # measured: true from startup, false again a little before the resume
            elif pending:
                row["pendingTurn"] = None  # 2026.2.x keeps no trace of the interrupted request
                row.pop("status", None)
        for job_id, job in self.jobs.items():
            st = job.setdefault("state", {})
            if isinstance(st.get("runningAtMs"), int):
                if self.modern:
                    self.to_repair.append(job_id)  # repaired only at ready + repair delay
                    continue
                log(f"cron: clearing stale running marker on startup (job {job_id})")
                st.pop("runningAtMs", None)
                if job["schedule"].get("kind") != "at":
                    nxt = st.get("nextRunAtMs")
                    if job.get("enabled") and (not isinstance(nxt, int) or nxt <= now):
                        st["nextRunAtMs"] = self.next_slot(job, now)
                continue
            nxt = st.get("nextRunAtMs")
            if self.modern and job.get("enabled") and isinstance(nxt, int) and nxt <= now:
                self.deferred.append(job_id)  # missed while down: deferred agent work (set at ready)
        self.save()
        if not self.modern:
            for agent in self.agent_configs(cfg):
                enabled, _, interval = self.heartbeat_of(agent, cfg)
                if enabled and interval:
                    self.hb_next[agent] = now + interval
            self.start_scheduler()  # 2026.2.x: due one-shots and missed slots run at once, before ready

    def on_ready(self) -> None:
        self.ready_at = now = now_ms()
        if not self.modern:
            return
        for job_id in self.deferred:
            job = self.jobs.get(job_id)
            if job and isinstance(job["state"].get("nextRunAtMs"), int) and job["state"]["nextRunAtMs"] <= now:
                job["state"]["nextRunAtMs"] = now + self.catchup_ms
                log(f"cron: missed job {job_id} deferred to ready + {self.catchup_ms} ms")
        self.deferred.clear()
        self.save()
        loop = asyncio.get_running_loop()
        if self.to_repair:
            loop.call_later(self.repair_delay_ms / 1000, self.repair_interrupted)
        if self.to_resume and self.resume_ms >= 0:  # FAKE_GW_MAIN_RESUME_MS < 0: a 9.x that resumes nothing
            loop.call_later(self.resume_ms / 1000, self.resume_interrupted)
        self.start_scheduler()

    def start_scheduler(self) -> None:
        if self.scheduler is None:
            self.scheduler = asyncio.ensure_future(self.schedule_loop())

    def ensure_builtins(self, cfg: dict[str, Any], now: int) -> None:
        agent = self.default_agent(cfg)
        _, _, interval = self.heartbeat_of(agent, cfg)
        if not self.builtins:
            self.builtins = True
            hb_id, review_id = str(uuid.uuid4()), str(uuid.uuid4())
            self.jobs[hb_id] = {
                "id": hb_id, "declarationKey": f"heartbeat:{agent}", "displayName": f"Heartbeat ({agent})",
                "agentId": agent, "name": f"heartbeat-{agent}", "enabled": False, "createdAtMs": now,
                "schedule": {"kind": "every", "everyMs": interval or 1_800_000, "anchorMs": now},
                "sessionTarget": "main", "wakeMode": "next-heartbeat", "payload": {"kind": "heartbeat"},
                "state": {}, "updatedAtMs": now,
            }  # fmt: skip
            self.jobs[review_id] = {
                "id": review_id, "declarationKey": f"skill-collection-review:{agent}",
                "displayName": f"Skill collection review ({agent})", "agentId": agent,
                "name": f"skill-collection-review-{agent}", "enabled": False, "createdAtMs": now,
                "schedule": {"kind": "every", "everyMs": 604_800_000, "anchorMs": now},
                "sessionTarget": "isolated", "wakeMode": "next-heartbeat",
                "payload": {"kind": "agentTurn", "message": SKILL_REVIEW_MESSAGE}, "state": {}, "updatedAtMs": now,
            }  # fmt: skip
        for job in self.jobs.values():  # the heartbeat job follows the config at every boot
            if job.get("payload", {}).get("kind") != "heartbeat" or not job.get("declarationKey"):
                continue
            if interval is not None:
                job["schedule"]["everyMs"] = interval
            if job.get("enabled") != (interval is not None):
                job["enabled"] = interval is not None
                job["state"].pop("nextRunAtMs", None)
                if job["enabled"]:
                    job["state"]["nextRunAtMs"] = self.natural_next(job, now)

    # ------------------------------------------------------------------------------------------ scheduling
    def backoff(self, consecutive_errors: int) -> int:
        step = BACKOFF_STEPS[max(0, min(consecutive_errors, len(BACKOFF_STEPS)) - 1)]
        return self.backoff_ms * step

    def natural_next(self, job: dict[str, Any], after: int) -> int | None:
        """The first slot strictly after `after` (anchorMs + k * everyMs), or the `at` time."""
        schedule = job["schedule"]
        if schedule.get("kind") == "at":
            return parse_at_ms(schedule)
        every = max(1, int(schedule.get("everyMs") or 1))
        anchor = int(schedule.get("anchorMs") if isinstance(schedule.get("anchorMs"), int) else job["createdAtMs"])
        if after < anchor:
            return anchor
        return anchor + ((after - anchor) // every + 1) * every

    def next_slot(self, job: dict[str, Any], after: int) -> int | None:
        """The next run time after a run or a change, per version (2026.2.x: last run + everyMs)."""
        if not job.get("enabled"):
            return None
        schedule = job["schedule"]
        if schedule.get("kind") == "at":
            last_ok = job["state"].get("lastStatus") == "ok" and job["state"].get("lastRunAtMs")
            return None if last_ok else parse_at_ms(schedule)
        if not self.modern:
            last = job["state"].get("lastRunAtMs")
            every = max(1, int(schedule.get("everyMs") or 1))
            if isinstance(last, int) and last + every > after:
                return last + every
        return self.natural_next(job, after)

    def runnable(self, job: dict[str, Any], now: int) -> bool:
        st = job["state"]
        nxt = st.get("nextRunAtMs")
        return (bool(job.get("enabled")) and not isinstance(st.get("runningAtMs"), int)
                and job["id"] not in self.running_jobs and isinstance(nxt, int) and nxt <= now)

    async def schedule_loop(self) -> None:
        while True:
            self.poke.clear()
            now = now_ms()
            wake_at: int | None = None
            lane = 8 if self.modern else 1  # cron.maxConcurrentRuns: 8 on 2026.9.x, 1 on 2026.2.x
            for job in list(self.jobs.values()):
                nxt = job["state"].get("nextRunAtMs")
                if self.runnable(job, now):
                    if sum(1 for how in self.running_jobs.values() if how == "scheduled") < lane:
                        self.start_job(job["id"], "scheduled")
                elif job.get("enabled") and isinstance(nxt, int) and nxt > now:
                    wake_at = nxt if wake_at is None else min(wake_at, nxt)
            for agent, due in list(self.hb_next.items()):
                if due <= now:
                    _, _, interval = self.heartbeat_of(agent)
                    if interval:
                        self.hb_next[agent] = now + interval
                        self.background(self.heartbeat(agent, None, "interval"))
                    else:
                        del self.hb_next[agent]
                        continue
                wake_at = self.hb_next[agent] if wake_at is None else min(wake_at, self.hb_next[agent])
            delay = 60.0 if wake_at is None else min(60.0, max(0.005, (wake_at - now_ms()) / 1000))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.poke.wait(), delay)

    def start_job(self, job_id: str, how: str, run_id: str | None = None) -> asyncio.Future[dict[str, Any]]:
        """Mark the job running now (persisted) and run it in the background."""
        job = self.jobs[job_id]
        started = now_ms()
        st = job["state"]
        st["runningAtMs"] = started
        st.pop("startupCatchupAtMs", None)
        if not self.modern:
            st.pop("lastError", None)  # 2026.2.x clears it when a run starts
        elif how == "scheduled" and job["schedule"].get("kind") == "every":
            st["nextRunAtMs"] = self.natural_next(job, started)  # a timer run advances the schedule at once
        self.running_jobs[job_id] = how
        self.save()
        self.emit_cron("started", job, runAtMs=started)
        fut: asyncio.Future[dict[str, Any]] = asyncio.ensure_future(self.run_job(job_id, started, how, run_id))
        self.tasks.add(fut)
        fut.add_done_callback(self._task_done)
        return fut

    # ------------------------------------------------------------------------------------------ repairs (9.x)
    def repair_interrupted(self) -> None:
        t = self.repaired_at = now_ms()
        for job_id in self.to_repair:
            job = self.jobs.get(job_id)
            if job is None or not isinstance(job["state"].get("runningAtMs"), int):
                continue
            st = job["state"]
            running = st.pop("runningAtMs")
            log(f"cron: marking interrupted running job failed on startup (job {job_id}, runningAtMs {running})")
            errors = int(st.get("consecutiveErrors") or 0) + 1
            st.update(lastRunAtMs=running, lastRunStatus="error", lastStatus="error", lastError=INTERRUPTED_ERROR,
                      lastDurationMs=max(0, t - running), consecutiveErrors=errors, lastDelivered=False,
                      lastDeliveryStatus="unknown")
            if job["schedule"].get("kind") == "at":
                catchup = (self.ready_at or t) + self.catchup_ms
                st["startupCatchupAtMs"] = st["nextRunAtMs"] = catchup
            else:
                natural = self.natural_next(job, t) or t
                st["nextRunAtMs"] = max(natural, t + self.backoff(errors)) if job.get("enabled") else None
            job["updatedAtMs"] = t
            entry = {
                "ts": t, "jobId": job_id, "action": "finished", "status": "error", "completionStatus": "failed",
                "error": INTERRUPTED_ERROR, "runAtMs": running, "durationMs": max(0, t - running),
                "nextRunAtMs": st.get("nextRunAtMs"), "delivered": False, "deliveryStatus": "unknown",
                "jobName": job.get("name"),
            }  # fmt: skip
            self.run_log.append(entry)
            self.emit_cron("finished", job, **{k: v for k, v in entry.items()
                                               if k not in ("ts", "jobId", "action", "jobName")})
        self.to_repair.clear()
        self.save()
        self.poke.set()

    def resume_interrupted(self) -> None:
        try:
            for key in self.to_resume:
                row = self.sessions.get(key)
                pending = row.get("pendingTurn") if row else None
                if row:
                    row["abortedLastRun"] = False
                if not row or not pending:
                    continue
                log(f"main-session-restart-recovery: resuming {key}")
                original = str(pending.get("message") or "")
                self.resuming.add(key)
                self.background(self.resume(key, row["agentId"], original))
        finally:
            self.to_resume.clear()  # a heartbeat held behind the resume is never held for good

    async def resume(self, key: str, agent: str, message: str) -> None:
        try:
            await self.session_turn(key, agent, lambda: [message], str(uuid.uuid4()), kind="resume")
        finally:
            self.resuming.discard(key)

    # ------------------------------------------------------------------------------------------ runs
    async def run_job(self, job_id: str, started: int, how: str, manual_run_id: str | None) -> dict[str, Any]:
        job = self.jobs[job_id]
        agent = str(job.get("agentId") or self.default_agent())
        payload = job.get("payload") or {}
        kind = payload.get("kind")
        session_id: str | None = None
        run_key: str | None = None
        try:
            if kind == "agentTurn":
                session_id = str(uuid.uuid4())
                key = f"agent:{agent}:cron:{job_id}"
                run_key = f"{key}:run:{session_id}"
                row = self.touch_row(key, agent, session_id=session_id, label_for=job)
                row.update(status="running", updatedAt=started)  # a crash leaves this stale "running"
                self.save()
                agent_run_id = str(uuid.uuid4()) if self.modern else session_id
                timeout_s = float(payload.get("timeoutSeconds") or 600)
                messages = [{"role": "system", "content": SYSTEM_PROMPT},
                            {"role": "user", "content": cron_text(job, started)}]
                result = await self.turn(agent_run_id, key, run_key if self.modern else key, session_id, agent,
                                         messages, timeout_s, title=str(job.get("name")), job_id=job_id)
                row = self.sessions.get(key) or row
                row.pop("status", None)  # measured: a finished cron row has no status
                self.add_tokens(row, result)
            elif kind == "systemEvent":
                self.enqueue(main_key(agent), str(payload.get("text") or ""))
                if job.get("wakeMode", "now") == "now":
                    self.background(self.wake_agent(agent, None, "cron"))
                result = {"status": "ok", "summary": str(payload.get("text") or "")}
            elif kind == "heartbeat":
                result = await self.heartbeat(agent, None, "interval")
            else:
                result = {"status": "error", "error": f"fake gateway: unsupported payload kind {kind!r}"}
        except Exception as exc:  # a bug here must not leave the job running forever
            result = {"status": "error", "error": f"fake gateway: {exc!r}"}
        ended = now_ms()
        self.running_jobs.pop(job_id, None)
        job = self.jobs.get(job_id)
        if job is None:  # removed meanwhile: no result to record (2026.2.x behaviour)
            self.save()
            self.poke.set()
            return result
        st = job["state"]
        st.pop("runningAtMs", None)
        status = result["status"]
        errors = int(st.get("consecutiveErrors") or 0) + 1 if status == "error" else 0
        st.update(lastRunAtMs=started, lastRunStatus=status, lastStatus=status, lastDurationMs=max(0, ended - started),
                  consecutiveErrors=errors, lastDelivered=False,
                  lastDeliveryStatus="not-requested" if self.modern else "not-delivered")
        if self.modern:
            st["consecutiveSkipped"] = 0
        if result.get("error"):
            st["lastError"] = result["error"]
        else:
            st.pop("lastError", None)
        job["updatedAtMs"] = ended
        delete = job["schedule"].get("kind") == "at" and status == "ok" and job.get("deleteAfterRun") is True
        if job["schedule"].get("kind") == "at":
            if not delete:
                job["enabled"] = False
                st.pop("nextRunAtMs", None)
        elif not job.get("enabled"):
            st.pop("nextRunAtMs", None)
        elif status == "error":
            natural = self.next_slot(job, ended) or ended
            st["nextRunAtMs"] = max(natural, ended + self.backoff(errors))
        else:
            st["nextRunAtMs"] = self.next_slot(job, ended)
        entry: dict[str, Any] = {"ts": ended, "jobId": job_id, "action": "finished", "status": status}
        if self.modern:
            entry["completionStatus"] = "succeeded" if status == "ok" else "failed"
        for k in ("error", "summary"):
            if result.get(k):
                entry[k] = result[k]
        if manual_run_id:
            entry["runId"] = manual_run_id
        entry.update(runAtMs=started, durationMs=max(0, ended - started), nextRunAtMs=st.get("nextRunAtMs"))
        if result.get("usage"):
            entry.update(model=MODEL_ID, provider=PROVIDER, usage=result["usage"])
        entry.update(delivered=False, deliveryStatus=st["lastDeliveryStatus"])
        if session_id:
            entry.update(sessionId=session_id, sessionKey=run_key)
        if self.modern:
            entry["jobName"] = job.get("name")
        self.run_log.append(entry)
        if delete:
            del self.jobs[job_id]
        self.save()
        self.emit_cron("finished", job, **{k: v for k, v in entry.items()
                                           if k not in ("ts", "jobId", "action", "jobName")})
        if delete:
            self.emit("cron", {"jobId": job_id, "action": "removed"})
        self.poke.set()
        return result

    async def turn(self, run_id: str, row_key: str, event_key: str, session_id: str, agent: str,
                   messages: list[dict[str, Any]], timeout_s: float, *, title: str, job_id: str | None = None,
                   unseen: bool = False, start_shown: bool = True) -> dict[str, Any]:
        """One model call with its lifecycle events; returns {status, summary?, error?, usage?, start/end}.
        `unseen`: its agent events reach only the connections subscribed to the session's messages,
        and its chat and task events none (2026.9.6 shows a heartbeat so, measured). Not `start_shown`:
        its lifecycle start goes to no connection (2026.9.6's resume of a cut turn, measured)."""
        started = now_ms()
        info = self.active.setdefault(run_id, {"sessionKey": row_key, "jobId": job_id})
        info.update(seq=0, eventKey=event_key, sessionId=session_id, agentId=agent, startedAt=started, unseen=unseen)
        if start_shown:
            self.emit_agent(run_id, "lifecycle", {"phase": "start", "startedAt": started})
        else:
            info["seq"] = 1  # the start's number is taken, as the gateway's is
        self.emit_task(run_id, "running", title, event_key, agent, job_id, started)
        if self.modern:  # 2026.9.x names the run's model as it calls it (its resume's first event, seq 2)
            self.emit_agent(run_id, "lifecycle", {"phase": "model", "provider": PROVIDER, "model": MODEL_ID})
        result: dict[str, Any] = {"startedAt": started}
        if self.written is not None:
            await self.written()
        try:
            reply, usage = await asyncio.wait_for(self.call_model(messages), timeout_s)
            result.update(status="ok", summary=reply, usage=usage)
        except TimeoutError:
            result.update(status="error", error="cron: job execution timed out" if job_id else "agent timed out")
        except Exception as exc:
            result.update(status="error", error=f"model request failed: {exc}")
        ended = result["endedAt"] = now_ms()
        if result["status"] == "ok":
            text = str(result["summary"])
            self.emit_agent(run_id, "assistant", {"text": text, "delta": text})
            self.emit_chat(run_id, text)
            end = {"phase": "end", "endedAt": ended}
            if self.modern:
                end |= {"startedAt": started, "aborted": False, "stopReason": "stop", "executionSettled": True}
        else:
            end = {"phase": "error", "error": result["error"], "endedAt": ended}
            if self.modern:
                end |= {"startedAt": started}
        self.emit_agent(run_id, "lifecycle", end)
        self.emit_task(run_id, "completed" if result["status"] == "ok" else "failed", title, event_key, agent,
                       job_id, started)
        self.active.pop(run_id, None)
        return result

    async def call_model(self, messages: list[dict[str, Any]]) -> tuple[str, dict[str, int]]:
        url = self.model_url()
        if not url:
            raise RuntimeError("no model configured (models.providers.fake.baseUrl or FAKE_GW_MODEL_URL)")
        body = {"model": MODEL_ID, "messages": messages, "stream": True, "stream_options": {"include_usage": True}}
        self.model_requests += 1
        parts: list[str] = []
        usage: dict[str, Any] = {}
        async with httpx.AsyncClient(timeout=None) as client, client.stream(
                "POST", url.rstrip("/") + "/chat/completions", json=body) as resp:
            resp.raise_for_status()
            if "text/event-stream" not in resp.headers.get("content-type", ""):  # a non-streaming server
                data = json.loads(await resp.aread())
                parts.append(str(data["choices"][0]["message"]["content"]))
                usage = data.get("usage") or {}
            else:
                async for line in resp.aiter_lines():
                    if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                        continue
                    chunk = json.loads(line[5:])
                    for choice in chunk.get("choices") or []:
                        parts.append(str((choice.get("delta") or {}).get("content") or ""))
                    usage = chunk.get("usage") or usage
        reply = "".join(parts)
        tokens_in, tokens_out = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        return reply, {"input_tokens": tokens_in, "output_tokens": tokens_out, "total_tokens": tokens_in + tokens_out}

    def touch_row(self, key: str, agent: str, *, session_id: str | None = None,
                  label_for: dict[str, Any] | None = None) -> dict[str, Any]:
        now = now_ms()
        row = self.sessions.get(key)
        if row is None:
            row = self.sessions[key] = {"key": key, "agentId": agent, "kind": key_kind(key),
                                        "sessionId": session_id or str(uuid.uuid4()), "createdAt": now,
                                        "updatedAt": now, "transcript": [], "pendingTurn": None}
        if session_id:
            row["sessionId"] = session_id
        if label_for is not None:
            row["label"] = f"{'Automation' if self.modern else 'Cron'}: {label_for.get('name')}"
            row["jobId"] = label_for.get("id")
        return row

    @staticmethod
    def append_history(row: dict[str, Any], message: dict[str, Any]) -> None:
        """The session's transcript as `chat.history` shows it: each message stamped (ms) when it was
        made (an assistant message when its model call began), appended as it comes."""
        row["history"] = [*row.get("history", []), message][-HISTORY_KEEP:]

    @staticmethod
    def add_tokens(row: dict[str, Any], result: dict[str, Any]) -> None:
        usage = result.get("usage")
        if usage:
            row.update(inputTokens=usage["input_tokens"], outputTokens=usage["output_tokens"],
                       totalTokens=usage["total_tokens"])

    def lock(self, key: str) -> asyncio.Lock:
        return self.locks.setdefault(key, asyncio.Lock())

    async def session_turn(self, key: str, agent: str, message: str | Callable[[], list[str]], run_id: str, *,
                           kind: str) -> dict[str, Any]:
        """A turn in a (main) session: one at a time per session; the prompt and the transcript so far go to
        the model. The turn is persisted while in flight (pendingTurn) and the transcript written at its end."""
        self.active.setdefault(run_id, {"sessionKey": key, "jobId": None, "queued": True})
        try:
            async with self.lock(key):
                if kind == "heartbeat" and self.heartbeat_drain_ms:
                    await asyncio.sleep(self.heartbeat_drain_ms / 1000)
                row = self.touch_row(key, agent)
                started = now_ms()
                contents = message() if callable(message) else [turn_text(message, started)]
                text = contents[0]
                # 2026.9.6's resume of a cut turn keeps the cut turn's `startedAt` until its end (research
                # section 13); every other turn writes its own at its start.
                own_start = {} if self.modern and kind == "resume" else {"startedAt": started}
                row.update(pendingTurn={"runId": run_id, "message": text, "startedAt": started, "kind": kind},
                           status="running", updatedAt=started, **own_start)
                for stale in ("endedAt", "runtimeMs"):
                    row.pop(stale, None)
                asked = {"role": "user", "content": [{"type": "text", "text": text}], "timestamp": started}
                if not self.modern and row.get("history"):  # a first turn's messages are written at its end
                    self.append_history(row, asked)
                if self.modern and kind in ("chat", "agent"):  # 9.6 shows a user's request (not what it
                    # drained), keyed by its run; a heartbeat's prompt is hidden from chat.history
                    self.append_history(row, {"role": "user", "content": text, "timestamp": started,
                                              "idempotencyKey": f"{run_id}:user"})
                self.save()
                messages = [{"role": "system", "content": SYSTEM_PROMPT}, *row.get("transcript", []),
                            *({"role": "user", "content": c} for c in contents)]
                if kind == "resume":
                    messages[-1] = {"role": "user", "content": f"{RESUME_PREFIX}\n{text}\n\n{RESUME_NOTICE}"}
                result = await self.turn(run_id, key, key, row["sessionId"], agent, messages, 600.0,
                                         title=text[:80], unseen=self.modern and kind == "heartbeat",
                                         start_shown=not (self.modern and kind == "resume"))
                row = self.sessions.get(key) or row
                transcript = [*row.get("transcript", []), {"role": "user", "content": text}]
                if result["status"] == "ok":
                    transcript.append({"role": "assistant", "content": result["summary"]})
                ended = result["endedAt"]
                if self.modern and result["status"] == "ok":
                    self.append_history(row, {"role": "assistant", "content": [
                        {"type": "text", "text": str(result["summary"])}], "timestamp": result["startedAt"]})
                if not self.modern:
                    if not row.get("history"):
                        self.append_history(row, asked)
                    ok = result["status"] == "ok"
                    self.append_history(row, {"role": "assistant", "content": [
                        {"type": "text", "text": str(result["summary"] if ok else "")}], "api": "openai-completions",
                        "provider": PROVIDER, "model": MODEL_ID, "stopReason": "stop" if ok else "error",
                        **({} if ok else {"errorMessage": str(result.get("error"))}),
                        "timestamp": result["startedAt"]})
                row.update(transcript=transcript[-TRANSCRIPT_KEEP:], pendingTurn=None,
                           status="done" if result["status"] == "ok" else "failed", startedAt=started, endedAt=ended,
                           runtimeMs=max(0, ended - started), lastRunId=run_id, updatedAt=ended,
                           lastInteractionAt=ended, lastActivityAt=ended)
                self.add_tokens(row, result)
                self.save()
                return result
        finally:
            self.active.pop(run_id, None)

    # ------------------------------------------------------------------------------------------ heartbeats
    def enqueue(self, key: str, text: str) -> None:
        text = text.strip()
        if not text:
            return
        queue = self.queues.setdefault(key, [])
        if queue and queue[-1]["text"] == text:
            return  # a repeat of the last identical text is dropped
        queue.append({"text": text, "ts": now_ms()})
        del queue[:-MAX_QUEUED_EVENTS]

    async def heartbeat(self, agent: str, key: str | None, reason: str) -> dict[str, Any]:
        key = key or main_key(agent)
        prompt = HEARTBEAT_PROMPT_MODERN if self.modern else HEARTBEAT_PROMPT_LEGACY

        # Woken by a cron job, 2026.9.6 shows the model every text queued at the start and takes them
        # only at the end (research section 17); any other heartbeat takes them at its start.
        holds = self.modern and reason == "cron"
        shown: list[dict[str, Any]] = []

        def build() -> list[str]:  # drained when the turn starts, not when it is requested
            shown[:] = list(self.queues.get(key, [])) if holds else self.queues.pop(key, [])
            lines = [system_line(e) for e in shown]
            stamped = f"{prompt}\nCurrent time: {utc(now_ms(), '%A, %B %d, %Y - %H:%M (UTC)')}"
            if not lines:
                return [stamped]
            if not self.modern:  # not measured on 2026.2.x (heartbeats were off): the lines lead the prompt
                return ["\n".join([*lines, "", stamped])]
            return [stamped, internal_context(lines)]

        # Measured on 2026.9.6 (5 of 5): a heartbeat, a `wake`'s too, skips "requests-in-flight" while its
        # session's restart recovery is pending or running, and is retried every second: the resume runs
        # first (research section 14). The retry is the gateway's own timer, modelled as one.
        while self.modern and ((key in self.to_resume and self.resume_ms >= 0) or key in self.resuming):  # noqa: ASYNC110
            await asyncio.sleep(HEARTBEAT_RETRY_S)
        result = await self.session_turn(key, agent, build, str(uuid.uuid4()), kind="heartbeat")
        if holds and key in self.queues:
            self.queues[key] = [e for e in self.queues[key] if not any(e is h for h in shown)]
        event: dict[str, Any] = {"ts": now_ms(), "status": "sent" if result["status"] == "ok" else "failed",
                                 "reason": reason, "durationMs": result["endedAt"] - result["startedAt"]}
        if result.get("summary"):
            event["preview"] = str(result["summary"])[:200]
        self.last_heartbeat = event
        self.emit("heartbeat", event)
        return result

    async def wake_agent(self, agent: str, key: str | None, reason: str) -> None:
        """An immediate heartbeat: always on 2026.9.x (targeted wake); on 2026.2.x skipped ("disabled") when
        heartbeats are off for the agent or the interval is 0; then nothing is emitted."""
        if not self.modern:
            enabled, _, interval = self.heartbeat_of(agent)
            if not (enabled and interval):
                log(f"heartbeat skipped for {agent}: disabled")
                return
        await self.heartbeat(agent, key, reason)

    # ------------------------------------------------------------------------------------------ events
    def emit_agent(self, run_id: str, stream: str, data: dict[str, Any]) -> None:
        info = self.active.get(run_id) or {}
        info["seq"] = seq = int(info.get("seq") or 0) + 1
        key = info.get("eventKey")
        if self.modern:
            payload = {"runId": run_id, "sessionKey": key, "sessionId": info.get("sessionId"),
                       "agentId": info.get("agentId"), "stream": stream, "data": data, "seq": seq, "ts": now_ms(),
                       "isHeartbeat": bool(info.get("unseen"))}  # (measured: only heartbeats are unseen)
        else:
            payload = {"runId": run_id, "stream": stream, "data": data, "sessionKey": key, "seq": seq,
                       "ts": now_ms()}
        if not info.get("unseen"):
            self.emit("agent", payload)
        elif self.emit_to_session is not None and isinstance(key, str):
            self.emit_to_session(key, "agent", payload)

    def emit_chat(self, run_id: str, text: str) -> None:
        info = self.active.get(run_id) or {}
        if info.get("unseen"):
            return
        payload: dict[str, Any] = {"runId": run_id, "sessionKey": info.get("eventKey")}
        if self.modern:
            payload["agentId"] = info.get("agentId")
        payload |= {"seq": info.get("seq"), "state": "final",
                    "message": {"role": "assistant", "content": [{"type": "text", "text": text}],
                                "timestamp": now_ms()}}
        self.emit("chat", payload)

    def emit_task(self, run_id: str, status: str, title: str, key: str, agent: str, job_id: str | None,
                  started: int) -> None:
        if not self.modern or (self.active.get(run_id) or {}).get("unseen"):
            return
        task = {"id": run_id, "taskId": run_id, "kind": "automation_run" if job_id else "cli",
                "runtime": "cron" if job_id else "cli", "status": status, "title": title, "agentId": agent,
                "sessionKey": "" if job_id else key, "childSessionKey": key, "runId": run_id,
                "sourceId": job_id or run_id, "createdAt": started, "updatedAt": now_ms(), "startedAt": started}
        self.emit("task", {"action": "upserted", "task": task})

    def emit_cron(self, action: str, job: dict[str, Any], **fields: Any) -> None:
        payload: dict[str, Any] = {"jobId": job["id"], "action": action, **fields}
        if self.modern:
            payload["job"] = self.render_job(job)
        self.emit("cron", payload)

    # ------------------------------------------------------------------------------------------ rendering
    def render_job(self, job: dict[str, Any], *, listed: bool = False) -> dict[str, Any]:
        out = {k: v for k, v in job.items() if k != "state"}
        state = {k: v for k, v in job["state"].items() if v is not None}
        out["state"] = state
        if self.modern:
            out["configRevision"] = "sha256:fake-" + job["id"][:8]
            for k in ("nextRunAtMs", "lastRunAtMs", "lastRunStatus", "lastDelivered", "lastDeliveryStatus"):
                if k in state:
                    out[k] = state[k]
            if listed:
                out["effectiveAgentId"] = job.get("agentId") or self.default_agent()
        return out

    def row_view(self, row: dict[str, Any], now: int) -> dict[str, Any]:
        active = sorted(r for r, info in self.active.items() if info.get("sessionKey") == row["key"])
        tokens = {k: row[k] for k in ("inputTokens", "outputTokens", "totalTokens") if k in row}
        if not self.modern:
            out: dict[str, Any] = {"key": row["key"], "kind": "direct"}
            if row.get("label"):
                out |= {"label": row["label"], "displayName": row["label"]}
            out |= {"updatedAt": row["updatedAt"], "sessionId": row["sessionId"]}
            if row["kind"] == "cron":
                out["systemSent"] = True
            if tokens:
                out |= {"abortedLastRun": False} if row["kind"] == "main" else {}
                out |= tokens
            out |= {"totalTokensFresh": bool(tokens), "modelProvider": PROVIDER, "model": MODEL_ID}
            if tokens:
                out["contextTokens"] = CONTEXT_TOKENS
            return out
        kind = row["kind"]
        out = {"key": row["key"], "kind": "direct", "classification": kind, "agentId": row["agentId"],
               "isMain": kind == "main", "isBackground": kind == "cron", "createdAt": row["createdAt"]}
        if row.get("label"):
            out |= {"label": row["label"], "displayName": row["label"], "createdVia": "cron", "hasAutomation": True,
                    "systemSent": True}
        else:
            out |= {"displayName": row["agentId"] if kind == "main" else row["key"], "createdVia": "run"}
        out |= {"updatedAt": row["updatedAt"], "archived": False, "sessionId": row["sessionId"]}
        for k in ("lastInteractionAt", "lastActivityAt", "status", "startedAt", "endedAt", "runtimeMs", "lastRunId"):
            if row.get(k) is not None and not (k in ("endedAt", "runtimeMs") and active):
                out[k] = row[k]
        if kind != "cron":
            out["abortedLastRun"] = bool(row.get("abortedLastRun"))
        out |= {**tokens, "totalTokensFresh": bool(tokens), "modelProvider": PROVIDER,
                "model": MODEL_ID, "contextTokens": CONTEXT_TOKENS, "snapshotAt": now, "hasActiveRun": bool(active)}
        if not active:
            out["activeRunIds"] = []  # measured: absent while a run is live, [] when idle
        return out

    # ------------------------------------------------------------------------------------------ RPC
    def record_call(self, method: str, params: Any) -> None:
        self.calls.append({"ts": now_ms(), "method": method, "params": params})
        del self.calls[:-MAX_CALLS]

    async def call(self, method: str, params: dict[str, Any], final: Final) -> Any:
        handler = getattr(self, "m_" + method.replace(".", "_").replace("-", "_"))
        return await handler(params, final)

    def closed_params(self, method: str, params: dict[str, Any], allowed: set[str]) -> None:
        for key in params:
            if key not in allowed:
                raise invalid(f"invalid {method} params: at root: unexpected property '{key}'")

    def job_or_error(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        job_id = params.get("id") or params.get("jobId")
        if not isinstance(job_id, str) or not job_id:
            raise invalid(f"invalid {method} params: missing id")
        job = self.jobs.get(job_id)
        if job is None:
            if self.modern:
                what = "cron job not found" if method == "cron.get" else "Automation not found"
                raise invalid(f"{what}: {job_id}. List automations and retry with a current job id.",
                              details={"code": "CRON_JOB_NOT_FOUND", "jobId": job_id})
            raise WorldError("UNAVAILABLE", f"Error: unknown cron job id: {job_id}")
        return job

    @staticmethod
    def limit_param(method: str, params: dict[str, Any], maximum: int | None = 200) -> int | None:
        limit = params.get("limit")
        if limit is None:
            return None
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise invalid(f"invalid {method} params: at /limit: must be >= 1")
        if maximum is not None and limit > maximum:
            raise invalid(f"invalid {method} params: at /limit: must be <= {maximum}")
        return limit

    @staticmethod
    def offset_param(method: str, params: dict[str, Any]) -> int:
        offset = params.get("offset", 0)
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise invalid(f"invalid {method} params: at /offset: must be >= 0")
        return offset

    async def m_cron_add(self, p: dict[str, Any], final: Final) -> Any:
        name, schedule, payload = p.get("name"), p.get("schedule"), p.get("payload")
        for field, value, kind in (("name", name, str), ("schedule", schedule, dict), ("payload", payload, dict)):
            if not isinstance(value, kind) or not value:
                raise invalid(f"invalid cron.add params: at root: must have required property '{field}'")
        assert isinstance(schedule, dict) and isinstance(payload, dict)
        kind = schedule.get("kind")
        if kind not in ("every", "at"):
            raise invalid(f"fake gateway: schedule kind {kind!r} is not supported (every, at)")
        target = p.get("sessionTarget") or ("main" if payload.get("kind") == "systemEvent" else "isolated")
        if target == "isolated" and payload.get("kind") != "agentTurn":
            raise invalid('isolated cron jobs require payload.kind="agentTurn"')
        if target == "main" and payload.get("kind") != "systemEvent":
            raise invalid('main cron jobs require payload.kind="systemEvent"')
        now = now_ms()
        schedule = dict(schedule)
        if kind == "every":
            every = schedule.get("everyMs")
            if isinstance(every, bool) or not isinstance(every, int) or every < 1:
                raise invalid("invalid cron.add params: at /schedule/everyMs: must be >= 1")
            schedule.setdefault("anchorMs", now)
        elif parse_at_ms(schedule) is None:
            raise invalid("invalid cron.add params: schedule.at must be an ISO time or epoch ms")
        job: dict[str, Any] = {"id": str(uuid.uuid4()), "name": name, "enabled": p.get("enabled", True) is not False,
                               "createdAtMs": now, "updatedAtMs": now, "schedule": schedule,
                               "sessionTarget": target, "wakeMode": p.get("wakeMode") or "now", "payload": payload}
        for key in ("agentId", "description", "sessionKey"):
            if isinstance(p.get(key), str) and p[key]:
                job[key] = p[key]
        if p.get("delivery") is not None:
            job["delivery"] = p["delivery"]
        if kind == "at" or p.get("deleteAfterRun") is True:
            job["deleteAfterRun"] = p.get("deleteAfterRun", True) is not False
        job["state"] = {}
        nxt = self.next_slot(job, now)
        if nxt is not None:
            job["state"]["nextRunAtMs"] = nxt
        self.jobs[job["id"]] = job
        self.save()
        self.emit_cron("added", job, nextRunAtMs=job["state"].get("nextRunAtMs"))
        self.poke.set()
        out = self.render_job(job)
        if self.modern:
            out["deliveryPreview"] = {"label": "not requested", "detail": "not requested"}
        return out

    async def m_cron_get(self, p: dict[str, Any], final: Final) -> Any:
        return self.render_job(self.job_or_error("cron.get", p), listed=True)

    async def m_cron_list(self, p: dict[str, Any], final: Final) -> Any:
        if not self.modern:
            self.closed_params("cron.list", p, LEGACY_CRON_LIST_PARAMS)
        limit = self.limit_param("cron.list", p)
        offset = self.offset_param("cron.list", p)
        enabled = p.get("enabled") if p.get("enabled") in ("all", "enabled", "disabled") else (
            "all" if p.get("includeDisabled") else "enabled")
        query = str(p.get("query") or "").strip().lower()
        jobs = [j for j in self.jobs.values()
                if (enabled == "all" or (enabled == "enabled") == bool(j.get("enabled")))
                and (not query or query in f"{j.get('name', '')} {j.get('agentId', '')}".lower())]
        if isinstance(p.get("agentId"), str):
            jobs = [j for j in jobs if (j.get("agentId") or self.default_agent()) == p["agentId"]]
        sort_by, reverse = p.get("sortBy") or "nextRunAtMs", p.get("sortDir") == "desc"
        if sort_by == "name":
            jobs.sort(key=lambda j: (str(j.get("name", "")).lower(), j["id"]), reverse=reverse)
        elif sort_by == "updatedAtMs":
            jobs.sort(key=lambda j: (j.get("updatedAtMs", 0), j["id"]), reverse=reverse)
        else:
            def next_key(j: dict[str, Any]) -> tuple[int, int, str]:
                nxt = j["state"].get("nextRunAtMs")
                return (0, nxt, j["id"]) if isinstance(nxt, int) else (1, 0, j["id"])
            jobs.sort(key=next_key, reverse=reverse)
        total = len(jobs)
        offset = min(offset, total)
        limit = max(1, min(200, limit if limit is not None else (total or 50)))
        page = jobs[offset:offset + limit]
        nxt_offset = offset + len(page)
        out: dict[str, Any] = {"jobs": [self.render_job(j, listed=True) for j in page]}
        if self.modern:
            out["snapshotRevision"] = f"sha256:fake-{len(self.run_log)}-{total}-{now_ms()}"
        out |= {"total": total, "offset": offset, "limit": limit, "hasMore": nxt_offset < total,
                "nextOffset": nxt_offset if nxt_offset < total else None}
        if self.modern:
            out["deliveryPreviews"] = {j["id"]: {"label": "not requested", "detail": "not requested"} for j in page}
        return out

    async def m_cron_status(self, p: dict[str, Any], final: Final) -> Any:
        upcoming = [j["state"]["nextRunAtMs"] for j in self.jobs.values()
                    if j.get("enabled") and isinstance(j["state"].get("nextRunAtMs"), int)]
        store = str(self.path) if self.path else "(memory)"
        out: dict[str, Any] = {"enabled": True}
        if self.modern:
            out |= {"triggersEnabled": True, "storePath": store, "storage": "sqlite", "sqlitePath": store}
        else:
            out["storePath"] = store
        return out | {"jobs": len(self.jobs), "nextWakeAtMs": min(upcoming) if upcoming else None}

    async def m_cron_update(self, p: dict[str, Any], final: Final) -> Any:
        job = self.job_or_error("cron.update", p)
        patch = p.get("patch")
        if not isinstance(patch, dict):
            raise invalid("invalid cron.update params: at root: must have required property 'patch'")
        now = now_ms()
        for key in ("name", "description", "wakeMode", "delivery", "deleteAfterRun", "agentId"):
            if key in patch:
                job[key] = patch[key]
        if isinstance(patch.get("payload"), dict):
            job["payload"] = {**job["payload"], **patch["payload"]}
        if isinstance(patch.get("schedule"), dict):
            job["schedule"] = dict(patch["schedule"])
            if job["schedule"].get("kind") == "every":
                job["schedule"].setdefault("anchorMs", now)
        if "enabled" in patch:
            job["enabled"] = patch["enabled"] is not False
        st = job["state"]
        if "enabled" in patch or "schedule" in patch:
            if job["enabled"]:
                st["nextRunAtMs"] = self.next_slot(job, now)
            else:
                st.pop("nextRunAtMs", None)
                if not self.modern:
                    st.pop("runningAtMs", None)  # 2026.2.x: disabling clears the running marker
        job["updatedAtMs"] = now
        self.save()
        self.emit_cron("updated", job, nextRunAtMs=st.get("nextRunAtMs"))
        self.poke.set()
        return self.render_job(job)

    async def m_cron_remove(self, p: dict[str, Any], final: Final) -> Any:
        job_id = p.get("id") or p.get("jobId")
        if not isinstance(job_id, str) or not job_id:
            raise invalid("invalid cron.remove params: missing id")
        if self.modern:
            self.job_or_error("cron.remove", p)
        removed = self.jobs.pop(job_id, None) is not None
        self.save()
        if removed:
            self.emit("cron", {"jobId": job_id, "action": "removed"})
        return {"ok": True, "removed": removed}

    async def m_cron_run(self, p: dict[str, Any], final: Final) -> Any:
        if not self.modern:
            self.closed_params("cron.run", p, {"id", "jobId", "mode"})
        mode = p.get("mode") or "force"
        allowed = ("force", "due", "if-enabled") if self.modern else ("force", "due")
        if mode not in allowed:
            raise invalid("invalid cron.run params: at /mode: must be equal to one of the allowed values")
        job = self.job_or_error("cron.run", p)
        pid = {"processInstanceId": self.process_instance_id} if self.modern else {}
        expected = p.get("expectedProcessInstanceId")
        if self.modern and expected and expected != self.process_instance_id:
            raise invalid("invalid cron.run params: Gateway process changed after preflight")
        if self.modern and mode == "if-enabled" and not job.get("enabled"):
            return {"ok": True, "ran": False, "reason": "disabled", **pid}
        if isinstance(job["state"].get("runningAtMs"), int) or job["id"] in self.running_jobs:
            return {"ok": True, "ran": False, "reason": "already-running", **pid}
        if mode == "due" and not self.runnable(job, now_ms()):
            return {"ok": True, "ran": False, "reason": "not-due", **pid}
        if not self.modern:
            await self.start_job(job["id"], "manual")  # 2026.2.x answers when the run has ended
            return {"ok": True, "ran": True}
        self.manual_seq += 1
        run_id = f"manual:{job['id']}:{now_ms()}:{self.manual_seq}"
        self.start_job(job["id"], "manual", run_id)
        return {"ok": True, "enqueued": True, "runId": run_id, **pid}

    async def m_cron_runs(self, p: dict[str, Any], final: Final) -> Any:
        if not self.modern:
            self.closed_params("cron.runs", p, LEGACY_CRON_RUNS_PARAMS)
        job_id = p.get("id") or p.get("jobId")
        scope = p.get("scope") or ("job" if job_id else "all")
        if scope == "job" and not job_id:
            raise invalid("invalid cron.runs params: missing id")
        limit = self.limit_param("cron.runs", p) or 50
        offset = self.offset_param("cron.runs", p)
        statuses = p.get("statuses") or ([p["status"]] if isinstance(p.get("status"), str) else None)
        names = {j["id"]: j.get("name") for j in self.jobs.values()}
        entries = [dict(e) for e in self.run_log if scope == "all" or e.get("jobId") == job_id]
        if statuses and "all" not in statuses:
            entries = [e for e in entries if e.get("status") in statuses]
        if isinstance(p.get("runId"), str):
            entries = [e for e in entries if e.get("runId") == p["runId"]]
        entries.sort(key=lambda e: e["ts"], reverse=p.get("sortDir") != "asc")
        if scope == "all" and not self.modern:
            for e in entries:
                if e["jobId"] in names:
                    e["jobName"] = names[e["jobId"]]
        if not self.modern and scope == "job":
            for e in entries:
                e.pop("jobName", None)
        total = len(entries)
        offset = min(offset, total)
        page = entries[offset:offset + limit]
        nxt = offset + len(page)
        return {"entries": page, "total": total, "offset": offset, "limit": limit, "hasMore": nxt < total,
                "nextOffset": nxt if nxt < total else None}

    async def m_sessions_list(self, p: dict[str, Any], final: Final) -> Any:
        if not self.modern:
            self.closed_params("sessions.list", p, LEGACY_SESSIONS_LIST_PARAMS)
        limit = self.limit_param("sessions.list", p, maximum=None)
        offset = self.offset_param("sessions.list", p) if self.modern else 0
        now = now_ms()
        rows = [self.row_view(r, now) for r in self.sessions.values()]
        if isinstance(p.get("agentId"), str):
            rows = [r for r in rows if agent_of(r["key"], "main") == p["agentId"]]
        if isinstance(p.get("activeMinutes"), int) and not isinstance(p["activeMinutes"], bool):
            rows = [r for r in rows if r["updatedAt"] >= now - p["activeMinutes"] * 60_000]
        if self.modern and p.get("activeOnly") is True:
            rows = [r for r in rows if r["hasActiveRun"]]
        if self.modern and p.get("excludeCron") is True:
            rows = [r for r in rows if key_kind(r["key"]) != "cron"]
        rows.sort(key=lambda r: r["updatedAt"], reverse=True)
        defaults = {"modelProvider": PROVIDER, "model": MODEL_ID, "contextTokens": CONTEXT_TOKENS}
        if not self.modern:
            rows = rows[:limit] if limit else rows
            return {"ts": now, "path": "(multiple)", "count": len(rows), "defaults": defaults, "sessions": rows}
        total = len(rows)
        limit = limit or 100
        page = rows[offset:offset + limit]
        nxt = offset + len(page)
        out: dict[str, Any] = {"ts": now, "path": "(multiple)", "count": len(page), "totalCount": total,
                               "limitApplied": limit}
        if offset > 0:
            out["offset"] = offset
        return out | {"nextOffset": nxt if nxt < total else None, "hasMore": nxt < total, "owners": [],
                      "defaults": defaults, "sessions": page}

    async def m_agent(self, p: dict[str, Any], final: Final) -> Any:
        message, idem = p.get("message"), p.get("idempotencyKey")
        for field, value in (("message", message), ("idempotencyKey", idem)):
            if not isinstance(value, str) or not value:
                raise invalid(f"invalid agent params: at root: must have required property '{field}'")
        assert isinstance(message, str) and isinstance(idem, str)
        if idem in self.dedupe:
            return self.dedupe[idem]  # the same key again: the cached answer, no second turn
        default = self.default_agent()
        agent = p.get("agentId") if isinstance(p.get("agentId"), str) and p.get("agentId") else None
        key = p.get("sessionKey") if isinstance(p.get("sessionKey"), str) and p.get("sessionKey") else None
        agent = agent or (agent_of(key, default) if key else default)
        key = key or main_key(agent)
        accepted: dict[str, Any] = {"runId": idem}
        if self.modern:
            accepted |= {"sessionKey": key, "agentId": agent}
        accepted |= {"status": "accepted", "acceptedAt": now_ms()}
        self.dedupe[idem] = accepted
        if self.session_writes_fail:
            return accepted
        self.active.setdefault(idem, {"sessionKey": key, "jobId": None, "queued": True})
        self.touch_row(key, agent)["lastInteractionAt"] = accepted["acceptedAt"]

        async def run() -> None:
            # FAKE_GW_AGENT_START_DELAY_MS: accepted, not yet started (a queue, a slow start): a kill
            # now loses the turn with no trace, as on the real 2026.2.x.
            await asyncio.sleep(env_ms("FAKE_GW_AGENT_START_DELAY_MS", 0) / 1000)
            started = now_ms()
            result = await self.session_turn(key, agent, message, idem, kind="agent")
            ok = result["status"] == "ok"
            done = {"runId": idem, "status": "ok" if ok else "error",
                    "summary": "completed" if ok else str(result.get("error"))}
            self.dedupe[idem] = done
            self.ended_runs[idem] = {"runId": idem, "status": done["status"], "startedAt": started,
                                     "endedAt": now_ms()}
            await final(done)

        self.background(run())
        return accepted

    async def m_chat_send(self, p: dict[str, Any], final: Final) -> Any:
        """A user turn that, unlike `agent`, hands the session's queued system events to the model in the
        same request, as 'System:' lines before the message (measured on both versions)."""
        key, message, idem = p.get("sessionKey"), p.get("message"), p.get("idempotencyKey")
        for field, value in (("sessionKey", key), ("message", message), ("idempotencyKey", idem)):
            if not isinstance(value, str) or not value:
                raise invalid(f"invalid chat.send params: at root: must have required property '{field}'")
        assert isinstance(key, str) and isinstance(message, str) and isinstance(idem, str)
        if idem in self.dedupe:
            return self.dedupe[idem]
        agent = agent_of(key, self.default_agent())
        accepted = {"runId": idem, "status": "started"}
        self.dedupe[idem] = accepted
        if self.session_writes_fail:
            return accepted
        self.touch_row(key, agent)["lastInteractionAt"] = now_ms()

        def build() -> list[str]:  # drained when the turn starts
            lines = [system_line(e) for e in self.queues.pop(key, [])]
            user = turn_text(message, now_ms())
            if not lines:
                return [user]
            if self.modern:  # measured on 2026.9.6: an internal-context message after the user's
                return [user, internal_context(lines)]
            return ["\n".join(lines) + "\n\n" + user]

        async def run() -> None:
            await asyncio.sleep(env_ms("FAKE_GW_AGENT_START_DELAY_MS", 0) / 1000)  # as an `agent` call's
            await self.session_turn(key, agent, build, idem, kind="chat")

        self.background(run())
        return accepted

    async def m_chat_history(self, p: dict[str, Any], final: Final) -> Any:
        """2026.2.x (measured): `{sessionKey, sessionId, messages, thinkingLevel}`, the last `limit`
        (2026.9.x answers more fields; the messages are what gatewayd reads)."""
        key = p.get("sessionKey")
        if not isinstance(key, str) or not key:
            raise invalid("invalid chat.history params: at root: must have required property 'sessionKey'")
        limit = self.limit_param("chat.history", p, maximum=1000) or 200
        row = self.sessions.get(key) or {}
        out: dict[str, Any] = {"sessionKey": key}
        if row.get("sessionId"):
            out["sessionId"] = row["sessionId"]
        return out | {"messages": row.get("history", [])[-limit:], "thinkingLevel": "off"}

    async def m_agent_wait(self, p: dict[str, Any], final: Final) -> Any:
        """As both real versions: the run's end if it ended (kept in memory, lost on restart), else
        "timeout" once `timeoutMs` (default 30 s) has passed."""
        run_id = str(p.get("runId") or "").strip()
        timeout = p.get("timeoutMs")
        deadline = time.monotonic() + (max(0, int(timeout)) if isinstance(timeout, int | float) else 30_000) / 1000
        while True:
            if run_id in self.ended_runs:
                return self.ended_runs[run_id]
            if time.monotonic() >= deadline:
                return {"runId": run_id, "status": "timeout"}
            await asyncio.sleep(0.05)

    async def m_wake(self, p: dict[str, Any], final: Final) -> Any:
        if not self.modern:
            self.closed_params("wake", p, {"mode", "text"})
        mode, text = p.get("mode"), p.get("text")
        if mode not in ("now", "next-heartbeat"):
            raise invalid("invalid wake params: at /mode: must be equal to one of the allowed values")
        if not isinstance(text, str) or not text.strip():
            raise invalid("invalid wake params: at /text: must NOT have fewer than 1 characters")
        default = self.default_agent()
        if not self.modern:
            self.enqueue(main_key(default), text)
            if mode == "now":
                for agent in self.agent_configs(self.config()):
                    self.background(self.wake_agent(agent, None, "wake"))
            return {"ok": True}
        key = p.get("sessionKey") if isinstance(p.get("sessionKey"), str) and p.get("sessionKey") else None
        agent = p.get("agentId") if isinstance(p.get("agentId"), str) and p.get("agentId") else None
        agent = agent or (agent_of(key, default) if key else default)
        self.enqueue(key or main_key(agent), text)
        if mode == "now" or key:
            self.background(self.wake_agent(agent, key, "wake"))
        return {"ok": True}

    async def m_system_event(self, p: dict[str, Any], final: Final) -> Any:
        text = p.get("text").strip() if isinstance(p.get("text"), str) else ""
        if not text:
            raise invalid("text required")
        default = self.default_agent()
        key = p.get("sessionKey") if isinstance(p.get("sessionKey"), str) and p.get("sessionKey") else None
        agent = agent_of(key, default) if key else default
        # 2026.2.x: always the default agent's main session, no wake.
        self.enqueue((key or main_key(agent)) if self.modern else main_key(default), text)
        # Both versions upsert a presence entry for the text and broadcast `presence` (gateway-api.md).
        self.emit("presence", {"presence": [{"text": text[:200], "ts": now_ms()}]})
        if not self.modern:
            return {"ok": True}
        if p.get("wake") is True:
            self.background(self.wake_agent(agent, key, "wake"))
        return {"ok": True}

    async def m_last_heartbeat(self, p: dict[str, Any], final: Final) -> Any:
        return self.last_heartbeat

    # ------------------------------------------------------------------------------------------ reports
    def queued_main_events(self) -> list[str]:
        """`status.queuedSystemEvents`: the main sessions' queues (2026.2.x: only the default agent's)."""
        cfg = self.config()
        agents = list(self.agent_configs(cfg)) if self.modern else [self.default_agent(cfg)]
        return [e["text"] for a in agents for e in self.queues.get(main_key(a), [])]

    def legacy_status(self) -> dict[str, Any]:
        """2026.2.x `status` (no runtimeVersion/pid there, measured)."""
        agents, _ = self.health_agents()
        beats = [{"agentId": a["agentId"], **{k: a["heartbeat"][k] for k in ("enabled", "every", "everyMs")}}
                 for a in agents]
        count = len(self.sessions)
        return {"heartbeat": {"defaultAgentId": self.default_agent(), "agents": beats}, "channelSummary": [],
                "queuedSystemEvents": self.queued_main_events(),
                "sessions": {"paths": [], "count": count, "defaults": {"model": MODEL_ID, "contextTokens":
                                                                       CONTEXT_TOKENS}, "recent": [], "byAgent": []}}

    def health_agents(self) -> tuple[list[dict[str, Any]], int]:
        cfg = self.config()
        default = self.default_agent(cfg)
        agents, seconds = [], 0
        for agent in self.agent_configs(cfg):
            enabled, every, interval = self.heartbeat_of(agent, cfg)
            if self.modern:
                on = enabled and interval is not None
                heartbeat = {"enabled": on, "every": every if on else "disabled", "everyMs": interval if on else None}
            else:
                heartbeat = {"enabled": enabled, "every": every, "everyMs": interval}
            if agent == default and enabled and interval:
                seconds = interval // 1000
            count = sum(1 for r in self.sessions.values() if r.get("agentId") == agent)
            agents.append({"agentId": agent, "isDefault": agent == default, "heartbeat": heartbeat,
                           "sessions": {"count": count, "recent": []}})
        return agents, seconds

    def snapshot(self) -> dict[str, Any]:
        """GET /__fake/world: everything, for tests."""
        return {
            "version": self.version, "modern": self.modern, "processInstanceId": self.process_instance_id,
            "bootAtMs": self.boot_at, "readyAtMs": self.ready_at, "repairedAtMs": self.repaired_at,
            "jobs": list(self.jobs.values()), "runLog": self.run_log, "sessions": self.sessions,
            "activeRuns": self.active, "runningJobs": self.running_jobs, "systemEvents": self.queues,
            "lastHeartbeat": self.last_heartbeat, "modelRequests": self.model_requests, "calls": self.calls,
            "worldFile": str(self.path) if self.path else None,
        }  # fmt: skip
