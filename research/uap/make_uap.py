"""Compute a universal adversarial perturbation for a zoo model and store it in an attack folder.

Moosavi-Dezfooli et al., "Universal adversarial perturbations", CVPR 2017: DeepFool on a seeded subset of the
shared CIFAR-10 training images, then the fooling rate on those images and on the held-out shared test images.
Writes ``OUT`` (float32 (3, 32, 32) on the [0, 1] scale, ‖v‖∞ ≤ ξ) and ``OUT`` with suffix ``.json`` (the
command, seed, counts, fooling rates, timing)::

    python -m research.uap.make_uap --model vgg6_w48 --xi 10 --n-train 2000 --max-iter-uni 5 \
        --max-minutes 20 --seed 0 --out attacks/uap/uap.npy

One DeepFool step costs a forward/backward pass over 9 copies of the image, and an image needs about 2-3 steps,
so a pass over 2,000 images takes on the order of 10-15 minutes for vgg6_w48 on a free 2-core CPU (later passes
are cheaper: images already fooled are skipped). ``--max-minutes`` bounds the run (checked between images, recorded
as ``stopped_by``); without it the result is bit-reproducible for a given seed. ``--deepfool-batch B`` checks and
DeepFool-s B images at once (see :func:`submission_kit.attack_methods.universal.universal_perturbation`; about 10×
faster on a
CPU at B = 32).

``--method sgd`` computes the perturbation by minibatch gradient ascent of the cross-entropy instead (Shafahi et
al., "Universal adversarial training", AAAI 2020;
:func:`submission_kit.attack_methods.universal.sgd_universal_perturbation`),
as ``attacks/uap_sgd`` does::

    python -m research.uap.make_uap --method sgd --model vgg6_w48 --xi 10 --n-train 5000 --epochs 10 \
        --seed 0 --out attacks/uap_sgd/uap.npy
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from research import cifar10, cli, provenance
from submission_kit import contract, sdk, zoo
from submission_kit.attack_methods import universal
from submission_kit.attack_methods.universal import load_uap  # noqa: F401  (re-exported: make_uap.load_uap)

#: What ``--method`` computes, for the JSON record.
PAPERS = {
    "deepfool": "Moosavi-Dezfooli, Fawzi, Fawzi, Frossard, Universal adversarial perturbations, CVPR 2017",
    "sgd": "Shafahi, Najibi, Xu, Dickerson, Davis, Goldstein, Universal adversarial training, AAAI 2020",
}


def _to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    return sdk.to_tensor(images, device)


@torch.no_grad()
def _test_predictions(model: torch.nn.Module, images: np.ndarray, v: torch.Tensor, epsilon: int | None,
                      device: torch.device, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Predictions on clean images, on clip(x + v) in float, and as the attack folder applies v (projected to
    ε, added, rounded to uint8, clipped to the ε-ball; only when ``epsilon`` is given)."""
    clean_pred, float_pred, uint8_pred = [], [], []
    for start in range(0, len(images), batch_size):
        clean = images[start:start + batch_size]
        x = _to_tensor(clean, device)
        clean_pred.append(model(x).argmax(1).cpu())
        float_pred.append(model(universal.apply_universal(x, v)).argmax(1).cpu())
        if epsilon is not None:
            adv = universal.apply_universal(x, v, eps=epsilon / 255.0)
            rounded = np.clip(sdk.from_tensor(adv), *contract.epsilon_ball(clean, epsilon))
            uint8_pred.append(model(_to_tensor(rounded, device)).argmax(1).cpu())
    return torch.cat(clean_pred), torch.cat(float_pred), torch.cat(uint8_pred) if uint8_pred else torch.zeros(0)


