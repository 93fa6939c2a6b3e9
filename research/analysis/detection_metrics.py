"""Metrics of a rectify-and-detect defense against (universal) perturbations, as pure functions of predictions.

Akhtar, Liu & Mian, "Defense against Universal Adversarial Perturbations", CVPR 2018, §5 ("Evaluation metric").
Notation of the paper: 𝓘_c clean test images, 𝓘_ρ the same images perturbed, 𝓘̂_ρ the perturbed images
rectified by the rectifier ℛ, 𝓘̂_ρ/c the test images perturbed with probability 1/2 ("as per our protocol") and
then all rectified, 𝓘* the same half-perturbed images each rectified only if the detector 𝒟 flags it, acc(·)
the target classifier's accuracy against the true labels:

1. PRN-gain (%)        = (acc(𝓘̂_ρ) − acc(𝓘_ρ)) / acc(𝓘̂_ρ) × 100    (note: divided by the *rectified* accuracy)
2. PRN-restoration (%) = acc(𝓘̂_ρ/c) / acc(𝓘_c) × 100
3. Detection rate (%)  = accuracy of 𝒟 on the half-perturbed set (perturbed = positive)
4. Defense rate (%)    = acc(𝓘*) / acc(𝓘_c) × 100

Protocols: A uses every test image; B only the images the classifier gets right when clean (so acc(𝓘_c) = 1
there). Any defense that exposes a rectifier and a detector can be measured: feed the arrays of predictions to
:func:`summarize`. Every function takes 1-D arrays of equal length and returns percentages (NaN when a
denominator is zero); inputs are not modified.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

__all__ = [
    "PROTOCOLS",
    "DetectionSummary",
    "accuracy",
    "defended_predictions",
    "defense_rate",
    "detection_rate",
    "mixed_predictions",
    "protocol_mask",
    "prn_gain",
    "prn_restoration",
    "summarize",
]

Protocol = Literal["A", "B"]
#: A: all test images; B: the test images the classifier gets right when clean.
PROTOCOLS: tuple[str, ...] = ("A", "B")


def _arrays(*arrays: np.ndarray) -> list[np.ndarray]:
    out = [np.asarray(a) for a in arrays]
    if any(a.ndim != 1 for a in out) or len({len(a) for a in out}) > 1:
        raise ValueError(f"expected 1-D arrays of equal length, got shapes {[a.shape for a in out]}")
    return out


def _percent(numerator: float, denominator: float) -> float:
    return float("nan") if denominator == 0 else 100.0 * numerator / denominator


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    """acc(·): fraction in [0, 1] of ``predictions`` equal to ``labels`` (NaN for no images)."""
    predictions, labels = _arrays(predictions, labels)
    return float("nan") if len(labels) == 0 else float((predictions == labels).mean())


def protocol_mask(clean_predictions: np.ndarray, labels: np.ndarray, protocol: Protocol) -> np.ndarray:
    """Which test images a protocol uses: all (A) or those classified correctly when clean (B); bool (N,)."""
    clean_predictions, labels = _arrays(clean_predictions, labels)
    if protocol == "A":
        return np.ones(len(labels), dtype=bool)
    if protocol == "B":
        return clean_predictions == labels
    raise ValueError(f"protocol must be 'A' or 'B', got {protocol!r}")


def mixed_predictions(is_perturbed: np.ndarray, perturbed: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """Predictions on the half-perturbed set: ``perturbed[i]`` where ``is_perturbed[i]``, else ``clean[i]``."""
    is_perturbed, perturbed, clean = _arrays(is_perturbed, perturbed, clean)
    return np.where(is_perturbed.astype(bool), perturbed, clean)


def defended_predictions(detected: np.ndarray, rectified: np.ndarray, unrectified: np.ndarray) -> np.ndarray:
    """Predictions on 𝓘*: the rectified image's where the detector fired, the unrectified image's elsewhere."""
    detected, rectified, unrectified = _arrays(detected, rectified, unrectified)
    return np.where(detected.astype(bool), rectified, unrectified)


def prn_gain(perturbed: np.ndarray, rectified_perturbed: np.ndarray, labels: np.ndarray) -> float:
    """PRN-gain (%) = (acc(𝓘̂_ρ) − acc(𝓘_ρ)) / acc(𝓘̂_ρ) × 100.

    Args:
        perturbed: Predictions on 𝓘_ρ (every image perturbed).
        rectified_perturbed: Predictions on 𝓘̂_ρ (the same perturbed images, rectified).
        labels: True labels.
    """
    perturbed, rectified_perturbed, labels = _arrays(perturbed, rectified_perturbed, labels)
    rectified = accuracy(rectified_perturbed, labels)
    return _percent(rectified - accuracy(perturbed, labels), rectified)


def prn_restoration(rectified_mixed: np.ndarray, clean: np.ndarray, labels: np.ndarray) -> float:
    """PRN-restoration (%) = acc(𝓘̂_ρ/c) / acc(𝓘_c) × 100.

    Args:
        rectified_mixed: Predictions on 𝓘̂_ρ/c (half-perturbed set, every image rectified).
        clean: Predictions on 𝓘_c.
        labels: True labels.
    """
    rectified_mixed, clean, labels = _arrays(rectified_mixed, clean, labels)
    return _percent(accuracy(rectified_mixed, labels), accuracy(clean, labels))


def detection_rate(detected: np.ndarray, is_perturbed: np.ndarray) -> float:
    """Detection rate (%) = accuracy of 𝒟: fraction of images with ``detected == is_perturbed``, × 100."""
    detected, is_perturbed = _arrays(detected, is_perturbed)
    return float("nan") if len(detected) == 0 else 100.0 * float((detected.astype(bool) ==
                                                                  is_perturbed.astype(bool)).mean())


def defense_rate(defended_mixed: np.ndarray, clean: np.ndarray, labels: np.ndarray) -> float:
    """Defense rate (%) = acc(𝓘*) / acc(𝓘_c) × 100.

    Args:
        defended_mixed: Predictions on 𝓘* (half-perturbed set, rectified only where detected; see
            :func:`defended_predictions`).
        clean: Predictions on 𝓘_c.
        labels: True labels.
    """
    defended_mixed, clean, labels = _arrays(defended_mixed, clean, labels)
    return _percent(accuracy(defended_mixed, labels), accuracy(clean, labels))


@dataclass(frozen=True)
class DetectionSummary:
    """The four metrics (%) of one protocol, with the accuracies behind them (fractions) and the counts."""

    protocol: str
    images: int
    perturbed_images: int
    prn_gain: float
    prn_restoration: float
    detection_rate: float
    defense_rate: float
    acc_clean: float
    acc_perturbed: float
    acc_rectified_perturbed: float
    acc_rectified_clean: float
    acc_mixed: float
    acc_rectified_mixed: float
    acc_defended: float

    def to_json(self) -> dict[str, float | int | str]:
        """A JSON-ready dict."""
        return asdict(self)


def summarize(labels: np.ndarray, clean: np.ndarray, perturbed: np.ndarray, rectified_clean: np.ndarray,
              rectified_perturbed: np.ndarray, is_perturbed: np.ndarray, detected: np.ndarray,
              protocol: Protocol = "A") -> DetectionSummary:
    """All four metrics of one protocol from per-image predictions.

    Image i of the half-perturbed set is perturbed iff ``is_perturbed[i]``; ``perturbed`` and
    ``rectified_perturbed`` must use the same perturbation per image as the half-perturbed set does where it is
    perturbed. ``detected[i]`` is 𝒟's verdict on image i of the half-perturbed set.

    Args:
        labels: True labels (N,).
        clean: Predictions on clean images 𝓘_c.
        perturbed: Predictions on perturbed images 𝓘_ρ.
        rectified_clean: Predictions on rectified clean images ℛ(𝓘_c).
        rectified_perturbed: Predictions on rectified perturbed images 𝓘̂_ρ.
        is_perturbed: bool (N,), the half-perturbed draw.
        detected: bool (N,), 𝒟 on the half-perturbed set.
        protocol: ``"A"`` (all images) or ``"B"`` (images with ``clean == labels``).
    """
    arrays = _arrays(labels, clean, perturbed, rectified_clean, rectified_perturbed, is_perturbed, detected)
    keep = protocol_mask(arrays[1], arrays[0], protocol)
    labels, clean, perturbed, rectified_clean, rectified_perturbed, is_perturbed, detected = (a[keep]
                                                                                            for a in arrays)
    is_perturbed = is_perturbed.astype(bool)
    mixed = mixed_predictions(is_perturbed, perturbed, clean)
    rectified_mixed = mixed_predictions(is_perturbed, rectified_perturbed, rectified_clean)
    defended = defended_predictions(detected, rectified_mixed, mixed)
    return DetectionSummary(
        protocol=protocol, images=int(len(labels)), perturbed_images=int(is_perturbed.sum()),
        prn_gain=prn_gain(perturbed, rectified_perturbed, labels),
        prn_restoration=prn_restoration(rectified_mixed, clean, labels),
        detection_rate=detection_rate(detected, is_perturbed),
        defense_rate=defense_rate(defended, clean, labels),
        acc_clean=accuracy(clean, labels), acc_perturbed=accuracy(perturbed, labels),
        acc_rectified_perturbed=accuracy(rectified_perturbed, labels),
        acc_rectified_clean=accuracy(rectified_clean, labels), acc_mixed=accuracy(mixed, labels),
        acc_rectified_mixed=accuracy(rectified_mixed, labels), acc_defended=accuracy(defended, labels),
    )
