"""DeepFool and universal adversarial perturbations (UAP) as pure PyTorch functions.

* :func:`deepfool` -- Moosavi-Dezfooli, Fawzi, Frossard, "DeepFool: a simple and accurate method to fool deep
  neural networks", CVPR 2016 (multi-class L2 version, Algorithm 2).
* :func:`universal_perturbation` -- Moosavi-Dezfooli, Fawzi, Fawzi, Frossard, "Universal adversarial
  perturbations", CVPR 2017 (Algorithm 1), with the defaults of the authors' code (LTS4/universal):
  top-k = ``num_classes`` = 10 candidate classes, ``overshoot`` = 0.02, ``max_iter_df`` = 10, δ = 0.2.
* :func:`sgd_universal_perturbation` -- Shafahi, Najibi, Xu, Dickerson, Davis, Goldstein, "Universal
  adversarial training", AAAI 2020 (Algorithm 1, "stochastic gradient for universal perturbations"):
  minibatch gradient ascent of the (optionally clamped) cross-entropy of the clean predictions.

Deliberate differences from the reference code (the pitfalls listed in the project's method notes):
``x + v`` is clipped to [0, 1] wherever the model sees it (DeepFool's own iterates are not, as in the paper);
a zero gradient difference cannot divide by zero (such candidate classes are skipped, and an image with no
usable class stops); the number of passes over the data is always capped (``max_iter_uni``); "DeepFool
converged" means it changed the label (the reference tests ``iterations < max_iter_df - 1``); the L2
projection is the projection onto the ball (``v · min(1, ξ/‖v‖₂)``; the reference rescales every v onto the
sphere); fooling rates are meant to be measured on held-out images (see :mod:`research.uap.make_uap`).

Images are float tensors (N, C, H, W) in [0, 1]; ``xi`` is on the same [0, 1] scale (ξ∞ = 10/255 is the
paper's ξ = 10 in 0-255 units).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from submission_kit.attack_methods.common import check_budget, check_images, eval_mode

__all__ = [
    "load_uap",
    "DeepFoolResult",
    "UAPResult",
    "apply_universal",
    "deepfool",
    "fooling_rate",
    "project_l2",
    "project_linf",
    "project_lp",
    "sgd_universal_perturbation",
    "universal_perturbation",
]


@dataclass(frozen=True)
class DeepFoolResult:
    """What :func:`deepfool` found for each image of a batch.

    Attributes:
        perturbation: (1 + overshoot) · r_tot, float (N, C, H, W), not clipped.
        adversarial: clip(x + perturbation, 0, 1), float (N, C, H, W).
        label: The clean prediction (N,) (argmax of the logits of ``x``).
        iterations: Linearization steps taken per image (N,), at most ``max_iter``.
        converged: (N,) bool: the last iterate's prediction differs from ``label``.
    """

    perturbation: torch.Tensor
    adversarial: torch.Tensor
    label: torch.Tensor
    iterations: torch.Tensor
    converged: torch.Tensor


def _difference_gradients(
    model: nn.Module, x: torch.Tensor, top: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of ``x`` and the gradients w_k − w_l of the logit differences f_k − f_l with respect to the input.

    One forward/backward pass over ``x`` replicated k − 1 times: row j of image i asks for
    ∇(f_{top[i, j+1]} − f_{top[i, 0]}).

    Args:
        model: Classifier in eval mode.
        x: Images (m, C, H, W).
        top: (m, k) class indices; column 0 is the label l.

    Returns:
        ``(logits, grads)``: logits (m, K) of ``x`` and grads (m, k − 1, C, H, W).
    """
    m, k = top.shape
    rep = x.detach().unsqueeze(1).expand(m, k - 1, *x.shape[1:]).reshape(m * (k - 1), *x.shape[1:])
    rep = rep.clone().requires_grad_(True)
    others = top[:, 1:].reshape(-1, 1)
    labels = top[:, :1].expand(m, k - 1).reshape(-1, 1)
    with torch.enable_grad():
        logits = model(rep)
        selected = (logits.gather(1, others) - logits.gather(1, labels)).sum()
        (grads,) = torch.autograd.grad(selected, rep)
    return logits.detach().view(m, k - 1, -1)[:, 0], grads.view(m, k - 1, *x.shape[1:])


