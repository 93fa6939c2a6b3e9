"""One step of adversarial training: attack the batch with BatchNorm frozen, then update on the adversarial images.

Xie et al., "Feature Denoising for Improving Adversarial Robustness", CVPR 2019, Sec. 5: every SGD update uses
adversarial images only (no clean images in the mini-batch), made by PGD on the current weights, 20% of them
started from the clean image and 80% from a random point of the ε-ball; label smoothing 0.1. The authors' code
(facebookresearch/ImageNet-Adversarial-Training, ``adv_model.py``) runs the attack with BatchNorm in inference
mode and its moving-average updates frozen -- here the attack functions of :mod:`submission_kit.attack_methods.gradient`
run
the model in ``eval()`` mode (running statistics used, not updated) and the update runs in ``train()`` mode.

Two attacks:

* ``"pgd"`` -- K-step PGD (Madry et al. 2018) with step α = max(2/255, ε/K) (the authors' rule
  ``max(step, ε / num_iter)`` with Madry's CIFAR step 2/255), untargeted on the true label (CIFAR-10 convention;
  the seed attacks toward a random target on ImageNet). The clean/random start is drawn per image with
  probability 0.2 / 0.8; the authors' code draws it once per GPU batch of 32, i.e. about 20% of the images of
  each 4,096-image global batch start clean, which per-image draws reproduce on one device.
* ``"fgsm_rs"`` -- single-step training from a random start, Wong, Rice & Kolter, "Fast is better than free:
  revisiting adversarial training", ICLR 2020: δ ~ U(−ε, ε), one signed-gradient step of α = 1.25 ε, projection
  onto the ε-ball and [0, 1]. This is PGD with one step and a random start, so it reuses :func:`gradient.pgd`.
"""

from __future__ import annotations

import torch
from torch import nn

from submission_kit.attack_methods import gradient

__all__ = ["ATTACKS", "adversarial_step", "pgd_step_size", "training_examples"]

#: Training attacks.
ATTACKS: tuple[str, ...] = ("fgsm_rs", "pgd")

#: Fast adversarial training's step, in units of ε (Wong et al. 2020).
FGSM_RS_STEP = 1.25


def pgd_step_size(eps: float, steps: int) -> float:
    """PGD step for training: max(2/255, ε / K) on the [0, 1] scale (K steps can always reach the ε-ball's edge)."""
    return max(2.0 / 255.0, eps / max(int(steps), 1))


def training_examples(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, attack: str, eps: float,
                      pgd_steps: int = 3, clean_start_prob: float = 0.2,
                      generator: torch.Generator) -> torch.Tensor:
    """Adversarial versions of a training batch (the model runs in eval mode during the attack).

    Args:
        model: Classifier taking [0, 1] images, returning logits.
        x: Clean (augmented) images, float (N, 3, H, W) in [0, 1].
        y: True labels (N,), int64.
        attack: One of :data:`ATTACKS`.
        eps: L∞ budget on the [0, 1] scale.
        pgd_steps: K for ``"pgd"``.
        clean_start_prob: For ``"pgd"``: probability that an image's attack starts from the clean image.
        generator: CPU generator for the random starts and the clean/random choice.

    Returns:
        Detached adversarial images, same shape as ``x``, within ``eps`` of it and in [0, 1].
    """
    if attack == "fgsm_rs":
        return gradient.pgd(model, x, eps=eps, alpha=FGSM_RS_STEP * eps, steps=1, random_start=True,
                            generator=generator, y=y)
    if attack != "pgd":
        raise ValueError(f"unknown training attack {attack!r}; choices: {', '.join(ATTACKS)}")
    alpha = pgd_step_size(eps, pgd_steps)
    clean_start = (torch.rand(x.shape[0], generator=generator) < clean_start_prob).to(x.device)
    adversarial = torch.empty_like(x)
    for from_clean in (False, True):
        index = (clean_start == from_clean).nonzero().flatten()
        if len(index):
            adversarial[index] = gradient.pgd(model, x[index], eps=eps, alpha=alpha, steps=pgd_steps,
                                              random_start=not from_clean, generator=generator, y=y[index])
    return adversarial


def adversarial_step(model: nn.Module, optimizer: torch.optim.Optimizer, x_adv: torch.Tensor, y: torch.Tensor,
                     loss_fn: nn.Module) -> tuple[float, int]:
    """One SGD update on adversarial images only, with the model in training mode.

    Args:
        model: The network being trained.
        optimizer: Its optimizer.
        x_adv: Adversarial images (N, 3, H, W) in [0, 1] (from :func:`training_examples`).
        y: True labels (N,).
        loss_fn: Training loss on (logits, labels), e.g. cross-entropy with label smoothing 0.1.

    Returns:
        ``(loss, correct)``: the batch's mean loss before the update and how many images it classified right.
    """
    model.train()
    logits = model(x_adv)
    loss = loss_fn(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach()), int((logits.detach().argmax(1) == y).sum())
