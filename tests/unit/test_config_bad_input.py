"""Issue 17, the config part: bad input is refused at load in one line naming the file (or variable,
or flag), the key, the value and what is allowed; never loaded to fail later, never a traceback."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor import config, service
from supervisor.core.planner import decide_session
from supervisor.errors import ConfigError
from supervisor.gateway.capabilities import for_version
from supervisor.service import launchd, systemd
from tests.unit.test_config import _hermetic_home, write  # noqa: F401 - the autouse fixture applies here too

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534
OTHER = 65533  # a second "other user": owns files, never runs anything


def error_of(**kwargs: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        config.load(**kwargs)  # type: ignore[arg-type]
    text = str(info.value)
    assert len(text.splitlines()) == 1, text
    return info.value


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: files owned by another uid are made with chown")


# -- numbers: finite and in a documented range ------------------------------------------------------


@pytest.mark.parametrize(("text", "key", "shown", "allowed"), [
    # The three: each loaded fine and failed later (OverflowError at every boot's recovery,
    # OverflowError in `install`, ValueError at the first coalescing decision).
    ("[recovery]\nunanswered_grace_s = inf\n", "recovery.unanswered_grace_s", "inf", "[0.01, 604800] s"),
    ("[supervise]\nstop_budget_s = inf\n", "supervise.stop_budget_s", "inf", "[0.01, 604800] s"),
    ('[recovery.jobs."x"]\ncoalesce_window_s = nan\n', "recovery.jobs", "nan", "[0, 604800] s"),
    ("[recovery]\nunanswered_grace_s = 1e308\n", "recovery.unanswered_grace_s", "1e+308", "[0.01, 604800] s"),
    ("[supervise]\nbackoff_max_s = nan\n", "supervise.backoff_max_s", "nan", "[0.01, 604800] s"),
    ("[probes]\ninterval_s = -inf\n", "probes.interval_s", "-inf", "[0.01, 604800] s"),
    ("[probes]\ninterval_s = 1e-300\n", "probes.interval_s", "1e-300", "[0.01, 604800] s"),
    ("[supervise]\njitter = nan\n", "supervise.jitter", "nan", "[0, 1)"),
    ("[recovery]\nhold_after_crash_loop_s = 1e300\n", "recovery.hold_after_crash_loop_s", "1e+300",
     "[0, 604800] s"),
    ("[snapshot]\ninterval_s = " + "9" * 400 + "\n", "snapshot.interval_s", "999", "[0.01, 604800] s"),
    ('[recovery.jobs."x"]\nbackoff_initial_s = inf\n', "recovery.jobs", "inf", "[0.01, 604800] s"),
    ('[recovery.jobs."x"]\nmax_attempts = 100000000000000000000\n', "recovery.jobs", "100000000000000000000",
     "[1, 100]"),
    ("[supervise]\ncrash_loop_crashes = 100000000000000\n", "supervise.crash_loop_crashes", "100000000000000",
     "[1, 1000]"),
    ("[recovery]\nretries_per_minute = 9223372036854775807\n", "recovery.retries_per_minute",
     "9223372036854775807", "[1, 1000]"),
    # The first rotation renamed 10^14 files, one by one.
    ("[logs]\nbackups = 100000000000000\n", "logs.backups", "100000000000000", "[1, 1000]"),
    ("[logs]\nmax_bytes = 0\n", "logs.max_bytes", "0", "[1024, 1099511627776] bytes"),
    ("[logs]\nmax_bytes = 100000000000000000000\n", "logs.max_bytes", "100000000000000000000",
     "[1024, 1099511627776] bytes"),
])
def test_a_number_out_of_range_is_one_line_naming_file_key_value_and_range(
        tmp_path: Path, text: str, key: str, shown: str, allowed: str) -> None:
    p = write(tmp_path, text)
    e = error_of(config_file=p, environ={})
    assert e.source == str(p) and e.key == key, str(e)
    assert str(p) in str(e) and key in str(e) and shown in str(e) and allowed in str(e), str(e)


@pytest.mark.parametrize(("var", "text"), [
    ("GATEWAYD_RECOVERY_UNANSWERED_GRACE_S", "inf"),
    ("GATEWAYD_SUPERVISE_STOP_BUDGET_S", "1e999"),
    ("GATEWAYD_PROBES_TIMEOUT_S", "nan"),
    ("GATEWAYD_LOGS_BACKUPS", "100000000000000"),
])
def test_a_number_out_of_range_from_the_environment_names_the_variable(var: str, text: str) -> None:
    e = error_of(environ={var: text})
    assert e.source == var and "must be" in str(e) and "in [" in e.problem and text in str(e)


def test_the_largest_allowed_values_work_in_every_consumer(tmp_path: Path) -> None:
    """The bounds are chosen so that what consumes them never overflows: int(s * 1000), the
    service managers' stop timeout, the backoff arithmetic."""
    top = config.MAX_DURATION_S
    p = write(tmp_path, f"[supervise]\nstop_budget_s = {top}\n[recovery]\nunanswered_grace_s = {top}\n"
                        f'backoff_initial_s = {top}\nbackoff_max_s = {top}\n[recovery.jobs."x"]\n'
                        f"coalesce_window_s = {top}\n")
    cfg = config.load(p, environ={})
    assert service.stop_timeout_s(cfg.stop_budget_s) == int(top) + service.STOP_MARGIN_S
    assert int(cfg.recovery.unanswered_grace_s * 1000) == int(top) * 1000
    from supervisor.core.planner import RunObligation, backoff_s, planned_at_ms
    from supervisor.core.recovery_policy import policy_for
    job = policy_for(cfg.recovery, "x", None)
    assert int(job.coalesce_window_s * 1000) == int(top) * 1000
    ob = RunObligation("x", 0, 0, 3, False)
    assert backoff_s(job, 60, 0.999) <= top * 1.2
    assert planned_at_ms(ob, job, 0.999, 0) > 0


