"""Logging: structlog set up once. JSON lines to a size-rotated file, readable lines on the console.

Every known secret (gateway token or password, hook token) is replaced by `***` in every event
field and in every line of the gateway's own output before anything is written.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Iterable, MutableMapping
from pathlib import Path
from typing import Any

# structlog (with its dev renderer, which pulls in rich) and logging.handlers are imported where
# they are used: a module that only names its logger (`log = logs.get(...)`) at import, such as
# the store the CLI reads, must not cost the CLI their import time (issue 16).

REDACTED = "***"


def traceback_text(exc: BaseException, limit: int = 4000) -> str:
    """An exception's traceback as one log field, its last `limit` characters (where it was raised)."""
    import traceback

    return "".join(traceback.format_exception(exc))[-limit:]


def private_opener(path: str, flags: int) -> int:
    """`open(..., opener=private_opener)`: a log file is created 0600 whatever the umask (it can
    hold session keys and job names), and one made earlier under a looser umask is tightened."""
    fd = os.open(path, flags, 0o600)
    os.fchmod(fd, 0o600)
    return fd


def private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_uid == os.getuid():
        path.chmod(0o700)


class Redactor:
    """Holds the secret values to scrub; shared by the event log and the gateway output log."""

    def __init__(self) -> None:
        self._secrets: tuple[str, ...] = ()

    def add(self, values: Iterable[str]) -> None:
        # Every configured secret, whatever its length (`pw=hunter2` must not reach a log). Only the
        # empty string is skipped (it would match between every character). A very short secret
        # (1-2 characters) turns each of its occurrences in ordinary text into `***` and makes the
        # logs hard to read: chosen on purpose, since a garbled log is visible and harmless while a
        # leaked secret cannot be taken back (and such a secret protects next to nothing anyway).
        merged = set(self._secrets) | {v for v in values if v}
        self._secrets = tuple(sorted(merged, key=len, reverse=True))

    def text(self, s: str) -> str:
        for secret in self._secrets:
            if secret in s:
                s = s.replace(secret, REDACTED)
        return s

    def value(self, v: Any) -> Any:
        if isinstance(v, str):
            return self.text(v)
        if isinstance(v, dict):
            return {k: self.value(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return type(v)(self.value(x) for x in v)
        return v

    def __call__(self, _logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        return {k: self.value(v) for k, v in event_dict.items()}


REDACTOR = Redactor()


def setup(log_dir: Path | None, level: str = "info", max_bytes: int = 10 << 20, backups: int = 5,
          console: bool = True) -> None:
    import logging
    import logging.handlers

    import structlog

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        REDACTOR,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    root.setLevel(level.upper())
    if console:
        h = logging.StreamHandler(sys.stderr)
        if not sys.stderr.isatty():
            # Under a service manager stderr is a file nobody rotates: the full log is in
            # gatewayd.log; stderr keeps what needs attention.
            h.setLevel(logging.WARNING)
        renderer: Any = (structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
                         if sys.stderr.isatty() else structlog.processors.JSONRenderer())
        h.setFormatter(structlog.stdlib.ProcessorFormatter(processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer], foreign_pre_chain=shared))
        root.addHandler(h)
    if log_dir is not None:

        class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
            """gatewayd.log and its rotations, 0600 whatever the umask."""

            def _open(self) -> Any:
                return open(self.baseFilename, self.mode, encoding=self.encoding, errors=self.errors,
                            opener=private_opener)

        private_dir(log_dir)
        fh = PrivateRotatingFileHandler(log_dir / "gatewayd.log", maxBytes=max_bytes, backupCount=backups,
                                        encoding="utf-8")
        fh.setFormatter(structlog.stdlib.ProcessorFormatter(processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta, structlog.processors.JSONRenderer()],
            foreign_pre_chain=shared))
        root.addHandler(fh)
    for noisy in ("websockets", "httpx", "httpcore", "apscheduler", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class _LazyLogger:
    """`structlog.get_logger(name)`, resolved on first use rather than at import."""

    __slots__ = ("_logger", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: Any = None

    def __getattr__(self, attr: str) -> Any:
        logger = self._logger
        if logger is None:
            import structlog

            logger = self._logger = structlog.get_logger(self._name)
        return getattr(logger, attr)

    def __repr__(self) -> str:
        return f"<lazy logger {self._name!r}>"


def get(name: str = "gatewayd") -> Any:
    return _LazyLogger(name)


class OutputFile:
    """Where the gateway's output goes (written by the relay process, `supervisor.logrelay`) and
    what gatewayd reads back: the last lines for diagnostics, the size as a sign of life."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def last_lines(self, n: int = 20, window: int = 64 * 1024) -> list[str]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(max(0, fh.seek(0, os.SEEK_END) - window))
                data = fh.read()
        except OSError:
            return []
        return [line.decode("utf-8", errors="replace") for line in data.splitlines()[-n:]]


class OutputLog:
    """The gateway's stdout/stderr: redacted, size-rotated, the last lines kept for diagnostics."""

    def __init__(self, path: Path, max_bytes: int, backups: int, redactor: Redactor = REDACTOR,
                 keep_lines: int = 50) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.redactor = redactor
        self.tail: deque[str] = deque(maxlen=keep_lines)
        private_dir(path.parent)
        self._fh = open(path, "ab", opener=private_opener)  # noqa: SIM115 - lives as long as the daemon
        self._size = self._fh.tell()

    def write_line(self, raw: bytes) -> None:
        line = self.redactor.text(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
        self.tail.append(line)
        data = (line + "\n").encode("utf-8")
        if self._size + len(data) > self.max_bytes and self._size > 0:
            self._rotate()
        self._fh.write(data)
        self._fh.flush()
        self._size += len(data)

    def _rotate(self) -> None:
        self._fh.close()
        if self.backups > 0:
            for i in range(self.backups - 1, 0, -1):
                src = self.path.with_name(f"{self.path.name}.{i}")
                if src.exists():
                    os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self._fh = open(self.path, "ab", opener=private_opener)  # noqa: SIM115
        self._size = 0

    def last_lines(self, n: int = 20) -> list[str]:
        return list(self.tail)[-n:]

    def close(self) -> None:
        self._fh.close()
