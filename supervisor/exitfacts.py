"""What gatewayd knows about a boot's exit, gathered into `core.policy.ExitFacts` for the pure
`classify`: its own intent (stop, planned restart, hang kill, boot timeout), the exit code or
signal, a restart the gateway announced, whether the gateway was adopted, whether gatewayd killed
it itself, for an exit 78 whether another process holds the port (the one look outside), and for
a SIGKILL whether the kernel's OOM killer struck meanwhile.

The OOM tell is Linux's: the kernel counts each OOM kill in `/proc/vmstat` (`oom_kill`, the whole
machine) and in the cgroup's `memory.events` (`oom_kill`, gatewayd's cgroup, which holds the
gateway). A counter that moved between the spawn and a SIGKILL gatewayd did not send says the
kernel killed something for memory in that time; the kernel does not say whom, so an unrelated
OOM kill that coincides with someone else's `kill -9` is read as OOM too. macOS has no such
counter (jetsam's kills are a plain SIGKILL there).
"""

from __future__ import annotations

from pathlib import Path

from supervisor.boot import BootWatch
from supervisor.core.model import Intent
from supervisor.core.policy import ExitFacts
from supervisor.gateway.child import ExitInfo
from supervisor.gateway.ports import port_owners

PROC = Path("/proc")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def _counter(path: Path, name: str) -> int | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == name and value.strip().isdigit():
            return int(value)
    return None


def oom_kill_counts(proc: Path | None = None, cgroup_root: Path | None = None) -> dict[str, int]:
    """The kernel's OOM-kill counters that can be read here (none off Linux): `vmstat` for the
    machine, `cgroup` for this process's cgroup (v2)."""
    proc, cgroup_root = proc or PROC, cgroup_root or CGROUP_ROOT
    out: dict[str, int] = {}
    if (n := _counter(proc / "vmstat", "oom_kill")) is not None:
        out["vmstat"] = n
    try:
        rel = next((ln[3:] for ln in (proc / "self" / "cgroup").read_text().splitlines() if ln.startswith("0::")),
                   None)
    except OSError:
        rel = None
    if rel is not None and (n := _counter(cgroup_root / rel.lstrip("/") / "memory.events", "oom_kill")) is not None:
        out["cgroup"] = n
    return out


def oom_moved(before: dict[str, int], after: dict[str, int]) -> str:
    """The counters that moved, named ("cgroup", "vmstat"), or ""."""
    return ",".join(k for k in sorted(before) if k in after and after[k] > before[k])


def gather(watch: BootWatch, port: int, intent: Intent, info: ExitInfo) -> ExitFacts:
    # 78 is also what a gateway says when the port or its lock is held by a healthy gateway.
    held = bool(info.returncode == 78 and port_owners(port))
    oom = oom_moved(watch.oom_kills_at_start, oom_kill_counts()) if info.returncode == -9 else ""
    # Whether gatewayd killed the gateway itself, as of its exit: leftovers killed afterwards
    # do not make a clean drain unclean.
    return ExitFacts(intent=intent, returncode=info.returncode, restart_expected=watch.restart_expected,
                     adopted=watch.child.adopted, port_held_by_other=held, killed_by_us=info.killed_by_us,
                     oom_counters=oom)
