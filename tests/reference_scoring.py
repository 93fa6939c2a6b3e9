"""The row-by-row scoring the harness used before its table became columns (0395c36): an independent reference
that tests/harness/test_scoring_columns.py checks the vectorised scores against, on random tables."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Iterable

from harness.adaptive import WorstCase
from harness.scoring import Matrix, ScoreRow, _rank, summarize_problems
from harness.table import CLEAN, AttackImageRow, PredictionRow, RunRow
from harness.tracks import Track

DEFENSE = Track.DEFENSE
ATTACK = Track.ATTACK
TARGETED_ATTACK = Track.TARGETED_ATTACK
#: The tracks in leaderboard order.


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


@dataclass(frozen=True)
class TableIndex:
    """The per-image table indexed once for every track's scoring function.

    Attributes:
        image_ids: Every image id, sorted (N = their count).
        defenses: Defense names, sorted.
        attacks: Attack name → track (``"attack"`` or ``"targeted_attack"``).
        clean: Defense → its rows on clean images.
        cells: ε → (defense, attack) → rows.
        referee: ε → attack → referee rows.
        runs: Submission name → its process rows.
    """

    image_ids: tuple[str, ...]
    defenses: tuple[str, ...]
    attacks: dict[str, str]
    clean: dict[str, list[PredictionRow]]
    cells: dict[int, dict[tuple[str, str], list[PredictionRow]]]
    referee: dict[int, dict[str, list[AttackImageRow]]]
    runs: dict[str, list[RunRow]]

    @classmethod
    def build(cls, predictions: list[PredictionRow], attack_images: list[AttackImageRow], runs: list[RunRow], *,
              defenses: Iterable[str] | None = None, attacks: Iterable[tuple[str, str]] | None = None
              ) -> TableIndex:
        """Index the rows (see :func:`score` for ``defenses`` and ``attacks``)."""
        defense_names = sorted(set(defenses) if defenses is not None else {r.defense for r in predictions})
        attack_kinds = dict(attacks) if attacks is not None else {}
        for image_row in attack_images:
            attack_kinds.setdefault(image_row.attack, image_row.attack_type)
        for row in predictions:
            if row.attack_type != CLEAN:
                attack_kinds.setdefault(row.attack, row.attack_type)
        clean: dict[str, list[PredictionRow]] = defaultdict(list)
        cells: dict[int, dict[tuple[str, str], list[PredictionRow]]] = defaultdict(lambda: defaultdict(list))
        for row in predictions:
            if row.attack_type == CLEAN:
                clean[row.defense].append(row)
            elif row.epsilon is not None:
                cells[row.epsilon][(row.defense, row.attack)].append(row)
        referee: dict[int, dict[str, list[AttackImageRow]]] = defaultdict(lambda: defaultdict(list))
        for image_row in attack_images:
            referee[image_row.epsilon][image_row.attack].append(image_row)
        runs_by_name: dict[str, list[RunRow]] = defaultdict(list)
        for run in runs:
            runs_by_name[run.name].append(run)
        image_ids = sorted({r.image_id for r in predictions} | {r.image_id for r in attack_images})
        return cls(image_ids=tuple(image_ids), defenses=tuple(defense_names),
                   attacks={name: attack_kinds[name] for name in sorted(attack_kinds)}, clean=clean, cells=cells,
                   referee=referee, runs=runs_by_name)

    def attacks_of(self, track: str | None = None) -> list[str]:
        """Attack names (sorted), all of them or those of one track."""
        return [name for name, kind in self.attacks.items() if track is None or kind == track]


def score_defenses(index: TableIndex, epsilon: int) -> list[ScoreRow]:
    """Ranked defense rows at ``epsilon``: raw = #correct over every attack; normalized = raw / (N · #attacks);
    all-or-nothing = fraction of images right under every attack; clean accuracy alongside."""
    image_ids, attack_names = index.image_ids, index.attacks_of()
    n_images = len(image_ids)
    cell = index.cells.get(epsilon, {})
    defense_rows = []
    for defense in index.defenses:
        raw = 0
        right_everywhere: dict[str, bool] = {image: bool(attack_names) for image in image_ids}
        missing = []
        for attack in attack_names:
            seen = set()
            for row in cell.get((defense, attack), []):
                seen.add(row.image_id)
                correct = row.prediction is not None and row.prediction == row.true_label
                raw += int(correct)
                if not correct:
                    right_everywhere[row.image_id] = False
                if row.prediction is None:
                    missing.append(row.problem or "no prediction")
            for image in image_ids:
                if image not in seen:  # no row at all: no prediction
                    right_everywhere[image] = False
        clean_rows = index.clean.get(defense, [])
        clean_correct = sum(1 for r in clean_rows if r.prediction is not None and r.prediction == r.true_label)
        missing += [r.problem or "no prediction" for r in clean_rows if r.prediction is None]
        own_runs = index.runs.get(defense, [])
        defense_rows.append(ScoreRow(
            epsilon=epsilon, track=DEFENSE, rank=0, name=defense, raw=raw,
            normalized=_ratio(raw, n_images * len(attack_names)),
            all_or_nothing=_ratio(sum(right_everywhere.values()), n_images) if attack_names else None,
            clean_accuracy=_ratio(clean_correct, n_images),
            images=n_images,
            failed_runs=sum(1 for r in own_runs if r.problem),
            failed_images=len(missing),
            failures=summarize_problems((r.problem for r in own_runs), missing),
            seconds=round(sum(r.seconds for r in own_runs), 3),
        ))
    return _rank(defense_rows)


def score_attacks(index: TableIndex, epsilon: int, track: Track | str) -> list[ScoreRow]:
    """Ranked rows of one attack track at ``epsilon``: raw = #successes over the defenses (misclassified for
    ``"attack"``, target class hit for ``"targeted_attack"``); normalized = raw / #(defense, image) answers;
    all-or-nothing = fraction of images that succeed on every defense that answered.

    Raises:
        ValueError: ``track`` is not an attack track.
    """
    if track not in (ATTACK, TARGETED_ATTACK):
        raise ValueError(f"track must be {ATTACK.value!r} or {TARGETED_ATTACK.value!r}, got {str(track)!r}")
    track = Track(track)
    image_ids = index.image_ids
    n_images = len(image_ids)
    cell = index.cells.get(epsilon, {})
    referee_by_attack = index.referee.get(epsilon, {})
    attack_rows = []
    for attack in index.attacks_of(track):
        raw = 0
        answered = 0
        success_all: dict[str, bool] = {image: True for image in image_ids}
        any_answer: dict[str, bool] = {image: False for image in image_ids}
        for defense in index.defenses:
            for row in cell.get((defense, attack), []):
                if row.prediction is None:
                    continue
                answered += 1
                any_answer[row.image_id] = True
                if track == ATTACK:
                    success = row.prediction != row.true_label
                else:
                    success = row.prediction == row.target_class
                raw += int(success)
                if not success:
                    success_all[row.image_id] = False
        aon = sum(1 for image in image_ids if any_answer[image] and success_all[image])
        own_runs = [r for r in index.runs.get(attack, []) if r.epsilon == epsilon]
        substituted = [r.problem for r in referee_by_attack.get(attack, []) if r.problem]
        attack_rows.append(ScoreRow(
            epsilon=epsilon, track=track, rank=0, name=attack, raw=raw,
            normalized=_ratio(raw, answered),
            all_or_nothing=_ratio(aon, n_images) if index.defenses else None,
            clean_accuracy=None, images=n_images,
            failed_runs=sum(1 for r in own_runs if r.problem),
            failed_images=len(substituted),
            failures=summarize_problems((r.problem for r in own_runs), substituted),
            seconds=round(sum(r.seconds for r in own_runs), 3),
        ))
    return _rank(attack_rows)


def score(predictions: Iterable[PredictionRow], attack_images: Iterable[AttackImageRow],
          runs: Iterable[RunRow], *, epsilons: Iterable[int] | None = None,
          defenses: Iterable[str] | None = None, attacks: Iterable[tuple[str, str]] | None = None
          ) -> list[ScoreRow]:
    """Compute the leaderboard: :func:`score_defenses` and :func:`score_attacks` per ε over one :class:`TableIndex`.

    Args:
        predictions: Per-image predictions (clean rows have ``attack_type == "clean"``).
        attack_images: Referee rows.
        runs: Process rows.
        epsilons: ε values to score; default every ε in the rows.
        defenses: Defense names to list even without rows; default those in the rows.
        attacks: (name, attack_type) pairs to list even without rows; default those in the rows.

    Returns:
        Rows sorted by ε, track (defense, attack, targeted_attack) and rank.
    """
    predictions = list(predictions)
    attack_images = list(attack_images)
    index = TableIndex.build(predictions, attack_images, list(runs), defenses=defenses, attacks=attacks)
    eps_values = sorted(set(epsilons) if epsilons is not None else
                        {r.epsilon for r in attack_images} | {r.epsilon for r in predictions
                                                              if r.epsilon is not None})
    result: list[ScoreRow] = []
    for eps in eps_values:
        result += score_defenses(index, eps)
        result += score_attacks(index, eps, ATTACK)
        result += score_attacks(index, eps, TARGETED_ATTACK)
    return result


def accuracy_matrix(predictions: Iterable[PredictionRow], *, epsilon: int, defenses: list[str],
                    attacks: list[str]) -> Matrix:
    """Defense accuracy on clean images and under each attack (targeted included) at ``epsilon``."""
    correct: Counter[tuple[str, str]] = Counter()
    total: Counter[tuple[str, str]] = Counter()
    for row in predictions:
        if row.attack_type == CLEAN:
            column = CLEAN
        elif row.epsilon == epsilon:
            column = row.attack
        else:
            continue
        total[(row.defense, column)] += 1
        correct[(row.defense, column)] += int(row.prediction is not None and row.prediction == row.true_label)
    columns = (CLEAN, *attacks)
    return Matrix(epsilon=epsilon, columns=columns, rows=tuple(
        (defense, tuple(_ratio(correct[(defense, c)], total[(defense, c)]) for c in columns))
        for defense in defenses))


def hit_matrix(predictions: Iterable[PredictionRow], *, epsilon: int, defenses: list[str],
               targeted_attacks: list[str]) -> Matrix:
    """Rate at which each defense predicts the target class under each targeted attack at ``epsilon``."""
    hits: Counter[tuple[str, str]] = Counter()
    total: Counter[tuple[str, str]] = Counter()
    wanted = set(targeted_attacks)
    for row in predictions:
        if row.epsilon == epsilon and row.attack in wanted:
            total[(row.defense, row.attack)] += 1
            hits[(row.defense, row.attack)] += int(row.prediction is not None and row.prediction == row.target_class)
    return Matrix(epsilon=epsilon, columns=tuple(targeted_attacks), rows=tuple(
        (defense, tuple(_ratio(hits[(defense, a)], total[(defense, a)]) for a in targeted_attacks))
        for defense in defenses))


# -- harness.adaptive.worst_cases as it was ---------------------------------------------------------------
def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _survival(right: Mapping[tuple[str, str], Mapping[str, bool]], defense: str, ids: list[str], names: list[str]
              ) -> float | None:
    """Share of ``ids`` that ``defense`` gets right under every attack of ``names`` (None: no image or attack)."""
    if not ids or not names:
        return None
    return sum(all(right[(defense, a)].get(i, False) for a in names) for i in ids) / len(ids)


def worst_cases(predictions: Iterable[PredictionRow], *, epsilon: int, defenses: list[str], attacks: list[str],
                aims: Mapping[str, str]) -> list[WorstCase]:
    """Each defense's worst case at ``epsilon`` over ``attacks`` (targeted attacks included: correct = true label).

    Args:
        predictions: The per-image table.
        epsilon: ε in 0-255 units.
        defenses: Defense names, in output order.
        attacks: Every attack name (non-targeted and targeted).
        aims: attack → defense it is aimed at (:func:`aims_from_manifest`).

    Returns:
        One :class:`WorstCase` per defense, in ``defenses`` order.
    """
    wanted = set(attacks)
    clean: dict[str, dict[str, bool]] = defaultdict(dict)
    right: dict[tuple[str, str], dict[str, bool]] = defaultdict(dict)
    for row in predictions:
        ok = row.prediction is not None and row.prediction == row.true_label
        if row.attack_type == CLEAN:
            clean[row.defense][row.image_id] = ok
        elif row.epsilon == epsilon and row.attack in wanted:
            right[(row.defense, row.attack)][row.image_id] = ok
    result = []
    for defense in defenses:
        ids = sorted(clean[defense])
        aimed = sorted(a for a in attacks if aims.get(a) == defense)
        accuracy = {a: _rate(sum(right[(defense, a)].get(i, False) for i in ids), len(ids)) for a in attacks
                    if right[(defense, a)]}
        ranked = sorted(accuracy, key=lambda a: (accuracy[a], a))
        worst = ranked[0] if ranked else ""
        aimed_rates = [accuracy[a] for a in aimed if a in accuracy]
        other_rates = [accuracy[a] for a in accuracy if a not in aimed]
        scored = [a for a in attacks if a in accuracy]
        result.append(WorstCase(
            epsilon=epsilon, defense=defense, images=len(ids),
            clean_accuracy=_rate(sum(clean[defense].values()), len(ids)),
            worst_attack=worst, worst_attack_accuracy=accuracy.get(worst), worst_is_aimed=worst in aimed,
            aimed_attacks=";".join(aimed),
            best_aimed_accuracy=min((r for r in aimed_rates if r is not None), default=None),
            best_other_accuracy=min((r for r in other_rates if r is not None), default=None),
            all_or_nothing=_survival(right, defense, ids, scored),
            all_or_nothing_without_aimed=_survival(right, defense, ids, [a for a in scored if a not in aimed])))
    return result
