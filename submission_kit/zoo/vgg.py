"""Small VGG-style CIFAR-10 classifiers.

After Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition", ICLR 2015:
stacks of 3x3 convolutions (here each followed by BatchNorm and ReLU; Ioffe & Szegedy 2015) in stages separated
by 2x2 max pooling, scaled down to three stages of two convolutions so a CPU can train and attack it. Global
average pooling replaces the fully connected stack, so any input size >= 32 works.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from .base import ZooModel, classifier_head

__all__ = ["VGG"]


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class VGG(ZooModel):
    """VGG-style network: ``len(widths)`` stages of ``convs_per_stage`` conv-BN-ReLU blocks.

    Every stage but the last ends with 2x2 max pooling, so a 32x32 input gives an 8x8 ``last_conv`` map with
    three stages. Blocks are named ``block1`` ... ``block{n-1}`` and ``last_conv`` (one per convolution; a
    block that ends a stage includes the pooling).

    Args:
        widths: Output channels of each stage, e.g. ``(48, 96, 192)``.
        convs_per_stage: Convolutions per stage.
        num_classes: Number of logits.
    """

    def __init__(
        self, *, widths: Sequence[int] = (48, 96, 192), convs_per_stage: int = 2, num_classes: int = 10
    ) -> None:
        super().__init__(num_classes=num_classes)
        layers: list[list[nn.Module]] = []
        in_channels = 3
        for stage, width in enumerate(widths):
            for conv in range(convs_per_stage):
                block = _conv_bn_relu(in_channels, width)
                in_channels = width
                if conv == convs_per_stage - 1 and stage < len(widths) - 1:
                    block.append(nn.MaxPool2d(2))
                layers.append(block)
        names = [f"block{i + 1}" for i in range(len(layers) - 1)] + ["last_conv"]
        self.blocks = nn.ModuleDict({name: nn.Sequential(*block) for name, block in zip(names, layers)})
        self.head = classifier_head(in_channels, num_classes)
        self._finish_init()
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
