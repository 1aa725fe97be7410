"""Where the control socket lives, and who may be trusted at the other end of it.

The socket is `<state>/run/control.sock` when that path fits a Unix socket (~100 bytes). When the
state dir is too long for that (~/Library/Application Support alone is long), the socket goes in a
private folder nobody else can name in advance (issue 17: a predictable `/tmp/gatewayd-<uid>/` can
be created first by another user, and the daemon then died with PermissionError):

- `$XDG_RUNTIME_DIR`, when it is set, a real directory, owned by us and mode 0700;
- else a fresh folder from `tempfile.mkdtemp` (random name, 0700), reused by later daemons on the
  same state dir while it is still ours and private.

Either way the daemon records the socket's path in `<state>/run/control.path` (0600), which is
where clients look it up. A client refuses a socket whose file or folder is not owned by our uid,
and after connecting checks the server's uid from the kernel (SO_PEERCRED, getpeereid or
LOCAL_PEERCRED) where the platform gives it.

Light on purpose: the CLI imports this for every `gatewayd status` (no asyncio, no logging).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import stat
import struct
import sys
import tempfile
from pathlib import Path

MAX_SOCKET_PATH = 100  # bytes; macOS sun_path holds 104 with the NUL, Linux 108
RECORD_NAME = "control.path"


class UntrustedSocket(Exception):
    """The socket, its folder or the process serving it belongs to another user."""


def natural_path(state_dir: Path) -> Path:
    return state_dir / "run" / "control.sock"


def record_path(state_dir: Path) -> Path:
    return state_dir / "run" / RECORD_NAME


def fits(path: Path) -> bool:
    return len(os.fsencode(path)) <= MAX_SOCKET_PATH


def _digest(state_dir: Path) -> str:
    return hashlib.sha256(os.fsencode(state_dir.absolute())).hexdigest()[:16]


def private_dir(path: Path) -> bool:
    """A real directory (not a symlink), owned by us, that nobody else can enter or write."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) & 0o077 == 0


def xdg_socket_path(state_dir: Path) -> Path | None:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if not runtime or not os.path.isabs(runtime) or not private_dir(Path(runtime)):
        return None
    path = Path(runtime) / f"gatewayd-{_digest(state_dir)}.sock"
    return path if fits(path) else None


def recorded_path(state_dir: Path) -> Path | None:
    try:
        text = record_path(state_dir).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return Path(text) if text and os.path.isabs(text) else None


def client_socket_path(state_dir: Path) -> Path:
    """Where a client finds the daemon's socket (creates nothing)."""
    natural = natural_path(state_dir)
    if fits(natural):
        return natural
    return recorded_path(state_dir) or xdg_socket_path(state_dir) or natural


def server_socket_path(state_dir: Path) -> Path:
    """Where the daemon (holding the instance lock) puts its socket: prepares a private folder for
    a long state dir and records the path for clients."""
    natural = natural_path(state_dir)
    if fits(natural):
        return natural
    path = xdg_socket_path(state_dir)
    if path is None:
        old = recorded_path(state_dir)
        if old is not None and old.name == "control.sock" and private_dir(old.parent) and fits(old):
            path = old
        else:
            path = Path(_fresh_dir()) / "control.sock"
    _write_record(state_dir, path)
    return path


def _fresh_dir() -> str:
    for base in (tempfile.gettempdir(), "/tmp"):
        d = tempfile.mkdtemp(prefix="gatewayd-", dir=base)  # 0700, a name nobody could pre-create
        if fits(Path(d) / "control.sock"):
            return d
        os.rmdir(d)
    raise OSError("no temporary folder short enough for a Unix socket (set XDG_RUNTIME_DIR or TMPDIR)")


def _write_record(state_dir: Path, path: Path) -> None:
    rec = record_path(state_dir)
    rec.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = rec.with_name(f".{RECORD_NAME}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, os.fsencode(path) + b"\n")
    finally:
        os.close(fd)
    os.replace(tmp, rec)


def forget(path: Path) -> None:
    """After the daemon removed its socket: drop the fresh folder it made (never the state dir's
    run/ nor $XDG_RUNTIME_DIR, whose sockets are named differently)."""
    if path.name == "control.sock" and path.parent.name.startswith("gatewayd-") and private_dir(path.parent):
        with contextlib.suppress(OSError):
            path.parent.rmdir()


def check_owner(path: Path) -> None:
    """Before connecting: the socket and its folder must be ours (never talk to a planted socket)."""
    uid = os.getuid()
    for p, what in ((path.parent, "folder"), (path, "file")):
        try:
            owner = os.lstat(p).st_uid
        except FileNotFoundError:
            continue  # connect reports a missing socket
        if owner != uid:
            raise UntrustedSocket(f"control socket {what} {p} belongs to uid {owner}, not {uid}: refusing it")


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end, from the kernel (not from anything it says)."""
    if sys.platform.startswith("linux"):
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return int(struct.unpack("3i", creds)[1])
    getpeereid = getattr(os, "getpeereid", None)  # not in the stdlib; macOS falls back below
    if getpeereid is not None:
        return int(getpeereid(sock.fileno())[0])
    if sys.platform == "darwin":
        xucred = sock.getsockopt(0, 0x001, 76)  # SOL_LOCAL, LOCAL_PEERCRED: struct xucred
        return int(struct.unpack_from("I", xucred, 4)[0])
    return None
