"""The Perturbation Rectifying Network ℛ (seed §4.1), with its width scaled for a CPU.

Akhtar, Liu & Mian, CVPR 2018, §4.1: "Conv 3×3, stride = 1, feature maps = 64, 'same' convolution; followed by
5 ResNet blocks, where each block consists of two convolution layers with ReLU activations, resulting in 64
feature maps", then two more convolutions to 16 and 3 maps. Following the authors' code (the project's method
notes) the last two are 1×1 convolutions (the paper's text says 3×3) and a block is
``ReLU(x + conv3×3(ReLU(conv3×3(x))))``. No BatchNorm, stride 1 everywhere, so the output has the input's size;
the output is the rectified image itself (no skip connection from input to output), unconstrained in range
(the defense clips it to [0, 1] before the classifier). Choices the paper leaves open: a ReLU after the first
convolution and after the 16-map 1×1 convolution; PyTorch's default initialization.

``width`` replaces the 64 feature maps (``docs/prn.md`` measures the speed of each width on this machine).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["PRN", "ResBlock", "load_prn", "save_prn"]


class ResBlock(nn.Module):
    """``ReLU(x + conv3×3(ReLU(conv3×3(x))))`` at constant width, stride 1, no normalization."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + self.conv2(self.relu(self.conv1(x))))


class PRN(nn.Module):
    """conv3×3(width) → ReLU → ``blocks`` × :class:`ResBlock` → conv1×1(``bottleneck``) → ReLU → conv1×1(3).

    Args:
        width: Feature maps of the first convolution and the blocks (the seed: 64).
        blocks: Residual blocks (the seed: 5).
        bottleneck: Feature maps of the first 1×1 convolution (the seed: 16).
        channels: Image channels.

    Input: float (N, C, H, W) images in [0, 1]; output: float (N, C, H, W), the rectified images (any range).
    """

    def __init__(self, width: int = 64, blocks: int = 5, bottleneck: int = 16, channels: int = 3) -> None:
        super().__init__()
        if min(width, blocks, bottleneck, channels) < 1:
            raise ValueError("width, blocks, bottleneck and channels must be >= 1")
        self.width, self.blocks, self.bottleneck, self.channels = width, blocks, bottleneck, channels
        self.head = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.ReLU())
        self.body = nn.Sequential(*[ResBlock(width) for _ in range(blocks)])
        self.tail = nn.Sequential(nn.Conv2d(width, bottleneck, 1), nn.ReLU(), nn.Conv2d(bottleneck, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.body(self.head(x)))

    def config(self) -> dict[str, int]:
        """The constructor arguments (stored next to the weights)."""
        return {"width": self.width, "blocks": self.blocks, "bottleneck": self.bottleneck, "channels": self.channels}


def save_prn(path: str | Path, prn: PRN, record: dict[str, Any] | None = None) -> None:
    """Write the state dict to ``path`` and ``{"config": ..., **record}`` to ``path`` with suffix ``.json``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu() for k, v in prn.state_dict().items()}, path)
    path.with_suffix(".json").write_text(json.dumps({"config": prn.config(), **(record or {})}, indent=1) + "\n")


def load_prn(path: str | Path, device: str | torch.device = "cpu") -> PRN:
    """Build the PRN described by ``path``'s ``.json`` and load its state dict (``weights_only=True``).

    Returns:
        The PRN in eval mode, parameters frozen, on ``device``.

    Raises:
        FileNotFoundError: The weights or their ``.json`` are missing.
    """
    path = Path(path)
    record_path = path.with_suffix(".json")
    if not path.is_file() or not record_path.is_file():
        raise FileNotFoundError(f"PRN weights {path} (with {record_path.name}) not found")
    prn = PRN(**json.loads(record_path.read_text())["config"])
    prn.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    prn.eval().requires_grad_(False)
    return prn.to(device)
