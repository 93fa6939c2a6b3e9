"""Train the PRN for one zoo model and one norm (seed §4.1, Eq. 2) with the classifier frozen.

    python -m research.prn.train --model vgg6_w48 --norm inf [--width 32 --epochs 3 --max-minutes 15]

Each batch of training images (all training images except the held-out validation images of
:mod:`research.prn.splits`) is perturbed image by image with probability 1/2 by a perturbation drawn uniformly
from the train set 𝒫* = 𝒫 ∪ 𝒫_s (real train pool + synthetic; ``--real-share r`` draws a real one with
probability r instead), clipped to [0, 1] and rounded to the uint8 grid
(:func:`research.prn.perturb.perturb_each`; checked every batch). The loss is Eq. 2 of the seed: the
cross-entropy of 𝒞(ℛ(x)) against ℓ = argmax 𝒞(x_clean), the classifier's label of the *clean* image (no ground
truth). Only the PRN's parameters are optimized; the classifier is in eval mode with frozen parameters, and its
state dict is verified unchanged at the end. Adam (β = 0.9, 0.999), learning rate 1e-3 multiplied by 0.9 every
1,000 iterations (the seed: "decay it by 10% after each 1K iterations"; its initial rate 0.01 is replaced by the
authors' code's 1e-3), batches of 64 (the seed's size).

Seeded: the seed initializes the PRN (torch's global generator, as ``research.zoo.train`` does) and drives an
explicit generator for data order and perturbations. Writes the state dict to ``--out`` (default
:func:`submission_kit.prn.paths.prn_path`), a JSON record and the log next to it.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from research import cifar10, cli, provenance
from submission_kit import sdk, zoo
from submission_kit.prn.network import PRN, save_prn
from submission_kit.prn.paths import NORMS, POOLS_DIR, WEIGHTS_DIR, prn_path

from . import splits
from .errors import run_command
from .perturb import check_png_like, perturb_each

__all__ = ["TrainConfig", "TrainResult", "agreement", "clean_labels", "draw_weights", "main", "train_prn"]


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Hyper-parameters of one PRN training run.

    Attributes:
        width: PRN width, feature maps per layer, ≥ 1 (the seed: 64).
        epochs: Passes over the training images, > 0 (fractions allowed).
        batch_size: Images per step, ≥ 1 (the seed: 64).
        lr: Initial Adam learning rate, > 0.
        decay: Multiplicative learning-rate decay, in (0, 1] ...
        decay_every: ... applied every this many iterations, ≥ 1.
        p_perturb: Probability that an image is perturbed, in [0, 1] (the seed: 0.5).
        real_share: Probability that a perturbed image gets a real (rather than a synthetic) perturbation; the
            first ``real_count`` rows of the perturbations passed to :func:`train_prn` are the real ones. ``None``
            draws uniformly over all of 𝒫* (the seed), i.e. a real share of |𝒫| / |𝒫*|.
        seed: Seed of initialization, data order and perturbation draws.
        max_seconds: Optional wall-clock budget in seconds (checked between steps); None for none.
        log_every: Iterations between progress lines, ≥ 1.
    """

    width: int = 32
    epochs: float = 3.0
    batch_size: int = 64
    lr: float = 1e-3
    decay: float = 0.9
    decay_every: int = 1000
    p_perturb: float = 0.5
    real_share: float | None = None
    seed: int = 0
    max_seconds: float | None = None
    log_every: int = 50


@dataclass
class TrainResult:
    """Outcome of :func:`train_prn`.

    Attributes:
        prn: The trained PRN (eval mode).
        iterations: Optimizer steps.
        images: Training images seen (with repetition).
        seconds: Wall-clock training time.
        stopped_by: ``"epochs"`` or ``"max_seconds"``.
        history: One dict per progress line (iteration, loss, agreement on clean / perturbed images, lr, img/s).
    """

    prn: PRN
    iterations: int = 0
    images: int = 0
    seconds: float = 0.0
    stopped_by: str = ""
    history: list[dict[str, float]] = field(default_factory=list)


