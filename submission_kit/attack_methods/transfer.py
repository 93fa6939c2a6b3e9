"""Transfer-oriented momentum attacks: input diversity (DI) and translation invariance (TI).

* :func:`di_mi_fgsm` -- C. Xie, Z. Zhang, Y. Zhou, S. Bai, J. Wang, Z. Ren, A. Yuille, "Improving Transferability
  of Adversarial Examples with Input Diversity", CVPR 2019 (DI²-FGSM / M-DI²-FGSM, Sec. 3.2-3.3): at every
  iteration the gradient is taken through the transformation T(X; p), which with probability p resizes X to
  rnd × rnd (rnd uniform in [W, ⌊W · resize_rate⌋)) and zero-pads it at a random offset back to a fixed size.
* :func:`ti_mi_fgsm` -- Y. Dong, T. Pang, H. Su, J. Zhu, "Evading Defenses to Transferable Adversarial Examples by
  Translation-Invariant Attacks", CVPR 2019 (TI-MI-FGSM, Eq. 8-9): the gradient is convolved with a
  pre-defined kernel W (Gaussian, side ``len_kernel``, radius ``nsig`` standard deviations) before the update.

Both use MI-FGSM's momentum (Dong et al. 2018) with the L1 normalisation written as the mean absolute value
per example, g_{t+1} = μ · g_t + ∇ / mean|∇|, and α = ε / T by default. The update rules reproduce torchattacks
3.5's ``DIFGSM`` and ``TIFGSM`` operation for operation (the test suite checks this); the random draws of T come
from an explicit ``torch.Generator`` in the same order as torchattacks draws them from the global RNG.
Conventions as in :mod:`submission_kit.attack_methods.gradient`: images in [0, 1], (N, C, H, W); ``eps`` on the
[0, 1] scale; labels default to the model's own clean prediction; eval mode for the call.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from submission_kit.attack_methods.common import check_budget, check_images, eval_mode, predict

__all__ = ["di_mi_fgsm", "gaussian_kernel", "input_diversity", "ti_mi_fgsm"]


def input_diversity(x: torch.Tensor, *, resize_rate: float, diversity_prob: float,
                    generator: torch.Generator) -> torch.Tensor:
    """T(X; p) of Xie et al. 2019: random resize then random zero padding, applied with probability p.

    With W the image side and W' = ⌊W · resize_rate⌋: if resize_rate ≥ 1, X is resized to rnd × rnd with rnd
    uniform in [W, W') and padded to W' × W' (the paper's 299 → [299, 330) → 330); if resize_rate < 1, rnd is in
    [W', W) and the result is padded back to W × W. The whole batch shares one draw. Draw order (the contract
    with torchattacks): rnd, pad top, pad left, then the coin ``rand(1) < p``.

    Args:
        x: float (N, C, W, W).
        resize_rate: W'/W (> 0, ≠ 1 gives a non-empty range).
        diversity_prob: p in [0, 1].
        generator: Source of all four draws (on the CPU).

    Returns:
        The transformed batch (N, C, S, S), or ``x`` itself when the coin says no.
    """
    size = x.shape[-1]
    resized = int(size * resize_rate)
    low, high = (resized, size) if resize_rate < 1 else (size, resized)
    rnd = torch.randint(low=low, high=high, size=(1,), dtype=torch.int32, generator=generator)
    rescaled = F.interpolate(x, size=[int(rnd), int(rnd)], mode="bilinear", align_corners=False)
    remainder = high - rnd
    pad_top = torch.randint(low=0, high=int(remainder), size=(1,), dtype=torch.int32, generator=generator)
    pad_left = torch.randint(low=0, high=int(remainder), size=(1,), dtype=torch.int32, generator=generator)
    padded = F.pad(rescaled, [int(pad_left), int(remainder - pad_left), int(pad_top), int(remainder - pad_top)],
                   value=0)
    return padded if torch.rand(1, generator=generator) < diversity_prob else x


def gaussian_kernel(len_kernel: int = 15, nsig: float = 3.0) -> torch.Tensor:
    """The TI kernel W (Dong et al. 2019, Sec. 3.2): a normalised 2-D Gaussian sampled on ``len_kernel`` points
    of [−nsig, nsig] per axis.

    Returns:
        float32 (len_kernel, len_kernel), summing to 1.
    """
    t = torch.linspace(-nsig, nsig, len_kernel, dtype=torch.float64)
    density = torch.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)
    kernel = torch.outer(density, density)
    return (kernel / kernel.sum()).float()


def _momentum_attack(model: nn.Module, x: torch.Tensor, *, eps: float, steps: int, mu: float, alpha: float | None,
                     y: torch.Tensor | None, transform, smooth) -> torch.Tensor:
    check_images(x)
    eps = check_budget("eps", eps)
    steps = int(steps)
    alpha = eps / steps if alpha is None else check_budget("alpha", alpha)
    labels = predict(model, x) if y is None else torch.as_tensor(y, device=x.device).long()
    with eval_mode(model):
        adv = x.detach().clone()
        momentum = torch.zeros_like(adv)
        for _ in range(steps):
            adv.requires_grad_(True)
            with torch.enable_grad():
                loss = F.cross_entropy(model(transform(adv)), labels)
                (grad,) = torch.autograd.grad(loss, adv)
            grad = smooth(grad)
            grad = grad / torch.mean(torch.abs(grad), dim=(1, 2, 3), keepdim=True).clamp_min(1e-30)
            grad = grad + momentum * mu
            momentum = grad
            adv = adv.detach() + alpha * grad.sign()
            adv = torch.clamp(x + torch.clamp(adv - x, min=-eps, max=eps), min=0, max=1).detach()
        return adv


def di_mi_fgsm(model: nn.Module, x: torch.Tensor, *, eps: float, steps: int = 10, mu: float = 1.0,
               alpha: float | None = None, resize_rate: float = 1.1, diversity_prob: float = 0.5,
               generator: torch.Generator | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
    """M-DI²-FGSM (Xie et al. 2019, Eq. 4 with momentum): MI-FGSM whose gradient is taken at T(X*_t; p).

    Args:
        model: Classifier returning logits (N, K); must accept the enlarged input when ``resize_rate > 1`` (the
            zoo models pool globally, so any side ≥ 32 works).
        x: Clean images, float (N, C, H, H) in [0, 1]; not modified.
        eps: L∞ budget ε on the [0, 1] scale.
        steps: Iterations T (10, as MI-FGSM).
        mu: Momentum decay μ (the paper's 1.0).
        alpha: Step size; default ε / T.
        resize_rate: W'/W; default 1.1 ≈ 330/299, the paper's ratio.
        diversity_prob: The paper's transformation probability p (0.5).
        generator: Source of the transformation draws; default a CPU generator seeded with 0.
        y: Labels to move away from; default the model's prediction on ``x``.

    Returns:
        Adversarial images, same shape/dtype/device as ``x``, within ``eps`` of ``x`` and in [0, 1].
    """
    generator = torch.Generator().manual_seed(0) if generator is None else generator
    return _momentum_attack(
        model, x, eps=eps, steps=steps, mu=mu, alpha=alpha, y=y,
        transform=lambda a: input_diversity(a, resize_rate=resize_rate, diversity_prob=diversity_prob,
                                            generator=generator),
        smooth=lambda g: g)


def ti_mi_fgsm(model: nn.Module, x: torch.Tensor, *, eps: float, steps: int = 10, mu: float = 1.0,
               alpha: float | None = None, len_kernel: int = 15, nsig: float = 3.0,
               y: torch.Tensor | None = None) -> torch.Tensor:
    """TI-MI-FGSM (Dong et al. 2019, Eq. 9 with momentum): g_{t+1} = μ · g_t + W * ∇ / mean|W * ∇|.

    Args:
        model: Classifier returning logits (N, K).
        x: Clean images, float (N, C, H, W) in [0, 1]; not modified.
        eps: L∞ budget ε on the [0, 1] scale.
        steps: Iterations T.
        mu: Momentum decay μ.
        alpha: Step size; default ε / T.
        len_kernel: Side k of the Gaussian kernel W (the paper's 15 on 299-pixel images; smaller suits 32 px).
        nsig: Kernel radius in standard deviations (3).
        y: Labels to move away from; default the model's prediction on ``x``.

    Returns:
        Adversarial images, same shape/dtype/device as ``x``, within ``eps`` of ``x`` and in [0, 1].
    """
    kernel = gaussian_kernel(len_kernel, nsig).to(x.device)
    channels = x.shape[1]
    stacked = kernel.expand(channels, 1, len_kernel, len_kernel).contiguous()
    return _momentum_attack(
        model, x, eps=eps, steps=steps, mu=mu, alpha=alpha, y=y, transform=lambda a: a,
        smooth=lambda g: F.conv2d(g, stacked, stride=1, padding="same", groups=channels))
