"""Typed errors of gatewayd, mapped from library errors at one boundary per layer.

    GatewaydError
    ├── ConfigError            bad TOML, key or value: names the file, key and problem
    ├── InstanceLocked         another gatewayd holds the state dir
    ├── LaunchError            the gateway cannot be launched (no openclaw, no node, bad entry)
    ├── StoreError             the store failed; subclasses say whether it is safe to move aside
    │   ├── StoreCorrupt       SQLite says corrupt / not a database: move aside, start fresh
    │   ├── StoreTooNew        written by a newer gatewayd: refuse, never overwrite
    │   └── StoreUnavailable   locked, full disk, I/O error: keep it, report, retry
    └── GatewayError           talking to the gateway failed
        ├── GatewayUnavailable connection refused / closed / not started yet
        ├── GatewayTimeout     no answer within the deadline
        ├── GatewayProtocolError malformed frame, missing field, wrong type
        ├── GatewayAuthError   token refused, or scopes silently downgraded
        └── GatewayRpcError    the gateway answered ok:false (code, message)

Every error's `str()` is one line meant for a user.
"""

from __future__ import annotations


class GatewaydError(Exception):
    """Base of every error gatewayd raises on purpose."""


class ConfigError(GatewaydError):
    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {problem}")


class InstanceLocked(GatewaydError):
    pass


class LaunchError(GatewaydError):
    pass


class StoreError(GatewaydError):
    pass


class StoreCorrupt(StoreError):
    pass


class StoreTooNew(StoreError):
    pass


class StoreUnavailable(StoreError):
    pass


class GatewayError(GatewaydError):
    pass


class GatewayUnavailable(GatewayError):
    def __init__(self, message: str, refused: bool = False) -> None:
        self.refused = refused  # nothing listens: not a hang, maybe a restart in place
        super().__init__(message)


class GatewayTimeout(GatewayError):
    pass


class GatewayProtocolError(GatewayError):
    pass


class GatewayAuthError(GatewayError):
    pass


class GatewayRpcError(GatewayError):
    def __init__(self, method: str, code: str, message: str, retry_after_ms: int | None = None) -> None:
        self.method = method
        self.code = code
        self.retry_after_ms = retry_after_ms
        super().__init__(f"{method}: {code}: {message}")
