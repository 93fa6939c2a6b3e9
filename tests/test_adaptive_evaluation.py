"""research.adaptive.evaluate: the report's columns and checklist from a synthetic table (no attack is run)."""

from __future__ import annotations

import numpy as np

from research.adaptive import evaluate

ATTACKS = ["noise", "fgsm", "pgd", "apgd", "square", "cw_linf", "di_mi_fgsm", "ti_mi_fgsm"]


def test_render_reports_strongest_adaptive_worst_case_and_checklist():
    args = evaluate.parse_args(["--images", "4", "--epsilons", "8", "--sweep", "64", "--defenses", "base", "jpeg"])
    ones, zeros = np.ones(4, bool), np.zeros(4, bool)
    correct = {(0, d, "clean"): ones for d in args.defenses}
    for e in (8, 64):
        for d in args.defenses:
            for a in ATTACKS:
                correct[(e, d, a)] = ones if a == "noise" else np.array([1, 1, 0, 0], bool)
        correct[(e, "jpeg", "adaptive")] = zeros if e == 64 else np.array([1, 0, 0, 0], bool)
    correct[(8, "base", "pgd")] = zeros
    report = evaluate.render(correct, args, {"seconds": {}}, "python -m research.adaptive.evaluate --images 4", 1.0)
    assert "| base | 100.0 | 100.0 | 50.0 | 0.0 |" in report
    assert "0.0 (pgd) | — | 0.0 |" in report                     # base: strongest = PGD, no adaptive attack
    assert "50.0 (fgsm) | 25.0 (`bpda_jpeg`) | 25.0 |" in report  # jpeg: adaptive below every other attack
    assert "| jpeg | 50.0 / 25.0 | 50.0 / 0.0 |" in report       # sweep: oblivious PGD / adaptive
    assert "| jpeg | yes | yes (25.0 ≤ 50.0 ≤ 100.0) | yes (0.0 % at ε = 64) |" in report
    assert "| base | yes | yes (0.0 ≤ 50.0 ≤ 100.0) | NO (50.0 % at ε = 64) |" in report


def test_rerun_keeps_the_hand_written_reading(tmp_path):
    path = tmp_path / "report.md"
    assert evaluate.kept_reading(path) == ""
    path.write_text(f"# old figures\n\n{evaluate.READING}\n\nMy reading.\n")
    assert evaluate.kept_reading(path) == f"{evaluate.READING}\n\nMy reading.\n"
