"""Scores as pure functions of the per-image table (no files, no clocks, no randomness).

For N images at one ε (NIPS 2017 final-round formulas; CAAD 2018 all-or-nothing):

* defense d: raw = Σ over every attack a (targeted and not) of #correct[d, a];
  normalized = raw / (N · #attacks); all-or-nothing = fraction of images d classifies correctly under every
  attack; clean accuracy alongside.
* non-targeted attack a: raw = Σ over defenses of #misclassified[d, a];
  normalized = raw / #(defense, image) pairs that have a prediction (= N · #defenses when nothing failed);
  all-or-nothing = fraction of images that fool every defense that answered (and at least one answered).
* targeted attack t: raw = Σ_d #hits on TargetClass; normalized and all-or-nothing as for attacks.

"No prediction" counts as wrong for the defense and as neither error nor hit for attacks, so a defense that
fails entirely leaves every attack's normalized and all-or-nothing scores as if it were absent. An attack whose
outputs were unusable is scored on the clean images the referee substituted (a well-behaved no-op for the
defenses).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from harness.per_image import ABSENT, CLEAN_CODE, NO_PREDICTION, PerImageTable
from harness.table import CLEAN, AttackImageRow, PredictionRow, RunRow
from harness.tabulation import table_from_rows
from harness.tracks import Track

DEFENSE = Track.DEFENSE
ATTACK = Track.ATTACK
TARGETED_ATTACK = Track.TARGETED_ATTACK
#: The tracks in leaderboard order.
TRACKS = (DEFENSE, ATTACK, TARGETED_ATTACK)


@dataclass(frozen=True)
class ScoreRow:
    """One leaderboard line.

    Attributes:
        epsilon: ε in 0–255 units.
        track: Its :class:`~harness.tracks.Track` (written as "defense", "attack" or "targeted_attack").
        rank: 1-based rank within (ε, track).
        name: Submission name.
        raw: NIPS 2017 raw score (a count).
        normalized: Raw divided by its maximum (a rate in [0, 1]); None when there is nothing to score against.
        all_or_nothing: CAAD 2018 criterion in [0, 1]; None when there is nothing to score against.
        clean_accuracy: Defenses only: accuracy on clean images in [0, 1].
        images: N, the images per attack.
        failed_runs: Processes of this submission that did not end cleanly (relevant to this ε).
        failed_images: Images with no prediction (defense) or with the clean image substituted (attack).
        failures: Plain-words summary of the reasons ("" when none).
        seconds: Wall time inside this submission's processes (for defenses: all ε together).
    """

    epsilon: int
    track: Track
    rank: int
    name: str
    raw: int
    normalized: float | None
    all_or_nothing: float | None
    clean_accuracy: float | None
    images: int
    failed_runs: int
    failed_images: int
    failures: str
    seconds: float


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _summary(run_problems: Counter[str], image_problems: Counter[str]) -> str:
    parts = []
    for unit, counter in (("run", run_problems), ("image", image_problems)):
        for problem, count in sorted(((p, c) for p, c in counter.items() if p and c),
                                     key=lambda item: (-item[1], item[0])):
            parts.append(f"{count} {unit}{'s' if count != 1 else ''}: {problem}")
    return "; ".join(parts)


def summarize_problems(run_problems: Iterable[str], image_problems: Iterable[str]) -> str:
    """'2 runs: exit code 1; 20 images: missing output image' — most frequent first, then alphabetical."""
    return _summary(Counter(run_problems), Counter(image_problems))


def _rank(rows: list[ScoreRow]) -> list[ScoreRow]:
    def order(row: ScoreRow) -> tuple[float, float, float, str]:
        return (-(row.normalized or 0.0), -(row.all_or_nothing or 0.0), -(row.clean_accuracy or 0.0), row.name)

    ranked = sorted(rows, key=order)
    return [ScoreRow(**{**row.__dict__, "rank": position}) for position, row in enumerate(ranked, start=1)]


def blocks(table: PerImageTable, epsilon: int | None) -> Iterator[tuple[int, slice | np.ndarray, np.ndarray]]:
    """The version rows of each attack at ``epsilon`` (``None``: the clean rows, attack code
    :data:`~harness.per_image.CLEAN_CODE`): (attack code, rows as a slice when contiguous, their image indexes)."""
    versions = table.versions
    if epsilon is None:
        mask = versions.attack == CLEAN_CODE
    else:
        mask = (versions.epsilon == epsilon) & (versions.attack != CLEAN_CODE)
    rows = np.flatnonzero(mask)
    if not len(rows):
        return
    codes = versions.attack[rows]
    order = np.argsort(codes, kind="stable")
    rows, codes = rows[order], codes[order]
    breaks = np.flatnonzero(codes[1:] != codes[:-1]) + 1
    for group in np.split(rows, breaks):
        contiguous = group[-1] - group[0] + 1 == len(group) and bool(np.all(np.diff(group) == 1))
        where: slice | np.ndarray = slice(int(group[0]), int(group[-1]) + 1) if contiguous else group
        yield int(versions.attack[group[0]]), where, versions.image[group]


def add_per_image(counts: np.ndarray, images: np.ndarray, values: np.ndarray) -> None:
    """counts[:, images] += values (D × R), also when an image repeats."""
    if len(images) < 2 or bool(np.all(np.diff(images) > 0)):
        counts[:, images] += values
    else:
        for d in range(counts.shape[0]):
            np.add.at(counts[d], images, values[d])


@dataclass(frozen=True, eq=False)
class EpsilonStats:
    """Counts at one ε that every score and matrix is a function of (one pass over the table).

    Attributes:
        correct: int64 [D, A]: rows right (label = TrueLabel) per defense and attack.
        hits: int64 [D, A]: rows on TargetClass.
        present: int64 [D, A]: prediction rows (answered or not).
        right_per_image: int32 [D, N]: attacks under which each defense classifies each image right.
        answered: int64 [A]: (defense, image) pairs with a prediction, per attack.
        successes: int64 [A]: of those, misclassified (attack) or on target (targeted attack).
        fooled_all: int64 [A]: images that fool every defense that answered (at least one did).
        missing: int64 [D, S]: rows without a prediction per defense and reason code.
        substituted: int64 [A, S]: referee rows whose output was replaced, per attack and reason code.
    """

    correct: np.ndarray
    hits: np.ndarray
    present: np.ndarray
    right_per_image: np.ndarray
    answered: np.ndarray
    successes: np.ndarray
    fooled_all: np.ndarray
    missing: np.ndarray
    substituted: np.ndarray


def epsilon_stats(table: PerImageTable, epsilon: int | None) -> EpsilonStats:
    """The counts of :class:`EpsilonStats` at ``epsilon`` (``None``: the clean rows, as one column)."""
    n_defenses, n_attacks, n_images = len(table.defenses), max(1, len(table.attacks)), len(table.images)
    width = len(table.strings)
    truth, target = table.images.true_label, table.images.target_class
    correct = np.zeros((n_defenses, n_attacks), dtype=np.int64)
    hits, present = np.zeros_like(correct), np.zeros_like(correct)
    right = np.zeros((n_defenses, n_images), dtype=np.int32)
    answered = np.zeros(n_attacks, dtype=np.int64)
    successes, fooled_all = np.zeros_like(answered), np.zeros_like(answered)
    missing = np.zeros((n_defenses, width), dtype=np.int64)
    substituted = np.zeros((n_attacks, width), dtype=np.int64)
    for attack, rows, images in blocks(table, epsilon):
        column = max(attack, 0)
        labels = table.label[:, rows]
        right_rows = labels == truth[images]
        on_target = labels == target[images]
        given = labels >= 0
        correct[:, column] = right_rows.sum(axis=1)
        hits[:, column] = on_target.sum(axis=1)
        present[:, column] = (labels != ABSENT).sum(axis=1)
        add_per_image(right, images, right_rows.astype(np.int32))
        no_answer = np.nonzero(labels == NO_PREDICTION)
        if len(no_answer[0]):
            codes = table.answer_problem[:, rows][no_answer]
            missing += np.bincount(no_answer[0].astype(np.int64) * width + codes,
                                   minlength=n_defenses * width).reshape(n_defenses, width)
        if attack == CLEAN_CODE:
            continue
        targeted = table.attack_tracks[attack] is Track.TARGETED_ATTACK
        success = on_target if targeted else given & ~right_rows
        given_count, success_count = given.sum(axis=0), success.sum(axis=0)
        answered[attack] = int(given_count.sum())
        successes[attack] = int(success_count.sum())
        fooled_all[attack] = int(np.count_nonzero((given_count > 0) & (success_count == given_count)))
        verdict = table.versions.verdict[rows]
        problems = table.versions.problem[rows][verdict]
        substituted[attack] = np.bincount(problems, minlength=width)
        substituted[attack, 0] = 0  # used outputs
    return EpsilonStats(correct=correct, hits=hits, present=present, right_per_image=right, answered=answered,
                        successes=successes, fooled_all=fooled_all, missing=missing, substituted=substituted)


class _Runs:
    """Each submission's runs: problems and seconds, by name (and ε for attacks)."""

    def __init__(self, table: PerImageTable) -> None:
        self.strings = table.strings
        runs = table.runs
        self.by_name: dict[str, list[int]] = defaultdict(list)
        for i, code in enumerate(runs.name.tolist()):
            self.by_name[table.strings[code]].append(i)
        self.runs = runs

    def of(self, name: str, epsilon: int | None) -> tuple[Counter[str], float, int]:
        """(problem counts, seconds, failed runs) of ``name``'s runs (at ``epsilon`` unless None)."""
        runs, problems, seconds, failed = self.runs, Counter[str](), 0.0, 0
        for i in self.by_name.get(name, []):
            if epsilon is not None and int(runs.epsilon[i]) != epsilon:
                continue
            problem = self.strings[int(runs.problem[i])]
            seconds += float(runs.seconds[i])
            if problem:
                problems[problem] += 1
                failed += 1
        return problems, seconds, failed


