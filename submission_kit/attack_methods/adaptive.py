"""Adaptive attacks aimed at one defense: the attacker differentiates through (or around) the defense itself.

* BPDA -- A. Athalye, N. Carlini, D. Wagner, "Obfuscated Gradients Give a False Sense of Security", ICML 2018,
  Sec. 4.1: a non-differentiable pre-processing g (total-variation or non-local-means denoising, JPEG) is run as
  is on the forward pass and replaced by the identity on the backward pass (g(x) ≈ x, so ∇_x f(g(x)) ≈
  ∇f(g(x))). :func:`bpda` wraps any batch transformation of :mod:`submission_kit.defense_blocks.denoise`; the
  fixed defensive perturbation v_def of the ``_vdef`` variants (``x ↦ clip(x + v_def, 0, 1)``) is
  differentiable and stays outside the BPDA, so its clip is differentiated exactly. EOT (Sec. 4.3) is
  degenerate for those variants: v_def is one stored array, not a random draw, so one sample is the exact
  expectation.
* End-to-end PGD -- the HGD denoisers (Liao et al. 2018) and the PRN rectifier (Akhtar et al. 2018) are
  differentiable networks: :class:`Defended` composes the defense's own module (loaded by the library's loader,
  never a copy) with the classifier, and PGD ascends the loss of the composition.
* The PRN detector gate 𝒟 (an SVM on DCT features: no gradient) is handled by attacking both branches at once
  (:class:`BothBranches`): the adversarial image must fool 𝒞(I) and 𝒞(ℛ(I)), so the gate's decision no
  longer matters.
* Labels -- attack folders never see them. :func:`label_free_pgd`, the folders' recipe, runs PGD away from the
  defense's own clean prediction and targeted PGD toward the least-likely class (Kurakin et al. 2017) and keeps
  the targeted image where the defense predicts its target; the untargeted run alone leaves a floor of 5-15 %
  (``docs/adaptive_evaluation_untargeted.md``).

Every wrapper keeps its classifier and defense modules in eval mode, even when an attack library calls
``.train()`` on it (:meth:`Defended.train` is a no-op), so BatchNorm statistics and clean accuracy never change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from submission_kit.attack_methods import gradient, submission
from submission_kit.attack_methods.common import check_images, eval_mode, least_likely, predict

__all__ = ["BPDA", "BothBranches", "Defended", "adaptive_pgd", "bpda", "label_free_pgd", "run_adaptive_attack"]

Transform = Callable[[torch.Tensor], torch.Tensor]


class BPDA(torch.autograd.Function):
    """y = g(x) forward, ∂y/∂x := I backward (the straight-through / identity BPDA of Athalye et al. 2018)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, transform: Transform) -> torch.Tensor:  # type: ignore[override]
        with torch.no_grad():
            return transform(x.detach()).to(dtype=x.dtype, device=x.device)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # type: ignore[override]
        return grad_output, None


def bpda(transform: Transform) -> Transform:
    """``transform`` with the identity as its backward pass. Input/output: float (N, 3, H, W) in [0, 1]."""

    def approximated(x: torch.Tensor) -> torch.Tensor:
        return BPDA.apply(x, transform)

    approximated.__wrapped__ = transform  # type: ignore[attr-defined]
    return approximated


class _AlwaysEval(nn.Module):
    """A module whose submodules stay in eval mode whatever ``.train(mode)`` is called with."""

    def train(self, mode: bool = True) -> _AlwaysEval:
        return super().train(False)


