"""Helpers shared by the attack families: eval mode, the model's own predictions, input checks."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["check_budget", "check_images", "eval_mode", "least_likely", "predict"]


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the ``with`` block; restore training mode afterwards if it was on.

    Attacks must see the deterministic eval-mode network (BatchNorm running statistics, no dropout): in
    training mode an image's logits would depend on the rest of its batch.
    """
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        if was_training:
            model.train()


def check_images(x: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``x`` is a floating-point tensor of shape (N, C, H, W)."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"expected float images of shape (N, C, H, W) in [0, 1], got {shape}")


def check_budget(name: str, value: float) -> float:
    """Return ``value`` as a float, raising ``ValueError`` unless it is finite and non-negative."""
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0 on the [0, 1] scale, got {value}")
    return value


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's own labels: argmax of the logits (in eval mode).

    Args:
        model: Classifier returning logits (N, K).
        x: Images (N, C, H, W) in [0, 1].

    Returns:
        int64 tensor (N,) on ``x``'s device.
    """
    with eval_mode(model):
        return model(x).argmax(dim=1)


@torch.no_grad()
def least_likely(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The least-likely class y_LL = argmin of the logits (Kurakin et al. 2017), in eval mode.

    Args:
        model: Classifier returning logits (N, K).
        x: Images (N, C, H, W) in [0, 1].

    Returns:
        int64 tensor (N,) on ``x``'s device.
    """
    with eval_mode(model):
        return model(x).argmin(dim=1)
