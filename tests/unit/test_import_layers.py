"""Imports point down the layers of docs/architecture.md, with no cycles, lazy imports included
(every `import` anywhere in a module counts, inside functions and `if TYPE_CHECKING:` too)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "supervisor"

# Lowest first; a module may import its own layer and the ones below. docs/architecture.md names them.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("supervisor", "supervisor.errors", "supervisor.crashpoints", "supervisor.core")),
    ("base", ("supervisor.config", "supervisor.logs", "supervisor.keepalive", "supervisor.instance",
              "supervisor.clock", "supervisor.events")),
    ("io", ("supervisor.gateway", "supervisor.store", "supervisor.logrelay", "supervisor.notifiers")),
    ("work", ("supervisor.snapshotter", "supervisor.recovery", "supervisor.boot", "supervisor.monitor",
              "supervisor.startup", "supervisor.probing", "supervisor.readiness", "supervisor.exitfacts",
              "supervisor.handoff", "supervisor.queue_keeper", "supervisor.retry_patch", "supervisor.waker",
              "supervisor.forensics", "supervisor.alerter", "supervisor.memory_watch", "supervisor.metrics",
              "supervisor.pausing", "supervisor.maintenance_calendar")),
    ("control", ("supervisor.control",)),
    ("daemon", ("supervisor.daemon", "supervisor.service")),
    ("cli", ("supervisor.cli", "supervisor.__main__")),
]

# Known debt, named so that nothing new joins it (issue 14, item 4): each a set of modules that
# import each other in a circle. Empty since the cli/cli_service and service/backends cycles went.
KNOWN_CYCLES: set[frozenset[str]] = set()


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def imports() -> dict[str, set[str]]:
    mods = modules()
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            edges[name].update(t for t in targets if t in mods and t != name)
    return edges


def layer_of(module: str) -> int:
    best, depth = -1, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > depth:
                best, depth = i, len(p)
    assert best >= 0, f"{module} belongs to no layer: add it to LAYERS and docs/architecture.md"
    return best


def test_every_module_has_a_layer() -> None:
    for module in modules():
        layer_of(module)


def test_no_import_points_up() -> None:
    up = [f"{a} ({LAYERS[layer_of(a)][0]}) -> {b} ({LAYERS[layer_of(b)][0]})"
          for a, targets in imports().items() for b in targets if layer_of(b) > layer_of(a)]
    assert up == []


def test_no_import_cycles_beyond_the_known_debt() -> None:
    edges = imports()
    cycles: set[frozenset[str]] = set()

    def visit(node: str, path: list[str]) -> None:
        for nxt in edges.get(node, ()):
            if nxt in path:
                cycle = path[path.index(nxt):]
                cycles.add(frozenset(cycle))
            elif len(path) < 12:
                visit(nxt, [*path, nxt])

    for start in list(edges):
        visit(start, [start])
    assert cycles - KNOWN_CYCLES == set()
    assert KNOWN_CYCLES - cycles == set(), "a known cycle is gone: remove it from KNOWN_CYCLES"


def test_no_two_modules_share_a_name() -> None:
    names: dict[str, list[str]] = defaultdict(list)
    for module in modules():
        if not module.endswith("__init__") and module != "supervisor" and module.count(".") >= 1:
            names[module.rsplit(".", 1)[1]].append(module)
    twins = {n: m for n, m in names.items() if len(m) > 1 and n != "__main__"}
    assert twins == {}
