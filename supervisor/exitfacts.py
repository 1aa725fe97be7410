"""What gatewayd knows about a boot's exit, gathered into `core.policy.ExitFacts` for the pure
`classify`: its own intent (stop, planned restart, hang kill, boot timeout), the exit code or
signal, a restart the gateway announced, whether the gateway was adopted, whether gatewayd killed
it itself, and, for an exit 78, whether another process holds the port (the one look outside).
"""

from __future__ import annotations

from supervisor.boot import BootWatch
from supervisor.core.model import Intent
from supervisor.core.policy import ExitFacts
from supervisor.gateway.child import ExitInfo
from supervisor.gateway.ports import port_owners


def gather(watch: BootWatch, port: int, intent: Intent, info: ExitInfo) -> ExitFacts:
    # 78 is also what a gateway says when the port or its lock is held by a healthy gateway.
    held = bool(info.returncode == 78 and port_owners(port))
    # Whether gatewayd killed the gateway itself, as of its exit: leftovers killed afterwards
    # do not make a clean drain unclean.
    return ExitFacts(intent=intent, returncode=info.returncode, restart_expected=watch.restart_expected,
                     adopted=watch.child.adopted, port_held_by_other=held, killed_by_us=info.killed_by_us)
