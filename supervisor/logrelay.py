"""The gateway's output relay: a small process between the gateway and its log file.

The gateway writes to a pipe whose only reader is this relay, not gatewayd: when gatewayd dies
(an upgrade, a crash, launchd restarting it), the gateway keeps a reader, so its next log line
does not fail with EPIPE (measured: a 2026.9.6 gateway whose reader died exited within seconds,
which made adoption impossible). The relay redacts the known secrets from every line, writes the
size-rotated log, and exits when the gateway's last writer closes the pipe.

    python -P -m supervisor.logrelay PATH MAX_BYTES BACKUPS   (secrets: GATEWAYD_REDACT, a JSON list)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from pathlib import Path

from supervisor.logs import OutputLog, Redactor

REDACT_ENV = "GATEWAYD_REDACT"


def main(argv: list[str]) -> int:
    path, max_bytes, backups = Path(argv[0]), int(argv[1]), int(argv[2])
    # Its own session (set by the spawner) already keeps it out of gatewayd's signals; a stray
    # SIGINT/SIGTERM must not cut the gateway's output short either: it ends at EOF.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    redactor = Redactor()
    redactor.add(json.loads(os.environ.pop(REDACT_ENV, "[]")))
    out = OutputLog(path, max_bytes, backups, redactor)
    stream = sys.stdin.buffer
    dropped = 0
    try:
        for line in iter(stream.readline, b""):
            try:
                out.write_line(line)
            except OSError:
                # A full disk must not end the relay: the gateway would lose its reader and die of
                # its next line. Lines are dropped (and counted) until space returns.
                dropped += 1
                if dropped in (1, 100, 10_000):
                    print(f"gatewayd logrelay: {dropped} line(s) of gateway output dropped: cannot write {path}",
                          file=sys.stderr, flush=True)
    finally:
        with contextlib.suppress(OSError):
            out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
