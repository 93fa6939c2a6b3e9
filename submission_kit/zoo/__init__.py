"""Reference CIFAR-10 model zoo: small classifiers trained from scratch here, plus torchvision ImageNet wrappers.

Every zoo model takes float images in [0, 1] of shape (N, 3, H, W) with H, W >= 32, normalizes them inside
``forward`` and returns logits (N, 10); ``forward_features`` returns the named block outputs ending with
``"last_conv"`` and ``"logits"``.

Example::

    from submission_kit import zoo
    model = zoo.load(zoo.TARGET_MODEL, device="cuda" if torch.cuda.is_available() else "cpu")
    logits = model(images)  # images: float (N, 3, 32, 32) in [0, 1]

Train with ``python -m research.zoo.train --model NAME``; tabulate with ``python -m research.zoo.evaluate``.

The ImageNet names (:mod:`.imagenet`) are imported on first use: torchvision (and the ``torch._dynamo`` it pulls
in) costs about a second per process, which no CIFAR-10 submission should pay.
"""

from typing import Any

from .base import CIFAR10_MEAN, CIFAR10_STD, ZooModel
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

#: Names served lazily from :mod:`.imagenet` (importing it imports torchvision).
_IMAGENET_NAMES = frozenset({"IMAGENET_MEAN", "IMAGENET_STD", "ImageNetClassifier", "UnknownArchitectureError",
                             "load_torchvision"})


def __getattr__(name: str) -> Any:
    """Import :mod:`.imagenet` only when one of its names is asked for (PEP 562)."""
    if name in _IMAGENET_NAMES:
        from . import imagenet

        return getattr(imagenet, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
