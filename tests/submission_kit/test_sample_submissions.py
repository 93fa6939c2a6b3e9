"""The repository's own attacks/ and defenses/ folders: they parse, and (with trained weights) run through the
harness on sample_data/."""

from __future__ import annotations

import csv
from pathlib import Path

from harness.competition import CompetitionConfig, run_competition
from harness.limits import LimitPolicy
from harness.submission import SubmissionType, discover

ROOT = Path(__file__).resolve().parents[2]


def test_every_sample_folder_parses() -> None:
    found = discover([ROOT / "attacks", ROOT / "defenses"])
    assert found.problems == ()
    kinds = {s.name: s.type for s in found.submissions}
    for name in ("noop", "random_noise", "fgsm", "i_fgsm", "mi_fgsm", "pgd", "step_ll", "iter_ll", "uap", "uap_sgd",
                 "transfer"):
        assert kinds[name] is SubmissionType.ATTACK, name
    for name in ("step_target", "iter_target"):
        assert kinds[name] is SubmissionType.TARGETED_ATTACK, name
    assert kinds["base"] is SubmissionType.DEFENSE
    for submission in found.submissions:
        assert not submission.warnings, submission.warnings
        assert (submission.path / "README.md").is_file() or submission.name in ("noop", "random_noise")


def test_white_box_attack_beats_the_undefended_model(tmp_path: Path) -> None:
    config = CompetitionConfig(input_dir=ROOT / "sample_data", attacks_dirs=(ROOT / "attacks",),
                               defenses_dirs=(ROOT / "defenses",), output_dir=tmp_path / "results",
                               epsilons=(8,), only=("noop", "fgsm", "iter_target", "base"),
                               policy=LimitPolicy(minimum_seconds=300))
    result = run_competition(config, echo=lambda _: None)
    assert not any(r.problem for r in result.runs), [r.problem for r in result.runs]
    rows = {(r["track"], r["name"]): r for r in csv.DictReader(open(tmp_path / "results" / "leaderboard.csv"))}
    clean = float(rows[("defense", "base")]["clean_accuracy"])
    assert clean >= 0.7  # 20 images; the target model scores 86 % on 5,000 test images
    assert float(rows[("attack", "fgsm")]["normalized"]) > float(rows[("attack", "noop")]["normalized"])
    assert float(rows[("targeted_attack", "iter_target")]["normalized"]) >= 0.5
    assert all(r.linf <= 8 for r in result.attack_images)
