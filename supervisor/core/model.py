"""Names shared by the core and the shell: supervision states, exit kinds, probe outcomes."""

from __future__ import annotations

from enum import StrEnum


class SupervisionState(StrEnum):
    """What gatewayd is doing with its gateway; `status` prints this value."""

    STARTING = "starting"  # spawned, booting, not ready yet
    RUNNING = "running"  # ready and answering probes
    BACKOFF = "backoff"  # exited; waiting before the next spawn
    CRASH_LOOP = "crash-loop"  # backoff while crashing repeatedly: slow retries, never a silent stop
    KILLING = "killing"  # a hang or boot timeout was declared; the group is being killed
    CONFIG_ERROR = "config-error"  # exit 78 for bad config: waiting for the config file to change
    CONFLICT = "conflict"  # the port is held by a process that is not ours
    PAUSED = "paused"  # maintenance: the gateway is down and is not started until the pause ends
    STOPPING = "stopping"  # operator stop: draining the gateway
    STOPPED = "stopped"


# Which moves are legal: one place to review, and `transition` refuses anything else.
# Every state may move to STOPPING (an operator's stop wins everywhere), and only STOPPING
# ends in STOPPED.
_S = SupervisionState
TRANSITIONS: dict[SupervisionState, frozenset[SupervisionState]] = {
    _S.STOPPED: frozenset({_S.STARTING, _S.CONFLICT, _S.CONFIG_ERROR}),
    _S.STARTING: frozenset({_S.RUNNING, _S.BACKOFF, _S.CRASH_LOOP, _S.KILLING, _S.CONFIG_ERROR, _S.CONFLICT}),
    # RUNNING -> STARTING: a requested restart respawns at once
    _S.RUNNING: frozenset({_S.STARTING, _S.BACKOFF, _S.CRASH_LOOP, _S.KILLING, _S.CONFIG_ERROR, _S.CONFLICT}),
    _S.KILLING: frozenset({_S.STARTING, _S.BACKOFF, _S.CRASH_LOOP, _S.CONFIG_ERROR, _S.CONFLICT}),
    _S.BACKOFF: frozenset({_S.STARTING, _S.CONFLICT, _S.CONFIG_ERROR}),
    _S.CRASH_LOOP: frozenset({_S.STARTING, _S.CONFLICT, _S.CONFIG_ERROR}),
    _S.CONFIG_ERROR: frozenset({_S.STARTING, _S.CONFLICT}),
    _S.CONFLICT: frozenset({_S.STARTING, _S.CONFIG_ERROR}),
    _S.PAUSED: frozenset({_S.STARTING, _S.CONFLICT, _S.CONFIG_ERROR}),
    _S.STOPPING: frozenset({_S.STOPPED}),
}
# A pause may begin in any state but the stop's: the boot loop then waits instead of spawning.
TRANSITIONS = {k: v | ({_S.PAUSED} if k not in (_S.STOPPING, _S.PAUSED) else frozenset())
               for k, v in TRANSITIONS.items()}
TRANSITIONS = {k: v | ({_S.STOPPING} if k is not _S.STOPPING else frozenset()) for k, v in TRANSITIONS.items()}


class IllegalTransition(RuntimeError):
    pass


def transition(current: SupervisionState, target: SupervisionState) -> SupervisionState:
    if target is not current and target not in TRANSITIONS[current]:
        raise IllegalTransition(f"can't move from {current} to {target}")
    return target


class ExitKind(StrEnum):
    CLEAN_STOP = "clean-stop"  # gatewayd asked for a stop and the gateway drained
    STOP_UNCLEAN = "stop-unclean"  # asked to stop, but it was killed or failed its drain
    PLANNED_RESTART = "planned-restart"  # gatewayd asked for this restart
    RESTART_REQUESTED = "restart-requested"  # the gateway exited 0 on its own: its own restart
    CRASH = "crash"  # a signal or exit code nobody asked for
    OOM_KILL = "oom-kill"  # a SIGKILL with the kernel's OOM-kill counter moved (Linux): a crash, for memory
    HANG_KILL = "hang-kill"  # gatewayd declared a hang and killed the group
    BOOT_TIMEOUT = "boot-timeout"  # never became ready within the boot limit
    CONFIG_ERROR = "config-error"  # exit 78: the gateway refused its config or its database
    CONFLICT = "conflict"  # exit 78 because another gateway holds the port or lock
    UPDATER_PARKED = "updater-parked"  # exit 79
    VANISHED = "vanished"  # died while gatewayd itself was down (seen at gatewayd's start)


class Intent(StrEnum):
    """Why gatewayd itself ended the child, if it did: the code alone cannot say (correction 4)."""

    NONE = "none"
    STOP = "stop"
    RESTART = "restart"
    HANG_KILL = "hang-kill"
    BOOT_TIMEOUT = "boot-timeout"


class ProbeOutcome(StrEnum):
    OK = "ok"  # answered as alive (and, while booting, as started)
    STARTING = "starting"  # answered, not started yet
    DRAINING = "draining"  # answered, draining on purpose
    REFUSED = "refused"  # nothing listening
    TIMEOUT = "timeout"  # connected (or tried) and got no answer in time
    BAD = "bad"  # answered something that is not the gateway's probe answer
