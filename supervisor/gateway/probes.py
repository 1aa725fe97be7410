"""Probes: is the gateway started, is it alive? One answer per call, as a `ProbeOutcome`.

Which probe a gateway gets is decided from its capabilities, here, in `probe_for`:
- current versions answer JSON on `/startupz` (readiness: `status: "started"`) and `/healthz`;
- 2026.2.x answers every path with the Control UI's HTML (status 200 proves nothing), so there
  readiness and liveness are the WebSocket handshake plus the `health` RPC on one connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

import httpx

from supervisor.core.model import ProbeOutcome
from supervisor.errors import (
    GatewayAuthError,
    GatewayError,
    GatewayProtocolError,
    GatewayTimeout,
    GatewayUnavailable,
)
from supervisor.gateway.launch import LaunchSpec
from supervisor.gateway.rpc import RpcClient


class Probe(Protocol):
    async def check(self, booting: bool) -> ProbeOutcome: ...

    async def close(self) -> None: ...


class HttpProbe:
    def __init__(self, base_url: str, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        # verify=False: a gateway with TLS on loopback usually has a self-signed certificate.
        self._client = httpx.AsyncClient(base_url=base_url, timeout=timeout_s, verify=False,
                                         follow_redirects=False, trust_env=False)

    async def check(self, booting: bool) -> ProbeOutcome:
        path = "/startupz" if booting else "/healthz"
        try:
            r = await self._client.get(path)
        except httpx.ConnectError:
            return ProbeOutcome.REFUSED
        except (httpx.TimeoutException, httpx.RemoteProtocolError, httpx.ReadError):
            # A SIGSTOPped or stuck gateway accepts the TCP connection (the kernel does) and never answers.
            return ProbeOutcome.TIMEOUT
        except httpx.HTTPError:
            return ProbeOutcome.BAD
        try:
            body = r.json()
        except ValueError:
            return ProbeOutcome.BAD
        if not isinstance(body, dict):
            return ProbeOutcome.BAD
        status = body.get("status")
        if status == "draining":
            return ProbeOutcome.DRAINING
        if booting:
            if r.status_code == 200 and status == "started":
                return ProbeOutcome.OK
            return ProbeOutcome.STARTING if status == "starting" else ProbeOutcome.BAD
        if r.status_code == 200 and body.get("ok") is True:
            return ProbeOutcome.OK
        return ProbeOutcome.BAD

    async def close(self) -> None:
        await self._client.aclose()


class RpcHealthProbe:
    """Legacy probe: the handshake plus `health`, over one persistent connection."""

    def __init__(self, spec: LaunchSpec, timeout_s: float) -> None:
        self.spec = spec
        self.timeout_s = timeout_s
        self._rpc: RpcClient | None = None

    async def check(self, booting: bool) -> ProbeOutcome:
        try:
            if self._rpc is None or self._rpc.closed.is_set():
                await self._drop()
                rpc = RpcClient(self.spec.ws_url, self.spec.auth, self.spec.capabilities.protocol,
                                connect_timeout_s=max(self.timeout_s, 5.0))
                await rpc.connect()
                self._rpc = rpc
            await self._rpc.call("health", {}, timeout_s=self.timeout_s)
            return ProbeOutcome.OK
        except GatewayTimeout:
            await self._drop()
            return ProbeOutcome.TIMEOUT
        except (GatewayAuthError, GatewayProtocolError):
            await self._drop()
            return ProbeOutcome.BAD
        except GatewayUnavailable as exc:
            await self._drop()
            if exc.refused:
                return ProbeOutcome.REFUSED
            # Accepted, then closed or answered "not ready": alive but not serving.
            return ProbeOutcome.STARTING if booting else ProbeOutcome.TIMEOUT
        except GatewayError:
            await self._drop()
            return ProbeOutcome.BAD

    async def _drop(self) -> None:
        if self._rpc is not None:
            rpc, self._rpc = self._rpc, None
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await rpc.close()

    async def close(self) -> None:
        await self._drop()


def probe_for(spec: LaunchSpec, timeout_s: float) -> Probe:
    if spec.capabilities.http_probes:
        return HttpProbe(spec.http_base, timeout_s)
    return RpcHealthProbe(spec, timeout_s)
