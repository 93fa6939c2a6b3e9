"""Views of the scores and the per-image table: CSV files (:func:`write_results` writes every one of a results
folder) and terminal tables. Computes nothing new."""

from __future__ import annotations

import csv
import io
from dataclasses import fields
from pathlib import Path
from typing import Iterable

from tabulate import tabulate

from harness.adaptive import worst_case_csv, worst_cases
from harness.names import one_line
from harness.per_image import PerImageTable
from harness.results_folder import (
    ACCURACY_MATRIX,
    ATTACK_IMAGES,
    LEADERBOARD,
    MANIFEST,
    PER_IMAGE,
    PER_IMAGE_PARQUET,
    RUNS,
    TARGETED_HIT_MATRIX,
    TIMINGS,
    WORST_CASE,
    ResultsFolder,
)
from harness.scoring import TRACKS, Matrix, ScoreRow, accuracy_matrix, epsilon_stats, hit_matrix
from harness.store import atomic_write_text
from harness.table_files import (
    PER_IMAGE_CSV_LIMIT,
    write_attack_images,
    write_per_image_csv,
    write_per_image_parquet,
    write_runs,
)
from harness.tracks import Track

__all__ = ["ATTACK_IMAGES", "LEADERBOARD", "LEADERBOARD_COLUMNS", "MANIFEST", "PER_IMAGE", "RUNS", "TIMINGS",
           "WORST_CASE", "leaderboard_csv", "leaderboard_tables", "matrix_csv", "matrix_table", "timings_csv",
           "write_matrix", "write_results"]


def _fmt(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


#: Leaderboard columns: every :class:`ScoreRow` field but ``seconds``. Wall time is never reproducible, so it
#: lives in ``timings.csv`` and the terminal table; the leaderboard stays a pure function of the table.
LEADERBOARD_COLUMNS = tuple(f.name for f in fields(ScoreRow) if f.name != "seconds")


def leaderboard_csv(scores: Iterable[ScoreRow]) -> str:
    """The leaderboard as CSV text (rates with 4 decimals, empty cells for "not applicable")."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(LEADERBOARD_COLUMNS)
    for row in scores:
        values = [getattr(row, name) for name in LEADERBOARD_COLUMNS]
        writer.writerow([_fmt(v) if not isinstance(v, str) else v for v in values])
    return buffer.getvalue()


def timings_csv(scores: Iterable[ScoreRow]) -> str:
    """Wall time inside each submission's processes: ``epsilon,track,name,seconds``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["epsilon", "track", "name", "seconds"])
    for row in scores:
        writer.writerow([row.epsilon, row.track, row.name, f"{row.seconds:.1f}"])
    return buffer.getvalue()


def matrix_csv(matrices: Iterable[Matrix]) -> str:
    """Matrices stacked in one CSV with an ``epsilon`` and a ``defense`` column."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header_written = False
    for matrix in matrices:
        if not header_written:
            writer.writerow(["epsilon", "defense", *matrix.columns])
            header_written = True
        for defense, rates in matrix.rows:
            writer.writerow([matrix.epsilon, defense, *(_fmt(r) for r in rates)])
    return buffer.getvalue()


def write_matrix(path: Path, matrices: list[Matrix]) -> None:
    """Write stacked matrices atomically (an empty file with no header when there are none)."""
    atomic_write_text(path, matrix_csv(matrices))


def leaderboard_tables(scores: list[ScoreRow]) -> str:
    """Human-readable leaderboard: one table per (ε, track)."""
    blocks = []
    for eps in sorted({s.epsilon for s in scores}):
        for track in TRACKS:
            rows = [s for s in scores if s.epsilon == eps and s.track == track]
            if not rows:
                continue
            headers = ["rank", "name", "raw", "normalized", "all-or-nothing"]
            if track is Track.DEFENSE:
                headers.append("clean acc.")
            headers += ["failures", "seconds"]
            body = []
            for s in rows:
                line: list[object] = [s.rank, s.name, s.raw, _fmt(s.normalized), _fmt(s.all_or_nothing)]
                if track is Track.DEFENSE:
                    line.append(_fmt(s.clean_accuracy))
                reasons = one_line(s.failures)  # run problems quote what participants wrote
                reasons = reasons if len(reasons) <= 60 else reasons[:57] + "..."
                line += [reasons, f"{s.seconds:.1f}"]
                body.append(line)
            title = f"{track.replace('_', ' ')}s, epsilon = {eps}"
            blocks.append(f"{title}\n{tabulate(body, headers=headers, tablefmt='github', disable_numparse=True)}")
    return "\n\n".join(blocks)


def matrix_table(matrix: Matrix, title: str) -> str:
    """A matrix as a terminal table."""
    body = [[defense, *(_fmt(r) for r in rates)] for defense, rates in matrix.rows]
    return f"{title}\n{tabulate(body, headers=['defense', *matrix.columns], tablefmt='github', disable_numparse=True)}"


def write_results(output_dir: Path, *, scores: list[ScoreRow], table: PerImageTable,
                  aims: dict[str, str] | None = None, per_image_csv: bool | None = None) -> list[Matrix]:
    """Write the leaderboard, matrices and tables into ``output_dir`` (each file atomically), all views of ``table``.

    Args:
        output_dir: The results folder.
        scores: :func:`harness.scoring.score_table` of ``table``.
        table: The per-image table.
        aims: attack → the defense it is aimed at (:mod:`harness.adaptive`); only labels ``worst_case.csv``.
        per_image_csv: Write ``per_image.csv`` beside ``per_image.parquet``; None: when the table holds at most
            :data:`harness.table_files.PER_IMAGE_CSV_LIMIT` prediction rows (a stale CSV is removed otherwise).

    Returns:
        The accuracy matrices (one per ε).
    """
    epsilons = sorted({s.epsilon for s in scores})
    folder = ResultsFolder(output_dir)
    defenses, attacks = list(table.defenses), list(table.attacks)
    targeted = table.attacks_of(Track.TARGETED_ATTACK)
    write_per_image_parquet(folder.file(PER_IMAGE_PARQUET), table)
    if per_image_csv if per_image_csv is not None else table.predictions <= PER_IMAGE_CSV_LIMIT:
        write_per_image_csv(folder.file(PER_IMAGE), table)
    else:
        folder.file(PER_IMAGE).unlink(missing_ok=True)  # a CSV of an earlier run would no longer be this table
    write_attack_images(folder.file(ATTACK_IMAGES), table)
    write_runs(folder.file(RUNS), table)
    clean = epsilon_stats(table, None)
    accuracy, hits = [], []
    for eps in epsilons:
        stats = epsilon_stats(table, eps)
        accuracy.append(accuracy_matrix(table, epsilon=eps, defenses=defenses, attacks=attacks,
                                        stats=(clean, stats)))
        hits.append(hit_matrix(table, epsilon=eps, defenses=defenses, targeted_attacks=targeted, stats=stats))
    write_matrix(folder.file(ACCURACY_MATRIX), accuracy)
    write_matrix(folder.file(TARGETED_HIT_MATRIX), hits)
    atomic_write_text(folder.file(TIMINGS), timings_csv(scores))
    atomic_write_text(folder.file(LEADERBOARD), leaderboard_csv(scores))
    atomic_write_text(folder.file(WORST_CASE), worst_case_csv([
        case for e in epsilons
        for case in worst_cases(table, epsilon=e, defenses=defenses, attacks=attacks, aims=aims or {})]))
    return accuracy
