"""GPUs: which ones this machine offers and which one each running unit gets (round-robin)."""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
from typing import Iterator

__all__ = ["DevicePool", "visible_gpus"]


class DevicePool:
    """Hands each running unit a CUDA_VISIBLE_DEVICES value, round-robin over the GPUs.

    Without GPUs every unit gets None (the variable is left out and submissions fall back to the CPU).

    Args:
        gpus: GPU ids visible to the harness.
        jobs: Parallel units; each GPU is shared by at most ``ceil(jobs / len(gpus))`` of them.
    """

    def __init__(self, gpus: list[str], jobs: int) -> None:
        self.gpus = list(gpus)
        self._queue: queue.Queue[str | None] = queue.Queue()
        for slot in range(max(jobs, 1)):
            self._queue.put(self.gpus[slot % len(self.gpus)] if self.gpus else None)

    @contextlib.contextmanager
    def acquire(self) -> Iterator[str | None]:
        """Borrow a device value for the duration of a run."""
        value = self._queue.get()
        try:
            yield value
        finally:
            self._queue.put(value)


def visible_gpus() -> list[str]:
    """GPU ids this machine offers (respects an existing CUDA_VISIBLE_DEVICES); [] without ``nvidia-smi``."""
    preset = os.environ.get("CUDA_VISIBLE_DEVICES")
    if preset is not None:
        return [g.strip() for g in preset.split(",") if g.strip() and g.strip() != "-1"]
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(listing.stdout.splitlines()) if line.startswith("GPU ")]
