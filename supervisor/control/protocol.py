"""Control protocol: one JSON line each way per connection.

    request:  {"id": "<any>", "command": "status", "args": {...}}
    response: {"id": "<same>", "status": "ok", "data": {...}, "code": 0}
              {"id": "<same>", "status": "error", "error": "<one line>", "code": <int>}

Codes map one-to-one to CLI exit codes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

MAX_LINE = 64 * 1024
MAX_DRAIN_S = 86_400.0  # a restart's drain budget: more than a day is a mistake, not a plan


class Code(IntEnum):
    OK = 0
    FAILED = 1
    BAD_REQUEST = 2
    UNKNOWN_COMMAND = 3
    CONFLICT = 4  # e.g. a restart while another one runs
    FORBIDDEN = 6


class ControlError(Exception):
    def __init__(self, code: Code, message: str) -> None:
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class Request:
    id: str
    command: str
    args: dict[str, Any] = field(default_factory=dict)


def drain_budget_problem(value: object) -> str | None:
    """Why `value` is not a usable drain budget in seconds (None when it is): NaN, infinities,
    booleans, zero, negatives and anything beyond MAX_DRAIN_S are refused (a NaN budget never
    escalates to SIGKILL: every comparison with it is false)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "must be a number of seconds"
    try:
        seconds = float(value)
    except OverflowError:
        return f"must be > 0 and at most {MAX_DRAIN_S:g} seconds"
    if not math.isfinite(seconds):
        return f"must be a finite number of seconds, not {seconds}"
    if not 0 < seconds <= MAX_DRAIN_S:
        return f"must be > 0 and at most {MAX_DRAIN_S:g} seconds, not {seconds:g}"
    return None


def parse_request(line: bytes) -> Request:
    try:
        doc = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise ControlError(Code.BAD_REQUEST, "request is not JSON") from exc
    if not isinstance(doc, dict):
        raise ControlError(Code.BAD_REQUEST, "request must be a JSON object")
    command, args, rid = doc.get("command"), doc.get("args", {}), doc.get("id", "")
    if not isinstance(command, str) or not command:
        raise ControlError(Code.BAD_REQUEST, "field 'command' must be a non-empty string")
    if not isinstance(args, dict):
        raise ControlError(Code.BAD_REQUEST, "field 'args' must be an object")
    return Request(str(rid), command, args)


def ok(rid: str, data: Any) -> bytes:
    return (json.dumps({"id": rid, "status": "ok", "data": data, "code": int(Code.OK)}, default=str) + "\n").encode()


def error(rid: str, code: Code, message: str) -> bytes:
    return (json.dumps({"id": rid, "status": "error", "error": message, "code": int(code)}) + "\n").encode()
