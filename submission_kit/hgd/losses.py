"""The four denoiser training losses of Liao et al. 2018 (Sec. 3.1-3.2, Figure 4).

With clean image x, adversarial image x*, denoised image x̂ = D(x*) and the frozen target model f:

* **PGD** (pixel guided, Eq. 3): L = ‖x − x̂‖₁ — the denoiser alone.
* **FGD** (feature guided, Eq. 5 with l = −2): L = ‖f₋₂(x̂) − f₋₂(x)‖₁ on the topmost convolutional feature
  map, before global pooling (``forward_features(x)["last_conv"]`` of a zoo model).
* **LGD** (logits guided, Eq. 5 with l = −1): L = ‖f₋₁(x̂) − f₋₁(x)‖₁ on the logits.
* **CGD** (class label guided): L = J(x̂, y_true), the target model's cross-entropy with the true label.

"‖·‖₁" is taken as the mean absolute difference over all elements of the batch (the sum divided by the number of
elements), so the value does not depend on batch or image size; the optimum is the same. The clean-side
representation f_l(x) is a constant (computed without gradients, see :func:`clean_target`); gradients flow into
the denoiser through x̂ only. The target model's parameters must be frozen (``zoo.load(..., frozen=True)``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "GUIDES",
    "class_loss",
    "clean_target",
    "feature_loss",
    "guide_representation",
    "guided_loss",
    "logits_loss",
    "pixel_loss",
]

#: Guide names in the paper's order of Table 3: pixel, feature, logits, class label.
GUIDES: tuple[str, ...] = ("pgd", "fgd", "lgd", "cgd")


def pixel_loss(denoised: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """PGD loss (Eq. 3): mean |x − x̂| over all elements.

    Args:
        denoised: x̂, float (N, 3, H, W) (nominally [0, 1]).
        clean: x, float (N, 3, H, W) in [0, 1].

    Returns:
        Scalar tensor ≥ 0, on the [0, 1] pixel scale.
    """
    return F.l1_loss(denoised, clean)


def feature_loss(denoised_features: torch.Tensor, clean_features: torch.Tensor) -> torch.Tensor:
    """FGD loss (Eq. 5, l = −2): mean |f₋₂(x̂) − f₋₂(x)| over all elements of the last conv feature maps.

    Args:
        denoised_features: f₋₂(x̂), float (N, C, h, w), with gradient.
        clean_features: f₋₂(x), float (N, C, h, w), a constant.

    Returns:
        Scalar tensor ≥ 0.
    """
    return F.l1_loss(denoised_features, clean_features.detach())


def logits_loss(denoised_logits: torch.Tensor, clean_logits: torch.Tensor) -> torch.Tensor:
    """LGD loss (Eq. 5, l = −1): mean |f₋₁(x̂) − f₋₁(x)| over all logits.

    Args:
        denoised_logits: f₋₁(x̂), float (N, K), with gradient.
        clean_logits: f₋₁(x), float (N, K), a constant.

    Returns:
        Scalar tensor ≥ 0.
    """
    return F.l1_loss(denoised_logits, clean_logits.detach())


def class_loss(denoised_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """CGD loss: mean cross-entropy J(x̂, y_true) of the target model on the denoised images.

    Args:
        denoised_logits: f₋₁(x̂), float (N, K), with gradient.
        labels: True classes y_true, int64 (N,) in 0..K−1.

    Returns:
        Scalar tensor ≥ 0 (nats).
    """
    return F.cross_entropy(denoised_logits, labels)


def guide_representation(model: nn.Module, images: torch.Tensor, guide: str) -> torch.Tensor:
    """The target model's representation that ``guide`` compares: last conv map (FGD) or logits (LGD, CGD).

    Args:
        model: Zoo model (``forward_features`` returns ``"last_conv"``); eval mode.
        images: Float (N, 3, H, W) in [0, 1].
        guide: One of :data:`GUIDES` other than ``"pgd"``.

    Returns:
        (N, C, h, w) for ``"fgd"``, (N, K) logits for ``"lgd"`` and ``"cgd"``.
    """
    if guide == "fgd":
        return model.forward_features(images)["last_conv"]
    if guide in ("lgd", "cgd"):
        return model(images)
    raise ValueError(f"guide {guide!r} has no model representation; choose fgd, lgd or cgd")


@torch.no_grad()
def clean_target(model: nn.Module | None, clean: torch.Tensor, labels: torch.Tensor, guide: str) -> torch.Tensor:
    """What the denoised batch is compared with: x (PGD), f₋₂(x) (FGD), f₋₁(x) (LGD) or y_true (CGD).

    Computed without gradients (the paper's clean branch is a fixed target; Fig. 4 shares the frozen CNN).

    Args:
        model: Target model in eval mode (unused for ``"pgd"`` and ``"cgd"``).
        clean: x, float (N, 3, H, W) in [0, 1].
        labels: y_true, int64 (N,).
        guide: One of :data:`GUIDES`.

    Returns:
        The detached target tensor.
    """
    if guide == "pgd":
        return clean.detach()
    if guide == "cgd":
        return labels
    if model is None:
        raise ValueError(f"guide {guide!r} needs the target model")
    return guide_representation(model, clean, guide).detach()


def guided_loss(guide: str, denoised: torch.Tensor, target: torch.Tensor, model: nn.Module | None) -> torch.Tensor:
    """The loss of ``guide`` for a denoised batch against its :func:`clean_target`.

    Args:
        guide: One of :data:`GUIDES`.
        denoised: x̂ = D(x*), float (N, 3, H, W), with gradient.
        target: :func:`clean_target` of the matching clean batch.
        model: Frozen target model in eval mode (unused for ``"pgd"``).

    Returns:
        Scalar loss tensor.
    """
    if guide == "pgd":
        return pixel_loss(denoised, target)
    if model is None:
        raise ValueError(f"guide {guide!r} needs the target model")
    if guide == "fgd":
        return feature_loss(guide_representation(model, denoised, "fgd"), target)
    if guide == "lgd":
        return logits_loss(model(denoised), target)
    if guide == "cgd":
        return class_loss(model(denoised), target)
    raise ValueError(f"unknown guide {guide!r}; choose one of {', '.join(GUIDES)}")