def deepfool(
    model: nn.Module,
    x: torch.Tensor,
    *,
    num_classes: int = 10,
    overshoot: float = 0.02,
    max_iter: int = 10,
    clip: bool = False,
) -> DeepFoolResult:
    """Minimal L2 perturbation changing each image's label, by iterated linearization (DeepFool).

    At each step, among the top-``num_classes`` classes k of the clean logits (other than the label l),
    pick the one with the smallest |f_k − f_l| / ‖w_k − w_l‖₂ (w = gradient of a logit) and step exactly to
    its linearized boundary: r_i = |f_k − f_l| / ‖w_k − w_l‖₂ · (w_k − w_l) / ‖w_k − w_l‖₂; r_tot += r_i;
    the next point is x + (1 + overshoot) · r_tot. An image stops when its label changes, after ``max_iter``
    steps, or when every candidate class has a zero gradient difference (no direction exists; candidate
    classes with a zero difference are skipped rather than divided by zero). Images are independent: the
    batch result equals the per-example results.

    Like the paper and the authors' code, the iterates are not clipped to [0, 1] by default: clipping them
    stalls the iteration on the boundary whenever clipped pixels carry the overshoot. ``adversarial`` is
    always clipped, so with ``clip=False`` it can (rarely) fail to fool where ``converged`` is True.

    Args:
        model: Classifier returning logits (N, K) for images in [0, 1].
        x: Images, float (N, C, H, W) in [0, 1]; not modified.
        num_classes: Number of candidate classes (top-k of the clean logits, including the label).
        overshoot: The final perturbation is (1 + overshoot) · r_tot.
        max_iter: Largest number of linearization steps.
        clip: Clip every iterate to [0, 1] (torchattacks' variant).

    Returns:
        A :class:`DeepFoolResult`. Memory: one forward/backward pass over N · (num_classes − 1) images per step.
    """
    check_images(x)
    with eval_mode(model), torch.no_grad():
        logits0 = model(x.detach())
    return _deepfool(model, x.detach(), logits0, num_classes=num_classes, overshoot=overshoot, max_iter=max_iter,
                     clip=clip)


@torch.no_grad()
def _deepfool(
    model: nn.Module,
    x0: torch.Tensor,
    logits0: torch.Tensor,
    *,
    num_classes: int,
    overshoot: float,
    max_iter: int,
    clip: bool,
) -> DeepFoolResult:
    """:func:`deepfool` given the clean logits ``logits0`` of ``x0`` (saves a forward pass inside the UAP loop)."""
    overshoot = check_budget("overshoot", overshoot)
    n = x0.shape[0]
    with eval_mode(model):
        k = max(2, min(int(num_classes), logits0.shape[1]))
        top = logits0.topk(k, dim=1).indices  # (N, k), top[:, 0] is the label
        label = top[:, 0]
        r_tot = torch.zeros_like(x0)
        pert = x0.clone()
        iterations = torch.zeros(n, dtype=torch.long, device=x0.device)
        active = torch.ones(n, dtype=torch.bool, device=x0.device)
        converged = torch.zeros(n, dtype=torch.bool, device=x0.device)
        for step in range(int(max_iter) + 1):
            idx = active.nonzero().squeeze(1)
            if step > 0 and idx.numel():
                fooled = model(pert[idx]).argmax(dim=1) != label[idx]
                converged[idx[fooled]] = True
                active[idx[fooled]] = False
                idx = idx[~fooled]
            if idx.numel() == 0 or step == int(max_iter):
                break
            f, w = _difference_gradients(model, pert[idx], top[idx])  # w: (m, k-1, C, H, W)
            f_top = f.gather(1, top[idx])  # (m, k)
            f_diff = (f_top[:, 1:] - f_top[:, :1]).abs()  # (m, k-1)
            w_norm = w.flatten(2).norm(dim=2)  # (m, k-1)
            dist = torch.where(w_norm > 0, f_diff / w_norm, torch.full_like(f_diff, math.inf))
            best_dist, best = dist.min(dim=1)
            stuck = ~torch.isfinite(best_dist)  # zero gradient difference for every candidate class
            rows = torch.arange(idx.numel(), device=x0.device)
            w_best = w[rows, best]
            scale = torch.where(stuck, torch.zeros_like(best_dist), best_dist / w_norm[rows, best])
            r_tot[idx] += scale.view(-1, 1, 1, 1) * w_best
            step_to = x0[idx] + (1 + overshoot) * r_tot[idx]
            pert[idx] = torch.clamp(step_to, min=0, max=1) if clip else step_to
            iterations[idx] += (~stuck).long()
            active[idx[stuck]] = False
        perturbation = (1 + overshoot) * r_tot
        adversarial = torch.clamp(x0 + perturbation, min=0, max=1)
    return DeepFoolResult(perturbation, adversarial, label, iterations, converged)


