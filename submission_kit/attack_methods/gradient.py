"""L∞ gradient-sign attacks as pure PyTorch functions.

* :func:`fgsm` -- Goodfellow, Shlens, Szegedy, "Explaining and Harnessing Adversarial Examples", ICLR 2015.
* :func:`i_fgsm` (BIM), :func:`step_ll`, :func:`iter_ll` -- Kurakin, Goodfellow, Bengio, "Adversarial examples in
  the physical world", ICLR workshop 2017 (and "Adversarial Machine Learning at Scale", ICLR 2017).
* :func:`step_target`, :func:`iter_target` -- the same two methods toward a given target class (the NIPS 2017
  competition's targeted baselines, Kurakin et al. 2018).
* :func:`mi_fgsm` -- Dong et al., "Boosting Adversarial Attacks with Momentum", CVPR 2018.
* :func:`pgd` -- Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018.

Every function takes ``model`` (logits (N, K) from float images in [0, 1]) and ``x`` (float (N, C, H, W) in
[0, 1]) and returns a new detached tensor of ``x``'s shape, dtype and device with ``|adv - x|∞ <= eps`` and
``adv`` in [0, 1]; ``x`` is never modified. ``eps`` and ``alpha`` are on the [0, 1] scale (``ε / 255`` for a
budget in 0-255 units). Untargeted attacks ascend the cross-entropy of the model's own clean prediction
(``y`` overrides it, e.g. for adversarial training with true labels); targeted ones descend the loss of the
target. The loss is summed over the batch, so each example's gradient is its own per-example gradient and a
batch result equals the per-example results. The model runs in eval mode (restored afterwards).

Update rules follow the papers and reproduce torchattacks 3.5 operation for operation (FGSM, BIM, MIFGSM, PGD,
and BIM/FGSM in targeted least-likely mode), so the test suite can check them pixel for pixel.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from submission_kit import contract
from submission_kit.attack_methods.common import check_budget, check_images, eval_mode, least_likely, predict

__all__ = [
    "fgsm",
    "i_fgsm",
    "iter_ll",
    "iter_target",
    "kurakin_steps",
    "mi_fgsm",
    "pgd",
    "step_ll",
    "step_target",
]


def kurakin_steps(eps: float) -> int:
    """Number of iterations of BIM / iter-LL: N = floor(min(ε + 4, 1.25 ε)) with ε in 0-255 units.

    Kurakin et al. 2017, Sec. 2.2 (with step α = 1 in 0-255 units, so every pixel can reach the ε-ball's
    border). Examples: ε = 4 → 5, 8 → 10, 16 → 20, 32 → 36.

    Args:
        eps: Budget on the [0, 1] scale.

    Returns:
        The number of steps (0 for ε = 0).
    """
    e = round(contract.unit_to_pixels(check_budget("eps", eps)), 6)  # 8/255*255 is not exactly 8.0 in floating point
    return int(math.floor(min(e + 4.0, 1.25 * e)))


def _labels(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """``y`` as int64 on ``x``'s device, or the model's own prediction on ``x`` when ``y`` is None."""
    if y is None:
        return predict(model, x)
    y = torch.as_tensor(y, device=x.device).long()
    if y.shape != (x.shape[0],):
        raise ValueError(f"labels must have shape ({x.shape[0]},), got {tuple(y.shape)}")
    return y


def _gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, targeted: bool) -> torch.Tensor:
    """Gradient with respect to ``x`` of the objective to ascend: J(x, y), or −J(x, y) toward a target.

    J is the cross-entropy summed over the batch (per-example gradients, independent of the batch).
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(x), y, reduction="sum")
        if targeted:
            loss = -loss
        (grad,) = torch.autograd.grad(loss, x)
    return grad


