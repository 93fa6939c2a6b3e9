"""Whether two results folders hold the same results: their per-image tables row for row, and the scores, matrices
and worst cases written from them (``python run_competition.py compare A B``).

Two folders agree when every prediction row (ε, attack, defense, image → prediction and its problem), every referee
row and every run row (wall time aside) are the same in both, and so are the score files both hold
(``leaderboard.csv``, ``accuracy_matrix.csv``, ``targeted_hit_matrix.csv``, ``worst_case.csv``, compared as text).
Tables are matched by names, not by codes or row order, so a folder read from ``per_image.csv`` compares with one
read from ``per_image.parquet``. A folder without per-image tables (a committed record of scores only) is compared on
its score files alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.errors import CompetitionError
from harness.manifest import Manifest
from harness.per_image import CLEAN_CODE, PerImageTable
from harness.results_folder import (
    ACCURACY_MATRIX,
    LEADERBOARD,
    TARGETED_HIT_MATRIX,
    WORST_CASE,
    ResultsFolder,
)
from harness.table_files import load_table

__all__ = ["SCORE_FILES", "Comparison", "compare_folders", "compare_tables"]

#: The files of scores compared as text when both folders hold them.
SCORE_FILES = (LEADERBOARD, ACCURACY_MATRIX, TARGETED_HIT_MATRIX, WORST_CASE)


def _row_keys(table: PerImageTable) -> list[tuple[int, str, str, int]]:
    versions = table.versions
    attacks = ("", *table.attacks)
    return [(int(e), attacks[int(a) + 1] if a != CLEAN_CODE else "", table.images.ids[int(i)], int(d))
            for e, a, i, d in zip(versions.epsilon.tolist(), versions.attack.tolist(), versions.image.tolist(),
                                  versions.draw.tolist(), strict=True)]


def compare_tables(a: PerImageTable, b: PerImageTable, *, limit: int = 10) -> list[str]:
    """Differences between two tables, one line each (at most ``limit`` of each kind); [] when they agree.

    Compared: images and their labels, defense and attack names (with tracks), the version rows, each defense's
    prediction and problem on each row (an absent row included), the referee's verdict on each row, and the runs
    (every field but ``seconds``).
    """
    found: list[str] = []
    if a.images.ids != b.images.ids:
        return [f"images differ: {len(a.images)} vs {len(b.images)} (first ids {a.images.ids[:3]} vs "
                f"{b.images.ids[:3]})"]
    for column in ("true_label", "target_class"):
        if not np.array_equal(getattr(a.images, column), getattr(b.images, column)):
            found.append(f"{column} differs")
    if set(a.defenses) != set(b.defenses):
        found.append(f"defenses differ: {sorted(set(a.defenses) ^ set(b.defenses))[:limit]}")
    tracks_a = dict(zip(a.attacks, a.attack_tracks, strict=True))
    tracks_b = dict(zip(b.attacks, b.attack_tracks, strict=True))
    if tracks_a != tracks_b:
        found.append(f"attacks differ: {sorted(set(tracks_a.items()) ^ set(tracks_b.items()))[:limit]}")
    if found:
        return found
    keys_a, keys_b = _row_keys(a), _row_keys(b)
    if set(keys_a) != set(keys_b):
        return [f"version rows differ: {sorted(set(keys_a) ^ set(keys_b))[:limit]}"]
    position = {key: i for i, key in enumerate(keys_b)}
    rows_b = np.array([position[key] for key in keys_a], dtype=np.int64)
    strings_a, strings_b = np.array(a.strings, dtype=object), np.array(b.strings, dtype=object)
    for d, defense in enumerate(a.defenses):
        other = b.defenses.index(defense)
        labels = a.label[d] != b.label[other, rows_b]
        problems = strings_a[a.answer_problem[d]] != strings_b[b.answer_problem[other, rows_b]]
        for row in np.flatnonzero(labels | problems)[:limit].tolist():
            eps, attack, image, _ = keys_a[row]
            found.append(f"{defense} on ({'clean' if not attack else f'{attack} eps {eps}'}, {image}): "
                         f"{int(a.label[d, row])} {a.strings[int(a.answer_problem[d, row])]!r} vs "
                         f"{int(b.label[other, rows_b[row]])} {b.strings[int(b.answer_problem[other, rows_b[row]])]!r}")
    va, vb = a.versions, b.versions.take(rows_b)
    for column in ("verdict", "clipped_values", "max_violation", "linf"):
        if not np.array_equal(getattr(va, column), getattr(vb, column)):
            found.append(f"referee column {column} differs")
    for column in ("problem", "note"):
        if not np.array_equal(strings_a[getattr(va, column)], strings_b[getattr(vb, column)]):
            found.append(f"referee column {column} differs")
    runs_a = [run.__dict__ | {"seconds": None} for run in a.run_rows()]
    runs_b = [run.__dict__ | {"seconds": None} for run in b.run_rows()]
    if runs_a != runs_b:
        found.append(f"runs differ: {len(runs_a)} vs {len(runs_b)} rows, first difference "
                     f"{next((x, y) for x, y in zip(runs_a + [{}], runs_b + [{}], strict=False) if x != y)}")
    return found


def _table(folder: ResultsFolder) -> PerImageTable | None:
    if folder.missing_tables():
        return None
    try:
        return load_table(folder, folder.read_manifest() or Manifest())
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CompetitionError(f"{folder.root}: unreadable results ({exc})") from None


@dataclass(frozen=True)
class Comparison:
    """What :func:`compare_folders` compared and found.

    Attributes:
        compared: What was compared ("per-image tables", then the score files' names).
        differences: One line per difference ([] when the folders agree on everything compared).
    """

    compared: tuple[str, ...]
    differences: tuple[str, ...]


def compare_folders(first: Path, second: Path, *, limit: int = 10) -> Comparison:
    """Compare two results folders (see the module's docstring).

    Raises:
        CompetitionError: The folders share neither per-image tables nor a score file, or a table is unreadable.
    """
    folders = ResultsFolder(first), ResultsFolder(second)
    shared = [name for name in SCORE_FILES if all(f.file(name).is_file() for f in folders)]
    table_a, table_b = (_table(f) for f in folders)
    both = table_a is not None and table_b is not None
    if not shared and not both:
        raise CompetitionError(f"nothing to compare: {first} and {second} share neither per-image tables nor a "
                               f"score file ({', '.join(SCORE_FILES)})")
    found = []
    for name in shared:
        text = [f.file(name).read_text(encoding="utf-8").splitlines() for f in folders]
        if text[0] != text[1]:
            line = next((i for i, (x, y) in enumerate(zip(*text, strict=False)) if x != y), min(map(len, text)))
            found.append(f"{name} differs from line {line + 1}")
    if table_a is not None and table_b is not None:
        found += compare_tables(table_a, table_b, limit=limit)
    return Comparison(compared=(("per-image tables",) if both else ()) + tuple(shared), differences=tuple(found))
