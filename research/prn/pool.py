"""Pools of real universal perturbations (the seed's set 𝒫): storage, the keep rule, loading, disjointness.

A pool holds the UAPs of one zoo model, one norm (ℓ∞ or ℓ2) and one role (train or test), made by
``python -m research.prn.make_pool``. On disk (see :mod:`submission_kit.prn.paths`):

* ``uap_<norm>_<role>.npy``: float16 (n, 3, H, W), **every** candidate computed, kept or not (6 KB each at
  32×32), so a changed threshold can be re-applied without recomputing (``make_pool --reselect``);
* ``uap_<norm>_<role>.json``: the manifest. ``spec`` (model, norm, role, ξ, the UAP method — ``sgd``, Shafahi
  et al. 2020, or ``deepfool``, Moosavi-Dezfooli et al. 2017 — with the paper and every argument, subset size,
  thresholds, ``departures_from_seed``), ``candidates`` (one record per row: slot, image subset, seed, method,
  paper and arguments, UAP statistics, fooling rate on the held-out validation images, largest |cosine| with the
  perturbations kept before it, ``kept`` and the reason) and ``runs`` (command, timing, environment of each
  invocation).

Keep rule (seed §5, "Setup"): a candidate is kept when its fooling rate on held-out images is ≥
``min_fooling_rate`` (0.8) and its |cosine| with every perturbation of the same model and norm kept before it
(this pool and its other-role sibling) is ≤ ``max_abs_cosine`` (0.15). Rates are recorded either way; other
thresholds are recorded in the spec and listed in ``departures_from_seed`` (:func:`seed_departures`).

Loaded perturbations are float32, re-projected onto the ℓp ball of radius ξ (float16 rounding can exceed ξ by
a few 1e-5). Train and test pools must come from disjoint training images: :func:`check_disjoint` raises
:class:`PoolOverlapError` otherwise, and :func:`load_train_test` always calls it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from research.uap.make_uap import PAPERS
from submission_kit.prn.paths import check_norm, check_role, pool_command, pool_path

from .perturb import project
from .splits import Subset

__all__ = [
    "FORMAT",
    "Pool",
    "PoolError",
    "PoolNotFoundError",
    "PoolOverlapError",
    "abs_cosines",
    "check_against_test_pools",
    "check_disjoint",
    "keep_decision",
    "load_pool",
    "load_train_test",
    "read_pool_files",
    "reselect",
    "seed_departures",
    "stored_version",
    "write_pool_files",
]

#: Manifest format version.
FORMAT = 1
#: The seed's keep rule and UAP algorithm (§5), for :func:`seed_departures`.
SEED_RULE = {"min_fooling_rate": 0.8, "max_abs_cosine": 0.15, "method": "deepfool"}


class PoolError(ValueError):
    """A pool file that is inconsistent with its manifest or with the pool asked for."""


class PoolNotFoundError(FileNotFoundError):
    """A pool that has not been computed; the message names the command that computes it."""


class PoolOverlapError(ValueError):
    """Train and test perturbations of one model computed on overlapping training images."""


@dataclass(frozen=True)
class Pool:
    """The kept perturbations of one pool.

    Attributes:
        path: The ``.npy`` file.
        model: Zoo model the UAPs were computed on.
        norm: ``"inf"`` or ``"2"``.
        role: ``"train"`` or ``"test"``.
        xi: Budget ξ on the [0, 1] scale.
        vectors: float32 (K, 3, H, W), the kept perturbations (‖ρ‖_p ≤ ξ), CPU.
        records: The manifest's candidate records of the kept rows, in order.
        manifest: The whole manifest.
    """

    path: Path
    model: str
    norm: str
    role: str
    xi: float
    vectors: torch.Tensor
    records: tuple[dict[str, Any], ...]
    manifest: dict[str, Any] = field(repr=False)

    def __len__(self) -> int:
        return len(self.vectors)

    def subsets(self) -> list[Subset]:
        """The training-image subset of each kept perturbation."""
        return [Subset(**record["subset"]) for record in self.records]

    def digest(self) -> str:
        """SHA-256 (hex, 16 characters) of the kept vectors' float32 bytes: names this exact pool."""
        return hashlib.sha256(self.vectors.numpy().astype(np.float32).tobytes()).hexdigest()[:16]


