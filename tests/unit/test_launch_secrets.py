"""Issue 17: `LaunchSpec.secrets()` (what the logs redact) holds every secret configured for the
gateway, not only the one its auth uses: the hooks token, and a token or password beside it."""

from __future__ import annotations

import json
from pathlib import Path

from supervisor.gateway import launch
from supervisor.gateway.launch import read_gateway_config
from tests.unit.test_launch import fake_install, gw_settings

AUTH_TOKEN = "auth-token-0123456789abcdef"
HOOKS_TOKEN = "hooks-shared-secret-42"


def build(tmp_path: Path, doc: dict[str, object], dotenv: str = "",
          environ: dict[str, str] | None = None) -> launch.LaunchSpec:
    entry, _node = fake_install(tmp_path / "install")
    gw_state = tmp_path / "home" / ".openclaw"
    gw_state.mkdir(parents=True)
    (gw_state / "openclaw.json").write_text(json.dumps(doc))
    if dotenv:
        (gw_state / ".env").write_text(dotenv)
    env = {"PATH": str(tmp_path / "emptybin"), "HOME": str(tmp_path / "home"), **(environ or {})}
    return launch.build(gw_settings(openclaw=str(entry)), tmp_path / "gwd", env)


def test_the_hooks_token_is_a_secret_to_redact(tmp_path: Path) -> None:
    spec = build(tmp_path, {"gateway": {"auth": {"mode": "token", "token": AUTH_TOKEN}},
                            "hooks": {"enabled": True, "token": HOOKS_TOKEN, "path": "/hooks"}})

    assert spec.auth.secret == AUTH_TOKEN
    assert spec.secrets() == (AUTH_TOKEN, HOOKS_TOKEN)
    assert HOOKS_TOKEN not in repr(spec) and HOOKS_TOKEN not in spec.env.values()  # redacted, never passed on


def test_a_hooks_token_by_reference_resolves_from_the_environment_or_the_gateways_env_file(tmp_path: Path) -> None:
    doc = {"gateway": {"auth": {"mode": "token", "token": AUTH_TOKEN}},
           "hooks": {"enabled": True, "token": "${HOOKS_SECRET}"}}
    assert HOOKS_TOKEN in build(tmp_path / "a", doc, environ={"HOOKS_SECRET": HOOKS_TOKEN}).secrets()
    assert HOOKS_TOKEN in build(tmp_path / "b", doc, dotenv=f"HOOKS_SECRET={HOOKS_TOKEN}\n").secrets()
    doc["hooks"] = {"enabled": True, "token": {"source": "env", "id": "HOOKS_SECRET"}}
    assert HOOKS_TOKEN in build(tmp_path / "c", doc, environ={"HOOKS_SECRET": HOOKS_TOKEN}).secrets()


def test_every_configured_gateway_secret_is_redacted_not_only_the_one_in_use(tmp_path: Path) -> None:
    # auth picks the environment's token; the config's token and password, and the .env's password,
    # are configured too: the gateway may print any of them.
    spec = build(tmp_path, {"gateway": {"auth": {"mode": "token", "token": "config-token-abcdef", "password": "pw"}}},
                 dotenv="OPENCLAW_GATEWAY_PASSWORD=dotenv-password\n",
                 environ={"OPENCLAW_GATEWAY_TOKEN": AUTH_TOKEN})

    assert spec.auth.secret == AUTH_TOKEN and spec.auth.source == "env OPENCLAW_GATEWAY_TOKEN"
    assert spec.secrets()[0] == AUTH_TOKEN
    assert set(spec.secrets()) == {AUTH_TOKEN, "config-token-abcdef", "pw", "dotenv-password"}
    assert len(spec.secrets()) == len(set(spec.secrets()))


def test_no_hooks_section_no_hooks_secret(tmp_path: Path) -> None:
    cfg = tmp_path / "openclaw.json"
    cfg.write_text(json.dumps({"hooks": {"enabled": False}}))
    assert read_gateway_config(cfg, {}).hooks_token is None
    cfg.write_text(json.dumps({"hooks": {"token": HOOKS_TOKEN}}))
    assert read_gateway_config(cfg, {}).hooks_token == HOOKS_TOKEN


def test_a_token_on_the_gateways_command_line_and_provider_keys_by_name_are_redacted() -> None:
    """Found by review: `gateway.args = ["--token", X]` reached the log with the spawn's argv, and
    provider keys in the gateway's .env were never redacted."""
    cfg = launch.GatewayFileConfig(Path("/nonexistent/openclaw.json"), False)
    argv = ["node", "openclaw.mjs", "gateway", "run", "--token", "argv-token-1", "--password=argv-pw"]
    found = {str(s) for s in launch.configured_secrets(cfg, {"OPENAI_API_KEY": "sk-provider", "FEATURE_KEY": "on",
                                                              "HOME": "/home/me", "PATH": "/bin"},
                                                        {"SLACK_BOT_TOKEN": "xoxb-slack"}, argv)}
    assert {"argv-token-1", "argv-pw", "sk-provider", "xoxb-slack"} <= found
    assert not {"on", "/home/me", "/bin"} & found  # a name is a guess: short values and other names stay


def test_notifier_secrets_never_reach_the_gateways_environment() -> None:
    """gatewayd's own secrets (a notifier's token variable) are not the gateway's, nor of any tool or
    agent it runs (review finding: they were inherited)."""
    from supervisor.gateway.capabilities import for_version
    from supervisor.gateway.launch import GatewayAuth, child_environment

    base = {"PATH": "/usr/bin", "GATEWAYD_HOOK_TOKEN": "hook-secret", "NTFY_URL": "https://ntfy.example/x"}
    env = child_environment(base, {}, for_version("2026.9.6"), GatewayAuth("none", None, "", False),
                            hidden=("GATEWAYD_HOOK_TOKEN", "NTFY_URL"))
    assert "GATEWAYD_HOOK_TOKEN" not in env and "NTFY_URL" not in env and env["PATH"] == "/usr/bin"
