"""Narrow, shallow residual networks for CIFAR-10.

He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016, CIFAR variant (section 4.2):
a 3x3 stem, then stages of basic blocks (two 3x3 conv-BN layers plus an identity or 1x1-projection shortcut),
stride 2 at the start of each stage after the first, global average pooling and a linear layer. With one block
per stage and widths 32-64-128 this is a "ResNet-8" (7 convolutions + 1 linear layer).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .base import ZooModel, classifier_head

__all__ = ["BasicBlock", "ResNet"]


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a shortcut: ``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        stride: Stride of the first convolution (and of the projection shortcut).
    """

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (N, in_channels, H, W) to (N, out_channels, ceil(H/stride), ceil(W/stride))."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(ZooModel):
    """CIFAR ResNet with ``blocks_per_stage`` basic blocks in each of ``len(widths)`` stages.

    Blocks are named ``stem``, ``block1`` ... ``block{n-1}`` and ``last_conv`` (the final residual block,
    whose output is pooled). A 32x32 input gives a 8x8 ``last_conv`` map with three stages.

    Args:
        widths: Channels of each stage, e.g. ``(32, 64, 128)``; the stem has ``widths[0]`` channels.
        blocks_per_stage: Basic blocks per stage (1 gives ResNet-8 with three stages, 3 gives ResNet-20).
        num_classes: Number of logits.
    """

    def __init__(
        self, *, widths: Sequence[int] = (32, 64, 128), blocks_per_stage: int = 1, num_classes: int = 10
    ) -> None:
        super().__init__(num_classes=num_classes)
        stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
        )
        residual: list[nn.Module] = []
        in_channels = widths[0]
        for stage, width in enumerate(widths):
            for index in range(blocks_per_stage):
                stride = 2 if stage > 0 and index == 0 else 1
                residual.append(BasicBlock(in_channels, width, stride=stride))
                in_channels = width
        names = [f"block{i + 1}" for i in range(len(residual) - 1)] + ["last_conv"]
        self.blocks = nn.ModuleDict({"stem": stem, **dict(zip(names, residual))})
        self.head = classifier_head(in_channels, num_classes)
        self._finish_init()
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, BasicBlock):
                nn.init.zeros_(module.bn2.weight)  # each residual branch starts as zero (Goyal et al. 2017)
