"""The gateway's output relay: a small process between the gateway and its log file.

The gateway writes to a pipe whose only reader is this relay, not gatewayd: when gatewayd dies
(an upgrade, a crash, launchd restarting it), the gateway keeps a reader, so its next log line
does not fail with EPIPE (measured: a 2026.9.6 gateway whose reader died exited within seconds,
which made adoption impossible). The relay redacts the known secrets from every line, writes the
size-rotated log, and exits when the gateway's last writer closes the pipe.

    python -P -m supervisor.logrelay PATH MAX_BYTES BACKUPS SECRETS_FD

The secrets to redact come through SECRETS_FD, a pipe inherited from the spawner: a JSON list of
strings, written once by gatewayd and closed; the relay reads it to EOF and closes it before the
first line. Never an environment variable (issue 17): /proc/<pid>/environ keeps a process's initial
environment for its whole life whatever it does to os.environ, and anyone who may read the relay's
/proc entry would read the token there. Its argv carries only the fd number.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from pathlib import Path

from supervisor.logs import OutputLog, Redactor


def read_secrets(fd: int) -> list[str]:
    """The JSON list on `fd`, read to EOF; the fd is closed whatever happens."""
    with os.fdopen(fd, "rb") as fh:
        data = fh.read()
    values = json.loads(data)
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError("not a JSON list of strings")
    return values


def main(argv: list[str]) -> int:
    path, max_bytes, backups, secrets_fd = Path(argv[0]), int(argv[1]), int(argv[2]), int(argv[3])
    # Its own session (set by the spawner) already keeps it out of gatewayd's signals; a stray
    # SIGINT/SIGTERM must not cut the gateway's output short either: it ends at EOF.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    redactor = Redactor()
    try:
        redactor.add(read_secrets(secrets_fd))
    except (OSError, ValueError) as exc:
        # Without the secrets nothing could be written safely: no relay at all (the gateway then
        # dies of its first line and is restarted, with a relay that got them).
        print(f"gatewayd logrelay: cannot read the secrets to redact from fd {secrets_fd}: {exc}",
              file=sys.stderr, flush=True)
        return 2
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
