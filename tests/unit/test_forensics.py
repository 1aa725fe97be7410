"""Crash forensics: the tree's RSS sample, the last output lines (redacted), the signal's name."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from supervisor import logs
from supervisor.forensics import TreeSampler, last_lines, signal_name


def loaded(pid: int) -> psutil.Process:
    """The child process once its interpreter has loaded: until then its RSS is a few pages (seen
    under load: 4096)."""
    proc = psutil.Process(pid)
    deadline = time.monotonic() + 10
    while proc.memory_info().rss <= 1 << 20 and time.monotonic() < deadline:
        time.sleep(0.01)  # no event says "the interpreter is up": its RSS is the fact waited on
    return proc


def test_tree_rss_counts_the_children_and_keeps_the_last_sample_once_the_tree_is_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        loaded(child.pid)
        sampler = TreeSampler()
        sampler.watch(child.pid)
        alone = sampler.last
        assert alone is not None and alone[0] > 1 << 20
        sampler.watch(os.getpid())
        assert sampler.last is not None and sampler.last[0] > alone[0]  # this process and the child
        assert child.pid in {p.pid for p in sampler.members}
    finally:
        child.kill()
        child.wait()
        assert child.stdin is not None
        child.stdin.close()
    sampler.watch(child.pid)  # gone: nothing to read, no sample invented
    assert sampler.last is None


def test_a_killed_gateway_not_yet_reaped_keeps_the_sample_from_before() -> None:
    """Between a SIGKILL and its reaping the gateway is a zombie, whose RSS Linux reads as 0: the
    sample taken then is no sample, and the incident keeps the last one from before the kill."""
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        proc = loaded(child.pid)
        sampler = TreeSampler()
        sampler.watch(child.pid)
        before = sampler.last
        assert before is not None and before[0] > 1 << 20
        child.kill()  # not reaped yet: a zombie until child.wait()
        deadline = time.monotonic() + 10
        while proc.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
            time.sleep(0.01)  # the process's own state, polled: dead, not reaped
        assert proc.status() == psutil.STATUS_ZOMBIE
        assert sampler.sample() is None
        assert sampler.last == before
    finally:
        child.kill()
        child.wait()
        assert child.stdin is not None
        child.stdin.close()


def test_last_lines_are_the_last_200_and_redacted(tmp_path: Path) -> None:
    logs.REDACTOR.add(["forensic-secret-42"])
    log = tmp_path / "gateway.log"
    log.write_text("".join(f"line {i}\n" for i in range(300)) + "token forensic-secret-42 here\n")
    lines = last_lines(log)
    assert len(lines) == 200 and lines[0] == "line 101" and lines[-1] == "token *** here"
    assert last_lines(tmp_path / "missing.log") == ()


def test_signal_name() -> None:
    assert (signal_name(-9), signal_name(-15), signal_name(1), signal_name(None)) == ("SIGKILL", "SIGTERM", None, None)
