"""AutoAttack's components on one model: APGD-CE, targeted APGD-DLR (APGD-T), the Square attack; and C&W-L∞ PGD.

* :func:`apgd` -- F. Croce, M. Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
  parameter-free attacks", ICML 2020: APGD-CE (Algorithm 1: momentum α = 0.75, step size η halved at the
  checkpoints w_j when the loss stalls, ρ = 0.75) on every image, then APGD-T (the targeted DLR loss, Eq. 7,
  towards each of the 9 most likely other classes in turn) on the images APGD-CE left correctly classified;
  N_iter = 100 as in AutoAttack's "standard" version.
* :func:`square` -- M. Andriushchenko, F. Croce, N. Flammarion, M. Hein, "Square Attack: a query-efficient
  black-box adversarial attack via random search", ECCV 2020: score-based, margin loss, p_init = 0.8 (the
  paper's L∞ value for CIFAR-10), 5000 queries as in AutoAttack.
* :func:`cw_linf` -- PGD (Madry et al. 2018) on the Carlini-Wagner margin loss f(x) = max_{i≠y} Z_i − Z_y
  (C&W, "Towards evaluating the robustness of neural networks", IEEE S&P 2017, objective f_6), the "CW-L∞"
  attack of Madry et al.'s CIFAR-10 challenge.

Implementation choice: APGD, APGD-T and Square come from torchattacks (already a dependency of the test
extra and of the submission library), whose ``APGD``, ``APGDT`` and ``Square`` classes port the authors'
reference code (fra31/auto-attack) line by line: same checkpoints, step-size rule, restarts and target-class
loop. The authors' own PyPI package ``pyautoattack`` 0.2.0 also installs, but it would add a second copy of the
same algorithms as a new dependency for no change in behaviour. torchattacks seeds the GLOBAL torch RNG with
``seed`` (its reference behaviour); pass ``seed`` to make a call reproducible.

Conventions as in :mod:`submission_kit.attack_methods.gradient`: images in [0, 1], (N, C, H, W); ``eps`` on the
[0, 1] scale; labels default to the model's own clean prediction (never the true labels); the model is in eval
mode for the call and its mode restored afterwards.
"""

from __future__ import annotations

import torch
from torch import nn

from submission_kit.attack_methods.common import check_budget, check_images, eval_mode, predict

__all__ = ["apgd", "cw_linf", "margin_loss", "square"]


