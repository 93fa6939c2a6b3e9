"""Names of the reference CIFAR-10 models, how to build them, and how to load their trained weights."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from submission_kit.artefacts import unknown_message as _unknown_message
from submission_kit.artefacts import weights_dir

from .base import ZooModel
from .resnet import ResNet
from .vgg import VGG

__all__ = [
    "TARGET_MODEL",
    "WEIGHTS_DIR",
    "UnknownModelError",
    "WeightsNotFoundError",
    "ZooEntry",
    "build",
    "entry",
    "load",
    "names",
    "weights_path",
]

#: Folder holding ``<name>.pt`` (state dict), ``<name>.json`` (provenance) and ``<name>.log`` (training log).
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True)
class ZooEntry:
    """One registered model and the recipe that trained it.

    Attributes:
        name: Registry key, also the weights file stem.
        factory: Builds the untrained model.
        description: One line for tables and error messages.
        epochs: Training epochs of the committed weights.
        seed: Seed of the committed weights.
        max_lr: Peak learning rate of the one-cycle schedule.
    """

    name: str
    factory: Callable[[], ZooModel]
    description: str
    epochs: int
    seed: int
    max_lr: float = 0.2

    @property
    def command(self) -> str:
        """The shell command that trains this model's committed weights."""
        return f"python -m research.zoo.train --model {self.name} --epochs {self.epochs} --seed {self.seed}"


_ENTRIES: dict[str, ZooEntry] = {
    entry.name: entry
    for entry in (
        ZooEntry(
            name="vgg6_w48",
            factory=lambda: VGG(widths=(48, 96, 192)),
            description="VGG-style, 6 conv (48-96-192), BatchNorm",
            epochs=15,
            seed=0,
        ),
        ZooEntry(
            name="vgg6_w32",
            factory=lambda: VGG(widths=(32, 64, 128)),
            description="VGG-style, 6 conv (32-64-128), BatchNorm",
            epochs=10,
            seed=1,
        ),
        ZooEntry(
            name="resnet8_w32",
            factory=lambda: ResNet(widths=(32, 64, 128), blocks_per_stage=1),
            description="ResNet-8, 1 basic block per stage (32-64-128)",
            epochs=16,
            seed=2,
        ),
    )
}

#: The model that defenses protect and that white-box attacks target; the others serve transfer attacks.
TARGET_MODEL: str = "vgg6_w48"


class UnknownModelError(KeyError):
    """Raised for a model name that is not registered; the message lists the choices."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class WeightsNotFoundError(FileNotFoundError):
    """Raised when a registered model's weights file does not exist; the message names the training command."""


def names() -> list[str]:
    """Return the registered model names, target model first."""
    return sorted(_ENTRIES, key=lambda name: (name != TARGET_MODEL, name))


def entry(name: str) -> ZooEntry:
    """Return the registry entry of ``name``.

    Raises:
        UnknownModelError: ``name`` is not registered; the message suggests the closest names.
    """
    try:
        return _ENTRIES[name]
    except KeyError:
        raise UnknownModelError(_unknown_message("model", name, names())) from None


def build(name: str) -> ZooModel:
    """Return an untrained (randomly initialized) model ``name``, in training mode, on the CPU.

    Raises:
        UnknownModelError: ``name`` is not registered.
    """
    return entry(name).factory()


def weights_path(name: str) -> Path:
    """Return where the weights of ``name`` live: ``submission_kit/zoo/weights/<name>.pt``, or
    ``$SUBMISSION_KIT_WEIGHTS/zoo/<name>.pt`` when that variable is set (:mod:`submission_kit.artefacts`)."""
    return weights_dir("zoo", WEIGHTS_DIR) / f"{entry(name).name}.pt"


def load(
    name: str,
    device: str | torch.device = "cpu",
    *,
    weights: str | os.PathLike[str] | None = None,
    frozen: bool = True,
) -> ZooModel:
    """Return trained model ``name`` in eval mode on ``device``.

    The model takes float images in [0, 1] of shape (N, 3, H, W), H, W >= 32, and returns logits (N, 10).

    Args:
        name: A registered name (see :func:`names`).
        device: Where to put the model, e.g. ``"cpu"`` or ``"cuda"``.
        weights: A state-dict file to load instead of ``submission_kit/zoo/weights/<name>.pt``.
        frozen: Turn off ``requires_grad`` of the parameters. Gradients with respect to the input still flow,
            which is all attacks and guided denoisers need, and backward passes get cheaper.

    Raises:
        UnknownModelError: ``name`` is not registered.
        WeightsNotFoundError: The weights file is missing; the message gives the command that makes it.
    """
    spec = entry(name)
    path = Path(weights) if weights is not None else weights_path(name)
    if not path.is_file():
        raise WeightsNotFoundError(
            f"weights for zoo model {name!r} not found at {path}. Train them with:\n    {spec.command}"
        )
    model = spec.factory()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model.eval()
    if frozen:
        model.requires_grad_(False)
    return model.to(device)

