"""Where a competition keeps its files: the results folder, its store and the per-unit scratch folders."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from harness.cleanup import sweep_dead
from harness.instance import Instance
from harness.store import Store

__all__ = ["SCRATCH_PREFIX", "Workspace", "default_scratch", "legacy_scratch", "scratch_parent",
           "sweep_dead_scratch"]

#: Scratch folders are ``<scratch parent>/adv-harness-scratch-<instance tag>``.
SCRATCH_PREFIX = "adv-harness-scratch-"


def scratch_parent(root: Path) -> Path:
    """Where scratch folders of ``root``'s runs go: in RAM (``/dev/shm``) when available, else ``root/tmp``.

    Runs create and delete thousands of small files; on a disk mounted with ``discard`` each unlink costs
    milliseconds, in RAM microseconds.
    """
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm
    return root / "tmp"


def default_scratch(root: Path, instance: Instance) -> Path:
    """The scratch folder of ``instance``'s runs into ``root``: :func:`scratch_parent` / ``adv-harness-scratch-TAG``.

    It is the instance's own: no other harness uses it, and it is swept once the instance is dead
    (:func:`sweep_dead_scratch`)."""
    return scratch_parent(root) / f"{SCRATCH_PREFIX}{instance.tag}"


def legacy_scratch(root: Path) -> Path:
    """The scratch folder harnesses before instance identities used for ``root`` (``/dev/shm/adv-harness-HASH``);
    removed when ``root`` is used again."""
    tag = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return Path("/dev/shm") / f"adv-harness-{tag}"


def sweep_dead_scratch(root: Path) -> list[Path]:
    """Delete the scratch folders that dead harness instances left where ``root``'s scratch goes.

    Returns:
        The folders deleted. Never raises.
    """
    return sweep_dead(scratch_parent(root), SCRATCH_PREFIX)


@dataclass(frozen=True)
class Workspace:
    """Where a competition keeps its files, and whose they are.

    Attributes:
        root: The results folder (``--output_dir``).
        instance: The harness instance that makes the runs' files (:mod:`harness.instance`).
        scratch: Per-unit scratch folders, removed after each unit: :func:`default_scratch` of ``root`` and
            ``instance``.
    """

    root: Path
    instance: Instance
    scratch: Path = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scratch", default_scratch(self.root, self.instance))

    @property
    def store(self) -> Store:
        return Store(self.root / "store")
