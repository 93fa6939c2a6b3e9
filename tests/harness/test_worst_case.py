"""harness.adaptive: per-defense worst case with the attacks aimed at each defense visible (issue 21, step 4)."""

from __future__ import annotations

import csv
import io
import json

import pytest

from harness.adaptive import aims_from_manifest, worst_case_csv, worst_case_table, worst_case_view, worst_cases
from harness.report import WORST_CASE, write_results
from harness.scoring import score, score_table
from harness.submission import SubmissionError, parse_submission
from harness.table import CLEAN, PredictionRow
from harness.tabulation import table_from_rows

IMAGES = ["a", "b", "c", "d"]
LABEL = 1


def table(right: dict[tuple[str, str], str]) -> list[PredictionRow]:
    """``right[(defense, attack)]`` = a string of 1/0/- per image (- = no prediction); attack "" = clean."""
    rows = []
    for (defense, attack), marks in right.items():
        for image, mark in zip(IMAGES, marks):
            prediction = None if mark == "-" else (LABEL if mark == "1" else 0)
            rows.append(PredictionRow(epsilon=None if not attack else 8, attack=attack,
                                      attack_type=CLEAN if not attack else "attack", defense=defense,
                                      image_id=image, true_label=LABEL, target_class=2, prediction=prediction))
    return rows


ROWS = table({
    ("jpeg", ""): "1111", ("jpeg", "pgd"): "1110", ("jpeg", "fgsm"): "1101", ("jpeg", "bpda_jpeg"): "100-",
    ("base", ""): "1110", ("base", "pgd"): "0000", ("base", "fgsm"): "1000", ("base", "bpda_jpeg"): "1100",
})
AIMS = {"bpda_jpeg": "jpeg"}
ATTACKS = ["pgd", "fgsm", "bpda_jpeg"]


def test_worst_case_separates_the_aimed_attack():
    jpeg, base = worst_cases(ROWS, epsilon=8, defenses=["jpeg", "base"], attacks=ATTACKS, aims=AIMS)
    assert (jpeg.defense, jpeg.images, jpeg.clean_accuracy) == ("jpeg", 4, 1.0)
    assert (jpeg.worst_attack, jpeg.worst_attack_accuracy, jpeg.worst_is_aimed) == ("bpda_jpeg", 0.25, True)
    assert (jpeg.best_aimed_accuracy, jpeg.best_other_accuracy) == (0.25, 0.75)
    assert jpeg.all_or_nothing == 0.25          # only image a survives every attack ("-" is wrong)
    assert jpeg.all_or_nothing_without_aimed == 0.5
    assert jpeg.aimed_attacks == "bpda_jpeg"
    # an attack aimed at another defense counts as an ordinary attack for this one
    assert (base.worst_attack, base.worst_is_aimed, base.aimed_attacks) == ("pgd", False, "")
    assert (base.best_aimed_accuracy, base.best_other_accuracy, base.all_or_nothing) == (None, 0.0, 0.0)
    assert base.all_or_nothing == base.all_or_nothing_without_aimed


def test_all_or_nothing_matches_the_leaderboard():
    scores = {s.name: s for s in score(ROWS, [], [], epsilons=[8], defenses=["jpeg", "base"],
                                       attacks=[(a, "attack") for a in ATTACKS]) if s.track == "defense"}
    for case in worst_cases(ROWS, epsilon=8, defenses=["jpeg", "base"], attacks=ATTACKS, aims=AIMS):
        assert case.all_or_nothing == scores[case.defense].all_or_nothing


def test_views_mark_the_aimed_worst_attack():
    cases = worst_cases(ROWS, epsilon=8, defenses=["jpeg", "base"], attacks=ATTACKS, aims=AIMS)
    headers, rows = worst_case_view(cases)
    assert rows[0][headers.index("worst attack")] == "bpda_jpeg (aimed)"
    assert rows[1][headers.index("worst attack")] == "pgd"
    assert "bpda_jpeg (aimed)" in worst_case_table(cases)
    parsed = list(csv.DictReader(io.StringIO(worst_case_csv(cases))))
    assert parsed[0]["worst_is_aimed"] == "1" and parsed[1]["best_aimed_accuracy"] == ""


def test_write_results_writes_the_view(tmp_path):
    table = table_from_rows(ROWS, [], [], defenses=["jpeg", "base"], attacks=[(a, "attack") for a in ATTACKS])
    write_results(tmp_path, scores=score_table(table, epsilons=[8]), table=table, aims=AIMS)
    rows = list(csv.DictReader(open(tmp_path / WORST_CASE)))
    assert [(r["defense"], r["worst_attack"], r["aimed_attacks"]) for r in rows] == [
        ("jpeg", "bpda_jpeg", "bpda_jpeg"), ("base", "pgd", "")]


def test_aims_from_manifest_ignores_entries_without_the_key():
    manifest = {"submissions": [{"name": "bpda_jpeg", "type": "attack", "targets_defense": "jpeg"},
                                {"name": "pgd", "type": "attack"}, {"name": "jpeg", "type": "defense"}]}
    assert aims_from_manifest(manifest) == {"bpda_jpeg": "jpeg"}
    assert aims_from_manifest({}) == {}


def _folder(tmp_path, meta):
    folder = tmp_path / "sub"
    folder.mkdir(parents=True)
    (folder / "metadata.json").write_text(json.dumps(meta))
    (folder / "run.sh").write_text("#!/bin/sh\n")
    return folder


def test_metadata_key_is_parsed_and_checked(tmp_path):
    meta = {"type": "attack", "entry_point": "run.sh", "targets_defense": "jpeg"}
    assert parse_submission(_folder(tmp_path, meta)).targets_defense == "jpeg"
    assert parse_submission(_folder(tmp_path / "x", {"type": "attack", "entry_point": "run.sh"})) \
        .targets_defense == ""
    with pytest.raises(SubmissionError, match="targets_defense"):
        parse_submission(_folder(tmp_path / "y", dict(meta, targets_defense=["jpeg"])))
    with pytest.raises(SubmissionError, match="targets_defense"):
        parse_submission(_folder(tmp_path / "z", dict(meta, targets_defense="../jpeg")))
