"""Issue 17: the secrets reach the log relay without any environment variable, and every one of them
(the hooks token and a short password too) is redacted from the gateway's log.

The relay is spawned as gatewayd spawns it (`GatewayChild.spawn`), with a stand-in gateway that
prints the secrets and then waits to be stopped; the relay's /proc entry is read while it runs.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

from supervisor import logs
from supervisor.gateway.capabilities import for_version
from supervisor.gateway.child import GatewayChild
from supervisor.gateway.launch import GatewayAuth, LaunchSpec, Secret

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc/<pid>/environ")]

TOKEN = "tok-9c1e5b2d4a6c8e0f1a2b3c4d5e6f7a8b"
HOOKS_TOKEN = "hooks-7f3a9c1e5b2d4a6c"
PASSWORD = "hunter2"  # shorter than 8: redacted all the same

# Prints every secret on stdout and stderr, then waits for SIGTERM (the log is read meanwhile).
GATEWAY = """import signal, sys
line = "token={} hooks={} pw={}".format(*sys.argv[1:4])
print(line, flush=True)
print("stderr " + line, file=sys.stderr, flush=True)
print("ready", flush=True)
signal.sigwait({signal.SIGTERM})
"""


def spec(tmp_path: Path) -> LaunchSpec:
    return LaunchSpec(
        argv=(sys.executable, "-c", GATEWAY, TOKEN, HOOKS_TOKEN, PASSWORD),
        env={"PATH": os.environ.get("PATH", os.defpath)}, port=1, host="127.0.0.1", tls=False,
        auth=GatewayAuth("token", Secret(TOKEN), "test", False), capabilities=for_version("2026.9.6"),
        config_path=tmp_path / "openclaw.json", state_dir=tmp_path,
        other_secrets=(Secret(HOOKS_TOKEN), Secret(PASSWORD)))


def wait_for_line(path: Path, text: str, deadline_s: float = 20.0) -> list[str]:
    end = time.monotonic() + deadline_s
    while True:
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        if text in lines:
            return lines
        assert time.monotonic() < end, f"{text!r} never reached {path}: {lines}"
        time.sleep(0.02)


async def test_the_relay_gets_its_secrets_through_a_pipe_and_redacts_every_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # gatewayd started from a shell that holds the token: it must not reach the relay either.
    monkeypatch.setenv("OPENCLAW_GATEWAY_TOKEN", TOKEN)
    monkeypatch.setenv("SOME_HOOKS_SECRET", HOOKS_TOKEN)
    output = logs.OutputFile(tmp_path / "logs" / "gateway.log", 1 << 20, 1)
    child = GatewayChild(spec(tmp_path), output)
    await child.spawn()
    relay = child._relay
    assert relay is not None
    try:
        child.open_gate()
        lines = await asyncio.to_thread(wait_for_line, output.path, "ready")

        proc = Path(f"/proc/{relay.pid}")
        environ = (proc / "environ").read_bytes()
        cmdline = (proc / "cmdline").read_bytes()
        for secret in (TOKEN, HOOKS_TOKEN, PASSWORD):
            assert secret.encode() not in environ, secret
            assert secret.encode() not in cmdline, secret
        assert b"GATEWAYD_REDACT" not in environ
        assert cmdline.split(b"\0")[2:4] == [b"-m", b"supervisor.logrelay"]
        # The secrets pipe was read and closed: the relay's only pipe left is the gateway's output.
        pipes = [fd.name for fd in (proc / "fd").iterdir() if os.readlink(fd).startswith("pipe:")]
        assert pipes == ["0"]

        assert sorted(lines) == sorted([f"token={logs.REDACTED} hooks={logs.REDACTED} pw={logs.REDACTED}",
                                        f"stderr token={logs.REDACTED} hooks={logs.REDACTED} pw={logs.REDACTED}",
                                        "ready"])
    finally:
        await child.stop(5.0)
        assert child._relay_task is not None
        await asyncio.wait_for(child._relay_task, 20)
    assert relay.returncode == 0
    text = output.path.read_text(encoding="utf-8")
    assert TOKEN not in text and HOOKS_TOKEN not in text and PASSWORD not in text
