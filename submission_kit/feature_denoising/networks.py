"""A small CIFAR-10 ResNet with feature-denoising blocks after its later stages.

Xie et al., "Feature Denoising for Improving Adversarial Robustness", CVPR 2019, Sec. 6: a denoising block is
added after the last residual block of each stage (res2-res5 of an ImageNet ResNet). Here the backbone is the
zoo's ResNet-8 (:class:`submission_kit.zoo.resnet.ResNet`, widths 32-64-128, one basic block per stage; He et al. 2016,
Sec. 4.2), and by default blocks follow stages 2 and 3 only (16x16 and 8x8 maps): a non-local block after stage 1
would compare 1,024 positions with each other (a 1,024 x 1,024 affinity per image), which on the 2-core CPU costs
more than the whole backbone (figures in ``docs/feature_denoising.md``).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from submission_kit.zoo.resnet import ResNet

from .blocks import DenoisingBlock

__all__ = ["DenoisingResNet"]


class DenoisingResNet(ResNet):
    """The zoo's CIFAR ResNet with a :class:`DenoisingBlock` after the chosen stages.

    Follows the zoo's :class:`~submission_kit.zoo.ZooModel` contract: float input in [0, 1], shape (N, 3, H, W) with
    H, W >= 32, normalized inside ``forward`` with the CIFAR-10 mean/std; logits (N, 10); ``forward_features``
    returns every named block output. With ``op=None`` the network is exactly the zoo's ResNet (same module
    names and state-dict keys): the baseline. With blocks, a denoising block after stage s is named
    ``denoise{s}``; the residual block it follows keeps its zoo name, except that after the last stage the
    residual block becomes ``block{S}`` and the denoising block is ``last_conv`` (the map that is pooled). For
    ResNet-8 with blocks after stages 2 and 3 and a 32x32 input: ``stem`` (32, 32, 32), ``block1`` (32, 32, 32),
    ``block2`` (64, 16, 16), ``denoise2`` (64, 16, 16), ``block3`` (128, 8, 8), ``last_conv`` (128, 8, 8),
    ``logits`` (10).

    The backbone is built (and randomly initialised) before the blocks, so under the same seed every variant
    starts from the same backbone weights.

    Args:
        op: Denoising operation (see :data:`submission_kit.feature_denoising.blocks.OPS`), or None for no blocks.
        denoise_after: 1-based stages followed by a block.
        widths: Channels of each stage.
        blocks_per_stage: Basic blocks per stage (1 = ResNet-8 with three stages).
        conv1x1: Keep the 1x1 convolution of each block (seed Table 1 ablation when False).
        residual: Keep the skip connection of each block (seed Table 1 ablation when False).
        kernel_size: Window of the local operations (bilateral, mean, median).
        num_classes: Number of logits.
    """

    def __init__(self, *, op: str | None = None, denoise_after: Sequence[int] = (2, 3),
                 widths: Sequence[int] = (32, 64, 128), blocks_per_stage: int = 1, conv1x1: bool = True,
                 residual: bool = True, kernel_size: int = 3, num_classes: int = 10) -> None:
        super().__init__(widths=widths, blocks_per_stage=blocks_per_stage, num_classes=num_classes)
        self.op = op
        self.denoise_after = tuple(sorted(set(denoise_after))) if op is not None else ()
        if any(not 1 <= stage <= len(widths) for stage in self.denoise_after):
            raise ValueError(f"denoise_after must name stages 1..{len(widths)}, got {tuple(denoise_after)}")
        if not self.denoise_after:
            return
        residual_blocks = list(self.blocks.values())[1:]  # after the stem, in order
        layers: dict[str, nn.Module] = {"stem": self.blocks["stem"]}
        for index, block in enumerate(residual_blocks, start=1):
            layers[f"block{index}"] = block
            stage, is_last_of_stage = divmod(index, blocks_per_stage)
            if is_last_of_stage == 0 and stage in self.denoise_after:
                layers[f"denoise{stage}"] = DenoisingBlock(widths[stage - 1], op, conv1x1=conv1x1,
                                                           residual=residual, kernel_size=kernel_size)
        names = list(layers)
        last = names[-1]
        layers["last_conv"] = layers.pop(last)  # the pooled map keeps the zoo's name
        self.blocks = nn.ModuleDict(layers)
        self._finish_init()
