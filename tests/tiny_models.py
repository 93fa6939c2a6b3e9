"""A tiny seeded CNN shared by the attack tests: no trained weights, CPU, seconds."""

from __future__ import annotations

import torch
from torch import nn


class TinyNet(nn.Module):
    """Conv-BN-ReLU-pool-conv-ReLU-GAP-linear on float (N, 3, H, W) in [0, 1] (any side >= 2: global pooling);
    normalizes inside forward like the zoo models; 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features((x - 0.5) / 0.25))


def tiny_model(seed: int = 0) -> TinyNet:
    """A TinyNet with seeded weights and non-trivial BatchNorm statistics, left in TRAINING mode on purpose (an
    attack that does not switch its model to eval mode then shows)."""
    torch.manual_seed(seed)
    model = TinyNet()
    with torch.no_grad():
        bn = model.features[1]
        bn.running_mean.uniform_(-0.3, 0.3)
        bn.running_var.uniform_(0.5, 2.0)
    return model