def stored_version(v: torch.Tensor, norm: str, xi: float) -> torch.Tensor:
    """What a perturbation becomes after storage and loading: float16 round trip, then projection onto the ball.

    Args:
        v: (3, H, W) float on the [0, 1] scale.
        norm: ``"inf"`` or ``"2"``.
        xi: Budget ξ on the [0, 1] scale.
    """
    return project(v.detach().cpu().to(torch.float16).to(torch.float32), norm, xi)


def abs_cosines(v: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """|cos(v, o)| for every o in ``others`` ((K, ...) → (K,) float64); 0 where a norm is zero."""
    if len(others) == 0:
        return torch.zeros(0, dtype=torch.float64)
    a = v.flatten().double()
    b = others.flatten(1).double()
    denominator = a.norm() * b.norm(dim=1)
    dots = (b @ a).abs()
    return torch.where(denominator > 0, dots / denominator.clamp(min=1e-300), torch.zeros_like(dots))


def keep_decision(fooling_rate: float, v: torch.Tensor, kept: torch.Tensor, *, min_fooling_rate: float,
                  max_abs_cosine: float) -> tuple[bool, float, str]:
    """The keep rule of a candidate UAP (seed §5).

    Args:
        fooling_rate: Its fooling rate on held-out images, in [0, 1].
        v: The candidate (3, H, W).
        kept: (K, 3, H, W) perturbations of the same model and norm kept before it.
        min_fooling_rate: Smallest acceptable fooling rate (the seed: 0.8).
        max_abs_cosine: Largest acceptable |cosine| with any kept perturbation (the seed: 0.15).

    Returns:
        ``(keep, largest |cosine| (0 when ``kept`` is empty), reason)``; the reason is ``"kept"`` or says which
        threshold failed.
    """
    largest = float(abs_cosines(v, kept).max()) if len(kept) else 0.0
    reasons = []
    if fooling_rate < min_fooling_rate:
        reasons.append(f"fooling rate {fooling_rate:.4f} < {min_fooling_rate}")
    if largest > max_abs_cosine:
        reasons.append(f"|cosine| {largest:.4f} > {max_abs_cosine} with a kept perturbation")
    if float(v.abs().max()) == 0:
        reasons.append("zero perturbation")
    return (not reasons, largest, "; ".join(reasons) or "kept")


def seed_departures(spec: dict[str, Any]) -> list[str]:
    """How a pool's spec departs from the seed's keep rule and UAP algorithm (§5), one sentence each.

    Stored as ``spec["departures_from_seed"]`` by ``make_pool`` and recomputed by :func:`reselect`, so every
    relaxed threshold and the choice of the SGD algorithm are part of the pool's record. A spec without
    ``method`` (pools made before ``--method`` existed) is a DeepFool pool.
    """
    out = []
    if float(spec["min_fooling_rate"]) < SEED_RULE["min_fooling_rate"]:
        out.append(f"min_fooling_rate {spec['min_fooling_rate']} < the seed's {SEED_RULE['min_fooling_rate']}")
    if float(spec["max_abs_cosine"]) > SEED_RULE["max_abs_cosine"]:
        out.append(f"max_abs_cosine {spec['max_abs_cosine']} > the seed's {SEED_RULE['max_abs_cosine']}")
    method = spec.get("method", SEED_RULE["method"])
    if method != SEED_RULE["method"]:
        out.append(f"method {method} ({PAPERS[method]}); the seed's UAPs are {PAPERS[SEED_RULE['method']]}")
    return out


def read_pool_files(path: Path) -> tuple[np.ndarray, dict[str, Any]] | None:
    """The stored candidates (float16 (n, 3, H, W)) and the manifest of a pool, or ``None`` if it does not exist.

    Raises:
        PoolError: The array and the manifest disagree (one missing, or different row counts).
    """
    path = Path(path)
    manifest_path = path.with_suffix(".json")
    if not path.exists() and not manifest_path.exists():
        return None
    if not path.is_file() or not manifest_path.is_file():
        raise PoolError(f"{path}: the array and its manifest {manifest_path.name} must both exist")
    manifest = json.loads(manifest_path.read_text())
    array = np.load(path, allow_pickle=False)
    if manifest.get("format") != FORMAT:
        raise PoolError(f"{manifest_path}: format {manifest.get('format')!r}, expected {FORMAT}")
    if array.ndim != 4 or array.dtype != np.float16 or len(array) != len(manifest["candidates"]):
        raise PoolError(f"{path}: {array.dtype} {array.shape} does not match the {len(manifest['candidates'])} "
                        f"candidates of {manifest_path.name}")
    return array, manifest


def write_pool_files(path: Path, array: np.ndarray, manifest: dict[str, Any]) -> None:
    """Write the candidates array and the manifest atomically (each through a temporary file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_array = path.with_name(f".{path.stem}.tmp{os.getpid()}.npy")
    np.save(tmp_array, np.ascontiguousarray(array.astype(np.float16)))
    os.replace(tmp_array, path)
    manifest_path = path.with_suffix(".json")
    tmp_manifest = manifest_path.with_name(f".{manifest_path.name}.tmp{os.getpid()}")
    tmp_manifest.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp_manifest, manifest_path)


def load_pool(path: Path | None = None, *, model: str | None = None, norm: str | None = None,
              role: str | None = None, root: Path | None = None) -> Pool:
    """Load the kept perturbations of a pool, by ``path`` or by ``model``, ``norm`` and ``role``.

    Args:
        path: The ``.npy`` file; when ``None`` it is :func:`submission_kit.prn.paths.pool_path` of the other arguments.
        model, norm, role: Which pool; when given together with ``path`` they must match its manifest.
        root: Pools folder used with ``model``/``norm``/``role`` (default: ``submission_kit/prn/pools``).

    Raises:
        PoolNotFoundError: No such pool; the message gives the command that makes it.
        PoolError: Inconsistent files, a mismatching manifest, or no kept perturbation.
    """
    if path is None:
        if model is None or norm is None or role is None:
            raise ValueError("pass a path, or model, norm and role")
        path = pool_path(model, norm, role) if root is None else pool_path(model, norm, role, root)
    path = Path(path)
    files = read_pool_files(path)
    if files is None:
        hint = pool_command(model, norm, role) if model and norm and role else "python -m research.prn.make_pool ..."
        raise PoolNotFoundError(f"UAP pool {path} not found. Compute it with:\n    {hint}")
    array, manifest = files
    spec = manifest["spec"]
    for key, wanted in (("model", model), ("norm", norm), ("role", role)):
        if wanted is not None and spec[key] != wanted:
            raise PoolError(f"{path}: manifest says {key}={spec[key]!r}, expected {wanted!r}")
    rows = [i for i, c in enumerate(manifest["candidates"]) if c["kept"]]
    if not rows:
        rates = [c["fooling_rate_validation"] for c in manifest["candidates"]]
        raise PoolError(f"{path}: none of its {len(rates)} candidates passed the keep rule (fooling rates "
                        f"{rates}, rule {spec['min_fooling_rate']} / {spec['max_abs_cosine']}); compute more "
                        f"or re-apply another threshold with make_pool --reselect")
    xi = float(spec["xi"])
    vectors = torch.stack([stored_version(torch.from_numpy(array[i]), spec["norm"], xi) for i in rows])
    return Pool(path=path, model=spec["model"], norm=check_norm(spec["norm"]), role=check_role(spec["role"]),
                xi=xi, vectors=vectors, records=tuple(manifest["candidates"][i] for i in rows), manifest=manifest)


def check_disjoint(train: Pool, test: Pool) -> float:
    """Verify that train and test perturbations of the same model were computed on disjoint training images.

    Perturbations of different models never leak into each other's defense (a PRN is trained on its own model's
    train pool), so for pools of two models only the cosine is measured. The slot scheme of
    :mod:`research.prn.splits` keeps roles apart anyway, for every model.

    Returns:
        The largest |cosine| between a train and a test perturbation of the same shape (0.0 if none), for the
        record.

    Raises:
        PoolOverlapError: Not a (train, test) pair, or a train and a test perturbation of the same model share
            training images.
    """
    if train.role != "train" or test.role != "test":
        raise PoolOverlapError(f"expected a train and a test pool, got roles {train.role!r} and {test.role!r}")
    problems = []
    if train.model == test.model:
        test_sets = [(record, set(subset.indices().tolist()))
                     for record, subset in zip(test.records, test.subsets())]
        for record, subset in zip(train.records, train.subsets()):
            train_set = set(subset.indices().tolist())
            for test_record, test_set in test_sets:
                shared = len(train_set & test_set)
                if shared:
                    problems.append(f"train row {record['row']} ({train.path.name}) and test row "
                                    f"{test_record['row']} ({test.path.name}) share {shared} training images")
    if problems:
        raise PoolOverlapError("train and test perturbations are not disjoint:\n  " + "\n  ".join(problems[:10]))
    largest = 0.0
    if train.vectors.shape[1:] == test.vectors.shape[1:]:
        for v in test.vectors:
            largest = max(largest, float(abs_cosines(v, train.vectors).max()))
    return largest


def load_train_test(model: str, norm: str, *, test_model: str | None = None, test_norm: str | None = None,
                    root: Path | None = None) -> tuple[Pool, Pool, float]:
    """Load a train pool and a test pool and check their disjointness.

    Args:
        model, norm: The train pool.
        test_model, test_norm: The test pool (default: the same model and norm).
        root: Pools folder (default ``submission_kit/prn/pools``).

    Returns:
        ``(train, test, largest |cosine| between them)``.
    """
    kwargs = {} if root is None else {"root": root}
    train = load_pool(model=model, norm=norm, role="train", **kwargs)
    test = load_pool(model=test_model or model, norm=test_norm or norm, role="test", **kwargs)
    return train, test, check_disjoint(train, test)


def check_against_test_pools(train: Pool, root: Path | None = None) -> dict[str, float]:
    """Check a train pool against every existing test pool of its model (both norms) before it is used.

    Returns:
        Test pool file name → largest |cosine| with the train pool.

    Raises:
        PoolOverlapError: See :func:`check_disjoint`.
    """
    out = {}
    for norm in ("inf", "2"):
        kwargs = {} if root is None else {"root": root}
        try:
            test = load_pool(model=train.model, norm=norm, role="test", **kwargs)
        except (PoolNotFoundError, PoolError):
            continue
        out[test.path.name] = check_disjoint(train, test)
    return out


def reselect(array: np.ndarray, manifest: dict[str, Any], *, min_fooling_rate: float, max_abs_cosine: float,
             others: torch.Tensor | None = None) -> dict[str, Any]:
    """Re-apply the keep rule with new thresholds to every stored candidate, in row order (nothing recomputed).

    Args:
        array: The stored candidates, float16 (n, 3, H, W).
        manifest: The pool's manifest (not modified).
        min_fooling_rate, max_abs_cosine: The new thresholds.
        others: Kept perturbations of the sibling pool (other role), counted as kept before every candidate.

    Returns:
        A new manifest with updated ``kept``, ``reason``, ``max_abs_cosine`` per candidate and the new
        thresholds in ``spec`` (the old ones are appended to ``spec["reselected_from"]``;
        ``spec["departures_from_seed"]`` is recomputed).
    """
    new = json.loads(json.dumps(manifest))
    spec = new["spec"]
    spec.setdefault("reselected_from", []).append({"min_fooling_rate": spec["min_fooling_rate"],
                                                   "max_abs_cosine": spec["max_abs_cosine"]})
    spec["min_fooling_rate"], spec["max_abs_cosine"] = min_fooling_rate, max_abs_cosine
    spec["departures_from_seed"] = seed_departures(spec)
    kept: list[torch.Tensor] = [] if others is None else list(others)
    for i, record in enumerate(new["candidates"]):
        v = stored_version(torch.from_numpy(array[i]), spec["norm"], float(spec["xi"]))
        keep, largest, reason = keep_decision(record["fooling_rate_validation"], v,
                                              torch.stack(kept) if kept else torch.zeros(0, *v.shape),
                                              min_fooling_rate=min_fooling_rate, max_abs_cosine=max_abs_cosine)
        record.update(kept=keep, reason=reason, max_abs_cosine=round(largest, 6))
        if keep:
            kept.append(v)
    return new
