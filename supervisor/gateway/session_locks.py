"""Session lock files a killed gateway left, removed before the next gateway starts (the rule:
`core/orphan_locks.py`). Run only while no gateway of ours runs: after a boot's end, before a spawn."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from supervisor.core.orphan_locks import LockSeen, orphaned

LOCKS = "agents/*/sessions/*.lock"  # the gateway's layout under its state dir
MAX_READ = 4096  # an owner's JSON is a few dozen bytes


@dataclass
class Cleared:
    removed: list[tuple[str, str]] = field(default_factory=list)  # (file, why)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file, error)


def clear_orphaned(state_dir: Path, now_s: float, tree_gone_s: float | None) -> Cleared:
    done = Cleared()
    for path in sorted(state_dir.glob(LOCKS)):
        try:
            with path.open("rb") as f:
                text = f.read(MAX_READ).decode("utf-8", "replace")
            why = orphaned(LockSeen(text, path.stat().st_mtime), now_s, tree_gone_s)
            if why is None:
                continue
            path.unlink()
        except FileNotFoundError:
            continue  # gone meanwhile: nothing to clear
        except OSError as exc:
            done.failed.append((str(path), exc.strerror or str(exc)))
            continue
        done.removed.append((str(path), why))
    return done
