"""Adversarial training, validation and test sets for the HGD denoisers (Liao et al. 2018, Sec. 4.1, Table 1).

The seed's recipe at CIFAR-10 scale, made with the project's own attacks
(:mod:`submission_kit.attack_methods.gradient`):

* **train / val** (Table 1, "TrainSet and ValSet"): every clean image is attacked by each entry of
  :data:`TRAIN_ATTACKS` — FGSM on each training model and on their logit ensemble, I-FGSM with 2, 4 and 8 steps
  on the ensemble — plus an unchanged copy (no-op) and ±ε random-sign noise; each adversarial image gets its own
  ε drawn uniformly from the integers 1..16 (0-255 units). Clean images come from the shared *train* split
  (disjoint from every test image), train and val from disjoint subsets.
* **white** (WhiteTestSet): FGSM on the target model and I-FGSM4 on the training ensemble, ε ∈ {4, 16}, on
  shared *test* images.
* **black** (BlackTestSet): FGSM and I-FGSM4 on a zoo model never used for the training data, ε ∈ {4, 16}.

The paper's models map to the zoo as: IncV3 (target) → ``vgg6_w48`` (:data:`submission_kit.zoo.TARGET_MODEL`);
IncResV2 / Res (other training models) → ``vgg6_w32``; IncV4 (hold-out) → ``resnet8_w32`` (another
architecture). Ensembles fuse logits with equal weights (:class:`submission_kit.attack_methods.ensemble.LogitEnsemble`);
attacks use the model's own prediction as label (no label leaking, Sec. 2.1); I-FGSM with n steps uses step
α = ε / n so that n steps can reach the border of the ε-ball. Every image is rounded to uint8 and clipped to
its ε-ball by :func:`submission_kit.attack_methods.submission.to_uint8_within` (the competition's PNG contract).

Sets are cached as ``.npz`` under ``<HARNESS_CACHE>/hgd/<key>/`` (:func:`research.cifar10.cache_dir`), where the
key hashes the recipe, the seed, the selected clean images and the weight files of the attacking models, so a
retrained zoo model or another seed makes a new folder. They derive from CIFAR-10: never commit them.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from research import cifar10
from submission_kit import sdk, zoo
from submission_kit.attack_methods import gradient
from submission_kit.attack_methods.ensemble import LogitEnsemble
from submission_kit.attack_methods.submission import to_uint8_within

__all__ = [
    "BLACK_ATTACKS",
    "SPLIT_NAMES",
    "TRAIN_ATTACKS",
    "WHITE_ATTACKS",
    "AttackSpec",
    "DataNotFoundError",
    "HGDSet",
    "Recipe",
    "attack_batch",
    "data_dir",
    "load_split",
    "make_split",
    "recipe_key",
    "select_images",
]

#: File stems of the four sets in a data folder.
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "white", "black")
#: Version of the cached array layout (part of the key).
_FORMAT = 1


@dataclass(frozen=True)
class AttackSpec:
    """One row of the seed's Table 1.

    Attributes:
        method: ``"fgsm"``, ``"ifgsm"`` (I-FGSM, ``steps`` iterations of step ε / steps), ``"noop"`` (the clean
            image) or ``"noise"`` (every value ± ε with a random sign).
        models: Attacked zoo model names; several are attacked as a logit ensemble; empty for noop / noise.
        steps: Iterations of I-FGSM (1 for FGSM).
    """

    method: str
    models: tuple[str, ...] = ()
    steps: int = 1

    @property
    def name(self) -> str:
        """Short label, e.g. ``"fgsm:vgg6_w48"``, ``"ifgsm4:vgg6_w48+vgg6_w32"``, ``"noise"``."""
        head = f"ifgsm{self.steps}" if self.method == "ifgsm" else self.method
        return f"{head}:{'+'.join(self.models)}" if self.models else head


_TARGET, _OTHER, _HOLDOUT = "vgg6_w48", "vgg6_w32", "resnet8_w32"
_ENSEMBLE = (_TARGET, _OTHER)

#: Table 1, TrainSet and ValSet, plus the no-op and random-noise versions the issue adds.
TRAIN_ATTACKS: tuple[AttackSpec, ...] = (
    AttackSpec("fgsm", (_TARGET,)),
    AttackSpec("fgsm", (_OTHER,)),
    AttackSpec("fgsm", _ENSEMBLE),
    AttackSpec("ifgsm", _ENSEMBLE, 2),
    AttackSpec("ifgsm", _ENSEMBLE, 4),
    AttackSpec("ifgsm", _ENSEMBLE, 8),
    AttackSpec("noop"),
    AttackSpec("noise"),
)
#: Table 1, WhiteTestSet: attacks on the target model (alone and in the training ensemble).
WHITE_ATTACKS: tuple[AttackSpec, ...] = (AttackSpec("fgsm", (_TARGET,)), AttackSpec("ifgsm", _ENSEMBLE, 4))
#: Table 1, BlackTestSet: attacks on the hold-out model, never used for training data.
BLACK_ATTACKS: tuple[AttackSpec, ...] = (AttackSpec("fgsm", (_HOLDOUT,)), AttackSpec("ifgsm", (_HOLDOUT,), 4))


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """Everything that determines the four sets (with the zoo weights and the CIFAR-10 images).

    Attributes:
        train_images: Clean shared-train images for the training set (each gives len(train_attacks) images).
        val_images: Clean shared-train images for the validation set, disjoint from the training ones.
        test_images: Clean shared-test images for the white and black test sets.
        eps_min: Smallest ε of a training/validation image (0-255 units).
        eps_max: Largest ε of a training/validation image (0-255 units).
        test_epsilons: ε of the test sets (0-255 units).
        seed: Seed of the image selection, the ε draws and the random noise.
        train_attacks: Attacks of the training and validation sets.
        white_attacks: Attacks of the white-box test set.
        black_attacks: Attacks of the black-box test set.
    """

    train_images: int = 2000
    val_images: int = 500
    test_images: int = 1000
    eps_min: int = 1
    eps_max: int = 16
    test_epsilons: tuple[int, ...] = (4, 16)
    seed: int = 0
    train_attacks: tuple[AttackSpec, ...] = TRAIN_ATTACKS
    white_attacks: tuple[AttackSpec, ...] = WHITE_ATTACKS
    black_attacks: tuple[AttackSpec, ...] = BLACK_ATTACKS
    models: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        used = {m for spec in self.train_attacks + self.white_attacks + self.black_attacks for m in spec.models}
        object.__setattr__(self, "models", tuple(sorted(used)))

    def to_json(self) -> dict:
        """The recipe as plain JSON data (attacks by name)."""
        data = asdict(self)
        for key in ("train_attacks", "white_attacks", "black_attacks"):
            data[key] = [spec.name for spec in getattr(self, key)]
        return data


@dataclass(frozen=True)
class HGDSet:
    """One set: clean images, their adversarial versions and where each version came from.

    Attributes:
        clean: Clean images x, uint8 (M, H, W, 3).
        labels: True classes of the clean images, int64 (M,).
        images: Adversarial versions x*, uint8 (K, H, W, 3), |x* − x| ≤ eps in 0-255 units.
        source: Index into ``clean`` of each version, int64 (K,).
        attack: Index into ``attack_names`` of each version, int64 (K,).
        eps: ε of each version in 0-255 units, int64 (K,) (0 for the no-op copy).
        attack_names: Attack labels (:attr:`AttackSpec.name`).
    """

    clean: np.ndarray
    labels: np.ndarray
    images: np.ndarray
    source: np.ndarray
    attack: np.ndarray
    eps: np.ndarray
    attack_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.images)

    def select(self, mask: np.ndarray) -> "HGDSet":
        """The versions where the boolean ``mask`` (K,) is true (same clean images)."""
        return HGDSet(self.clean, self.labels, self.images[mask], self.source[mask], self.attack[mask],
                      self.eps[mask], self.attack_names)

    def head(self, count: int) -> "HGDSet":
        """The versions of the first ``count`` clean images only (for smoke tests)."""
        return self.select(self.source < count)

    def save(self, path: Path) -> None:
        """Write the set to ``path`` (``.npz``) atomically."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.stem, suffix=".tmp.npz", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, clean=self.clean, labels=self.labels, images=self.images, source=self.source,
                         attack=self.attack, eps=self.eps, attack_names=np.array(self.attack_names, dtype=str))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path) -> "HGDSet":
        """Read a set written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as data:
            return cls(data["clean"], data["labels"], data["images"], data["source"], data["attack"],
                       data["eps"], tuple(str(name) for name in data["attack_names"]))


class DataNotFoundError(FileNotFoundError):
    """The cached sets are missing; the message gives the command that makes them."""


def attack_batch(spec: AttackSpec, model: nn.Module | None, x: torch.Tensor, eps: int,
                 generator: np.random.Generator) -> np.ndarray:
    """Attack one batch at one integer ε and return uint8 images inside the ε-ball.

    Args:
        spec: The attack.
        model: The attacked model or ensemble (None for noop / noise).
        x: Clean images, float (N, 3, H, W) in [0, 1] (exact multiples of 1/255).
        eps: ε in 0-255 units.
        generator: Source of the random signs of ``"noise"``.

    Returns:
        uint8 (N, H, W, 3), within ε of the clean images (rounded, then clipped to the ball).
    """
    clean = sdk.from_tensor(x)
    if spec.method == "noop":
        return clean
    if spec.method == "noise":
        sign = generator.choice(np.array([-1, 1], dtype=np.int16), size=clean.shape)
        return np.clip(clean.astype(np.int16) + sign * eps, 0, 255).astype(np.uint8)
    assert model is not None, spec
    unit = eps / 255.0
    if spec.method == "fgsm":
        adversarial = gradient.fgsm(model, x, eps=unit)
    elif spec.method == "ifgsm":
        adversarial = gradient.i_fgsm(model, x, eps=unit, alpha=unit / spec.steps, steps=spec.steps)
    else:
        raise ValueError(f"unknown attack method {spec.method!r}")
    return to_uint8_within(adversarial, clean, eps)


def make_split(
    clean: np.ndarray,
    labels: np.ndarray,
    attacks: Sequence[AttackSpec],
    models: Mapping[str, nn.Module],
    *,
    epsilons: Sequence[int] | None = None,
    eps_range: tuple[int, int] = (1, 16),
    seed: int = 0,
    device: str | torch.device = "cpu",
    batch_size: int = 250,
    log: Callable[[str], None] = print,
) -> HGDSet:
    """Attack every clean image with every attack and collect the versions.

    Args:
        clean: uint8 (M, H, W, 3) clean images.
        labels: int64 (M,) true classes (stored, never shown to the attacks).
        attacks: Attacks to apply (each gives M versions per ε).
        models: Zoo model name → model in eval mode on ``device`` (the names the attacks use).
        epsilons: Fixed ε values (test sets: every image at every ε); ``None`` draws one ε per version
            uniformly from the integers in ``eps_range`` (train and val sets).
        eps_range: Inclusive (min, max) of the drawn ε.
        seed: Seed of the ε draws and the random noise.
        device: Where the attacks run.
        batch_size: Images per attack call.
        log: Progress printer.

    Returns:
        The set, versions ordered by attack, then ε, then clean index.
    """
    rng = np.random.default_rng(seed)
    names = tuple(spec.name for spec in attacks)
    parts: dict[str, list[np.ndarray]] = {key: [] for key in ("images", "source", "attack", "eps")}
    for attack_index, spec in enumerate(attacks):
        started = time.perf_counter()
        members = [models[name] for name in spec.models]
        model = None if not members else members[0] if len(members) == 1 else LogitEnsemble(members).eval()
        if epsilons is None:
            drawn = rng.integers(eps_range[0], eps_range[1] + 1, size=len(clean))
        else:
            drawn = np.repeat(np.asarray(epsilons, dtype=np.int64), len(clean))
        sources = np.tile(np.arange(len(clean)), 1 if epsilons is None else len(epsilons))
        for eps in np.unique(drawn):
            chosen = sources[drawn == eps]
            for start in range(0, len(chosen), batch_size):
                index = chosen[start:start + batch_size]
                x = sdk.to_tensor(clean[index], device)
                parts["images"].append(attack_batch(spec, model, x, int(eps), rng))
                parts["source"].append(index)
                parts["attack"].append(np.full(len(index), attack_index))
                parts["eps"].append(np.full(len(index), 0 if spec.method == "noop" else int(eps)))
        seconds = time.perf_counter() - started
        rate = len(drawn) / max(seconds, 1e-9)
        log(f"  {spec.name:28s} {len(drawn):6d} images in {seconds:6.1f} s ({rate:.0f} img/s)")
    return HGDSet(
        clean=clean,
        labels=np.asarray(labels, dtype=np.int64),
        images=np.concatenate(parts["images"]),
        source=np.concatenate(parts["source"]).astype(np.int64),
        attack=np.concatenate(parts["attack"]).astype(np.int64),
        eps=np.concatenate(parts["eps"]).astype(np.int64),
        attack_names=names,
    )


def select_images(recipe: Recipe, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]
                  ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Clean images and labels of each set: disjoint random subsets of the train split, one of the test split.

    Returns:
        ``{"train": (images, labels), "val": ..., "test": ...}``.
    """
    rng = np.random.default_rng(recipe.seed)
    train_order = rng.permutation(len(train[0]))
    test_order = rng.permutation(len(test[0]))
    need = recipe.train_images + recipe.val_images
    if need > len(train_order) or recipe.test_images > len(test_order):
        raise ValueError(f"the recipe asks for {need} train and {recipe.test_images} test images; the splits hold "
                         f"{len(train_order)} and {len(test_order)}")
    pick = {
        "train": np.sort(train_order[:recipe.train_images]),
        "val": np.sort(train_order[recipe.train_images:need]),
        "test": np.sort(test_order[:recipe.test_images]),
    }
    return {
        "train": (train[0][pick["train"]], train[1][pick["train"]]),
        "val": (train[0][pick["val"]], train[1][pick["val"]]),
        "test": (test[0][pick["test"]], test[1][pick["test"]]),
    }


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else "missing"


