"""`gatewayd install | uninstall | doctor` against stand-in launchctl, systemctl and plutil.

The real launchctl and plutil do not exist on the Linux test machine, and systemctl --user needs a
user manager that CI does not run: small stand-ins first on PATH record every call (one JSON line
each) and keep a tiny "world" (what is loaded, enabled, running) in a JSON file, answering `print`,
`print-disabled` and `show` from it. `systemd-analyze verify` is the real one where it exists.
"""

from __future__ import annotations

import asyncio
import json
import os
import plistlib
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import typer
from typer.testing import CliRunner

from supervisor import service
from supervisor.cli import commands as cli_service
from supervisor.cli import doctor
from supervisor.service import launchd, systemd
from supervisor.store.db import SCHEMA_VERSION, Store

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]
UID = os.getuid()
GUI = f"gui/{UID}"
PYTHON = os.path.abspath(sys.executable)
SECRET = "tok-3f9a7c1e5b2d4a6c8e0f1a2b3c4d5e6f"

STANDIN = """\
#!{python}
import json, os, plistlib, sys
from pathlib import Path

name = Path(sys.argv[0]).name
args = sys.argv[1:]
with open(os.environ["STANDIN_LOG"], "a") as fh:
    fh.write(json.dumps([name, *args]) + "\\n")
world_path = Path(os.environ["STANDIN_WORLD"])
world = json.loads(world_path.read_text()) if world_path.exists() else {{}}


def done(rc=0, out="", err=""):
    world_path.write_text(json.dumps(world))
    sys.stdout.write(out)
    sys.stderr.write(err)
    sys.exit(rc)


command = " ".join([name, *args])
failure = next((v for k, v in world.get("fail", {{}}).items() if command.startswith(k)), None)  # by prefix
if failure:
    done(failure[0], "", failure[1] + "\\n")

if name == "plutil":
    assert args[0] == "-lint", args
    try:
        plistlib.loads(Path(args[1]).read_bytes())
    except Exception as exc:
        done(1, f"{{args[1]}}: {{exc}}\\n")
    done(0, f"{{args[1]}}: OK\\n")

if name == "launchctl":
    loaded = world.setdefault("loaded", {{}})  # label -> pid
    disabled = world.setdefault("disabled", [])
    verb = args[0]
    label = args[1].split("/", 2)[2] if args[1:] and args[1].count("/") == 2 else None
    if verb == "print":
        if label in loaded:
            done(0, f"{{args[1]}} = {{{{\\n\\tstate = running\\n\\tpid = {{loaded[label]}}\\n}}}}\\n")
        done(113, "", f'Could not find service "{{label}}" in domain for port\\n')
    if verb == "print-disabled":
        lines = "".join(f'\\t"{{lb}}" => disabled\\n' for lb in disabled)
        done(0, f"disabled services = {{{{\\n{{lines}}}}}}\\n")
    if verb == "bootstrap":
        label = plistlib.loads(Path(args[2]).read_bytes())["Label"]
        if label in disabled:
            done(5, "", "Bootstrap failed: 5: Input/output error\\n")
        if label in loaded:
            done(5, "", "Bootstrap failed: 5: Input/output error\\n")
        loaded[label] = world.get("pids", {{}}).get(label, 4242)
        done()
    if verb == "bootout":
        if label not in loaded:
            done(3, "", "Boot-out failed: 3: No such process\\n")
        del loaded[label]
        done()
    if verb == "disable":
        if label not in disabled:
            disabled.append(label)
        done()
    if verb == "enable":
        if label in disabled:
            disabled.remove(label)
        done()
    done(64, "", f"unknown verb {{verb}}\\n")

if name == "systemctl":
    assert args[0] == "--user", args
    units = world.setdefault("units", {{}})  # unit -> {{"enabled": bool, "active": bool, "pid": int}}
    verb, rest = args[1], [a for a in args[2:] if not a.startswith("--")]
    unit_dir = Path(os.environ["HOME"]) / ".config" / "systemd" / "user"
    if verb == "daemon-reload":
        done()
    unit = rest[-1]
    state = units.setdefault(unit, {{}})
    path = unit_dir / unit
    if verb == "show":
        done(0, "".join([
            f"LoadState={{'loaded' if path.exists() else 'not-found'}}\\n",
            f"ActiveState={{'active' if state.get('active') else 'inactive'}}\\n",
            f"UnitFileState={{'enabled' if state.get('enabled') else ('disabled' if path.exists() else '')}}\\n",
            f"MainPID={{state.get('pid', 4343) if state.get('active') else 0}}\\n",
            f"FragmentPath={{path if path.exists() else ''}}\\n",
        ]))
    if not path.exists():
        done(5, "", f"Failed to {{verb}} {{unit}}: Unit {{unit}} not found.\\n")
    if verb in ("enable", "disable"):
        state["enabled"] = verb == "enable"
        if "--now" in args:
            state["active"] = verb == "enable"
        done()
    if verb in ("start", "restart"):
        state["active"] = True
        done()
    if verb == "stop":
        state["active"] = False
        done()
    done(64, "", f"unknown verb {{verb}}\\n")
done(64, "", f"stand-in for what? {{name}}\\n")
"""


