"""Work the e2e tests give the real gateway: cron jobs and main-session turns, over its RPC."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from supervisor.gateway.launch import GatewayAuth, Secret
from supervisor.gateway.rpc import RpcClient
from tests.e2e.conftest import sandbox


@asynccontextmanager
async def gateway_rpc(sb: sandbox.Sandbox) -> AsyncIterator[RpcClient]:
    rpc = RpcClient(f"ws://127.0.0.1:{sb.gw_port}/", GatewayAuth("token", Secret(sb.token), "", False),
                    3 if sb.legacy else 4)
    await rpc.connect()
    try:
        yield rpc
    finally:
        await rpc.close()


def hourly_soon(seconds: float = 4.0) -> dict[str, Any]:
    """An hourly schedule whose first slot is a few seconds away: the gateway's own timer fires it,
    and its next slot is too far away to pass for a retry."""
    return {"kind": "every", "everyMs": 3_600_000, "anchorMs": int(time.time() * 1000) + int(seconds * 1000)}


def at_soon(seconds: float = 4.0) -> dict[str, Any]:
    return {"kind": "at", "at": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + seconds))}


async def add_job(rpc: RpcClient, name: str, schedule: dict[str, Any], message: str, agent: str | None = None) -> str:
    job = await rpc.call("cron.add", {
        "name": name, "schedule": schedule, "sessionTarget": "isolated", "delivery": {"mode": "none"},
        "payload": {"kind": "agentTurn", "message": message, "timeoutSeconds": 120},
        **({"agentId": agent} if agent else {})})
    return str(job["id"] if "id" in job else job["job"]["id"])


async def send_and_leave(rpc: RpcClient, method: str, params: dict[str, Any]) -> None:
    """Start something whose answer comes late or never (2.x's blocking cron.run, an agent turn)."""
    call = asyncio.ensure_future(rpc.call(method, params, timeout_s=5))
    await asyncio.wait({call}, timeout=5)
    call.cancel()


def main_turn(message: str) -> dict[str, Any]:
    return {"message": message, "idempotencyKey": str(uuid.uuid4()), "agentId": "main",
            "sessionKey": "agent:main:main"}


async def add_hourly(sb: sandbox.Sandbox, mark: str) -> str:
    async with gateway_rpc(sb) as rpc:
        return await add_job(rpc, f"hourly-{mark}", hourly_soon(), f"CRON-{mark} reply PONG")
