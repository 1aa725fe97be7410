#!/usr/bin/env python3
"""A tiny OpenAI-compatible model server for tests (stdlib only).

Endpoints (127.0.0.1 only):
  GET  /v1/models              -> {"object": "list", "data": [{"id": "fake-model", ...}]}
  POST /v1/chat/completions    -> streaming (SSE) or not, replying with a fixed text

Streaming: the role chunk is sent at once, then the server sleeps `delay` seconds, then sends
the content chunk, a stop chunk with `usage`, and `data: [DONE]`.

Every chat request is appended to a JSON-lines log (one line, flushed and fsynced) BEFORE the
delay starts, so a test can wait for the line and know the model call is in flight:
  {"ts": <epoch float>, "n": <1-based sequence>, "model": ..., "stream": bool,
   "messages": [...raw...], "text": "<all text parts joined by newlines>"}

Configuration: CLI arguments win over environment variables.
  --port / FAKE_MODEL_PORT          (0 = pick a free port; the first stdout line is FAKE_MODEL_PORT=<n>)
  --delay / FAKE_MODEL_DELAY        seconds (float) before the content is sent
  --delay-file / FAKE_MODEL_DELAY_FILE   if this file exists, its float content overrides the delay,
                                    read again on every request (change the delay without a restart)
  --reply / FAKE_MODEL_REPLY        reply text (default PONG)
  --log / FAKE_MODEL_LOG            request log path
  --done-log / FAKE_MODEL_DONE_LOG  when each request's answer was fully written (or failed):
                                    {"n": <its sequence number>, "ts": <epoch float>, "ok": bool}

Importable:
  start_fake_model(port=0, delay=0.0, reply="PONG", log_path=None, delay_file=None)
      -> (server, thread, port); stop with server.shutdown(); server.server_close()
  read_log(path) -> list[dict]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MODEL_ID = "fake-model"


def message_text(messages: Any) -> str:
    """All text of a messages array: content may be a string or a list of {type: text} parts."""
    out: list[str] = []
    if not isinstance(messages, list):
        return ""
    for m in messages:
        if not isinstance(m, dict):
            continue
        content = m.get("content")
        if isinstance(content, str):
            out.append(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    out.append(part["text"])
                elif isinstance(part, str):
                    out.append(part)
    return "\n".join(out)


class FakeModelServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, *, delay: float = 0.0, reply: str = "PONG",
                 log_path: str | os.PathLike | None = None,
                 delay_file: str | os.PathLike | None = None,
                 done_log: str | os.PathLike | None = None):
        super().__init__(addr, _Handler)
        self.done_log = Path(done_log) if done_log else None
        self.delay = float(delay)
        self.reply = reply
        self.log_path = Path(log_path) if log_path else None
        self.delay_file = Path(delay_file) if delay_file else None
        self._lock = threading.Lock()
        self.count = 0

    @property
    def port(self) -> int:
        return self.server_address[1]

    def current_delay(self) -> float:
        if self.delay_file is not None:
            try:
                return float(self.delay_file.read_text().strip())
            except (OSError, ValueError):
                pass
        return self.delay

    def record(self, body: dict) -> int:
        """Append one request line (flushed + fsynced) and return its sequence number."""
        with self._lock:
            self.count += 1
            n = self.count
            if self.log_path is not None:
                messages = body.get("messages")
                line = {"ts": time.time(), "n": n, "model": body.get("model"),
                        "stream": bool(body.get("stream")), "messages": messages,
                        "text": message_text(messages)}
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.log_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(line, ensure_ascii=False) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
            return n

    def record_done(self, n: int, ok: bool) -> None:
        """When the answer to request `n` left (a chaos run tells a finished call from a cut one)."""
        if self.done_log is None:
            return
        with self._lock, open(self.done_log, "a", encoding="utf-8") as f:
            f.write(json.dumps({"n": n, "ts": time.time(), "ok": ok}) + "\n")
            f.flush()


class _Handler(BaseHTTPRequestHandler):
    server: FakeModelServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # quiet
        pass

    def _json(self, code: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = self.path.split("?", 1)[0].rstrip("/")
        if path in ("/v1/models", "/models"):
            self._json(200, {"object": "list", "data": [
                {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "fake"}]})
        elif path in ("", "/health", "/healthz"):
            self._json(200, {"ok": True})
        else:
            self._json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

    def do_POST(self):
        path = self.path.split("?", 1)[0].rstrip("/")
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if path not in ("/v1/chat/completions", "/chat/completions"):
            self._json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
            return
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("body is not an object")
        except ValueError as e:
            self._json(400, {"error": {"message": f"bad json: {e}", "type": "invalid_request_error"}})
            return
        # The delay as the request arrives, read before it is logged: a test that sees the line and
        # sets the next requests' delay must not change this one's (a CI trial's cron run answered
        # in 0.4 s so, and finished before the kill it was meant to meet).
        delay = self.server.current_delay()
        n = self.server.record(body)  # before the delay: the test may kill the caller now
        reply = self.server.reply
        model = body.get("model") or MODEL_ID
        cid = "chatcmpl-" + uuid.uuid4().hex[:24]
        created = int(time.time())
        prompt_tokens = max(1, len(message_text(body.get("messages")).split()))
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": 1,
                 "total_tokens": prompt_tokens + 1}
        try:
            if body.get("stream"):
                self._stream(cid, created, model, reply, delay, usage, n)
                return
            else:
                if delay > 0:
                    time.sleep(delay)
                self._json(200, {
                    "id": cid, "object": "chat.completion", "created": created, "model": model,
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": reply}}],
                    "usage": usage})
        except (BrokenPipeError, ConnectionResetError):
            self.server.record_done(n, False)  # the caller went away (killed gateway): fine
        else:
            self.server.record_done(n, True)

    def _stream(self, cid, created, model, reply, delay, usage, n):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

        def chunk(delta: dict, finish: str | None = None, **extra) -> None:
            obj = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
            self.wfile.write(b"data: " + json.dumps(obj).encode() + b"\n\n")
            self.wfile.flush()

        try:
            chunk({"role": "assistant", "content": ""})
            if delay > 0:
                time.sleep(delay)
            chunk({"content": reply})
            chunk({}, "stop", usage=usage)
        except (BrokenPipeError, ConnectionResetError):
            self.server.record_done(n, False)  # cut before the answer was complete
            return
        # The answer is complete with the stop chunk: a client may hang up before [DONE].
        self.server.record_done(n, True)
        try:
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass


def start_fake_model(port: int = 0, delay: float = 0.0, reply: str = "PONG",
                     log_path: str | os.PathLike | None = None,
                     delay_file: str | os.PathLike | None = None,
                     done_log: str | os.PathLike | None = None):
    """Start the server in a daemon thread. Returns (server, thread, port)."""
    server = FakeModelServer(("127.0.0.1", int(port)), delay=delay, reply=reply,
                             log_path=log_path, delay_file=delay_file, done_log=done_log)
    thread = threading.Thread(target=server.serve_forever, name="fake-model", daemon=True)
    thread.start()
    return server, thread, server.port


def read_log(path: str | os.PathLike) -> list[dict]:
    """All complete request lines of a log written by this server ([] if it does not exist)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line being written
    return out


def main(argv: list[str] | None = None) -> None:
    env = os.environ
    p = argparse.ArgumentParser(description="Fake OpenAI-compatible model server")
    p.add_argument("--port", type=int, default=int(env.get("FAKE_MODEL_PORT", "0") or 0))
    p.add_argument("--delay", type=float, default=float(env.get("FAKE_MODEL_DELAY", "0") or 0))
    p.add_argument("--delay-file", default=env.get("FAKE_MODEL_DELAY_FILE") or None)
    p.add_argument("--reply", default=env.get("FAKE_MODEL_REPLY", "PONG"))
    p.add_argument("--log", default=env.get("FAKE_MODEL_LOG") or None)
    p.add_argument("--done-log", default=env.get("FAKE_MODEL_DONE_LOG") or None)
    a = p.parse_args(argv)
    server = FakeModelServer(("127.0.0.1", a.port), delay=a.delay, reply=a.reply,
                             log_path=a.log, delay_file=a.delay_file, done_log=a.done_log)
    print(f"FAKE_MODEL_PORT={server.port}", flush=True)
    def _term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