@dataclass
class World:
    root: Path
    home: Path
    bin: Path
    env: dict[str, str]

    @property
    def log(self) -> Path:
        return Path(self.env["STANDIN_LOG"])

    @property
    def world_file(self) -> Path:
        return Path(self.env["STANDIN_WORLD"])

    def state(self) -> dict[str, Any]:
        return json.loads(self.world_file.read_text()) if self.world_file.exists() else {}

    def set_state(self, **values: Any) -> None:
        self.world_file.write_text(json.dumps({**self.state(), **values}))

    def calls(self, tool: str) -> list[list[str]]:
        if not self.log.exists():
            return []
        rows = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [row[1:] for row in rows if row[0] == tool]

    def reset_calls(self) -> None:
        self.log.unlink(missing_ok=True)

    def add_tool(self, name: str) -> None:
        path = self.bin / name
        path.write_text(STANDIN.format(python=PYTHON))
        path.chmod(0o755)


def make_world(tmp_path: Path, platform: str) -> World:
    home = tmp_path / "home"
    home.mkdir(parents=True)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GATEWAYD_", "OPENCLAW_", "XDG_")) and k not in ("NOTIFY_SOCKET",)}
    env.update(PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', os.defpath)}", HOME=str(home),
               STANDIN_LOG=str(tmp_path / "calls.jsonl"), STANDIN_WORLD=str(tmp_path / "world.json"),
               GATEWAYD_SERVICE_PLATFORM=platform)
    w = World(tmp_path, home, bindir, env)
    for tool in ("launchctl", "systemctl"):
        w.add_tool(tool)
    return w


@pytest.fixture
def mac(tmp_path: Path) -> World:
    return make_world(tmp_path / "mac", "launchd")


@pytest.fixture
def linux(tmp_path: Path) -> World:
    return make_world(tmp_path / "linux", "systemd")


def commands_wired() -> bool:
    """True once the typer app has the service commands: then the CLI runs as a real subprocess."""
    names = {c.name or (c.callback.__name__ if c.callback else "") for c in cli_service.app.registered_commands}
    return {"install", "uninstall", "doctor"} <= names


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


def gatewayd(w: World, *args: str) -> Run:
    if commands_wired():
        proc = subprocess.run([PYTHON, "-m", "supervisor", *args], capture_output=True, text=True, env=w.env,
                              cwd=REPO, timeout=60, check=False)
        return Run(proc.returncode, proc.stdout, proc.stderr)
    app = typer.Typer()
    cli_service.register(app)
    # CliRunner's env only overrides: unset what the test environment leaves out.
    env: dict[str, str | None] = {k: None for k in os.environ if k not in w.env}
    env.update(w.env)
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    return Run(result.exit_code, result.stdout, result.stderr)