# -- the notice template ------------------------------------------------------------------------------


@pytest.mark.parametrize(("notice", "problem"), [
    ("restarted {reason} {user}", "unknown placeholder {user}"),
    ("restarted {}", "unknown placeholder {}"),
    ("restarted {0}", "unknown placeholder {0}"),
    ("restarted {reason.__class__}", "unknown placeholder {reason.__class__}"),
    ("restarted {time[0]}", "unknown placeholder {time[0]}"),
    ("restarted {reason:>999999999999}", "must be plain {reason}"),
    ("restarted {reason", "not a valid template"),
    ("restarted } at {time}", "not a valid template"),
])
def test_a_notice_placeholder_that_would_raise_at_the_first_notice_is_refused(
        tmp_path: Path, notice: str, problem: str) -> None:
    p = write(tmp_path, f"[recovery]\nnotice = {notice!r}\n".replace("'", '"'))
    e = error_of(config_file=p, environ={})
    assert e.key == "recovery.notice" and problem in str(e) and str(p) in str(e), str(e)


def test_the_notice_from_the_environment_is_checked_too() -> None:
    e = error_of(environ={"GATEWAYD_RECOVERY_NOTICE": "down {reason} for {minutes}"})
    assert e.source == "GATEWAYD_RECOVERY_NOTICE" and "{minutes}" in str(e)


def test_a_good_notice_is_formatted_as_written(tmp_path: Path) -> None:
    p = write(tmp_path, '[recovery]\nnotice = "{{gatewayd}} restarted: {reason!r} at {time}"\n')
    cfg = config.load(p, environ={})
    d = decide_session("main", False, True, for_version("2026.9.6").recovery, cfg.recovery, "crash", "12:00")
    assert d.text == "{gatewayd} restarted: 'crash' at 12:00"


# -- home, XDG, relative paths ------------------------------------------------------------------------


def test_an_empty_home_is_one_line_not_a_permission_error_for_slash_local(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "")
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.delenv("XDG_CONFIG_HOME")
    e = error_of(environ={})
    assert e.source == "HOME" and "empty" in str(e)


