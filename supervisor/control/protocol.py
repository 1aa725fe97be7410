"""Control protocol: one JSON line each way per connection.

    request:  {"id": "<any>", "command": "status", "args": {...}}
    response: {"id": "<same>", "status": "ok", "data": {...}, "code": 0}
              {"id": "<same>", "status": "error", "error": "<one line>", "code": <int>}

Codes map one-to-one to CLI exit codes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

MAX_LINE = 64 * 1024


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