def write_config(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    path.chmod(0o600)
    return path


def gateway_agent(w: World, **env: str) -> Path:
    path = w.home / "Library" / "LaunchAgents" / "ai.openclaw.gateway.plist"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(plistlib.dumps({
        "Label": "ai.openclaw.gateway", "ProgramArguments": ["/usr/local/bin/node", "openclaw.mjs", "gateway"],
        "RunAtLoad": True, "KeepAlive": True,
        "EnvironmentVariables": {"OPENCLAW_GATEWAY_PORT": "18789", "OPENCLAW_SERVICE_MARKER": "openclaw", **env},
    }))
    return path


# -- launchd -------------------------------------------------------------------------------------------


def test_launchd_install_writes_the_plist_switches_the_gateways_agent_off_and_uninstall_restores_it(
        mac: World) -> None:
    gw_plist = gateway_agent(mac, ANTHROPIC_API_KEY=SECRET)
    mac.set_state(loaded={"ai.openclaw.gateway": 777}, disabled=[])
    state = mac.root / "state dir" / "gatewayd"  # a space, as in ~/Library/Application Support
    cfg = write_config(mac.root / "gatewayd.toml", """
        [supervise]
        stop_budget_s = 100
    """)

    r = gatewayd(mac, "install", "--config", str(cfg), "--state-dir", str(state))

    assert r.code == 0, r.stdout + r.stderr
    plist = mac.home / "Library" / "LaunchAgents" / "ai.openclaw.gatewayd.plist"
    doc = plistlib.loads(plist.read_bytes())
    assert doc["Label"] == "ai.openclaw.gatewayd"
    assert doc["ProgramArguments"] == [PYTHON, "-P", "-m", "supervisor", "run", "--config", str(cfg),
                                       "--state-dir", str(state)]
    assert os.path.isabs(doc["ProgramArguments"][0])
    assert doc["RunAtLoad"] is True and doc["KeepAlive"] is True
    assert doc["ThrottleInterval"] == 10
    assert doc["ProcessType"] == "Interactive"
    assert doc["ExitTimeOut"] == 100 + 30  # stop budget + 30 s (DESIGN correction 6)
    assert doc["SoftResourceLimits"] == {"NumberOfFiles": 8192}
    assert doc["HardResourceLimits"] == {"NumberOfFiles": 8192}
    assert doc["Umask"] == 0o077
    assert doc["StandardOutPath"] == str(state / "logs" / "service.out.log")
    assert doc["StandardErrorPath"] == str(state / "logs" / "service.err.log")
    assert doc["EnvironmentVariables"] == {"PATH": mac.env["PATH"], "HOME": str(mac.home)}
    assert (state / "logs").is_dir()  # launchd does not create the log folder itself
    assert stat.S_IMODE(plist.stat().st_mode) == 0o644
    assert mac.calls("launchctl") == [
        ["print", f"{GUI}/ai.openclaw.gatewayd"],
        ["print", f"{GUI}/ai.openclaw.gateway"],
        ["print-disabled", GUI],
        ["bootout", f"{GUI}/ai.openclaw.gateway"],  # first: the port must be free for gatewayd's gateway
        ["disable", f"{GUI}/ai.openclaw.gateway"],
        ["enable", f"{GUI}/ai.openclaw.gatewayd"],
        ["bootstrap", GUI, str(plist)],
    ]
    assert mac.state()["loaded"] == {"ai.openclaw.gatewayd": 4242}
    assert mac.state()["disabled"] == ["ai.openclaw.gateway"]
    record = json.loads((state / "service-state.json").read_text())
    assert record["platform"] == "launchd"
    assert record["gateway_service"] == {"name": "ai.openclaw.gateway", "path": str(gw_plist), "was_running": True,
                                         "was_enabled": True, "stopped": True, "disabled": True}
    # The provider key the gateway's agent carried is named (never shown): the gateway would lose it.
    assert "ANTHROPIC_API_KEY" in r.stdout and SECRET not in r.stdout + plist.read_text()

    mac.reset_calls()
    r = gatewayd(mac, "uninstall")  # no flags: the state dir is read from the installed plist

    assert r.code == 0, r.stdout + r.stderr
    assert mac.calls("launchctl") == [
        ["print", f"{GUI}/ai.openclaw.gatewayd"],
        ["bootout", f"{GUI}/ai.openclaw.gatewayd"],
        ["enable", f"{GUI}/ai.openclaw.gateway"],
        ["print", f"{GUI}/ai.openclaw.gateway"],
        ["bootstrap", GUI, str(gw_plist)],
    ]
    assert not plist.exists()
    assert not (state / "service-state.json").exists()
    assert mac.state()["loaded"] == {"ai.openclaw.gateway": 4242}
    assert mac.state()["disabled"] == []


def test_launchd_names_what_the_gateways_agent_gave_it_that_its_env_file_lacks(mac: World) -> None:
    # `openclaw gateway install` may start the gateway through an env-file wrapper; provider keys
    # live there. gatewayd's service gives the gateway none of them: the gateway's .env must.
    wrapper_dir = mac.root / "openclaw-state" / "service-env"
    wrapper_dir.mkdir(parents=True)
    (wrapper_dir / "ai.openclaw.gateway.env").write_text(f"OPENAI_API_KEY={SECRET}\nANTHROPIC_API_KEY={SECRET}\n")
    (mac.root / "openclaw-state" / ".env").write_text(f"ANTHROPIC_API_KEY={SECRET}\n")
    path = gateway_agent(mac)
    doc = plistlib.loads(path.read_bytes())
    doc["ProgramArguments"] = ["/bin/sh", str(wrapper_dir / "ai.openclaw.gateway-env-wrapper.sh"),
                               "ai.openclaw.gateway.env", "/usr/local/bin/node", "openclaw.mjs", "gateway"]
    path.write_bytes(plistlib.dumps(doc))
    mac.set_state(loaded={"ai.openclaw.gateway": 777}, disabled=[])
    mac.env["OPENCLAW_STATE_DIR"] = str(mac.root / "openclaw-state")

    r = gatewayd(mac, "install", "--state-dir", str(mac.root / "state"))

    assert r.code == 0, r.stderr
    (warning,) = [ln for ln in r.stdout.splitlines() if ln.startswith("warning:")]
    assert "gives the gateway OPENAI_API_KEY;" in warning  # ANTHROPIC_API_KEY is in its .env already
    assert str(mac.root / "openclaw-state" / ".env") in warning and SECRET not in r.stdout
    # OPENCLAW_STATE_DIR is carried into the service: the gateway it supervises is the one seen here.
    plist = plistlib.loads((mac.home / "Library" / "LaunchAgents" / "ai.openclaw.gatewayd.plist").read_bytes())
    assert plist["EnvironmentVariables"]["OPENCLAW_STATE_DIR"] == str(mac.root / "openclaw-state")


def test_launchd_a_gateway_agent_that_was_off_stays_off(mac: World) -> None:
    gateway_agent(mac)
    mac.set_state(loaded={}, disabled=["ai.openclaw.gateway"])
    state = mac.root / "state"

    assert gatewayd(mac, "install", "--state-dir", str(state)).code == 0
    assert [c[0] for c in mac.calls("launchctl")] == ["print", "print", "print-disabled", "enable", "bootstrap"]
    mac.reset_calls()
    assert gatewayd(mac, "uninstall", "--state-dir", str(state)).code == 0

    assert mac.calls("launchctl") == [["print", f"{GUI}/ai.openclaw.gatewayd"],
                                      ["bootout", f"{GUI}/ai.openclaw.gatewayd"]]
    assert mac.state() == {"loaded": {}, "disabled": ["ai.openclaw.gateway"]}


def test_launchd_no_gateway_agent_plist_means_nothing_to_switch_off(mac: World) -> None:
    r = gatewayd(mac, "install", "--state-dir", str(mac.root / "state"))

    assert r.code == 0, r.stderr
    assert [c[0] for c in mac.calls("launchctl")] == ["print", "enable", "bootstrap"]
    assert "nothing to switch off" in r.stdout


def test_launchd_reinstall_keeps_the_first_record_and_reloads_only_a_changed_plist(mac: World) -> None:
    gateway_agent(mac)
    mac.set_state(loaded={"ai.openclaw.gateway": 777}, disabled=[])
    state = mac.root / "state"
    assert gatewayd(mac, "install", "--state-dir", str(state)).code == 0
    first = json.loads((state / "service-state.json").read_text())["gateway_service"]

    mac.reset_calls()
    r = gatewayd(mac, "install", "--state-dir", str(state))
    assert r.code == 0 and "already loaded with this definition" in r.stdout
    assert "bootstrap" not in [c[0] for c in mac.calls("launchctl")]

    mac.reset_calls()
    mac.env["GATEWAYD_SUPERVISE_STOP_BUDGET_S"] = "200"  # a new definition: booted out, then loaded again
    assert gatewayd(mac, "install", "--state-dir", str(state)).code == 0
    plist = mac.home / "Library" / "LaunchAgents" / "ai.openclaw.gatewayd.plist"
    doc = plistlib.loads(plist.read_bytes())
    assert doc["ExitTimeOut"] == 230
    assert doc["EnvironmentVariables"]["GATEWAYD_SUPERVISE_STOP_BUDGET_S"] == "200"  # the service reads it too
    assert mac.calls("launchctl")[-3:] == [["bootout", f"{GUI}/ai.openclaw.gatewayd"],
                                           ["enable", f"{GUI}/ai.openclaw.gatewayd"],
                                           ["bootstrap", GUI, str(plist)]]
    assert json.loads((state / "service-state.json").read_text())["gateway_service"] == first

    assert gatewayd(mac, "uninstall").code == 0
    assert mac.state()["loaded"] == {"ai.openclaw.gateway": 4242} and mac.state()["disabled"] == []


def test_launchd_a_failed_bootstrap_rolls_back_and_restores_the_gateways_agent(mac: World) -> None:
    gateway_agent(mac)
    plist = mac.home / "Library" / "LaunchAgents" / "ai.openclaw.gatewayd.plist"
    mac.set_state(loaded={"ai.openclaw.gateway": 777}, disabled=[],
                  fail={f"launchctl bootstrap {GUI} {plist}": [5, "Bootstrap failed: 5: Input/output error"]})
    state = mac.root / "state"

    r = gatewayd(mac, "install", "--state-dir", str(state))

    assert r.code == 1
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gatewayd: ") and "Input/output error" in err[0]
    assert "rolled back" in err[0]
    assert mac.state()["loaded"] == {"ai.openclaw.gateway": 4242} and mac.state()["disabled"] == []
    assert not plist.exists() and not (state / "service-state.json").exists()


def test_install_refuses_while_a_gatewayd_started_by_hand_holds_the_state_dir(mac: World, linux: World) -> None:
    from supervisor.instance import InstanceLock

    for w in (mac, linux):
        state = w.root / "state"
        lock = InstanceLock(state / "gatewayd.lock")
        lock.acquire()
        try:
            r = gatewayd(w, "install", "--state-dir", str(state))
        finally:
            lock.release()
        assert r.code == 1
        assert f"gatewayd already runs on {state} (pid {os.getpid()}), outside the service manager" in r.stderr
        assert not (state / "service-state.json").exists()
    # Asked whether the service runs (it does not: so the lock holder is someone else); changed nothing.
    assert mac.calls("launchctl") == [["print", f"{GUI}/ai.openclaw.gatewayd"]]
    assert linux.calls("systemctl") == [["--user", "show", f"--property={systemd.SHOW_PROPERTIES}", "gatewayd.service"]]


def test_launchd_dry_run_only_asks(mac: World) -> None:
    gateway_agent(mac)
    mac.set_state(loaded={"ai.openclaw.gateway": 777}, disabled=[])
    state = mac.root / "state"

    r = gatewayd(mac, "install", "--state-dir", str(state), "--dry-run")

    assert r.code == 0, r.stderr
    assert {c[0] for c in mac.calls("launchctl")} == {"print", "print-disabled"}
    assert f"would run: launchctl bootout {GUI}/ai.openclaw.gateway" in r.stdout
    assert f"would run: launchctl bootstrap {GUI} " in r.stdout
    assert "<key>ExitTimeOut</key>" in r.stdout
    assert not (mac.home / "Library" / "LaunchAgents" / "ai.openclaw.gatewayd.plist").exists()
    assert not state.exists()
    assert mac.state()["loaded"] == {"ai.openclaw.gateway": 777}


def test_plutil_lints_the_plist_when_it_exists_and_its_verdict_counts(mac: World) -> None:
    # Only a stand-in plutil (plistlib behind it) on Linux: proves that it is called, on what, and
    # that a refusal stops the install before anything is changed.
    mac.add_tool("plutil")
    gateway_agent(mac)
    mac.set_state(loaded={"ai.openclaw.gateway": 777}, disabled=[])
    r = gatewayd(mac, "install", "--state-dir", str(mac.root / "state"))
    assert r.code == 0 and "plutil -lint" in r.stdout
    (lint,) = mac.calls("plutil")
    assert lint[0] == "-lint" and lint[1].endswith("ai.openclaw.gatewayd.plist")

    assert gatewayd(mac, "uninstall").code == 0
    mac.reset_calls()
    mac.set_state(fail={"plutil -lint": [1, "x.plist: Encountered unknown tag"]})
    r = gatewayd(mac, "install", "--state-dir", str(mac.root / "state"))
    assert r.code == 1 and "plutil -lint: x.plist: Encountered unknown tag" in r.stderr
    assert [c[0] for c in mac.calls("launchctl")] == []  # refused before any change
    assert mac.state()["loaded"] == {"ai.openclaw.gateway": 4242}


def test_the_plist_template_is_a_plist_and_renders_any_path(tmp_path: Path) -> None:
    text = (REPO / "launchd" / launchd.TEMPLATE).read_text()
    assert plistlib.loads(text.encode())["Label"] == "ai.openclaw.gatewayd"
    odd = tmp_path / "a & <b> \"c\" 'd' %e $f"
    spec = service.ServiceSpec(argv=service.run_argv(odd / "g.toml", odd), environment={"PATH": "/x:/y", "HOME": "/h"},
                               state_dir=odd, log_dir=odd / "logs", stop_timeout_s=360, home=tmp_path)
    runner = service.Runner()
    data = launchd.render(spec)
    assert launchd.validate(data, spec, runner) == []
    assert plistlib.loads(data)["ProgramArguments"][-1] == str(odd)
    if shutil.which("plutil"):  # the real one (macOS)
        assert subprocess.run(["plutil", "-lint", "-"], input=data, check=False).returncode == 0


# -- systemd -------------------------------------------------------------------------------------------


def gateway_unit(w: World) -> Path:
    path = w.home / ".config" / "systemd" / "user" / "openclaw-gateway.service"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[Service]\nExecStart=/usr/bin/node openclaw.mjs gateway\n"
                    'Environment="OPENCLAW_GATEWAY_PORT=18789" "OPENCLAW_SERVICE_MARKER=openclaw"\n'
                    "EnvironmentFile=-%h/.openclaw/service-env/openclaw-gateway.env\n")
    return path