def test_an_unset_home_without_a_passwd_entry_is_one_line_not_a_runtime_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOME")
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.delenv("XDG_CONFIG_HOME")

    def no_entry(uid: int) -> object:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(config.pwd, "getpwuid", no_entry)
    e = error_of(environ={})
    assert e.source == "HOME" and "not set" in str(e) and "user database" in str(e)
    with pytest.raises(ConfigError):  # the service's home too
        service.build_spec(config.load(environ={"GATEWAYD_STATE_DIR": "/tmp/x"}, config_file=None), None,
                           environ={})


def test_a_relative_home_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "home")
    e = error_of(environ={"GATEWAYD_STATE_DIR": "~/gwd"})
    assert e.source == "HOME" and "absolute" in str(e)


def test_no_home_is_needed_when_nothing_uses_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "")
    p = write(tmp_path, f'state_dir = "{tmp_path / "state"}"\n')
    assert config.load(p, environ={}).state_dir == tmp_path / "state"


def test_a_relative_state_dir_in_the_file_is_relative_to_the_files_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "etc"
    folder.mkdir(mode=0o700)
    p = write(folder, 'state_dir = "state"\n[gateway]\nconfig_path = "../gw/openclaw.json"\n'
                      'state_dir = "gw"\nopenclaw = "bin/openclaw"\nnode = "node"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for cwd in (tmp_path, elsewhere):
        monkeypatch.chdir(cwd)
        cfg = config.load(p, environ={})
        assert cfg.state_dir == folder / "state"
        assert cfg.gateway.config_path == str(folder / "../gw/openclaw.json")
        assert cfg.gateway.state_dir == str(folder / "gw")
        assert cfg.gateway.openclaw == str(folder / "bin/openclaw")
        assert cfg.gateway.node == "node"  # a name on PATH, not a path


def test_a_relative_config_file_given_on_the_command_line_is_relative_to_the_working_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, 'state_dir = "s"\n')
    monkeypatch.chdir(tmp_path)
    cfg = config.load(Path("gatewayd.toml"), environ={})
    assert cfg.config_file == tmp_path / "gatewayd.toml" and cfg.state_dir == tmp_path / "s"


def test_a_relative_state_dir_flag_is_relative_to_the_working_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert config.load(cli={"state_dir": "gwd"}, environ={}).state_dir == tmp_path / "gwd"


@pytest.mark.parametrize(("var", "value", "key"), [
    ("GATEWAYD_STATE_DIR", "gwd", "state_dir"),
    ("GATEWAYD_GATEWAY_STATE_DIR", "./gw", "gateway.state_dir"),
    ("GATEWAYD_GATEWAY_OPENCLAW", "bin/openclaw", "gateway.openclaw"),
    ("GATEWAYD_CONFIG", "gatewayd.toml", ""),
])
def test_a_relative_path_from_the_environment_is_refused(var: str, value: str, key: str) -> None:
    e = error_of(environ={var: value})
    assert e.source == var and e.key == key and "absolute" in str(e) and repr(value) in str(e)


def test_a_relative_xdg_data_home_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if sys.platform == "darwin":
        pytest.skip("XDG is Linux's")
    monkeypatch.setenv("XDG_DATA_HOME", "relative/data")
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/config")
    monkeypatch.chdir(tmp_path)
    cfg = config.load(environ={})
    assert cfg.state_dir == tmp_path / "home" / ".local" / "share" / "gatewayd"
    assert config.default_config_file() == tmp_path / "home" / ".config" / "gatewayd" / "gatewayd.toml"
    assert systemd.unit_dir(tmp_path / "home", {"XDG_CONFIG_HOME": "rel"}) == \
        tmp_path / "home" / ".config" / "systemd" / "user"


@pytest.mark.parametrize("state", ["/dev/null/x", "/dev/null", "/dev/null/x/y/z"])
def test_a_state_dir_that_cannot_be_a_directory_is_refused_at_load(state: str) -> None:
    e = error_of(environ={"GATEWAYD_STATE_DIR": state})
    assert e.source == "GATEWAYD_STATE_DIR" and e.key == "state_dir"
    assert "/dev/null" in str(e) and "not a directory" in str(e)


