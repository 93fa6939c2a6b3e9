"""The seed's evaluation at CIFAR-10 scale: Table 1 (same / cross norm × protocol A / B) and Tables 4–5 (cross
architecture), from the committed PRNs, detectors and held-out test perturbations.

    python -m research.prn.metrics [--images 5000 --seed 0 --out docs/prn.md]

Akhtar, Liu & Mian, CVPR 2018, §5. Test data: the shared CIFAR-10 test images (never used to compute, select or
train anything; ``--images`` < 5,000 takes a seeded subset). For each test pool (held-out test UAPs of one model
and norm) every image i draws one perturbation ρ_i uniformly from the pool and a coin is_perturbed_i with
probability 1/2 (protocol A: the half-perturbed set; protocol B: its subset the classifier gets right when clean);
perturbed images are PNG-rounded (:func:`research.prn.perturb.perturb_each`). The four metrics are those of
:mod:`research.analysis.detection_metrics`. A "framework" is one trained PRN + detector (model, training norm).

* Table 1 layout: the target model's frameworks; "same" = test perturbations of the norm the framework was trained
  on, "different" = of the other norm (column headers name the *test* norm, as in the seed).
* Tables 4–5 layout (ℓ2, ℓ∞; protocol A): row = zoo model whose test UAPs perturb the images and whose classifier
  is defended; column = model whose PRN + detector (trained with that model's perturbations, in front of that
  model) is used — the seed's "training for one targeted network defends another network". Without PRNs for the
  other models only the target's column is filled. An extra table applies the other models' UAPs to the target
  model itself (black-box transfer), defended by the target's framework.

Train/test disjointness (:func:`research.prn.pool.check_disjoint`) is checked for every (framework, test pool) pair
before anything is computed. Missing pieces are shown as "—" with the command that makes them. Prints the markdown,
writes it between ``<!-- prn-metrics:start -->`` and ``<!-- prn-metrics:end -->`` of ``--out``, and all numbers as
JSON to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from research import cifar10, cli, provenance
from research.analysis.detection_metrics import summarize
from submission_kit import sdk, zoo
from submission_kit.prn.defense import PRNDefense
from submission_kit.prn.detector import Detector, dct_features
from submission_kit.prn.network import load_prn
from submission_kit.prn.paths import (
    NORMS,
    POOLS_DIR,
    WEIGHTS_DIR,
    detector_command,
    detector_path,
    pool_command,
    prn_path,
    train_command,
)

from .errors import run_command
from .perturb import perturb_each
from .pool import Pool, PoolError, PoolNotFoundError, check_disjoint, load_pool

__all__ = ["SEED_TABLE1", "SEED_TABLE4", "SEED_TABLE5", "TABLE1_COLUMNS", "main"]

METRICS = ("prn_gain", "prn_restoration", "detection_rate", "defense_rate")
METRIC_NAMES = {"prn_gain": "PRN-gain (%)", "prn_restoration": "PRN-restoration (%)",
                "detection_rate": "Detection rate (%)", "defense_rate": "Defense rate (%)"}
NORM_NAMES = {"inf": "ℓ∞", "2": "ℓ2"}
#: Table 1 columns: (same|different, test norm, protocol).
TABLE1_COLUMNS: tuple[tuple[str, str, str], ...] = tuple(
    (kind, norm, protocol) for kind in ("same", "different") for norm in ("2", "inf") for protocol in ("A", "B"))
#: The seed's Table 1 (GoogLeNet), in TABLE1_COLUMNS order.
SEED_TABLE1: dict[str, tuple[float, ...]] = {
    "prn_gain": (77.0, 77.1, 73.9, 74.2, 76.4, 77.0, 72.6, 73.4),
    "prn_restoration": (97.0, 92.4, 95.6, 91.3, 97.1, 92.7, 93.8, 89.3),
    "detection_rate": (94.6, 94.6, 98.5, 98.4, 92.4, 92.3, 81.3, 81.2),
    "defense_rate": (97.4, 94.8, 96.4, 93.7, 97.5, 94.9, 94.3, 91.6),
}
_SEED_NETS = ("VGG-F", "CaffeNet", "GoogLeNet")
#: The seed's Table 4 (ℓ2, protocol A): metric → row (test perturbations' network) → values per training network.
SEED_TABLE4: dict[str, dict[str, tuple[float, ...]]] = {
    "prn_restoration": {"VGG-F": (93.2, 88.9, 81.7), "CaffeNet": (91.3, 95.1, 72.0), "GoogLeNet": (84.7, 85.9, 97.0)},
    "defense_rate": {"VGG-F": (95.5, 91.5, 82.4), "CaffeNet": (94.8, 96.2, 77.3), "GoogLeNet": (88.3, 87.3, 97.4)},
}
#: The seed's Table 5 (ℓ∞, protocol A).
SEED_TABLE5: dict[str, dict[str, tuple[float, ...]]] = {
    "prn_restoration": {"VGG-F": (90.3, 86.9, 74.1), "CaffeNet": (85.7, 93.6, 69.3), "GoogLeNet": (85.9, 83.3, 95.6)},
    "defense_rate": {"VGG-F": (92.2, 88.9, 74.8), "CaffeNet": (93.5, 95.2, 73.8), "GoogLeNet": (88.4, 85.4, 96.4)},
}
MARK_START, MARK_END = "<!-- prn-metrics:start -->", "<!-- prn-metrics:end -->"


@dataclass
class Framework:
    """A trained PRN (+ detector when present) of ``model`` for perturbations of ``norm``, and its train pool."""

    model: str
    norm: str
    defense: PRNDefense
    train_pool: Pool
    notes: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str]:
        return (self.model, self.norm)


@torch.no_grad()
def _classify(classifiers: dict[str, nn.Module], x: torch.Tensor) -> dict[str, np.ndarray]:
    return {name: model(x.clamp(0, 1)).argmax(1).cpu().numpy() for name, model in classifiers.items()}


@torch.no_grad()
def _rectify(framework: Framework, x: torch.Tensor,
             classifiers: dict[str, nn.Module]) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    rectified = framework.defense.prn(x)
    detector = framework.defense.detector
    detected = None if detector is None else detector.predict(dct_features(x - rectified))
    return _classify(classifiers, rectified), detected


def _evaluate_set(images: torch.Tensor, frameworks: list[Framework], classifiers: dict[str, nn.Module],
                  vectors: torch.Tensor | None, pick: torch.Tensor | None, batch_size: int) -> dict[str, Any]:
    """Predictions on one image set (clean when ``vectors`` is None, else image i perturbed by vectors[pick[i]])."""
    plain: dict[str, list[np.ndarray]] = {name: [] for name in classifiers}
    rectified: dict[tuple[str, str], dict[str, list[np.ndarray]]] = {f.key: {n: [] for n in classifiers}
                                                                      for f in frameworks}
    detected: dict[tuple[str, str], list[np.ndarray]] = {f.key: [] for f in frameworks}
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size]
        if vectors is not None:
            assert pick is not None
            x = perturb_each(x, vectors, pick[start:start + batch_size])
        for name, predictions in _classify(classifiers, x).items():
            plain[name].append(predictions)
        for framework in frameworks:
            predictions_r, flags = _rectify(framework, x, classifiers)
            for name, predictions in predictions_r.items():
                rectified[framework.key][name].append(predictions)
            if flags is not None:
                detected[framework.key].append(flags)
    return {
        "plain": {n: np.concatenate(p) for n, p in plain.items()},
        "rectified": {k: {n: np.concatenate(p) for n, p in d.items()} for k, d in rectified.items()},
        "detected": {k: (np.concatenate(v) if v else None) for k, v in detected.items()},
    }


def _cell(labels: np.ndarray, clean: dict[str, Any], perturbed: dict[str, Any], framework: Framework,
          classifier: str, is_perturbed: np.ndarray) -> dict[str, Any]:
    """The metrics of one (framework, test pool, classifier) for protocols A and B."""
    key = framework.key
    det_clean, det_perturbed = clean["detected"][key], perturbed["detected"][key]
    has_detector = det_clean is not None
    detected = (np.where(is_perturbed, det_perturbed, det_clean) if has_detector
                else np.zeros(len(labels), dtype=bool))
    out: dict[str, Any] = {"framework": list(key), "classifier": classifier, "detector": has_detector}
    for protocol in ("A", "B"):
        summary = summarize(labels, clean["plain"][classifier], perturbed["plain"][classifier],
                            clean["rectified"][key][classifier], perturbed["rectified"][key][classifier],
                            is_perturbed, detected, protocol).to_json()
        if not has_detector:
            summary["detection_rate"] = summary["defense_rate"] = float("nan")
            summary["acc_defended"] = float("nan")
        out[protocol] = summary
    return out


def _fmt(value: float | None) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1f}"


def render(result: dict[str, Any]) -> str:
    """The markdown report of :func:`main`'s result."""
    target = result["target"]
    lines = [f"Generated by `{result['command']}` ({result['date']}, {result['seconds']:.0f} s, "
             f"{result['threads']} thread(s), {result['device']}). {result['images']} shared CIFAR-10 test images; "
             f"one standard error of an accuracy p is √(p(1−p)/{result['images']}) ≤ "
             f"{50 / math.sqrt(max(result['images'], 1)):.1f} points.", ""]
    lines += ["### Test perturbations", "",
              "| model | norm | test UAPs | method | keep rule (fooling rate ≥ / \\|cos\\| ≤; seed: 0.8 / 0.15) | "
              "ξ (0-255) | fooling rate (held-out train images, selection) | fooling rate on these test images | "
              "max \\|cos\\| with train UAPs |", "|---|---|---|---|---|---|---|---|---|"]
    for pool in result["pools"]:
        lines.append(f"| {pool['model']} | {NORM_NAMES[pool['norm']]} | {pool['count']} | "
                     f"{pool.get('method', 'deepfool')} | {pool.get('rule', '')} | {pool['xi_255']:.1f} | "
                     f"{pool['fooling_validation']} | {pool['fooling_test']:.3f} | {pool['max_cos_train']} |")
    lines += ["", f"### Table 1 layout: defense summary for **{target}**", "",
              "Columns name the **test** perturbation type; \"same\" = the framework was trained on that type, "
              "\"different\" = on the other one. Ours, then the seed's Table 1 (GoogLeNet, ImageNet).", ""]
    header = "| Metric | " + " | ".join(f"{kind}: {NORM_NAMES[norm]} Prot-{protocol}"
                                        for kind, norm, protocol in TABLE1_COLUMNS) + " |"
    lines += [header, "|---" * (len(TABLE1_COLUMNS) + 1) + "|"]
    table1 = result["table1"]
    for metric in METRICS:
        cells = [_fmt(table1.get(f"{kind}/{norm}", {}).get(protocol, {}).get(metric))
                 for kind, norm, protocol in TABLE1_COLUMNS]
        lines.append(f"| {METRIC_NAMES[metric]} | " + " | ".join(cells) + " |")
    for label, key in (("accuracy clean acc(𝓘_c) (%)", "acc_clean"), ("accuracy perturbed acc(𝓘_ρ) (%)",
                                                                         "acc_perturbed"),
                       ("accuracy half-perturbed, undefended (%)", "acc_mixed"),
                       ("accuracy half-perturbed, defended acc(𝓘*) (%)", "acc_defended")):
        cells = []
        for kind, norm, protocol in TABLE1_COLUMNS:
            value = table1.get(f"{kind}/{norm}", {}).get(protocol, {}).get(key)
            cells.append(_fmt(None if value is None else 100 * value))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for metric in METRICS:
        lines.append(f"| seed (GoogLeNet): {METRIC_NAMES[metric]} | " +
                     " | ".join(f"{v:.1f}" for v in SEED_TABLE1[metric]) + " |")
    for number, norm, seed_table in (("4", "2", SEED_TABLE4), ("5", "inf", SEED_TABLE5)):
        rows, columns = result["cross"][norm]["rows"], result["cross"][norm]["columns"]
        lines += ["", f"### Table {number} layout: {NORM_NAMES[norm]}-type cross-network defense (Prot-A)", "",
                  "Row: the model whose test UAPs perturb the images and whose classifier is defended; column: "
                  "the model whose PRN + detector is used.", ""]
        for metric in ("prn_restoration", "defense_rate"):
            lines += [f"| {METRIC_NAMES[metric]} | " + " | ".join(f"{c}'s PRN" for c in columns) + " |",
                      "|---" * (len(columns) + 1) + "|"]
            for row in rows:
                cells = [_fmt(result["cross"][norm]["cells"].get(f"{row}/{c}", {}).get("A", {}).get(metric))
                         for c in columns]
                lines.append(f"| {row} | " + " | ".join(cells) + " |")
            lines.append("")
        lines += [f"Seed's Table {number} (columns: the network the training perturbations were computed on):", "",
                  "| metric | test perturbations of | " + " | ".join(_SEED_NETS) + " |", "|---|---|---|---|---|"]
        for metric, table in seed_table.items():
            for net, values in table.items():
                lines.append(f"| {METRIC_NAMES[metric]} | {net} | " + " | ".join(f"{v:.1f}" for v in values) + " |")
        transfer = result["transfer"][norm]
        if transfer:
            lines += ["", f"Black-box transfer ({NORM_NAMES[norm]}, not in the seed): other models' test UAPs "
                      f"against **{target}** defended by its own framework.", "",
                      "| UAPs of | acc. clean | acc. perturbed | PRN-gain | PRN-restoration | detection | defense |",
                      "|---|---|---|---|---|---|---|"]
            for source, cell in transfer.items():
                a = cell["A"]
                lines.append(f"| {source} | {_fmt(100 * a['acc_clean'])} | {_fmt(100 * a['acc_perturbed'])} | "
                             f"{_fmt(a['prn_gain'])} | {_fmt(a['prn_restoration'])} | {_fmt(a['detection_rate'])} | "
                             f"{_fmt(a['defense_rate'])} |")
    if result["missing"]:
        lines += ["", "Missing (cells shown as —; PRNs of the other models only add columns to Tables 4–5):", ""]
        lines += [f"* {m}" for m in result["missing"]]
    return "\n".join(lines) + "\n"