def test_systemd_install_writes_a_verified_unit_switches_the_gateways_unit_off_and_uninstall_restores_it(
        linux: World) -> None:
    gateway_unit(linux)
    linux.set_state(units={"openclaw-gateway.service": {"enabled": True, "active": True, "pid": 888}})
    state = linux.root / "state dir"
    cfg = write_config(linux.root / "gatewayd.toml", """
        [supervise]
        stop_budget_s = 330
    """)

    r = gatewayd(linux, "install", "--config", str(cfg), "--state-dir", str(state))

    assert r.code == 0, r.stdout + r.stderr
    unit = linux.home / ".config" / "systemd" / "user" / "gatewayd.service"
    text = unit.read_text()
    d = systemd.directives(text)
    svc = d["Service"]
    assert systemd.unquote_command(svc["ExecStart"][0]) == [PYTHON, "-P", "-m", "supervisor", "run",
                                                            "--config", str(cfg), "--state-dir", str(state)]
    assert svc["Type"] == ["simple"]
    assert svc["Restart"] == ["always"]
    assert svc["RestartSec"] == ["2"]
    assert svc["KillMode"] == ["process"]
    assert svc["KillSignal"] == ["SIGTERM"]
    assert svc["TimeoutStopSec"] == ["360"]  # 330 + 30
    assert svc["LimitNOFILE"] == ["8192"]
    assert svc["UMask"] == ["0077"]
    assert svc["Environment"] == [f'"PATH={linux.env["PATH"]}" "HOME={linux.home}"']
    assert d["Unit"]["StartLimitIntervalSec"] == ["0"]
    assert d["Install"]["WantedBy"] == ["default.target"]
    assert not systemd.PLACEHOLDER.search(text)
    # systemd-analyze: the real verifier when this machine has it; the content above is asserted either way.
    if shutil.which("systemd-analyze"):
        assert "validated gatewayd.service: systemd-analyze verify" in r.stdout
        v = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False)
        assert v.returncode == 0 and "gatewayd.service" not in v.stdout + v.stderr, v.stdout + v.stderr
    else:
        assert "no systemd-analyze here" in r.stdout
    assert linux.calls("systemctl") == [
        ["--user", "show", f"--property={systemd.SHOW_PROPERTIES}", "gatewayd.service"],
        ["--user", "show", f"--property={systemd.SHOW_PROPERTIES}", "openclaw-gateway.service"],
        ["--user", "disable", "--now", "openclaw-gateway.service"],
        ["--user", "daemon-reload"],
        ["--user", "enable", "--now", "gatewayd.service"],
    ]
    assert linux.state()["units"]["openclaw-gateway.service"] == {"enabled": False, "active": False, "pid": 888}
    assert linux.state()["units"]["gatewayd.service"] == {"enabled": True, "active": True}
    assert "env file" in r.stdout and "openclaw-gateway.env" in r.stdout  # what the gateway's unit gave it

    linux.reset_calls()
    r = gatewayd(linux, "uninstall")

    assert r.code == 0, r.stdout + r.stderr
    assert linux.calls("systemctl") == [
        ["--user", "show", f"--property={systemd.SHOW_PROPERTIES}", "gatewayd.service"],
        ["--user", "disable", "--now", "gatewayd.service"],
        ["--user", "daemon-reload"],
        ["--user", "enable", "--now", "openclaw-gateway.service"],
    ]
    assert not unit.exists() and not (state / "service-state.json").exists()
    assert linux.state()["units"]["openclaw-gateway.service"] == {"enabled": True, "active": True, "pid": 888}


