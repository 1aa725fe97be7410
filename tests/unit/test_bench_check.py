"""scripts/bench/check.py (what CI runs after the tests) fails on a benchmark that is gone or one
nobody listed, instead of reporting the rest as "all ok" (found by review)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "scripts" / "bench"


def run_check(bench: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(bench / "check.py"), *args], capture_output=True, text=True,
                          timeout=60, cwd=bench)


def test_a_listed_benchmark_that_is_gone_fails_the_check(tmp_path: Path) -> None:
    bench = tmp_path / "bench"
    shutil.copytree(BENCH, bench, ignore=shutil.ignore_patterns("__pycache__"))
    (bench / "hang_latency.py").unlink()
    result = run_check(bench, "--only", "hang_latency")
    assert result.returncode == 1 and "missing: hang_latency" in result.stderr


def test_a_benchmark_nobody_listed_fails_the_check(tmp_path: Path) -> None:
    bench = tmp_path / "bench"
    shutil.copytree(BENCH, bench, ignore=shutil.ignore_patterns("__pycache__"))
    (bench / "new_latency.py").write_text("print('{\"ok\": true}')\n")
    result = run_check(bench, "--only", "cli_latency")
    assert result.returncode == 1 and "not listed" in result.stderr and "new_latency" in result.stderr