def _load_framework(model: str, norm: str, missing: list[str], *, weights_dir: Path,
                    pools_dir: Path) -> Framework | None:
    weights = prn_path(model, norm, weights_dir)
    if not weights.is_file():
        missing.append(f"PRN {model}/{norm}: `{train_command(model, norm)}`")
        return None
    try:
        train_pool = load_pool(model=model, norm=norm, role="train", root=pools_dir)
    except (PoolNotFoundError, PoolError) as exc:
        raise SystemExit(f"{weights} exists but its train pool cannot be loaded to check disjointness: {exc}") from None
    detector = None
    if detector_path(model, norm, weights_dir).is_file():
        detector = Detector.load(detector_path(model, norm, weights_dir))
    else:
        missing.append(f"detector {model}/{norm}: `{detector_command(model, norm)}`")
    framework = Framework(model, norm, PRNDefense(load_prn(weights, sdk.device()), detector), train_pool)
    record = json.loads(weights.with_suffix(".json").read_text())
    if record.get("pool_digest") not in (None, train_pool.digest()):
        framework.notes.append(f"PRN {model}/{norm} was trained on another version of its train pool")
    return framework


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse arguments, evaluate, print and write the report; return the numbers."""
    from research.zoo.evaluate import write_table

    shared = cli.parent(
        seed=cli.Option(default=0, help="draws of the test perturbations and coins"),
        out=cli.Option(default=Path("docs/prn.md"), help="markdown file with the markers"),
        threads=cli.Option(help="torch threads (default: torch's)"),
        images=cli.Option(default=5000, help="shared test images (seeded subset if < 5,000)"),
    )
    parser = argparse.ArgumentParser(parents=[shared], description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", default=zoo.TARGET_MODEL, help="the defended target model (Table 1)")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--json", type=Path, default=None, help="numbers (default submission_kit/prn/weights/<model>/"
                                                                 "metrics.json)")
    parser.add_argument("--no-write", action="store_true", help="only print")
    parser.add_argument("--pools-dir", type=Path, default=POOLS_DIR, help="folder of the pools")
    parser.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR, help="folder of the PRNs and detectors")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    command = "python -m research.prn.metrics " + " ".join(shlex.quote(a) for a in
                                                        (sys.argv[1:] if argv is None else argv))
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.monotonic()
    device = sdk.device()
    target = args.model
    models = [target] + [m for m in zoo.names() if m != target]
    missing: list[str] = []
    frameworks = {(m, n): f for m in models for n in NORMS
                  if (f := _load_framework(m, n, missing, weights_dir=args.weights_dir, pools_dir=args.pools_dir))
                  is not None}
    pools: dict[tuple[str, str], Pool] = {}
    for m in models:
        for n in NORMS:
            try:
                pools[(m, n)] = load_pool(model=m, norm=n, role="test", root=args.pools_dir)
            except PoolNotFoundError:
                missing.append(f"test pool {m}/{n}: `{pool_command(m, n, 'test')}`")
            except PoolError as exc:
                missing.append(f"test pool {m}/{n} has no usable perturbation: {exc}")
    # Which frameworks each test pool is evaluated with: both norms for the target's pools (Table 1), the same
    # norm for every pool (Tables 4-5).
    plan = {key: [f for f in frameworks.values() if f.norm == key[1] or key[0] == target == f.model]
            for key in pools}
    max_cos: dict[tuple[str, str], float] = {}
    for key, used in plan.items():
        for framework in used:
            cos = check_disjoint(framework.train_pool, pools[key])
            if framework.model == key[0] and framework.norm == key[1]:
                max_cos[key] = cos
    images_all, labels_all = cifar10.load_split("test")
    if args.images < len(images_all):
        chosen = np.sort(np.random.default_rng(args.seed).choice(len(images_all), size=args.images, replace=False))
        images_all, labels_all = images_all[chosen], labels_all[chosen]
    images = sdk.to_tensor(images_all, device)
    labels = labels_all.astype(np.int64)
    classifiers = {m: zoo.load(m, device=device) for m in models if m == target or any(k[0] == m for k in pools)}
    print(f"{len(images)} test images; frameworks {sorted(frameworks)}; test pools "
          f"{ {k: len(p) for k, p in pools.items()} }", flush=True)
    clean = _evaluate_set(images, list(frameworks.values()), classifiers, None, None, args.batch_size)
    draws: dict[tuple[str, str], tuple[torch.Tensor, np.ndarray]] = {}
    perturbed: dict[tuple[str, str], dict[str, Any]] = {}
    for number, key in enumerate(sorted(pools)):
        generator = torch.Generator().manual_seed(args.seed * 1000 + number)
        pick = torch.randint(len(pools[key]), (len(images),), generator=generator)
        coin = (torch.rand(len(images), generator=generator) < 0.5).numpy()
        draws[key] = (pick, coin)
        needed = {key[0]: classifiers[key[0]], target: classifiers[target]}
        perturbed[key] = _evaluate_set(images, plan[key], needed, pools[key].vectors.to(device), pick, args.batch_size)
        print(f"  test pool {key}: {time.monotonic() - started:.0f} s", flush=True)

    table1: dict[str, dict[str, Any]] = {}
    for kind in ("same", "different"):
        for test_norm in NORMS:
            train_norm = test_norm if kind == "same" else next(n for n in NORMS if n != test_norm)
            key, fkey = (target, test_norm), (target, train_norm)
            if key in pools and fkey in frameworks:
                table1[f"{kind}/{test_norm}"] = _cell(labels, clean, perturbed[key], frameworks[fkey], target,
                                                      draws[key][1])
    cross: dict[str, dict[str, Any]] = {}
    transfer: dict[str, dict[str, Any]] = {}
    for norm in NORMS:
        rows = [m for m in models if (m, norm) in pools]
        columns = [m for m in models if (m, norm) in frameworks]
        cells = {f"{r}/{c}": _cell(labels, clean, perturbed[(r, norm)], frameworks[(c, norm)], r,
                                   draws[(r, norm)][1]) for r in rows for c in columns}
        cross[norm] = {"rows": rows, "columns": columns, "cells": cells}
        transfer[norm] = ({r: _cell(labels, clean, perturbed[(r, norm)], frameworks[(target, norm)], target,
                                    draws[(r, norm)][1]) for r in rows if r != target}
                          if (target, norm) in frameworks else {})
    pool_rows = []
    for key in sorted(pools):
        plain_clean = clean["plain"][key[0]]
        pick, _ = draws[key]
        spec = pools[key].manifest["spec"]
        pool_rows.append({
            "model": key[0], "norm": key[1], "count": len(pools[key]), "xi_255": pools[key].xi * 255,
            "method": spec.get("method", "deepfool"), "rule": f"{spec['min_fooling_rate']} / {spec['max_abs_cosine']}",
            "fooling_validation": ", ".join(f"{r['fooling_rate_validation']:.3f}" for r in pools[key].records),
            "fooling_test": float((perturbed[key]["plain"][key[0]] != plain_clean).mean()),
            "max_cos_train": f"{max_cos[key]:.3f}" if key in max_cos else "—",
            "rows": [r["row"] for r in pools[key].records], "digest": pools[key].digest()})
    result = {
        "command": command, "date": time.strftime("%Y-%m-%d"), "target": target, "images": len(images),
        "seed": args.seed, "pools": pool_rows, "table1": table1, "cross": cross, "transfer": transfer,
        "missing": missing + [note for f in frameworks.values() for note in f.notes],
        "frameworks": {f"{m}/{n}": {"prn": f"{m}/{prn_path(m, n).name}",
                                    "detector": frameworks[(m, n)].defense.detector is not None}
                       for (m, n) in frameworks},
        "seconds": time.monotonic() - started, **provenance.environment(device),
    }
    report = render(result)
    print(report)
    if not args.no_write:
        write_table(args.out, report, start=MARK_START, end=MARK_END)
        json_path = args.json or args.weights_dir / target / "metrics.json"
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=1, default=float) + "\n")
        print(f"wrote {args.out} (between the markers) and {json_path}")
    return result


if __name__ == "__main__":
    sys.exit(run_command(main))