def test_systemd_a_changed_unit_restarts_the_running_service(linux: World) -> None:
    state = linux.root / "state"
    assert gatewayd(linux, "install", "--state-dir", str(state)).code == 0
    linux.reset_calls()
    r = gatewayd(linux, "install", "--state-dir", str(state))
    assert r.code == 0 and "already enabled and running" in r.stdout

    linux.env["GATEWAYD_SUPERVISE_STOP_BUDGET_S"] = "600"
    linux.reset_calls()
    assert gatewayd(linux, "install", "--state-dir", str(state)).code == 0
    assert [c[1:] for c in linux.calls("systemctl")][-3:] == [
        ["daemon-reload"], ["enable", "--now", "gatewayd.service"], ["restart", "gatewayd.service"]]
    assert "TimeoutStopSec=630" in (linux.home / ".config" / "systemd" / "user" / "gatewayd.service").read_text()


def test_systemd_quoting_round_trips_and_verifies(tmp_path: Path) -> None:
    odd = tmp_path / "a b \"c\" %d $e \\f"
    spec = service.ServiceSpec(argv=service.run_argv(odd / "g.toml", odd),
                               environment={"PATH": "/x y:/z%", "HOME": str(odd)},
                               state_dir=odd, log_dir=odd / "logs", stop_timeout_s=360, home=tmp_path)
    text = systemd.render(spec)
    assert systemd.unquote_command(systemd.directives(text)["Service"]["ExecStart"][0]) == list(spec.argv)
    # validate() runs the real systemd-analyze when present: a clean verdict on odd paths.
    assert systemd.validate(text, spec, service.Runner()) == []


