"""The denoisers of Liao et al. 2018: DUNET (denoising U-net, the HGD network) and DAE (its ablation).

F. Liao, M. Liang, Y. Dong, T. Pang, X. Hu, J. Zhu, "Defense against adversarial attacks using high-level
representation guided denoiser", CVPR 2018, Sec. 3.1 and Figures 2-3:

* **C** is a 3×3 convolution (no bias: a BatchNorm follows) → BatchNorm → ReLU; **Ck** is k consecutive C.
* Feedforward path (encoder): C2, then four C3 whose first convolution has stride 2 — five feature maps of
  decreasing resolution (paper widths 64, 128, 256, 256, 256).
* Feedback path (decoder): four blocks. Each upsamples its feedback input bilinearly to the size of the encoder
  map of the same scale (the lateral input), concatenates the two and applies C3, C3, C3, C2 from top to bottom
  (paper widths 256, 256, 128, 64). A 1×1 convolution then gives the negative noise −dx̂, and the output is
  x̂ = x* − dx̂ (Eq. 4): the input plus the 1×1 convolution's output. No clamp (the classifier clamps at use).
* DAE (Sec. 3.1.1, Fig. 2 left) differs in the two ways the paper names: no lateral connections (each decoder
  block sees only its upsampled feedback input; the encoder map's size is still the upsampling target) and no
  input-to-output shortcut (the 1×1 convolution reconstructs the image itself).
* Initialization (not stated in the paper): PyTorch's defaults, except that DUNET's 1×1 head starts at zero, so an
  untrained DUNET is the identity and training starts from the undefended classifier (as zero-initialized
  last layers of residual branches do, Goyal et al. 2017).

Widths are the paper's divided by 4 at ``width=16`` (16, 32, 64, 64, 64 / 64, 64, 32, 16), for a 2-core CPU and
32×32 CIFAR-10 images (docs/hgd.md has the measured speeds). Upsampling uses
``F.interpolate(size=lateral.shape[-2:], mode="bilinear", align_corners=False)``, so any input size works,
odd sizes included (stride-2 3×3 convolutions with padding 1 map n to ⌈n / 2⌉).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ARCHS", "DAE", "DUNET", "Denoiser", "build_denoiser", "conv_block", "widths_for"]

#: Architecture names accepted by :func:`build_denoiser`.
ARCHS: tuple[str, ...] = ("dunet", "dae")
#: Encoder widths of Fig. 3 (64, 128, 256, 256, 256) divided by 64: ``width`` × these; width=64 is the paper's.
_ENCODER_RATIOS: tuple[int, ...] = (1, 2, 4, 4, 4)


def widths_for(width: int) -> tuple[int, ...]:
    """Encoder widths for a base width: ``width`` × (1, 2, 4, 4, 4); ``width=64`` gives the paper's Fig. 3."""
    if width < 1:
        raise ValueError(f"width must be a positive integer, got {width}")
    return tuple(width * r for r in _ENCODER_RATIOS)


