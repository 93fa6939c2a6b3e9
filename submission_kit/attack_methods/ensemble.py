"""A logit ensemble: several classifiers attacked as one (Dong et al. 2018, "ensemble in logits")."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["LogitEnsemble"]


class LogitEnsemble(nn.Module):
    """Weighted sum of the logits of several models, l(x) = Σ_k w_k l_k(x).

    Dong et al., "Boosting Adversarial Attacks with Momentum", CVPR 2018, Sec. 3.2: fusing the logits of an
    ensemble and attacking the fused model transfers better than averaging predictions or losses.

    Args:
        models: Classifiers taking the same input and returning logits with the same number of classes.
        weights: One non-negative weight per model, summing to 1; equal weights when ``None``.
    """

    def __init__(self, models: Sequence[nn.Module], weights: Sequence[float] | None = None) -> None:
        super().__init__()
        if not models:
            raise ValueError("an ensemble needs at least one model")
        if weights is None:
            weights = [1.0 / len(models)] * len(models)
        if len(weights) != len(models):
            raise ValueError(f"got {len(weights)} weights for {len(models)} models")
        self.members = nn.ModuleList(models)
        self.weights = tuple(float(w) for w in weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the fused logits (N, K) of images ``x`` (N, C, H, W) in [0, 1]."""
        logits = self.weights[0] * self.members[0](x)
        for weight, model in zip(self.weights[1:], self.members[1:]):
            logits = logits + weight * model(x)
        return logits
