"""Make the HGD training, validation and test sets (Liao et al. 2018, Table 1 at CIFAR-10 scale) and cache them.

Usage::

    python -m research.hgd.make_data [--train-images 2000 --val-images 500 --test-images 1000 --seed 0]

Writes ``train.npz``, ``val.npz``, ``white.npz``, ``black.npz`` and ``recipe.json`` to
``<HARNESS_CACHE>/hgd/<key>/`` (default ``~/.cache/adv-submission_kit/hgd/<key>``) and prints the folder; the training
and table commands find the default recipe's folder by themselves and take ``--data-dir`` for any other. A folder
that is already complete is reused (``--force`` remakes it). The recipe is in :mod:`research.hgd.data`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from research import cifar10, cli, provenance
from research.hgd.data import SPLIT_NAMES, Recipe, make_split, recipe_key, select_images
from submission_kit import zoo


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def make_data(recipe: Recipe, *, data_root: str | None = None, device: str | torch.device = "cpu",
              force: bool = False, out: Path | None = None) -> Path:
    """Make (or reuse) the four sets of ``recipe`` and return their folder.

    Args:
        recipe: What to make.
        data_root: Folder with the CIFAR-10 archives (default: see :func:`research.cifar10.dataset_root`).
        device: Where the attacks run.
        force: Remake the sets even when the folder is complete.
        out: Folder to write instead of ``<HARNESS_CACHE>/hgd/<key>``.

    Returns:
        The folder holding ``<split>.npz`` and ``recipe.json``.
    """
    started = time.perf_counter()
    selection = select_images(recipe, cifar10.load_split("train", data_root), cifar10.load_split("test", data_root))
    key = recipe_key(recipe, selection, {name: zoo.weights_path(name) for name in recipe.models})
    folder = out if out is not None else cifar10.cache_dir() / "hgd" / key
    if not force and all((folder / f"{split}.npz").is_file() for split in SPLIT_NAMES):
        _log(f"sets already made: {folder} (use --force to remake)")
        return folder
    models = {name: zoo.load(name, device=device) for name in recipe.models}
    _log(f"recipe key {key}; models {', '.join(recipe.models)} on {device}; threads {torch.get_num_threads()}")
    plan = {
        "train": (selection["train"], recipe.train_attacks, None, recipe.seed * 4 + 0),
        "val": (selection["val"], recipe.train_attacks, None, recipe.seed * 4 + 1),
        "white": (selection["test"], recipe.white_attacks, recipe.test_epsilons, recipe.seed * 4 + 2),
        "black": (selection["test"], recipe.black_attacks, recipe.test_epsilons, recipe.seed * 4 + 3),
    }
    counts = {}
    for split, ((images, labels), attacks, epsilons, seed) in plan.items():
        split_start = time.perf_counter()
        source = "train" if split in ("train", "val") else "test"
        _log(f"{split}: {len(images)} clean shared-{source} images x {len(attacks)} attacks"
             + (f" x eps {list(epsilons)}" if epsilons else f", eps drawn from {recipe.eps_min}..{recipe.eps_max}"))
        result = make_split(images, labels, attacks, models, epsilons=epsilons,
                            eps_range=(recipe.eps_min, recipe.eps_max), seed=seed, device=device, log=_log)
        result.save(folder / f"{split}.npz")
        counts[split] = {"clean": len(result.clean), "images": len(result)}
        _log(f"{split}: {len(result)} images in {time.perf_counter() - split_start:.1f} s")
    record = {
        "key": key,
        "recipe": recipe.to_json(),
        "counts": counts,
        "weights": {name: str(zoo.weights_path(name)) for name in recipe.models},
        "minutes": round((time.perf_counter() - started) / 60, 2),
        **provenance.environment(device),
    }
    (folder / "recipe.json").write_text(json.dumps(record, indent=2) + "\n")
    _log(f"done in {record['minutes']:.1f} min: " + ", ".join(f"{s} {c['images']}" for s, c in counts.items()))
    return folder


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    defaults = Recipe()
    shared = cli.parent(
        seed=cli.Option(default=defaults.seed),
        out=cli.Option(help="folder to write (default: <HARNESS_CACHE>/hgd/<key>)"),
        threads=cli.Option(default=2, help="torch CPU threads"),
    )
    parser = argparse.ArgumentParser(prog="python -m research.hgd.make_data", description=__doc__.split("\n")[0],
                                     parents=[shared])
    parser.add_argument("--train-images", type=int, default=defaults.train_images, help="clean shared-train images")
    parser.add_argument("--val-images", type=int, default=defaults.val_images, help="clean shared-train images")
    parser.add_argument("--test-images", type=int, default=defaults.test_images, help="clean shared-test images")
    parser.add_argument("--data", help="folder with the CIFAR-10 archives (default: $CIFAR10_DIR or ../shared/...)")
    parser.add_argument("--force", action="store_true", help="remake the sets even if cached")
    parser.add_argument("--device", default="auto", help="'auto' (CUDA if present, else CPU), 'cpu', 'cuda:0', ...")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    _log("command: " + " ".join(["python -m research.hgd.make_data",
                                 *map(shlex.quote, sys.argv[1:] if argv is None else argv)]))
    recipe = Recipe(train_images=args.train_images, val_images=args.val_images, test_images=args.test_images,
                    seed=args.seed)
    folder = make_data(recipe, data_root=args.data, device=device, force=args.force, out=args.out)
    hint = "" if recipe == defaults and args.out is None else f" (pass --data-dir {folder} to train and tables)"
    print(f"data folder: {folder}{hint}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
