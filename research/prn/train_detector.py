"""Train the perturbation detector ℬ of one zoo model and norm on the residuals of its trained PRN (seed §4.3).

    python -m research.prn.train_detector --model vgg6_w48 --norm inf [--images 10000 --kernel linear]

A seeded subset of the training images (never the held-out validation images of :mod:`research.prn.splits`) is
perturbed image by image with probability 1/2 by a perturbation drawn from the train set 𝒫* (real pool +
synthetic, as for the PRN), PNG-rounded; ℬ learns clean vs perturbed from ℱ(I − ℛ(I))
(:mod:`submission_kit.prn.detector`). Its accuracy is then measured on the held-out validation images, perturbed with
probability 1/2 by the real train perturbations. Writes :func:`submission_kit.prn.paths.detector_path` (joblib) and a
JSON record next to it.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from research import cifar10, cli, provenance
from submission_kit import sdk, zoo
from submission_kit.prn.detector import Detector, residual_features
from submission_kit.prn.network import load_prn
from submission_kit.prn.paths import NORMS, POOLS_DIR, WEIGHTS_DIR, detector_path, prn_path, train_command

from . import splits
from .errors import run_command
from .perturb import perturb_each

__all__ = ["main", "mixed_batch"]


def mixed_batch(images: torch.Tensor, perturbations: torch.Tensor, generator: torch.Generator,
                p: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Perturb each image with probability ``p`` by a uniformly drawn perturbation.

    Args:
        images: float (N, 3, H, W) in [0, 1] on the uint8 grid.
        perturbations: (P, 3, H, W).
        generator: CPU generator (draws N uniforms, then N indices).
        p: Probability of perturbing an image.

    Returns:
        ``(mixed images, perturbed mask (N,) bool on the CPU)``.
    """
    perturbed = torch.rand(len(images), generator=generator) < p
    pick = torch.randint(len(perturbations), (len(images),), generator=generator)
    index = torch.where(perturbed, pick, torch.full_like(pick, -1))
    return perturb_each(images, perturbations, index), perturbed


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse arguments, train and evaluate the detector, write it; return its record."""
    from .pool import check_against_test_pools, load_pool
    from .synthetic import load_synthetic

    shared = cli.parent(
        seed=cli.Option(default=0),
        out=cli.Option(help="detector .joblib (default <weights-dir>/<model>/...)"),
        threads=cli.Option(help="torch threads (default: torch's)"),
        images=cli.Option(default=10000, help="training images (about half perturbed)"),
    )
    parser = argparse.ArgumentParser(parents=[shared], description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", default=zoo.TARGET_MODEL, help="zoo model the PRN protects")
    parser.add_argument("--norm", choices=NORMS, required=True)
    parser.add_argument("--kernel", choices=("linear", "rbf"), default="linear", help="SVM kernel")
    parser.add_argument("--C", type=float, default=1.0, help="SVM regularization")
    parser.add_argument("--no-synthetic", action="store_true", help="perturb with the real pool only")
    parser.add_argument("--prn", type=Path, default=None, help="PRN weights (default submission_kit/prn/weights/...)")
    parser.add_argument("--pools-dir", type=Path, default=POOLS_DIR, help="folder of the pools")
    parser.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR, help="folder of the PRNs and detectors")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    command = "python -m research.prn.train_detector " + " ".join(shlex.quote(a) for a in
                                                               (sys.argv[1:] if argv is None else argv))
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.monotonic()
    device = sdk.device()
    weights = args.prn or prn_path(args.model, args.norm, args.weights_dir)
    if not weights.is_file():
        raise SystemExit(f"PRN weights {weights} not found; train them first:\n    "
                         f"{train_command(args.model, args.norm)}")
    prn = load_prn(weights, device)
    pool = load_pool(model=args.model, norm=args.norm, role="train", root=args.pools_dir)
    disjoint = check_against_test_pools(pool, args.pools_dir)
    synthetic = torch.zeros(0, *pool.vectors.shape[1:]) if args.no_synthetic else load_synthetic(
        args.model, args.norm, pool, root=args.pools_dir)
    perturbations = torch.cat([pool.vectors, synthetic])
    train_images, _ = cifar10.load_split("train")
    validation_index = splits.validation_indices(len(train_images), pool.manifest["spec"]["validation_size"])
    candidates = np.setdiff1d(np.arange(len(train_images)), validation_index)
    rng = np.random.default_rng(args.seed)
    index = np.sort(rng.choice(candidates, size=min(args.images, len(candidates)), replace=False))
    generator = torch.Generator().manual_seed(args.seed)
    features, labels = [], []
    for start in range(0, len(index), 1000):
        x, perturbed = mixed_batch(sdk.to_tensor(train_images[index[start:start + 1000]], device), perturbations,
                                   generator)
        features.append(residual_features(prn, x))
        labels.append(perturbed.numpy())
    features_all, labels_all = np.concatenate(features), np.concatenate(labels)
    seconds_features = time.monotonic() - started
    print(f"features of {len(index)} training images ({int(labels_all.sum())} perturbed) in {seconds_features:.0f} s",
          flush=True)
    t0 = time.monotonic()
    detector = Detector.fit(features_all, labels_all, kernel=args.kernel, C=args.C, seed=args.seed)
    seconds_fit = time.monotonic() - t0
    train_accuracy = float((detector.predict(features_all) == labels_all).mean())
    x_val, val_perturbed = mixed_batch(sdk.to_tensor(train_images[validation_index], device), pool.vectors,
                                       torch.Generator().manual_seed(args.seed + 1))
    val_detected = detector.predict(residual_features(prn, x_val))
    val_accuracy = float((val_detected == val_perturbed.numpy()).mean())
    detector.record.update({
        "command": command,
        "paper": "Akhtar, Liu, Mian, Defense against Universal Adversarial Perturbations, CVPR 2018, §4.3",
        "model": args.model, "norm": args.norm, "prn": weights.name,
        "features": "log(|DCT-II ortho(gray(x - PRN(x)))| + 1e-6)",
        "pool_digest": pool.digest(), "checked_disjoint_from_test_pools_max_abs_cosine": disjoint,
        "real_perturbations": len(pool), "synthetic_perturbations": len(synthetic),
        "training_images": len(index), "training_perturbed": int(labels_all.sum()),
        "train_accuracy": round(train_accuracy, 4),
        "validation_images": len(validation_index), "validation_perturbed": int(val_perturbed.sum()),
        "validation_accuracy_real_train_perturbations": round(val_accuracy, 4),
        "seconds_features": round(seconds_features, 1), "seconds_fit": round(seconds_fit, 1),
        "seconds": round(time.monotonic() - started, 1), **provenance.environment(device),
    })
    out = args.out or detector_path(args.model, args.norm, args.weights_dir)
    detector.save(out)
    print(f"detector accuracy: training {train_accuracy:.4f}, held-out validation {val_accuracy:.4f} "
          f"({seconds_fit:.0f} s to fit); wrote {out}", flush=True)
    return detector.record


if __name__ == "__main__":
    sys.exit(run_command(main))
