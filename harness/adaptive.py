"""Per-defense worst case over every attack, with the attacks aimed at that defense made visible.

An attack folder may declare the one defense it was written against with an extra metadata key,
``"targets_defense": "<defense folder name>"`` (adaptive attacks: BPDA, end-to-end PGD; Athalye et al. 2018,
Tramèr et al. 2020). NIPS 2017 tools ignore the key; the referee records it in ``manifest.json`` and scores
nothing differently: the all-or-nothing score already takes every attack into account per image. This module
only adds a view of the per-image table that separates "aimed at this defense" from the other attacks, so a
reader sees how much of a defense's robustness survives an attacker who knows it.

Pure functions of the per-image table (no files, clocks or randomness), like :mod:`harness.scoring`.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields

from tabulate import tabulate

from harness.manifest import Manifest
from harness.results_folder import WORST_CASE
from harness.table import CLEAN, PredictionRow

__all__ = ["AIM_KEY", "WORST_CASE", "WorstCase", "aims_from_manifest", "worst_case_csv", "worst_case_table",
           "worst_case_view", "worst_cases"]

#: The metadata.json key naming the defense an attack is aimed at.
AIM_KEY = "targets_defense"


@dataclass(frozen=True)
class WorstCase:
    """One defense at one ε.

    Attributes:
        epsilon: ε in 0-255 units.
        defense: Defense name.
        images: Images scored (those with a clean prediction row).
        clean_accuracy: Accuracy on clean images, [0, 1]; None without clean rows.
        worst_attack: The single attack with the lowest accuracy ("" when none); ties broken by name.
        worst_attack_accuracy: Its accuracy, [0, 1].
        worst_is_aimed: ``worst_attack`` declares this defense as its target.
        aimed_attacks: Attacks aimed at this defense, ";"-joined, sorted ("" when none).
        best_aimed_accuracy: Lowest accuracy among the aimed attacks; None when there are none.
        best_other_accuracy: Lowest accuracy among the other attacks; None when there are none.
        all_or_nothing: Fraction of images right under every attack (aimed ones included); no prediction = wrong.
        all_or_nothing_without_aimed: The same over the non-aimed attacks only (what the leaderboard would
            say if nobody had attacked this defense specifically).
    """

    epsilon: int
    defense: str
    images: int
    clean_accuracy: float | None
    worst_attack: str
    worst_attack_accuracy: float | None
    worst_is_aimed: bool
    aimed_attacks: str
    best_aimed_accuracy: float | None
    best_other_accuracy: float | None
    all_or_nothing: float | None
    all_or_nothing_without_aimed: float | None


def aims_from_manifest(manifest: Manifest | Mapping[str, object]) -> dict[str, str]:
    """attack name → the defense it is aimed at, from the manifest's ``submissions`` (missing key: none).

    Args:
        manifest: The manifest, or its JSON form (read by :meth:`harness.manifest.Manifest.from_json`).

    Raises:
        harness.manifest.ManifestError: A JSON form that is not a manifest.
    """
    if not isinstance(manifest, Manifest):
        manifest = Manifest.from_json(dict(manifest))
    return manifest.aims()


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


def _fmt(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def worst_case_view(cases: list[WorstCase]) -> tuple[list[str], list[list[str]]]:
    """Headers and formatted rows for a leaderboard view (terminal, CSV or the HTML report).

    The worst attack is marked ``(aimed)`` when it was written against this defense.
    """
    headers = ["epsilon", "defense", "clean", "worst attack", "worst acc.", "best aimed acc.", "best other acc.",
               "all-or-nothing", "all-or-nothing w/o aimed", "aimed attacks"]
    rows = [[str(c.epsilon), c.defense, _fmt(c.clean_accuracy),
             c.worst_attack + (" (aimed)" if c.worst_is_aimed else ""), _fmt(c.worst_attack_accuracy),
             _fmt(c.best_aimed_accuracy), _fmt(c.best_other_accuracy), _fmt(c.all_or_nothing),
             _fmt(c.all_or_nothing_without_aimed), c.aimed_attacks.replace(";", ", ")] for c in cases]
    return headers, rows


def worst_case_table(cases: list[WorstCase]) -> str:
    """The view as a GitHub-flavoured table (terminal and Markdown)."""
    headers, rows = worst_case_view(cases)
    return str(tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True))


def worst_case_csv(cases: list[WorstCase]) -> str:
    """The cases as CSV text, one column per :class:`WorstCase` field."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    names = [f.name for f in fields(WorstCase)]
    writer.writerow(names)
    for case in cases:
        writer.writerow([_fmt(getattr(case, name)) if not isinstance(getattr(case, name), bool)
                         else int(getattr(case, name)) for name in names])
    return out.getvalue()
