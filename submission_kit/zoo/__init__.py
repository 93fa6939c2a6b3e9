"""Reference CIFAR-10 model zoo: small classifiers trained from scratch here, plus torchvision ImageNet wrappers.

Every zoo model takes float images in [0, 1] of shape (N, 3, H, W) with H, W >= 32, normalizes them inside
``forward`` and returns logits (N, 10); ``forward_features`` returns the named block outputs ending with
``"last_conv"`` and ``"logits"``.

Example::

    from submission_kit import zoo
    model = zoo.load(zoo.TARGET_MODEL, device="cuda" if torch.cuda.is_available() else "cpu")
    logits = model(images)  # images: float (N, 3, 32, 32) in [0, 1]

Train with ``python -m research.zoo.train --model NAME``; tabulate with ``python -m research.zoo.evaluate``.
"""

from .base import CIFAR10_MEAN, CIFAR10_STD, ZooModel
from .imagenet import IMAGENET_MEAN, IMAGENET_STD, ImageNetClassifier, UnknownArchitectureError, load_torchvision
from .registry import (
    TARGET_MODEL,
    WEIGHTS_DIR,
    UnknownModelError,
    WeightsNotFoundError,
    build,
    entry,
    load,
    names,
    weights_path,
)

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "TARGET_MODEL",
    "WEIGHTS_DIR",
    "ImageNetClassifier",
    "UnknownArchitectureError",
    "UnknownModelError",
    "WeightsNotFoundError",
    "ZooModel",
    "build",
    "entry",
    "load",
    "load_torchvision",
    "names",
    "weights_path",
]
