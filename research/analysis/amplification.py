"""Error amplification: how a perturbation grows through a classifier's layers (Liao et al. 2018, Eq. 6, Fig. 5).

For a clean image x and a perturbed version x_p (adversarial, noisy, denoised, ...), the perturbation level at
layer l is

    E_l(x_p, x) = ‖f_l(x_p) − f_l(x)‖ / ‖f_l(x)‖,

with ‖·‖ the L1 norm (the paper's convention, Sec. 3.1) or optionally L2, computed per image and averaged over
the images. Layers are the zoo model's ``forward_features`` blocks (ending with ``last_conv`` and ``logits``);
``pixels`` (l = 0, the image itself) is prepended, so a curve starts at the pixel-level perturbation. Liao et al.
found that a pixel-guided denoiser (PGD) lowers E_0 but its residual perturbation is amplified to nearly the
adversarial level at the top, whereas the logits-guided denoiser (LGD) stays near random noise.

Any defense can be analysed: pass its transformation (float (N, 3, H, W) in [0, 1] → same) to
:func:`amplification`. The command reproduces Fig. 5 with the HGD denoisers and any extra transformation::

    python -m research.analysis.amplification [--denoisers dunet_pgd dunet_lgd] [--images 30] \
        [--transform "ROF=submission_kit.defense_blocks.denoise:tv_denoise"] [--out docs/hgd_amplification]

It writes ``<out>.csv`` (one row per variant and layer: mean, standard deviation, images) and ``<out>.png``.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from research import cli
from submission_kit import contract

__all__ = [
    "PIXELS",
    "amplification",
    "gaussian_like",
    "layer_errors",
    "load_transform",
    "main",
    "plot_png",
    "write_csv",
]

_ROOT = Path(__file__).resolve().parent.parent.parent
#: Name of the l = 0 "layer": the image itself.
PIXELS = "pixels"

Transform = Callable[[torch.Tensor], torch.Tensor]


def _norm(values: torch.Tensor, p: int) -> torch.Tensor:
    """Per-example Lp norm of (N, ...) → (N,)."""
    flat = values.flatten(1)
    return flat.abs().sum(1) if p == 1 else flat.pow(2).sum(1).sqrt()


@torch.no_grad()
def layer_errors(model: nn.Module, clean: torch.Tensor, perturbed: torch.Tensor, *, p: int = 1,
                 clean_features: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """E_l of every image at every layer.

    Args:
        model: A classifier with ``forward_features(x)`` returning an ordered dict of (N, ...) maps (zoo model).
        clean: x, float (N, 3, H, W) in [0, 1].
        perturbed: x_p, same shape (not clamped here; clamp before if the classifier would).
        p: 1 (the paper) or 2.
        clean_features: ``forward_features(clean)`` if already computed.

    Returns:
        ``{layer: (N,) float tensor}``, starting with :data:`PIXELS`, then the model's feature names.
    """
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p}")
    reference = {PIXELS: clean, **(clean_features if clean_features is not None else model.forward_features(clean))}
    current = {PIXELS: perturbed, **model.forward_features(perturbed)}
    return {name: _norm(current[name] - ref, p) / _norm(ref, p).clamp_min(1e-12) for name, ref in reference.items()}


def gaussian_like(clean: torch.Tensor, adversarial: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
    """Gaussian-noise images with, per image, the same L2 distance to x as the adversarial image (then clipped).

    The paper's "random noise" baseline of Fig. 5 does not state its level; matching each adversarial
    perturbation's L2 norm compares the two at equal pixel-level energy.

    Args:
        clean: x, float (N, 3, H, W) in [0, 1].
        adversarial: x*, same shape.
        generator: Source of the noise (CPU generator).

    Returns:
        clip(x + n, 0, 1) with n ~ N(0, I) rescaled to ‖n‖₂ = ‖x* − x‖₂, same shape/device as ``clean``.
    """
    noise = torch.randn(clean.shape, generator=generator).to(clean.device)
    scale = _norm(adversarial - clean, 2) / _norm(noise, 2).clamp_min(1e-12)
    return (clean + noise * scale.view(-1, 1, 1, 1)).clamp(0, 1)


@torch.no_grad()
def amplification(model: nn.Module, clean: torch.Tensor, variants: Mapping[str, torch.Tensor], *, p: int = 1,
                  batch_size: int = 100) -> dict[str, dict[str, np.ndarray]]:
    """E_l per image for several perturbed versions of the same clean images.

    Args:
        model: Classifier with ``forward_features`` (eval mode).
        clean: x, float (N, 3, H, W) in [0, 1].
        variants: Label → x_p (N, 3, H, W), e.g. ``{"adversarial": x_adv, "PGD": D(x_adv)}``.
        p: Norm (1 or 2).
        batch_size: Images per forward pass.

    Returns:
        ``{label: {layer: float64 (N,)}}``, layers in forward order starting with :data:`PIXELS`.
    """
    out: dict[str, dict[str, list[np.ndarray]]] = {label: {} for label in variants}
    for start in range(0, len(clean), batch_size):
        x = clean[start:start + batch_size]
        reference = model.forward_features(x)
        for label, perturbed in variants.items():
            errors = layer_errors(model, x, perturbed[start:start + batch_size], p=p, clean_features=reference)
            for layer, values in errors.items():
                out[label].setdefault(layer, []).append(values.double().cpu().numpy())
    return {label: {layer: np.concatenate(parts) for layer, parts in layers.items()} for label, layers in out.items()}


def write_csv(path: str | Path, results: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    """Write ``variant,layer_index,layer,mean,std,images`` rows (E_l statistics over the images)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["variant", "layer_index", "layer", "mean", "std", "images"])
        for label, layers in results.items():
            for index, (layer, values) in enumerate(layers.items()):
                writer.writerow([label, index, layer, f"{values.mean():.6g}", f"{values.std():.6g}", len(values)])


