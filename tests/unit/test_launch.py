"""The launch contract: argv, environment, port, credentials; and the capability table."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from supervisor.config import GatewaySettings
from supervisor.errors import LaunchError
from supervisor.gateway import launch
from supervisor.gateway.capabilities import (
    RECOVERY_CURRENT,
    RECOVERY_LEGACY,
    Capabilities,
    for_version,
    parse_version,
)
from supervisor.gateway.launch import (
    DEFAULT_PORT,
    NO_WARNING_FLAG,
    GatewayAuth,
    GatewayFileConfig,
    Secret,
    child_environment,
    read_gateway_config,
    resolve_auth,
)

CURRENT = for_version("2026.9.6")
LEGACY = for_version("2026.2.26")
NO_AUTH = GatewayAuth("token", Secret("x" * 40), "env OPENCLAW_GATEWAY_TOKEN", False)

SERVICE_MANAGER_VARS = {
    "INVOCATION_ID": "abc123",
    "JOURNAL_STREAM": "8:12345",
    "SYSTEMD_EXEC_PID": "4242",
    "LAUNCH_JOB_LABEL": "ai.openclaw.gateway",
    "LAUNCH_JOB_NAME": "ai.openclaw.gateway",
    "XPC_SERVICE_NAME": "ai.openclaw.gateway",
    "OPENCLAW_SERVICE_MARKER": "launchd",
    "OPENCLAW_SERVICE_KIND": "launchd",
    "OPENCLAW_LAUNCHD_LABEL": "ai.openclaw.gateway",
    "OPENCLAW_SYSTEMD_UNIT": "openclaw-gateway.service",
    "NOTIFY_SOCKET": "/run/systemd/notify",
}
KEPT_VARS = {
    "PATH": "/opt/homebrew/bin:/usr/bin:/bin",
    "HOME": "/Users/someone",
    "LANG": "en_US.UTF-8",
    "OPENAI_API_KEY": "sk-test-key",
    "OPENCLAW_STATE_DIR": "/tmp/state",
    "TMPDIR": "/tmp/x",
}


def gw_settings(**kw: Any) -> GatewaySettings:
    base: dict[str, Any] = dict(openclaw="openclaw", node="", command=(), version="", port=0, args=(),
                                config_path="", state_dir="", env={})
    base.update(kw)
    return GatewaySettings(**base)


# -- child_environment ------------------------------------------------------------------------

@pytest.mark.parametrize("caps", [CURRENT, LEGACY], ids=["9.x", "2.x"])
def test_child_environment_removes_service_manager_vars_and_keeps_the_rest(caps: Capabilities) -> None:
    env = child_environment({**SERVICE_MANAGER_VARS, **KEPT_VARS}, {}, caps, NO_AUTH)
    for name in SERVICE_MANAGER_VARS:
        if name == "OPENCLAW_SERVICE_MARKER" and caps.legacy:
            assert env[name] == "gatewayd"  # ours, set on purpose, never the inherited one
        else:
            assert name not in env, name
    for name, value in KEPT_VARS.items():
        assert env[name] == value, name


@pytest.mark.parametrize("name", ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "MANAGERPID",
                                  "OPENCLAW_NO_RESPAWN", "OPENCLAW_SERVICE_ANYTHING", "LAUNCH_JOB_ANYTHING"])
def test_child_environment_removes_socket_activation_and_prefix_vars(name: str) -> None:
    env = child_environment({name: "1", "PATH": "/bin"}, {}, CURRENT, NO_AUTH)
    assert name not in env and env["PATH"] == "/bin"


def test_child_environment_current_sets_external_supervisor_mode() -> None:
    env = child_environment({"OPENCLAW_SUPERVISOR_MODE": "launchd", "OPENCLAW_SERVICE_REPAIR_POLICY": "auto"},
                            {}, CURRENT, NO_AUTH)
    assert env["OPENCLAW_SUPERVISOR_MODE"] == "external"
    assert env["OPENCLAW_SERVICE_REPAIR_POLICY"] == "external"
    assert "OPENCLAW_SERVICE_MARKER" not in env


def test_child_environment_legacy_sets_marker_and_never_supervisor_mode() -> None:
    env = child_environment({"OPENCLAW_SUPERVISOR_MODE": "external", "OPENCLAW_SERVICE_REPAIR_POLICY": "auto"},
                            {}, LEGACY, NO_AUTH)
    assert env["OPENCLAW_SERVICE_MARKER"] == "gatewayd"
    assert "OPENCLAW_SUPERVISOR_MODE" not in env
    assert "OPENCLAW_SERVICE_REPAIR_POLICY" not in env


@pytest.mark.parametrize(("before", "after"), [
    (None, NO_WARNING_FLAG),
    ("", NO_WARNING_FLAG),
    ("--max-old-space-size=4096", f"--max-old-space-size=4096 {NO_WARNING_FLAG}"),
    (NO_WARNING_FLAG, NO_WARNING_FLAG),
    (f"--enable-source-maps {NO_WARNING_FLAG}", f"--enable-source-maps {NO_WARNING_FLAG}"),
])
@pytest.mark.parametrize("caps", [CURRENT, LEGACY], ids=["9.x", "2.x"])
def test_child_environment_node_options_carry_the_warning_flag_once(
        caps: Capabilities, before: str | None, after: str) -> None:
    base = {} if before is None else {"NODE_OPTIONS": before}
    env = child_environment(base, {}, caps, NO_AUTH)
    assert env["NODE_OPTIONS"] == after
    assert env["NODE_OPTIONS"].split().count(NO_WARNING_FLAG) == 1


def test_child_environment_node_options_from_extra_are_kept() -> None:
    env = child_environment({"NODE_OPTIONS": "--a"}, {"NODE_OPTIONS": "--b"}, CURRENT, NO_AUTH)
    assert env["NODE_OPTIONS"] == f"--b {NO_WARNING_FLAG}"


def test_child_environment_extra_is_added() -> None:
    env = child_environment({"PATH": "/bin"}, {"FOO": "bar"}, CURRENT, NO_AUTH)
    assert env["FOO"] == "bar"


def test_child_environment_injects_generated_token_only() -> None:
    gen = GatewayAuth("token", Secret("g" * 48), "generated (x)", True)
    assert child_environment({}, {}, CURRENT, gen)["OPENCLAW_GATEWAY_TOKEN"] == "g" * 48
    assert "OPENCLAW_GATEWAY_TOKEN" not in child_environment({}, {}, CURRENT, NO_AUTH)


def test_child_environment_does_not_change_base() -> None:
    base = {**SERVICE_MANAGER_VARS, "NODE_OPTIONS": "--x"}
    snapshot = dict(base)
    child_environment(base, {}, LEGACY, NO_AUTH)
    assert base == snapshot


# -- read_gateway_config ----------------------------------------------------------------------

JSON5_CONFIG = """
// OpenClaw config, JSON5
{
  gateway: {
    port: 19001,   // not the default
    bind: 'loopback',
    tls: { enabled: true, },
    auth: {
      mode: "token",
      token: 'literal-token-0123456789', /* a literal */
    },
  },
  agents: { list: [ { id: "main", }, ], },
}
"""


def test_read_gateway_config_json5(tmp_path: Path) -> None:
    p = tmp_path / "openclaw.json"
    p.write_text(JSON5_CONFIG)
    cfg = read_gateway_config(p, {})
    assert cfg.found and cfg.problem is None
    assert (cfg.port, cfg.bind, cfg.tls, cfg.auth_mode, cfg.has_auth) == (19001, "loopback", True, "token", True)
    assert cfg.token == "literal-token-0123456789"
    assert cfg.password is None


def test_read_gateway_config_missing_file(tmp_path: Path) -> None:
    cfg = read_gateway_config(tmp_path / "nope.json", {})
    assert not cfg.found and cfg.problem is None and cfg.port is None and not cfg.has_auth


def test_read_gateway_config_unreadable_json_is_a_problem_naming_the_file(tmp_path: Path) -> None:
    p = tmp_path / "openclaw.json"
    p.write_text("{ gateway: { port: }")
    cfg = read_gateway_config(p, {})
    assert cfg.found and cfg.problem and str(p) in cfg.problem


def test_read_gateway_config_without_gateway_section(tmp_path: Path) -> None:
    p = tmp_path / "openclaw.json"
    p.write_text("{agents: {}}")
    cfg = read_gateway_config(p, {})
    assert cfg.found and cfg.port is None and not cfg.has_auth


@pytest.mark.parametrize("port", ['"19001"', "true", "19001.5"])
def test_read_gateway_config_ignores_non_int_port(tmp_path: Path, port: str) -> None:
    p = tmp_path / "openclaw.json"
    p.write_text(f"{{gateway: {{port: {port}}}}}")
    assert read_gateway_config(p, {}).port is None


@pytest.mark.parametrize(("token", "environ", "expected"), [
    ('"${GW_TOKEN}"', {"GW_TOKEN": "from-env-ref-123456"}, "from-env-ref-123456"),
    ('"${GW_TOKEN}"', {}, None),
    ('"pre-${GW_TOKEN}"', {"GW_TOKEN": "abc"}, "pre-abc"),
    ('{source: "env", id: "GW_TOKEN"}', {"GW_TOKEN": "from-secret-ref-123"}, "from-secret-ref-123"),
    ('{source: "env", id: "GW_TOKEN"}', {}, None),
    ('{source: "file", id: "x"}', {}, None),
    ("42", {}, None),
])
def test_read_gateway_config_token_substitution(tmp_path: Path, token: str, environ: dict[str, str],
                                                expected: str | None) -> None:
    p = tmp_path / "openclaw.json"
    p.write_text(f"{{gateway: {{auth: {{mode: 'token', token: {token}}}}}}}")
    assert read_gateway_config(p, environ).token == expected


# -- resolve_auth -----------------------------------------------------------------------------

def file_cfg(tmp_path: Path, auth: dict[str, Any] | None, environ: dict[str, str] | None = None) -> GatewayFileConfig:
    p = tmp_path / "openclaw.json"
    doc: dict[str, Any] = {"gateway": {"port": 18789}}
    if auth is not None:
        doc["gateway"]["auth"] = auth
    p.write_text(json.dumps(doc))
    return read_gateway_config(p, environ or {})


ENV_TOK = "env-token-aaaaaaaaaaaa"
DOTENV_TOK = "dotenv-token-bbbbbbbbbb"
LIT_TOK = "literal-token-cccccccccc"
REF_TOK = "ref-token-dddddddddddd"


@pytest.mark.parametrize(("use_env", "use_dotenv", "auth", "expected", "source_has"), [
    (True, True, {"mode": "token", "token": LIT_TOK}, ENV_TOK, "env OPENCLAW_GATEWAY_TOKEN"),
    (False, True, {"mode": "token", "token": LIT_TOK}, DOTENV_TOK, ".env OPENCLAW_GATEWAY_TOKEN"),
    (False, False, {"mode": "token", "token": LIT_TOK}, LIT_TOK, "gateway.auth.token"),
    (False, False, {"mode": "token", "token": "${REF_TOKEN}"}, REF_TOK, "gateway.auth.token"),
    (False, True, {"mode": "token", "token": "${REF_TOKEN}"}, DOTENV_TOK, ".env"),
    (False, False, {"token": LIT_TOK}, LIT_TOK, "gateway.auth.token"),  # mode defaults to token
], ids=["env-beats-all", "dotenv-beats-config", "config-literal", "config-env-ref", "dotenv-beats-ref",
        "no-mode-means-token"])
def test_resolve_auth_order(tmp_path: Path, use_env: bool, use_dotenv: bool, auth: dict[str, Any],
                            expected: str, source_has: str) -> None:
    environ = {"REF_TOKEN": REF_TOK}
    if use_env:
        environ["OPENCLAW_GATEWAY_TOKEN"] = ENV_TOK
    dotenv = {"OPENCLAW_GATEWAY_TOKEN": DOTENV_TOK} if use_dotenv else {}
    got = resolve_auth(file_cfg(tmp_path, auth, environ), environ, dotenv, tmp_path / "tok")
    assert (got.mode, got.secret, got.inject) == ("token", expected, False)
    assert source_has in got.source and expected not in got.source
    assert not (tmp_path / "tok").exists()


def test_resolve_auth_generates_when_no_auth_section(tmp_path: Path) -> None:
    token_file = tmp_path / "state" / "gateway-token"
    got = resolve_auth(file_cfg(tmp_path, None), {}, {}, token_file)
    assert got.mode == "token" and got.inject and got.secret
    assert len(got.secret) >= 32 and "generated" in got.source and got.secret not in got.source
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert token_file.read_text().strip() == got.secret
    again = resolve_auth(file_cfg(tmp_path, None), {}, {}, token_file)
    assert again.secret == got.secret
    assert not list(token_file.parent.glob("*.tmp"))


def test_resolve_auth_generated_token_file_is_0600_even_with_loose_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        token_file = tmp_path / "gateway-token"
        resolve_auth(file_cfg(tmp_path, None), {}, {}, token_file)
    finally:
        os.umask(old)
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600


def test_resolve_auth_reuses_an_existing_token_file(tmp_path: Path) -> None:
    token_file = tmp_path / "gateway-token"
    token_file.write_text("existing-token-eeeeeeeeeeee\n")
    got = resolve_auth(file_cfg(tmp_path, None), {}, {}, token_file)
    assert got.secret == "existing-token-eeeeeeeeeeee" and got.inject


def test_resolve_auth_env_token_wins_over_generation(tmp_path: Path) -> None:
    got = resolve_auth(file_cfg(tmp_path, None), {"OPENCLAW_GATEWAY_TOKEN": ENV_TOK}, {}, tmp_path / "tok")
    assert got.secret == ENV_TOK and not got.inject and not (tmp_path / "tok").exists()


@pytest.mark.parametrize(("environ", "dotenv", "expected"), [
    ({"OPENCLAW_GATEWAY_PASSWORD": "env-password-1"}, {"OPENCLAW_GATEWAY_PASSWORD": "dotenv-pass"}, "env-password-1"),
    ({}, {"OPENCLAW_GATEWAY_PASSWORD": "dotenv-password"}, "dotenv-password"),
    ({}, {}, "config-password-1"),
])
def test_resolve_auth_password_mode_uses_password_and_injects_nothing(
        tmp_path: Path, environ: dict[str, str], dotenv: dict[str, str], expected: str) -> None:
    cfg = file_cfg(tmp_path, {"mode": "password", "password": "config-password-1"})
    got = resolve_auth(cfg, environ, dotenv, tmp_path / "tok")
    assert (got.mode, got.secret, got.inject) == ("password", expected, False)
    assert not (tmp_path / "tok").exists()
    env = child_environment({"PATH": "/bin"}, {}, CURRENT, got)
    assert "OPENCLAW_GATEWAY_TOKEN" not in env and "OPENCLAW_GATEWAY_PASSWORD" not in env


def test_resolve_auth_password_without_mode_is_password(tmp_path: Path) -> None:
    got = resolve_auth(file_cfg(tmp_path, {"password": "pw-only-1234"}), {}, {}, tmp_path / "tok")
    assert (got.mode, got.secret) == ("password", "pw-only-1234")


def test_resolve_auth_password_mode_without_password_is_an_error(tmp_path: Path) -> None:
    cfg = file_cfg(tmp_path, {"mode": "password"})
    with pytest.raises(LaunchError) as info:
        resolve_auth(cfg, {}, {}, tmp_path / "tok")
    assert "password" in str(info.value) and str(cfg.path) in str(info.value)


def test_resolve_auth_mode_none(tmp_path: Path) -> None:
    got = resolve_auth(file_cfg(tmp_path, {"mode": "none"}), {"OPENCLAW_GATEWAY_TOKEN": ENV_TOK}, {},
                       tmp_path / "tok")
    assert (got.mode, got.secret, got.inject) == ("none", None, False)
    assert not (tmp_path / "tok").exists()
    assert "OPENCLAW_GATEWAY_TOKEN" not in child_environment({}, {}, CURRENT, got)


def test_read_dotenv(tmp_path: Path) -> None:
    p = tmp_path / ".env"
    p.write_text("# comment\n\nexport A=1\nB = 'two'\nC=\"three\"\nnot a pair\n")
    assert launch.read_dotenv(p) == {"A": "1", "B": "two", "C": "three"}
    assert launch.read_dotenv(tmp_path / "missing") == {}


def test_read_dotenv_strips_inline_comments_of_unquoted_values(tmp_path: Path) -> None:
    p = tmp_path / ".env"
    p.write_text("A=1 # the first\n"
                 "B=tok#en\n"  # no whitespace before `#`: part of the value
                 "C=  # only a comment\n"
                 "D='quoted # kept' # comment\n"
                 "E=\"x #y\"\n"
                 "F=#starts-with-hash\n"
                 "G=two words\t# tab before\n")
    assert launch.read_dotenv(p) == {"A": "1", "B": "tok#en", "C": "", "D": "quoted # kept", "E": "x #y",
                                     "F": "#starts-with-hash", "G": "two words"}


# -- Secret -----------------------------------------------------------------------------------

def test_secret_repr_hides_the_value() -> None:
    s = Secret("super-secret-value-123")
    assert repr(s) == "Secret('***')"
    assert "super-secret" not in repr(s) and "super-secret" not in repr([s]) and "super-secret" not in repr({"k": s})
    assert s == "super-secret-value-123"  # still usable as the string
    auth = GatewayAuth("token", s, "env", False)
    assert "super-secret" not in repr(auth)


# -- build ------------------------------------------------------------------------------------

def fake_install(root: Path, version: str = "2026.9.6") -> tuple[Path, Path]:
    pkg = root / "node_modules" / "openclaw"
    pkg.mkdir(parents=True)
    entry = pkg / "openclaw.mjs"
    entry.write_text("// fake\n")
    (pkg / "package.json").write_text(json.dumps({"name": "openclaw", "version": version}))
    node = root / "node_modules" / ".bin" / "node"
    node.parent.mkdir(parents=True)
    node.write_text("#!/bin/sh\n")
    node.chmod(0o755)
    return entry, node


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Any]:
    entry, node = fake_install(tmp_path / "install")
    home = tmp_path / "home"
    (home / ".openclaw").mkdir(parents=True)
    environ = {"PATH": str(tmp_path / "emptybin"), "HOME": str(home), "INVOCATION_ID": "x", "KEEP_ME": "1"}
    return {"entry": entry, "node": node, "home": home, "environ": environ, "state": tmp_path / "gwd"}


def write_gw_config(home: Path, text: str) -> Path:
    p = home / ".openclaw" / "openclaw.json"
    p.write_text(text)
    return p


def test_build_resolves_argv_version_and_env(tree: dict[str, Any]) -> None:
    spec = launch.build(gw_settings(openclaw=str(tree["entry"])), tree["state"], tree["environ"])
    assert spec.argv == (str(tree["node"].absolute()), str(tree["entry"].resolve()), "gateway", "run",
                         "--port", str(DEFAULT_PORT))
    assert spec.capabilities.version == "2026.9.6" and spec.capabilities.protocol == 4
    assert spec.port == DEFAULT_PORT and spec.host == "127.0.0.1" and not spec.tls
    assert spec.http_base == f"http://127.0.0.1:{DEFAULT_PORT}"
    assert spec.ws_url == f"ws://127.0.0.1:{DEFAULT_PORT}/"
    assert spec.config_path == tree["home"] / ".openclaw" / "openclaw.json"
    assert spec.state_dir == tree["home"] / ".openclaw"
    assert "INVOCATION_ID" not in spec.env and spec.env["KEEP_ME"] == "1"
    assert spec.env["OPENCLAW_SUPERVISOR_MODE"] == "external"
    # no gateway config at all: a generated token, injected, kept in gatewayd's state dir
    assert spec.auth.inject and spec.env["OPENCLAW_GATEWAY_TOKEN"] == spec.auth.secret
    assert (tree["state"] / launch.TOKEN_FILE).exists()
    assert spec.secrets() == (spec.auth.secret,)
    assert spec.auth.secret not in repr(spec)


def test_build_legacy_version_from_package_json(tmp_path: Path) -> None:
    entry, _node = fake_install(tmp_path / "i", version="2026.2.26")
    environ = {"PATH": "", "HOME": str(tmp_path / "h")}
    spec = launch.build(gw_settings(openclaw=str(entry)), tmp_path / "s", environ)
    assert spec.capabilities.version == "2026.2.26" and spec.capabilities.legacy
    assert spec.env["OPENCLAW_SERVICE_MARKER"] == "gatewayd"
    assert "OPENCLAW_SUPERVISOR_MODE" not in spec.env


def test_build_settings_version_overrides_package_json(tree: dict[str, Any]) -> None:
    spec = launch.build(gw_settings(openclaw=str(tree["entry"]), version="2026.2.26"), tree["state"],
                        tree["environ"])
    assert spec.capabilities.version == "2026.2.26"


def test_build_args_and_explicit_node(tree: dict[str, Any], tmp_path: Path) -> None:
    node = tmp_path / "mynode"
    node.write_text("")
    spec = launch.build(gw_settings(openclaw=str(tree["entry"]), node=str(node), args=("--verbose",)),
                        tree["state"], tree["environ"])
    assert spec.argv[0] == str(node) and spec.argv[-1] == "--verbose"
    assert spec.argv[2:6] == ("gateway", "run", "--port", str(DEFAULT_PORT))


def test_build_command_replaces_node_and_entry(tree: dict[str, Any]) -> None:
    spec = launch.build(gw_settings(command=("/usr/bin/env", "fake-gateway"), version="2026.9.6"),
                        tree["state"], tree["environ"])
    assert spec.argv[:2] == ("/usr/bin/env", "fake-gateway") and spec.argv[2:4] == ("gateway", "run")


@pytest.mark.parametrize(("settings_port", "env_port", "config_port", "expected"), [
    (4000, "5000", 6000, 4000),
    (0, "5000", 6000, 5000),
    (0, None, 6000, 6000),
    (0, None, None, DEFAULT_PORT),
    (0, "not-a-port", 6000, 6000),
], ids=["settings", "env", "config", "default", "bad-env-ignored"])
def test_build_port_precedence(tree: dict[str, Any], settings_port: int, env_port: str | None,
                               config_port: int | None, expected: int) -> None:
    environ = dict(tree["environ"])
    if env_port is not None:
        environ["OPENCLAW_GATEWAY_PORT"] = env_port
    gw: dict[str, Any] = {"auth": {"mode": "token", "token": "cfg-token-123456789"}}
    if config_port is not None:
        gw["port"] = config_port
    write_gw_config(tree["home"], json.dumps({"gateway": gw}))
    spec = launch.build(gw_settings(openclaw=str(tree["entry"]), port=settings_port), tree["state"], environ)
    assert spec.port == expected
    assert spec.argv[spec.argv.index("--port") + 1] == str(expected)


def test_build_port_from_settings_env_table(tree: dict[str, Any]) -> None:
    spec = launch.build(gw_settings(openclaw=str(tree["entry"]), env={"OPENCLAW_GATEWAY_PORT": "7100"}),
                        tree["state"], tree["environ"])
    assert spec.port == 7100 and spec.env["OPENCLAW_GATEWAY_PORT"] == "7100"


def test_build_reads_tls_and_config_token(tree: dict[str, Any]) -> None:
    write_gw_config(tree["home"], JSON5_CONFIG)
    spec = launch.build(gw_settings(openclaw=str(tree["entry"])), tree["state"], tree["environ"])
    assert spec.port == 19001 and spec.tls
    assert spec.http_base == "https://127.0.0.1:19001" and spec.ws_url == "wss://127.0.0.1:19001/"
    assert spec.auth.secret == "literal-token-0123456789" and not spec.auth.inject
    assert "OPENCLAW_GATEWAY_TOKEN" not in spec.env


def test_build_reads_dotenv_in_gateway_state_dir(tree: dict[str, Any]) -> None:
    write_gw_config(tree["home"], '{gateway: {auth: {mode: "token", token: "${NOT_SET_ANYWHERE}"}}}')
    (tree["home"] / ".openclaw" / ".env").write_text("OPENCLAW_GATEWAY_TOKEN=dotenv-token-ffffffffff\n")
    spec = launch.build(gw_settings(openclaw=str(tree["entry"])), tree["state"], tree["environ"])
    assert spec.auth.secret == "dotenv-token-ffffffffff" and not spec.auth.inject


def test_build_broken_gateway_config_is_a_launch_error(tree: dict[str, Any]) -> None:
    p = write_gw_config(tree["home"], "{gateway: {port: ")
    with pytest.raises(LaunchError) as info:
        launch.build(gw_settings(openclaw=str(tree["entry"])), tree["state"], tree["environ"])
    assert str(p) in str(info.value)


def test_build_honours_openclaw_state_dir_and_config_path(tree: dict[str, Any], tmp_path: Path) -> None:
    environ = {**tree["environ"], "OPENCLAW_STATE_DIR": str(tmp_path / "st")}
    spec = launch.build(gw_settings(openclaw=str(tree["entry"])), tree["state"], environ)
    assert spec.state_dir == tmp_path / "st" and spec.config_path == tmp_path / "st" / "openclaw.json"
    environ["OPENCLAW_CONFIG_PATH"] = str(tmp_path / "elsewhere.json")
    spec = launch.build(gw_settings(openclaw=str(tree["entry"])), tree["state"], environ)
    assert spec.config_path == tmp_path / "elsewhere.json"


def test_build_missing_openclaw_on_path_is_a_launch_error(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    with pytest.raises(LaunchError) as info:
        launch.build(gw_settings(), tmp_path / "s", {"PATH": str(tmp_path / "bin"), "HOME": str(tmp_path)})
    assert "openclaw not found" in str(info.value)


def test_build_missing_openclaw_path_is_a_launch_error(tmp_path: Path) -> None:
    missing = tmp_path / "node_modules" / "openclaw" / "openclaw.mjs"
    with pytest.raises(LaunchError) as info:
        launch.build(gw_settings(openclaw=str(missing)), tmp_path / "s", {"PATH": "", "HOME": str(tmp_path)})
    assert str(missing) in str(info.value)


def test_build_entry_without_any_node_is_a_launch_error(tmp_path: Path) -> None:
    entry = tmp_path / "lib" / "openclaw.mjs"
    entry.parent.mkdir()
    entry.write_text("")
    (tmp_path / "bin").mkdir()
    with pytest.raises(LaunchError) as info:
        launch.build(gw_settings(openclaw=str(entry), version="2026.9.6"), tmp_path / "s",
                     {"PATH": str(tmp_path / "bin"), "HOME": str(tmp_path)})
    assert "node" in str(info.value)


def test_build_openclaw_found_on_path(tmp_path: Path) -> None:
    entry, node = fake_install(tmp_path / "i")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    link = bindir / "openclaw"
    link.symlink_to(entry)
    entry.chmod(0o755)
    spec = launch.build(gw_settings(), tmp_path / "s", {"PATH": str(bindir), "HOME": str(tmp_path / "h")})
    assert spec.argv[:2] == (str(node.absolute()), str(entry.resolve()))


def test_read_version_falls_back_to_dash_dash_version(tmp_path: Path) -> None:
    script = tmp_path / "openclaw"
    script.write_text('#!/bin/sh\necho "OpenClaw 2026.9.6 (abc123)"\n')
    script.chmod(0o755)
    spec = launch.build(gw_settings(openclaw=str(script)), tmp_path / "s", {"PATH": "/usr/bin:/bin",
                                                                            "HOME": str(tmp_path / "h")})
    assert spec.argv[0] == str(script.resolve())
    assert spec.capabilities.version == "2026.9.6"


def test_read_version_without_any_version_is_a_launch_error(tmp_path: Path) -> None:
    script = tmp_path / "openclaw"
    script.write_text("#!/bin/sh\necho hello\n")
    script.chmod(0o755)
    with pytest.raises(LaunchError) as info:
        launch.build(gw_settings(openclaw=str(script)), tmp_path / "s", {"PATH": "/usr/bin:/bin",
                                                                         "HOME": str(tmp_path / "h")})
    assert "gateway.version" in str(info.value)


def test_launch_spec_ipv6_host_is_bracketed(tree: dict[str, Any]) -> None:
    spec = launch.build(gw_settings(openclaw=str(tree["entry"])), tree["state"], tree["environ"])
    v6 = dataclasses.replace(spec, host="::1")
    assert v6.http_base == f"http://[::1]:{DEFAULT_PORT}" and v6.ws_url == f"ws://[::1]:{DEFAULT_PORT}/"


# -- capabilities -----------------------------------------------------------------------------

@pytest.mark.parametrize(("version", "protocol", "http", "sig", "external", "resumes", "blocks"), [
    ("2026.2.26", 3, False, signal.SIGUSR1, False, False, True),
    ("2026.9.6", 4, True, signal.SIGUSR2, True, True, False),
    ("2026.8.1", 4, True, signal.SIGUSR1, False, True, False),
    ("2026.7.30", 3, False, signal.SIGUSR1, False, False, True),
    ("2027.1.1", 4, True, signal.SIGUSR2, True, True, False),
    ("not a version", 3, False, signal.SIGUSR1, False, False, True),
])
def test_capabilities_for_version(version: str, protocol: int, http: bool, sig: signal.Signals, external: bool,
                                  resumes: bool, blocks: bool) -> None:
    c = for_version(version)
    assert (c.protocol, c.http_probes, c.restart_signal, c.external_supervisor, c.recovery.resumes_main_sessions,
            c.cron_run_blocks) == (protocol, http, sig, external, resumes, blocks)
    assert c.legacy is (not http)
    # The facts snapshotter and recovery read: one version family or the other, never a mix.
    family = dataclasses.replace(c.recovery, hears_every_turn_start=False,  # measured on 2026.2.x only
                                 subscribers_hear_every_turn_start=False,  # and on 2026.9.x
                                 lists_default_main_queue_only=False)  # 2026.2.x only
    assert family == (RECOVERY_CURRENT if resumes else RECOVERY_LEGACY)
    assert (c.session_activity_fields, c.sessions_list_filters, c.process_instance_id) == (http, http, http)
    assert (c.cron_marks_drift, c.cron_run_mode) == (not http, "if-enabled" if http else "force")


@pytest.mark.parametrize(("text", "expected"), [
    ("2026.9.6", (2026, 9, 6)), ("OpenClaw v2026.2.26\n", (2026, 2, 26)), ("1.2.3", None), ("", None),
])
def test_parse_version(text: str, expected: tuple[int, int, int] | None) -> None:
    assert parse_version(text) == expected


def test_capabilities_methods() -> None:
    c = for_version("2026.9.6")
    assert c.has_method("anything")  # unknown until hello-ok
    c2 = c.with_methods(frozenset({"health"}))
    assert c2.has_method("health") and not c2.has_method("cron.run") and c.methods == frozenset()


# -- 2026.2.x's jobs file ------------------------------------------------------------------------


def test_the_jobs_file_shows_the_runs_left_running_with_the_key_cron_list_gives(tmp_path: Path) -> None:
    from supervisor.gateway import jobstore

    path = tmp_path / "cron" / "jobs.json"
    assert jobstore.left_running(path) == {}  # no file: no runs
    path.parent.mkdir()
    path.write_text(json.dumps({"version": 1, "jobs": [
        {"id": "a", "name": "hourly", "enabled": True, "schedule": {"kind": "every", "everyMs": 3_600_000},
         "sessionTarget": "isolated", "payload": {"kind": "agentTurn", "message": "x"},
         "state": {"runningAtMs": 1_795_000_000_000, "nextRunAtMs": 1_795_003_600_000}},
        {"id": "b", "name": "idle", "enabled": True, "schedule": {"kind": "at", "at": "2026-11-27T00:00:00Z"},
         "payload": {"kind": "agentTurn", "message": "y"}, "state": {}}]}))
    runs = jobstore.left_running(path)
    assert list(runs) == [("a", 1_795_000_000_000)] and runs["a", 1_795_000_000_000].schedule_kind == "every"


@pytest.mark.parametrize(("text", "fragment"), [("{not json", "not JSON"), ('{"jobs": 3}', "'jobs'"),
                                                ('{"jobs": [{"state": {"runningAtMs": 5}}]}', "'id'")])
def test_a_bad_jobs_file_is_one_error_naming_it(tmp_path: Path, text: str, fragment: str) -> None:
    from supervisor.gateway import jobstore

    path = tmp_path / "jobs.json"
    path.write_text(text)
    with pytest.raises(jobstore.JobStoreError) as err:
        jobstore.left_running(path)
    assert str(err.value).startswith(f"{path}: ") and fragment in str(err.value)


@pytest.mark.parametrize(("cron", "expected"), [(None, "STATE/cron/jobs.json"), ({"store": "/srv/jobs.json"},
                                                                                 "/srv/jobs.json"),
                                                ({"store": "mine/jobs.json"}, "STATE/mine/jobs.json")])
def test_the_jobs_file_is_where_the_gateways_config_puts_it(tmp_path: Path, cron: dict[str, str] | None,
                                                            expected: str) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "openclaw.json").write_text(json.dumps({"cron": cron} if cron else {}))
    spec = launch.build(gw_settings(command=(sys.executable, "-c", "pass"), version="2026.2.26"), tmp_path / "gd",
                        {"OPENCLAW_STATE_DIR": str(state), "PATH": os.defpath})
    assert str(spec.cron_store) == expected.replace("STATE", str(state))


@pytest.mark.parametrize(("session", "expected"), [(None, None), ({"store": "~/s/{agentId}/sessions.json"},
                                                                  "~/s/{agentId}/sessions.json"),
                                                     ({"store": "  "}, None), ({"store": 7}, None), ("x", None)])
def test_the_session_store_is_taken_as_the_gateways_config_writes_it(tmp_path: Path, session: object,
                                                                      expected: str | None) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "openclaw.json").write_text(json.dumps({"session": session} if session else {}))
    spec = launch.build(gw_settings(command=(sys.executable, "-c", "pass"), version="2026.2.26"), tmp_path / "gd",
                        {"OPENCLAW_STATE_DIR": str(state), "PATH": os.defpath})
    assert spec.session_store == expected and spec.state_dir == state


def test_configured_gateway_paths_are_handed_to_the_gateway_over_its_environment(tmp_path: Path) -> None:
    state, config = tmp_path / "mine", tmp_path / "mine.json"
    environ = {"OPENCLAW_STATE_DIR": str(tmp_path / "other"), "OPENCLAW_CONFIG_PATH": str(tmp_path / "other.json"),
               "PATH": os.defpath}
    spec = launch.build(gw_settings(command=(sys.executable, "-c", "pass"), version="2026.2.26",
                                    state_dir=str(state), config_path=str(config)), tmp_path / "gd", environ)
    assert (spec.state_dir, spec.config_path) == (state, config)
    assert (spec.env["OPENCLAW_STATE_DIR"], spec.env["OPENCLAW_CONFIG_PATH"]) == (str(state), str(config))
    unset = launch.build(gw_settings(command=(sys.executable, "-c", "pass"), version="2026.2.26"), tmp_path / "gd",
                         environ)
    assert unset.env["OPENCLAW_STATE_DIR"] == str(tmp_path / "other")  # as the gateway would resolve it
    only_state = launch.build(gw_settings(command=(sys.executable, "-c", "pass"), version="2026.2.26",
                                          state_dir=str(state)), tmp_path / "gd", {"PATH": os.defpath})
    # The config gatewayd read goes with it: 2.26 would fall back to ~/.openclaw's otherwise.
    assert only_state.env["OPENCLAW_CONFIG_PATH"] == str(state / "openclaw.json")


@pytest.mark.parametrize(("agents", "elsewhere"), [
    ({}, False),
    ({"defaults": {"heartbeat": {"every": "30m"}}}, False),
    ({"defaults": {"heartbeat": {"isolatedSession": True}}}, True),
    ({"entries": {"kit": {"heartbeat": {"isolatedSession": True}}}}, True),  # 2026.9.x
    ({"list": [{"id": "main"}, {"id": "kit", "heartbeat": {"session": "agent:kit:ops"}}]}, True),  # 2026.2.x
    ({"defaults": {"heartbeat": {"session": "main"}}}, False),
    ({"defaults": {"heartbeat": {"isolatedSession": "yes"}}}, False),
    ({"entries": "bad", "list": "bad", "defaults": 3}, False),
])
def test_a_heartbeat_outside_the_main_session_is_read_from_the_gateways_config(
        tmp_path: Path, agents: dict[str, object], elsewhere: bool) -> None:
    path = tmp_path / "openclaw.json"
    path.write_text(json.dumps({"agents": agents}))
    assert launch.read_gateway_config(path, {}).heartbeats_elsewhere is elsewhere


@pytest.mark.parametrize("doc", [
    {"agents": {"$include": "./agents.json5"}},  # the example in 2026.9.6's docs (configuration/common-tasks)
    {"$include": ["./base.json5"], "gateway": {"port": 18789}},
    {"agents": {"entries": {"kit": {"heartbeat": {"$include": "./kit-heartbeat.json5"}}}}},
    {"agents": {"list": [{"id": "main"}, {"$include": "./kit.json5"}]}},
])
def test_a_config_with_an_include_counts_as_heartbeats_elsewhere(tmp_path: Path, doc: dict[str, object]) -> None:
    """gatewayd does not read included files: an isolated heartbeat may be set there, so it cannot
    tell, and sets a dead 2026.9.x boot's texts aside rather than risk queueing them twice."""
    path = tmp_path / "openclaw.json"
    path.write_text(json.dumps(doc))
    assert launch.read_gateway_config(path, {}).heartbeats_elsewhere is True
