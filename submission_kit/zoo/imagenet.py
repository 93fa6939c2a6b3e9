"""torchvision ImageNet classifiers with user-supplied weights, wrapped to take [0, 1] images.

No weights are downloaded: :func:`load_torchvision` reads a state dict the user names, or the file torchvision
would have downloaded into the torch hub cache (``torch.hub.get_dir()/checkpoints/<standard name>``). Pass
``TORCH_HOME`` or a path to use weights fetched elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torchvision
from torch import nn

from .registry import _unknown_message

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PRETRAINED_KWARGS",
    "ImageNetClassifier",
    "UnknownArchitectureError",
    "hub_weight_files",
    "load_torchvision",
    "torchvision_architectures",
]

#: Per-channel mean of ImageNet on the [0, 1] scale (RGB), as used by every torchvision classifier.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
#: Per-channel standard deviation of ImageNet on the [0, 1] scale (RGB).
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


#: Constructor options torchvision itself sets when it builds these architectures with published weights; without
#: ``transform_input=True`` the published Inception-v3 / GoogLeNet weights see wrongly scaled input.
PRETRAINED_KWARGS: dict[str, dict[str, bool]] = {
    "inception_v3": {"transform_input": True, "init_weights": False},
    "googlenet": {"transform_input": True, "init_weights": False},
}


class UnknownArchitectureError(KeyError):
    """Raised for a name that is not a torchvision classification architecture."""

    def __str__(self) -> str:
        return str(self.args[0])


class ImageNetClassifier(nn.Module):
    """Wrap a torchvision classifier so it takes [0, 1] images and normalizes them inside ``forward``.

    Args:
        model: A torchvision classification network expecting ImageNet-normalized input.
        mean: Per-channel mean subtracted inside ``forward``.
        std: Per-channel standard deviation divided by inside ``forward``.

    Attributes:
        model: The wrapped network (its state-dict keys carry a ``model.`` prefix in this module).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Standardize images in [0, 1] of shape (N, 3, H, W) with the ImageNet mean and std."""
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits (N, 1000) for float images in [0, 1] of shape (N, 3, H, W) (typically H = W = 224).

        Labels index torchvision's 1000 ImageNet classes (0-999); the NIPS 2017 data set numbers them 1-1000.
        """
        return self.model(self.normalize(x))


def torchvision_architectures() -> list[str]:
    """Return the names of torchvision's ImageNet classification architectures (e.g. ``"resnet50"``)."""
    return sorted(torchvision.models.list_models(module=torchvision.models))


def hub_weight_files(arch: str) -> list[Path]:
    """Return the paths in the torch hub cache where torchvision keeps downloaded weights of ``arch``.

    One path per published weight set (``IMAGENET1K_V1``, ``IMAGENET1K_V2``, ...), default first; the files
    need not exist.
    """
    _check_arch(arch)
    enum = torchvision.models.get_model_weights(arch)
    members = list(enum)
    default = getattr(enum, "DEFAULT", None)
    if default in members:
        members.remove(default)
        members.insert(0, default)
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    return [folder / os.path.basename(member.url) for member in members]


def load_torchvision(
    arch: str,
    weights: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    *,
    frozen: bool = True,
    model_kwargs: dict[str, object] | None = None,
) -> ImageNetClassifier:
    """Build ``torchvision.models.<arch>(weights=None)``, load a state dict into it and wrap it.

    Args:
        arch: torchvision architecture name, e.g. ``"resnet50"`` or ``"inception_v3"``.
        weights: Path to a state dict of the bare torchvision model (``torch.save(model.state_dict(), path)``).
            ``None`` looks for torchvision's standard file names in the torch hub cache.
        device: Where to put the model.
        frozen: Turn off ``requires_grad`` of the parameters (input gradients still flow).
        model_kwargs: Constructor options for the torchvision builder; default :data:`PRETRAINED_KWARGS` for
            ``arch`` (what torchvision uses with its published weights), else none.

    Returns:
        The wrapped model in eval mode: float input in [0, 1], shape (N, 3, H, W); logits (N, 1000).

    Raises:
        UnknownArchitectureError: ``arch`` is not a torchvision classifier; the message suggests close names.
        FileNotFoundError: No weights file; the message lists where it looked.
    """
    _check_arch(arch)
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"weights file for {arch!r} not found: {path}")
    else:
        candidates = hub_weight_files(arch)
        found = [candidate for candidate in candidates if candidate.is_file()]
        if not found:
            looked = "\n    ".join(str(candidate) for candidate in candidates)
            raise FileNotFoundError(
                f"no weights for {arch!r} in the torch hub cache; looked for:\n    {looked}\n"
                f"Pass weights=<path to a state dict>, or place torchvision's file there (set TORCH_HOME to use "
                f"another cache folder)."
            )
        path = found[0]
    options = dict(PRETRAINED_KWARGS.get(arch, {}) if model_kwargs is None else model_kwargs)
    model = torchvision.models.get_model(arch, weights=None, **options)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    wrapped = ImageNetClassifier(model)
    wrapped.eval()
    if frozen:
        wrapped.requires_grad_(False)
    return wrapped.to(device)


def _check_arch(arch: str) -> None:
    choices = torchvision_architectures()
    if arch not in choices:
        raise UnknownArchitectureError(_unknown_message("torchvision architecture", arch, choices))
