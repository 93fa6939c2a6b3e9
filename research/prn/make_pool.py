"""Compute (or extend) a pool of real universal perturbations for one zoo model, norm and role.

Usage (the j-th candidate of a pool uses its own disjoint subset of training images, see
:mod:`research.prn.splits`, and its own seed; candidates are kept by the seed's rule, see :mod:`research.prn.pool`)::

    python -m research.prn.make_pool --model vgg6_w48 --norm inf --role train --count 8 --max-minutes 40

Resumable: an existing pool is extended (the next candidate number continues where it stopped; the pool's spec —
ξ, UAP parameters, subset size, thresholds — must match). Time-budgeted: ``--max-minutes`` bounds the whole run
(no candidate starts with less than a minute left, and each UAP gets at most ``min(--uap-minutes, what is
left)``); the pool files are rewritten after every candidate, so an interruption loses one candidate at most.
``--reselect`` re-applies new thresholds to the stored candidates without computing anything.

Each candidate is one universal perturbation computed on ``--subset-size`` training images by ``--method``:

* ``sgd`` (default): :func:`submission_kit.attack_methods.universal.sgd_universal_perturbation` (Shafahi et al.,
"Universal
  adversarial training", AAAI 2020, Algorithm 1): sign-gradient (ℓ∞) or normalized-gradient (ℓ2) ascent of the
  cross-entropy of the clean predictions over minibatches; ``--epochs``, ``--step-size`` (0-255 units, default
  :data:`SGD_STEP_FRACTION` · ξ: ξ/7.8 for ℓ∞, ξ/4 for ℓ2), ``--beta``, ``--batch-size``. On this project's
  CIFAR-10 models it finds far stronger UAPs than DeepFool for the same ξ (``attacks/uap_sgd/README.md``),
  strong enough to train a rectifier on;
* ``deepfool``: :func:`submission_kit.attack_methods.universal.universal_perturbation` (Moosavi-Dezfooli et al.,
"Universal
  adversarial perturbations", CVPR 2017, Algorithm 1; the seed's perturbations); ``--delta``,
  ``--max-iter-uni``, ``--num-classes``, ``--overshoot``, ``--max-iter-df``.

The flags of the other method are refused. Its fooling rate is measured on the held-out validation images
(PNG-rounded perturbed images, :func:`research.prn.perturb.fooling_rates`). Options of the method's function this
command has no flag for can be passed as ``--uap-kwarg NAME=VALUE`` (VALUE is read as JSON, else as a string).
The spec records the method, the paper and every keyword argument of the function (defaults filled in), and so
does each candidate's record; a pool is extended only with the same method and arguments.
"""

from __future__ import annotations

import argparse
import inspect
import json
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

from research import cifar10, cli, provenance
from research.uap.make_uap import PAPERS
from submission_kit import sdk, zoo
from submission_kit.attack_methods.universal import sgd_universal_perturbation, universal_perturbation
from submission_kit.prn.paths import NORMS, POOLS_DIR, ROLES, pool_path

from . import splits
from .errors import run_command
from .perturb import default_xi, fooling_rates, mean_l2_norm, norm_of, p_of
from .pool import (
    FORMAT,
    PoolError,
    PoolOverlapError,
    keep_decision,
    read_pool_files,
    reselect,
    seed_departures,
    stored_version,
    write_pool_files,
)

__all__ = ["METHODS", "SGD_STEP_FRACTION", "PoolSpec", "default_step_size", "grow_pool", "main", "method_params"]

#: ``--method`` → the function that computes one UAP.
METHODS: dict[str, Callable[..., Any]] = {"deepfool": universal_perturbation, "sgd": sgd_universal_perturbation}
#: Keyword arguments that :func:`grow_pool` sets itself (ξ, p, the seeded generator, the budget, the log).
_SET_BY_POOL = frozenset({"xi", "p", "generator", "max_seconds", "log"})
#: Default SGD step as a fraction of ξ, per norm. ℓ∞: 1.275/255 at ξ∞ = 10/255, the step of ``attacks/uap_sgd``
#: (8 sign steps reach the boundary). ℓ2 (a step of this length along g/‖g‖₂): ξ2/4, 73.7 in 0-255 units at
#: ξ2 = 294.9; in small runs on ``vgg6_w48`` (docs/prn.md, "SGD step and cosines") ξ2/8 gave weaker UAPs and
#: ξ2/2 correlated ones.
SGD_STEP_FRACTION = {"inf": 0.1275, "2": 0.25}


