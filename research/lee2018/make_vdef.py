"""Compute the defensive perturbation v_def (Lee, Park & Lee 2018, Eq. 1) once and store it in defense folders.

Uses a seeded subset of the shared CIFAR-10 *training* images (the test images are what defenses are evaluated
on, so they are never used) and a zoo model (default: the target model the defenses protect). Writes every
``--out`` path (float32 (3, 32, 32) on the [0, 1] scale) with a JSON record next to it (command, seed, counts of
draws tried and kept, ε, model, timing)::

    python -m research.lee2018.make_vdef --out defenses/tv_denoise_vdef/v_def.npy \\
        --out defenses/nl_means_vdef/v_def.npy

With the defaults (10,000 images, one draw each, as the paper's 10K images) this takes about a minute on a
2-core CPU.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from research import cifar10, cli, provenance
from submission_kit import contract, sdk, zoo
from submission_kit.defense_blocks import vdef


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse arguments, compute v_def, write every ``--out`` and its JSON record; return the record."""
    shared = cli.parent(
        seed=cli.Option(default=0, help="seeds the subset and the draws"),
        out=cli.Option(required=True, repeat=True,
                       help="output .npy (repeat to write the same v_def into several folders)"),
        images=cli.Option(default=10000, help="seeded subset of the training split"),
    )
    parser = argparse.ArgumentParser(parents=[shared], description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", default=zoo.TARGET_MODEL, help="zoo model whose loss selects the draws")
    parser.add_argument("--weights", type=Path, default=None, help="state dict instead of the zoo's weights file")
    parser.add_argument("--epsilon", type=float, default=10.0,
                        help="scale ε of the draws and of v_def, 0-255 units (std of εδ; δ ~ N(0, I))")
    parser.add_argument("--draws", type=int, default=1, help="Gaussian draws per image")
    parser.add_argument("--criterion", choices=vdef.CRITERIA, default="loss",
                        help="loss: draws that lower the loss (Eq. 1); corrected: draws that fix a wrong label")
    parser.add_argument("--batch-size", type=int, default=250, help="images per forward pass (part of the draw "
                                                                     "order)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    started = time.monotonic()
    device = sdk.device()
    model = zoo.load(args.model, device=device, weights=args.weights)
    train_images, train_labels = cifar10.load_split("train")
    rng = np.random.default_rng(args.seed)
    subset = np.sort(rng.choice(len(train_images), size=min(args.images, len(train_images)), replace=False))
    images = sdk.to_tensor(train_images[subset])
    labels = torch.from_numpy(train_labels[subset]).long()
    print(f"v_def on {args.model}: {len(subset)} training images x {args.draws} draws, epsilon={args.epsilon}/255, "
          f"criterion={args.criterion}, seed={args.seed}", flush=True)
    result = vdef.compute_vdef(model, images, labels, epsilon=contract.pixels_to_unit(args.epsilon),
                               generator=torch.Generator().manual_seed(args.seed), draws_per_image=args.draws,
                               batch_size=args.batch_size, criterion=args.criterion)
    record = {
        "command": "python -m research.lee2018.make_vdef " + " ".join(
            shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)),
        "paper": "S. Lee, S. Park, J. Lee, Defensive denoising methods against adversarial attack, 2018 (Eq. 1)",
        "definition": "v_def = epsilon * mean of the draws delta ~ N(0, I) with "
                      "L_y(clip(x + epsilon*delta, 0, 1)) < L_y(x) (criterion 'loss'); zero when none",
        "model": args.model,
        "weights": str(args.weights) if args.weights else "zoo",
        "data": f"CIFAR-10 training split, numpy default_rng({args.seed}).choice({len(train_images)}, "
                f"{len(subset)}, replace=False), sorted",
        "seed": args.seed,
        "draws_per_image": args.draws,
        "batch_size": args.batch_size,
        **result.stats(),
        "clean_accuracy_subset": round(result.clean_correct / max(1, result.images), 4),
        "outputs": [str(p) for p in args.out],
        "seconds": round(time.monotonic() - started, 1),
        **provenance.environment(device),
    }
    if result.empty:
        print("WARNING: no draw was kept; v_def is the zero vector (adding it changes nothing)", flush=True)
    for path in args.out:
        vdef.save(path, result.v, record)
    print("\n".join(f"{key}: {value}" for key, value in record.items()), flush=True)
    return record


if __name__ == "__main__":
    main()
