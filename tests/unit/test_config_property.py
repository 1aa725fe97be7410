"""Property: any TOML document either loads into a config every component accepts, or is refused
with the loader's ConfigError in one line naming the file (and the key, unless the TOML itself is
bad). Never another exception, and never a value that only fails later."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging.handlers
import math
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor import config, service
from supervisor.core.model import ExitKind, Intent, ProbeOutcome
from supervisor.core.planner import (
    JobView,
    RunObligation,
    backoff_s,
    decide_run,
    decide_session,
    planned_at_ms,
    send_gap_ms,
)
from supervisor.core.policy import Classification, ExitFacts, RestartTracker, classify
from supervisor.core.probestate import ProbeMachine
from supervisor.core.recovery_policy import JOB_KEYS, policy_for
from supervisor.errors import ConfigError
from supervisor.gateway.capabilities import for_version
from supervisor.gateway.launch import gateway_paths
from supervisor.logs import OutputLog
from supervisor.service import launchd, systemd

# -- TOML out of Python values ------------------------------------------------------------------------


def toml_string(s: str) -> str:
    out = []
    for c in s:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return toml_string(v)
    if isinstance(v, dt.datetime | dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    assert isinstance(v, dict)
    return "{ " + ", ".join(f"{toml_string(k)} = {toml_value(x)}" for k, x in v.items()) + " }"


def toml_document(doc: dict[str, Any]) -> str:
    top = [f"{toml_string(k)} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    tables = []
    for k, v in doc.items():
        if isinstance(v, dict):
            tables.append(f"[{toml_string(k)}]")
            tables += [f"{toml_string(sk)} = {toml_value(sv)}" for sk, sv in v.items()]
    return "\n".join(top + tables) + "\n"


# -- strategies ---------------------------------------------------------------------------------------

ODD_TEXT = st.sampled_from([
    "", "~", "~/x", "~nosuchuser-gatewayd/x", "relative/dir", "/dev/null/x", "/dev/null", "/tmp", ".", "..",
    "{reason} {time}", "{user}", "{reason!r}", "{0}", "{}", "{{", "}}", "{reason:>99999999}", "{reason.x}",
    "a\x00b", "a\nb", "a\x01b", "a\x7fb", "\u2028", "debug", "info", "openclaw", "/bin/sh", "=", "A=B",
    "HOME", "OPENCLAW_HOME", "OPENCLAW_STATE_DIR",
])
TEXT = st.one_of(ODD_TEXT, st.text(max_size=12), st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=8))
HUGE_INTS = st.sampled_from([0, 1, -1, 1023, 1024, 65535, 65536, 604800, 604801, 2**31, 2**53 + 1, 2**63 - 1,
                             2**63, 10**14, 10**30, -(10**30), 10**300])
INTS = st.one_of(HUGE_INTS, st.integers(-(2**70), 2**70), st.integers(-5, 2000))
ODD_FLOATS = st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 1.7976931348623157e308, 5e-324,
                              -0.0, 0.0, 0.005, 0.01, 0.999999, 1.0, 604800.0, 604800.1, 1e16])
FLOATS = st.one_of(ODD_FLOATS, st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 1e6))
DATES = st.one_of(st.datetimes(), st.dates(), st.times())
SCALARS = st.one_of(st.booleans(), INTS, FLOATS, TEXT, DATES)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)), max_leaves=8)


def job_tables() -> st.SearchStrategy[dict[str, Any]]:
    entry = st.dictionaries(st.one_of(st.sampled_from(sorted(JOB_KEYS)), TEXT), VALUES | INTS | FLOATS, max_size=4)
    return st.dictionaries(TEXT, entry, max_size=3)


SIMPLE = st.text(alphabet="abc/~._-{}", max_size=8)


def plausible(setting: config.Setting) -> st.SearchStrategy[Any]:
    """Mostly-valid values, so that many documents load and reach the components."""
    v = setting.validate
    if isinstance(v, config.Range):
        if setting.type is float:
            return st.floats(v.lo, v.hi, exclude_max=v.hi_open) | st.sampled_from([v.lo, v.hi])
        return st.integers(int(v.lo), int(v.hi))
    if setting.name == "log_level":
        return st.sampled_from(["debug", "info", "warning", "error"])
    if setting.name == "recovery.notice":
        return st.sampled_from(["{reason} {time}", "{{x}} {reason!r}", "plain", ""]) | SIMPLE
    if setting.type is list:
        return st.lists(SIMPLE.filter(bool), max_size=3)
    if setting.type is dict:
        return st.dictionaries(st.sampled_from(["A", "B", "HOME", "OPENCLAW_HOME", "OPENCLAW_STATE_DIR"]), SIMPLE,
                               max_size=3)
    if setting.type is config.JobTable:
        entry = st.fixed_dictionaries({}, optional={
            "max_attempts": st.integers(1, 100), "backoff_initial_s": st.floats(0.01, 604800),
            "backoff_max_s": st.floats(0.01, 604800), "coalesce_window_s": st.floats(0, 604800)})
        return st.dictionaries(SIMPLE, entry, max_size=3)
    return SIMPLE


def values_for(setting: config.Setting) -> st.SearchStrategy[Any]:
    if setting.type is float:
        junk = st.one_of(FLOATS, INTS, VALUES)
    elif setting.type is int:
        junk = st.one_of(INTS, FLOATS, VALUES)
    elif setting.type is str:
        junk = st.one_of(TEXT, VALUES)
    elif setting.type is list:
        junk = st.one_of(st.lists(TEXT, max_size=4), VALUES)
    elif setting.type is dict:
        junk = st.one_of(st.dictionaries(st.one_of(ODD_TEXT, TEXT), TEXT, max_size=4), VALUES)
    else:
        junk = st.one_of(job_tables(), VALUES)
    return st.one_of(*[plausible(setting)] * 6, junk)


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    chosen = draw(st.lists(st.sampled_from(config.SETTINGS), max_size=8, unique_by=lambda s: s.name))
    doc: dict[str, Any] = {}
    for s in chosen:
        value = draw(values_for(s))
        if s.section:
            doc.setdefault(s.section, {})[s.key] = value
        elif not isinstance(value, dict):  # a top-level table value would be written as a section
            doc[s.key] = value
    if draw(st.integers(0, 9)) == 0:  # junk: an unknown key, section or a section that is not a table
        junk = draw(st.sampled_from(["bogus", "probes", "supervise.x", "gateway"]))
        if junk in config.SECTIONS and junk not in doc:
            doc[junk] = draw(SCALARS)
        elif junk in config.SECTIONS:
            doc[junk][draw(TEXT)] = draw(SCALARS)
        else:
            doc[junk] = draw(SCALARS)
    return doc


# -- every consumer of the config, without a daemon ----------------------------------------------------

LOOP = asyncio.new_event_loop()


def timer_ok(seconds: float) -> None:
    """What each duration goes through somewhere: milliseconds as int, a threading wait, a loop timer."""
    assert math.isfinite(seconds) and 0 <= seconds <= threading.TIMEOUT_MAX, seconds
    int(seconds * 1000)
    LOOP.call_later(seconds, lambda: None).cancel()


def build_everything(cfg: config.Config, work: Path) -> None:
    r, p, rec = cfg.restart, cfg.probes, cfg.recovery
    for s in (r.backoff_initial_s, r.backoff_max_s, r.crash_loop_window_s, r.crash_loop_delay_s, r.healthy_after_s,
              r.conflict_retry_s, cfg.stop_budget_s, cfg.snapshot_interval_s, p.interval_s, p.timeout_s,
              p.hang_hard_limit_s, p.refused_limit_s, p.boot_limit_s, p.boot_limit_max_s, p.drain_grace_s,
              rec.backoff_initial_s, rec.backoff_max_s, rec.coalesce_window_s, rec.hold_after_crash_loop_s,
              rec.unanswered_grace_s):
        timer_ok(s)
    assert 0 <= r.jitter < 1

    # The restart policy: a crash loop's worth of crashes, each delay a timer.
    for rand in (0.0, 0.999999):
        tracker = RestartTracker(r)
        crash = classify(ExitFacts(intent=Intent.NONE, returncode=1))
        for i in range(min(r.crash_loop_crashes, 50) + 2):
            timer_ok(tracker.on_exit(crash, float(i), rand).delay_s)
        timer_ok(tracker.on_exit(Classification(ExitKind.CONFLICT, False, True, "x"), 99.0, rand).delay_s)

    # The probe machine through a boot, readiness, a hang.
    m = ProbeMachine.spawned(p, 0.0)
    m.observe(ProbeOutcome.TIMEOUT, p.interval_s, False)
    m.observe(ProbeOutcome.OK, 2 * p.interval_s, True)
    for i in range(min(p.hang_timeouts, 50) + 1):
        m.observe(ProbeOutcome.TIMEOUT, (3 + i) * p.interval_s, False)

    # The recovery policy, per job and global: backoffs, planned times, the coalescing window, the notice.
    names = [None, *rec.jobs]
    for name in names:
        pol = policy_for(rec, "job-id", name)
        timer_ok(pol.backoff_initial_s)
        timer_ok(pol.backoff_max_s)
        timer_ok(pol.coalesce_window_s)
        assert 1 <= pol.max_attempts <= config.MAX_ATTEMPTS
        for attempt in range(1, pol.max_attempts + 2):
            timer_ok(backoff_s(pol, attempt, 0.999999))
            ob = RunObligation("job-id", 1_000, 2_000, attempt, False)
            planned = planned_at_ms(ob, pol, 0.5, 3_000)
            view = JobView(exists=True, run_starts_ms=(planned + 1,), finished_ms=(planned + 1,))
            decide_run(ob, view, pol, for_version("2026.9.6").recovery, now_ms=planned, ready_at_ms=2_500,
                       planned_ms=planned)
    for version in ("2026.9.6", "2026.2.26"):
        decide_session("main", False, True, for_version(version).recovery, rec, "crash (signal SIGKILL)", "12:00")
    assert send_gap_ms(rec.retries_per_minute) >= 60
    int(rec.unanswered_grace_s * 1000)
    int(rec.hold_after_crash_loop_s * 1000)

    # Log rotation: the gateway's output and gatewayd's own handler, one rotation each.
    logs = work / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    out = OutputLog(logs / "gateway.log", cfg.logs.max_bytes, cfg.logs.backups)
    out.write_line(b"x" * 10)
    out._rotate()
    out.close()
    handler = logging.handlers.RotatingFileHandler(logs / "gatewayd.log", maxBytes=cfg.logs.max_bytes,
                                                   backupCount=cfg.logs.backups, encoding="utf-8")
    handler.doRollover()
    handler.close()

    # The gateway's command line and environment as spawn would take them (no NUL, names without =).
    argv = [*(cfg.gateway.command or ("openclaw",)), "gateway", "run", "--port", str(cfg.gateway.port),
            *cfg.gateway.args]
    assert argv[0] and not any("\0" in a for a in argv)
    assert all(k and "=" not in k and "\0" not in k and "\0" not in v for k, v in cfg.gateway.env.items())
    assert 0 <= cfg.gateway.port <= 65535
    environ = {"PATH": "/usr/bin", "HOME": str(work)}
    gateway_paths(cfg.gateway, {**environ, **cfg.gateway.env})

    # The service definitions: rendered and read back (no plutil/systemd-analyze: PATH is empty).
    spec = service.build_spec(cfg, cfg.config_file, environ=environ, home=work)
    none = service.Runner(environ={"PATH": ""})
    assert launchd.validate(launchd.render(spec), spec, none) == []
    assert systemd.validate(systemd.render(spec), spec, none) == []


# -- the properties ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def work() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="gatewayd-prop-"))
    root.chmod(0o700)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(root / "home"))
        mp.setenv("XDG_CONFIG_HOME", str(root / "xdg-config"))
        mp.setenv("XDG_DATA_HOME", str(root / "xdg-data"))
        mp.delenv("GATEWAYD_CONFIG", raising=False)
        for name in list(os.environ):
            if name.startswith("GATEWAYD_"):
                mp.delenv(name)
        yield root
    shutil.rmtree(root, ignore_errors=True)


def check(load: Any, work: Path, source: str) -> None:
    try:
        cfg = load()
    except ConfigError as exc:
        text = str(exc)
        assert len(text.splitlines()) == 1 and text == text.strip(), text
        assert exc.source == source and text.startswith(f"{source}: "), text
        assert exc.key or "not valid TOML" in exc.problem or source != str(work / "gatewayd.toml"), text
        return
    build_everything(cfg, work)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(doc=documents())
def test_any_toml_document_loads_into_a_working_config_or_is_refused_in_one_line(work: Path,
                                                                                 doc: dict[str, Any]) -> None:
    path = work / "gatewayd.toml"
    path.write_text(toml_document(doc), encoding="utf-8")
    path.chmod(0o600)
    check(lambda: config.load(path, environ={}), work, str(path))


ENV_TEXT = st.one_of(st.sampled_from(["inf", "-inf", "nan", "1e999", "1e308", "-1", "0", "0.001", "604800",
                                      "604801", "9" * 30, "1_000", " 5 ", "", "x", "~", "rel/dir", "/dev/null/x",
                                      "{user}", "{reason} {time}"]),
                     st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                             max_size=10))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(setting=st.sampled_from([s for s in config.SETTINGS if s.type not in (dict, config.JobTable)]),
       text=ENV_TEXT)
def test_any_environment_value_loads_into_a_working_config_or_is_refused_in_one_line(
        work: Path, setting: config.Setting, text: str) -> None:
    check(lambda: config.load(None, environ={setting.env: text}), work, setting.env)
