"""Sanity flags of an evaluation, after the evaluation checklist of Carlini et al. (2019), "On Evaluating
Adversarial Robustness" (arXiv:1902.06705): pure functions of the leaderboard and the accuracy/hit matrices.

A flag is a hint to look closer, not a verdict (on 20 images one image is 5 %). Checks:

* ``iterative weaker than single-step`` — an iterative attack leaves a defense *more* accurate than its own
  single-step version (FGSM vs I-FGSM/PGD/MI-FGSM, step-LL vs iter-LL; targeted: fewer hits): a sign of gradient
  masking or of a broken attack (iterative attacks should do at least as well as single-step ones).
* ``transfer stronger than white-box`` — the transfer attack beats every white-box attack on a defense
  (white-box attacks should do at least as well as transfer attacks).
* ``attack weaker than random noise`` — a gradient attack does worse than random noise at the same ε.
* ``accuracy rises with ε`` — a defense's accuracy under attack (normalized score) grows with ε (a larger
  distortion bound should never help the defense).
* ``does not fall to 0`` — at ε ≥ 128 (half the pixel range) some image still survives every attack
  (all-or-nothing > 5 %): with a large enough bound, attacks should reach 100 % success.
* ``above clean accuracy`` — a defense is more accurate under an attack than on clean images.

With ``images`` (N) given, a difference of one image or less is sampling noise and raises no flag.

Which submission plays which role is read from the names of the NIPS 2017 sample attacks
(:data:`SINGLE_STEP`, :data:`WHITE_BOX`, :data:`TRANSFER`, :data:`RANDOM_NOISE`); other names take no part
in the role checks.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from harness.scoring import DEFENSE, Matrix, ScoreRow
from harness.table import CLEAN

#: Single-step attack → its iterative versions (compared on accuracy).
SINGLE_STEP: dict[str, tuple[str, ...]] = {
    "fgsm": ("i_fgsm", "pgd", "mi_fgsm", "bim"),
    "step_ll": ("iter_ll",),
}
#: Targeted single-step attack → its iterative versions (compared on target hit rates).
SINGLE_STEP_TARGETED: dict[str, tuple[str, ...]] = {"step_target": ("iter_target",)}
#: Untargeted white-box gradient attacks.
WHITE_BOX = frozenset({"fgsm", "i_fgsm", "pgd", "mi_fgsm", "bim", "step_ll", "iter_ll", "cw", "deepfool"})
#: Transfer (black-box) attacks.
TRANSFER = frozenset({"transfer"})
#: Random-noise baselines.
RANDOM_NOISE = frozenset({"random_noise"})
#: Largest all-or-nothing accuracy accepted at ε ≥ :data:`LARGE_EPSILON`.
VANISHING = 0.05
LARGE_EPSILON = 128


@dataclass(frozen=True)
class Flag:
    """One sanity flag.

    Attributes:
        check: The check's title (see the module docstring).
        epsilon: ε it concerns (None: across ε).
        subject: The defense (or attack) concerned.
        detail: The numbers behind it, in words.
    """

    check: str
    epsilon: int | None
    subject: str
    detail: str


def _pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def _cells(matrix: Matrix) -> dict[tuple[str, str], float]:
    return {(defense, column): rate for defense, rates in matrix.rows
            for column, rate in zip(matrix.columns, rates, strict=False) if rate is not None}


def flags(scores: list[ScoreRow], accuracy: list[Matrix], hits: list[Matrix], *, images: int | None = None
          ) -> list[Flag]:
    """Every sanity flag of a competition.

    Args:
        scores: The leaderboard (:func:`harness.scoring.score`).
        accuracy: Accuracy matrices (clean column first), one per ε.
        hits: Targeted hit matrices, one per ε (may be empty).
        images: N; when given, differences of one image (1/N) or less raise no flag (sampling noise on small
            sets). Without it every strict difference counts.

    Returns:
        Flags ordered by check, ε and subject.
    """
    found: list[Flag] = []
    margin = 1.0 / images if images else 0.0

    def worse(weaker: float, stronger: float) -> bool:  # "weaker > stronger", beyond the margin
        return weaker - stronger > margin + 1e-9

    for matrix in hits:
        cells = _cells(matrix)
        for defense, _ in matrix.rows:
            for single, iterated in SINGLE_STEP_TARGETED.items():
                for other in iterated:
                    h_single, h_other = cells.get((defense, single)), cells.get((defense, other))
                    if h_single is not None and h_other is not None and worse(h_single, h_other):
                        found.append(Flag("iterative weaker than single-step", matrix.epsilon, defense,
                                          f"targeted hits {_pct(h_other)} with {other} < {_pct(h_single)} with "
                                          f"{single}"))
    for matrix in accuracy:
        eps = matrix.epsilon
        cells = _cells(matrix)
        attacks = [c for c in matrix.columns if c != CLEAN]
        for defense, _ in matrix.rows:
            acc = {a: cells[(defense, a)] for a in attacks if (defense, a) in cells}
            for single, iterated in SINGLE_STEP.items():
                for other in iterated:
                    if single in acc and other in acc and worse(acc[other], acc[single]):
                        found.append(Flag("iterative weaker than single-step", eps, defense,
                                          f"accuracy {_pct(acc[other])} under {other} > {_pct(acc[single])} "
                                          f"under {single}"))
            white = {a: v for a, v in acc.items() if a in WHITE_BOX}
            for transfer in (a for a in acc if a in TRANSFER):
                if white and worse(min(white.values()), acc[transfer]):
                    best = min(white, key=lambda a: (white[a], a))
                    found.append(Flag("transfer stronger than white-box", eps, defense,
                                      f"accuracy {_pct(acc[transfer])} under {transfer} < {_pct(white[best])} "
                                      f"under the best white-box attack ({best})"))
            for noise in (a for a in acc if a in RANDOM_NOISE):
                for attack in sorted(a for a in acc if a in WHITE_BOX | TRANSFER):
                    if worse(acc[attack], acc[noise]):
                        found.append(Flag("attack weaker than random noise", eps, defense,
                                          f"accuracy {_pct(acc[attack])} under {attack} > {_pct(acc[noise])} "
                                          f"under {noise}"))
            clean = cells.get((defense, CLEAN))
            if clean is not None:
                for attack in sorted(a for a, v in acc.items() if worse(v, clean)):
                    found.append(Flag("above clean accuracy", eps, defense,
                                      f"accuracy {_pct(acc[attack])} under {attack} > clean {_pct(clean)}"))

    defense_rows: dict[str, list[ScoreRow]] = {}
    for row in scores:
        if row.track == DEFENSE:
            defense_rows.setdefault(row.name, []).append(row)
    for name, rows in sorted(defense_rows.items()):
        rows = sorted(rows, key=lambda r: r.epsilon)
        for low, high in itertools.pairwise(rows):
            if low.normalized is not None and high.normalized is not None and worse(high.normalized, low.normalized):
                found.append(Flag("accuracy rises with ε", high.epsilon, name,
                                  f"normalized accuracy {_pct(high.normalized)} at ε = {high.epsilon} > "
                                  f"{_pct(low.normalized)} at ε = {low.epsilon}"))
        top = rows[-1] if rows else None
        if top is not None and top.epsilon >= LARGE_EPSILON and top.all_or_nothing is not None \
                and top.all_or_nothing > VANISHING:
            found.append(Flag("does not fall to 0", top.epsilon, name,
                              f"{_pct(top.all_or_nothing)} of the images survive every attack at ε = {top.epsilon}"))
    order = {title: i for i, title in enumerate((
        "iterative weaker than single-step", "transfer stronger than white-box", "attack weaker than random noise",
        "accuracy rises with ε", "does not fall to 0", "above clean accuracy"))}
    return sorted(found, key=lambda f: (order[f.check], f.epsilon if f.epsilon is not None else -1, f.subject,
                                        f.detail))
