"""How the report orders and cuts what it shows, so that it stays readable from 3 to 150 × 100 submissions.

Pure functions over the views of :mod:`harness.html_report.content` (:class:`~harness.scoring.ScoreRow` lists,
:class:`~harness.scoring.Matrix`, worst-case rows, gallery entries): they never read a results folder, so they
hold whatever table backs those views. Every ordering by submission name in the report goes through
:func:`natural_key` (``d1, d2, d10``, not ``d1, d10, d2``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from harness.html_report.content import GalleryImage, Verdict
from harness.scoring import DEFENSE, TRACKS, Matrix, ScoreRow
from harness.tracks import Track

#: Lines drawn in colour (and named in the legend) per track in the curves; the others are drawn thin and grey.
CURVES_TOP = 8
#: Attacks per track shown in the gallery when a track has more (its best by rank at the largest ε).
GALLERY_TOP = 8
#: Defenses given a column in the gallery when there are more (their best by rank); the rest are tallied.
GALLERY_DEFENSES = 12
#: Largest defense × column block drawn as one heatmap; larger matrices are cut into blocks of at most this size.
HEATMAP_MAX_ROWS = 120
HEATMAP_MAX_COLUMNS = 160

_DIGITS = re.compile(r"(\d+)")
_ID_SAFE = re.compile(r"[A-Za-z0-9_\-]")
T = TypeVar("T")


def natural_key(name: str) -> tuple[tuple[str | int, ...], str]:
    """Sort key that orders digit runs by value and letters without case: ``d1 < d2 < D3 < d10``.

    Texts and numbers alternate at fixed positions (``re.split`` on digit runs), so two keys always compare; the
    name itself breaks ties (``d01`` vs ``d1``, ``A`` vs ``a``), making the order total and deterministic.
    """
    parts = _DIGITS.split(name)
    return tuple(int(part) if index % 2 else part.casefold() for index, part in enumerate(parts)), name


def natural_sorted(names: Iterable[str]) -> list[str]:
    """Names in :func:`natural_key` order."""
    return sorted(names, key=natural_key)


def anchor_id(track: str, name: str) -> str:
    """The HTML ``id`` of a submission's section: ``<track>-<name>``, unique per (track, name), and made only of
    ``[A-Za-z0-9_.-]`` whatever the name holds (every other character, and ``.`` itself, written as ``.hh`` per
    UTF-8 byte), so it is a valid id and URL fragment for any name the naming rules allow now or later."""
    def safe(character: str) -> str:
        if _ID_SAFE.fullmatch(character):
            return character
        return "".join(f".{byte:02x}" for byte in character.encode("utf-8"))

    return f"{Track(track).value}-{''.join(safe(c) for c in name)}"


# -- leaderboards ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Standing:
    """One submission's rows of the leaderboard (every ε), for its section of the page."""

    track: Track
    name: str
    anchor: str
    rows: list[ScoreRow]


def standings(scores: Sequence[ScoreRow]) -> list[Standing]:
    """Per (track, submission) its leaderboard rows by ε: tracks in leaderboard order, names in natural order."""
    grouped: dict[tuple[Track, str], list[ScoreRow]] = {}
    for row in scores:
        grouped.setdefault((Track(row.track), row.name), []).append(row)
    order = list(TRACKS)
    return [Standing(track=track, name=name, anchor=anchor_id(track, name), rows=sorted(rows, key=lambda r: r.epsilon))
            for (track, name), rows in sorted(grouped.items(),
                                              key=lambda item: (order.index(item[0][0]), natural_key(item[0][1])))]


def ranked(scores: Sequence[ScoreRow]) -> list[ScoreRow]:
    """Leaderboard rows by ε, track and rank; submissions of equal rank (never, but cheap to say) by natural name."""
    order = list(TRACKS)
    return sorted(scores, key=lambda r: (r.epsilon, order.index(Track(r.track)), r.rank, natural_key(r.name)))


def top_names(scores: Sequence[ScoreRow], track: str, count: int) -> list[str]:
    """The ``count`` best submissions of a track by rank at the largest ε they were scored at, best first."""
    rows = [row for row in scores if row.track == track]
    if not rows:
        return []
    largest = max(row.epsilon for row in rows)
    best = sorted((row for row in rows if row.epsilon == largest), key=lambda r: (r.rank, natural_key(r.name)))
    return [row.name for row in best[:count]]