def default_step_size(norm: str, xi: float) -> float:
    """The default SGD step on the [0, 1] scale: ``SGD_STEP_FRACTION[norm]`` · ξ."""
    return SGD_STEP_FRACTION[norm] * xi


def method_params(method: str, given: dict[str, Any]) -> dict[str, Any]:
    """Every keyword argument of the method's function that a pool can set, with defaults filled in.

    Args:
        method: A key of :data:`METHODS`.
        given: Values chosen by the caller (names of the function's keyword-only arguments).

    Returns:
        ``{name: value}`` for every keyword-only argument except those in :data:`_SET_BY_POOL`, in signature
        order; ``given`` overrides the defaults.

    Raises:
        ValueError: Unknown method, or a name the function does not take (or that the pool sets itself).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    parameters = {name: parameter for name, parameter in inspect.signature(METHODS[method]).parameters.items()
                  if parameter.kind is inspect.Parameter.KEYWORD_ONLY and name not in _SET_BY_POOL}
    unknown = sorted(set(given) - set(parameters))
    if unknown:
        raise ValueError(f"{METHODS[method].__name__} (--method {method}) takes no argument {unknown}; it takes "
                         f"{sorted(parameters)} (xi, p, generator, max_seconds and log are set by the pool)")
    return {name: given.get(name, parameter.default) for name, parameter in parameters.items()}


@dataclass(frozen=True, kw_only=True)
class PoolSpec:
    """What defines a pool; stored in its manifest and required to match when the pool is extended.

    Attributes:
        model: Zoo model name.
        norm: ``"inf"`` or ``"2"``.
        role: ``"train"`` or ``"test"``.
        xi: Budget ξ on the [0, 1] scale.
        subset_size: Training images per UAP, ≥ 1.
        validation_size: Held-out training images for the fooling rate, ≥ 1.
        min_fooling_rate: Keep rule: smallest fooling rate on the validation images, a fraction in [0, 1].
        max_abs_cosine: Keep rule: largest |cosine|, in [0, 1], with a kept perturbation of the same model and
            norm.
        seed: Base seed; candidate j's UAP seed is ``seed + slot``.
        method: ``"sgd"`` (Shafahi et al. 2020) or ``"deepfool"`` (Moosavi-Dezfooli et al. 2017); see
            :data:`METHODS`.
        uap: Keyword arguments of the method's function (:func:`method_params` fills in the defaults).
    """

    model: str
    norm: str
    role: str
    xi: float
    subset_size: int
    validation_size: int = splits.VALIDATION_SIZE
    min_fooling_rate: float = 0.8
    max_abs_cosine: float = 0.15
    seed: int = 0
    method: str = "sgd"
    uap: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict with ξ (and an SGD step) also in 0-255 units, the paper, the permutation seed and the
        departures from the seed's rule and algorithm."""
        out = {**asdict(self), "paper": PAPERS[self.method], "xi_255": round(self.xi * 255, 6),
               "permutation_seed": splits.PERMUTATION_SEED}
        if "step_size" in self.uap:
            out["step_size_255"] = round(float(self.uap["step_size"]) * 255, 6)
        out["departures_from_seed"] = seed_departures(out)
        return out


_SPEC_KEYS = ("model", "norm", "role", "xi", "subset_size", "validation_size", "min_fooling_rate", "max_abs_cosine",
              "seed", "method", "uap")


def _check_same_spec(stored: dict[str, Any], spec: PoolSpec, path: Path) -> None:
    stored = {"method": "deepfool", **stored}  # pools made before --method existed are DeepFool pools
    wanted = spec.to_json()
    different = [k for k in _SPEC_KEYS if json.dumps(stored.get(k), sort_keys=True) != json.dumps(wanted[k],
                                                                                                  sort_keys=True)]
    if different:
        detail = ", ".join(f"{k}: stored {stored.get(k)!r}, asked {wanted[k]!r}" for k in different)
        raise PoolError(f"{path} was made with other settings ({detail}). Extend it with the same settings "
                        f"(method and its arguments included), use --reselect to change the thresholds, or write "
                        f"a new pool with --out")