@torch.no_grad()
def clean_labels(classifier: nn.Module, images: np.ndarray, device: torch.device | str,
                 batch_size: int = 500) -> torch.Tensor:
    """ℓ = argmax 𝒞(x) of uint8 images (N, H, W, 3) → int64 (N,) on the CPU."""
    out = [classifier(sdk.to_tensor(images[s:s + batch_size], device)).argmax(1).cpu()
           for s in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def draw_weights(total: int, real_count: int, real_share: float | None) -> torch.Tensor | None:
    """Sampling weights over the rows of 𝒫* (real rows first) that give real rows the share ``real_share``.

    Args:
        total: |𝒫*|, the number of perturbations (real + synthetic).
        real_count: |𝒫|, how many of the first rows are real, 1 ≤ real_count ≤ total.
        real_share: Probability of drawing a real row, in [0, 1]; ``None`` for uniform over all rows.

    Returns:
        float64 (total,) summing to 1, or ``None`` when the draw is uniform (no synthetic rows or ``None``).

    Raises:
        ValueError: ``real_share`` outside [0, 1] or ``real_count`` outside [1, total].
    """
    if not 1 <= real_count <= total:
        raise ValueError(f"real_count must be in [1, {total}], got {real_count}")
    if real_share is None or real_count == total:
        return None
    if not 0.0 <= real_share <= 1.0:
        raise ValueError(f"real_share must be in [0, 1], got {real_share}")
    weights = torch.empty(total, dtype=torch.float64)
    weights[:real_count] = real_share / real_count
    weights[real_count:] = (1.0 - real_share) / (total - real_count)
    return weights


def train_prn(classifier: nn.Module, images: np.ndarray, labels: torch.Tensor, perturbations: torch.Tensor,
              config: TrainConfig, *, real_count: int | None = None, device: torch.device | str = "cpu",
              log: Callable[[str], None] = lambda message: None) -> TrainResult:
    """Train a fresh PRN in front of the frozen ``classifier`` (seed Eq. 2).

    Args:
        classifier: Logits (N, K) for images in [0, 1]; put in eval mode, parameters must not require grad.
        images: Training images, uint8 (N, H, W, 3).
        labels: ℓ, the classifier's labels of the clean ``images``, int64 (N,).
        perturbations: The train set 𝒫*, float (P, 3, H, W) on the [0, 1] scale, P ≥ 1.
        config: Hyper-parameters.
        real_count: How many of the first ``perturbations`` are real (default: all); used with
            ``config.real_share``.
        device: Where to train.
        log: Progress messages.

    Returns:
        A :class:`TrainResult`.

    Raises:
        RuntimeError: The classifier's state dict changed during training (it must stay frozen).
        ValueError: A classifier parameter requires grad, or a training batch leaves [0, 1] / the uint8 grid.
    """
    if any(p.requires_grad for p in classifier.parameters()):
        raise ValueError("freeze the classifier first (classifier.requires_grad_(False))")
    if len(perturbations) == 0 or len(images) != len(labels):
        raise ValueError("need at least one perturbation and one label per image")
    weights = draw_weights(len(perturbations), len(perturbations) if real_count is None else real_count,
                           config.real_share)
    classifier.eval()
    before = {k: v.detach().clone() for k, v in classifier.state_dict().items()}
    torch.manual_seed(config.seed)
    prn = PRN(width=config.width).to(device)
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(prn.parameters(), lr=config.lr, betas=(0.9, 0.999))
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.decay_every, gamma=config.decay)
    perturbations = perturbations.to(device=device, dtype=torch.float32)
    n = len(images)
    total_steps = math.ceil(config.epochs * n / config.batch_size)
    result = TrainResult(prn=prn)
    started = time.monotonic()
    window: dict[str, list[float]] = {"loss": [], "clean": [], "perturbed": []}
    order = torch.zeros(0, dtype=torch.long)
    prn.train()
    while result.iterations < total_steps:
        if config.max_seconds is not None and time.monotonic() - started > config.max_seconds:
            result.stopped_by = "max_seconds"
            break
        if len(order) < config.batch_size:
            order = torch.cat([order, torch.randperm(n, generator=generator)])
        index, order = order[:config.batch_size], order[config.batch_size:]
        b = len(index)
        pick = (torch.randint(len(perturbations), (b,), generator=generator) if weights is None
                else torch.multinomial(weights, b, replacement=True, generator=generator))
        chosen = torch.where(torch.rand(b, generator=generator) < config.p_perturb, pick, torch.full_like(pick, -1))
        x = perturb_each(sdk.to_tensor(images[index.numpy()], device), perturbations, chosen)
        check_png_like(x, "training batch")
        target = labels[index].to(device)
        logits = classifier(prn(x))
        loss = F.cross_entropy(logits, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        result.iterations += 1
        result.images += b
        with torch.no_grad():
            right = (logits.argmax(1) == target).float().cpu()
            perturbed = chosen >= 0
        window["loss"].append(float(loss.detach()))
        window["clean"] += right[~perturbed].tolist()
        window["perturbed"] += right[perturbed].tolist()
        if result.iterations % config.log_every == 0 or result.iterations == total_steps:
            seconds = time.monotonic() - started
            line = {"iteration": result.iterations, "epoch": round(result.images / n, 3),
                    "loss": round(float(np.mean(window["loss"])), 4),
                    "agree_clean": round(float(np.mean(window["clean"])), 4) if window["clean"] else float("nan"),
                    "agree_perturbed": (round(float(np.mean(window["perturbed"])), 4) if window["perturbed"]
                                        else float("nan")),
                    "lr": schedule.get_last_lr()[0], "images_per_second": round(result.images / seconds, 1),
                    "minutes": round(seconds / 60, 2)}
            result.history.append(line)
            log(f"it {line['iteration']} (epoch {line['epoch']:.2f}): loss {line['loss']:.4f}, 𝒞(ℛ(x)) = ℓ on "
                f"clean {line['agree_clean']:.3f} / perturbed {line['agree_perturbed']:.3f}, lr {line['lr']:.2e}, "
                f"{line['images_per_second']:.0f} img/s, {line['minutes']:.1f} min")
            window = {"loss": [], "clean": [], "perturbed": []}
    result.stopped_by = result.stopped_by or "epochs"
    result.seconds = time.monotonic() - started
    prn.eval()
    after = classifier.state_dict()
    changed = [k for k, v in before.items() if not torch.equal(v, after[k])]
    if changed:
        raise RuntimeError(f"the classifier changed during PRN training: {changed[:5]}")
    return result


@torch.no_grad()
def agreement(classifier: nn.Module, prn: nn.Module, images: torch.Tensor, labels: torch.Tensor,
              perturbations: torch.Tensor, generator: torch.Generator, batch_size: int = 250) -> dict[str, float]:
    """How often the classifier keeps its clean label ℓ, on clean and on perturbed images, with and without ℛ.

    Every image is also perturbed by one perturbation drawn uniformly from ``perturbations``.

    Args:
        classifier, prn: Eval-mode models.
        images: float (N, 3, H, W) in [0, 1] on the uint8 grid.
        labels: ℓ of the clean images (N,).
        perturbations: (P, 3, H, W).
        generator: Draws the perturbation of each image.
        batch_size: Images per forward pass.

    Returns:
        Fractions ``clean_rectified`` (𝒞(ℛ(x)) = ℓ), ``perturbed`` (𝒞(x + ρ) = ℓ), ``perturbed_rectified``
        (𝒞(ℛ(x + ρ)) = ℓ).
    """
    pick = torch.randint(len(perturbations), (len(images),), generator=generator)
    counts = {"clean_rectified": 0, "perturbed": 0, "perturbed_rectified": 0}
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size]
        y = labels[start:start + batch_size].to(x.device)
        xp = perturb_each(x, perturbations, pick[start:start + batch_size])
        counts["clean_rectified"] += int((classifier(prn(x).clamp(0, 1)).argmax(1) == y).sum())
        counts["perturbed"] += int((classifier(xp).argmax(1) == y).sum())
        counts["perturbed_rectified"] += int((classifier(prn(xp).clamp(0, 1)).argmax(1) == y).sum())
    return {k: round(v / max(len(images), 1), 4) for k, v in counts.items()}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse arguments, train, write the weights, record and log; return the record."""
    from .pool import check_against_test_pools, load_pool
    from .synthetic import load_synthetic

    defaults = TrainConfig()
    shared = cli.parent(
        seed=cli.Option(default=defaults.seed),
        out=cli.Option(help="state dict (default <weights-dir>/<model>/...)"),
        threads=cli.Option(help="torch threads (default: torch's)"),
        images=cli.Option(help="seeded subset of the training images (smoke tests)"),
    )
    parser = argparse.ArgumentParser(parents=[shared], description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", default=zoo.TARGET_MODEL, help="zoo model the PRN protects")
    parser.add_argument("--norm", choices=NORMS, required=True, help="perturbation type of the training set")
    parser.add_argument("--width", type=int, default=defaults.width, help="PRN feature maps (seed: 64)")
    parser.add_argument("--epochs", type=float, default=defaults.epochs)
    parser.add_argument("--max-minutes", type=float, default=None, help="wall-clock budget")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--decay", type=float, default=defaults.decay, help="lr factor every --decay-every steps")
    parser.add_argument("--decay-every", type=int, default=defaults.decay_every)
    parser.add_argument("--p-perturb", type=float, default=defaults.p_perturb)
    parser.add_argument("--real-share", type=float, default=None,
                        help="probability that a perturbed image gets a real (not synthetic) perturbation "
                             "(default: uniform over real + synthetic, the seed)")
    parser.add_argument("--no-synthetic", action="store_true", help="train on the real pool only")
    parser.add_argument("--pools-dir", type=Path, default=POOLS_DIR, help="folder of the pools")
    parser.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR, help="folder of the PRNs and detectors")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    command = "python -m research.prn.train " + " ".join(shlex.quote(a) for a in
                                                      (sys.argv[1:] if argv is None else argv))
    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out or prn_path(args.model, args.norm, args.weights_dir)
    lines: list[str] = []

    def log(message: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {message}"
        lines.append(line)
        print(line, flush=True)

    device = sdk.device()
    pool = load_pool(model=args.model, norm=args.norm, role="train", root=args.pools_dir)
    disjoint = check_against_test_pools(pool, args.pools_dir)
    synthetic = torch.zeros(0, *pool.vectors.shape[1:])
    if not args.no_synthetic:
        synthetic = load_synthetic(args.model, args.norm, pool, root=args.pools_dir)
    perturbations = torch.cat([pool.vectors, synthetic])
    classifier = zoo.load(args.model, device=device)
    train_images, _ = cifar10.load_split("train")
    validation_index = splits.validation_indices(len(train_images), pool.manifest["spec"]["validation_size"])
    train_index = np.setdiff1d(np.arange(len(train_images)), validation_index)
    if args.images is not None:
        rng = np.random.default_rng(args.seed)
        train_index = np.sort(rng.choice(train_index, size=min(args.images, len(train_index)), replace=False))
    images = train_images[train_index]
    t0 = time.monotonic()
    labels = clean_labels(classifier, images, device)
    log(f"PRN for {args.model}, norm {args.norm}: {len(images)} training images (labels in "
        f"{time.monotonic() - t0:.0f} s), {len(pool)} real + {len(synthetic)} synthetic train perturbations, "
        f"{torch.get_num_threads()} threads, {device}")
    if len(synthetic) == 0 and not args.no_synthetic:
        log("warning: the synthetic set is empty (Algorithm 1 accepted no walk); training on the real pool only")
    config = TrainConfig(width=args.width, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         decay=args.decay, decay_every=args.decay_every, p_perturb=args.p_perturb,
                         real_share=args.real_share, seed=args.seed,
                         max_seconds=None if args.max_minutes is None else args.max_minutes * 60)
    if args.real_share is not None and not 0.0 <= args.real_share <= 1.0:
        parser.error(f"--real-share must be in [0, 1], got {args.real_share}")
    result = train_prn(classifier, images, labels, perturbations, config, real_count=len(pool), device=device,
                       log=log)
    validation = sdk.to_tensor(train_images[validation_index], device)
    val_labels = clean_labels(classifier, train_images[validation_index], device)
    held_out = {"real": agreement(classifier, result.prn, validation, val_labels, pool.vectors,
                                  torch.Generator().manual_seed(args.seed))}
    if len(synthetic):
        held_out["synthetic"] = agreement(classifier, result.prn, validation, val_labels, synthetic,
                                          torch.Generator().manual_seed(args.seed))
    log(f"held-out validation images ({len(validation)}), fraction keeping the clean label: {held_out}")
    record = {
        "command": command,
        "paper": "Akhtar, Liu, Mian, Defense against Universal Adversarial Perturbations, CVPR 2018, §4.1",
        "model": args.model, "norm": args.norm, "train_config": asdict(config),
        "pool": pool.path.name, "pool_rows": [r["row"] for r in pool.records], "pool_digest": pool.digest(),
        "real_perturbations": len(pool), "synthetic_perturbations": len(synthetic),
        "checked_disjoint_from_test_pools_max_abs_cosine": disjoint, "training_images": len(images),
        "iterations": result.iterations,
        "epochs_done": round(result.images / len(images), 3), "stopped_by": result.stopped_by,
        "minutes": round(result.seconds / 60, 2),
        "images_per_second": round(result.images / max(result.seconds, 1e-9), 1),
        "final": result.history[-1] if result.history else {}, "held_out_validation": held_out,
        "classifier_unchanged": True, **provenance.environment(device),
    }
    save_prn(out, result.prn, record)
    out.with_suffix(".log").write_text("\n".join(lines) + "\n")
    log(f"wrote {out} (+ .json, .log)")
    return record


if __name__ == "__main__":
    sys.exit(run_command(main))
