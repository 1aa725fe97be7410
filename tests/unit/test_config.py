"""config.load(): defaults, precedence CLI > env > file > default, and one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from supervisor import config
from supervisor.core.memory_pressure import MemoryPolicy
from supervisor.core.policy import RestartPolicy
from supervisor.core.probestate import ProbeSettings
from supervisor.errors import ConfigError


@pytest.fixture(autouse=True)
def _hermetic_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # default_config_file / default_state_dir look at the real HOME and XDG_*: point them away.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.delenv("GATEWAYD_CONFIG", raising=False)


def write(tmp_path: Path, text: str, name: str = "gatewayd.toml", mode: int = 0o600) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    p.chmod(mode)
    return p


def error_of(**kwargs: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        config.load(**kwargs)  # type: ignore[arg-type]
    text = str(info.value)
    assert "\n" not in text, text
    return info.value


# -- defaults ---------------------------------------------------------------------------------

def test_defaults_without_file_and_with_empty_environ() -> None:
    cfg = config.load(environ={})
    assert cfg.config_file is None
    assert cfg.log_level == "info"
    assert cfg.gateway.openclaw == "openclaw"
    assert cfg.gateway.port == 0
    assert cfg.gateway.command == () and cfg.gateway.args == () and dict(cfg.gateway.env) == {}
    assert cfg.stop_budget_s == 330.0
    assert cfg.logs.max_bytes == 10 * 1024 * 1024 and cfg.logs.backups == 5
    assert set(cfg.sources.values()) == {"default"}
    assert set(cfg.sources) == {s.name for s in config.SETTINGS}
    assert cfg.state_dir.is_absolute()


def test_defaults_match_the_core_dataclass_defaults() -> None:
    cfg = config.load(environ={})
    assert cfg.restart == RestartPolicy()
    assert cfg.probes == ProbeSettings()


def test_default_values_pass_their_own_validation() -> None:
    for s in config.SETTINGS:
        assert config._coerce(s, s.default, "default") == s.default


def test_env_names_are_unique_and_prefixed() -> None:
    names = [s.env for s in config.SETTINGS]
    assert len(names) == len(set(names))
    assert all(n.startswith("GATEWAYD_") for n in names)
    assert config.BY_NAME["supervise.backoff_max_s"].env == "GATEWAYD_SUPERVISE_BACKOFF_MAX_S"
    assert config.BY_NAME["log_level"].env == "GATEWAYD_LOG_LEVEL"


def test_default_config_file_is_read_when_present(tmp_path: Path) -> None:
    p = tmp_path / "xdg-config" / "gatewayd" / "gatewayd.toml"
    p.parent.mkdir(parents=True)
    p.write_text('log_level = "debug"\n')
    p.chmod(0o600)
    cfg = config.load(environ={})
    assert cfg.config_file == p and cfg.log_level == "debug" and cfg.sources["log_level"] == str(p)


def test_gatewayd_config_env_names_the_file(tmp_path: Path) -> None:
    p = write(tmp_path, "[probes]\ninterval_s = 5\n")
    cfg = config.load(environ={"GATEWAYD_CONFIG": str(p)})
    assert cfg.config_file == p and cfg.probes.interval_s == 5.0


# -- precedence -------------------------------------------------------------------------------

def test_precedence_cli_over_env_over_file_over_default(tmp_path: Path) -> None:
    p = write(tmp_path, """
