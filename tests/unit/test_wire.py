"""The boundary every gateway value crosses (supervisor/gateway/wire.py): after it, every string
encodes as UTF-8 and every number is finite and storable."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.core.inflight import lenient_ms
from supervisor.errors import GatewayProtocolError
from supervisor.gateway import wire


def test_a_lone_surrogate_reads_as_the_replacement_character() -> None:
    assert wire.decode('{"name": "x-\\ud83d", "k\\udc00": 1}') == {"name": "x-\ufffd", "k\ufffd": 1}


def test_a_surrogate_pair_is_kept_whole() -> None:
    assert wire.decode('"\\ud83d\\ude00"') == "\U0001f600"


@pytest.mark.parametrize(("text", "value"), [("1e999", "Infinity"), ("-1e999", "-Infinity"), ("NaN", "NaN"),
                                             ("Infinity", "Infinity"), ("-Infinity", "-Infinity")])
def test_a_non_finite_number_reads_as_its_javascript_string(text: str, value: str) -> None:
    assert wire.decode(f'{{"startedAt": {text}}}') == {"startedAt": value}


def test_an_integer_beyond_javascripts_reads_as_the_float_javascript_holds() -> None:
    assert wire.decode(str(2**70)) == float(2**70)
    assert wire.decode(str(2**53)) == 2**53


@pytest.mark.parametrize("text", ["{not json", "", "[1,", b"\xff\xfe{"])
def test_malformed_json_is_a_protocol_error(text: str | bytes) -> None:
    with pytest.raises(GatewayProtocolError):
        wire.decode(text)


@pytest.mark.parametrize(("value", "expected"), [
    (1_700_000_000_000, 1_700_000_000_000), (1.5e12, 1_500_000_000_000), (0, 0), (None, None), (True, None),
    ("1700000000000", None), ("Infinity", None), (-1, None), (2**53, None), (1e300, None), ([1], None),
])
def test_ms_is_a_usable_time_or_none(value: Any, expected: int | None) -> None:
    assert lenient_ms(value) == expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(alphabet=st.characters(codec=None)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_whatever_json_says_every_value_decoded_can_be_stored(value: Any) -> None:
    text = json.dumps(value)  # Python writes NaN/Infinity and lone surrogates escaped, as JS can
    decoded = wire.decode(text)
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (v)")

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                walk(k)
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        else:
            conn.execute("INSERT INTO t VALUES (?)", (v,))  # raises for what SQLite cannot hold
            if isinstance(v, str):
                v.encode("utf-8")
    walk(decoded)
    json.dumps(decoded, allow_nan=False)  # and nothing non-finite is left