def recipe_key(recipe: Recipe, selection: Mapping[str, tuple[np.ndarray, np.ndarray]],
               weight_files: Mapping[str, Path]) -> str:
    """16 hex digits identifying the sets: recipe, seed, clean images and attacking models' weights."""
    digest = hashlib.sha256(json.dumps({"format": _FORMAT, "recipe": recipe.to_json()}, sort_keys=True).encode())
    for name in sorted(selection):
        images, labels = selection[name]
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(images).tobytes())
        digest.update(np.ascontiguousarray(labels).tobytes())
    for name in sorted(weight_files):
        digest.update(f"{name}:{_file_digest(weight_files[name])}".encode())
    return digest.hexdigest()[:16]


def data_dir(recipe: Recipe | None = None, *, data_root: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder of a recipe's sets: ``<HARNESS_CACHE>/hgd/<key>`` (not checked for existence).

    Args:
        recipe: The recipe (default :class:`Recipe` ``()``).
        data_root: Folder with the CIFAR-10 archives (see :func:`research.cifar10.dataset_root`).
    """
    recipe = recipe or Recipe()
    selection = select_images(recipe, cifar10.load_split("train", data_root), cifar10.load_split("test", data_root))
    key = recipe_key(recipe, selection, {name: zoo.weights_path(name) for name in recipe.models})
    return cifar10.cache_dir() / "hgd" / key


def load_split(folder: Path, split: str) -> HGDSet:
    """Read one set (``"train"``, ``"val"``, ``"white"`` or ``"black"``) from a data folder.

    Raises:
        DataNotFoundError: The file is missing; the message names the command that makes it.
    """
    if split not in SPLIT_NAMES:
        raise ValueError(f"split must be one of {SPLIT_NAMES}, got {split!r}")
    path = Path(folder) / f"{split}.npz"
    if not path.is_file():
        raise DataNotFoundError(
            f"HGD {split} set not found at {path}. Make the sets with:\n    python -m research.hgd.make_data\n"
            "(with the same --train-images/--val-images/--test-images/--seed as the folder's recipe, or pass "
            "--data-dir to the folder that command printed)"
        )
    return HGDSet.load(path)