# -- doctor --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def fake_openclaw(root: Path, version: str = "2026.9.6") -> Path:
    nm = root / "node_modules"
    (nm / "openclaw").mkdir(parents=True)
    entry = nm / "openclaw" / "openclaw.mjs"
    entry.write_text("// not run by doctor\n")
    (nm / "openclaw" / "package.json").write_text(json.dumps({"name": "openclaw", "version": version}))
    (nm / ".bin").mkdir()
    node = nm / ".bin" / "node"
    node.write_text("#!/bin/sh\necho v22.0.0\n")
    node.chmod(0o755)
    return entry


def make_store(path: Path) -> None:
    async def create() -> None:
        store = Store(path)
        await store.open()
        await store.close()

    asyncio.run(create())


@pytest.fixture
def setup(mac: World) -> Iterator[tuple[World, Path, int]]:
    """A fake openclaw tree, the gateway's config and .env (token), a gatewayd config and store."""
    entry = fake_openclaw(mac.root / "oc")
    gw_state = mac.root / "openclaw-state"
    gw_state.mkdir()
    port = free_port()
    (gw_state / "openclaw.json").write_text(json.dumps({"gateway": {"port": port, "auth": {"mode": "token"}}}))
    (gw_state / ".env").write_text(f"OPENCLAW_GATEWAY_TOKEN={SECRET}\n")
    state = mac.root / "state dir#1?"  # the store is opened by URI: a space, # and ? must not break it
    cfg = write_config(mac.root / "gatewayd.toml", f"""
        state_dir = "{state}"
        [gateway]
        openclaw = "{entry}"
        state_dir = "{gw_state}"
    """)
    make_store(state / "store.sqlite")
    mac.env["GATEWAYD_CONFIG"] = str(cfg)
    yield mac, state, port


def lines(r: Run) -> list[str]:
    return r.stdout.splitlines()


def test_doctor_reports_every_check_on_a_healthy_setup(setup: tuple[World, Path, int]) -> None:
    mac, state, port = setup
    gateway_agent(mac)
    mac.set_state(loaded={}, disabled=["ai.openclaw.gateway"])
    entry = mac.root / "oc" / "node_modules" / "openclaw" / "openclaw.mjs"
    node = mac.root / "oc" / "node_modules" / ".bin" / "node"

    r = gatewayd(mac, "doctor")

    assert r.code == 0, r.stdout + r.stderr
    out = lines(r)
    assert out == [
        f"ok    config: {mac.env['GATEWAYD_CONFIG']} (3 settings from it)",
        out[1],
        f"ok    openclaw: 2026.9.6 (current, protocol 4) at {entry} (node {node})",
        "ok    token: token from .env OPENCLAW_GATEWAY_TOKEN",
        f"ok    port: {port} is free (gatewayd starts the gateway on it)",
        "ok    gatewayd service: ai.openclaw.gatewayd is not installed "
        "(`gatewayd install` starts it at login and restarts it whenever it exits)",
        "ok    gateway service: ai.openclaw.gateway (not running, disabled): off",
        f"ok    store: {state / 'store.sqlite'}: quick_check ok, schema {SCHEMA_VERSION}",
        *out[8:],
    ]
    assert [ln.split(":")[0] for ln in out[8:] if not ln.startswith("ok    store file:")] == [
        "ok    config file", "ok    config folder", "ok    state dir", "ok    logs dir", "ok    control socket folder"]
    assert out[1].startswith("ok    supervisor package: only gatewayd's (")
    assert SECRET not in r.stdout + r.stderr
    assert not (state / "gateway-token").exists()  # doctor never writes the state dir
    doc = json.loads(gatewayd(mac, "doctor", "--json").stdout)
    assert doc["ok"] is True and [f["what"] for f in doc["findings"]][:3] == ["config", "supervisor package",
                                                                              "openclaw"]


def test_doctor_names_the_pid_that_holds_the_port(setup: tuple[World, Path, int]) -> None:
    mac, _state, port = setup
    holder = subprocess.Popen([PYTHON, "-c", f"""
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", {port})); s.listen(); print("ready", flush=True); time.sleep(60)
"""], stdout=subprocess.PIPE, text=True)  # holds the port until the test kills it
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"

        r = gatewayd(mac, "doctor")
        assert r.code == 1
        (line,) = [ln for ln in lines(r) if ln.startswith(("fail  port", "warn  port"))]
        assert line.startswith(f"fail  port: {port} is held by pid {holder.pid} (")
        assert "gatewayd never signals it" in line and f"stop it (pid {holder.pid})" in line

        # The same listener as the gateway's own LaunchAgent (launchctl says its pid): named, and a
        # warning while gatewayd is not installed (`install` switches that agent off).
        gateway_agent(mac)
        mac.set_state(loaded={"ai.openclaw.gateway": holder.pid}, disabled=[])
        r = gatewayd(mac, "doctor")
        out = lines(r)
        assert f"warn  port: {port} is held by pid {holder.pid} (" in "\n".join(out)
        assert any("of the service ai.openclaw.gateway" in ln for ln in out)
        assert any(ln.startswith("warn  gateway service: ai.openclaw.gateway (running, pid") for ln in out)
        assert r.code == 0  # warnings only
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    assert not psutil.pid_exists(holder.pid) or psutil.Process(holder.pid).status() == psutil.STATUS_ZOMBIE