def main(argv: Sequence[str] | None = None) -> dict:
    """Parse arguments, compute the UAP, write ``--out`` and its JSON record; return the record."""
    shared = cli.parent(
        seed=cli.Option(default=0, help="seeds the subset and the pass order"),
        out=cli.Option(required=True, help="output .npy (a .json goes next to it)"),
    )
    parser = argparse.ArgumentParser(parents=[shared], description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", default=zoo.TARGET_MODEL, help="zoo model to compute the UAP on")
    parser.add_argument("--xi", type=float, default=10.0, help="radius ξ in 0-255 units (L∞) or L2 units x255")
    parser.add_argument("--p", choices=("inf", "2"), default="inf", help="norm of the ball")
    parser.add_argument("--method", choices=("deepfool", "sgd"), default="deepfool",
                        help="deepfool: Moosavi-Dezfooli et al. 2017; sgd: Shafahi et al. 2020")
    parser.add_argument("--delta", type=float, default=0.2, help="stop at fooling rate 1 - delta")
    parser.add_argument("--max-iter-uni", type=int, default=5, help="pass cap over the training subset")
    parser.add_argument("--num-classes", type=int, default=10, help="DeepFool top-k candidate classes")
    parser.add_argument("--overshoot", type=float, default=0.02, help="DeepFool overshoot")
    parser.add_argument("--max-iter-df", type=int, default=10, help="DeepFool iteration cap")
    parser.add_argument("--n-train", type=int, default=2000, help="seeded subset of the training split")
    parser.add_argument("--deepfool-batch", type=int, default=1,
                        help="images checked and DeepFool-ed together (1 = the paper's one-at-a-time loop)")
    parser.add_argument("--epochs", type=int, default=10, help="sgd: passes over the training subset")
    parser.add_argument("--step-size", type=float, default=1.275,
                        help="sgd: step in 0-255 units (L∞: sign step; L2: step length)")
    parser.add_argument("--beta", type=float, default=None, help="sgd: clamp of the per-image loss (none)")
    parser.add_argument("--max-minutes", type=float, default=None, help="optional wall-clock budget")
    parser.add_argument("--weights", type=Path, default=None, help="state dict instead of the zoo's weights file")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    torch.set_grad_enabled(True)
    device = sdk.device()
    p = math.inf if args.p == "inf" else 2.0
    xi = args.xi / 255.0
    model = zoo.load(args.model, device=device, weights=args.weights)
    train_images, _ = cifar10.load_split("train")
    test_images, test_labels = cifar10.load_split("test")
    rng = np.random.default_rng(args.seed)
    subset = np.sort(rng.choice(len(train_images), size=min(args.n_train, len(train_images)), replace=False))
    train = _to_tensor(train_images[subset], device)

    def log(message: str) -> None:
        print(message, flush=True)

    log(f"UAP on {args.model}: {len(subset)} training images, xi={args.xi}/255, p={args.p}, seed={args.seed}")
    budget = None if args.max_minutes is None else args.max_minutes * 60
    generator = torch.Generator().manual_seed(args.seed)
    if args.method == "sgd":
        result = universal.sgd_universal_perturbation(
            model, train, xi=xi, p=p, epochs=args.epochs, step_size=args.step_size / 255.0, beta=args.beta,
            generator=generator, max_seconds=budget, log=log)
    else:
        result = universal.universal_perturbation(
            model, train, xi=xi, p=p, delta=args.delta, max_iter_uni=args.max_iter_uni,
            num_classes=args.num_classes, overshoot=args.overshoot, max_iter_df=args.max_iter_df,
            generator=generator, deepfool_batch=args.deepfool_batch, max_seconds=budget, log=log)
    v = result.v.float().cpu()
    started = time.monotonic()
    epsilon = int(round(args.xi)) if p == math.inf and float(args.xi).is_integer() else None
    clean_pred, float_pred, uint8_pred = _test_predictions(model, test_images, v.to(device), epsilon, device)
    labels = torch.from_numpy(test_labels)
    record = {
        "command": "python -m research.uap.make_uap " + " ".join(shlex.quote(a) for a in
                                                                   (sys.argv[1:] if argv is None else argv)),
        "paper": PAPERS[args.method],
        "method": args.method,
        "model": args.model,
        "weights": str(args.weights) if args.weights else "zoo",
        "xi_255": args.xi,
        "p": args.p,
        "delta": args.delta,
        "max_iter_uni": args.max_iter_uni,
        "num_classes": args.num_classes,
        "overshoot": args.overshoot,
        "max_iter_df": args.max_iter_df,
        "deepfool_batch": args.deepfool_batch,
        "epochs": args.epochs,
        "step_size_255": args.step_size,
        "beta": args.beta,
        "seed": args.seed,
        "train_images": int(len(subset)),
        "train_split_size": int(len(train_images)),
        "test_images": int(len(test_images)),
        "passes": result.passes,
        "stopped_by": result.stopped_by,
        "deepfool_calls": result.deepfool_calls,
        "updates": result.updates,
        "fooling_rate_per_pass_train": [round(r, 4) for r in result.fooling_rates],
        "fooling_rate_train": round(result.fooling_rates[-1], 4),
        "fooling_rate_test": round(float((float_pred != clean_pred).float().mean()), 4),
        "fooling_rate_test_uint8_at_xi": (round(float((uint8_pred != clean_pred).float().mean()), 4)
                                          if epsilon is not None else None),
        "clean_accuracy_test": round(float((clean_pred == labels).float().mean()), 4),
        "perturbed_accuracy_test": round(float((float_pred == labels).float().mean()), 4),
        "linf_255": round(float(v.abs().max()) * 255, 4),
        "l2_255": round(float(v.norm()) * 255, 4),
        "seconds_uap": round(result.seconds, 1),
        "seconds_evaluation": round(time.monotonic() - started, 1),
        **provenance.environment(device),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.save(args.out, v.numpy().astype(np.float32))
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    log(json.dumps(record, indent=2))
    return record


if __name__ == "__main__":
    main()
