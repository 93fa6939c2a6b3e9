"""The software and hardware a result was computed with, written next to every stored result.

Every command that stores weights, perturbations or tables records the same fields, so that results made on
different machines can be told apart::

    meta = {"command": ..., "seed": ..., **provenance.environment(device)}
"""

from __future__ import annotations

import platform

import torch

__all__ = ["environment"]


def environment(device: str | torch.device) -> dict[str, str | int]:
    """Device, torch CPU threads, torch and Python versions and the CPU architecture.

    Args:
        device: The device the computation ran on (``"cpu"``, ``"cuda:0"``, ...).

    Returns:
        ``{"device", "threads", "torch", "python", "cpu"}``; ``threads`` is ``torch.get_num_threads()`` at the
        time of the call.
    """
    return {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
    }