def test_doctor_fails_a_second_manager_once_gatewayd_is_installed(setup: tuple[World, Path, int]) -> None:
    mac, _state, _port = setup
    gateway_agent(mac)
    mac.set_state(loaded={"ai.openclaw.gateway": 777}, disabled=[])
    assert gatewayd(mac, "install").code == 0
    assert mac.state()["disabled"] == ["ai.openclaw.gateway"]
    mac.set_state(loaded={**mac.state()["loaded"], "ai.openclaw.gateway": 999}, disabled=[])  # someone turned it on

    r = gatewayd(mac, "doctor")

    assert r.code == 1
    assert any(ln.startswith("fail  gateway service: ai.openclaw.gateway (running, pid 999, enabled): a second "
                             "manager") for ln in lines(r)), r.stdout
    assert any(ln.startswith("ok    gatewayd service: ai.openclaw.gatewayd (running, pid 4242, enabled)")
               for ln in lines(r))


def test_doctor_store_and_config_failures(setup: tuple[World, Path, int]) -> None:
    mac, state, _port = setup
    store = state / "store.sqlite"
    conn = sqlite3.connect(store)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    r = gatewayd(mac, "doctor")
    assert r.code == 1
    assert f"fail  store: {store} has schema {SCHEMA_VERSION + 1}, written by a newer gatewayd" in r.stdout

    for suffix in ("", "-wal", "-shm"):
        Path(f"{store}{suffix}").unlink(missing_ok=True)
    store.write_bytes(b"this is not a database, not at all" * 100)
    r = gatewayd(mac, "doctor")
    assert r.code == 1 and f"fail  store: {store} is corrupt" in r.stdout

    cfg = Path(mac.env["GATEWAYD_CONFIG"])
    cfg.chmod(0o664)
    r = gatewayd(mac, "doctor")
    assert r.code == 1
    assert f"fail  config: {cfg} is group- or world-writable (mode -rw-rw-r--)" in r.stdout
    assert f"(chmod go-w '{cfg}')" in r.stdout
    assert "warn  config: the checks below use the defaults" in r.stdout


def test_doctor_reports_a_config_it_cannot_load_in_one_line(setup: tuple[World, Path, int]) -> None:
    # An empty HOME (no default config file, no default state dir) and a state_dir inside a file:
    # one `fail  config` line each, never a traceback.
    mac, _state, _port = setup
    del mac.env["GATEWAYD_CONFIG"]
    mac.env["HOME"] = ""

    r = gatewayd(mac, "doctor")

    assert r.code == 1 and "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
    assert lines(r) == ["fail  config: HOME: is empty, so there is no home folder (it holds the default config "
                        "file); set HOME (fix it; `gatewayd run` refuses to start with it)"]

    a_file = mac.root / "a-file"
    a_file.write_text("")
    mac.env["HOME"] = str(mac.home)
    r = gatewayd(mac, "doctor", "--state-dir", str(a_file / "state"))

    assert r.code == 1 and "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
    assert lines(r) == [f"fail  config: --state-dir: state_dir: would be inside {a_file}, which is not a directory "
                        f"(got '{a_file / 'state'}') (fix it; `gatewayd run` refuses to start with it)"]
    doc = json.loads(gatewayd(mac, "doctor", "--json", "--state-dir", str(a_file / "state")).stdout)
    assert doc["ok"] is False and [f["what"] for f in doc["findings"]] == ["config"]


