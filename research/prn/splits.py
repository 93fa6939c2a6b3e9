"""Which training images compute which UAP, and which are held out to measure fooling rates.

One fixed permutation of the training split (:data:`PERMUTATION_SEED`) is cut into

* positions ``[0, validation_size)``: held-out **validation** images. They measure the fooling rate that decides
  whether a UAP enters a pool, and monitor the PRN and the detector; no UAP is computed on them;
* then consecutive blocks of ``subset_size`` positions, the **slots**. Slot ``s`` covers positions
  ``[validation_size + s·subset_size, validation_size + (s + 1)·subset_size)``.

The j-th candidate UAP of a (role, norm) pool uses slot ``4·j + code(role, norm)`` (:func:`slot`), so train and
test perturbations, and ℓ∞ and ℓ2 perturbations, are computed on disjoint training images by construction; the
pool manifests record each UAP's image range and :func:`research.prn.pool.check_disjoint` verifies disjointness
whenever pools are used together. The seed paper's test images are a separate split (here: the shared
CIFAR-10 test images), so PRN evaluation never touches these training images.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from submission_kit.prn.paths import check_norm, check_role

__all__ = ["PERMUTATION_SEED", "VALIDATION_SIZE", "Subset", "permutation", "slot", "subset_for_slot",
           "validation_indices"]

#: Seed of the one permutation of the training split that every pool uses.
PERMUTATION_SEED = 2018
#: Held-out training images for fooling rates and monitoring.
VALIDATION_SIZE = 1000

_CODES = {("train", "inf"): 0, ("train", "2"): 1, ("test", "inf"): 2, ("test", "2"): 3}


@dataclass(frozen=True)
class Subset:
    """Positions ``[start, stop)`` of the permutation of ``n_train`` training images seeded by ``permutation_seed``."""

    permutation_seed: int
    n_train: int
    start: int
    stop: int

    def indices(self) -> np.ndarray:
        """The training-split indices (int64, sorted) of this subset."""
        return np.sort(permutation(self.n_train, self.permutation_seed)[self.start:self.stop])

    def to_json(self) -> dict[str, int]:
        """A JSON-ready dict (the inverse of ``Subset(**d)``)."""
        return asdict(self)


def permutation(n_train: int, seed: int = PERMUTATION_SEED) -> np.ndarray:
    """The fixed permutation of ``range(n_train)`` (numpy ``default_rng(seed).permutation``)."""
    return np.random.default_rng(seed).permutation(n_train)


def validation_indices(n_train: int, size: int = VALIDATION_SIZE, seed: int = PERMUTATION_SEED) -> np.ndarray:
    """Sorted indices of the held-out validation images (the first ``size`` positions of the permutation)."""
    if not 0 < size < n_train:
        raise ValueError(f"validation size must be in (0, {n_train}), got {size}")
    return np.sort(permutation(n_train, seed)[:size])


def slot(role: str, norm: str, j: int) -> int:
    """Slot of the j-th candidate (0-based) of the pool (role, norm): ``4·j + code``, code 0..3."""
    if j < 0:
        raise ValueError(f"candidate number must be >= 0, got {j}")
    return 4 * j + _CODES[(check_role(role), check_norm(norm))]


def subset_for_slot(s: int, *, n_train: int, subset_size: int, validation_size: int = VALIDATION_SIZE,
                    seed: int = PERMUTATION_SEED) -> Subset:
    """The image subset of slot ``s``.

    Raises:
        ValueError: The slot lies beyond the training split (fewer or smaller subsets are needed).
    """
    start = validation_size + s * subset_size
    stop = start + subset_size
    if subset_size < 1 or stop > n_train:
        raise ValueError(f"slot {s} of {subset_size} images needs positions [{start}, {stop}) but the training "
                         f"split has {n_train} images; use a smaller --subset-size")
    return Subset(permutation_seed=seed, n_train=n_train, start=start, stop=stop)
