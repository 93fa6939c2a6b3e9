"""White-box curves (seed Fig. 6-7) and the block-design ablation (seed Table 1) for the trained variants.

Usage::

    python -m research.feature_denoising.whitebox [--images 1000] [--iterations 10 20 50 100] [--variants ...]

Every variant with weights in ``submission_kit/feature_denoising/weights/`` (or those named) is attacked with untargeted
PGD from a random start, ε = 8/255, on the same shared test images and from the same random starts, once per
iteration count. The step follows the seed's Sec. 6.1 scaled to ε (α = ε/10 for 10 iterations, ε/16 otherwise;
``--alpha`` overrides). Writes the tables between ``<!-- fd-whitebox:start/end -->`` and
``<!-- fd-ablation:start/end -->`` of ``docs/feature_denoising.md``, a PNG plot, and a JSON of the numbers, which
later runs reuse for variants whose weights and settings are unchanged (``--force`` recomputes).

Differences from the seed: CIFAR-10 and ResNet-8 instead of ImageNet and ResNet-152; ε = 8/255 instead of 16;
untargeted attacks (the CIFAR-10 convention) where the seed attacks toward a random target class.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from research import cli
from research.zoo.data import accuracy
from research.zoo.evaluate import write_table
from submission_kit import sdk
from submission_kit.feature_denoising import variants

from .evaluation import paper_step_size, pgd_accuracy, test_subset

__all__ = ["main", "render_ablation", "render_curves"]

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "feature_denoising.md"
CURVES = ("<!-- fd-whitebox:start -->", "<!-- fd-whitebox:end -->")
ABLATION = ("<!-- fd-ablation:start -->", "<!-- fd-ablation:end -->")

#: Seed Table 1 (ImageNet, ResNet-152 with four non-local Gaussian blocks, PGD ε = 16): accuracy (%) at 10 / 100
#: iterations; "NaN" = the authors could not train it.
PAPER_TABLE1 = {"nonlocal_gaussian": ("55.7", "45.5"), "nonlocal_gaussian_no1x1": ("52.1", "36.8"),
                "nonlocal_gaussian_nores": ("NaN", "NaN")}
ABLATION_LABELS = {"nonlocal_gaussian": "non-local, Gaussian", "nonlocal_gaussian_no1x1": "removing 1x1",
                   "nonlocal_gaussian_nores": "removing residual"}


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def evaluate_variant(name: str, images: Any, labels: Any, *, iterations: Sequence[int], eps: float,
                     alpha: float | None, seed: int, batch_size: int, device: torch.device,
                     log: Any = print) -> dict[str, Any]:
    """Clean accuracy and accuracy under PGD with each iteration count, for one trained variant.

    Returns:
        ``{"clean": float, "pgd": {"10": float, ...}, "alpha": {"10": float, ...}, "seconds": float}``.
    """
    started = time.perf_counter()
    model = variants.load(name, device=device)
    result: dict[str, Any] = {"clean": accuracy(model, images, labels, device=device), "pgd": {}, "alpha": {}}
    for steps in iterations:
        step = alpha if alpha is not None else paper_step_size(eps, steps)
        tick = time.perf_counter()
        result["pgd"][str(steps)] = pgd_accuracy(model, images, labels, eps=eps, steps=steps, alpha=step, seed=seed,
                                                 batch_size=batch_size, device=device)
        result["alpha"][str(steps)] = step
        log(f"{name}: PGD-{steps} accuracy {result['pgd'][str(steps)]:.4f} ({time.perf_counter() - tick:.0f} s)")
    result["seconds"] = time.perf_counter() - started
    return result


def _record(name: str) -> dict[str, Any]:
    path = variants.weights_path(name).with_suffix(".json")
    return json.loads(path.read_text()) if path.is_file() else {}


def render_curves(results: dict[str, dict[str, Any]], iterations: Sequence[int], *, meta: dict[str, Any]) -> str:
    """Markdown: one row per variant (clean, PGD-k accuracy in %, training epochs, attack and minutes)."""
    head = ["variant", "blocks", "clean", *[f"PGD-{k}" for k in iterations], "train epochs", "train attack",
            "train min"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, result in results.items():
        record = _record(name)
        cells = [f"`{name}`", variants.get(name).description, f"{100 * result['clean']:.1f}",
                 *[f"{100 * result['pgd'][str(k)]:.1f}" if str(k) in result["pgd"] else "" for k in iterations],
                 str(record.get("epochs_run", "")), str(record.get("attack", "")),
                 f"{record['minutes']:.1f}" if isinstance(record.get("minutes"), (int, float)) else ""]
        lines.append("| " + " | ".join(cells) + " |")
    alphas = ", ".join(f"{k}: {255 * paper_step_size(meta['eps'], k):.2g}/255" for k in iterations) \
        if meta.get("alpha") is None else f"{255 * meta['alpha']:.3g}/255"
    note = (f"\nAccuracy (%) on {meta['images']} shared CIFAR-10 test images (seeded subset, seed {meta['seed']}) "
            f"under untargeted PGD with a random start, ε = {255 * meta['eps']:g}/255, step {alphas}; the same "
            f"random starts for every variant. `python -m research.feature_denoising.whitebox "
            f"{meta['arguments']}`, {meta['date']}, torch {torch.__version__}, {meta['device']}.\n")
    return "\n".join(lines) + "\n" + note


def render_ablation(results: dict[str, dict[str, Any]], iterations: Sequence[int]) -> str:
    """Markdown: the seed's Table 1 (block design) beside ours, at the smallest and largest iteration count."""
    low, high = min(iterations), max(iterations)
    lines = [f"| block design | ours, PGD-{low} | ours, PGD-{high} | seed, PGD-10 | seed, PGD-100 |",
             "|---|---|---|---|---|"]
    for name, label in ABLATION_LABELS.items():
        result = results.get(name)
        ours = [f"{100 * result['pgd'][str(k)]:.1f}" if result else "not trained" for k in (low, high)]
        lines.append(f"| {label} (`{name}`) | {ours[0]} | {ours[1]} | {PAPER_TABLE1[name][0]} | "
                     f"{PAPER_TABLE1[name][1]} |")
    return ("\n".join(lines) + "\n\nSeed: ImageNet, ResNet-152 with four blocks, PGD ε = 16 (targeted). "
            "Ours: as in the table above.\n")