def test_doctor_reports_the_modes_and_owners_it_checks(setup: tuple[World, Path, int]) -> None:
    mac, state, _port = setup
    cfg = Path(mac.env["GATEWAYD_CONFIG"])
    store = state / "store.sqlite"
    token = state / "gateway-token"
    token.write_text("tok-in-the-state-dir-0123456789\n")
    for path, mode in ((cfg.parent, 0o755), (cfg, 0o600), (state, 0o700), (store, 0o600), (token, 0o600)):
        path.chmod(mode)
    for folder in (state / "logs", state / "run"):
        folder.mkdir(mode=0o700)
        folder.chmod(0o700)
    sidecars = [Path(f"{store}{suffix}") for suffix in ("-wal", "-shm")]
    for sidecar in sidecars:
        sidecar.write_bytes(b"")
        sidecar.chmod(0o600)

    def modes(r: Run) -> list[str]:
        whats = ("config file", "config folder", "state dir", "store file", "token file", "logs dir",
                 "control socket folder")
        return [ln for ln in lines(r) if ln[6:].split(":")[0] in whats]

    r = gatewayd(mac, "doctor")
    assert modes(r) == [
        f"ok    config file: {cfg} 0600 owner you",
        f"ok    config folder: {cfg.parent} 0755 owner you",
        f"ok    state dir: {state} 0700 owner you",
        f"ok    store file: {store} 0600 owner you",
        f"ok    store file: {sidecars[0]} 0600 owner you",
        f"ok    store file: {sidecars[1]} 0600 owner you",
        f"ok    token file: {token} 0600 owner you",
        f"ok    logs dir: {state / 'logs'} 0700 owner you",
        f"ok    control socket folder: {state / 'run'} 0700 owner you",
    ], r.stdout

    # (SQLite gives its -wal and -shm the database's mode when it opens them: doctor's store check does)
    for path, mode in ((state, 0o755), (store, 0o644), (sidecars[0], 0o644), (sidecars[1], 0o644), (token, 0o644),
                       (state / "logs", 0o750), (state / "run", 0o711)):
        path.chmod(mode)
    r = gatewayd(mac, "doctor")
    assert modes(r) == [
        f"ok    config file: {cfg} 0600 owner you",
        f"ok    config folder: {cfg.parent} 0755 owner you",
        f"warn  state dir: {state} 0755 owner you: open to others; expected 0700, owner you (chmod 700 '{state}')",
        f"warn  store file: {store} 0644 owner you: open to others; expected 0600, owner you (chmod 600 '{store}')",
        f"warn  store file: {sidecars[0]} 0644 owner you: open to others; expected 0600, owner you "
        f"(chmod 600 '{sidecars[0]}')",
        f"warn  store file: {sidecars[1]} 0644 owner you: open to others; expected 0600, owner you "
        f"(chmod 600 '{sidecars[1]}')",
        f"warn  token file: {token} 0644 owner you: open to others; expected 0600, owner you (chmod 600 '{token}')",
        f"warn  logs dir: {state / 'logs'} 0750 owner you: open to others; expected 0700, owner you "
        f"(chmod 700 '{state / 'logs'}')",
        f"warn  control socket folder: {state / 'run'} 0711 owner you: open to others; expected 0700, owner you "
        f"(chmod 700 '{state / 'run'}')",
    ], r.stdout
    assert r.code == 0  # warnings only

    # A config file gatewayd refuses (a group-writable folder) is still reported, with what is expected.
    cfg.parent.chmod(0o775)
    r = gatewayd(mac, "doctor")
    assert r.code == 1
    assert f"warn  config folder: {cfg.parent} 0775 owner you: writable by others; expected not group- or " \
           f"world-writable, owner you or root (chmod go-w '{cfg.parent}')" in lines(r), r.stdout
    cfg.parent.chmod(0o755)


def test_doctor_warns_when_another_supervisor_package_is_importable(tmp_path: Path) -> None:
    (tmp_path / "supervisor").mkdir()
    (tmp_path / "supervisor" / "__init__.py").write_text("# supervisord\n")

    found = doctor.check_supervisor_package([str(tmp_path), *sys.path])

    assert found.level == "warn" and str(tmp_path / "supervisor") in found.detail
    assert "pipx" in found.hint
    assert doctor.check_supervisor_package(list(sys.path)).level == "ok"


# -- start / stop through the service manager (for `gatewayd start|stop` when installed) ---------------


def test_service_stop_persists_and_start_undoes_it(mac: World, linux: World) -> None:
    # KeepAlive / Restart=always bring back a gatewayd that merely exits: when installed, `stop` must
    # go through the manager (and disable, so the next login does not start it either).
    assert gatewayd(mac, "install", "--state-dir", str(mac.root / "state")).code == 0
    assert service.installed_definition("launchd", mac.home, mac.env) is not None
    mac.reset_calls()
    runner = service.Runner(environ=mac.env)
    service.stop("launchd", runner, mac.home, timeout_s=360)
    assert mac.calls("launchctl") == [["disable", f"{GUI}/ai.openclaw.gatewayd"],
                                      ["bootout", f"{GUI}/ai.openclaw.gatewayd"]]
    service.start("launchd", runner, mac.home)
    assert mac.calls("launchctl")[2:] == [["enable", f"{GUI}/ai.openclaw.gatewayd"],
                                          ["print", f"{GUI}/ai.openclaw.gatewayd"],
                                          ["bootstrap", GUI, str(mac.home / "Library" / "LaunchAgents" /
                                                                 "ai.openclaw.gatewayd.plist")]]
    assert mac.state()["loaded"] == {"ai.openclaw.gatewayd": 4242} and mac.state()["disabled"] == []

    assert service.installed_definition("systemd", linux.home, linux.env) is None
    assert gatewayd(linux, "install", "--state-dir", str(linux.root / "state")).code == 0
    linux.reset_calls()
    runner = service.Runner(environ=linux.env)
    service.stop("systemd", runner, linux.home)
    service.start("systemd", runner, linux.home)
    assert linux.calls("systemctl") == [["--user", "disable", "--now", "gatewayd.service"],
                                        ["--user", "enable", "--now", "gatewayd.service"]]


def test_a_token_only_in_the_shell_is_flagged_and_never_written(setup: tuple[World, Path, int]) -> None:
    mac, state, _port = setup
    (mac.root / "openclaw-state" / ".env").unlink()
    mac.env["OPENCLAW_GATEWAY_TOKEN"] = SECRET

    r = gatewayd(mac, "doctor")
    assert "warn  token: token from your shell's environment (OPENCLAW_GATEWAY_TOKEN); the LaunchAgent never " \
           "carries secrets" in r.stdout
    assert f"(put it in {mac.root / 'openclaw-state' / '.env'})" in r.stdout

    r = gatewayd(mac, "install")
    assert r.code == 0, r.stderr
    assert "warning: OPENCLAW_GATEWAY_TOKEN is set in this shell; the service never carries secrets" in r.stdout
    plist = mac.home / "Library" / "LaunchAgents" / "ai.openclaw.gatewayd.plist"
    assert SECRET not in plist.read_text() + r.stdout + (state / "service-state.json").read_text()