def test_a_state_dir_inside_a_file_from_the_config_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("x")
    p = write(tmp_path, 'state_dir = "plain/state"\n')
    e = error_of(config_file=p, environ={})
    assert e.source == str(p) and e.key == "state_dir" and "not a directory" in str(e)


def test_an_xdg_data_home_that_is_a_file_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    if sys.platform == "darwin":
        pytest.skip("XDG is Linux's")
    monkeypatch.setenv("XDG_DATA_HOME", "/dev/null")
    e = error_of(environ={})
    assert e.source == "XDG_DATA_HOME" and "not a directory" in str(e)


# -- control characters: refused before a plist or unit is rendered -----------------------------------


@pytest.mark.parametrize("bad", ["a\x01b", "a\nb", "a\rb", "a\x7fb", "a\tb"])
def test_a_control_character_in_a_path_setting_is_refused_at_load(tmp_path: Path, bad: str) -> None:
    e = error_of(cli={"state_dir": str(tmp_path / bad)}, environ={})
    assert e.source == "--state-dir" and e.key == "state_dir" and "control characters" in str(e)
    p = write(tmp_path, f"[gateway]\nconfig_path = {toml_string(bad)}\n")
    e = error_of(config_file=p, environ={})
    assert e.key == "gateway.config_path" and "control characters" in str(e)


def test_a_control_character_in_the_config_files_path_is_refused(tmp_path: Path) -> None:
    e = error_of(config_file=tmp_path / "a\x01b.toml", environ={})
    assert e.source == "--config" and "control characters" in str(e) and "\\x01" in str(e)


def spec_with(tmp_path: Path, **changes: object) -> service.ServiceSpec:
    odd = tmp_path / "state"
    base: dict[str, object] = dict(argv=service.run_argv(odd / "g.toml", odd), environment={"PATH": "/x", "HOME": "/h"},
                                   state_dir=odd, log_dir=odd / "logs", stop_timeout_s=360, home=tmp_path)
    base.update(changes)
    return service.ServiceSpec(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["a\x01b", "a\x1bb", "a\x00b", "a\nb", "a\udcffb"])
@pytest.mark.parametrize("where", ["argv", "state_dir", "environment"])
def test_install_refuses_a_control_character_in_one_line_before_plistlib_or_the_unit(
        tmp_path: Path, bad: str, where: str) -> None:
    odd = tmp_path / bad
    spec = {
        "argv": lambda: spec_with(tmp_path, argv=service.run_argv(odd / "g.toml", odd)),
        "state_dir": lambda: spec_with(tmp_path, state_dir=odd, log_dir=odd / "logs"),
        "environment": lambda: spec_with(tmp_path, environment={"PATH": "/x", "GATEWAYD_LOG_LEVEL": bad}),
    }[where]()
    for render in (launchd.render, systemd.render):
        with pytest.raises(service.ServiceError) as info:
            render(spec)
        text = str(info.value)
        assert len(text.splitlines()) == 1 and text.isascii(), text
        assert ascii(bad)[1:-1] in text and ("control character" in text or "not valid text" in text), text


def test_a_config_with_a_control_character_never_reaches_the_service_definition(tmp_path: Path) -> None:
    """The path a user gives `install` goes through config.load first: refused there."""
    e = error_of(config_file=tmp_path / "x\ny.toml", environ={})
    assert "\\n" in str(e)
    e = error_of(cli={"state_dir": str(tmp_path / "x\x01y")}, environ={})
    assert e.key == "state_dir"


def toml_string(text: str) -> str:
    return '"' + "".join(c if 0x20 <= ord(c) != 0x7F and c not in '"\\' else f"\\u{ord(c):04x}" for c in text) + '"'


# -- everything during loading is one line --------------------------------------------------------------


