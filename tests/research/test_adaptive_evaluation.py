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


def test_attack_batches_get_their_own_true_labels_only_when_asked():
    import torch
    images = np.arange(5 * 2 * 2 * 3, dtype=np.uint8).reshape(5, 2, 2, 3)
    labels = np.array([3, 1, 4, 1, 5])
    seen = []

    def attack(x, eps, y=None):
        seen.append(None if y is None else y.tolist())
        return x

    out = evaluate._attack(attack, images, 8, torch.device("cpu"), 2, labels=labels)
    assert seen == [[3, 1], [4, 1], [5]] and np.array_equal(out, images)  # aligned slices; eps 8 leaves x as is
    seen.clear()
    evaluate._attack(attack, images, 8, torch.device("cpu"), 2)
    assert seen == [None, None, None]


def test_true_label_reports_say_so():
    args = evaluate.parse_args(["--images", "4", "--epsilons", "8", "--sweep", "--defenses", "base",
                                "--adaptive-labels", "true"])
    correct = {(0, "base", "clean"): np.ones(4, bool)}
    correct.update({(8, "base", a): np.ones(4, bool) for a in ATTACKS})
    report = evaluate.render(correct, args, {"seconds": {}}, "python -m research.adaptive.evaluate", 1.0)
    assert "given the TRUE labels (research only" in report
    assert "two label-free runs" not in report  # one run, away from the true label
    default = evaluate.render(correct, evaluate.parse_args(["--images", "4", "--epsilons", "8", "--sweep",
                                                            "--defenses", "base"]), {"seconds": {}}, "cmd", 1.0)
    assert "toward the target model's least-likely class" in default  # the folders' two label-free runs
    assert "TRUE labels" not in default and "untargeted PGD alone" not in default
    one_run = evaluate.render(correct, evaluate.parse_args(["--images", "4", "--epsilons", "8", "--sweep",
                                                            "--defenses", "base", "--adaptive-labels",
                                                            "prediction"]), {"seconds": {}}, "cmd", 1.0)
    assert "the adaptive attacks here run the untargeted PGD alone" in one_run and "TRUE labels" not in one_run
    assert "two label-free runs" not in one_run and "two label-free runs" in default


def test_reused_results_are_said_in_the_header():
    args = evaluate.parse_args(["--images", "4", "--epsilons", "8", "--sweep", "--defenses", "base"])
    correct = {(0, "base", "clean"): np.ones(4, bool)}
    correct.update({(8, "base", a): np.ones(4, bool) for a in ATTACKS})
    fresh = evaluate.render(correct, args, {"seconds": {"pgd@8": 30.0}}, "cmd", 31.0)
    assert ", 31 s, " in fresh and "reused" not in fresh
    resumed = evaluate.render(correct, args, {"seconds": {"pgd@8": 30.0, "fgsm@8": 5.0}, "reused": ["pgd@8"]},
                              "cmd", 6.0)
    assert "6 s in the last run, 1 results of earlier runs reused, 35 s of attacks in all" in resumed


def test_cached_results_depend_on_the_figures_options_and_the_device(monkeypatch):
    import torch

    args = evaluate.parse_args(["--images", "4", "--epsilons", "8", "--sweep", "16", "--note", "x"])
    cpu = evaluate.cache_recipe(args, torch.device("cpu"))
    assert cpu["device"] == "cpu" and cpu["images"] == 4 and cpu["adaptive_labels"] == "prediction+least-likely"
    assert not {"out", "note", "cache", "epsilons", "sweep"} & set(cpu)  # no effect on any one (ε, attack) result
    assert evaluate.cache_recipe(evaluate.parse_args(["--images", "4", "--epsilons", "16", "--cache", "c"]),
                                 torch.device("cpu")) == cpu
    assert evaluate.cache_recipe(evaluate.parse_args(["--images", "5"]), torch.device("cpu")) != cpu
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Some GPU")
    assert evaluate.cache_recipe(args, torch.device("cuda", 0)) == {**cpu, "device": "Some GPU"}