def plot_png(path: str | Path, results: Mapping[str, Mapping[str, np.ndarray]], *, title: str) -> None:
    """Plot mean E_l against the layer, one line per variant, log scale (the layout of the paper's Fig. 5)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=120)
    for label, layers in results.items():
        names = list(layers)
        axes.plot(range(len(names)), [layers[n].mean() for n in names], marker="o", label=label)
    axes.set_xticks(range(len(names)), names, rotation=30, ha="right")
    axes.set_yscale("log")
    axes.set_xlabel("layer l")
    axes.set_ylabel("E_l = ‖f_l(x_p) − f_l(x)‖ / ‖f_l(x)‖")
    axes.set_title(title, fontsize=9)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def load_transform(spec: str) -> tuple[str, Transform]:
    """Parse ``LABEL=package.module:function`` into a label and the imported transformation."""
    label, sep, target = spec.partition("=")
    module_name, colon, attribute = target.partition(":")
    if not sep or not colon or not label or not module_name or not attribute:
        raise ValueError(f"expected LABEL=package.module:function, got {spec!r}")
    return label, getattr(importlib.import_module(module_name), attribute)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (Fig. 5 of Liao et al. on the HGD test data); returns the exit code."""
    from research.hgd import data
    from submission_kit import zoo
    from submission_kit.hgd.defense import denoise_transform
    from submission_kit.hgd.registry import DenoiserWeightsNotFoundError, load_denoiser

    shared = cli.parent(
        seed=cli.Option(default=0, help="image choice and Gaussian noise"),
        out=cli.Option(default=_ROOT / "docs" / "hgd_amplification",
                       help="writes OUT.csv and OUT.png (default docs/hgd_amplification)"),
        threads=cli.Option(default=2),
        images=cli.Option(default=30, help="random adversarial images (paper: 30)"),
    )
    parser = argparse.ArgumentParser(parents=[shared], prog="python -m research.analysis.amplification",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=zoo.TARGET_MODEL, choices=zoo.names(), help="classifier analysed")
    parser.add_argument("--denoisers", nargs="*", default=["dunet_pgd", "dunet_lgd"], help="HGD denoiser names")
    parser.add_argument("--transform", action="append", default=[], metavar="LABEL=MODULE:FUNCTION",
                        help="another defense transformation (repeatable)")
    parser.add_argument("--attack", default="ifgsm4:vgg6_w48+vgg6_w32", help="attack of the white test set")
    parser.add_argument("--eps", type=int, default=16, help="ε of the adversarial images (0-255)")
    parser.add_argument("--norm", type=int, default=1, choices=(1, 2), help="L1 (paper) or L2")
    parser.add_argument("--data-dir", type=Path, help="folder of the HGD sets (default: the default recipe's)")
    parser.add_argument("--weights-dir", type=Path, help="denoiser weights folder (default submission_kit/hgd/weights)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    command = " ".join(["python -m research.analysis.amplification",
                        *map(shlex.quote, sys.argv[1:] if argv is None else argv)])

    try:
        white = data.load_split(args.data_dir if args.data_dir is not None else data.data_dir(), "white")
    except data.DataNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.attack not in white.attack_names:
        parser.error(f"attack {args.attack!r} not in the white test set; choose from {', '.join(white.attack_names)}")
    pool = np.flatnonzero((white.attack == white.attack_names.index(args.attack)) & (white.eps == args.eps))
    if len(pool) == 0:
        parser.error(f"no {args.attack} images at eps {args.eps} in the white test set")
    rng = np.random.default_rng(args.seed)
    chosen = np.sort(rng.choice(pool, size=min(args.images, len(pool)), replace=False))

    def to_float(images: np.ndarray) -> torch.Tensor:
        return contract.pixels_to_unit(torch.from_numpy(images).permute(0, 3, 1, 2).float()).to(device)

    adversarial = to_float(white.images[chosen])
    clean = to_float(white.clean[white.source[chosen]])
    generator = torch.Generator().manual_seed(args.seed)
    variants = {"adversarial": adversarial, "random noise (same L2)": gaussian_like(clean, adversarial,
                                                                                    generator=generator)}
    try:
        transforms = {name: denoise_transform(load_denoiser(name, device, weights_dir=args.weights_dir))
                      for name in args.denoisers}
    except DenoiserWeightsNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    transforms.update(load_transform(spec) for spec in args.transform)
    with torch.no_grad():
        for label, transform in transforms.items():
            variants[label] = transform(adversarial).clamp(0, 1)
    model = zoo.load(args.model, device=device)
    results = amplification(model, clean, variants, p=args.norm)
    write_csv(args.out.with_suffix(".csv"), results)
    title = (f"Error amplification in {args.model}: {len(chosen)} images, {args.attack}, eps={args.eps}, "
             f"L{args.norm} norm")
    plot_png(args.out.with_suffix(".png"), results, title=title)
    layers = list(next(iter(results.values())))
    print(f"command: {command}")
    print("| variant | " + " | ".join(layers) + " |")
    print("|---|" + "---|" * len(layers))
    for label, values in results.items():
        print(f"| {label} | " + " | ".join(f"{values[layer].mean():.3g}" for layer in layers) + " |")
    print(f"wrote {args.out.with_suffix('.csv')} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
