"""The wrapper every sample attack folder uses: arguments → zoo model(s) → attack each batch → uint8 PNGs.

A folder's ``attack.py`` only names its attack function and the zoo models it attacks::

    from submission_kit.attack_methods import gradient, submission

    def main(argv=None):
        submission.run_attack(lambda model, x, eps: gradient.fgsm(model, x, eps=eps), argv=argv)

The attack function receives the (eval-mode) model on :func:`submission_kit.sdk.device` (CUDA when present), a
float batch (N, 3, H, W) in [0, 1] and ε on the [0, 1] scale (``MAX_EPSILON / 255``); targeted attacks also
get the target classes (N,). Outputs are rounded to uint8 by :func:`submission_kit.sdk.from_tensor` and then clipped
against the input to [clip(x − ε), clip(x + ε)] in 0-255 units, so rounding can never leave the ε-ball.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from submission_kit import contract, sdk, zoo
from submission_kit.attack_methods.common import least_likely
from submission_kit.attack_methods.ensemble import LogitEnsemble

__all__ = ["load_models", "non_target_models", "run_attack", "run_targeted_attack", "run_universal_attack",
           "to_uint8_within"]

#: Images per batch (the NIPS 2017 organizers ran attacks on batches of 100).
BATCH_SIZE = 64

Attack = Callable[[nn.Module, torch.Tensor, float], torch.Tensor]
TargetedAttack = Callable[[nn.Module, torch.Tensor, float, torch.Tensor], torch.Tensor]


def non_target_models() -> list[str]:
    """Zoo models other than :data:`submission_kit.zoo.TARGET_MODEL` (what a black-box transfer attacker may use)."""
    return [name for name in zoo.names() if name != zoo.TARGET_MODEL]


def load_models(names: Sequence[str], device: torch.device | str) -> nn.Module | None:
    """Load zoo models in eval mode on ``device``: one model, a :class:`LogitEnsemble` of several, or None."""
    models = [zoo.load(name, device=device) for name in names]
    if not models:
        return None
    model = models[0] if len(models) == 1 else LogitEnsemble(models)
    return model.to(device).eval()


def to_uint8_within(adversarial: torch.Tensor, clean: np.ndarray, epsilon: int) -> np.ndarray:
    """Round a float batch to uint8 and clip it to the ε-ball of the clean uint8 batch.

    Args:
        adversarial: float (N, 3, H, W) in [0, 1].
        clean: uint8 (N, H, W, 3), the attack's input.
        epsilon: Integer ε in 0-255 units.

    Returns:
        uint8 (N, H, W, 3) with |out − clean| ≤ ε everywhere.
    """
    rounded = sdk.from_tensor(adversarial)
    low, high = contract.epsilon_ball(clean, epsilon)
    return np.clip(rounded, low, high)


def _run(
    attack: Callable[..., torch.Tensor],
    models: Sequence[str],
    argv: Sequence[str] | None,
    batch_size: int,
    targeted: bool,
) -> None:
    args = sdk.attack_args(argv)
    device = sdk.device()
    model = load_models(models, device)
    sdk.freeze_startup_objects()
    eps = contract.epsilon_to_unit(args.max_epsilon)
    targets = _read_targets(args.input_dir) if targeted else {}
    for batch in sdk.iter_batches(args.input_dir, batch_size=batch_size):
        x = sdk.to_tensor(batch.images, device)
        if targeted:
            adversarial = attack(model, x, eps, _batch_targets(model, x, batch.names, targets))
        else:
            adversarial = attack(model, x, eps)
        sdk.save_images(args.output_dir, batch.names, to_uint8_within(adversarial, batch.images, args.max_epsilon))


def _read_targets(input_dir) -> dict[str, int]:
    """``target_class.csv`` of the input folder; a missing file means every image uses its fallback target."""
    try:
        return sdk.read_targets(input_dir)
    except FileNotFoundError:
        print(f"warning: {input_dir}/target_class.csv not found", file=sys.stderr)
        return {}


def _batch_targets(model: nn.Module, x: torch.Tensor, names: Sequence[str], targets: dict[str, int]) -> torch.Tensor:
    """Target classes of a batch; an image without a valid target falls back to its least-likely class."""
    with torch.no_grad():
        num_classes = model(x[:1]).shape[1]
    wanted = [targets.get(name, -1) for name in names]
    missing = [name for name, t in zip(names, wanted) if not 0 <= t < num_classes]
    result = torch.tensor(wanted, dtype=torch.long, device=x.device)
    if missing:
        print(f"warning: no valid target class for {len(missing)} image(s) (e.g. {missing[0]}); "
              "using their least-likely class", file=sys.stderr)
        bad = (result < 0) | (result >= num_classes)
        result = torch.where(bad, least_likely(model, x), result)
    return result


def run_attack(
    attack: Attack,
    *,
    models: Sequence[str] | None = None,
    argv: Sequence[str] | None = None,
    batch_size: int = BATCH_SIZE,
) -> None:
    """Run a non-targeted attack as a NIPS 2017 submission (``INPUT_DIR OUTPUT_DIR MAX_EPSILON``).

    Args:
        attack: ``attack(model, x, eps) -> adversarial`` on float batches in [0, 1].
        models: Zoo models to attack (several are fused by :class:`LogitEnsemble`; an empty list passes
            ``None``); default ``[zoo.TARGET_MODEL]``.
        argv: Command-line arguments (default ``sys.argv[1:]``).
        batch_size: Images per batch.
    """
    _run(attack, [zoo.TARGET_MODEL] if models is None else list(models), argv, batch_size, targeted=False)


def run_targeted_attack(
    attack: TargetedAttack,
    *,
    models: Sequence[str] | None = None,
    argv: Sequence[str] | None = None,
    batch_size: int = BATCH_SIZE,
) -> None:
    """Run a targeted attack as a NIPS 2017 submission; targets come from ``INPUT_DIR/target_class.csv``.

    Args:
        attack: ``attack(model, x, eps, target) -> adversarial``, ``target`` int64 (N,).
        models: Zoo models to attack; default ``[zoo.TARGET_MODEL]``.
        argv: Command-line arguments (default ``sys.argv[1:]``).
        batch_size: Images per batch.
    """
    _run(attack, [zoo.TARGET_MODEL] if models is None else list(models), argv, batch_size, targeted=True)


def run_universal_attack(uap_file: str | Path, *, argv: Sequence[str] | None = None,
                         batch_size: int = BATCH_SIZE) -> None:
    """Run a stored universal perturbation as a NIPS 2017 attack: X' = clip(X + clip(v, −ε, ε), 0, 1).

    No model is loaded or queried (the perturbation is image-agnostic).

    Args:
        uap_file: float32 (3, h, w) ``.npy`` on the [0, 1] scale
        (:func:`submission_kit.attack_methods.universal.load_uap`);
            tiled when the images are larger.
        argv: Command-line arguments (default ``sys.argv[1:]``).
        batch_size: Images per batch.
    """
    from submission_kit.attack_methods import universal

    v = universal.load_uap(uap_file)
    run_attack(lambda model, x, eps: universal.apply_universal(x, v, eps=eps), models=[], argv=argv,
               batch_size=batch_size)
