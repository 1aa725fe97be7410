"""End-to-end fixtures: the real openclaw gateway (installed by scripts/install-openclaw), a fake
OpenAI-compatible model on loopback, and gatewayd configured to supervise a sandboxed gateway."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gatewayd_dev import fake_model, sandbox
from gatewayd_dev.harness import REPO, Gatewayd, free_port_block

VERSIONS = ("2026.9.6", "2026.2.26")


# One fake model per pytest process: under xdist (`make test` runs this stage on workers) each
# worker has its own request log and delay file.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
DELAY_FILE = REPO / ".cache" / f"e2e-model-delay-{WORKER}"


# Under xdist (`make test`: three workers, `--dist loadgroup`) the tests spread over every worker,
# 2026.2.x's too. Gateways booting at once share Node's compile cache (written to a temporary file
# and renamed), but not 2026.2.x's jiti cache, which is written in place: one per worker
# (sandbox.jiti_cache_dir).


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Longest first: xdist hands tests out in this order, and one of a few minutes handed out late
    # left a worker running it alone at the end (a CI trial: 100 s between the first worker's last
    # test and the last one's).
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


def set_model_delay(seconds: float) -> None:
    DELAY_FILE.write_text(f"{seconds}\n")


@pytest.fixture(scope="session")
def model() -> Iterator[tuple[int, Path]]:
    log = REPO / ".cache" / f"e2e-model-{WORKER}.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    set_model_delay(0.5)
    server, thread, port = fake_model.start_fake_model(port=0, delay=0.5, log_path=log, delay_file=DELAY_FILE)
    try:
        yield port, log
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def real_gatewayd(root: Path, version: str, model_port: int, settings: dict[str, dict[str, Any]] | None = None,
                  heartbeat_every: str = "0m", agents: list[str] | None = None) -> tuple[Gatewayd, sandbox.Sandbox]:
    port = free_port_block()
    sb = sandbox.prepare_sandbox(root / "gw", version, port, model_port, heartbeat_every=heartbeat_every,
                                 agents=agents)
    base: dict[str, dict[str, Any]] = {
        "gateway": {"openclaw": str(sb.entry), "node": str(sb.node), "port": port, "args": ["--bind", "loopback"],
                    "env": dict(sb.env), "config_path": str(sb.config_path), "state_dir": str(sb.state_dir)},
        "supervise": {"stop_budget_s": 120.0},
        "probes": {"interval_s": 1.0, "timeout_s": 2.0},
    }
    for section, values in (settings or {}).items():
        base.setdefault(section, {}).update(values)
    return Gatewayd(root, port, base), sb