def grow_pool(model: nn.Module, train_images: np.ndarray, spec: PoolSpec, *, path: Path, count: int,
              max_candidates: int, max_seconds: float | None = None, uap_seconds: float | None = None,
              others: torch.Tensor | None = None, avoid: Sequence[splits.Subset] = (),
              device: torch.device | str = "cpu", command: str = "",
              log: Callable[[str], None] = lambda message: None) -> dict[str, Any]:
    """Add candidates to the pool at ``path`` until it holds ``count`` kept perturbations.

    Stops when ``count`` perturbations are kept, when the pool holds ``max_candidates`` candidates, when
    ``max_seconds`` are spent (no candidate starts with less than 60 s left, unless no budget is given), or when
    the training split has no free slot left. The pool files are rewritten after every candidate.

    Args:
        model: The classifier (eval mode), returning logits for images in [0, 1].
        train_images: The whole training split, uint8 (N, H, W, 3) (subsets are chosen by slot).
        spec: The pool's definition; must equal the stored one when the pool exists.
        path: The pool's ``.npy`` file.
        count: Kept perturbations wanted in the pool.
        max_candidates: Cap on the candidates the pool may hold (kept or not).
        max_seconds: Budget of this call.
        uap_seconds: Budget of one UAP (``max_seconds`` of the method's function).
        others: Kept perturbations of the sibling pool (same model and norm, other role) for the cosine rule.
        avoid: Image subsets of the model's other pools; a candidate whose subset overlaps one raises
            :class:`research.prn.pool.PoolOverlapError` before anything is computed (it happens only when pools
            of one model were made with different ``subset_size`` or ``validation_size``).
        device: Where to compute.
        command: The command line, for the record.
        log: Progress messages.

    Returns:
        The manifest as written.
    """
    started = time.monotonic()
    n_train = len(train_images)
    params = method_params(spec.method, spec.uap)  # raises on an unknown method or argument before any work
    function = METHODS[spec.method]
    existing = read_pool_files(path)
    if existing is None:
        array = np.zeros((0, 3, *train_images.shape[1:3]), dtype=np.float16)
        manifest: dict[str, Any] = {"format": FORMAT, "spec": spec.to_json(), "candidates": [], "runs": []}
    else:
        array, manifest = existing
        _check_same_spec(manifest["spec"], spec, path)
    validation = sdk.to_tensor(train_images[splits.validation_indices(n_train, spec.validation_size)], device)
    with torch.no_grad():
        validation_labels = torch.cat([model(validation[s:s + 500]).argmax(1) for s in range(0, len(validation), 500)])
    kept = [stored_version(torch.from_numpy(array[i]), spec.norm, spec.xi)
            for i, c in enumerate(manifest["candidates"]) if c["kept"]]
    compare = list(others) if others is not None else []
    run = {"command": command, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "candidates_added": 0,
           **provenance.environment(device), "stopped_by": ""}
    manifest["runs"].append(run)
    while True:
        if len(kept) >= count:
            run["stopped_by"] = "count"
            break
        if len(manifest["candidates"]) >= max_candidates:
            run["stopped_by"] = "max_candidates"
            break
        left = None if max_seconds is None else max_seconds - (time.monotonic() - started)
        if left is not None and left < 60:
            run["stopped_by"] = "max_minutes"
            break
        j = len(manifest["candidates"])
        s = splits.slot(spec.role, spec.norm, j)
        try:
            subset = splits.subset_for_slot(s, n_train=n_train, subset_size=spec.subset_size,
                                            validation_size=spec.validation_size)
        except ValueError as exc:
            run["stopped_by"] = f"no free slot: {exc}"
            break
        indices = set(subset.indices().tolist())
        clash = [other for other in avoid if indices & set(other.indices().tolist())]
        if clash:
            raise PoolOverlapError(f"candidate {j} of {path.name} would use training images of another pool of "
                                   f"{spec.model} (positions {clash[0].start}-{clash[0].stop}); make all pools of a "
                                   f"model with the same --subset-size and --validation-size")
        budget = [b for b in (left, uap_seconds) if b is not None]
        seed = spec.seed + s
        images = sdk.to_tensor(train_images[subset.indices()], device)
        log(f"candidate {j} (slot {s}, images {subset.start}-{subset.stop} of the permutation, seed {seed}): "
            f"{len(kept)}/{count} kept so far")
        t0 = time.monotonic()
        result = function(model, images, xi=spec.xi, p=p_of(spec.norm), generator=torch.Generator().manual_seed(seed),
                          max_seconds=min(budget) if budget else None, log=log, **params)
        seconds_uap = time.monotonic() - t0
        v = stored_version(result.v, spec.norm, spec.xi)
        rate = fooling_rates(model, validation, v.unsqueeze(0).to(device), clean_labels=validation_labels)[0]
        keep, largest, reason = keep_decision(rate, v, torch.stack(kept + compare) if kept + compare
                                              else torch.zeros(0, *v.shape), min_fooling_rate=spec.min_fooling_rate,
                                              max_abs_cosine=spec.max_abs_cosine)
        record = {
            "row": j, "slot": s, "subset": subset.to_json(), "uap_seed": seed,
            "method": spec.method, "paper": PAPERS[spec.method], "params": params,
            **({"step_size_255": round(float(params["step_size"]) * 255, 6)} if "step_size" in params else {}),
            "passes": result.passes, "stopped_by": result.stopped_by, "deepfool_calls": result.deepfool_calls,
            "updates": result.updates,
            "fooling_rate_subset_per_pass": [round(r, 4) for r in result.fooling_rates],
            "fooling_rate_validation": round(rate, 4),
            "linf_255": round(float(norm_of(v, "inf")) * 255, 4), "l2_255": round(float(norm_of(v, "2")) * 255, 4),
            "max_abs_cosine": round(largest, 6), "kept": keep, "reason": reason,
            "seconds_uap": round(seconds_uap, 1), "seconds": round(time.monotonic() - t0, 1),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        manifest["candidates"].append(record)
        array = np.concatenate([array, v.numpy().astype(np.float16)[None]])
        run["candidates_added"] += 1
        run["seconds"] = round(time.monotonic() - started, 1)
        if keep:
            kept.append(v)
        write_pool_files(path, array, manifest)
        log(f"candidate {j}: fooling rate {rate:.4f} on {len(validation)} held-out images, |cos| max "
            f"{largest:.3f}, {'KEPT' if keep else 'rejected: ' + reason} ({record['seconds']:.0f} s)")
    run["seconds"] = round(time.monotonic() - started, 1)
    run["kept_total"] = len(kept)
    write_pool_files(path, array, manifest)
    return manifest


def _parse_kwarg(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


#: Method → its flags (argparse destinations = keyword names) and the defaults this command uses.
_METHOD_FLAGS: dict[str, dict[str, Any]] = {
    "sgd": {"epochs": 10, "step_size": None, "beta": None, "batch_size": 100},
    "deepfool": {"delta": 0.2, "max_iter_uni": 3, "num_classes": 10, "overshoot": 0.02, "max_iter_df": 10},
}


def _method_arguments(args: argparse.Namespace, xi: float) -> dict[str, Any]:
    """The method's keyword arguments from the flags (defaults of :data:`_METHOD_FLAGS`) and ``--uap-kwarg``."""
    chosen = {name: getattr(args, name, default) for name, default in _METHOD_FLAGS[args.method].items()}
    if args.method == "sgd":
        chosen["step_size"] = (default_step_size(args.norm, xi) if chosen["step_size"] is None
                               else chosen["step_size"] / 255)
    return {**chosen, **dict(args.uap_kwarg)}


def _sibling_vectors(path: Path, norm: str, xi: float) -> torch.Tensor | None:
    files = read_pool_files(path)
    if files is None:
        return None
    array, manifest = files
    rows = [i for i, c in enumerate(manifest["candidates"]) if c["kept"]]
    return torch.stack([stored_version(torch.from_numpy(array[i]), norm, xi) for i in rows]) if rows else None


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse arguments, extend (or reselect) the pool, print a summary; return the manifest."""
    shared = cli.parent(
        seed=cli.Option(default=0, help="base seed (candidate seed = seed + slot)"),
        out=cli.Option(help="pool .npy (default <pools-dir>/<model>/...)"),
        threads=cli.Option(help="torch threads (default: torch's)"),
    )
    parser = argparse.ArgumentParser(parents=[shared], description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", default=zoo.TARGET_MODEL, help="zoo model to compute the UAPs on")
    parser.add_argument("--norm", choices=NORMS, required=True, help="inf: xi = 10/255; 2: 4%% of the mean image norm")
    parser.add_argument("--role", choices=ROLES, required=True, help="train or test perturbations (disjoint images)")
    parser.add_argument("--count", type=int, required=True, help="kept perturbations wanted in the pool")
    parser.add_argument("--max-candidates", type=int, default=None, help="cap on candidates (default 3 x count)")
    parser.add_argument("--max-minutes", type=float, default=None, help="budget of this run")
    parser.add_argument("--uap-minutes", type=float, default=8.0, help="budget of one UAP")
    parser.add_argument("--subset-size", type=int, default=1000,
                        help="training images per UAP (use one value for all pools of a model; 1000 leaves room "
                             "for 12 candidates per pool)")
    parser.add_argument("--xi", type=float, default=None,
                        help="budget in 0-255 units (default: 10 for inf; 4%% of the mean image l2 norm for 2)")
    parser.add_argument("--min-fooling-rate", type=float, default=0.8, help="keep rule (seed: 0.8)")
    parser.add_argument("--max-cosine", type=float, default=0.15, help="keep rule: largest |cosine| (seed: 0.15)")
    parser.add_argument("--method", choices=sorted(METHODS), default="sgd",
                        help="sgd: Shafahi et al. 2020 (stronger UAPs on these models); deepfool: Moosavi-Dezfooli "
                             "et al. 2017 (the seed's)")
    sgd = parser.add_argument_group("--method sgd (sgd_universal_perturbation)")
    sgd.add_argument("--epochs", type=int, default=argparse.SUPPRESS, help="passes over the subset (default 10)")
    sgd.add_argument("--step-size", type=float, default=argparse.SUPPRESS,
                     help=f"step in 0-255 units, l-inf: per-value sign step, l2: step length along the "
                          f"normalized gradient (default {SGD_STEP_FRACTION['inf']} x xi for inf: 1.275 at xi = 10; "
                          f"{SGD_STEP_FRACTION['2']} x xi for 2: 73.7 at xi2 = 294.9)")
    sgd.add_argument("--beta", type=float, default=argparse.SUPPRESS,
                     help="clamp of the per-image cross-entropy (default: none)")
    sgd.add_argument("--batch-size", type=int, default=argparse.SUPPRESS, help="images per step (default 100)")
    deepfool = parser.add_argument_group("--method deepfool (universal_perturbation)")
    deepfool.add_argument("--delta", type=float, default=argparse.SUPPRESS,
                          help="UAP stops at fooling rate 1 - delta (default 0.2)")
    deepfool.add_argument("--max-iter-uni", type=int, default=argparse.SUPPRESS, help="pass cap (default 3)")
    deepfool.add_argument("--num-classes", type=int, default=argparse.SUPPRESS,
                          help="DeepFool top-k candidate classes (default 10)")
    deepfool.add_argument("--overshoot", type=float, default=argparse.SUPPRESS,
                          help="DeepFool overshoot (default 0.02)")
    deepfool.add_argument("--max-iter-df", type=int, default=argparse.SUPPRESS,
                          help="DeepFool iteration cap (default 10)")
    parser.add_argument("--uap-kwarg", type=_parse_kwarg, action="append", default=[], metavar="NAME=VALUE",
                        help="extra keyword argument of the method's function (repeatable; recorded)")
    parser.add_argument("--validation-size", type=int, default=splits.VALIDATION_SIZE,
                        help="held-out training images for the fooling rate")
    parser.add_argument("--reselect", action="store_true", help="only re-apply the thresholds to stored candidates")
    parser.add_argument("--pools-dir", type=Path, default=POOLS_DIR, help="folder of the pools")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    wrong = [flag for method, flags in _METHOD_FLAGS.items() if method != args.method
             for flag in flags if hasattr(args, flag)]
    if wrong:
        parser.error(f"{', '.join('--' + f.replace('_', '-') for f in wrong)} not used by --method {args.method}")
    clash = [name for name, _ in args.uap_kwarg if name in _METHOD_FLAGS[args.method]]
    if clash:
        parser.error(f"--uap-kwarg {clash[0]}=...: use --{clash[0].replace('_', '-')}")
    try:
        method_params(args.method, dict(args.uap_kwarg))  # names only, before any data is loaded
    except ValueError as exc:
        parser.error(str(exc))
    command = "python -m research.prn.make_pool " + " ".join(shlex.quote(a) for a in
                                                          (sys.argv[1:] if argv is None else argv))
    if args.threads:
        torch.set_num_threads(args.threads)
    path = args.out or pool_path(args.model, args.norm, args.role, args.pools_dir)
    sibling = path.with_name(path.name.replace(f"_{args.role}.", "_test." if args.role == "train" else "_train."))

    if args.reselect:
        files = read_pool_files(path)
        if files is None:
            raise SystemExit(f"{path}: no pool to reselect")
        array, manifest = files
        xi = float(manifest["spec"]["xi"])
        new = reselect(array, manifest, min_fooling_rate=args.min_fooling_rate, max_abs_cosine=args.max_cosine,
                       others=_sibling_vectors(sibling, args.norm, xi))
        new["runs"].append({"command": command, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                            "reselect": True})
        write_pool_files(path, array, new)
        _summary(path, new)
        return new

    torch.set_grad_enabled(True)
    device = sdk.device()
    model = zoo.load(args.model, device=device)
    train_images, _ = cifar10.load_split("train")
    if args.xi is not None:
        xi = args.xi / 255
    else:
        xi = default_xi(args.norm, train_images)
    uap = method_params(args.method, _method_arguments(args, xi))
    spec = PoolSpec(model=args.model, norm=args.norm, role=args.role, xi=xi, subset_size=args.subset_size,
                    validation_size=args.validation_size, min_fooling_rate=args.min_fooling_rate,
                    max_abs_cosine=args.max_cosine, seed=args.seed, method=args.method, uap=uap)

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    if args.norm == "2":
        log(f"mean l2 norm of the {len(train_images)} training images: {mean_l2_norm(train_images) * 255:.1f} "
            f"(0-255 units); xi = {xi * 255:.1f}")
    avoid = []
    for role in ROLES:
        for norm in NORMS:
            other = pool_path(args.model, norm, role, args.pools_dir)
            if other != path and (files := read_pool_files(other)) is not None:
                avoid += [splits.Subset(**c["subset"]) for c in files[1]["candidates"]]
    manifest = grow_pool(model, train_images, spec, path=path, count=args.count, avoid=avoid,
                         max_candidates=args.max_candidates or 3 * args.count,
                         max_seconds=None if args.max_minutes is None else args.max_minutes * 60,
                         uap_seconds=args.uap_minutes * 60, others=_sibling_vectors(sibling, args.norm, xi),
                         device=device, command=command, log=log)
    _summary(path, manifest)
    return manifest


def _summary(path: Path, manifest: dict[str, Any]) -> None:
    candidates = manifest["candidates"]
    kept = [c for c in candidates if c["kept"]]
    spec = manifest["spec"]
    print(f"{path}: {len(kept)} kept of {len(candidates)} candidates (method {spec.get('method', 'deepfool')}; rule: "
          f"fooling rate >= {spec['min_fooling_rate']}, |cos| <= {spec['max_abs_cosine']})")
    for departure in spec.get("departures_from_seed", []):
        print(f"  departs from the seed: {departure}")
    for c in candidates:
        print(f"  row {c['row']:2d} slot {c['slot']:3d} seed {c['uap_seed']:4d}: fooling rate "
              f"{c['fooling_rate_validation']:.4f}, |cos| {c['max_abs_cosine']:.3f}, {c['passes']} passes/epochs "
              f"({c['stopped_by']}), {c['seconds']:.0f} s: {c['reason']}")


if __name__ == "__main__":
    sys.exit(run_command(main))
