"""Run slots: which GPU (round-robin) and which share of the CPU each running unit gets."""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import subprocess
from dataclasses import dataclass
from typing import Iterator, Sequence

from harness.parallelism import CpuShare, cpu_shares

__all__ = ["DevicePool", "Slot", "device_class", "visible_gpus"]


@dataclass(frozen=True)
class Slot:
    """What one running unit holds while its process runs.

    Attributes:
        gpu: Its CUDA_VISIBLE_DEVICES value; None without GPUs (the variable is left out, submissions use the CPU).
        cpu: Its enforced share of the CPU; None when it runs alone (one slot: it may use every core).
    """

    gpu: str | None
    cpu: CpuShare | None


class DevicePool:
    """Hands each running unit a slot: a GPU round-robin over ``gpus`` and a CPU share of its own.

    Args:
        gpus: GPU ids visible to the harness.
        jobs: Parallel units; each GPU is shared by at most ``ceil(jobs / len(gpus))`` of them.
        cpu: The CPU share of each slot (``jobs`` of them); default :func:`harness.parallelism.cpu_shares` over
            this process's cores when ``jobs`` > 1, and none for a single slot.

    Raises:
        ValueError: ``cpu`` does not have one share per slot.
    """

    def __init__(self, gpus: list[str], jobs: int, *, cpu: Sequence[CpuShare] | None = None) -> None:
        self.gpus = list(gpus)
        slots = max(jobs, 1)
        shares: list[CpuShare | None] = list(cpu) if cpu is not None else (
            list(cpu_shares(slots)) if slots > 1 else [None])
        if len(shares) != slots:
            raise ValueError(f"DevicePool: {len(shares)} CPU share(s) for {slots} slot(s)")
        self.slots = [Slot(gpu=self.gpus[i % len(self.gpus)] if self.gpus else None, cpu=shares[i])
                      for i in range(slots)]
        self._queue: queue.Queue[Slot] = queue.Queue()
        for slot in self.slots:
            self._queue.put(slot)

    @contextlib.contextmanager
    def acquire(self) -> Iterator[Slot]:
        """Borrow a slot for the duration of a run (blocks while every slot is in use)."""
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


@functools.lru_cache(maxsize=None)
def device_class(gpu: str | None) -> str:
    """The device class a run given ``gpu`` (a CUDA_VISIBLE_DEVICES id; None: no GPU) is made on: "cpu", or the
    GPU's model as ``nvidia-smi`` names it ("NVIDIA A100-SXM4-40GB"); "GPU (model unknown)" when nvidia-smi does
    not say. Cached per process."""
    if gpu is None:
        return "cpu"
    try:
        answer = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader", "-i", gpu],
                                capture_output=True, text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return "GPU (model unknown)"
    names = [line.strip() for line in answer.stdout.splitlines() if line.strip()]
    return names[0] if names else "GPU (model unknown)"