@pytest.mark.parametrize(("text", "key"), [
    ("[gateway]\nport = " + "9" * 5000 + "\n", ""),  # tomllib: ValueError, int too long to convert
    ("x = " + "[" * 2000 + "]" * 2000 + "\n", ""),  # tomllib: RecursionError
    ('"a\\nb" = 1\n', "a\\nb"),  # an unknown key with a line break in it
    ('"a\\u2028b" = 1\n', "a\\u2028b"),
    ('[recovery.jobs."a\\nb"]\nretries = 1\n', "recovery.jobs"),
    ('log_level = "a\\nb"\n', "log_level"),
    ('[gateway]\nargs = ["a\\u0000b"]\n', "gateway.args"),
    ('[gateway]\ncommand = [""]\n', "gateway.command"),
    ('[gateway]\nenv = { "" = "x" }\n', "gateway.env"),
    ('[gateway]\nenv = { "A=B" = "x" }\n', "gateway.env"),
    ('[gateway]\nenv = { A = "x\\u0000" }\n', "gateway.env"),
    ('[gateway]\nversion = "2026.9.1\\n"\n', "gateway.version"),
    ('state_dir = "~nosuchuser-gatewayd/x"\n', "state_dir"),
])
def test_whatever_goes_wrong_while_loading_is_one_line_naming_the_file(tmp_path: Path, text: str, key: str) -> None:
    p = write(tmp_path, text)
    e = error_of(config_file=p, environ={})
    assert e.source == str(p) and e.key == key, str(e)


def test_a_nul_in_the_config_path_is_one_line(tmp_path: Path) -> None:
    e = error_of(config_file=tmp_path / "a\x00b.toml", environ={})
    assert e.source == "--config"


def test_a_directory_as_the_config_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "dir.toml").mkdir()
    e = error_of(config_file=tmp_path / "dir.toml", environ={})
    assert "not a regular file" in str(e)


# -- who owns the config file -----------------------------------------------------------------------------

EVIL = '[gateway]\ncommand = ["/bin/sh", "-c", "echo pwned > /tmp/gatewayd-pwned"]\n'


def test_a_config_file_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    needs_root()
    p = write(tmp_path, EVIL, mode=0o644)
    os.chown(p, NOBODY, NOBODY)
    e = error_of(config_file=p, environ={})
    assert e.source == str(p) and f"owned by uid {NOBODY}" in str(e) and "refusing" in str(e)


def test_a_symlink_to_a_file_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    needs_root()
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    target = write(theirs, EVIL, mode=0o644)
    os.chown(target, NOBODY, NOBODY)
    link = tmp_path / "gatewayd.toml"
    link.symlink_to(target)
    e = error_of(config_file=link, environ={})
    assert e.source == str(link) and str(target) in str(e) and f"uid {NOBODY}" in str(e)


def test_a_symlink_owned_by_another_user_is_refused_even_to_our_own_file(tmp_path: Path) -> None:
    needs_root()
    target = write(tmp_path, 'log_level = "debug"\n', name="real.toml")
    link = tmp_path / "gatewayd.toml"
    link.symlink_to(target)
    os.lchown(link, NOBODY, NOBODY)
    e = error_of(config_file=link, environ={})
    assert "the symlink" in str(e) and f"uid {NOBODY}" in str(e)


def test_a_symlink_chain_owned_by_us_or_root_is_fine(tmp_path: Path) -> None:
    target = write(tmp_path, 'log_level = "debug"\n', name="real.toml")
    (tmp_path / "mid.toml").symlink_to("real.toml")  # relative, resolved against the link's folder
    (tmp_path / "gatewayd.toml").symlink_to(tmp_path / "mid.toml")
    assert config.load(tmp_path / "gatewayd.toml", environ={}).log_level == "debug"
    assert target.exists()


def test_a_config_in_a_folder_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    needs_root()
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    p = write(theirs, 'log_level = "debug"\n')
    os.chown(theirs, NOBODY, NOBODY)
    e = error_of(config_file=p, environ={})
    assert "its folder" in str(e) and f"uid {NOBODY}" in str(e)


