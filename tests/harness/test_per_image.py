"""The columnar per-image table: rows in and out, streamed tabulation from records, selection."""

from __future__ import annotations

import numpy as np
import pytest

from harness.per_image import ABSENT, NO_PREDICTION
from harness.records import AttackUnitRecord, DefenseAnswer, DefenseUnitRecord, ImageVerdict, RunRecord
from harness.scoring import score_table
from harness.tabulation import NOT_CLASSIFIED, table_from_rows, tabulate
from harness.tracks import Track
from random_tables import random_table, sorted_predictions


@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize("seed", range(12))
def test_rows_make_a_table_whose_views_are_the_same_rows(seed: int, dense: bool) -> None:
    world = random_table(seed, dense=dense)
    table = table_from_rows(world.predictions, world.attack_images, world.runs, defenses=world.defenses,
                            attacks=world.attacks)
    assert list(table.prediction_rows()) == sorted_predictions(world.predictions)
    assert list(table.attack_image_rows()) == sorted(world.attack_images,
                                                     key=lambda r: (r.epsilon, r.attack, r.image_id))
    assert list(table.run_rows()) == sorted(world.runs, key=lambda r: (
        r.kind, r.name, r.epsilon if r.epsilon is not None else -1, r.batch))
    assert table.predictions == len(world.predictions)
    assert table.label.dtype == np.int32 and table.versions.image.dtype == np.int32
    assert (table.label == ABSENT).any() == (not dense and len(world.predictions) < table.label.size)


def test_a_row_table_rejects_two_labels_for_one_image() -> None:
    world = random_table(3)
    first = world.predictions[0]
    clash = first.__class__(**{**first.__dict__, "defense": "other", "true_label": first.true_label + 1})
    with pytest.raises(ValueError, match="two TrueLabel/TargetClass pairs"):
        table_from_rows([*world.predictions, clash], [], [])


@pytest.mark.parametrize("seed", range(8))
def test_select_is_the_table_of_the_selected_rows(seed: int) -> None:
    world = random_table(seed)
    table = table_from_rows(world.predictions, world.attack_images, world.runs, defenses=world.defenses,
                            attacks=world.attacks)
    keep_d, keep_a = world.defenses[:1], [name for name, _ in world.attacks][-2:]
    picked = table.select(defenses=keep_d, attacks=keep_a)
    names = set(keep_d) | set(keep_a)
    rows = [r for r in world.predictions if r.defense in keep_d and (r.attack == "" or r.attack in keep_a)]
    expected = table_from_rows(rows, [r for r in world.attack_images if r.attack in keep_a],
                               [r for r in world.runs if r.name in names], defenses=keep_d,
                               attacks=[a for a in world.attacks if a[0] in keep_a])
    assert list(picked.prediction_rows()) == list(expected.prediction_rows())
    assert list(picked.run_rows()) == list(expected.run_rows())
    assert score_table(picked, epsilons=world.epsilons) == score_table(expected, epsilons=world.epsilons)
    with pytest.raises(ValueError, match="'nobody' is not a submission"):
        table.select(defenses=["nobody"])


def _run(problem: str = "") -> RunRecord:
    return RunRecord(exit_code=0 if not problem else 1, timed_out=False, seconds=1.5, problem=problem, log="x.log")


def _attack(name: str, eps: int, versions: dict[str, str], track: Track = Track.ATTACK) -> AttackUnitRecord:
    return AttackUnitRecord(key=f"k-{name}-{eps}", attack=name, attack_hash="h", attack_type=track, epsilon=eps,
                            run=_run(), images=tuple(
                                ImageVerdict(image_id=i, version=v, problem="", clipped_values=0, max_violation=0,
                                             linf=eps) for i, v in versions.items()))


def _defense(name: str, key: str, answers: dict[str, int | None]) -> DefenseUnitRecord:
    return DefenseUnitRecord(key=key, defense=name, defense_hash="h", run=_run(), predictions={
        v: DefenseAnswer(label=label, problem="" if label is not None else "missing from the CSV")
        for v, label in answers.items()})


