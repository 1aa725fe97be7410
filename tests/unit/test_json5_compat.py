"""Reading JSON5 with the `json5` package gives what the hand-written parser it replaced gave.

Every JSON5 input the project has is compared: the contract fixtures and the sandbox's openclaw.json
(both plain JSON, which the old parser read exactly as `json.loads`), the old parser's own test
cases (tests/unit/test_json5.py), and, when the real gateways are installed, each JSON5 example
in their docs, judged by the gateway's own reader (the npm `json5` package under Node).

Where the two differ the old parser was wrong; see OLD_PARSER_WRONG below.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gatewayd_dev import sandbox
from supervisor.gateway.launch import parse_json5

REPO = Path(__file__).resolve().parents[2]


def same(a: Any, b: Any) -> bool:
    """Equal, with the same types (an int is not a float, a bool not an int) and NaN equal to NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


FIXTURES = sorted((REPO / "tests" / "contract" / "fixtures").rglob("*.json*"))


@pytest.mark.parametrize("path", FIXTURES, ids=[str(p.relative_to(REPO)) for p in FIXTURES])
def test_contract_fixtures_read_as_json(path: Path) -> None:
    docs = path.read_text().splitlines() if path.suffix == ".jsonl" else [path.read_text()]
    for text in filter(str.strip, docs):
        assert same(parse_json5(text), json.loads(text))


@pytest.mark.parametrize("version", ["2026.2.26", "2026.9.6"])
def test_sandbox_openclaw_json_reads_back(version: str, tmp_path: Path) -> None:
    cfg = sandbox.build_config(version, gw_port=18789, model_port=18790, token="tok-é\"'\\x", hook_token="h//k",
                               log_file=tmp_path / "gw.log", heartbeat_every="30m", agents=["main", "ops"])
    text = json.dumps(cfg, indent=2) + "\n"  # as sandbox.prepare_sandbox writes it
    assert same(parse_json5(text), cfg)
    assert same(parse_json5(json.dumps(cfg, ensure_ascii=False)), cfg)


# What the old parser returned for inputs it read wrongly, and what the gateway's own reader (npm
# json5 2.2.3, checked under Node) and the `json5` package do: they refuse what the JSON5 spec
# refuses, and read identifiers the old parser refused.
OLD_PARSER_WRONG: list[tuple[str, Any, Any]] = [
    # (text, old parser's result, now: a value or ValueError)
    ("{a: 'x\ny'}", {"a": "x\ny"}, ValueError),  # a raw line break inside a string
    ("{a: 'x\ry'}", {"a": "x\ry"}, ValueError),
    ("{a: 1} /* unterminated", {"a": 1}, ValueError),
    ("{a: 0x1.5}", {"a": 10.5}, ValueError),
    ("{a: '\\1'}", {"a": "1"}, ValueError),  # \1-\9 are not JSON5 escapes
    ("{a: '\\8'}", {"a": "8"}, ValueError),
    ("{a: '\\00'}", {"a": "\x000"}, ValueError),  # \0 must not be followed by a digit
    ("{a: '\\01'}", {"a": "\x001"}, ValueError),
    ("[,]", [], ValueError),
    ("{,}", {}, ValueError),
    ("\x85{}", {}, ValueError),  # NEL is not JSON5 whitespace
    ("{\\u0061b: 1}", ValueError, {"ab": 1}),  # a \u escape in an identifier
    ("{a\\u0062: 1}", ValueError, {"ab": 1}),
    ("{x\u200cy: 1}", ValueError, {"x\u200cy": 1}),  # ZWNJ may continue an identifier
    ("{a\u0301: 1}", ValueError, {"a\u0301": 1}),  # so may a combining mark
]


@pytest.mark.parametrize(("text", "old", "now"), OLD_PARSER_WRONG, ids=[repr(t) for t, _, _ in OLD_PARSER_WRONG])
def test_where_the_old_parser_was_wrong(text: str, old: Any, now: Any) -> None:
    if now is ValueError:
        with pytest.raises(ValueError):
            parse_json5(text)
    else:
        assert same(parse_json5(text), now)


def _doc_examples() -> list[tuple[str, str]]:
    out = []
    for docs in sorted((REPO / ".cache" / "openclaw").glob("openclaw-*/node_modules/openclaw/docs")):
        for md in sorted(docs.rglob("*.md")):
            blocks = re.findall(r"```json5[^\n]*\n(.*?)```", md.read_text(errors="replace"), re.S)
            out += [(f"{md.relative_to(REPO)}#{i}", b) for i, b in enumerate(blocks)]
    return out


NODE_READ = """
const JSON5 = require(process.argv[1]);
const enc = v => typeof v === "number" ? (Number.isFinite(v) ? v : {$n: String(v)})
  : Array.isArray(v) ? v.map(enc)
  : v && typeof v === "object" ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, enc(x)])) : v;
const read = t => { try { return {ok: enc(JSON5.parse(t))}; } catch (e) { return {err: 1}; } };
process.stdout.write(JSON.stringify(JSON.parse(require("fs").readFileSync(0, "utf8")).map(read)));
"""


def _from_node(v: Any) -> Any:
    if isinstance(v, dict) and list(v) == ["$n"]:
        return float(v["$n"].replace("Infinity", "inf"))
    if isinstance(v, dict):
        return {k: _from_node(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_from_node(x) for x in v]
    return v


def same_value(a: Any, b: Any) -> bool:
    """Equal as JavaScript sees it: one number type (key order, too, is JavaScript's own)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return (math.isnan(a) and math.isnan(b)) if isinstance(a, float) and math.isnan(a) else a == b
    if isinstance(a, dict):
        return isinstance(b, dict) and sorted(a) == sorted(b) and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def test_gateway_doc_examples_read_as_the_gateway_reads_them() -> None:
    """Each ```json5 block in the installed gateways' docs (many are fragments the gateway refuses
    too): read or refused alike by parse_json5 and by the gateway's own JSON5 reader."""
    examples = _doc_examples()
    readers = sorted((REPO / ".cache" / "openclaw").glob("openclaw-*/node_modules/json5"))
    node = shutil.which("node")
    if not examples or not readers or not node:
        pytest.skip("no installed gateway docs, json5 package or node (scripts/install-openclaw)")
    out = subprocess.run([node, "-e", NODE_READ, str(readers[-1])], input=json.dumps([t for _, t in examples]),
                         capture_output=True, text=True, check=True, timeout=120)
    wrong = []
    for (where, text), theirs in zip(examples, json.loads(out.stdout), strict=True):
        try:
            ours: Any = ("ok", parse_json5(text))
        except ValueError:
            ours = ("err",)
        if ours[0] != next(iter(theirs)) or (ours[0] == "ok" and not same_value(ours[1], _from_node(theirs["ok"]))):
            wrong.append(where)
    assert not wrong, wrong
    assert len(examples) > 100
