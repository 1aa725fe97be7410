"""Read the gateway's JSON5 config: comments, trailing commas, unquoted keys, single quotes.

Only what gatewayd needs to read non-secret settings; a file this cannot read is reported with
its path, and gatewayd falls back to its own settings.
"""

from __future__ import annotations

import json
import re
from typing import Any

_IDENT = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")


def loads(text: str) -> Any:
    return json.loads(to_json(text))


def to_json(text: str) -> str:
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "\"'":
            j = i + 1
            buf: list[str] = []
            while j < n and text[j] != c:
                if text[j] == "\\" and j + 1 < n:
                    if text[j + 1] == "\n":  # line continuation
                        j += 2
                        continue
                    buf.append(text[j : j + 2] if text[j + 1] != "'" else "'")
                    j += 2
                    continue
                buf.append('\\"' if text[j] == '"' else text[j])
                j += 1
            out.append('"' + "".join(buf) + '"')
            i = j + 1
        elif text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif c == ",":
            j = i + 1
            while j < n and (text[j].isspace() or text.startswith("//", j) or text.startswith("/*", j)):
                if text.startswith("//", j):
                    while j < n and text[j] != "\n":
                        j += 1
                elif text.startswith("/*", j):
                    end = text.find("*/", j + 2)
                    j = n if end < 0 else end + 2
                else:
                    j += 1
            if j < n and text[j] in "}]":
                i += 1  # trailing comma
            else:
                out.append(c)
                i += 1
        elif (m := _IDENT.match(text, i)) and _is_key(text, m.end()):
            out.append(json.dumps(m.group(0)))
            i = m.end()
        elif m and m.group(0) in ("Infinity", "NaN"):
            out.append(m.group(0))
            i = m.end()
        elif c == "+" and i + 1 < n and (text[i + 1].isdigit() or text[i + 1] == "."):
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _is_key(text: str, j: int) -> bool:
    while j < len(text) and text[j] in " \t\r\n":
        j += 1
    return j < len(text) and text[j] == ":"