def test_tabulate_streams_records_and_a_later_answer_wins() -> None:
    clean = {"i0": "c0", "i1": "c1"}
    attacks = [_attack("fgsm", 8, {"i0": "f0", "i1": "c1"})]  # i1's output was its clean image again
    records = {"base": [_defense("base", "k1", {"c0": 3, "c1": 4, "f0": 5, "stray": 9}),
                        _defense("base", "k2", {"f0": 6})],
               "jpeg": [_defense("jpeg", "k3", {"c0": None, "f0": 999_999_999})]}  # any 9-digit label is kept
    read: list[str] = []

    def defense_records(name: str):
        read.append(name)
        yield from records[name]

    table = tabulate(images=[("i1", 4, 0), ("i0", 3, 1)], clean_versions=clean, attack_records=iter(attacks),
                     defenses=["base", "jpeg"], defense_records=defense_records,
                     attacks=[("fgsm", Track.ATTACK)], epsilons=[8])
    assert read == ["base", "jpeg"]
    rows = {(r.defense, r.attack, r.image_id): (r.prediction, r.problem) for r in table.prediction_rows()}
    assert rows[("base", "", "i0")] == (3, "") and rows[("base", "fgsm", "i0")] == (6, "")  # k2 after k1
    assert rows[("base", "fgsm", "i1")] == (4, "")  # the same pixels as the clean image: the same answer
    assert rows[("jpeg", "", "i0")] == (None, "missing from the CSV")
    assert rows[("jpeg", "fgsm", "i0")] == (999_999_999, "")
    assert rows[("jpeg", "fgsm", "i1")] == (None, NOT_CLASSIFIED)  # no batch of jpeg answered it
    assert table.predictions == 2 * 4 and (table.label != ABSENT).all()
    assert int((table.label == NO_PREDICTION).sum()) == 3
    assert [r.batch for r in table.run_rows()] == ["k-fgsm-8", "k1", "k2", "k3"]


def test_tabulate_without_defenses_keeps_the_referee_rows() -> None:
    table = tabulate(images=[("i0", 1, 2)], clean_versions={"i0": "c0"}, attack_records=[_attack("a", 4, {"i0": "v"})],
                     defenses=[], defense_records=lambda name: iter(()), attacks=[("a", Track.ATTACK)],
                     epsilons=[4])
    assert table.label.shape == (0, 1) and [r.attack for r in table.attack_image_rows()] == ["a"]


def test_defenses_read_in_processes_make_the_same_table() -> None:
    clean = {"i0": "c0", "i1": "c1", "i2": "c2"}
    attacks = [_attack("fgsm", 8, {"i0": "f0", "i1": "f1", "i2": "c2"}),
               _attack("ll", 8, {"i0": "l0", "i1": "f1", "i2": "l2"}, Track.TARGETED_ATTACK)]
    versions = ["c0", "c1", "c2", "f0", "f1", "l0", "l2"]
    records = {f"d{n}": [_defense(f"d{n}", f"k{n}a", {v: (n + i) % 4 or None for i, v in enumerate(versions)}),
                         _defense(f"d{n}", f"k{n}b", {versions[n % 7]: 9})] for n in range(5)}

    def table(processes: int):
        return tabulate(images=[("i0", 1, 2), ("i1", 2, 3), ("i2", 3, 1)], clean_versions=clean,
                        attack_records=attacks, defenses=list(records),
                        defense_records=lambda name: iter(records[name]),
                        attacks=[("fgsm", Track.ATTACK), ("ll", Track.TARGETED_ATTACK)], epsilons=[8],
                        processes=processes)

    alone, forked = table(1), table(2)
    assert list(forked.prediction_rows()) == list(alone.prediction_rows())
    assert list(forked.run_rows()) == list(alone.run_rows())
    assert score_table(forked) == score_table(alone)
    assert (alone.label == 9).any(axis=1).all()  # each defense's second batch overrides one version
