"""Names of the trained HGD denoisers, where their weights live and how to load them.

A denoiser's name is ``<arch>_<guide>`` when the zoo's target model guided its training, and
``<arch>_<guide>_<model>`` when another zoo model did (Table 4): ``dunet_lgd``, ``dae_pgd``,
``dunet_lgd_vgg6_w32``. Its weights are ``submission_kit/hgd/weights/<name>.pt`` — a dict holding the architecture,
width, guide, guide model and the state dict, read with ``torch.load(..., weights_only=True)`` — next to a JSON
record of the training run and its log. ``weights_dir=`` (or the library's one override,
``$SUBMISSION_KIT_WEIGHTS/hgd``: :data:`WEIGHTS_ENV`, :mod:`submission_kit.artefacts`) reads another folder instead,
e.g. for tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from submission_kit import zoo
from submission_kit.artefacts import WEIGHTS_ENV
from submission_kit.artefacts import unknown_message as _unknown_message
from submission_kit.artefacts import weights_dir as _weights_dir
from submission_kit.hgd.losses import GUIDES
from submission_kit.hgd.networks import ARCHS, Denoiser, build_denoiser

__all__ = [
    "DEFAULT_WIDTH",
    "TRAINED",
    "WEIGHTS_DIR",
    "WEIGHTS_ENV",
    "DenoiserSpec",
    "DenoiserWeightsNotFoundError",
    "UnknownDenoiserError",
    "load_denoiser",
    "names",
    "parse_name",
    "save_denoiser",
    "weights_path",
]

#: Folder of the committed weights (``<name>.pt``), records (``.json``) and training logs (``.log``).
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: Base width of the committed denoisers (encoder 16-32-64-64-64; the paper's Fig. 3 is width 64).
DEFAULT_WIDTH = 16
#: Checkpoint layout version.
_FORMAT = 1


@dataclass(frozen=True)
class DenoiserSpec:
    """What a denoiser name means.

    Attributes:
        arch: ``"dunet"`` or ``"dae"``.
        guide: ``"pgd"``, ``"fgd"``, ``"lgd"`` or ``"cgd"``.
        model: The zoo model whose representations guided training (and that the denoiser protects by default).
    """

    arch: str
    guide: str
    model: str = zoo.TARGET_MODEL

    @property
    def name(self) -> str:
        """``<arch>_<guide>``, plus ``_<model>`` when the guide model is not the zoo's target."""
        base = f"{self.arch}_{self.guide}"
        return base if self.model == zoo.TARGET_MODEL else f"{base}_{self.model}"

    @property
    def epochs(self) -> int:
        """Recommended epochs (the committed run's, when it is one of :data:`TRAINED`)."""
        return TRAINED.get(self.name, DEFAULT_EPOCHS)

    @property
    def command(self) -> str:
        """The shell command that trains this denoiser's weights."""
        model = "" if self.model == zoo.TARGET_MODEL else f" --model {self.model}"
        return f"python -m research.hgd.train --arch {self.arch} --guide {self.guide}{model} --epochs {self.epochs}"


#: Epochs of a training run unless told otherwise (the committed runs' recipe).
DEFAULT_EPOCHS = 5
#: The denoisers the tables and defense folders use, with the epochs of their committed runs (16,000 training
#: versions per epoch; minutes and threads in each ``weights/<name>.json``).
TRAINED: dict[str, int] = {
    "dunet_pgd": 5,
    "dunet_fgd": 5,
    "dunet_lgd": 5,
    "dunet_cgd": 5,
    "dae_pgd": 5,
    "dunet_lgd_vgg6_w32": 5,
}


class UnknownDenoiserError(KeyError):
    """A name that is not ``<arch>_<guide>[_<zoo model>]``; the message suggests close names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DenoiserWeightsNotFoundError(FileNotFoundError):
    """A valid denoiser name without a weights file; the message names the training command."""


def names() -> list[str]:
    """The denoisers the tables and defense folders use (:data:`TRAINED`), in table order."""
    return list(TRAINED)


def _all_names() -> list[str]:
    return [DenoiserSpec(a, g, m).name for a in ARCHS for g in GUIDES for m in zoo.names()]


def parse_name(name: str) -> DenoiserSpec:
    """Split a denoiser name into architecture, guide and guide model.

    Raises:
        UnknownDenoiserError: ``name`` does not follow ``<arch>_<guide>[_<zoo model>]``.
    """
    parts = name.split("_", 2)
    if len(parts) >= 2 and parts[0] in ARCHS and parts[1] in GUIDES:
        model = parts[2] if len(parts) == 3 else zoo.TARGET_MODEL
        if model in zoo.names():
            return DenoiserSpec(parts[0], parts[1], model)
    raise UnknownDenoiserError(_unknown_message("denoiser", name, names() + [n for n in _all_names()
                                                                          if n not in TRAINED]))


def weights_path(name: str, weights_dir: str | os.PathLike[str] | None = None) -> Path:
    """``<weights_dir>/<name>.pt``; the folder defaults to ``$SUBMISSION_KIT_WEIGHTS/hgd``, else :data:`WEIGHTS_DIR`."""
    spec = parse_name(name)
    folder = weights_dir if weights_dir is not None else _weights_dir("hgd", WEIGHTS_DIR)
    return Path(folder) / f"{spec.name}.pt"


def save_denoiser(path: str | os.PathLike[str], denoiser: Denoiser, spec: DenoiserSpec, width: int) -> None:
    """Write a checkpoint :func:`load_denoiser` reads: architecture, width, guide, guide model, state dict (CPU)."""
    state = {key: value.detach().cpu().clone() for key, value in denoiser.state_dict().items()}
    checkpoint = {"format": _FORMAT, "arch": spec.arch, "width": int(width), "guide": spec.guide,
                  "model": spec.model, "state_dict": state}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)


def load_denoiser(name: str, device: str | torch.device = "cpu", *,
                  weights_dir: str | os.PathLike[str] | None = None) -> Denoiser:
    """Return trained denoiser ``name`` in eval mode, parameters frozen, on ``device``.

    It maps float images (N, 3, H, W) in [0, 1] to denoised images of the same shape (not clamped).

    Args:
        name: ``<arch>_<guide>[_<zoo model>]``, e.g. ``"dunet_lgd"``.
        device: Where to put it.
        weights_dir: Folder holding ``<name>.pt`` (default ``$SUBMISSION_KIT_WEIGHTS/hgd`` or :data:`WEIGHTS_DIR`).

    Raises:
        UnknownDenoiserError: Malformed name (with "did you mean").
        DenoiserWeightsNotFoundError: No weights file; the message gives the command that trains it.
        ValueError: The file was written for another architecture than its name says.
    """
    spec = parse_name(name)
    path = weights_path(name, weights_dir)
    if not path.is_file():
        raise DenoiserWeightsNotFoundError(
            f"weights for HGD denoiser {spec.name!r} not found at {path}. Make the data once and train it with:\n"
            f"    python -m research.hgd.make_data\n    {spec.command}"
        )
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if checkpoint.get("arch") != spec.arch:
        raise ValueError(f"{path} holds a {checkpoint.get('arch')!r} denoiser, but its name says {spec.arch!r}")
    denoiser = build_denoiser(spec.arch, int(checkpoint["width"]))
    denoiser.load_state_dict(checkpoint["state_dict"])
    denoiser.eval().requires_grad_(False)
    return denoiser.to(device)
