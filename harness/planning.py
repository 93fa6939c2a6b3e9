"""Work units, their keys, batches, version packing and opaque names.

1. **Attack batches** — (attack, ε, batch of images), keyed by the attack's version (its content and the
   environment fingerprint), ε, and the images (and target classes for targeted attacks).
2. **Defense batches** — distinct image versions (pixel hashes) of which no two are versions of the same
   original image (:func:`pack_versions`), keyed by the defense's version and the versions; every file gets an
   opaque name (:func:`opaque_name`) that reveals neither the attack nor the original image.
"""

from __future__ import annotations

import hashlib
import hmac
import random
from dataclasses import dataclass
from typing import Union

from harness.dataset import ImageRecord
from harness.results_folder import ResultsFolder
from harness.store import key_of
from harness.submission import Submission
from harness.tracks import Track

__all__ = ["DEFENSE_PROTOCOL", "REFEREE_VERSION", "AttackUnit", "DefenseUnit", "Unit", "batches", "log_name",
           "opaque_name", "pack_versions"]

#: Bump when the referee's verdicts could change, so stored attack batches are redone.
REFEREE_VERSION = "referee-1"
#: Bump when the defense batch protocol changes.
DEFENSE_PROTOCOL = "defense-1"


@dataclass(frozen=True)
class AttackUnit:
    """One attack batch: an attack at one ε over a batch of images.

    Attributes:
        attack: The attack.
        epsilon: ε in 0–255 units.
        images: The batch.
        version: What the run depends on besides the images: the attack's content and the harness package's
            (sample submissions import it, and its zoo weights).
    """

    attack: Submission
    epsilon: int
    images: tuple[ImageRecord, ...]
    version: str

    @property
    def key(self) -> str:
        targeted = self.attack.type is Track.TARGETED_ATTACK
        return key_of(REFEREE_VERSION, self.version, self.epsilon, targeted,
                      *((r.image_id, r.sha256, r.target_class if targeted else "") for r in self.images))


@dataclass(frozen=True)
class DefenseUnit:
    """One defense batch: distinct image versions (pixel hashes), at most one per original image.

    ``version`` plays the same role as :attr:`AttackUnit.version`.
    """

    defense: Submission
    versions: tuple[str, ...]
    version: str

    @property
    def key(self) -> str:
        return key_of(DEFENSE_PROTOCOL, self.version, *sorted(self.versions))


#: A work unit of either stage.
Unit = Union[AttackUnit, DefenseUnit]


def log_name(unit: Unit) -> str:
    """The unit's log (stdout and stderr of its run), relative to the results folder:
    :meth:`harness.results_folder.ResultsFolder.attack_log` or
    :meth:`~harness.results_folder.ResultsFolder.defense_log`."""
    if isinstance(unit, AttackUnit):
        return ResultsFolder.attack_log(unit.attack.name, unit.epsilon, unit.key)
    return ResultsFolder.defense_log(unit.defense.name, unit.key)


def batches(images: tuple[ImageRecord, ...], size: int) -> list[tuple[ImageRecord, ...]]:
    """Consecutive batches of at most ``size`` images, in image-id order."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    return [images[i:i + size] for i in range(0, len(images), size)]


def pack_versions(versions: list[str], originals: dict[str, set[str]], *, size: int,
                  seed: int) -> list[tuple[str, ...]]:
    """Pack image versions into defense batches holding at most one version of each original image.

    Args:
        versions: Pixel hashes to classify.
        originals: Pixel hash → the original image ids it is a version of.
        size: Largest batch.
        seed: Shuffles the order so batches mix attacks and ε (deterministically).

    Returns:
        Batches of pixel hashes, each sorted.
    """
    order = sorted(versions)
    random.Random(seed).shuffle(order)
    packed: list[tuple[list[str], set[str]]] = []
    for version in order:
        owners = originals[version]
        for members, taken in packed:
            if len(members) < size and not (owners & taken):
                members.append(version)
                taken |= owners
                break
        else:
            packed.append(([version], set(owners)))
    return [tuple(sorted(members)) for members, _ in packed]


def opaque_name(version: str, *, secret: bytes) -> str:
    """File name under which a defense sees an image: a keyed hash, unlinkable without ``secret``."""
    return hmac.new(secret, version.encode(), hashlib.sha256).hexdigest()[:24] + ".png"