def _reasons(counts: np.ndarray, strings: tuple[str, ...], *, empty: str) -> Counter[str]:
    found: Counter[str] = Counter()
    for code in np.flatnonzero(counts):
        found[strings[int(code)] or empty] += int(counts[code])
    return found


def score_table(table: PerImageTable, *, epsilons: Iterable[int] | None = None) -> list[ScoreRow]:
    """The leaderboard of a table: every defense and attack track at each ε.

    Args:
        table: The per-image table.
        epsilons: ε values to score; default the table's (those asked for, and any in its rows).

    Returns:
        Rows sorted by ε, track (defense, attack, targeted_attack) and rank.
    """
    if epsilons is None:
        found = {int(e) for e in np.unique(table.versions.epsilon[table.versions.attack != CLEAN_CODE])}
        epsilons = set(table.epsilons) | found
    runs = _Runs(table)
    clean = epsilon_stats(table, None)
    result: list[ScoreRow] = []
    for eps in sorted(set(epsilons)):
        stats = epsilon_stats(table, eps)
        result += _score_defenses(table, eps, stats, clean, runs)
        for track in (ATTACK, TARGETED_ATTACK):
            result += _score_attacks(table, eps, track, stats, runs)
    return result


def _score_defenses(table: PerImageTable, epsilon: int, stats: EpsilonStats, clean: EpsilonStats,
                    runs: _Runs) -> list[ScoreRow]:
    n_images, n_attacks = len(table.images), len(table.attacks)
    rows = []
    for d, name in enumerate(table.defenses):
        raw = int(stats.correct[d, :n_attacks].sum())
        missing = _reasons(stats.missing[d] + clean.missing[d], table.strings, empty="no prediction")
        problems, seconds, failed = runs.of(name, None)
        rows.append(ScoreRow(
            epsilon=epsilon, track=DEFENSE, rank=0, name=name, raw=raw,
            normalized=_ratio(raw, n_images * n_attacks),
            all_or_nothing=(_ratio(int(np.count_nonzero(stats.right_per_image[d] == n_attacks)), n_images)
                            if n_attacks else None),
            clean_accuracy=_ratio(int(clean.correct[d, 0]), n_images), images=n_images,
            failed_runs=failed, failed_images=sum(missing.values()), failures=_summary(problems, missing),
            seconds=round(seconds, 3)))
    return _rank(rows)