def conv_block(in_channels: int, out_channels: int, repeats: int, *, first_stride: int = 1) -> nn.Sequential:
    """Ck of the paper: ``repeats`` × (3×3 conv without bias → BatchNorm → ReLU).

    Args:
        in_channels: Channels of the block's input.
        out_channels: Channels of every convolution's output.
        repeats: k, the number of C units.
        first_stride: Stride of the first convolution (2 in the encoder's C3 blocks).

    Returns:
        The block; maps (N, in_channels, H, W) to (N, out_channels, ⌈H / s⌉, ⌈W / s⌉), s = ``first_stride``.
    """
    layers: list[nn.Module] = []
    channels = in_channels
    for index in range(repeats):
        stride = first_stride if index == 0 else 1
        layers += [
            nn.Conv2d(channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        ]
        channels = out_channels
    return nn.Sequential(*layers)


class Denoiser(nn.Module):
    """Encoder–decoder of Fig. 3, with or without lateral connections and the residual shortcut.

    Args:
        widths: Five encoder widths (C2, then four stride-2 C3). The decoder mirrors them: its blocks output
            widths[3], widths[2], widths[1], widths[0] (paper: 256, 256, 128, 64).
        lateral: Concatenate the encoder map of each scale to the upsampled feedback input (DUNET).
        residual: Return input + head output (DUNET, Eq. 4); otherwise the head output itself (DAE).

    Attributes:
        encoder: The five encoder blocks.
        decoder: The four decoder blocks, top (coarsest) first.
        head: The 1×1 convolution to 3 channels (−dx̂ for DUNET, the image for DAE).
    """

    def __init__(self, widths: Sequence[int], *, lateral: bool, residual: bool) -> None:
        super().__init__()
        if len(widths) != 5:
            raise ValueError(f"expected 5 encoder widths, got {tuple(widths)}")
        self.widths = tuple(int(w) for w in widths)
        self.lateral = lateral
        self.residual = residual
        w = self.widths
        self.encoder = nn.ModuleList(
            [conv_block(3, w[0], 2)] + [conv_block(w[i - 1], w[i], 3, first_stride=2) for i in range(1, 5)]
        )
        decoder: list[nn.Module] = []
        feedback = w[4]
        for scale, repeats in zip((3, 2, 1, 0), (3, 3, 3, 2)):
            in_channels = feedback + (w[scale] if lateral else 0)
            decoder.append(conv_block(in_channels, w[scale], repeats))
            feedback = w[scale]
        self.decoder = nn.ModuleList(decoder)
        self.head = nn.Conv2d(w[0], 3, kernel_size=1)
        if residual:  # start as the identity x̂ = x* (the paper does not say how the head is initialized)
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def head_output(self, x: torch.Tensor) -> torch.Tensor:
        """The 1×1 convolution's output: −dx̂ for DUNET, the reconstructed image for DAE.

        Args:
            x: Images, float (N, 3, H, W), nominally in [0, 1] (any H, W ≥ 1).

        Returns:
            Float (N, 3, H, W), unbounded.
        """
        maps = []
        z = x
        for block in self.encoder:
            z = block(z)
            maps.append(z)
        z = maps[-1]
        for block, lateral in zip(self.decoder, reversed(maps[:-1])):
            z = F.interpolate(z, size=lateral.shape[-2:], mode="bilinear", align_corners=False)
            if self.lateral:
                z = torch.cat([z, lateral], dim=1)
            z = block(z)
        return self.head(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Denoise images.

        Args:
            x: Adversarial (or clean) images x*, float (N, 3, H, W) in [0, 1].

        Returns:
            Denoised images x̂, float (N, 3, H, W); not clamped, so values may leave [0, 1] slightly (the
            classifier wrapper :func:`submission_kit.defense_blocks.classify.predict` clamps before classifying).
        """
        out = self.head_output(x)
        return x + out if self.residual else out


class DUNET(Denoiser):
    """Denoising U-net (Fig. 3): lateral connections and x̂ = x* + (−dx̂). ``width=64`` is the paper's size."""

    def __init__(self, width: int = 16) -> None:
        super().__init__(widths_for(width), lateral=True, residual=True)


class DAE(Denoiser):
    """Convolutional denoising autoencoder (Fig. 2 left): DUNET without laterals and without the shortcut."""

    def __init__(self, width: int = 16) -> None:
        super().__init__(widths_for(width), lateral=False, residual=False)


def build_denoiser(arch: str, width: int = 16) -> Denoiser:
    """Return an untrained ``"dunet"`` or ``"dae"`` of base width ``width`` (in training mode, on the CPU).

    Raises:
        ValueError: Unknown ``arch``.
    """
    if arch == "dunet":
        return DUNET(width)
    if arch == "dae":
        return DAE(width)
    raise ValueError(f"unknown denoiser architecture {arch!r}; choose one of {', '.join(ARCHS)}")
