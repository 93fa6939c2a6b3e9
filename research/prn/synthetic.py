"""Synthetic universal perturbations from a pool of real ones (seed §4.2, Algorithm 1 and its ℓ2 variant).

Algorithm 1 (ℓ∞), Akhtar, Liu & Mian, CVPR 2018::

    ℓ2-threshold = mean ‖ρ‖₂ over ρ ∈ 𝒫;  𝒫_n = 𝒫 with ℓ2-normalized elements
    while |𝒫_s| < η:
        ρ_s = 0
        while ‖ρ_s‖∞ < ξ:  z ~ unif(0, 1)·ξ;  ρ_s = ρ_s + z · (random element of 𝒫_n)
        if ‖ρ_s‖₂ ≥ ℓ2-threshold:  𝒫_s = 𝒫_s ∪ {ρ_s}

The ℓ2 variant (seed §4.2 and its supplementary material) ends the walk on ‖ρ_s‖₂ ≥ ξ instead and keeps every
ρ_s. Every ρ_s is a positive combination Σ_k c_k·𝒫_n[k], c_k ≥ 0, of the unit-normalized pool (condition c1, the
positive orthant Ψ⁺ of span 𝒫); :attr:`SyntheticResult.coefficients` holds the c_k, so a synthetic set is stored
as its coefficients and rebuilt exactly from the pool (:func:`reconstruct`).

One choice the paper leaves open: the walk's last step overshoots ξ (by at most ξ·max_k ‖𝒫_n[k]‖∞ for ℓ∞, by up
to ξ for ℓ2). With ``rescale=True`` (default) ρ_s is then multiplied by ξ/‖ρ_s‖_p ≤ 1 — a positive factor, so
ρ_s stays in Ψ⁺ — giving ‖ρ_s‖_p = ξ exactly (c3 for ℓ∞, c2 for ℓ2), and the ℓ∞ keep test (line 8) is applied
to the rescaled ρ_s, i.e. to what is returned. ``rescale=False`` is the paper's procedure verbatim.

Walks run in parallel batches with an explicit ``torch.Generator`` (the global RNG is not used); a seed and a
batch size name one result.

Command: ``python -m research.prn.synthetic --model vgg6_w48 --norm inf --count 200`` generates from the train
pool, reports the fooling rates of the synthetic and the real perturbations on the held-out validation images,
and writes the coefficients and a record (:func:`submission_kit.prn.paths.synthetic_path`).
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from research import cli
from submission_kit.prn.paths import NORMS, POOLS_DIR, check_norm, synthetic_command, synthetic_path

from .errors import run_command
from .perturb import norm_of

__all__ = ["SyntheticNotFoundError", "SyntheticResult", "load_synthetic", "main", "reconstruct", "synthesize",
           "unit_normalize"]


class SyntheticNotFoundError(FileNotFoundError):
    """No synthetic perturbations stored, or stored for another pool; the message names the command."""


@dataclass(frozen=True)
class SyntheticResult:
    """Synthetic perturbations and how they were found.

    Attributes:
        perturbations: float32 (η, C, H, W), ‖ρ_s‖_p = ξ when rescaled.
        coefficients: float64 (η, K), all ≥ 0: ρ_s = Σ_k coefficients[s, k] · unit_normalize(pool)[k].
        steps: int64 (η,), random-walk steps of each kept ρ_s.
        attempts: Walks run (kept or not).
        accepted: Walks that passed the keep test (≥ η: the last batch may pass more than needed).
        l2_threshold: The keep threshold l2_fraction · mean ‖ρ‖₂ of the pool (ℓ∞ only; 0.0 for ℓ2).
        walk_l2: float64 (attempts,), ‖ρ_s‖₂ of every walk's (rescaled) end point, kept or not: shows how far
            the keep test is from accepting.
    """

    perturbations: torch.Tensor
    coefficients: torch.Tensor
    steps: torch.Tensor
    attempts: int
    accepted: int
    l2_threshold: float
    walk_l2: torch.Tensor

    @property
    def acceptance(self) -> float:
        """Accepted / attempted walks."""
        return self.accepted / self.attempts if self.attempts else 0.0


def unit_normalize(pool: torch.Tensor) -> torch.Tensor:
    """𝒫_n: each perturbation of ``pool`` (K, C, H, W) divided by its ℓ2 norm (float64).

    Raises:
        ValueError: A perturbation is zero.
    """
    flat = pool.flatten(1).double()
    norms = flat.norm(dim=1)
    if bool((norms == 0).any()):
        raise ValueError("the pool holds a zero perturbation")
    return (flat / norms[:, None]).view(pool.shape)


def reconstruct(pool: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """Σ_k coefficients[s, k] · 𝒫_n[k] for every s: (η, K) and pool (K, C, H, W) → float32 (η, C, H, W)."""
    unit = unit_normalize(pool).flatten(1)
    return (coefficients.double() @ unit).float().view(len(coefficients), *pool.shape[1:])


def synthesize(pool: torch.Tensor, count: int, *, xi: float, norm: str, generator: torch.Generator,
               rescale: bool = True, l2_fraction: float = 1.0, batch: int = 256, max_attempts: int = 100_000,
               max_steps: int = 100_000) -> SyntheticResult:
    """Generate ``count`` synthetic perturbations from ``pool`` (Algorithm 1 for ℓ∞, its ℓ2 variant for ℓ2).

    Args:
        pool: Real perturbations 𝒫, (K, C, H, W) on the [0, 1] scale, K ≥ 1, none zero.
        count: η, how many to return.
        xi: Budget ξ on the [0, 1] scale (> 0).
        norm: ``"inf"`` (Algorithm 1) or ``"2"`` (the walk ends on ‖ρ_s‖₂ ≥ ξ; no keep test).
        generator: CPU generator for z and the random pool elements.
        rescale: Scale every walk's end point onto ‖ρ_s‖_p = ξ (see the module docstring).
        l2_fraction: ℓ∞ keep test ‖ρ_s‖₂ ≥ l2_fraction · mean ‖ρ‖₂ (the paper: 1.0). A positive combination of
            dissimilar perturbations has a lower ℓ2/ℓ∞ ratio than its parts, so with nearly orthogonal pools
            (|cosine| ≤ 0.15) the paper's test may reject almost every walk; a smaller fraction relaxes it.
        batch: Walks run side by side.
        max_attempts: Give up after this many walks (the ℓ∞ keep test can reject almost every walk when the
            pool's perturbations point in very different directions); fewer than ``count`` are then returned.
        max_steps: Safety cap on the steps of one batch of walks.

    Returns:
        A :class:`SyntheticResult` (float64 arithmetic, perturbations returned as float32).
    """
    norm = check_norm(norm)
    if len(pool) == 0 or not xi > 0 or count < 0:
        raise ValueError("need a non-empty pool, xi > 0 and count >= 0")
    unit = unit_normalize(pool).flatten(1)  # (K, d) float64
    k = len(unit)
    threshold = l2_fraction * float(norm_of(pool.double(), "2").mean()) if norm == "inf" else 0.0
    kept_rho: list[torch.Tensor] = []
    kept_coef: list[torch.Tensor] = []
    kept_steps: list[torch.Tensor] = []
    attempts = accepted = 0
    walk_l2: list[torch.Tensor] = []
    while sum(len(r) for r in kept_rho) < count and attempts < max_attempts:
        b = min(batch, max_attempts - attempts)
        rho = torch.zeros(b, unit.shape[1], dtype=torch.float64)
        coef = torch.zeros(b, k, dtype=torch.float64)
        steps = torch.zeros(b, dtype=torch.int64)
        active = torch.ones(b, dtype=torch.bool)
        for _ in range(max_steps):
            if not bool(active.any()):
                break
            z = torch.rand(b, generator=generator, dtype=torch.float64) * xi
            j = torch.randint(k, (b,), generator=generator)
            z = z * active  # finished walks draw too (fixed draw order) but do not move
            rho += z[:, None] * unit[j]
            coef[torch.arange(b), j] += z
            steps += active.long()
            current = rho.abs().amax(dim=1) if norm == "inf" else rho.norm(dim=1)
            active &= current < xi
        else:
            raise RuntimeError(f"random walks did not reach xi={xi} in {max_steps} steps")
        if rescale:
            current = rho.abs().amax(dim=1) if norm == "inf" else rho.norm(dim=1)
            factor = xi / current
            rho *= factor[:, None]
            coef *= factor[:, None]
        l2 = rho.norm(dim=1)
        keep = l2 >= threshold if norm == "inf" else torch.ones(b, dtype=torch.bool)
        attempts += b
        accepted += int(keep.sum())
        walk_l2.append(l2)
        kept_rho.append(rho[keep])
        kept_coef.append(coef[keep])
        kept_steps.append(steps[keep])
    rho_all = torch.cat(kept_rho)[:count] if kept_rho else torch.zeros(0, unit.shape[1], dtype=torch.float64)
    coef_all = torch.cat(kept_coef)[:count] if kept_coef else torch.zeros(0, k, dtype=torch.float64)
    steps_all = torch.cat(kept_steps)[:count] if kept_steps else torch.zeros(0, dtype=torch.int64)
    return SyntheticResult(perturbations=rho_all.float().view(len(rho_all), *pool.shape[1:]),
                           coefficients=coef_all, steps=steps_all, attempts=attempts, accepted=accepted,
                           l2_threshold=threshold,
                           walk_l2=torch.cat(walk_l2) if walk_l2 else torch.zeros(0, dtype=torch.float64))


def load_synthetic(model: str, norm: str, pool: Any, *, path: Path | None = None,
                   root: Path | None = None) -> torch.Tensor:
    """The stored synthetic perturbations of ``model`` and ``norm``, rebuilt from ``pool`` (a loaded train Pool).

    Args:
        model, norm: Which set.
        pool: The :class:`research.prn.pool.Pool` they were generated from (its digest must match the record).
        path: The coefficients file (default :func:`submission_kit.prn.paths.synthetic_path` under ``root``).
        root: Pools folder (default ``submission_kit/prn/pools``).

    Returns:
        float32 (η, 3, H, W).

    Raises:
        SyntheticNotFoundError: Missing, or generated from another pool (the message names the command).
    """
    if path is None:
        path = synthetic_path(model, norm) if root is None else synthetic_path(model, norm, root)
    path = Path(path)
    record_path = path.with_suffix(".json")
    command = synthetic_command(model, norm)
    if not path.is_file() or not record_path.is_file():
        raise SyntheticNotFoundError(f"synthetic perturbations {path} not found. Make them with:\n    {command}")
    record = json.loads(record_path.read_text())
    if record["pool_digest"] != pool.digest():
        raise SyntheticNotFoundError(f"{path} was generated from another train pool (digest "
                                     f"{record['pool_digest']}, pool now {pool.digest()}). Regenerate with:\n    "
                                     f"{command}")
    coefficients = torch.from_numpy(np.load(path, allow_pickle=False))
    return reconstruct(pool.vectors, coefficients)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Generate synthetic perturbations from a train pool, measure fooling rates, write them; return the record."""
    from research import cifar10
    from submission_kit import sdk, zoo

    from . import splits
    from .perturb import fooling_rates
    from .pool import load_pool

    shared = cli.parent(
        seed=cli.Option(default=0),
        out=cli.Option(help="coefficients .npy (default <pools-dir>/<model>/...)"),
    )
    parser = argparse.ArgumentParser(parents=[shared], description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", default=zoo.TARGET_MODEL, help="zoo model of the train pool")
    parser.add_argument("--norm", choices=NORMS, required=True)
    parser.add_argument("--count", type=int, default=200, help="eta: synthetic perturbations to generate")
    parser.add_argument("--no-rescale", action="store_true", help="the paper's unscaled walk end points")
    parser.add_argument("--max-attempts", type=int, default=100_000, help="give up after this many walks")
    parser.add_argument("--l2-fraction", type=float, default=1.0,
                        help="inf keep test: l2 norm >= this x the mean l2 norm of the real pool (paper: 1.0)")
    parser.add_argument("--evaluate", type=int, default=None,
                        help="measure the fooling rate of this many synthetic perturbations (default: all)")
    parser.add_argument("--pools-dir", type=Path, default=POOLS_DIR, help="folder of the pools")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    pool = load_pool(model=args.model, norm=args.norm, role="train", root=args.pools_dir)
    result = synthesize(pool.vectors, args.count, xi=pool.xi, norm=args.norm,
                        generator=torch.Generator().manual_seed(args.seed), rescale=not args.no_rescale,
                        l2_fraction=args.l2_fraction, max_attempts=args.max_attempts)
    seconds_generation = time.monotonic() - started
    print(f"{len(result.perturbations)} synthetic perturbations from {len(pool)} real ones, "
          f"{result.attempts} walks (acceptance {result.acceptance:.4f}), {seconds_generation:.1f} s", flush=True)
    device = sdk.device()
    model = zoo.load(args.model, device=device)
    train_images, _ = cifar10.load_split("train")
    validation = sdk.to_tensor(train_images[splits.validation_indices(len(train_images),
                                                                      pool.manifest["spec"]["validation_size"])],
                               device)
    n_eval = len(result.perturbations) if args.evaluate is None else min(args.evaluate, len(result.perturbations))
    synthetic_rates = fooling_rates(model, validation, result.perturbations[:n_eval].to(device))
    real_rates = fooling_rates(model, validation, pool.vectors.to(device))
    unit_s = torch.nn.functional.normalize(result.perturbations.flatten(1).double(), dim=1)
    unit_r = torch.nn.functional.normalize(pool.vectors.flatten(1).double(), dim=1)
    cosines = (unit_s @ unit_r.T).abs().amax(dim=1).tolist() if len(unit_s) else []

    def stats(values: list[float]) -> dict[str, float]:
        return ({"mean": round(float(np.mean(values)), 4), "min": round(float(np.min(values)), 4),
                 "max": round(float(np.max(values)), 4)} if values else {})

    record = {
        "command": "python -m research.prn.synthetic " + " ".join(shlex.quote(a) for a in
                                                               (sys.argv[1:] if argv is None else argv)),
        "paper": "Akhtar, Liu, Mian, Defense against Universal Adversarial Perturbations, CVPR 2018, Algorithm 1",
        "model": args.model, "norm": args.norm, "xi": pool.xi, "xi_255": round(pool.xi * 255, 6),
        "seed": args.seed, "rescale": not args.no_rescale, "l2_fraction": args.l2_fraction,
        "count": len(result.perturbations),
        "requested": args.count, "attempts": result.attempts, "acceptance": round(result.acceptance, 6),
        "l2_threshold_255": round(result.l2_threshold * 255, 4),
        "walk_l2_255_quantiles": ({q: round(float(torch.quantile(result.walk_l2, float(q))) * 255, 4)
                                   for q in ("0.5", "0.9", "0.99", "1.0")} if len(result.walk_l2) else {}),
        "pool": str(pool.path.name), "pool_rows": [r["row"] for r in pool.records], "pool_digest": pool.digest(),
        "steps": stats(result.steps.double().tolist()),
        "l2_255": stats((norm_of(result.perturbations, "2") * 255).tolist()),
        "linf_255": stats((norm_of(result.perturbations, "inf") * 255).tolist()),
        "max_abs_cosine_with_pool": stats(cosines),
        "validation_images": len(validation),
        "fooling_rate_synthetic": stats(synthetic_rates), "fooling_rates_synthetic": [round(r, 4) for r in
                                                                                     synthetic_rates],
        "fooling_rate_real": stats(real_rates), "fooling_rates_real": [round(r, 4) for r in real_rates],
        "seconds_generation": round(seconds_generation, 1), "seconds": round(time.monotonic() - started, 1),
        "torch": torch.__version__, "python": platform.python_version(), "device": str(device),
    }
    out = args.out or synthetic_path(args.model, args.norm, args.pools_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, result.coefficients.numpy())
    out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"fooling rates on {len(validation)} held-out training images: synthetic {record['fooling_rate_synthetic']}"
          f" ({n_eval} measured), real {record['fooling_rate_real']}; wrote {out}", flush=True)
    return record


if __name__ == "__main__":
    sys.exit(run_command(main))
