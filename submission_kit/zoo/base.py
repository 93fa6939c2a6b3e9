"""Common base of the CIFAR-10 zoo models: input normalization inside ``forward`` and named feature maps."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence

import torch
from torch import nn

__all__ = ["CIFAR10_MEAN", "CIFAR10_STD", "ZooModel"]

#: Per-channel mean of the CIFAR-10 training images on the [0, 1] scale (RGB).
CIFAR10_MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
#: Per-channel standard deviation of the CIFAR-10 training images on the [0, 1] scale (RGB).
CIFAR10_STD: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)


class ZooModel(nn.Module):
    """A classifier that takes images in [0, 1] and normalizes them itself.

    Subclasses define ``self.blocks`` (an ``nn.ModuleDict`` applied in order, whose last entry is named
    ``"last_conv"`` and yields the last convolutional feature map) and ``self.head`` (global pooling and the
    linear classifier). The mean and std are buffers, so they move with ``.to(device)`` and are saved in the
    state dict; there is no global normalization state.

    Attributes:
        feature_names: Keys of :meth:`forward_features`, in order; the last two are ``"last_conv"`` and
            ``"logits"``.
        num_classes: Number of logits (10).
    """

    feature_names: tuple[str, ...]
    num_classes: int
    blocks: nn.ModuleDict
    head: nn.Module

    def __init__(
        self,
        *,
        mean: Sequence[float] = CIFAR10_MEAN,
        std: Sequence[float] = CIFAR10_STD,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def _finish_init(self) -> None:
        """Set :attr:`feature_names` from ``self.blocks``; call at the end of a subclass ``__init__``."""
        names = tuple(self.blocks.keys())
        if not names or names[-1] != "last_conv":
            raise ValueError(f"the last block must be named 'last_conv', got {names}")
        self.feature_names = (*names, "logits")

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Map images in [0, 1], shape (N, 3, H, W), to the standardized input of the first convolution."""
        return (x - self.mean) / self.std

    def forward_normalized(self, z: torch.Tensor) -> torch.Tensor:
        """Return logits (N, num_classes) for an already normalized input ``z`` of shape (N, 3, H, W)."""
        for block in self.blocks.values():
            z = block(z)
        return self.head(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify images.

        Args:
            x: Float images in [0, 1], shape (N, 3, H, W) with H, W >= 32.

        Returns:
            Logits of shape (N, num_classes) (unnormalized scores, not probabilities).
        """
        return self.forward_normalized(self.normalize(x))

    def forward_features(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        """Return every block's output, for feature-guided losses and layer-wise analyses.

        Args:
            x: Float images in [0, 1], shape (N, 3, H, W) with H, W >= 32.

        Returns:
            An ordered dict keyed by :attr:`feature_names`: one (N, C, h, w) map per block, ending with
            ``"last_conv"`` (the last convolutional feature map, before global pooling), then ``"logits"``
            of shape (N, num_classes).
        """
        features: OrderedDict[str, torch.Tensor] = OrderedDict()
        z = self.normalize(x)
        for name, block in self.blocks.items():
            z = block(z)
            features[name] = z
        features["logits"] = self.head(z)
        return features

    def named_blocks(self) -> Iterator[tuple[str, nn.Module]]:
        """Yield ``(name, block)`` in forward order (without the head)."""
        yield from self.blocks.items()


def classifier_head(channels: int, num_classes: int) -> nn.Sequential:
    """Global average pooling (any spatial size) followed by a linear layer: (N, C, h, w) -> (N, num_classes)."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(channels, num_classes))
