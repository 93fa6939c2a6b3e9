"""White-box evaluation helpers: the shared test subset and accuracy under PGD.

The subset convention is the one of ``benchmarks/lee2018_table1.py`` (``numpy.random.default_rng(seed).choice``
without replacement, sorted), so "the first n shared test images" mean the same images across reports.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from research import cifar10
from research.zoo.data import to_input
from submission_kit.attack_methods import gradient
from submission_kit.attack_methods.common import eval_mode

__all__ = ["paper_step_size", "pgd_accuracy", "test_subset"]


def test_subset(n: int, *, seed: int = 0, root: str | os.PathLike[str] | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` shared CIFAR-10 test images (all 5,000 when n >= 5,000).

    Returns:
        ``(images, labels, index)``: uint8 (n, 32, 32, 3), int64 (n,) in 0..9, and their int64 positions in
        :func:`research.cifar10.load_split` ``("test")``, ascending.
    """
    images, labels = cifar10.load_split("test", root)
    if n >= len(images):
        index = np.arange(len(images))
    else:
        index = np.sort(np.random.default_rng(seed).choice(len(images), size=n, replace=False))
    return images[index], labels[index], index.astype(np.int64)


def paper_step_size(eps: float, iterations: int) -> float:
    """The seed's white-box PGD step (Sec. 6.1), scaled from ε = 16 to any ε: ε/10 for 10 iterations, else ε/16.

    Xie et al. use α = 1 (in 0-255 units) at ε = 16, "except for 10-iteration attacks where α is set to
    ε/10 = 1.6"; α = ε/16 keeps the same ratio of step to budget.
    """
    return eps / 10.0 if iterations <= 10 else eps / 16.0


def pgd_accuracy(model: nn.Module, images: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor, *,
                 eps: float, steps: int, alpha: float, seed: int = 0, batch_size: int = 250,
                 device: str | torch.device = "cpu") -> float:
    """Fraction in [0, 1] of ``images`` still classified correctly after untargeted PGD on the true labels.

    PGD with a random start (:func:`submission_kit.attack_methods.gradient.pgd`; the model runs in eval mode). The
    random
    starts come from one generator seeded with ``seed`` and used batch after batch, so the result does not depend
    on ``batch_size`` and two models are attacked from the same starting points.

    Args:
        model: Classifier taking [0, 1] NCHW images; it runs in eval mode (restored afterwards).
        images: uint8 (N, 32, 32, 3).
        labels: int (N,).
        eps: L∞ budget on the [0, 1] scale.
        steps: PGD iterations.
        alpha: Step size on the [0, 1] scale.
        seed: Seed of the random starts.
        batch_size: Images per attack call.
        device: The model's device.
    """
    images = torch.as_tensor(images)
    labels = torch.as_tensor(labels)
    generator = torch.Generator().manual_seed(seed)
    correct = 0
    with eval_mode(model):
        for start in range(0, len(images), batch_size):
            x = to_input(images[start:start + batch_size], device)
            y = labels[start:start + batch_size].to(device)
            adversarial = gradient.pgd(model, x, eps=eps, alpha=alpha, steps=steps, random_start=True,
                                       generator=generator, y=y)
            with torch.no_grad():
                correct += int((model(adversarial).argmax(1) == y).sum())
    return correct / max(len(images), 1)