def _labels(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    return predict(model, x) if y is None else torch.as_tensor(y, device=x.device).long()


def _num_classes(model: nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad(), eval_mode(model):
        return int(model(x[:1]).shape[1])


def apgd(model: nn.Module, x: torch.Tensor, *, eps: float, n_iter: int = 100, n_restarts: int = 1,
         targeted_stage: bool = True, seed: int = 0, y: torch.Tensor | None = None) -> torch.Tensor:
    """APGD-CE, then APGD-T on the images still classified as ``y`` (Croce & Hein 2020).

    Args:
        model: Classifier returning logits (N, K) (K ≥ 3 for the DLR loss).
        x: Clean images, float (N, C, H, W) in [0, 1]; not modified.
        eps: L∞ budget ε on the [0, 1] scale.
        n_iter: N_iter per run (100 in AutoAttack's standard version).
        n_restarts: Restarts of each stage (1 in the standard version).
        targeted_stage: Run APGD-T (n_target_classes = K − 1) after APGD-CE.
        seed: Seed of the random starts (torchattacks seeds the global RNG with it).
        y: Labels to move away from; default the model's prediction on ``x``.

    Returns:
        Adversarial images, same shape/dtype/device as ``x``, within ``eps`` of ``x`` and in [0, 1].
    """
    import torchattacks

    check_images(x)
    eps = check_budget("eps", eps)
    labels = _labels(model, x, y)
    with eval_mode(model):
        adv = torchattacks.APGD(model, norm="Linf", eps=eps, steps=int(n_iter), n_restarts=n_restarts, seed=seed,
                                loss="ce")(x, labels)
        if targeted_stage and len(x):
            with torch.no_grad():
                robust = model(adv).argmax(dim=1) == labels
            if robust.any():
                attack = torchattacks.APGDT(model, norm="Linf", eps=eps, steps=int(n_iter), n_restarts=n_restarts,
                                            seed=seed, n_classes=_num_classes(model, x))
                adv = adv.clone()
                adv[robust] = attack(x[robust], labels[robust])
        return torch.clamp(torch.minimum(torch.maximum(adv, x - eps), x + eps), 0, 1).detach()


def square(model: nn.Module, x: torch.Tensor, *, eps: float, n_queries: int = 5000, p_init: float = 0.8,
           n_restarts: int = 1, seed: int = 0, y: torch.Tensor | None = None) -> torch.Tensor:
    """The L∞ Square attack (Andriushchenko et al. 2020, Algorithm 1 with the margin loss).

    Only the model's logits are read (score-based black box); the gradient is never used.

    Args:
        model: Classifier returning logits (N, K).
        x: Clean images, float (N, C, H, W) in [0, 1]; not modified.
        eps: L∞ budget ε on the [0, 1] scale.
        n_queries: Query budget per image (5000 in AutoAttack).
        p_init: Initial fraction of pixels changed per square (0.8 for L∞ on CIFAR-10 in the paper).
        n_restarts: Restarts.
        seed: Seed of the random search (torchattacks seeds the global RNG with it).
        y: Labels to move away from; default the model's prediction on ``x``.

    Returns:
        Adversarial images, same shape/dtype/device as ``x``, within ``eps`` of ``x`` and in [0, 1].
    """
    import torchattacks

    check_images(x)
    eps = check_budget("eps", eps)
    labels = _labels(model, x, y)
    with eval_mode(model):
        attack = torchattacks.Square(model, norm="Linf", eps=eps, n_queries=int(n_queries), n_restarts=n_restarts,
                                     p_init=p_init, loss="margin", resc_schedule=True, seed=seed)
        adv = attack(x, labels)
        return torch.clamp(torch.minimum(torch.maximum(adv, x - eps), x + eps), 0, 1).detach()


def margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The C&W margin max_{i≠y} Z_i − Z_y per example (positive = misclassified), float (N,)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.clone()
    others.scatter_(1, y[:, None], float("-inf"))
    return others.max(dim=1).values - true


def cw_linf(model: nn.Module, x: torch.Tensor, *, eps: float, alpha: float | None = None, steps: int = 30,
            random_start: bool = True, generator: torch.Generator | None = None,
            y: torch.Tensor | None = None) -> torch.Tensor:
    """PGD on the C&W margin: X_{t+1} = Π(X_t + α · sign(∇ Σ_n [max_{i≠y} Z_i − Z_y])), random start in the ball.

    Args:
        model: Classifier returning logits (N, K).
        x: Clean images, float (N, C, H, W) in [0, 1]; not modified.
        eps: L∞ budget ε on the [0, 1] scale.
        alpha: Step size; default ε / 4 (so the ball's diameter is crossed in 8 steps).
        steps: Iterations (30).
        random_start: Start from a uniform random point of the ε-ball.
        generator: Source of the random start; default a CPU generator seeded with 0.
        y: Labels to move away from; default the model's prediction on ``x``.

    Returns:
        Adversarial images, same shape/dtype/device as ``x``, within ``eps`` of ``x`` and in [0, 1].
    """
    check_images(x)
    eps = check_budget("eps", eps)
    alpha = eps / 4 if alpha is None else check_budget("alpha", alpha)
    labels = _labels(model, x, y)
    with eval_mode(model):
        adv = x.detach().clone()
        if random_start:
            generator = torch.Generator().manual_seed(0) if generator is None else generator
            noise = torch.empty(x.shape, dtype=x.dtype, device=generator.device).uniform_(-eps, eps,
                                                                                          generator=generator)
            adv = torch.clamp(adv + noise.to(x.device), 0, 1)
        for _ in range(int(steps)):
            adv.requires_grad_(True)
            with torch.enable_grad():
                (grad,) = torch.autograd.grad(margin_loss(model(adv), labels).sum(), adv)
            adv = adv.detach() + alpha * grad.sign()
            adv = torch.clamp(x + torch.clamp(adv - x, -eps, eps), 0, 1).detach()
        return adv
