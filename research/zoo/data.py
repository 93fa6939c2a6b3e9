"""Tensor-side data handling for the zoo: uint8 batches to model input, augmentation, batched accuracy."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from submission_kit import contract

__all__ = ["accuracy", "augment", "to_input"]


def to_input(images: torch.Tensor, device: str | torch.device = "cpu") -> torch.Tensor:
    """Turn uint8 images (N, H, W, 3), values 0-255, into float model input in [0, 1].

    Returns:
        Float32 tensor of shape (N, 3, H, W) on ``device``, in ``channels_last`` memory format (a permuted
        view of the NHWC data, so no copy is needed for the layout).
    """
    x = contract.pixels_to_unit(images.to(device, non_blocking=True).permute(0, 3, 1, 2).float())
    return x.contiguous(memory_format=torch.channels_last)


def augment(images: torch.Tensor, *, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip, on uint8 NHWC images.

    The standard CIFAR-10 augmentation (He et al. 2016, section 4.2): pad ``padding`` pixels on each side, take a
    random crop of the original size, flip left-right with probability 1/2.

    Args:
        images: uint8 tensor (N, H, W, C) on the CPU.
        generator: Source of randomness (CPU generator), so results depend only on its seed.
        padding: Pixels of zero padding on each side.

    Returns:
        uint8 tensor (N, H, W, C).
    """
    n, height, width, _ = images.shape
    padded = nn.functional.pad(images, (0, 0, padding, padding, padding, padding))
    top = torch.randint(0, 2 * padding + 1, (n, 1), generator=generator)
    left = torch.randint(0, 2 * padding + 1, (n, 1), generator=generator)
    flip = torch.rand(n, 1, generator=generator) < 0.5
    rows = top + torch.arange(height)  # (N, H)
    cols = torch.arange(width)
    cols = left + torch.where(flip, cols.flip(0), cols)  # (N, W), flipped columns read right to left
    batch = torch.arange(n)[:, None, None]
    return padded[batch, rows[:, :, None], cols[:, None, :]]


@torch.no_grad()
def accuracy(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    labels: np.ndarray | torch.Tensor,
    *,
    batch_size: int = 500,
    device: str | torch.device = "cpu",
) -> float:
    """Return the fraction of ``images`` that ``model`` labels correctly (top-1), in [0, 1].

    Args:
        model: Classifier taking [0, 1] NCHW float input; it is used as is (call ``.eval()`` first).
        images: uint8 (N, H, W, 3).
        labels: Integer labels (N,).
        batch_size: Images per forward pass.
        device: Where the model lives.
    """
    images = torch.as_tensor(images)
    labels = torch.as_tensor(labels)
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = model(to_input(images[start : start + batch_size], device))
        correct += int((logits.argmax(1).cpu() == labels[start : start + batch_size]).sum())
    return correct / max(len(images), 1)
