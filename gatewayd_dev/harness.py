"""Run gatewayd as a real process in a test, read its event log, and leave nothing behind.

Every process a test starts carries GATEWAYD_TEST_MARK=<uuid> in its environment (gatewayd passes
its environment on to the gateway, and the gateway to its children), so `marked_processes` finds
every one of them, whatever process group or session it moved to: the orphan check of every test.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil

from supervisor.control import paths

REPO = Path(__file__).resolve().parents[1]
FAKE_GATEWAY = Path(__file__).resolve().with_name("fake_gateway.py")
MARK = "GATEWAYD_TEST_MARK"


def free_port_block(size: int = 10) -> int:
    """A base port with `size` free ports after it (2026.2.x also binds port + 2)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + size > 65000:
            continue
        ok = True
        for p in range(base, base + size):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port block")


def marked_processes(mark: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error):
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
            if p.environ().get(MARK) == mark:
                found.append(p)
    return found


def wait_until(pred: Callable[[], Any], timeout: float, what: str, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


class Gatewayd:
    def __init__(self, root: Path, port: int, settings: dict[str, dict[str, Any]] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.root = root
        self.port = port
        self.mark = str(uuid.uuid4())
        self.state_dir = root / "gatewayd state"  # a space, as in ~/Library/Application Support
        self.config_file = root / "gatewayd.toml"
        self.env = {**os.environ, MARK: self.mark, **(env or {})}
        self.procs: list[subprocess.Popen[bytes]] = []
        base: dict[str, dict[str, Any]] = {
            "": {"state_dir": str(self.state_dir), "log_level": "debug"},
            "gateway": {"port": port, "state_dir": str(root / "gw-state"),
                        "config_path": str(root / "gw-state" / "openclaw.json")},
            "supervise": {"stop_budget_s": 10.0, "backoff_initial_s": 0.2, "backoff_max_s": 1.0},
            "probes": {"interval_s": 0.5, "timeout_s": 0.5},
        }
        for section, values in (settings or {}).items():
            base.setdefault(section, {}).update(values)
        self.write_config(base)

    def write_config_sections(self, extra: dict[str, dict[str, Any]]) -> None:
        """Rewrite the config with these sections merged over the current ones (one level deep)."""
        for section, values in extra.items():
            self.sections.setdefault(section, {}).update(values)
        self.write_config(self.sections)

    def write_config(self, sections: dict[str, dict[str, Any]]) -> None:
        self.sections = sections
        lines: list[str] = []
        for k, v in sections.get("", {}).items():
            lines.append(f"{k} = {toml_value(v)}")
        for section, values in sections.items():
            if section:
                lines.append(f"[{section}]")
                lines += [f"{k} = {toml_value(v)}" for k, v in values.items()]
        self.config_file.write_text("\n".join(lines) + "\n")
        self.config_file.chmod(0o600)

    @property
    def log_file(self) -> Path:
        return self.state_dir / "logs" / "gatewayd.log"

    def start(self, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        out = open(self.root / f"gatewayd-{len(self.procs)}.out", "wb")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-m", "supervisor", "run", "-c", str(self.config_file)],
                                env={**self.env, **(extra_env or {})}, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        out.close()
        self.procs.append(proc)
        return proc

    def run_cli(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "supervisor", *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout, cwd=REPO)

    def events(self) -> list[dict[str, Any]]:
        out = []
        try:
            text = self.log_file.read_text()
        except FileNotFoundError:
            return []
        for line in text.splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e.get("event") == name]

    def wait_event(self, name: str, count: int = 1, timeout: float = 30.0,
                   where: Callable[[dict[str, Any]], bool] = lambda e: True) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            hits = [e for e in self.named(name) if where(e)]
            return hits[count - 1] if len(hits) >= count else None
        result: dict[str, Any] = wait_until(found, timeout, f"{count}x {name!r} in {self.log_file}")
        return result

    def spawned_pids(self) -> list[int]:
        return [int(e["pid"]) for e in self.named("gateway_spawned")]

    def alive_marked(self) -> list[psutil.Process]:
        gatewayd_pids = {p.pid for p in self.procs}
        return [p for p in marked_processes(self.mark) if p.pid not in gatewayd_pids]

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        for p in marked_processes(self.mark):
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(marked_processes(self.mark), timeout=10)
        # A killed gatewayd leaves its socket, and the private folder it made for a state dir too long
        # for one, in the machine's temporary folder: every test run would leave one per test.
        sock = paths.recorded_path(self.state_dir)
        if sock is not None and sock.name == "control.sock" and sock.parent.name.startswith("gatewayd-"):
            with contextlib.suppress(OSError):
                sock.unlink()
            paths.forget(sock)


def fake_settings(version: str = "2026.9.6", **env: str) -> dict[str, dict[str, Any]]:
    return {"gateway": {"command": [sys.executable, str(FAKE_GATEWAY)],
                        "env": {"FAKE_GW_VERSION": version, **env}}}


@contextlib.contextmanager
def gatewayd(tmp_path: Path, settings: dict[str, dict[str, Any]] | None = None,
             env: dict[str, str] | None = None) -> Iterator[Gatewayd]:
    g = Gatewayd(tmp_path, free_port_block(), settings, env)
    try:
        yield g
    finally:
        g.cleanup()


def kill(pid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    os.kill(pid, sig)