def test_a_config_in_a_group_writable_folder_is_refused_but_a_sticky_one_is_fine(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    p = write(folder, 'log_level = "debug"\n')
    folder.chmod(0o775)
    e = error_of(config_file=p, environ={})
    assert "its folder" in str(e) and "writable" in str(e)
    folder.chmod(0o1777)  # like /tmp: nobody else can replace our file there
    assert config.load(p, environ={}).log_level == "debug"


def test_a_symlink_to_a_group_writable_file_is_refused(tmp_path: Path) -> None:
    target = write(tmp_path, 'log_level = "debug"\n', name="real.toml", mode=0o666)
    (tmp_path / "gatewayd.toml").symlink_to(target)
    e = error_of(config_file=tmp_path / "gatewayd.toml", environ={})
    assert "writable" in str(e)


# The loader as a non-root user: a second uid for real (setpriv, from util-linux).

LOADER = """
import sys
from pathlib import Path
from supervisor import config
from supervisor.errors import ConfigError
try:
    cfg = config.load(Path(sys.argv[1]), environ={})
except ConfigError as exc:
    print("refused:", exc)
    sys.exit(2)
print("ok:", cfg.gateway.command)
"""


@pytest.fixture
def shared() -> Iterator[Path]:
    """A folder both root and uid 65534 can reach (pytest's tmp_path is root's, mode 0700)."""
    needs_root()
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    root = Path(tempfile.mkdtemp(prefix="gatewayd-owner-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_as_nobody(config_file: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.defpath, "HOME": str(home), "PYTHONPATH": str(REPO), "GATEWAYD_STATE_DIR": str(home / "s")}
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                           sys.executable, "-c", LOADER, str(config_file)],
                          capture_output=True, text=True, env=env, cwd="/", timeout=60, check=False)


def test_as_a_non_root_user_own_and_roots_files_load_and_another_users_do_not(shared: Path) -> None:
    mine = shared / "mine"
    mine.mkdir(mode=0o755)
    os.chown(mine, NOBODY, NOBODY)
    own = write(mine, '[gateway]\ncommand = ["/bin/true"]\n', name="own.toml")
    os.chown(own, NOBODY, NOBODY)
    roots = write(shared, '[gateway]\ncommand = ["/bin/true"]\n', name="root.toml", mode=0o644)

    theirs = shared / "theirs"
    theirs.mkdir(mode=0o755)
    evil = write(theirs, EVIL, name="evil.toml", mode=0o644)
    os.chown(evil, OTHER, OTHER)
    link = mine / "gatewayd.toml"
    link.symlink_to(evil)
    os.lchown(link, NOBODY, NOBODY)
    direct = write(mine, EVIL, name="direct.toml", mode=0o644)
    os.chown(direct, OTHER, OTHER)

    for ok in (own, roots):
        r = run_as_nobody(ok, mine)
        assert r.returncode == 0 and r.stdout.startswith("ok: ('/bin/true',)"), (r.stdout, r.stderr)
    for bad in (link, direct):
        r = run_as_nobody(bad, mine)
        assert r.returncode == 2, (r.stdout, r.stderr)
        assert "Traceback" not in r.stderr and len(r.stdout.splitlines()) == 1, (r.stdout, r.stderr)
        assert f"owned by uid {OTHER}, not by you (uid {NOBODY}) or root" in r.stdout, r.stdout
        assert str(evil if bad is link else direct) in r.stdout


def test_as_a_non_root_user_a_symlink_owned_by_someone_else_is_refused(shared: Path) -> None:
    mine = shared / "mine"
    mine.mkdir(mode=0o755)
    os.chown(mine, NOBODY, NOBODY)
    own = write(mine, 'log_level = "debug"\n', name="own.toml")
    os.chown(own, NOBODY, NOBODY)
    link = mine / "gatewayd.toml"
    link.symlink_to(own)
    os.lchown(link, OTHER, OTHER)
    r = run_as_nobody(link, mine)
    assert r.returncode == 2 and "the symlink" in r.stdout and f"uid {OTHER}" in r.stdout, (r.stdout, r.stderr)


def test_file_mode_bits_are_those_of_the_target(tmp_path: Path) -> None:
    target = write(tmp_path, 'log_level = "debug"\n', name="real.toml", mode=0o644)
    link = tmp_path / "gatewayd.toml"
    link.symlink_to(target)
    assert stat.S_IMODE(os.lstat(link).st_mode) == 0o777  # a link's own mode means nothing
    assert config.load(link, environ={}).log_level == "debug"