def plot(results: dict[str, dict[str, Any]], iterations: Sequence[int], path: Path, *, eps: float) -> None:
    """Accuracy vs PGD iterations, one line per variant (ablations dashed), as a PNG (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise SystemExit(f"the plot needs matplotlib ({exc}); pip install matplotlib, or pass --plot ''") from None
    figure, axis = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name, result in results.items():
        xs = [k for k in iterations if str(k) in result["pgd"]]
        style = "--" if variants.get(name).ablation else ("-" if variants.get(name).op else ":")
        axis.plot(xs, [100 * result["pgd"][str(k)] for k in xs], style, marker="o", label=name)
    axis.set_xscale("log")
    axis.set_xticks(list(iterations), [str(k) for k in iterations])
    axis.minorticks_off()
    axis.set_xlabel("PGD attack iterations")
    axis.set_ylabel("accuracy (%)")
    axis.set_title(f"White-box PGD, ε = {255 * eps:g}/255, CIFAR-10, ResNet-8 variants")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    shared = cli.parent(
        seed=cli.Option(default=0, help="seeds the image subset and the random starts"),
        out=cli.Option(default=DOC, help="markdown file with the fd-whitebox markers"),
        threads=cli.Option(default=2),
        images=cli.Option(default=1000, help="shared test images"),
    )
    parser = argparse.ArgumentParser(parents=[shared], prog="python -m research.feature_denoising.whitebox",
                                     description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--variants", nargs="+", help="variants (default: every one with weights)")
    parser.add_argument("--iterations", type=int, nargs="+", default=[10, 20, 50, 100])
    parser.add_argument("--eps", type=float, default=8, help="ε in 0-255 units")
    parser.add_argument("--alpha", type=float, help="step in 0-255 units (default: the seed's rule)")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--plot", default=str(ROOT / "docs" / "feature_denoising_whitebox.png"),
                        help="PNG path ('' for none)")
    parser.add_argument("--results", type=Path, default=ROOT / "docs" / "feature_denoising_whitebox.json",
                        help="JSON of the numbers, reused across runs")
    parser.add_argument("--force", action="store_true", help="recompute variants whose numbers are stored")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    try:
        names = [variants.get(n).name for n in args.variants] if args.variants else \
            [n for n in variants.names() if variants.weights_path(n).is_file()]
    except variants.UnknownModelError as exc:
        parser.error(str(exc))
    missing = [n for n in names if not variants.weights_path(n).is_file()]
    if missing:
        parser.error("no weights for " + ", ".join(missing) + "; train with:\n  " +
                     "\n  ".join(variants.get(n).command for n in missing))
    if not names:
        parser.error("no trained variant yet; train one with:\n  " + variants.get("baseline").command)
    eps, alpha = args.eps / 255, (args.alpha / 255 if args.alpha is not None else None)
    settings = {"images": args.images, "seed": args.seed, "eps": eps, "alpha": alpha}
    stored = json.loads(args.results.read_text()) if args.results.is_file() and not args.force else {}
    images, labels, _ = test_subset(args.images, seed=args.seed)
    device = sdk.device()
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        key = {**settings, "weights": _file_hash(variants.weights_path(name))}
        old = stored.get("variants", {}).get(name)
        todo = [k for k in args.iterations if not (old and old.get("key") == key and str(k) in old["pgd"])]
        if not todo:
            results[name] = old
            print(f"{name}: stored numbers reused")
            continue
        fresh = evaluate_variant(name, images, labels, iterations=todo, eps=eps, alpha=alpha, seed=args.seed,
                                 batch_size=args.batch_size, device=device)
        if old and old.get("key") == key:
            fresh["pgd"] = {**old["pgd"], **fresh["pgd"]}
            fresh["alpha"] = {**old.get("alpha", {}), **fresh["alpha"]}
        results[name] = {**fresh, "key": key}
    meta = {**settings, "images": len(images), "date": time.strftime("%Y-%m-%d"), "device": str(device),
            "arguments": " ".join(sys.argv[1:] if argv is None else argv)}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    merged = {**stored.get("variants", {}), **results}
    args.results.write_text(json.dumps({"meta": meta, "variants": merged}, indent=2) + "\n")
    curves = render_curves(results, args.iterations, meta=meta)
    ablation = render_ablation(results, args.iterations)
    write_table(args.out, curves, start=CURVES[0], end=CURVES[1])
    write_table(args.out, ablation, start=ABLATION[0], end=ABLATION[1])
    if args.plot:
        plot(results, args.iterations, Path(args.plot), eps=eps)
    print(curves)
    print(ablation)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