log_level = "warning"
[gateway]
port = 1111
openclaw = "/file/openclaw"
[supervise]
backoff_max_s = 30
jitter = 0.1
""")
    environ = {"GATEWAYD_GATEWAY_PORT": "2222", "GATEWAYD_SUPERVISE_BACKOFF_MAX_S": "45.5",
               "GATEWAYD_LOG_LEVEL": "error"}
    cli = {"gateway.port": 3333, "log_level": None}  # None: flag not given
    cfg = config.load(config_file=p, cli=cli, environ=environ)
    assert cfg.gateway.port == 3333 and cfg.sources["gateway.port"] == "cli"
    assert cfg.restart.backoff_max_s == 45.5
    assert cfg.sources["supervise.backoff_max_s"] == "GATEWAYD_SUPERVISE_BACKOFF_MAX_S"
    assert cfg.log_level == "error" and cfg.sources["log_level"] == "GATEWAYD_LOG_LEVEL"
    assert cfg.gateway.openclaw == "/file/openclaw" and cfg.sources["gateway.openclaw"] == str(p)
    assert cfg.restart.jitter == 0.1 and cfg.sources["supervise.jitter"] == str(p)
    assert cfg.restart.backoff_initial_s == 1.0 and cfg.sources["supervise.backoff_initial_s"] == "default"
    assert cfg.config_file == p


def test_file_int_for_float_setting_becomes_float(tmp_path: Path) -> None:
    p = write(tmp_path, "[supervise]\nstop_budget_s = 100\n")
    cfg = config.load(config_file=p, environ={})
    assert cfg.stop_budget_s == 100.0 and isinstance(cfg.stop_budget_s, float)


def test_env_list_is_split_on_whitespace() -> None:
    cfg = config.load(environ={"GATEWAYD_GATEWAY_ARGS": "--verbose  --x 1"})
    assert cfg.gateway.args == ("--verbose", "--x", "1")
    assert config.load(environ={"GATEWAYD_GATEWAY_ARGS": "  "}).gateway.args == ()


def test_file_tables_and_lists(tmp_path: Path) -> None:
    p = write(tmp_path, '[gateway]\ncommand = ["/usr/bin/env", "node"]\nenv = { A = "1", B = "two" }\n')
    cfg = config.load(config_file=p, environ={})
    assert cfg.gateway.command == ("/usr/bin/env", "node")
    assert dict(cfg.gateway.env) == {"A": "1", "B": "two"}


def test_state_dir_is_expanded_and_absolute(tmp_path: Path) -> None:
    cfg = config.load(environ={"GATEWAYD_STATE_DIR": "~/gwd"})
    assert cfg.state_dir == Path(os.environ["HOME"]) / "gwd"


# -- errors: one line naming the source and the key -------------------------------------------

@pytest.mark.parametrize(("text", "key", "problem"), [
    ("bogus = 1\n", "bogus", "unknown key"),
    ("[gateway]\nbogus = 1\n", "gateway.bogus", "unknown key"),
    ("[nosuchsection]\nx = 1\n", "nosuchsection", "unknown key"),
    ("gateway = 1\n", "gateway", "must be a table"),
    ('[gateway]\nport = "18789"\n', "gateway.port", "must be int"),
    ("[gateway]\nport = true\n", "gateway.port", "must be int"),
    ("[probes]\nhang_timeouts = 2.5\n", "probes.hang_timeouts", "must be int"),
    ("[supervise]\nbackoff_max_s = true\n", "supervise.backoff_max_s", "must be float"),
    ("[gateway]\nport = 70000\n", "gateway.port", "port number"),
    ("[gateway]\nport = -1\n", "gateway.port", "port number"),
    ("[supervise]\nbackoff_max_s = -1\n", "supervise.backoff_max_s", "must be in [0.01, 604800] s (got -1.0)"),
    ("[supervise]\nstop_budget_s = 0\n", "supervise.stop_budget_s", "must be in [0.01, 604800] s (got 0.0)"),
    ("[logs]\nbackups = -1\n", "logs.backups", "must be in [1, 1000] (got -1)"),
    ("[supervise]\njitter = 1.0\n", "supervise.jitter", "[0, 1)"),
    ('log_level = "loud"\n', "log_level", "must be debug"),
    ('[gateway]\nargs = "--x"\n', "gateway.args", "list of strings"),
    ("[gateway]\nargs = [1, 2]\n", "gateway.args", "list of strings"),
    ("[gateway]\nenv = { A = 1 }\n", "gateway.env", "table of strings"),
    ("[supervise]\nbackoff_initial_s = 100\nbackoff_max_s = 10\n", "supervise.backoff_initial_s",
     "must not exceed"),
    ("[probes]\nboot_limit_s = 700\n", "probes.boot_limit_s", "must not exceed"),
], ids=lambda v: v if isinstance(v, str) and "\n" not in v else None)
def test_bad_file_value_is_one_line_naming_file_and_key(tmp_path: Path, text: str, key: str, problem: str) -> None:
    p = write(tmp_path, text)
    e = error_of(config_file=p, environ={})
    assert str(p) in str(e) and key in str(e) and problem in str(e), str(e)
    assert e.source == str(p) and e.key == key


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    p = write(tmp_path, "[gateway\nport = \n")
    e = error_of(config_file=p, environ={})
    assert str(p) in str(e) and "not valid TOML" in str(e)


def test_non_utf8_file_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_bytes(b'log_level = "\xff\xfe"\n')
    p.chmod(0o600)
    e = error_of(config_file=p, environ={})
    assert str(p) in str(e)


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    p = tmp_path / "nope.toml"
    e = error_of(config_file=p, environ={})
    assert str(p) in str(e) and "cannot read" in str(e)


def test_missing_file_named_by_gatewayd_config_is_an_error(tmp_path: Path) -> None:
    p = tmp_path / "nope.toml"
    e = error_of(environ={"GATEWAYD_CONFIG": str(p)})
    assert str(p) in str(e)


@pytest.mark.parametrize("mode", [0o666, 0o620, 0o602], ids=oct)
def test_group_or_world_writable_file_is_refused(tmp_path: Path, mode: int) -> None:
    p = write(tmp_path, 'log_level = "debug"\n', mode=mode)
    assert p.stat().st_mode & 0o777 == mode
    e = error_of(config_file=p, environ={})
    assert str(p) in str(e) and "writable" in str(e)


def test_owner_only_and_world_readable_files_are_fine(tmp_path: Path) -> None:
    for mode in (0o600, 0o644, 0o400):
        p = write(tmp_path, 'log_level = "debug"\n', name=f"c{mode:o}.toml", mode=mode)
        assert config.load(config_file=p, environ={}).log_level == "debug"


@pytest.mark.parametrize(("var", "text"), [
    ("GATEWAYD_GATEWAY_PORT", "eighty"),
    ("GATEWAYD_GATEWAY_PORT", "1.5"),
    ("GATEWAYD_SUPERVISE_BACKOFF_MAX_S", "soon"),
    ("GATEWAYD_LOGS_BACKUPS", ""),
])
def test_env_text_that_is_not_a_number_names_the_variable(var: str, text: str) -> None:
    e = error_of(environ={var: text})
    assert var in str(e) and repr(text) in str(e)
    assert e.source == var


def test_env_text_error_names_the_setting_key() -> None:
    e = error_of(environ={"GATEWAYD_SUPERVISE_BACKOFF_MAX_S": "soon"})
    assert e.key == "supervise.backoff_max_s"
    assert "supervise.backoff_max_s" in str(e)


@pytest.mark.parametrize(("var", "text", "key", "problem"), [
    ("GATEWAYD_GATEWAY_PORT", "99999", "gateway.port", "port number"),
    ("GATEWAYD_SUPERVISE_JITTER", "-0.5", "supervise.jitter", "[0, 1)"),
    ("GATEWAYD_LOG_LEVEL", "chatty", "log_level", "must be debug"),
])
def test_env_value_out_of_range_names_variable_and_key(var: str, text: str, key: str, problem: str) -> None:
    e = error_of(environ={var: text})
    assert var in str(e) and key in str(e) and problem in str(e)


def test_env_table_is_refused() -> None:
    e = error_of(environ={"GATEWAYD_GATEWAY_ENV": "A=1"})
    assert "GATEWAYD_GATEWAY_ENV" in str(e)
    assert e.key == "gateway.env" and "gateway.env" in str(e)


def test_env_backoff_initial_above_max_names_the_variable() -> None:
    e = error_of(environ={"GATEWAYD_SUPERVISE_BACKOFF_INITIAL_S": "120"})
    assert "GATEWAYD_SUPERVISE_BACKOFF_INITIAL_S" in str(e) and "supervise.backoff_initial_s" in str(e)


@pytest.mark.parametrize(("name", "value", "flag", "problem"), [
    ("gateway.port", 70000, "--port", "port number"),
    ("gateway.port", "80", "--port", "must be int"),
    ("supervise.backoff_max_s", -3.0, "--backoff-max-s", "must be in [0.01, 604800] s"),
    ("log_level", "x", "--log-level", "must be debug"),
])
def test_bad_cli_value_names_the_flag_and_key(name: str, value: object, flag: str, problem: str) -> None:
    e = error_of(cli={name: value}, environ={})
    assert flag in str(e) and name in str(e) and problem in str(e)


def test_bad_file_value_is_reported_even_when_env_overrides_another_key(tmp_path: Path) -> None:
    p = write(tmp_path, "[gateway]\nport = 70000\n")
    e = error_of(config_file=p, environ={"GATEWAYD_LOG_LEVEL": "debug"})
    assert e.key == "gateway.port"


def test_unknown_key_is_refused_even_when_overridden(tmp_path: Path) -> None:
    p = write(tmp_path, "[probes]\ninterval = 2\n")  # typo of interval_s
    e = error_of(config_file=p, environ={})
    assert e.key == "probes.interval"


def test_example_config_documents_every_key_with_its_default(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "config" / "gatewayd.example.toml"
    copy = tmp_path / "gatewayd.toml"
    copy.write_text(example.read_text())
    copy.chmod(0o600)
    cfg = config.load(copy, environ={})
    assert {name for name, src in cfg.sources.items() if src == str(copy)} == set(config.BY_NAME)
    assert cfg.restart == config.RestartPolicy() and cfg.probes == config.ProbeSettings()
    text = example.read_text()
    for s in config.SETTINGS:
        assert s.help in text, s.name
        assert f"{s.help}; {s.allowed}" in text if s.allowed else True, s.name
        # every number has a documented range
        assert s.type not in (int, float) or isinstance(s.validate, config.Range), s.name


def test_per_job_retry_policies_by_id_or_name(tmp_path: Path) -> None:
    p = write(tmp_path, '[recovery]\nmax_attempts = 4\n[recovery.jobs."send-invoices"]\nmax_attempts = 1\n'
                        '[recovery.jobs.job-123]\nbackoff_initial_s = 5\ncoalesce_window_s = 0\n')
    cfg = config.load(p, environ={})
    assert cfg.recovery.jobs == {"send-invoices": {"max_attempts": 1},
                                 "job-123": {"backoff_initial_s": 5, "coalesce_window_s": 0}}
    assert cfg.recovery.max_attempts == 4


@pytest.mark.parametrize(("body", "problem"), [
    ('jobs = { "a" = { retries = 2 } }', '"a".retries: unknown key'),
    ('jobs = { "a" = { max_attempts = 0 } }', '"a".max_attempts: must be in [1, 100] (1: never re-run this job)'),
    ('jobs = { "a" = { max_attempts = 1.5 } }', '"a".max_attempts: must be int'),
    ('jobs = { "a" = { backoff_initial_s = "soon" } }', '"a".backoff_initial_s: must be float'),
    ('jobs = { "a" = { backoff_max_s = -1 } }', '"a".backoff_max_s: must be in [0.01, 604800] s'),
    ('jobs = { "a" = { coalesce_window_s = -1 } }', '"a".coalesce_window_s: must be in [0, 604800] s'),
    ('jobs = { "a" = { max_attempts = true } }', '"a".max_attempts: must be int'),
    ('jobs = { "a" = 1 }', "must be a table of tables"),
    ('jobs = 3', "must be a table of tables"),
])
def test_bad_per_job_policy_is_one_line_naming_the_job_and_key(tmp_path: Path, body: str, problem: str) -> None:
    p = write(tmp_path, f"[recovery]\n{body}\n")
    e = error_of(config_file=p, environ={})
    assert e.key == "recovery.jobs" and problem in str(e) and "\n" not in str(e)


def test_per_job_policies_cannot_come_from_the_environment(tmp_path: Path) -> None:
    e = error_of(config_file=write(tmp_path, ""), environ={"GATEWAYD_RECOVERY_JOBS": "x"})
    assert e.key == "recovery.jobs" and "config file" in str(e)


def test_notifiers_from_the_file(tmp_path: Path) -> None:
    p = write(tmp_path, '[[alerts.notify]]\nkind = "webhook"\nurl = "https://hooks.example.com/x"\n'
                        'token_env = "HOOK_TOKEN"\n[[alerts.notify]]\nname = "telegram"\nkind = "command"\n'
                        'command = ["/usr/local/bin/tg", "--chat", "1"]\ntimeout_s = 20\nsecret_env = ["TG_TOKEN"]\n'
                        '[[alerts.notify]]\nkind = "ntfy"\nurl_env = "NTFY_URL"\n[alerts]\nreminder_interval_s = 600\n')
    cfg = config.load(p, environ={})
    hook, tg, ntfy = cfg.alerts.notifiers
    assert (hook.name, hook.kind, hook.url, hook.token_env) == ("webhook", "webhook", "https://hooks.example.com/x",
                                                                "HOOK_TOKEN")
    assert (tg.name, tg.command, tg.timeout_s) == ("telegram", ("/usr/local/bin/tg", "--chat", "1"), 20.0)
    assert tg.secret_env == ("TG_TOKEN",)
    assert ntfy.url_env == "NTFY_URL" and cfg.alerts.secret_variables == ("HOOK_TOKEN", "TG_TOKEN", "NTFY_URL")
    assert cfg.alerts.policy.reminder_interval_s == 600.0
    assert cfg.alerts.policy.healthy_after_s == cfg.restart.healthy_after_s


@pytest.mark.parametrize(("entry", "problem"), [
    ('kind = "pager"', "[0] kind: must be one of webhook, ntfy, command, desktop"),
    ('kind = "webhook"', "[0] webhook needs exactly one of url or url_env"),
    ('kind = "webhook"\nurl = "ftp://x"', "[0] url: must start with http:// or https://"),
    ('kind = "webhook"\nurl = "https://x"\nurl_env = "U"', "[0] webhook needs exactly one of url or url_env"),
    ('kind = "webhook"\nurl = "https://x"\ntoken = "s3cret"', "[0] token: unknown key"),
    ('kind = "webhook"\nurl = "https://x"\ntoken_env = "s3cret value"', "[0] token_env: must be an environment"),
    ('kind = "command"', "[0] command: must be a non-empty list of strings"),
    ('kind = "command"\ncommand = "/bin/sh -c x"', "[0] command: must be list"),
    ('kind = "command"\ncommand = [""]', "[0] command: its first element (the program) must not be empty"),
    ('kind = "desktop"\nurl = "https://x"', "[0] url, url_env and token_env are for webhook and ntfy"),
    ('kind = "desktop"\ntimeout_s = 0', "[0] timeout_s: must be in [1, 300] s"),
    ('kind = "command"\ncommand = ["x"]\nsecret_env = ["s3cret value"]', "[0] secret_env: must be a list of"),
    ('kind = "webhook"\nurl = "https://x"\nsecret_env = ["T"]', "[0] command and secret_env are for kind"),
    ('kind = "desktop"\n[[alerts.notify]]\nkind = "desktop"', "[1] name: 'desktop' is used twice"),
])
def test_bad_notifier_is_one_line_naming_its_index_and_key(tmp_path: Path, entry: str, problem: str) -> None:
    p = write(tmp_path, f"[[alerts.notify]]\n{entry}\n")
    e = error_of(config_file=p, environ={})
    assert e.key == "alerts.notify" and problem in str(e) and "\n" not in str(e), str(e)
    assert "s3cret" not in str(e)  # a refused entry is not quoted back whole


def test_notifiers_cannot_come_from_the_environment(tmp_path: Path) -> None:
    e = error_of(config_file=write(tmp_path, ""), environ={"GATEWAYD_ALERTS_NOTIFY": "x"})
    assert e.key == "alerts.notify" and "config file" in str(e)


def test_the_readme_alerts_example_is_a_working_config(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    example = readme[readme.index("### Alerts"):].split("```toml\n", 1)[1].split("```", 1)[0]
    cfg = config.load(write(tmp_path, example), environ={})
    assert [(n.name, n.kind) for n in cfg.alerts.notifiers] == [
        ("webhook", "webhook"), ("ntfy", "ntfy"), ("telegram", "command"), ("desktop", "desktop")]
    assert cfg.alerts.secret_variables == ("GATEWAYD_HOOK_TOKEN", "GATEWAYD_NTFY_TOPIC_URL", "TELEGRAM_BOT_TOKEN")


def test_metrics_and_memory_settings(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, "[metrics]\nport = 9464\n[memory]\nlimit_mb = 2048\nwindow_s = 300\n"),
                      environ={})
    assert cfg.metrics_port == 9464
    assert cfg.memory == MemoryPolicy(limit_bytes=2048 * 1024 * 1024, window_s=300.0, cooldown_s=1800.0)
    off = config.load(write(tmp_path, ""), environ={})
    assert off.metrics_port == 0 and not off.memory.enabled


@pytest.mark.parametrize(("body", "key", "problem"), [
    ("[metrics]\nport = 70000", "metrics.port", "in [0, 65535]"),
    ("[memory]\nlimit_mb = -1", "memory.limit_mb", "in [0, 1048576] MB"),
    ("[memory]\ncooldown_s = 5", "memory.cooldown_s", "in [60, 604800] s"),
])
def test_metrics_and_memory_bad_values_are_one_line_errors(tmp_path: Path, body: str, key: str,
                                                           problem: str) -> None:
    e = error_of(config_file=write(tmp_path, body + "\n"), environ={})
    assert e.key == key and problem in str(e), str(e)
