"""What the alert tests and the alert benchmark listen with: an HTTP receiver on loopback (it can
answer 500 for the first N requests, or never answer at all) and a recording command (a script
that appends the JSON it gets on stdin, its arrival time and its environment's names to a file).
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from gatewayd_dev.harness import wait_until


class Receiver:
    def __init__(self, fail_first: int = 0, hang: bool = False) -> None:
        self.fail_first = fail_first
        self.hang = hang
        self.received: list[dict[str, Any]] = []  # each: path, headers, body (JSON or text), at (wall clock)
        self.requests = 0
        self.release = threading.Event()  # a hanging receiver answers once this is set (at the end)
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                at = time.time()
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.requests += 1
                    n = receiver.requests
                if receiver.hang:
                    receiver.release.wait(120)
                    return
                if n <= receiver.fail_first:
                    self.send_response(500)
                    self.end_headers()
                    return
                try:
                    body: Any = json.loads(raw)
                except ValueError:
                    body = raw.decode("utf-8", errors="replace")
                with receiver.lock:
                    receiver.received.append({"path": self.path, "headers": dict(self.headers), "body": body,
                                              "at": at})
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def kinds(self) -> list[str]:
        with self.lock:
            return [r["body"]["kind"] for r in self.received if isinstance(r["body"], dict)]

    def wait_kind(self, kind: str, timeout: float = 30.0, count: int = 1) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            with self.lock:
                hits = [r for r in self.received if isinstance(r["body"], dict) and r["body"]["kind"] == kind]
            return hits[count - 1] if len(hits) >= count else None
        result: dict[str, Any] = wait_until(found, timeout, f"{count}x {kind!r} alert at {self.url}")
        return result


@contextlib.contextmanager
def receiver(fail_first: int = 0, hang: bool = False) -> Iterator[Receiver]:
    r = Receiver(fail_first, hang)
    r.thread.start()
    try:
        yield r
    finally:
        r.release.set()
        r.server.shutdown()
        r.server.server_close()


RECORDER = """import json, os, sys, time
doc = json.load(sys.stdin)
line = json.dumps({"at": time.time(), "alert": doc, "env": sorted(os.environ)})
with open(sys.argv[1], "a") as fh:
    fh.write(line + "\\n")
"""


class Recorder:
    """A command notifier that records each alert to a JSON-lines file."""

    def __init__(self, folder: Path) -> None:
        self.script = folder / "record_alert.py"
        self.script.write_text(RECORDER)
        self.out = folder / "alerts.jsonl"

    @property
    def command(self) -> list[str]:
        return [sys.executable, str(self.script), str(self.out)]

    def records(self) -> list[dict[str, Any]]:
        try:
            return [json.loads(line) for line in self.out.read_text().splitlines() if line.strip()]
        except FileNotFoundError:
            return []

    def kinds(self) -> list[str]:
        return [r["alert"]["kind"] for r in self.records()]

    def wait_kind(self, kind: str, timeout: float = 30.0, count: int = 1,
                  where: Callable[[dict[str, Any]], bool] = lambda r: True) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            hits = [r for r in self.records() if r["alert"]["kind"] == kind and where(r)]
            return hits[count - 1] if len(hits) >= count else None
        result: dict[str, Any] = wait_until(found, timeout, f"{count}x {kind!r} alert in {self.out}")
        return result
