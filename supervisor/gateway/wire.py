"""The one boundary every value from the gateway crosses: JSON text in, storable values out.

The gateway is JavaScript. What JSON.stringify can write, and Python's json module reads into values
that SQLite, `int()` or UTF-8 then refuse, far from here and long after (a cron job named with a
JS string cut mid-emoji once ended snapshot tracking for a whole boot):
- a lone UTF-16 surrogate (`"x-\\ud83d"`) becomes a `str` that cannot be encoded as UTF-8: it is
  read as U+FFFD, as a UTF-8 encoder in JavaScript writes it;
- `1e999`, `NaN`, `Infinity` become non-finite floats: read as the strings JavaScript's `String()`
  gives them ("Infinity", "NaN"), so a field that needs a number refuses them as the wrong type
  (a run whose mark is unreadable is not a run that ended) and nothing does arithmetic with them;
- an integer literal beyond 2**53 cannot come from a JS number: read as the float JS would hold.

After `decode`, every string encodes as UTF-8 and every number is finite, so a value is at worst
wrong for its field (which the field's parser refuses, typed), never poison for the store.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from supervisor.errors import GatewayProtocolError

JS_SAFE_INT = 2**53
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONG_INT = re.compile(r"\d{16,}")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _float(text: str) -> float | str:
    value = float(text)
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"


def _int(text: str) -> int | float:
    value = int(text)
    return value if -JS_SAFE_INT <= value <= JS_SAFE_INT else float(value)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    return value


def decode(raw: str | bytes) -> Any:
    """JSON from the gateway (a frame, or a file it wrote) as storable values; malformed JSON is a
    `GatewayProtocolError`."""
    try:
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        # The hooks cost a Python call per literal: only taken when the text can need them.
        kwargs: dict[str, Any] = {"parse_float": _float, "parse_constant": str}
        if _LONG_INT.search(text):
            kwargs["parse_int"] = _int
        value = json.loads(text, **kwargs)
        # Paired surrogates are joined by json.loads; only a text that escapes one can hold a lone one.
        return _scrub(value) if _SURROGATE_ESCAPE.search(text) else value
    except (ValueError, TypeError, RecursionError) as exc:
        raise GatewayProtocolError(f"not JSON: {exc}") from exc

