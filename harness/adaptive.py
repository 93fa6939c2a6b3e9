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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields

import numpy as np
from tabulate import tabulate

from harness.manifest import Manifest
from harness.per_image import ABSENT, PerImageTable
from harness.results_folder import WORST_CASE
from harness.scoring import add_per_image, blocks
from harness.table import PredictionRow
from harness.tabulation import table_from_rows

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


def _survival(ids: np.ndarray, right_count: np.ndarray, attacks: int) -> float | None:
    """Share of the images ``ids`` (a mask) right under all ``attacks`` (None: no image or attack)."""
    n_ids = int(ids.sum())
    if not n_ids or not attacks:
        return None
    return int(np.count_nonzero(ids & (right_count == attacks))) / n_ids


def worst_cases(predictions: Iterable[PredictionRow] | PerImageTable, *, epsilon: int, defenses: list[str],
                attacks: list[str], aims: Mapping[str, str]) -> list[WorstCase]:
    """Each defense's worst case at ``epsilon`` over ``attacks`` (targeted attacks included: correct = true label).

    Args:
        predictions: The per-image table (or its rows).
        epsilon: ε in 0-255 units.
        defenses: Defense names, in output order.
        attacks: Every attack name (non-targeted and targeted).
        aims: attack → defense it is aimed at (:func:`aims_from_manifest`).

    Returns:
        One :class:`WorstCase` per defense, in ``defenses`` order; accuracies are over the images the defense has
        a clean row for, and an attack counts for a defense when the table has a row of that pair at ``epsilon``.
    """
    table = predictions if isinstance(predictions, PerImageTable) else table_from_rows(predictions, (), ())
    n_def, n_img = len(table.defenses), len(table.images)
    truth = table.images.true_label
    clean_present = np.zeros((n_def, n_img), dtype=np.bool_)
    clean_right = np.zeros((n_def, n_img), dtype=np.bool_)
    for _, rows, images in blocks(table, None):
        labels = table.label[:, rows]
        clean_present[:, images] |= labels != ABSENT
        clean_right[:, images] |= labels == truth[images]
    wanted = {table.attacks.index(a): a for a in attacks if a in table.attacks}
    aimed_at = {a: table.defenses.index(aims[a]) for a in attacks if aims.get(a) in table.defenses}
    right_all = np.zeros((n_def, n_img), dtype=np.int32)
    right_aimed = np.zeros((n_def, n_img), dtype=np.int32)
    accuracy: dict[tuple[int, str], int] = {}
    for code, rows, images in blocks(table, epsilon):
        name = wanted.get(code)
        if name is None:
            continue
        labels = table.label[:, rows]
        right = labels == truth[images]
        has_rows = (labels != ABSENT).any(axis=1)
        hits = (right & clean_present[:, images]).sum(axis=1)
        for having in np.flatnonzero(has_rows).tolist():
            accuracy[(having, name)] = int(hits[having])
        add_per_image(right_all, images, right.astype(np.int32))
        if name in aimed_at:
            target = aimed_at[name]
            add_per_image(right_aimed[target:target + 1], images, right[target:target + 1].astype(np.int32))
    result = []
    for defense in defenses:
        d: int = table.defenses.index(defense) if defense in table.defenses else -1
        ids = clean_present[d] if d >= 0 else np.zeros(n_img, dtype=np.bool_)
        n_ids = int(ids.sum())
        aimed = sorted(a for a in attacks if aims.get(a) == defense)
        rates = {a: _rate(accuracy[(d, a)], n_ids) for a in attacks if (d, a) in accuracy}
        ranked = sorted(rates, key=lambda a: (rates[a], a))
        worst = ranked[0] if ranked else ""
        aimed_rates = [rates[a] for a in aimed if a in rates]
        other_rates = [rates[a] for a in rates if a not in aimed]
        scored = [a for a in attacks if a in rates]
        scored_aimed = [a for a in scored if a in aimed]

        together = right_all[d] if d >= 0 else np.zeros(n_img, dtype=np.int32)
        without = together - (right_aimed[d] if d >= 0 else 0)
        result.append(WorstCase(
            epsilon=epsilon, defense=defense, images=n_ids,
            clean_accuracy=_rate(int((clean_right[d] & ids).sum()) if d >= 0 else 0, n_ids),
            worst_attack=worst, worst_attack_accuracy=rates.get(worst), worst_is_aimed=worst in aimed,
            aimed_attacks=";".join(aimed),
            best_aimed_accuracy=min((r for r in aimed_rates if r is not None), default=None),
            best_other_accuracy=min((r for r in other_rates if r is not None), default=None),
            all_or_nothing=_survival(ids, together, len(scored)),
            all_or_nothing_without_aimed=_survival(ids, without, len(scored) - len(scored_aimed))))
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
