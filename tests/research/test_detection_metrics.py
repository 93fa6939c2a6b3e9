"""The seed's four metrics (research.analysis.detection_metrics; Akhtar, Liu & Mian 2018, §5) on hand-made arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from research.analysis import detection_metrics as dm

# Ten images, label i. Hand-counted below; "✓" = prediction equals the label.
LABELS = np.arange(10)
CLEAN = np.array([0, 1, 2, 3, 4, 5, 6, 7, 0, 0])             # ✓ 0-7: acc(𝓘_c) = 0.8
PERTURBED = np.array([0, 1, 9, 9, 9, 9, 9, 9, 9, 0])         # ✓ 0, 1: acc(𝓘_ρ) = 0.2
RECTIFIED_PERTURBED = np.array([0, 1, 2, 3, 4, 5, 0, 0, 0, 0])  # ✓ 0-5: acc(𝓘̂_ρ) = 0.6
RECTIFIED_CLEAN = np.array([0, 1, 2, 3, 4, 5, 6, 0, 0, 0])   # ✓ 0-6
IS_PERTURBED = np.array([True, False] * 5)                   # even images perturbed
DETECTED = np.array([True, False, True, True, False, False, True, False, False, False])


def test_mixed_and_defended_predictions() -> None:
    mixed = dm.mixed_predictions(IS_PERTURBED, PERTURBED, CLEAN)
    assert mixed.tolist() == [0, 1, 9, 3, 9, 5, 9, 7, 9, 0]
    rectified_mixed = dm.mixed_predictions(IS_PERTURBED, RECTIFIED_PERTURBED, RECTIFIED_CLEAN)
    assert rectified_mixed.tolist() == [0, 1, 2, 3, 4, 5, 0, 0, 0, 0]
    defended = dm.defended_predictions(DETECTED, rectified_mixed, mixed)
    assert defended.tolist() == [0, 1, 2, 3, 9, 5, 0, 7, 9, 0]


def test_the_four_metrics_by_hand() -> None:
    assert dm.accuracy(CLEAN, LABELS) == pytest.approx(0.8)
    assert dm.prn_gain(PERTURBED, RECTIFIED_PERTURBED, LABELS) == pytest.approx((0.6 - 0.2) / 0.6 * 100)
    rectified_mixed = dm.mixed_predictions(IS_PERTURBED, RECTIFIED_PERTURBED, RECTIFIED_CLEAN)
    assert dm.prn_restoration(rectified_mixed, CLEAN, LABELS) == pytest.approx(0.6 / 0.8 * 100)
    assert dm.detection_rate(DETECTED, IS_PERTURBED) == pytest.approx(70.0)  # wrong on images 3, 4, 8
    defended = np.array([0, 1, 2, 3, 9, 5, 0, 7, 9, 0])      # ✓ 0, 1, 2, 3, 5, 7
    assert dm.defense_rate(defended, CLEAN, LABELS) == pytest.approx(0.6 / 0.8 * 100)


def test_summarize_protocols_a_and_b() -> None:
    args = (LABELS, CLEAN, PERTURBED, RECTIFIED_CLEAN, RECTIFIED_PERTURBED, IS_PERTURBED, DETECTED)
    a = dm.summarize(*args, protocol="A")
    assert (a.images, a.perturbed_images) == (10, 5)
    assert a.prn_gain == pytest.approx(200 / 3) and a.prn_restoration == pytest.approx(75.0)
    assert a.detection_rate == pytest.approx(70.0) and a.defense_rate == pytest.approx(75.0)
    assert (a.acc_clean, a.acc_perturbed, a.acc_mixed, a.acc_defended) == pytest.approx((0.8, 0.2, 0.5, 0.6))
    b = dm.summarize(*args, protocol="B")  # images 0-7, the ones classified right when clean
    assert (b.images, b.perturbed_images, b.acc_clean) == (8, 4, 1.0)
    assert b.prn_gain == pytest.approx((0.75 - 0.25) / 0.75 * 100)
    assert b.prn_restoration == pytest.approx(75.0) and b.detection_rate == pytest.approx(75.0)
    assert b.defense_rate == pytest.approx(75.0)
    assert set(a.to_json()) >= {"prn_gain", "prn_restoration", "detection_rate", "defense_rate", "protocol"}


def test_protocol_mask_and_errors() -> None:
    assert dm.protocol_mask(CLEAN, LABELS, "A").all()
    assert dm.protocol_mask(CLEAN, LABELS, "B").tolist() == [True] * 8 + [False] * 2
    with pytest.raises(ValueError):
        dm.protocol_mask(CLEAN, LABELS, "C")
    with pytest.raises(ValueError, match="equal length"):
        dm.prn_gain(PERTURBED, RECTIFIED_PERTURBED[:5], LABELS)


def test_zero_denominators_give_nan() -> None:
    wrong = (LABELS + 1) % 10
    assert math.isnan(dm.prn_gain(wrong, wrong, LABELS))  # acc(𝓘̂_ρ) = 0
    assert math.isnan(dm.prn_restoration(LABELS, wrong, LABELS))  # acc(𝓘_c) = 0
    assert math.isnan(dm.defense_rate(LABELS, wrong, LABELS))
    assert math.isnan(dm.detection_rate(np.zeros(0, bool), np.zeros(0, bool)))
    assert math.isnan(dm.accuracy(np.zeros(0), np.zeros(0)))