def project_linf(v: torch.Tensor, xi: float) -> torch.Tensor:
    """Project onto the L∞ ball of radius ξ: clip every value to [−ξ, ξ] (a new tensor).

    Args:
        v: Perturbation(s), any shape.
        xi: Radius ξ ≥ 0.
    """
    xi = check_budget("xi", xi)
    return torch.clamp(v, min=-xi, max=xi)


def project_l2(v: torch.Tensor, xi: float) -> torch.Tensor:
    """Project onto the L2 ball of radius ξ: v · min(1, ξ / ‖v‖₂) (a new tensor).

    Args:
        v: One perturbation (C, H, W) (norm over all values) or a batch (N, C, H, W) (one norm per example).
        xi: Radius ξ ≥ 0.
    """
    xi = check_budget("xi", xi)
    if v.dim() == 4:
        norm = v.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    else:
        norm = v.norm()
    factor = torch.where(norm > xi, xi / torch.clamp(norm, min=torch.finfo(v.dtype).tiny), torch.ones_like(norm))
    return v * factor


def project_lp(v: torch.Tensor, xi: float, p: float) -> torch.Tensor:
    """:func:`project_l2` for p = 2, :func:`project_linf` for p = ∞; other p raise ``ValueError``."""
    if p == 2:
        return project_l2(v, xi)
    if p == math.inf:
        return project_linf(v, xi)
    raise ValueError(f"p must be 2 or math.inf, got {p}")


