"""The vectorised scores, matrices and worst cases equal the row-by-row code they replaced (tests/reference_scoring.py,
the harness's scoring before its table became columns) on random tables, dense and sparse."""

from __future__ import annotations

import pytest

import reference_scoring as reference
from harness.adaptive import worst_cases
from harness.scoring import accuracy_matrix, hit_matrix, score, score_table
from harness.tabulation import table_from_rows
from random_tables import random_table

SEEDS = range(40)


@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize("seed", SEEDS)
def test_scores_equal_the_row_by_row_reference(seed: int, dense: bool) -> None:
    world = random_table(seed, dense=dense)
    args = (world.predictions, world.attack_images, world.runs)
    options = {"defenses": world.defenses, "attacks": world.attacks}
    expected = reference.score(*args, **options)
    assert score(*args, **options) == expected
    table = table_from_rows(*args, **options, epsilons=world.epsilons)
    assert score_table(table, epsilons=world.epsilons) == reference.score(*args, epsilons=world.epsilons, **options)


@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize("seed", SEEDS)
def test_matrices_and_worst_cases_equal_the_reference(seed: int, dense: bool) -> None:
    world = random_table(seed, dense=dense)
    table = table_from_rows(world.predictions, world.attack_images, world.runs, defenses=world.defenses,
                            attacks=world.attacks)
    names = [name for name, _ in world.attacks]
    targeted = [name for name, kind in world.attacks if kind == "targeted_attack"]
    aims = {names[0]: world.defenses[-1]}
    for eps in world.epsilons:
        assert accuracy_matrix(table, epsilon=eps, defenses=world.defenses, attacks=names) == \
            reference.accuracy_matrix(world.predictions, epsilon=eps, defenses=world.defenses, attacks=names)
        assert hit_matrix(table, epsilon=eps, defenses=world.defenses, targeted_attacks=targeted) == \
            reference.hit_matrix(world.predictions, epsilon=eps, defenses=world.defenses, targeted_attacks=targeted)
        ours = worst_cases(table, epsilon=eps, defenses=world.defenses, attacks=names, aims=aims)
        if dense:  # the reference sorts None accuracies when a defense has no clean row: only dense tables
            assert ours == reference.worst_cases(world.predictions, epsilon=eps, defenses=world.defenses,
                                                 attacks=names, aims=aims)


def test_the_reference_is_not_the_code_under_test() -> None:
    """The cross-check means something only if the reference computes on rows by itself."""
    assert reference.score is not score and reference.accuracy_matrix is not accuracy_matrix
    assert "TableIndex" in vars(reference)  # the row index the old scoring built
