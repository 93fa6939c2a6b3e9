"""The defensive perturbation v_def of Lee, Park & Lee 2018 (Eq. 1): compute it, store it, load it.

    v_def = ε · Σ_i I(L_{y_i}(v_i + εδ_i) < L_{y_i}(v_i)) δ_i / Σ_i I(L_{y_i}(v_i + εδ_i) < L_{y_i}(v_i)),
    δ_i ~ N(0, I)

i.e. ε times the mean of the standard-normal draws δ_i that lowered the cross-entropy loss L of image v_i with
its true label y_i when added at scale ε. The paper writes ``L(v_i + δ_i)`` and leaves the scale of δ_i and the
value of ε open; here a draw is tested at the same scale ε at which v_def is applied, so v_def is the mean of
the kept *scaled* draws εδ_i. Perturbed images are clipped to [0, 1] before the model sees them. When no draw
lowers the loss, v_def is the zero vector and :attr:`VDefResult.empty` is set (adding it changes nothing).

The paper also says (§2) that "in the experiment" only draws of the first case were used -- draws that turn a
wrong prediction into the right one; ``criterion="corrected"`` selects those instead of every loss-reducing draw.

v_def is computed once, on training images (never on the images a defense is evaluated on), with the model the
defense protects, by ``python -m research.lee2018.make_vdef`` (:data:`COMMAND`), and stored as float32 (3, H, W)
on the [0, 1] scale in ``v_def.npy`` inside each defense folder that adds it, with a JSON record next to it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from submission_kit.attack_methods.common import eval_mode

__all__ = ["COMMAND", "CRITERIA", "VDefError", "VDefNotFoundError", "VDefResult", "compute_vdef", "load", "save"]

#: The command that writes v_def into both defense folders that use it.
COMMAND = ("python -m research.lee2018.make_vdef --out defenses/tv_denoise_vdef/v_def.npy "
           "--out defenses/nl_means_vdef/v_def.npy")

#: Which draws count: ``"loss"`` = every draw that lowers the loss (Eq. 1); ``"corrected"`` = draws that turn a
#: wrong prediction into the true label (the paper's "first case").
Criterion = Literal["loss", "corrected"]
CRITERIA: tuple[str, ...] = ("loss", "corrected")


class VDefError(ValueError):
    """A v_def file that is not a finite float array of shape (3, H, W)."""


class VDefNotFoundError(FileNotFoundError):
    """The v_def file of a defense folder does not exist; the message gives the command that makes it."""


@dataclass(frozen=True)
class VDefResult:
    """v_def and the counts behind it.

    Attributes:
        v: float32 (C, H, W) on the CPU, [0, 1] scale (zero when no draw was kept).
        epsilon: Scale ε of the draws and of v_def, [0, 1] scale.
        criterion: Which draws were kept (see :data:`CRITERIA`).
        images: Number of images.
        tried: Draws tried (images × draws per image).
        kept: Draws kept under ``criterion``.
        kept_loss: Draws that lowered the loss.
        kept_corrected: Draws that turned a wrong prediction into the true label.
        clean_correct: Images the model classifies correctly without a draw.
    """

    v: torch.Tensor
    epsilon: float
    criterion: str
    images: int
    tried: int
    kept: int
    kept_loss: int
    kept_corrected: int
    clean_correct: int

    @property
    def empty(self) -> bool:
        """No draw was kept, so v_def is the zero vector."""
        return self.kept == 0

    def stats(self) -> dict[str, Any]:
        """JSON-ready counts and norms (norms in 0-255 units)."""
        return {
            "criterion": self.criterion,
            "epsilon": self.epsilon,
            "epsilon_255": round(self.epsilon * 255, 6),
            "images": self.images,
            "draws_tried": self.tried,
            "draws_kept": self.kept,
            "kept_fraction": round(self.kept / self.tried, 6) if self.tried else 0.0,
            "draws_lowering_loss": self.kept_loss,
            "draws_correcting_prediction": self.kept_corrected,
            "clean_correct": self.clean_correct,
            "empty": self.empty,
            "linf_255": round(float(self.v.abs().max()) * 255, 6),
            "l2_255": round(float(self.v.norm()) * 255, 6),
            "l2_255_if_kept_at_random": round(self.null_l2 * 255, 6),
        }

    @property
    def null_l2(self) -> float:
        """Expected ‖v‖₂ if the kept draws had been picked at random: ε · √(C·H·W / kept) (0 when empty).

        The mean of k independent N(0, I) vectors has norm ≈ √(d/k); a v_def whose norm is close to this carries
        no direction shared across images beyond the averaging noise.
        """
        return self.epsilon * (self.v.numel() / self.kept) ** 0.5 if self.kept else 0.0


@torch.no_grad()
def compute_vdef(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, epsilon: float,
                 generator: torch.Generator, draws_per_image: int = 1, batch_size: int = 250,
                 criterion: Criterion = "loss") -> VDefResult:
    """Eq. 1 of Lee, Park & Lee 2018: ε · mean of the Gaussian draws that lowered the loss.

    Draw order (part of the contract, so that a seed names one v_def): for each of the ``draws_per_image``
    rounds, for each batch of ``batch_size`` consecutive images, δ = ``torch.randn((b, C, H, W),
    generator=generator)`` (float32, on the CPU, then moved to the model's device). The result therefore
    depends on ``batch_size`` as well as on the seed.

    Args:
        model: Classifier returning logits (N, K) for float images in [0, 1]; run in eval mode.
        images: float (N, C, H, W) in [0, 1] (training images, never the evaluation images), any device.
        labels: int64 (N,) true labels.
        epsilon: Scale ε of the draws and of v_def, [0, 1] scale (> 0).
        generator: CPU torch generator of the draws (seed it).
        draws_per_image: Draws per image (Eq. 1 uses one: i indexes images).
        batch_size: Images per forward pass.
        criterion: ``"loss"`` (Eq. 1) or ``"corrected"`` (wrong clean prediction turned right).

    Returns:
        The :class:`VDefResult`; ``v`` is zero and ``empty`` is true when no draw is kept.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    if not epsilon > 0 or draws_per_image < 1 or batch_size < 1:
        raise ValueError("epsilon must be > 0, draws_per_image and batch_size >= 1")
    if images.dim() != 4 or labels.shape != images.shape[:1]:
        raise ValueError(f"expected images (N, C, H, W) and labels (N,), got {tuple(images.shape)} and "
                         f"{tuple(labels.shape)}")
    device = next(iter(model.parameters()), torch.empty(0, device=images.device)).device
    total = torch.zeros(images.shape[1:], dtype=torch.float64)
    kept = kept_loss = kept_corrected = clean_correct = 0
    with eval_mode(model):
        clean: list[tuple[torch.Tensor, torch.Tensor]] = []
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size].to(device)
            y = labels[start:start + batch_size].to(device)
            logits = model(x)
            clean.append((F.cross_entropy(logits, y, reduction="none"), logits.argmax(1) == y))
            clean_correct += int(clean[-1][1].sum())
        for _ in range(draws_per_image):
            for index, start in enumerate(range(0, len(images), batch_size)):
                x = images[start:start + batch_size].to(device)
                y = labels[start:start + batch_size].to(device)
                delta = torch.randn(x.shape, generator=generator, dtype=torch.float32)
                logits = model(torch.clamp(x + epsilon * delta.to(device), 0.0, 1.0))
                clean_loss, clean_right = clean[index]
                lowers = F.cross_entropy(logits, y, reduction="none") < clean_loss
                corrects = ~clean_right & (logits.argmax(1) == y)
                chosen = (lowers if criterion == "loss" else corrects).cpu()
                total += delta[chosen].double().sum(dim=0)
                kept += int(chosen.sum())
                kept_loss += int(lowers.sum())
                kept_corrected += int(corrects.sum())
    v = (epsilon * total / kept).float() if kept else torch.zeros(images.shape[1:], dtype=torch.float32)
    return VDefResult(v=v, epsilon=float(epsilon), criterion=criterion, images=len(images),
                      tried=len(images) * draws_per_image, kept=kept, kept_loss=kept_loss,
                      kept_corrected=kept_corrected, clean_correct=clean_correct)


def save(path: str | os.PathLike[str], v: torch.Tensor, record: dict[str, Any]) -> None:
    """Write ``path`` (float32 (C, H, W)) and ``path`` with suffix ``.json`` (``record``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, v.detach().cpu().numpy().astype(np.float32))
    path.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")


def load(path: str | os.PathLike[str]) -> torch.Tensor:
    """Read a stored v_def: float32 tensor (3, H, W) on the CPU, [0, 1] scale.

    Raises:
        VDefNotFoundError: ``path`` does not exist; the message names :data:`COMMAND`.
        VDefError: The file is not a finite float array of shape (3, H, W).
    """
    path = Path(path)
    if not path.is_file():
        raise VDefNotFoundError(
            f"v_def not found at {path}. It is computed once from training images with the target model; "
            f"make it with:\n    {COMMAND}")
    array = np.load(path, allow_pickle=False)
    if array.ndim != 3 or array.shape[0] != 3 or not np.issubdtype(array.dtype, np.floating) \
            or not np.all(np.isfinite(array)):
        raise VDefError(f"{path}: expected a finite float array of shape (3, H, W), got {array.dtype} "
                        f"{array.shape}")
    return torch.from_numpy(array.astype(np.float32))
