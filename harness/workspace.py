"""Where a competition keeps its files: the results folder, its store and the per-unit scratch folders."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from harness.store import Store

__all__ = ["Workspace", "default_scratch"]


def default_scratch(root: Path) -> Path:
    """Scratch folder for ``root``'s runs: in RAM (``/dev/shm``) when available, else ``root/tmp``.

    Runs create and delete thousands of small files; on a disk mounted with ``discard`` each unlink costs
    milliseconds, in RAM microseconds.
    """
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        tag = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
        return shm / f"adv-harness-{tag}"
    return root / "tmp"


@dataclass(frozen=True)
class Workspace:
    """Where a competition keeps its files.

    Attributes:
        root: The results folder (``--output_dir``).
        scratch: Per-unit scratch folders, removed after each unit (default: :func:`default_scratch`).
    """

    root: Path
    scratch: Path = field(default=Path())

    def __post_init__(self) -> None:
        if self.scratch == Path():
            object.__setattr__(self, "scratch", default_scratch(self.root))

    @property
    def store(self) -> Store:
        return Store(self.root / "store")
