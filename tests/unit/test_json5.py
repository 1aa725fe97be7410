"""gatewayd reads the gateway's JSON5 config (openclaw.json) with `launch.parse_json5` (the `json5` package).

The cases are those the hand-written parser it replaced was tested with, as expectations."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from supervisor.gateway.launch import parse_json5, read_gateway_config


@pytest.mark.parametrize(("text", "expected"), [
    # comments
    ("// leading\n{a: 1}", {"a": 1}),
    ("{a: 1} // trailing", {"a": 1}),
    ("{/* block */ a: /* inline */ 1}", {"a": 1}),
    ("{\n  /* multi\n     line */\n  a: 1,\n}", {"a": 1}),
    ("{a: 1, // it's a comment with a quote\n b: 2}", {"a": 1, "b": 2}),
    # quotes
    ("{a: 'single'}", {"a": "single"}),
    ("{'key': 'v'}", {"key": "v"}),
    ("{a: 'say \"hi\"'}", {"a": 'say "hi"'}),
    ("{a: \"it's\"}", {"a": "it's"}),
    ("{'a b': 1}", {"a b": 1}),
    # escapes
    (r"{a: 'it\'s'}", {"a": "it's"}),
    (r'{a: "q\"q"}', {"a": 'q"q'}),
    (r"{a: '\\'}", {"a": "\\"}),
    (r"{a: 'back\\slash', b: 2}", {"a": "back\\slash", "b": 2}),
    (r"{a: '\n\t\r\b\f'}", {"a": "\n\t\r\b\f"}),
    (r"{a: '\u00e9\u0041'}", {"a": "éA"}),
    (r"{a: '\/'}", {"a": "/"}),
    ("{a: 'line one \\\nline two'}", {"a": "line one line two"}),
    # trailing commas
    ("{a: 1,}", {"a": 1}),
    ("[1, 2, 3,]", [1, 2, 3]),
    ("{a: [1,], b: {c: 2,},}", {"a": [1], "b": {"c": 2}}),
    ("{a: 1, // c\n}", {"a": 1}),
    ("{a: 1, /* c */ }", {"a": 1}),
    ("{a: 1,/*,*/}", {"a": 1}),
    # unquoted keys
    ("{a: 1, $b: 2, _c3: 3, camelCase: 4}", {"a": 1, "$b": 2, "_c3": 3, "camelCase": 4}),
    ("{ a  :  1 }", {"a": 1}),
    ("{a\n:\n1}", {"a": 1}),
    ("{truex: 1, nullable: 2}", {"truex": 1, "nullable": 2}),
    # URLs containing //, and comment markers inside strings
    ("{url: 'http://example.com/a//b'}", {"url": "http://example.com/a//b"}),
    ('{url: "https://x.test:8443/p"} // real comment', {"url": "https://x.test:8443/p"}),
    ("{a: 'x /* not a comment */ y'}", {"a": "x /* not a comment */ y"}),
    ("{a: 'x, }'}", {"a": "x, }"}),
    # literals and numbers
    ("{a: true, b: false, c: null}", {"a": True, "b": False, "c": None}),
    ("{a: +1, b: -2, c: 1.5, d: 1e3, e: -0.5e-2}", {"a": 1, "b": -2, "c": 1.5, "d": 1000.0, "e": -0.005}),
    # plain JSON stays JSON
    ('{"a": [1, {"b": null}], "c": "d"}', {"a": [1, {"b": None}], "c": "d"}),
    ("{a: 'x'}\r\n", {"a": "x"}),
])
def test_json5_loads(text: str, expected: Any) -> None:
    assert parse_json5(text) == expected


def test_json5_nested_openclaw_like_config() -> None:
    text = """
    // ~/.openclaw/openclaw.json
    {
      gateway: {
        port: 18789,
        bind: 'loopback',
        auth: { mode: 'token', token: '${OPENCLAW_GATEWAY_TOKEN}', },  // env reference
        controlUi: { allowedOrigins: ['http://localhost:5173', "https://a.example//x",], },
      },
      agents: {
        defaults: { heartbeat: { every: '30m', }, },
        list: [ { id: 'main', workspace: '~/work', }, { id: "ops", }, ],
      },
      /* trailing block */
    }
    """
    doc = parse_json5(text)
    assert doc["gateway"]["port"] == 18789
    assert doc["gateway"]["auth"] == {"mode": "token", "token": "${OPENCLAW_GATEWAY_TOKEN}"}
    assert doc["gateway"]["controlUi"]["allowedOrigins"] == ["http://localhost:5173", "https://a.example//x"]
    assert [a["id"] for a in doc["agents"]["list"]] == ["main", "ops"]
    assert doc["agents"]["defaults"]["heartbeat"]["every"] == "30m"


def test_json5_infinity_and_nan() -> None:
    doc = parse_json5("{a: Infinity, b: -Infinity, c: NaN}")
    assert doc["a"] == math.inf and doc["b"] == -math.inf and math.isnan(doc["c"])


@pytest.mark.parametrize("text", ["{a: }", "{a: 'unterminated}", "{a: 1", "not json", "{a: nullish}"])
def test_json5_invalid_raises_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_json5(text)


def test_json5_keeps_string_content_verbatim() -> None:
    assert parse_json5("{a: '//', b: '/*', c: ',}'}") == {"a": "//", "b": "/*", "c": ",}"}


# Valid JSON5 (spec https://spec.json5.org) that gatewayd once failed to read; launch.build then
# refused to start the gateway at all, although a spec-following JSON5 reader accepts the file.
JSON5_SPEC_FORMS = [
    ("{a: 0x1F}", {"a": 31}),
    ("{a: .5}", {"a": 0.5}),
    ("{a: 5.}", {"a": 5.0}),
    ("{a: +.5}", {"a": 0.5}),
    ("{a: '\\x41'}", {"a": "A"}),
    ("{a: '\\0'}", {"a": "\0"}),
    ("{a: '\\v'}", {"a": "\v"}),
    ("{a: 'x\ty'}", {"a": "x\ty"}),
    ("{a: 'l1 \\\r\nl2'}", {"a": "l1 l2"}),
    ("{café: 1}", {"café": 1}),
    # more of the same forms
    ("{a: -0x1f, b: 0XFF}", {"a": -31, "b": 255}),
    ("{a: -.5, b: 5.e2, c: 5.E-1}", {"a": -0.5, "b": 500.0, "c": 0.5}),
    ("{a: [.5, 5., 0x10,]}", {"a": [0.5, 5.0, 16]}),
    ("{a: 'l1 \\\rl2', b: 'l1 \\\u2028l2'}", {"a": "l1 l2", "b": "l1 l2"}),
    ("{a: '\\a\\q'}", {"a": "aq"}),  # any other escaped character stands for itself
    ("{a: '\\ud83d\\ude00'}", {"a": "\U0001F600"}),  # a surrogate pair
    ("{a: 'tab\there', b: \"x\ty\"}", {"a": "tab\there", "b": "x\ty"}),
    ("{ключ: 'значение', _é$1: 2}", {"ключ": "значение", "_é$1": 2}),
    ("{a /* c */ : 1, b // c\n : 2}", {"a": 1, "b": 2}),
    ("\ufeff{a:\u00a01}", {"a": 1}),
]


def test_json5_signed_infinity_and_nan() -> None:
    doc = parse_json5("{a: +Infinity, b: -Infinity, c: +NaN, d: -NaN}")
    assert doc["a"] == math.inf and doc["b"] == -math.inf and math.isnan(doc["c"]) and math.isnan(doc["d"])


@pytest.mark.parametrize("text", ["{a: '\\x4'}", "{a: '\\xZZ'}", "{a: '\\u12'}", "{a: '\\u+123'}", "{a: 0x}",
                                  "{a: 01}", "{a: 'end\\'}"])
def test_json5_bad_escapes_and_numbers_raise_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_json5(text)


@pytest.mark.parametrize(("text", "expected"), JSON5_SPEC_FORMS, ids=[t for t, _ in JSON5_SPEC_FORMS])
def test_json5_spec_forms_are_read(text: str, expected: Any) -> None:
    assert parse_json5(text) == expected


def test_json5_duplicate_keys_last_wins() -> None:
    assert parse_json5("{a: 1, b: 2, a: 3}") == {"a": 3, "b": 2}  # as the gateway's own reader


def test_json5_numbers_keep_their_type() -> None:
    doc = parse_json5("{a: 18789, b: 0x4A25, c: 1e3, d: 5., e: 123456789012345678901234567890}")
    assert [type(v) for v in doc.values()] == [int, int, float, float, int]
    assert doc["e"] == 123456789012345678901234567890


@pytest.mark.parametrize("text", ["{a: '\\ud83e\\udd9e'}", '{a: "\\uD83E\\uDD9E"}', "{a: '🦞'}"])
def test_json5_surrogate_pairs_are_one_character(text: str) -> None:
    # the json5 package alone returns two lone surrogates, which cannot even be encoded as UTF-8
    value = parse_json5(text)["a"]
    assert value == "\U0001F99E" and value.encode("utf-8")


def test_json5_escaped_surrogate_pair_in_a_key_and_a_list() -> None:
    doc = parse_json5("{'\\ud83e\\udd9e': ['x\\ud83e\\udd9ey', '\\ud83e']}")
    assert doc == {"\U0001F99E": ["x\U0001F99Ey", "\ud83e"]}  # a lone surrogate stays as it is


def test_json5_config_nesting_is_read() -> None:
    # the deepest example in the gateways' docs is 10 levels; the package recurses per level
    deep = "{a:" * 25 + "1" + "}" * 25
    doc = parse_json5(deep)
    for _ in range(25):
        doc = doc["a"]
    assert doc == 1


@pytest.mark.parametrize("text", ["[" * 1000 + "]" * 1000, "{a:" * 100_000 + "1" + "}" * 100_000])
def test_json5_too_deep_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        parse_json5(text)


@pytest.mark.parametrize("text", ["", "   ", "// only a comment", "{a: 'x\ny'}", "{a: }", "{a: \x01}", "{a: 1}\n}",
                                  "{a: 'x\u2028", "{ key: [1, 2, \n\n\n"])
def test_json5_error_is_one_printable_line(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_json5(text)
    msg = str(info.value)
    assert msg and msg.isprintable() and "<string>" not in msg


def test_json5_error_names_line_and_column() -> None:
    with pytest.raises(ValueError, match=r"^line 3 column 6: unexpected \"}\"$"):
        parse_json5("{\n  a: 1,\n  b: }\n")


@pytest.mark.parametrize("text", ["{ gateway: { port: }", "{gateway: {bind: 'x\ny'}}", "[" * 5000, "{a: 1} /* open"])
def test_read_gateway_config_unreadable_is_a_one_line_problem_naming_the_file(tmp_path: Path, text: str) -> None:
    p = tmp_path / "openclaw.json"
    p.write_text(text)
    cfg = read_gateway_config(p, {})
    assert cfg.found and cfg.problem and cfg.problem.startswith(f"{p}: cannot read: ")
    assert "\n" not in cfg.problem and cfg.problem.isprintable()


def test_read_gateway_config_reads_json5(tmp_path: Path) -> None:
    p = tmp_path / "openclaw.json"
    p.write_text("\ufeff// c\n{gateway: {port: 0x4A25, bind: 'loopback', auth: {mode: 'token', token: 'a\\\nb',},},}")
    cfg = read_gateway_config(p, {})
    assert cfg.problem is None and (cfg.port, cfg.bind, cfg.auth_mode, cfg.token) == (18981, "loopback", "token", "ab")