# -- matrices --------------------------------------------------------------------------------------------------
def sorted_matrix(matrix: Matrix, *, leading: Sequence[str] = ("clean",)) -> Matrix:
    """The matrix with rows and columns in natural order (columns named in ``leading`` first, as given)."""
    first = [c for c in leading if c in matrix.columns]
    columns = first + natural_sorted(c for c in matrix.columns if c not in first)
    where = [matrix.columns.index(c) for c in columns]
    rows = tuple((name, tuple(rates[i] for i in where))
                 for name, rates in sorted(matrix.rows, key=lambda row: natural_key(row[0])))
    return replace(matrix, columns=tuple(columns), rows=rows)


def _chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    """``items`` cut into ``ceil(len / size)`` nearly equal consecutive parts of at most ``size`` (one when empty)."""
    parts = max(1, -(-len(items) // size))
    step = -(-len(items) // parts) if items else 1
    return [items[i:i + step] for i in range(0, len(items), step)] or [items]


def matrix_blocks(matrix: Matrix, *, max_rows: int = HEATMAP_MAX_ROWS, max_columns: int = HEATMAP_MAX_COLUMNS
                  ) -> list[Matrix]:
    """The matrix cut into consecutive blocks of at most ``max_rows`` × ``max_columns`` (row blocks outer), each a
    :class:`Matrix` of the same ε; the matrix itself when it fits. Raises ValueError for sizes below 1."""
    if max_rows < 1 or max_columns < 1:
        raise ValueError(f"block sizes must be at least 1, got {max_rows} × {max_columns}")
    indices = list(range(len(matrix.columns)))
    blocks = []
    for rows in _chunks(matrix.rows, max_rows):
        for columns in _chunks(indices, max_columns):
            blocks.append(replace(matrix, columns=tuple(matrix.columns[i] for i in columns),
                                  rows=tuple((name, tuple(rates[i] for i in columns)) for name, rates in rows)))
    return blocks


def matrix_cells(matrices: Sequence[Matrix]) -> dict[str, dict[str, dict[int, float | None]]]:
    """Rates as defense → column → ε → rate (for the per-submission sections)."""
    cells: dict[str, dict[str, dict[int, float | None]]] = {}
    for matrix in matrices:
        for defense, rates in matrix.rows:
            by_column = cells.setdefault(defense, {})
            for column, rate in zip(matrix.columns, rates, strict=True):
                by_column.setdefault(column, {})[matrix.epsilon] = rate
    return cells


def sorted_rows(rows: Iterable[Sequence[str]], *, name_column: int, epsilon_column: int | None = None
                ) -> list[list[str]]:
    """Table rows (cells as text) by ε (numeric, when a column holds it) and natural name."""
    def key(row: Sequence[str]) -> tuple[int, tuple[tuple[str | int, ...], str]]:
        epsilon = int(row[epsilon_column]) if epsilon_column is not None and row[epsilon_column].isdigit() else -1
        return epsilon, natural_key(row[name_column])

    return [list(row) for row in sorted(rows, key=key)]


# -- gallery ---------------------------------------------------------------------------------------------------
def gallery_attacks(scores: Sequence[ScoreRow], attacks: Iterable[tuple[str, Track]], *, top: int = GALLERY_TOP
                    ) -> set[str]:
    """Attacks shown in the gallery: every attack of a track with at most ``top``, else its ``top`` best by rank
    at the largest ε (:func:`top_names`)."""
    by_track: dict[str, list[str]] = {}
    for name, kind in attacks:
        by_track.setdefault(Track(kind).value, []).append(name)
    shown: set[str] = set()
    for track, names in by_track.items():
        shown |= set(names) if len(names) <= top else set(top_names(scores, track, top))
    return shown


def gallery_defenses(scores: Sequence[ScoreRow], defenses: Sequence[str], *, top: int = GALLERY_DEFENSES
                     ) -> list[str]:
    """Defenses given a column in the gallery: all (natural order) when at most ``top``, else the ``top`` best by
    rank at the largest ε (best first); the others are counted in a tally column."""
    if len(defenses) <= top:
        return natural_sorted(defenses)
    return top_names(scores, DEFENSE, top)


def tally(verdicts: Sequence[Verdict]) -> str:
    """Counts of a row's verdicts in words: ``"12 right · 80 wrong · 3 hit · 5 no answer"`` (zeros left out)."""
    counts = {"right": sum(v.correct for v in verdicts),
              "wrong": sum(v.prediction is not None and not v.correct and not v.hit for v in verdicts),
              "hit": sum(v.hit and not v.correct for v in verdicts),
              "no answer": sum(v.prediction is None for v in verdicts)}
    return " · ".join(f"{count} {what}" for what, count in counts.items() if count)


@dataclass(frozen=True)
class GalleryView:
    """The gallery as shown: entries with only the shown attacks and defense columns, and per row (keyed by image
    id, ε or None for the clean row, attack or "") the tally over every defense when columns were left out."""

    entries: list[GalleryImage]
    defenses: list[str]
    tallies: dict[tuple[str, int | None, str], str]
    attacks_shown: int
    attacks: int
    defenses_total: int


def gallery_view(entries: Sequence[GalleryImage], *, shown: set[str], attacks: int, defenses: Sequence[str],
                 every_defense: Sequence[str]) -> GalleryView:
    """Gallery entries with only the ``shown`` attacks (by ε, track and natural name) and one verdict per column
    of ``defenses`` (a defense without an answer gets a verdict with no prediction, so columns align); tallies over
    ``every_defense`` when ``defenses`` leaves some out."""
    order = list(TRACKS)
    cut = len(defenses) < len(every_defense)

    def aligned(verdicts: Sequence[Verdict]) -> list[Verdict]:
        by_defense = {v.defense: v for v in verdicts}
        return [by_defense.get(d) or Verdict(defense=d, prediction=None, correct=False, hit=False,
                                             problem="no answer recorded") for d in defenses]

    view: list[GalleryImage] = []
    tallies: dict[tuple[str, int | None, str], str] = {}
    for entry in entries:
        chosen = sorted((a for a in entry.attacks if a.attack in shown),
                        key=lambda a: (a.epsilon, order.index(Track(a.attack_type)), natural_key(a.attack)))
        if cut:
            tallies[(entry.image_id, None, "")] = tally(entry.clean_verdicts)
            for item in chosen:
                tallies[(entry.image_id, item.epsilon, item.attack)] = tally(item.verdicts)
        view.append(replace(entry, clean_verdicts=aligned(entry.clean_verdicts),
                            attacks=[replace(a, verdicts=aligned(a.verdicts)) for a in chosen]))
    return GalleryView(entries=view, defenses=list(defenses), tallies=tallies, attacks_shown=len(shown),
                       attacks=attacks, defenses_total=len(every_defense))


# -- per-submission sections -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Section:
    """A submission's section of the page: its leaderboard rows and its line or column of the matrices."""

    standing: Standing
    headers: list[str]
    rows: list[list[str]]

    @property
    def href(self) -> str:
        """Its page, relative to ``report/`` (the anchor is a safe file name: no ``/``, no leading dot)."""
        return f"submissions/{self.standing.anchor}.html"


def _percent(rate: float | None) -> str:
    return "" if rate is None else f"{100 * rate:.1f}"


def sections(standings_: Sequence[Standing], accuracy: Sequence[Matrix], hits: Sequence[Matrix]) -> list[Section]:
    """Per submission: a defense's accuracy (%) under every attack and its targeted hit rates, or an attack's
    accuracy (%) of every defense under it (and hit rates when targeted), one column per ε; rows in natural order
    ("clean" first)."""
    epsilons = sorted({m.epsilon for m in accuracy} | {m.epsilon for m in hits})
    accuracy_cells, hit_cells = matrix_cells(accuracy), matrix_cells(hits)
    columns = ["clean", *natural_sorted({c for m in accuracy for c in m.columns} - {"clean"})]
    defenses = natural_sorted({d for m in accuracy for d, _ in m.rows} | {d for m in hits for d, _ in m.rows})
    targeted = {c for m in hits for c in m.columns}
    result = []
    for standing in standings_:
        if standing.track is Track.DEFENSE:
            own, own_hits = accuracy_cells.get(standing.name, {}), hit_cells.get(standing.name, {})
            headers = ["attack", *(f"accuracy ε={e}" for e in epsilons)]
            if targeted:
                headers += [f"target hit ε={e}" for e in epsilons]
            rows = [[column, *(_percent(own.get(column, {}).get(e)) for e in epsilons),
                     *((_percent(own_hits.get(column, {}).get(e)) for e in epsilons) if targeted else ())]
                    for column in columns if column in own]
        else:
            is_targeted = standing.name in targeted
            headers = ["defense", *(f"accuracy ε={e}" for e in epsilons),
                       *((f"target hit ε={e}" for e in epsilons) if is_targeted else ())]
            rows = [[defense,
                     *(_percent(accuracy_cells.get(defense, {}).get(standing.name, {}).get(e)) for e in epsilons),
                     *((_percent(hit_cells.get(defense, {}).get(standing.name, {}).get(e)) for e in epsilons)
                       if is_targeted else ())]
                    for defense in defenses if standing.name in accuracy_cells.get(defense, {})]
        result.append(Section(standing=standing, headers=headers, rows=rows))
    return result