class Defended(_AlwaysEval):
    """classifier(clamp(preprocess(x), 0, 1)): a defense as one differentiable model for an attack.

    Args:
        classifier: Logits (N, K) for images in [0, 1]; put (and kept) in eval mode.
        preprocess: The defense's transformation, differentiable (an HGD denoiser, a PRN) or wrapped by
            :func:`bpda`. An ``nn.Module`` is registered as a submodule (so it stays in eval mode too).
    """

    def __init__(self, classifier: nn.Module, preprocess: Transform) -> None:
        super().__init__()
        self.classifier = classifier
        self.preprocess = preprocess  # an nn.Module is registered as a submodule by nn.Module.__setattr__
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, K) of images ``x`` (N, 3, H, W) in [0, 1]."""
        return self.classifier(self.preprocess(x).clamp(0.0, 1.0))


class BothBranches(_AlwaysEval):
    """Both branches of a detector-gated defense: log p_𝒞(x) + log p_𝒞(clamp(ℛ(x))) as "logits".

    The cross-entropy of these scores ascends −log p(y|x) − log p(y|ℛ(x)) (up to a normaliser), so PGD lowers
    the true-class probability of the unrectified and of the rectified image together: whichever branch the
    detector picks sees an adversarial input. ``argmax`` of the scores is NOT the gated defense's prediction;
    take labels from the real defense (``y`` of :func:`adaptive_pgd`).

    Args:
        classifier: Logits (N, K) for images in [0, 1].
        rectifier: The rectifier ℛ (e.g. ``PRNDefense.prn``), differentiable.
    """

    def __init__(self, classifier: nn.Module, rectifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier
        self.rectifier = rectifier
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plain = F.log_softmax(self.classifier(x), dim=1)
        rectified = F.log_softmax(self.classifier(self.rectifier(x).clamp(0.0, 1.0)), dim=1)
        return plain + rectified


def adaptive_pgd(model: nn.Module, x: torch.Tensor, *, eps: float, steps: int = 20, alpha: float | None = None,
                 y: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """PGD with a random start (Madry et al. 2018) on a defended model (:class:`Defended`, :class:`BothBranches`).

    Args:
        model: The defense as one model (logits or scores (N, K)).
        x: Clean images, float (N, 3, H, W) in [0, 1]; not modified.
        eps: L∞ budget ε on the [0, 1] scale.
        steps: PGD iterations (20: Madry et al.'s CIFAR-10 evaluation).
        alpha: Step size; default ε / 4.
        y: Labels to move away from; default ``model``'s prediction on ``x`` (pass the gated defense's own
            prediction for :class:`BothBranches`).
        generator: Source of the random start (default a CPU generator seeded with 0).

    Returns:
        Adversarial images, same shape/dtype/device as ``x``, within ``eps`` of ``x`` and in [0, 1].
    """
    check_images(x)
    alpha = eps / 4 if alpha is None else alpha
    with eval_mode(model):
        return gradient.pgd(model, x, eps=eps, alpha=alpha, steps=steps, y=y, generator=generator)


def label_free_pgd(model: nn.Module, x: torch.Tensor, *, eps: float, steps: int = 20, alpha: float | None = None,
                   defense_labels: Callable[[torch.Tensor], torch.Tensor] | None = None,
                   least_likely_of: nn.Module | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Two label-free PGD runs on a defended model, one image kept per example.

    An untargeted attack that moves away from the defense's own clean prediction cannot lower accuracy on an
    image the defense already gets wrong, and often moves it onto the true class: a floor of several points that
    true labels remove. So this runs (1) :func:`adaptive_pgd` away from the defense's clean prediction and
    (2) targeted PGD toward the least-likely class y_LL of a classifier on the clean image (the target of the
    iterative least-likely method, Kurakin et al. 2017), and keeps, per example, the targeted image when the
    defense's prediction on it (rounded to 8 bits, as the referee reads it) is y_LL, else the untargeted one.
    Neither run nor the choice reads a label.

    Args:
        model: The defense as one model (:class:`Defended` or :class:`BothBranches`); logits or scores (N, K).
        x: Clean images, float (N, 3, H, W) in [0, 1]; not modified.
        eps: L∞ budget ε on the [0, 1] scale.
        steps: PGD iterations of each run.
        alpha: Step size; default ε / 4.
        defense_labels: ``x ↦ (N,)`` predictions of the real defense (for a gated defense, whose ``model`` is not
            its prediction); default ``model``'s argmax.
        least_likely_of: The classifier whose least-likely class is the target; default ``model``.
        generator: Source of both random starts (default a CPU generator seeded with 0 for each).

    Returns:
        Adversarial images, same shape/dtype/device as ``x``, within ``eps`` of ``x`` and in [0, 1].
    """
    check_images(x)
    alpha = eps / 4 if alpha is None else alpha
    labels_of = defense_labels or (lambda images: predict(model, images))
    target = least_likely(least_likely_of if least_likely_of is not None else model, x)
    with eval_mode(model):
        away = gradient.pgd(model, x, eps=eps, alpha=alpha, steps=steps, y=labels_of(x), generator=generator)
        toward = gradient.pgd(model, x, eps=eps, alpha=alpha, steps=steps, target=target, generator=generator)
    with torch.no_grad():
        hit = labels_of(torch.round(toward * 255) / 255) == target
    return torch.where(hit.view(-1, *([1] * (x.dim() - 1))), toward, away)


def run_adaptive_attack(build: Callable[[nn.Module, torch.device], nn.Module], *, steps: int = 20,
                        labels: Callable[[nn.Module, torch.device], Callable[[torch.Tensor], torch.Tensor]] | None
                        = None, argv: Sequence[str] | None = None) -> None:
    """A sample adaptive attack folder's ``main``: :func:`label_free_pgd` on ``build(target model, device)`` for
    every batch (away from the defense's clean prediction, and toward the target model's least-likely class).

    Args:
        build: Called once with the zoo's target model (eval mode) and the device; returns the defended model
            (:class:`Defended` or :class:`BothBranches`) from the defense's real modules.
        steps: PGD iterations of each run.
        labels: Optional: called once like ``build``; returns ``x ↦ predicted labels (N,)`` of the real defense
            (for gated defenses); default the defended model's own prediction.
        argv: Command-line arguments (default ``sys.argv[1:]``).
    """
    cache: dict[str, object] = {}

    def attack(model: nn.Module, x: torch.Tensor, eps: float) -> torch.Tensor:
        if "model" not in cache:
            cache["model"] = build(model, x.device)
            cache["labels"] = labels(model, x.device) if labels is not None else None
        defended = cache["model"]
        predictor = cache["labels"]
        assert isinstance(defended, nn.Module)
        return label_free_pgd(defended, x, eps=eps, steps=steps, least_likely_of=model,
                              defense_labels=predictor if callable(predictor) else None)

    submission.run_attack(attack, argv=argv)
