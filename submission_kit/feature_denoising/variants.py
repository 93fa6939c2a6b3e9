"""The feature-denoising variants: names, how to build them, the recipe that trains them, their weights.

Every variant is the same ResNet-8 (:class:`~submission_kit.feature_denoising.networks.DenoisingResNet`) and differs
only
in its denoising blocks, as in the ablations of Xie et al. 2019 (Fig. 7: denoising operations; Table 1: block
design). All are adversarially trained by ``python -m research.feature_denoising.train`` with the same recipe.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from submission_kit.artefacts import unknown_message as _unknown_message
from submission_kit.artefacts import weights_dir
from submission_kit.zoo.registry import UnknownModelError, WeightsNotFoundError

from .networks import DenoisingResNet

__all__ = [
    "DEFAULT_VARIANT",
    "RECIPE",
    "WEIGHTS_DIR",
    "Recipe",
    "UnknownModelError",
    "Variant",
    "WeightsNotFoundError",
    "build",
    "get",
    "load",
    "names",
    "weights_path",
]

#: Folder holding ``<variant>.pt`` (state dict), ``<variant>.json`` (run record) and ``<variant>.log``.
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True)
class Recipe:
    """The adversarial-training recipe shared by every variant (``train.py`` documents each choice).

    Attributes:
        attack: ``"fgsm_rs"`` (one step from a random start, Wong et al. 2020) or ``"pgd"``.
        epochs: Planned epochs of the one-cycle schedule.
        max_minutes: Wall-clock budget; the schedule is shortened to what fits (None: no budget).
        seed: Seed of initialisation, data order, augmentation and attack noise.
    """

    attack: str = "fgsm_rs"
    epochs: int = 4
    max_minutes: float | None = 20.0
    seed: int = 0


#: The recipe of the committed weights (see docs/feature_denoising.md for the measured costs behind it).
RECIPE = Recipe()


@dataclass(frozen=True)
class Variant:
    """One network of the study.

    Attributes:
        name: Registry key and weights file stem.
        description: One line for tables and messages.
        op: Denoising operation of every block, or None for the baseline (no blocks).
        conv1x1: Blocks keep their 1x1 convolution.
        residual: Blocks keep their skip connection.
        ablation: Part of the block-design ablation (seed Table 1) rather than the operation study (Fig. 7).
    """

    name: str
    description: str
    op: str | None
    conv1x1: bool = True
    residual: bool = True
    ablation: bool = False

    def build(self) -> DenoisingResNet:
        """An untrained network (random init, training mode, CPU)."""
        return DenoisingResNet(op=self.op, conv1x1=self.conv1x1, residual=self.residual)

    @property
    def command(self) -> str:
        """The shell command that trains this variant's weights with :data:`RECIPE`."""
        budget = f" --max-minutes {RECIPE.max_minutes:g}" if RECIPE.max_minutes is not None else ""
        return (f"python -m research.feature_denoising.train --variant {self.name} --attack {RECIPE.attack} "
                f"--epochs {RECIPE.epochs}{budget} --seed {RECIPE.seed}")


_VARIANTS: dict[str, Variant] = {
    variant.name: variant
    for variant in (
        Variant("baseline", "ResNet-8, no denoising blocks (adversarially trained)", None),
        Variant("nonlocal_gaussian", "+2 blocks: non-local means, Gaussian (softmax, θ/φ embeddings)",
                "nonlocal_gaussian"),
        Variant("nonlocal_dot", "+2 blocks: non-local means, dot product (no embedding)", "nonlocal_dot"),
        Variant("bilateral", "+2 blocks: 3x3 bilateral, Gaussian (θ/φ embeddings)", "bilateral"),
        Variant("mean", "+2 blocks: 3x3 mean filter", "mean"),
        Variant("median", "+2 blocks: 3x3 median filter", "median"),
        Variant("null", "+2 blocks: null (1x1 convolution only)", "null"),
        Variant("nonlocal_gaussian_no1x1", "non-local Gaussian blocks without the 1x1 convolution",
                "nonlocal_gaussian", conv1x1=False, ablation=True),
        Variant("nonlocal_gaussian_nores", "non-local Gaussian blocks without the residual connection",
                "nonlocal_gaussian", residual=False, ablation=True),
    )
}

#: The variant of the ``fd_nonlocal`` defense (the seed's default).
DEFAULT_VARIANT = "nonlocal_gaussian"


def names() -> list[str]:
    """Registered variant names: baseline, the operations, then the block-design ablations."""
    return list(_VARIANTS)


def get(name: str) -> Variant:
    """Return variant ``name``.

    Raises:
        UnknownModelError: Not registered; the message suggests the closest names (a ``KeyError``).
    """
    try:
        return _VARIANTS[name]
    except KeyError:
        raise UnknownModelError(_unknown_message("feature-denoising variant", name, names())) from None


def build(name: str) -> DenoisingResNet:
    """Return an untrained network of variant ``name`` (random init, training mode, CPU)."""
    return get(name).build()


def weights_path(name: str) -> Path:
    """Where the trained weights of ``name`` live: ``submission_kit/feature_denoising/weights/<name>.pt``."""
    return weights_dir("feature_denoising", WEIGHTS_DIR) / f"{get(name).name}.pt"


def load(name: str, device: str | torch.device = "cpu", *, weights: str | os.PathLike[str] | None = None,
         frozen: bool = True) -> DenoisingResNet:
    """Return the trained network of variant ``name`` in eval mode on ``device``.

    It takes float images in [0, 1], shape (N, 3, H, W) with H, W >= 32, and returns logits (N, 10).

    Args:
        name: A registered variant (see :func:`names`).
        device: Where to put the model.
        weights: A state-dict file to load instead of :func:`weights_path` (read with ``weights_only=True``).
        frozen: Turn off parameter gradients (input gradients still flow).

    Raises:
        UnknownModelError: ``name`` is not registered.
        WeightsNotFoundError: The weights file is missing; the message gives the command that makes it.
    """
    variant = get(name)
    path = Path(weights) if weights is not None else weights_path(name)
    if not path.is_file():
        raise WeightsNotFoundError(
            f"weights for feature-denoising variant {name!r} not found at {path}. Train them with:\n"
            f"    {variant.command}")
    model = variant.build()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    model.eval()
    if frozen:
        model.requires_grad_(False)
    return model.to(device)
