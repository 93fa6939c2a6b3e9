"""Adding universal perturbations to images the way the competition would see them, and their budgets ξ.

Every perturbed image the PRN, the detector or a fooling rate sees is ``quantize(clip(x + ρ, 0, 1))``: clipped to
[0, 1] and rounded to the uint8 grid exactly as :mod:`submission_kit.contract` writes a PNG (``to_uint8``, round half to
even) and reads it back (``to_float``). The clean images are decoded uint8 images, so they are on that grid too.

Budgets (seed §3: "these values are ∼4% of the means of the respective image norms ... the same as [25]"):

* ℓ∞: ξ = 10/255 (:data:`XI_INF`), i.e. 10 on the 0-255 scale, 3.9 % of the largest possible value;
* ℓ2: ξ = 4 % of the mean ℓ2 norm of the training images (:func:`default_xi`, :data:`L2_FRACTION`), computed on
  the [0, 1] scale over all C·H·W values of an image.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from submission_kit import sdk
from submission_kit.attack_methods.common import eval_mode
from submission_kit.attack_methods.universal import apply_universal, project_lp
from submission_kit.prn.paths import check_norm

__all__ = [
    "L2_FRACTION",
    "XI_INF",
    "check_png_like",
    "default_xi",
    "fooling_rates",
    "mean_l2_norm",
    "norm_of",
    "p_of",
    "perturb",
    "perturb_each",
    "project",
    "quantize",
]

#: ℓ∞ budget on the [0, 1] scale (the seed's ξ = 10 for 0-255 images).
XI_INF = 10.0 / 255.0
#: ℓ2 budget as a fraction of the mean image ℓ2 norm (the seed: ξ2 = 2,000 ≈ 4 % of the mean ImageNet norm).
L2_FRACTION = 0.04


def p_of(norm: str) -> float:
    """``math.inf`` for ``"inf"``, 2.0 for ``"2"``."""
    return math.inf if check_norm(norm) == "inf" else 2.0


def norm_of(v: torch.Tensor, norm: str) -> torch.Tensor:
    """ℓ∞ or ℓ2 norm of each perturbation: ``v`` (K, C, H, W) → (K,), or (C, H, W) → a 0-d tensor."""
    flat = v.flatten(1) if v.dim() == 4 else v.flatten()
    if check_norm(norm) == "inf":
        return flat.abs().amax(dim=-1)
    return flat.norm(dim=-1)


def project(v: torch.Tensor, norm: str, xi: float) -> torch.Tensor:
    """Project one perturbation (C, H, W) onto the ℓp ball of radius ξ (see ``universal.project_lp``)."""
    return project_lp(v, xi, p_of(norm))


def mean_l2_norm(images: np.ndarray, batch: int = 5000) -> float:
    """Mean ℓ2 norm of uint8 images (N, H, W, 3), on the [0, 1] scale (each image is one vector of H·W·3 values)."""
    total = 0.0
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch].reshape(min(batch, len(images) - start), -1).astype(np.float64) / 255
        total += float(np.sqrt((chunk ** 2).sum(axis=1)).sum())
    return total / len(images)


def default_xi(norm: str, images: np.ndarray | None = None) -> float:
    """The seed's budget ξ on the [0, 1] scale.

    Args:
        norm: ``"inf"`` → :data:`XI_INF`; ``"2"`` → :data:`L2_FRACTION` × :func:`mean_l2_norm` of ``images``.
        images: uint8 (N, H, W, 3) training images; required for ``"2"``.
    """
    if check_norm(norm) == "inf":
        return XI_INF
    if images is None:
        raise ValueError("the l2 budget is 4% of the mean image norm: pass the training images")
    return L2_FRACTION * mean_l2_norm(images)


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Round images in [0, 1] to the uint8 grid (values k/255) as a PNG round trip through
    :mod:`submission_kit.contract`.

    Args:
        x: float (N, 3, H, W); values outside [0, 1] are clipped.

    Returns:
        float32 (N, 3, H, W) on ``x``'s device, every value a multiple of 1/255 in [0, 1].
    """
    return sdk.to_tensor(sdk.from_tensor(x), x.device)


def check_png_like(x: torch.Tensor, what: str = "images") -> None:
    """Raise ``ValueError`` unless ``x`` lies in [0, 1] and on the uint8 grid (what a PNG decodes to)."""
    if x.numel() == 0:
        return
    low, high = float(x.min()), float(x.max())
    if low < 0 or high > 1:
        raise ValueError(f"{what} leave [0, 1] (min {low}, max {high})")
    off_grid = float((x * 255 - torch.round(x * 255)).abs().max())
    if off_grid > 1e-3:
        raise ValueError(f"{what} are not on the uint8 grid (largest distance {off_grid:.4f} / 255)")


def perturb(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """One perturbation for a batch: ``quantize(clip(x + v, 0, 1))`` (``universal.apply_universal`` then PNG rounding).

    Args:
        x: Clean images, float (N, 3, H, W) in [0, 1].
        v: Perturbation (3, H, W) on the [0, 1] scale.
    """
    return quantize(apply_universal(x, v))


def perturb_each(x: torch.Tensor, perturbations: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """A different perturbation (or none) per image: image i gets ``perturbations[index[i]]``, none if index < 0.

    Equals :func:`perturb` of each image with its own perturbation (and the image itself where index < 0).

    Args:
        x: Clean images, float (N, 3, H, W) in [0, 1], on the uint8 grid.
        perturbations: (K, 3, H, W) on the [0, 1] scale, same size as the images.
        index: int64 (N,) with values in [-1, K).

    Returns:
        float32 (N, 3, H, W) in [0, 1] on the uint8 grid.
    """
    if index.shape != x.shape[:1]:
        raise ValueError(f"index must have shape ({x.shape[0]},), got {tuple(index.shape)}")
    if len(perturbations) == 0:
        if bool((index >= 0).any()):
            raise ValueError("no perturbations to pick from")
        return quantize(x)
    index = index.to(x.device)
    chosen = perturbations.to(device=x.device, dtype=x.dtype)[index.clamp(min=0)]
    chosen = chosen * (index >= 0).to(x.dtype).view(-1, 1, 1, 1)
    return quantize(torch.clamp(x + chosen, 0.0, 1.0))


@torch.no_grad()
def fooling_rates(model: nn.Module, images: torch.Tensor, perturbations: torch.Tensor, *,
                  batch_size: int = 500, clean_labels: torch.Tensor | None = None) -> list[float]:
    """Fooling rate of each perturbation: the fraction of images whose label changes (Moosavi-Dezfooli et al.
    2017, eq. 1), the perturbed images being PNG-rounded (:func:`perturb`).

    Args:
        model: Classifier returning logits (N, K) for images in [0, 1].
        images: float (N, 3, H, W) in [0, 1].
        perturbations: (P, 3, H, W) on the [0, 1] scale.
        batch_size: Images per forward pass.
        clean_labels: The model's labels of ``images`` if known.

    Returns:
        P fooling rates in [0, 1].
    """
    with eval_mode(model):
        if clean_labels is None:
            clean_labels = torch.cat([model(images[s:s + batch_size]).argmax(1)
                                      for s in range(0, len(images), batch_size)])
        rates = []
        for v in perturbations:
            changed = 0
            for start in range(0, len(images), batch_size):
                x = perturb(images[start:start + batch_size], v)
                changed += int((model(x).argmax(1) != clean_labels[start:start + batch_size]).sum())
            rates.append(changed / max(len(images), 1))
    return rates
