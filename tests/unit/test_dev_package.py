"""gatewayd_dev is for tests and scripts only: the product never imports it, nor anything in tests/."""

from __future__ import annotations

import ast
from pathlib import Path

import gatewayd_dev
from gatewayd_dev.harness import REPO

PACKAGE = REPO / "supervisor"


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
    return roots


def test_supervisor_never_imports_the_dev_package_or_tests() -> None:
    offenders = sorted(str(p.relative_to(REPO)) for p in PACKAGE.rglob("*.py")
                       if imported_roots(p) & {"gatewayd_dev", "tests"})
    assert offenders == []


def test_the_dev_package_is_the_checkout_s_own() -> None:
    # The harness finds the repo (the fake gateway, scripts/, .cache/) from its own path: an installed
    # copy elsewhere would point at nothing.
    assert Path(gatewayd_dev.__file__).resolve().parent == REPO / "gatewayd_dev"
    assert (REPO / "pyproject.toml").is_file()