def _tile(v: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Repeat ``v`` (C, h, w) periodically to cover (C, height, width)."""
    if v.shape[-2:] == (height, width):
        return v
    reps = (1, -(-height // v.shape[-2]), -(-width // v.shape[-1]))
    return v.repeat(*reps)[:, :height, :width]


def apply_universal(x: torch.Tensor, v: torch.Tensor, *, eps: float | None = None) -> torch.Tensor:
    """Add a universal perturbation to a batch: clip(x + Π∞_ε(v), 0, 1).

    Args:
        x: Images, float (N, C, H, W) in [0, 1]; not modified.
        v: Perturbation (C, h, w) on the [0, 1] scale; tiled periodically when (h, w) differs from (H, W).
        eps: When given, ``v`` is first projected onto the L∞ ball of radius ``eps``.

    Returns:
        Perturbed images of ``x``'s shape in [0, 1], within ``eps`` of ``x`` when ``eps`` is given.
    """
    check_images(x)
    v = _tile(v.to(device=x.device, dtype=x.dtype), x.shape[-2], x.shape[-1])
    if eps is not None:
        v = project_linf(v, eps)
    return torch.clamp(x + v, min=0, max=1)


@torch.no_grad()
def _predict_batches(model: nn.Module, x: torch.Tensor, v: torch.Tensor | None, batch_size: int) -> torch.Tensor:
    """argmax of the model on clip(x + v, 0, 1) (or x when ``v`` is None), in batches."""
    out = []
    for start in range(0, x.shape[0], batch_size):
        chunk = x[start:start + batch_size]
        if v is not None:
            chunk = apply_universal(chunk, v)
        out.append(model(chunk).argmax(dim=1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long, device=x.device)


def fooling_rate(
    model: nn.Module,
    images: torch.Tensor,
    v: torch.Tensor,
    *,
    batch_size: int = 256,
    clean_labels: torch.Tensor | None = None,
) -> float:
    """Fraction of images whose prediction changes when ``v`` is added (Moosavi-Dezfooli et al. 2017, eq. 1).

    Fooling means argmax f(clip(x + v, 0, 1)) ≠ argmax f(x) -- a change of the model's own label, not an
    error against the true label.

    Args:
        model: Classifier returning logits (N, K) for images in [0, 1].
        images: float (N, C, H, W) in [0, 1].
        v: Perturbation (C, H, W) on the [0, 1] scale.
        batch_size: Images per forward pass.
        clean_labels: The model's predictions on ``images`` if already known (saves a pass).

    Returns:
        The fooling rate in [0, 1] (0.0 for no images).
    """
    check_images(images)
    if images.shape[0] == 0:
        return 0.0
    with eval_mode(model):
        if clean_labels is None:
            clean_labels = _predict_batches(model, images, None, batch_size)
        perturbed = _predict_batches(model, images, v, batch_size)
    return float((perturbed != clean_labels.to(perturbed.device)).float().mean().item())


@dataclass
class UAPResult:
    """Outcome of :func:`universal_perturbation`.

    Attributes:
        v: The universal perturbation, float (C, H, W) with ‖v‖_p ≤ ξ.
        fooling_rates: Fooling rate on the given images after each completed pass.
        passes: Passes over the data started (≤ ``max_iter_uni``).
        deepfool_calls: Images on which DeepFool ran.
        updates: DeepFool results that converged and were added to v.
        seconds: Wall-clock time.
        stopped_by: ``"fooling_rate"`` (reached 1 − δ), ``"max_iter_uni"`` (pass cap), ``"epochs"``
            (:func:`sgd_universal_perturbation` ran all its epochs) or ``"max_seconds"``.
    """

    v: torch.Tensor
    fooling_rates: list[float] = field(default_factory=list)
    passes: int = 0
    deepfool_calls: int = 0
    updates: int = 0
    seconds: float = 0.0
    stopped_by: str = ""


def universal_perturbation(
    model: nn.Module,
    images: torch.Tensor,
    *,
    xi: float,
    p: float = math.inf,
    delta: float = 0.2,
    max_iter_uni: int = 10,
    num_classes: int = 10,
    overshoot: float = 0.02,
    max_iter_df: int = 10,
    generator: torch.Generator | None = None,
    batch_size: int = 256,
    deepfool_batch: int = 1,
    max_seconds: float | None = None,
    log: Callable[[str], None] | None = None,
) -> UAPResult:
    """Universal adversarial perturbation (Moosavi-Dezfooli et al. 2017, Algorithm 1).

    v = 0; repeat passes over the images in a fresh random order: for each image x with
    argmax f(clip(x + v)) = argmax f(x), run DeepFool on clip(x + v, 0, 1) and, if it converged, set
    v ← P_{p,ξ}(v + Δv). After each pass measure the fooling rate on ``images``; stop once it reaches 1 − δ,
    after ``max_iter_uni`` passes, or when ``max_seconds`` have elapsed (checked between images).

    ``deepfool_batch`` = B > 1 is a batched variant for CPUs and GPUs: the next B images of the order are checked
    against the current v together, DeepFool runs on the unfooled ones as one batch, and their converged
    perturbations are then added one after another, each followed by the projection. B = 1 is Algorithm 1
    exactly; with B > 1 the B perturbations are computed at the same v rather than at the v left by the
    previous image, which trades a little of each update's accuracy for B-fold batching.

    Args:
        model: Classifier returning logits (N, K) for images in [0, 1].
        images: Training images, float (N, C, H, W) in [0, 1], all of one size; not modified.
        xi: Radius ξ of the Lp ball on the [0, 1] scale (the paper: ξ∞ = 10/255, ξ2 = 2000/255 on ImageNet).
        p: 2 or ``math.inf``.
        delta: Desired fooling rate is 1 − δ.
        max_iter_uni: Pass cap (must be a finite integer ≥ 1).
        num_classes: DeepFool's number of candidate classes (top-k).
        overshoot: DeepFool's overshoot.
        max_iter_df: DeepFool's iteration cap.
        generator: Shuffles the images each pass; ``None``: a CPU generator seeded with 0. Global RNG unused.
        batch_size: Images per forward pass when measuring fooling rates.
        deepfool_batch: Images checked and DeepFool-ed together (1 = the paper's one-at-a-time loop).
        max_seconds: Optional wall-clock budget.
        log: Called with one-line progress messages.

    Returns:
        A :class:`UAPResult` whose ``v`` has the shape of one image.
    """
    check_images(images)
    xi = check_budget("xi", xi)
    project_lp(torch.zeros(1), xi, p)  # validates p
    if not isinstance(deepfool_batch, int) or deepfool_batch < 1:
        raise ValueError(f"deepfool_batch must be an int >= 1, got {deepfool_batch!r}")
    if not isinstance(max_iter_uni, int) or max_iter_uni < 1:
        raise ValueError(f"max_iter_uni must be an int >= 1 (a finite pass cap), got {max_iter_uni!r}")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    say = log or (lambda message: None)
    start = time.monotonic()
    images = images.detach()
    n = images.shape[0]
    result = UAPResult(v=torch.zeros(images.shape[1:], dtype=images.dtype, device=images.device))
    with eval_mode(model):
        clean = _predict_batches(model, images, None, batch_size)
        v = result.v
        stop = ""
        while not stop:
            result.passes += 1
            order = torch.randperm(n, generator=generator)
            for begin in range(0, n, deepfool_batch):
                if max_seconds is not None and time.monotonic() - start > max_seconds:
                    stop = "max_seconds"
                    break
                chunk = order[begin:begin + deepfool_batch].to(images.device)
                x = apply_universal(images[chunk], v)
                with torch.no_grad():
                    logits = model(x)
                unfooled = logits.argmax(dim=1) == clean[chunk]
                if not bool(unfooled.any()):
                    continue
                found = _deepfool(model, x[unfooled], logits[unfooled], num_classes=num_classes,
                                  overshoot=overshoot, max_iter=max_iter_df, clip=False)
                result.deepfool_calls += int(unfooled.sum())
                for j in found.converged.nonzero().squeeze(1).tolist():
                    v = project_lp(v + found.perturbation[j], xi, p)
                    result.updates += 1
                done = min(begin + deepfool_batch, n)
                if done // 250 != begin // 250:
                    say(f"pass {result.passes}: {done}/{n} images, {result.updates} updates, "
                        f"{time.monotonic() - start:.0f} s")
            rate = fooling_rate(model, images, v, batch_size=batch_size, clean_labels=clean)
            result.fooling_rates.append(rate)
            say(f"pass {result.passes} done: fooling rate {rate:.4f}, {result.updates} updates, "
                f"{time.monotonic() - start:.0f} s")
            if not stop and rate >= 1 - delta:
                stop = "fooling_rate"
            elif not stop and result.passes >= max_iter_uni:
                stop = "max_iter_uni"
    result.v = v.detach()
    result.seconds = time.monotonic() - start
    result.stopped_by = stop
    return result


def sgd_universal_perturbation(
    model: nn.Module,
    images: torch.Tensor,
    *,
    xi: float,
    p: float = math.inf,
    epochs: int = 10,
    step_size: float = 0.005,
    beta: float | None = None,
    batch_size: int = 100,
    generator: torch.Generator | None = None,
    max_seconds: float | None = None,
    log: Callable[[str], None] | None = None,
) -> UAPResult:
    """Universal perturbation by stochastic gradient ascent (Shafahi et al., AAAI 2020, Algorithm 1).

    v = 0; for each epoch, for each minibatch B of a fresh random order:
    g = ∇_v Σ_{x∈B} min(ℓ(f(clip(x + v, 0, 1)), ŷ(x)), β), with ŷ(x) = argmax f(x) the clean prediction
    (no true labels), ℓ the cross-entropy and β the clamp (``None`` = no clamp); then
    v ← P_{p,ξ}(v + step_size · sign(g)) for p = ∞ (the paper's FGSM-style step) or
    v ← P_{2,ξ}(v + step_size · g / ‖g‖₂) for p = 2. The fooling rate on ``images`` is measured after every
    epoch; ``fooling_rates``, ``passes`` (= epochs run) and ``updates`` (= minibatch steps) are filled in.

    DeepFool's minimal perturbations (:func:`universal_perturbation`) aim at the nearest boundary of each image;
    this variant maximizes the loss of the whole batch at once, which on small CIFAR-10 models finds far
    stronger universal perturbations for the same ξ (measured in ``attacks/uap/README.md``).

    Args:
        model: Classifier returning logits (N, K) for images in [0, 1].
        images: Training images, float (N, C, H, W) in [0, 1], all of one size; not modified.
        xi: Radius ξ on the [0, 1] scale.
        p: 2 or ``math.inf``.
        epochs: Passes over ``images``.
        step_size: Step on the [0, 1] scale (L∞: per-value sign step; L2: step length).
        beta: Clamp of the per-image loss (Shafahi et al.'s clamped loss keeps fooled images from dominating);
            ``None``: plain cross-entropy.
        batch_size: Images per gradient step.
        generator: Shuffles the images each epoch; ``None``: a CPU generator seeded with 0.
        max_seconds: Optional wall-clock budget, checked between steps.
        log: Called with one-line progress messages.

    Returns:
        A :class:`UAPResult` whose ``v`` has the shape of one image; ``deepfool_calls`` is 0.
    """
    check_images(images)
    xi = check_budget("xi", xi)
    step_size = check_budget("step_size", step_size)
    project_lp(torch.zeros(1), xi, p)  # validates p
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
    if beta is not None and not beta > 0:
        raise ValueError(f"beta must be positive or None, got {beta!r}")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    say = log or (lambda message: None)
    start = time.monotonic()
    images = images.detach()
    n = images.shape[0]
    result = UAPResult(v=torch.zeros(images.shape[1:], dtype=images.dtype, device=images.device))
    v = result.v
    with eval_mode(model):
        clean = _predict_batches(model, images, None, batch_size)
        stop = ""
        while not stop:
            result.passes += 1
            order = torch.randperm(n, generator=generator).to(images.device)
            for begin in range(0, n, batch_size):
                if max_seconds is not None and time.monotonic() - start > max_seconds:
                    stop = "max_seconds"
                    break
                chunk = order[begin:begin + batch_size]
                variable = v.clone().requires_grad_(True)
                with torch.enable_grad():
                    logits = model(torch.clamp(images[chunk] + variable, min=0, max=1))
                    loss = nn.functional.cross_entropy(logits, clean[chunk], reduction="none")
                    if beta is not None:
                        loss = torch.clamp(loss, max=beta)
                    (gradient,) = torch.autograd.grad(loss.sum(), variable)
                if p == math.inf:
                    step = step_size * gradient.sign()
                else:
                    step = step_size * gradient / torch.clamp(gradient.norm(), min=torch.finfo(gradient.dtype).tiny)
                v = project_lp(v + step, xi, p).detach()
                result.updates += 1
            rate = fooling_rate(model, images, v, batch_size=max(batch_size, 256), clean_labels=clean)
            result.fooling_rates.append(rate)
            say(f"epoch {result.passes} done: fooling rate {rate:.4f}, {time.monotonic() - start:.0f} s")
            if not stop and result.passes >= epochs:
                stop = "epochs"
    result.v = v.detach()
    result.seconds = time.monotonic() - start
    result.stopped_by = stop
    return result


def load_uap(path: str | Path) -> torch.Tensor:
    """Read a stored universal perturbation: float32 (C, H, W) on the [0, 1] scale.

    Raises:
        FileNotFoundError: ``path`` does not exist; the message gives the command that makes it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found. Compute it once with (the README.md next to it has the exact "
                                f"command):\n    python -m research.uap.make_uap --model vgg6_w48 "
                                f"--xi 10 --out {path}")
    v = np.load(path, allow_pickle=False)
    if v.ndim != 3 or v.dtype != np.float32:
        raise ValueError(f"{path}: expected a float32 array (C, H, W), got {v.dtype} {v.shape}")
    return torch.from_numpy(v)