def _clip_kurakin(adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Clip_{X,ε}: min(1, X + ε, max(0, X − ε, X')) elementwise (Kurakin et al. 2017, eq. 2)."""
    lower = torch.clamp(x - eps, min=0)
    upper = x + eps
    return torch.clamp(torch.minimum(torch.maximum(adv, lower), upper), max=1)


def _project_delta(adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Project onto the ε-ball around ``x`` (δ = clip(X' − X, −ε, ε)), then onto [0, 1] (Madry et al.)."""
    delta = torch.clamp(adv - x, min=-eps, max=eps)
    return torch.clamp(x + delta, min=0, max=1)


def _single_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, *, targeted: bool) -> torch.Tensor:
    """X' = clip_[0,1](X + ε · sign(∇ objective))."""
    with eval_mode(model):
        grad = _gradient(model, x, y, targeted=targeted)
        return torch.clamp(x + eps * grad.sign(), min=0, max=1).detach()


def _basic_iterative(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int, *, targeted: bool
) -> torch.Tensor:
    """X'_{n+1} = Clip_{X,ε}(X'_n + α · sign(∇ objective(X'_n))), X'_0 = X (Kurakin et al. 2017)."""
    with eval_mode(model):
        adv = x.detach().clone()
        for _ in range(steps):
            grad = _gradient(model, adv, y, targeted=targeted)
            adv = _clip_kurakin(adv + alpha * grad.sign(), x, eps).detach()
        return adv


def fgsm(model: nn.Module, x: torch.Tensor, *, eps: float, y: torch.Tensor | None = None) -> torch.Tensor:
    """Fast gradient sign method: X' = clip_[0,1](X + ε · sign(∇_X J(X, y))) (Goodfellow et al. 2015).

    Args:
        model: Classifier returning logits (N, K) for images in [0, 1].
        x: Clean images, float (N, C, H, W) in [0, 1]; not modified.
        eps: L∞ budget ε on the [0, 1] scale.
        y: Labels (N,) to move away from; default: the model's prediction on ``x``.

    Returns:
        Adversarial images, same shape/dtype/device as ``x``, within ``eps`` of ``x`` and in [0, 1].
    """
    check_images(x)
    eps = check_budget("eps", eps)
    return _single_step(model, x, _labels(model, x, y), eps, targeted=False)


def i_fgsm(
    model: nn.Module,
    x: torch.Tensor,
    *,
    eps: float,
    alpha: float = 1 / 255,
    steps: int | None = None,
    y: torch.Tensor | None = None,
) -> torch.Tensor:
    """Iterative FGSM / basic iterative method (BIM, Kurakin et al. 2017).

    X'_0 = X, X'_{n+1} = Clip_{X,ε}(X'_n + α · sign(∇_X J(X'_n, y))), with the clip
    min(1, X + ε, max(0, X − ε, ·)).

    Args:
        model: Classifier returning logits (N, K) for images in [0, 1].
        x: Clean images, float (N, C, H, W) in [0, 1]; not modified.
        eps: L∞ budget ε on the [0, 1] scale.
        alpha: Step size α (the paper's α = 1 in 0-255 units).
        steps: Number of iterations N; default :func:`kurakin_steps` ``(eps)`` = min(ε + 4, 1.25 ε).
        y: Labels (N,) to move away from; default: the model's prediction on ``x``.

    Returns:
        Adversarial images, same shape/dtype/device as ``x``, within ``eps`` of ``x`` and in [0, 1].
    """
    check_images(x)
    eps = check_budget("eps", eps)
    alpha = check_budget("alpha", alpha)
    steps = kurakin_steps(eps) if steps is None else int(steps)
    return _basic_iterative(model, x, _labels(model, x, y), eps, alpha, steps, targeted=False)


def mi_fgsm(
    model: nn.Module,
    x: torch.Tensor,
    *,
    eps: float,
    steps: int = 10,
    mu: float = 1.0,
    alpha: float | None = None,
    y: torch.Tensor | None = None,
) -> torch.Tensor:
    """Momentum iterative FGSM (Dong et al. 2018, Algorithm 1).

    g_0 = 0; g_{t+1} = μ · g_t + ∇_X J(X*_t, y) / ‖∇_X J(X*_t, y)‖₁ (L1 norm per example);
    X*_{t+1} = clip(X*_t + α · sign(g_{t+1})), with α = ε / T. The clip projects onto the ε-ball, then onto
    [0, 1]. An all-zero gradient (a saturated softmax) contributes nothing instead of dividing by zero.

    Args:
        model: Classifier returning logits (N, K) for images in [0, 1].
        x: Clean images, float (N, C, H, W) in [0, 1]; not modified.
        eps: L∞ budget ε on the [0, 1] scale.
        steps: Number of iterations T.
        mu: Decay factor μ of the momentum.
        alpha: Step size; default ε / T as in the paper.
        y: Labels (N,) to move away from; default: the model's prediction on ``x`` (its "first prediction").

    Returns:
        Adversarial images, same shape/dtype/device as ``x``, within ``eps`` of ``x`` and in [0, 1].
    """
    check_images(x)
    eps = check_budget("eps", eps)
    steps = int(steps)
    alpha = eps / steps if alpha is None else check_budget("alpha", alpha)
    labels = _labels(model, x, y)
    with eval_mode(model):
        adv = x.detach().clone()
        momentum = torch.zeros_like(adv)
        for _ in range(steps):
            grad = _gradient(model, adv, labels, targeted=False)
            norm = grad.abs().sum(dim=(1, 2, 3), keepdim=True)
            grad = torch.where(norm > 0, grad / norm, torch.zeros_like(grad))
            momentum = mu * momentum + grad
            adv = _project_delta(adv + alpha * momentum.sign(), x, eps).detach()
        return adv


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    *,
    eps: float,
    alpha: float = 2 / 255,
    steps: int = 10,
    random_start: bool = True,
    generator: torch.Generator | None = None,
    y: torch.Tensor | None = None,
    target: torch.Tensor | None = None,
) -> torch.Tensor:
    """Projected gradient descent with a random start (Madry et al. 2018).

    X_0 = clip_[0,1](X + U(−ε, ε)); X_{t+1} = Π(X_t + α · sign(∇_X J(X_t, y))), where Π projects onto the
    ε-ball around X, then onto [0, 1]. With ``target``, the targeted form descends the loss of the target class:
    X_{t+1} = Π(X_t − α · sign(∇_X J(X_t, y_target))).

    Args:
        model: Classifier returning logits (N, K) for images in [0, 1].
        x: Clean images, float (N, C, H, W) in [0, 1]; not modified.
        eps: L∞ budget ε on the [0, 1] scale.
        alpha: Step size α (Madry et al. use 2/255 on CIFAR-10).
        steps: Number of steps (Madry et al.: 7 for training, 20 for evaluation on CIFAR-10).
        random_start: Start from a uniform random point of the ε-ball.
        generator: Source of the random start; the noise is drawn with
            ``uniform_(-eps, eps, generator=generator)`` on the generator's device, in batch order, so one
            generator used for consecutive batches gives the same noise as one call on their concatenation.
            ``None`` uses a fresh CPU generator seeded with 0 (deterministic). The global RNG is never used.
        y: Labels (N,) to move away from; default: the model's prediction on ``x``.
        target: Target classes (N,) to move toward (targeted PGD); ``y`` must then be None.

    Returns:
        Adversarial images, same shape/dtype/device as ``x``, within ``eps`` of ``x`` and in [0, 1].

    Raises:
        ValueError: Both ``y`` and ``target`` given, or labels of the wrong shape.
    """
    check_images(x)
    eps = check_budget("eps", eps)
    alpha = check_budget("alpha", alpha)
    if y is not None and target is not None:
        raise ValueError("pgd takes labels to move away from (y) or a target to move toward (target), not both")
    targeted = target is not None
    labels = _targets(x, target) if target is not None else _labels(model, x, y)
    with eval_mode(model):
        adv = x.detach().clone()
        if random_start:
            if generator is None:
                generator = torch.Generator().manual_seed(0)
            noise = torch.empty(x.shape, dtype=x.dtype, device=generator.device)
            noise.uniform_(-eps, eps, generator=generator)
            adv = torch.clamp(adv + noise.to(x.device), min=0, max=1)
        for _ in range(int(steps)):
            grad = _gradient(model, adv, labels, targeted=targeted)
            adv = _project_delta(adv.detach() + alpha * grad.sign(), x, eps).detach()
        return adv


def _targets(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    target = torch.as_tensor(target, device=x.device).long()
    if target.shape != (x.shape[0],):
        raise ValueError(f"target classes must have shape ({x.shape[0]},), got {tuple(target.shape)}")
    return target


def step_target(model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, eps: float) -> torch.Tensor:
    """One step toward a target class: X' = clip_[0,1](X − ε · sign(∇_X J(X, y_target))) (Kurakin et al.).

    Args:
        model: Classifier returning logits (N, K) for images in [0, 1].
        x: Clean images, float (N, C, H, W) in [0, 1]; not modified.
        target: Target classes (N,), int.
        eps: L∞ budget ε on the [0, 1] scale.

    Returns:
        Adversarial images, same shape/dtype/device as ``x``, within ``eps`` of ``x`` and in [0, 1].
    """
    check_images(x)
    eps = check_budget("eps", eps)
    return _single_step(model, x, _targets(x, target), eps, targeted=True)


def iter_target(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    eps: float,
    alpha: float = 1 / 255,
    steps: int | None = None,
) -> torch.Tensor:
    """Iterative target-class method: X'_{n+1} = Clip_{X,ε}(X'_n − α · sign(∇_X J(X'_n, y_target))).

    Kurakin et al. 2017, the iterative least-likely-class method with an arbitrary target.

    Args:
        model: Classifier returning logits (N, K) for images in [0, 1].
        x: Clean images, float (N, C, H, W) in [0, 1]; not modified.
        target: Target classes (N,), int.
        eps: L∞ budget ε on the [0, 1] scale.
        alpha: Step size α (1 in 0-255 units).
        steps: Number of iterations N; default :func:`kurakin_steps` ``(eps)`` = min(ε + 4, 1.25 ε).

    Returns:
        Adversarial images, same shape/dtype/device as ``x``, within ``eps`` of ``x`` and in [0, 1].
    """
    check_images(x)
    eps = check_budget("eps", eps)
    alpha = check_budget("alpha", alpha)
    steps = kurakin_steps(eps) if steps is None else int(steps)
    return _basic_iterative(model, x, _targets(x, target), eps, alpha, steps, targeted=True)


def step_ll(model: nn.Module, x: torch.Tensor, *, eps: float) -> torch.Tensor:
    """Step least-likely class: :func:`step_target` toward y_LL = argmin of the clean prediction (Kurakin et al.).

    Args:
        model: Classifier returning logits (N, K) for images in [0, 1].
        x: Clean images, float (N, C, H, W) in [0, 1]; not modified.
        eps: L∞ budget ε on the [0, 1] scale.

    Returns:
        Adversarial images, same shape/dtype/device as ``x``, within ``eps`` of ``x`` and in [0, 1].
    """
    check_images(x)
    return step_target(model, x, least_likely(model, x), eps=eps)


def iter_ll(
    model: nn.Module, x: torch.Tensor, *, eps: float, alpha: float = 1 / 255, steps: int | None = None
) -> torch.Tensor:
    """Iterative least-likely class: :func:`iter_target` toward y_LL = argmin of the clean prediction.

    Kurakin et al. 2017: α = 1 and N = min(ε + 4, 1.25 ε) iterations, both in 0-255 units.

    Args:
        model: Classifier returning logits (N, K) for images in [0, 1].
        x: Clean images, float (N, C, H, W) in [0, 1]; not modified.
        eps: L∞ budget ε on the [0, 1] scale.
        alpha: Step size α.
        steps: Number of iterations; default :func:`kurakin_steps` ``(eps)``.

    Returns:
        Adversarial images, same shape/dtype/device as ``x``, within ``eps`` of ``x`` and in [0, 1].
    """
    check_images(x)
    return iter_target(model, x, least_likely(model, x), eps=eps, alpha=alpha, steps=steps)