def _score_attacks(table: PerImageTable, epsilon: int, track: Track, stats: EpsilonStats, runs: _Runs
                   ) -> list[ScoreRow]:
    n_images = len(table.images)
    rows = []
    for a, name in enumerate(table.attacks):
        if table.attack_tracks[a] is not track:
            continue
        substituted = _reasons(stats.substituted[a], table.strings, empty="")
        problems, seconds, failed = runs.of(name, epsilon)
        raw = int(stats.successes[a])
        rows.append(ScoreRow(
            epsilon=epsilon, track=track, rank=0, name=name, raw=raw,
            normalized=_ratio(raw, int(stats.answered[a])),
            all_or_nothing=_ratio(int(stats.fooled_all[a]), n_images) if table.defenses else None,
            clean_accuracy=None, images=n_images, failed_runs=failed, failed_images=sum(substituted.values()),
            failures=_summary(problems, substituted), seconds=round(seconds, 3)))
    return _rank(rows)


def score(predictions: Iterable[PredictionRow] | PerImageTable, attack_images: Iterable[AttackImageRow] = (),
          runs: Iterable[RunRow] = (), *, epsilons: Iterable[int] | None = None,
          defenses: Iterable[str] | None = None, attacks: Iterable[tuple[str, str]] | None = None
          ) -> list[ScoreRow]:
    """The leaderboard (:func:`score_table`) of a table, or of row lists (made a table by
    :func:`harness.tabulation.table_from_rows` with ``defenses`` and ``attacks`` listed even without rows).

    Returns:
        Rows sorted by ε, track (defense, attack, targeted_attack) and rank.
    """
    if isinstance(predictions, PerImageTable):
        return score_table(predictions, epsilons=epsilons)
    table = table_from_rows(predictions, attack_images, runs, defenses=defenses, attacks=attacks)
    return score_table(table, epsilons=epsilons)


