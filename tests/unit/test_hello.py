"""parse_hello: the hello-ok payload of both protocol versions, and malformed ones."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from supervisor.errors import GatewayProtocolError
from supervisor.gateway.rpc import Hello, parse_hello

V4: dict[str, Any] = {
    "type": "hello-ok",
    "protocol": 4,
    "server": {"version": "2026.9.6", "bootId": "boot-1234", "connId": "conn-9"},
    "features": {"methods": ["health", "cron.run", "sessions.list"], "events": ["shutdown", "agent"]},
    "auth": {"role": "operator", "scopes": ["operator.read", "operator.write", "operator.admin"]},
    "policy": {"tickIntervalMs": 15000},
    "snapshot": {"uptimeMs": 4321},
}

V3: dict[str, Any] = {
    "type": "hello-ok",
    "protocol": 3,
    "server": {"version": "2026.2.26", "connId": "c1"},
    "features": {"methods": ["health"], "events": ["shutdown"]},
    "auth": None,
    "snapshot": {"uptimeMs": 10.7},
}


def test_parse_hello_v4() -> None:
    h = parse_hello(copy.deepcopy(V4), 4)
    assert isinstance(h, Hello)
    assert h.protocol == 4
    assert h.server_version == "2026.9.6"
    assert h.boot_id == "boot-1234"
    assert h.conn_id == "conn-9"
    assert h.scopes == ("operator.read", "operator.write", "operator.admin")
    assert h.methods == frozenset({"health", "cron.run", "sessions.list"})
    assert h.events == frozenset({"shutdown", "agent"})
    assert h.tick_interval_ms == 15000
    assert h.uptime_ms == 4321
    assert h.raw["type"] == "hello-ok"


def test_parse_hello_v3_with_auth_null_has_no_scopes() -> None:
    h = parse_hello(copy.deepcopy(V3), 3)
    assert h.protocol == 3
    assert h.scopes is None
    assert h.boot_id is None
    assert h.server_version == "2026.2.26"
    assert h.tick_interval_ms == 30000  # default when the version sends no policy
    assert h.uptime_ms == 10


def test_parse_hello_v3_without_auth_key_has_no_scopes() -> None:
    payload = copy.deepcopy(V3)
    del payload["auth"]
    assert parse_hello(payload, 3).scopes is None


def test_parse_hello_auth_without_scopes_is_empty_scopes() -> None:
    payload = copy.deepcopy(V4)
    payload["auth"] = {"role": "operator"}
    assert parse_hello(payload, 4).scopes == ()


def test_parse_hello_minimal_payload() -> None:
    h = parse_hello({"type": "hello-ok", "protocol": 4}, 4)
    assert (h.server_version, h.boot_id, h.conn_id, h.scopes, h.uptime_ms) == (None, None, None, None, None)
    assert h.methods == frozenset() and h.events == frozenset() and h.tick_interval_ms == 30000


def test_parse_hello_ignores_non_string_ids() -> None:
    payload = copy.deepcopy(V4)
    payload["server"] = {"version": 2026, "bootId": 7, "connId": None}
    h = parse_hello(payload, 4)
    assert (h.server_version, h.boot_id, h.conn_id) == (None, None, None)


@pytest.mark.parametrize(("payload", "protocol"), [
    (V4, 3),
    (V3, 4),
])
def test_parse_hello_wrong_protocol(payload: dict[str, Any], protocol: int) -> None:
    with pytest.raises(GatewayProtocolError) as info:
        parse_hello(copy.deepcopy(payload), protocol)
    assert "protocol" in str(info.value)


def _without(key: str) -> dict[str, Any]:
    p = copy.deepcopy(V4)
    del p[key]
    return p


def _with(path: str, value: Any) -> dict[str, Any]:
    p = copy.deepcopy(V4)
    *parents, last = path.split(".")
    node = p
    for k in parents:
        node = node[k]
    node[last] = value
    return p


@pytest.mark.parametrize("payload", [
    _without("type"),
    _with("type", "hello"),
    _with("type", "res"),
    _without("protocol"),
    _with("protocol", "4"),
    _with("protocol", 4.0),
    _with("protocol", None),
    _with("server", "2026.9.6"),
    _with("server", ["x"]),
    _with("features.methods", "health"),
    _with("features.methods", {"health": True}),
    _with("features.events", "shutdown"),
    _with("auth.scopes", "operator.admin"),
    _with("auth.scopes", {"operator.admin": True}),
    None,
    [],
    "hello-ok",
    42,
], ids=lambda p: repr(p)[:60])
def test_parse_hello_malformed_raises_protocol_error(payload: Any) -> None:
    with pytest.raises(GatewayProtocolError) as info:
        parse_hello(payload, 4)
    assert str(info.value).startswith("hello-ok")
    assert "\n" not in str(info.value)
