"""Read the gateway's JSON5 config (https://spec.json5.org) by turning it into JSON.

Comments, trailing commas, unquoted (also non-ASCII) keys, single quotes, JSON5 escapes and line
continuations, hex numbers, `.5` / `5.` / `+1`, Infinity and NaN. Strings are decoded here and
written back with `json.dumps`, so their content never looks like syntax. Only what gatewayd needs
to read non-secret settings; a file this cannot read is reported with its path, and gatewayd
falls back to its own settings.
"""

from __future__ import annotations

import json
import re
from typing import Any

_IDENT = re.compile(r"(?:[^\W\d]|\$)[\w$]*")  # a letter, `_` or `$`, then those or digits
_NUMBER = re.compile(r"([+-]?)(Infinity|NaN|0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)")
_HEX = re.compile(r"[0-9a-fA-F]+")
_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "0": "\0"}
_LINE_BREAKS = ("\r\n", "\n", "\r", "\u2028", "\u2029")  # after a backslash: a line continuation


def loads(text: str) -> Any:
    return json.loads(to_json(text), strict=False)


def to_json(text: str) -> str:
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "\"'":
            value, i = _string(text, i)
            out.append(json.dumps(value))
        elif text.startswith(("//", "/*"), i):
            i = _skip_comment(text, i)
        elif c == ",":
            j = _skip_blank(text, i + 1)
            if not (j < n and text[j] in "}]"):  # else: a trailing comma, dropped
                out.append(c)
            i += 1
        elif m := _IDENT.match(text, i):
            word = m.group(0)  # a key, or true / false / null / Infinity / NaN (json.loads judges)
            out.append(json.dumps(word) if _is_key(text, m.end()) else word)
            i = m.end()
        elif m := _NUMBER.match(text, i):
            out.append(_number(m.group(1), m.group(2)))
            i = m.end()
        elif c.isspace() or c == "\ufeff":
            out.append(c if c in " \t\r\n" else " ")  # JSON5 whitespace JSON does not know
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _string(text: str, i: int) -> tuple[str, int]:
    """The decoded string literal starting at `text[i]` (a quote), and the index after it."""
    quote, j, n = text[i], i + 1, len(text)
    buf: list[str] = []
    while j < n:
        c = text[j]
        if c == quote:
            return "".join(buf), j + 1
        if c != "\\":
            buf.append(c)
            j += 1
            continue
        if brk := next((b for b in _LINE_BREAKS if text.startswith(b, j + 1)), None):
            j += 1 + len(brk)
            continue
        esc = text[j + 1 : j + 2]
        if esc in ("x", "u"):
            digits = text[j + 2 : j + (4 if esc == "x" else 6)]
            if len(digits) != (2 if esc == "x" else 4) or not _HEX.fullmatch(digits):
                raise ValueError(f"bad \\{esc} escape at offset {j}")
            buf.append(chr(int(digits, 16)))  # surrogate pairs are joined again by json.loads
            j += 2 + len(digits)
            continue
        if not esc:
            break
        buf.append(_ESCAPES.get(esc, esc))  # \' \" \\ \/ and any other character stand for themselves
        j += 2
    raise ValueError(f"unterminated string at offset {i}")


def _number(sign: str, body: str) -> str:
    if body == "NaN":
        return body
    if body[:2] in ("0x", "0X"):
        body = str(int(body, 16))
    elif body != "Infinity":
        body = re.sub(r"\.(?!\d)", ".0", "0" + body if body.startswith(".") else body)  # .5 and 5.
    return ("-" if sign == "-" else "") + body


def _skip_comment(text: str, i: int) -> int:
    if text.startswith("//", i):
        end = text.find("\n", i)
        return len(text) if end < 0 else end
    end = text.find("*/", i + 2)
    return len(text) if end < 0 else end + 2


def _skip_blank(text: str, j: int) -> int:
    """The index of the next character that is neither whitespace nor part of a comment."""
    while j < len(text):
        if text[j].isspace() or text[j] == "\ufeff":
            j += 1
        elif text.startswith(("//", "/*"), j):
            j = _skip_comment(text, j)
        else:
            break
    return j


def _is_key(text: str, j: int) -> bool:
    j = _skip_blank(text, j)
    return j < len(text) and text[j] == ":"