@dataclass(frozen=True)
class Matrix:
    """A defense × column table of rates at one ε.

    Attributes:
        epsilon: ε in 0–255 units.
        columns: Column names ("clean" first for accuracy matrices, then attacks).
        rows: (defense, rates) with one rate per column, None where no image was scored.
    """

    epsilon: int
    columns: tuple[str, ...]
    rows: tuple[tuple[str, tuple[float | None, ...]], ...]


def _as_table(predictions: Iterable[PredictionRow] | PerImageTable) -> PerImageTable:
    if isinstance(predictions, PerImageTable):
        return predictions
    return table_from_rows(predictions, (), ())


def _rates(numerators: np.ndarray, denominators: np.ndarray) -> tuple[float | None, ...]:
    return tuple(_ratio(int(n), int(t)) for n, t in zip(numerators, denominators, strict=True))


def accuracy_matrix(predictions: Iterable[PredictionRow] | PerImageTable, *, epsilon: int, defenses: list[str],
                    attacks: list[str], stats: tuple[EpsilonStats, EpsilonStats] | None = None) -> Matrix:
    """Defense accuracy on clean images and under each attack (targeted included) at ``epsilon``: rows right /
    prediction rows, None where a defense has none. ``stats``: (clean, ε) counts already made."""
    table = _as_table(predictions)
    clean, at_eps = stats or (epsilon_stats(table, None), epsilon_stats(table, epsilon))
    rows: list[tuple[str, tuple[float | None, ...]]] = []
    for defense in defenses:
        if defense not in table.defenses:
            rows.append((defense, (None,) * (len(attacks) + 1)))
            continue
        d = table.defenses.index(defense)
        columns = [table.attacks.index(a) if a in table.attacks else -1 for a in attacks]
        right = np.array([clean.correct[d, 0]] + [at_eps.correct[d, c] if c >= 0 else 0 for c in columns])
        total = np.array([clean.present[d, 0]] + [at_eps.present[d, c] if c >= 0 else 0 for c in columns])
        rows.append((defense, _rates(right, total)))
    return Matrix(epsilon=epsilon, columns=(CLEAN, *attacks), rows=tuple(rows))


def hit_matrix(predictions: Iterable[PredictionRow] | PerImageTable, *, epsilon: int, defenses: list[str],
               targeted_attacks: list[str], stats: EpsilonStats | None = None) -> Matrix:
    """Rate at which each defense predicts the target class under each targeted attack at ``epsilon``."""
    table = _as_table(predictions)
    at_eps = stats or epsilon_stats(table, epsilon)
    rows: list[tuple[str, tuple[float | None, ...]]] = []
    for defense in defenses:
        if defense not in table.defenses:
            rows.append((defense, (None,) * len(targeted_attacks)))
            continue
        d = table.defenses.index(defense)
        columns = [table.attacks.index(a) if a in table.attacks else -1 for a in targeted_attacks]
        hits = np.array([at_eps.hits[d, c] if c >= 0 else 0 for c in columns], dtype=np.int64)
        total = np.array([at_eps.present[d, c] if c >= 0 else 0 for c in columns], dtype=np.int64)
        rows.append((defense, _rates(hits, total)))
    return Matrix(epsilon=epsilon, columns=tuple(targeted_attacks), rows=tuple(rows))
