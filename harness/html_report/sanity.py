"""Sanity flags of an evaluation, after the evaluation checklist of Carlini et al. (2019), "On Evaluating
Adversarial Robustness" (arXiv:1902.06705): pure functions of the leaderboard and the accuracy/hit matrices.

A flag is a hint to look closer, not a verdict (on 20 images one image is 5 %). Checks:

* ``iterative weaker than single-step`` — an iterative attack leaves a defense *more* accurate than its own
  single-step version (the one its ``iterates`` names: FGSM for I-FGSM/PGD/MI-FGSM, step-LL for iter-LL;
  targeted: fewer hits): a sign of gradient masking or of a broken attack (iterative attacks should do at least as
  well as single-step ones).
* ``transfer stronger than white-box`` — a transfer attack beats every white-box attack on a defense
  (white-box attacks should do at least as well as transfer attacks).
* ``attack weaker than random noise`` — a white-box, transfer or score-based attack does worse than random noise
  at the same ε.
* ``accuracy rises with ε`` — a defense's accuracy under attack (normalized score) grows with ε (a larger
  distortion bound should never help the defense).
* ``does not fall to 0`` — at ε ≥ 128 (half the pixel range) some image still survives every attack
  (all-or-nothing > 5 %): with a large enough bound, attacks should reach 100 % success.
* ``above clean accuracy`` — a defense is more accurate under an attack than on clean images.

With ``images`` (N) given, a difference of one image or less is sampling noise and raises no flag.

Which attack plays which part comes from its ``metadata.json`` (:class:`Roles`, recorded in the manifest): ``role``
(:class:`harness.tracks.AttackRole`) and, for an iterative attack, ``iterates`` (its single-step version).
Accuracy is compared among untargeted attacks; targeted ones on their hit rates. An attack without a role takes
part in no check that compares attacks and is listed as not checked (:meth:`Roles.unchecked`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.manifest import Manifest
from harness.scoring import DEFENSE, Matrix, ScoreRow
from harness.table import CLEAN
from harness.tracks import AttackRole

#: Largest all-or-nothing accuracy accepted at ε ≥ :data:`LARGE_EPSILON`.
VANISHING = 0.05
LARGE_EPSILON = 128
#: The checks, in the order the report lists them.
CHECKS = ("iterative weaker than single-step", "transfer stronger than white-box", "attack weaker than random noise",
          "accuracy rises with ε", "does not fall to 0", "above clean accuracy")
#: Roles compared with random noise.
_BEAT_NOISE = frozenset({AttackRole.WHITE_BOX.value, AttackRole.TRANSFER.value, AttackRole.SCORE_BASED.value})


@dataclass(frozen=True)
class Roles:
    """Which attack plays which part in the checks that compare attacks (metadata keys ``role`` and ``iterates``).

    Attributes:
        role: Attack name → its :class:`~harness.tracks.AttackRole` value; attacks without a role are absent.
        iterates: Iterative attack → the single-step attack it repeats (both compared only when both have a role).
    """

    role: Mapping[str, str] = field(default_factory=dict)
    iterates: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_manifest(cls, manifest: Manifest | Mapping[str, Any]) -> Roles:
        """The roles the manifest's ``submissions`` record (:class:`harness.manifest.SubmissionEntry`); a
        manifest written before roles existed gives none.

        Args:
            manifest: The manifest, or its JSON form (read by :meth:`harness.manifest.Manifest.from_json`).

        Raises:
            harness.manifest.ManifestError: A JSON form that is not a manifest.
        """
        if not isinstance(manifest, Manifest):
            manifest = Manifest.from_json(dict(manifest))
        role: dict[str, str] = {}
        iterates: dict[str, str] = {}
        for entry in manifest.submissions:
            if not entry.track.is_attack or not entry.name:
                continue
            if entry.role is not None:
                role[entry.name] = entry.role.value
            if entry.iterates:
                iterates[entry.name] = entry.iterates
        return cls(role=role, iterates=iterates)

    def named(self, kind: AttackRole, attacks: Iterable[str]) -> list[str]:
        """The attacks of ``attacks`` whose role is ``kind``, in their order."""
        return [a for a in attacks if self.role.get(a) == kind.value]

    def pairs(self, attacks: Iterable[str]) -> list[tuple[str, str]]:
        """(single-step, iterative) pairs among ``attacks`` (both with a role), sorted."""
        present = {a for a in attacks if a in self.role}
        return sorted((self.iterates[a], a) for a in present if self.iterates.get(a) in present)

    def unchecked(self, attacks: Iterable[str]) -> list[str]:
        """The attacks of ``attacks`` without a role (no check compares them with other attacks), sorted."""
        return sorted(a for a in attacks if a not in self.role)


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


#: "weaker > stronger" beyond the margin (one image when N is given).
Worse = Callable[[float, float], bool]


def flags(scores: list[ScoreRow], accuracy: list[Matrix], hits: list[Matrix], *, images: int | None = None,
          roles: Roles | None = None) -> list[Flag]:
    """Every sanity flag of a competition.

    Args:
        scores: The leaderboard (:func:`harness.scoring.score`).
        accuracy: Accuracy matrices (clean column first), one per ε.
        hits: Targeted hit matrices, one per ε (may be empty); their columns are the targeted attacks, which the
            checks comparing attacks on accuracy leave out.
        images: N; when given, differences of one image (1/N) or less raise no flag (sampling noise on small
            sets). Without it every strict difference counts.
        roles: The attacks' roles (:meth:`Roles.from_manifest`); None: no attack has one, so only the checks that
            compare defenses run.

    Returns:
        Flags ordered by check, ε and subject.
    """
    roles = roles or Roles()
    margin = 1.0 / images if images else 0.0

    def worse(weaker: float, stronger: float) -> bool:
        return weaker - stronger > margin + 1e-9

    targeted = {column for matrix in hits for column in matrix.columns}
    found: list[Flag] = []
    for matrix in hits:
        found += targeted_iterative_weaker(matrix, roles, worse)
    for matrix in accuracy:
        cells = _cells(matrix)
        attacks = [c for c in matrix.columns if c != CLEAN]
        for defense, _ in matrix.rows:
            acc = {a: cells[(defense, a)] for a in attacks if (defense, a) in cells}
            untargeted = {a: v for a, v in acc.items() if a not in targeted}
            found += iterative_weaker(matrix.epsilon, defense, untargeted, roles, worse)
            found += transfer_stronger(matrix.epsilon, defense, untargeted, roles, worse)
            found += weaker_than_noise(matrix.epsilon, defense, untargeted, roles, worse)
            found += above_clean(matrix.epsilon, defense, acc, cells.get((defense, CLEAN)), worse)
    for name, rows in _defense_series(scores):
        found += rises_with_epsilon(name, rows, worse)
        found += does_not_fall_to_zero(name, rows)
    order = {title: i for i, title in enumerate(CHECKS)}
    return sorted(found, key=lambda f: (order[f.check], f.epsilon if f.epsilon is not None else -1, f.subject,
                                        f.detail))


def targeted_iterative_weaker(matrix: Matrix, roles: Roles, worse: Worse) -> list[Flag]:
    """"iterative weaker than single-step" on target hits: an iterative targeted attack hits fewer targets than
    its single-step version (``matrix``: one ε's hit rates)."""
    cells = _cells(matrix)
    found = []
    for defense, _ in matrix.rows:
        for single, other in roles.pairs(matrix.columns):
            h_single, h_other = cells.get((defense, single)), cells.get((defense, other))
            if h_single is not None and h_other is not None and worse(h_single, h_other):
                found.append(Flag(CHECKS[0], matrix.epsilon, defense,
                                  f"targeted hits {_pct(h_other)} with {other} < {_pct(h_single)} with {single}"))
    return found


def iterative_weaker(eps: int, defense: str, acc: dict[str, float], roles: Roles, worse: Worse) -> list[Flag]:
    """"iterative weaker than single-step": ``defense`` is more accurate under an iterative attack than under its
    single-step version (``acc``: untargeted attack → accuracy at ``eps``)."""
    return [Flag(CHECKS[0], eps, defense, f"accuracy {_pct(acc[other])} under {other} > {_pct(acc[single])} "
                                         f"under {single}")
            for single, other in roles.pairs(acc) if worse(acc[other], acc[single])]


def transfer_stronger(eps: int, defense: str, acc: dict[str, float], roles: Roles, worse: Worse) -> list[Flag]:
    """"transfer stronger than white-box": a transfer attack leaves ``defense`` less accurate than every white-box
    attack does."""
    white = {a: acc[a] for a in roles.named(AttackRole.WHITE_BOX, acc)}
    if not white:
        return []
    best = min(white, key=lambda a: (white[a], a))
    return [Flag(CHECKS[1], eps, defense, f"accuracy {_pct(acc[transfer])} under {transfer} < {_pct(white[best])} "
                                         f"under the best white-box attack ({best})")
            for transfer in roles.named(AttackRole.TRANSFER, acc) if worse(white[best], acc[transfer])]


def weaker_than_noise(eps: int, defense: str, acc: dict[str, float], roles: Roles, worse: Worse) -> list[Flag]:
    """"attack weaker than random noise": a white-box, transfer or score-based attack leaves ``defense`` more
    accurate than a random-noise baseline."""
    attacks = sorted(a for a in acc if roles.role.get(a) in _BEAT_NOISE)
    return [Flag(CHECKS[2], eps, defense, f"accuracy {_pct(acc[attack])} under {attack} > {_pct(acc[noise])} "
                                         f"under {noise}")
            for noise in roles.named(AttackRole.RANDOM_NOISE, acc) for attack in attacks
            if worse(acc[attack], acc[noise])]


def above_clean(eps: int, defense: str, acc: dict[str, float], clean: float | None, worse: Worse) -> list[Flag]:
    """"above clean accuracy": ``defense`` is more accurate under an attack than on clean images (any attack, role
    or not)."""
    if clean is None:
        return []
    return [Flag(CHECKS[5], eps, defense, f"accuracy {_pct(acc[attack])} under {attack} > clean {_pct(clean)}")
            for attack in sorted(a for a, v in acc.items() if worse(v, clean))]


def rises_with_epsilon(name: str, rows: list[ScoreRow], worse: Worse) -> list[Flag]:
    """"accuracy rises with ε": defense ``name``'s normalized score grows from one ε to the next (``rows`` by ε)."""
    return [Flag(CHECKS[3], high.epsilon, name, f"normalized accuracy {_pct(high.normalized)} at ε = {high.epsilon} > "
                                               f"{_pct(low.normalized)} at ε = {low.epsilon}")
            for low, high in itertools.pairwise(rows)
            if low.normalized is not None and high.normalized is not None and worse(high.normalized, low.normalized)]


def does_not_fall_to_zero(name: str, rows: list[ScoreRow]) -> list[Flag]:
    """"does not fall to 0": at the largest ε, if ≥ :data:`LARGE_EPSILON`, more than :data:`VANISHING` of the
    images survive every attack (``rows`` by ε)."""
    top = rows[-1] if rows else None
    if top is None or top.epsilon < LARGE_EPSILON or top.all_or_nothing is None or top.all_or_nothing <= VANISHING:
        return []
    return [Flag(CHECKS[4], top.epsilon, name,
                 f"{_pct(top.all_or_nothing)} of the images survive every attack at ε = {top.epsilon}")]


def _defense_series(scores: list[ScoreRow]) -> list[tuple[str, list[ScoreRow]]]:
    """Each defense's leaderboard rows sorted by ε, defenses by name."""
    rows: dict[str, list[ScoreRow]] = {}
    for row in scores:
        if row.track == DEFENSE:
            rows.setdefault(row.name, []).append(row)
    return [(name, sorted(series, key=lambda r: r.epsilon)) for name, series in sorted(rows.items())]
