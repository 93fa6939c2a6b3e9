"""The report's figures as SVG bytes, byte-identical for identical inputs (matplotlib, object API, no pyplot).

Determinism: a fixed ``svg.hashsalt`` (element ids), no ``Date`` metadata, glyphs drawn as paths. matplotlib is
imported here only, when a report is built.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from harness.html_report import layout
from harness.scoring import ATTACK, DEFENSE, TARGETED_ATTACK, Matrix, ScoreRow

#: matplotlib rcParams of every figure (typed Any: matplotlib's stubs list each key as a Literal).
_RC: Any = {"svg.hashsalt": "adv-competition-harness-report", "svg.fonttype": "path", "font.size": 9,
            "axes.titlesize": 10, "figure.dpi": 72}
_METADATA = {"Date": None, "Creator": "adv-competition-harness report"}
#: Heatmaps up to this many cells (and columns) write each cell's rate in it.
ANNOTATED_CELLS = 800
ANNOTATED_COLUMNS = 40
#: Legend labels longer than this are cut (with "…").
LEGEND_CHARS = 32


def _svg(figure: object) -> bytes:
    import matplotlib

    buffer = io.BytesIO()
    with matplotlib.rc_context(_RC):
        figure.savefig(buffer, format="svg", metadata=_METADATA, bbox_inches="tight")  # type: ignore[attr-defined]
    return buffer.getvalue()


def _figure(width: float, height: float, *, constrained: bool = True) -> object:
    """A figure; without ``constrained`` layout (large heatmaps: its passes over hundreds of tick labels cost
    seconds), ``bbox_inches="tight"`` alone makes room for the labels."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_RC):
        return Figure(figsize=(width, height), layout="constrained" if constrained else None)


def _series(scores: Sequence[ScoreRow], track: str, value: str) -> dict[str, list[tuple[int, float]]]:
    series: dict[str, list[tuple[int, float]]] = {}
    for row in scores:
        rate = getattr(row, value)
        if row.track == track and rate is not None:
            series.setdefault(row.name, []).append((row.epsilon, rate))
    return {name: sorted(series[name]) for name in layout.natural_sorted(series)}


def _label(name: str) -> str:
    return name if len(name) <= LEGEND_CHARS else name[:LEGEND_CHARS - 1] + "…"


def _curves(axes: object, series: dict[str, list[tuple[int, float]]], title: str, ylabel: str,
            highlight: Sequence[str]) -> None:
    """Lines of ``highlight`` in colour with markers (legend order), every other series thin and grey (one legend
    entry for them all)."""
    import matplotlib

    ax = axes
    markers = "osD^v<>phX*"
    others = [name for name in series if name not in highlight]
    with matplotlib.rc_context(_RC):
        for index, name in enumerate(others):
            xs, ys = zip(*series[name], strict=True)
            ax.plot(xs, [100 * y for y in ys], color="0.72", linewidth=0.6, zorder=1,  # type: ignore
                    label=f"{len(others)} others (in the tables)" if index == 0 else "_nolegend_")
        for index, name in enumerate(n for n in highlight if n in series):
            xs, ys = zip(*series[name], strict=True)
            ax.plot(xs, [100 * y for y in ys], marker=markers[index % len(markers)], markersize=4,  # type: ignore
                    linewidth=1.2, label=_label(name), zorder=2)
        ticks = sorted({0, *(x for points in series.values() for x, _ in points)})
        ax.set_xticks(ticks)  # type: ignore[attr-defined]
        ax.set_xlim(-0.05 * max(ticks[-1], 1), 1.05 * max(ticks[-1], 1))  # type: ignore[attr-defined]
        ax.set_title(title)  # type: ignore[attr-defined]
        ax.set_xlabel("ε (0–255)")  # type: ignore[attr-defined]
        ax.set_ylabel(ylabel)  # type: ignore[attr-defined]
        ax.set_ylim(-3, 103)  # type: ignore[attr-defined]
        ax.grid(True, linewidth=0.4, alpha=0.5)  # type: ignore[attr-defined]


def _legend(ax: object, series: dict[str, list[tuple[int, float]]], highlight: Sequence[str]) -> None:
    if not series:
        return
    handles, labels = ax.get_legend_handles_labels()  # type: ignore[attr-defined]
    if len(highlight) < len(series):  # the grey "others" entry last
        handles, labels = handles[1:] + handles[:1], labels[1:] + labels[:1]
    title = f"best {len(highlight)} of {len(series)} by rank" if len(highlight) < len(series) else None
    ax.legend(handles, labels, loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8,  # type: ignore
              frameon=False, title=title, title_fontsize=8)


def _highlight(scores: Sequence[ScoreRow], track: str, series: dict[str, list[tuple[int, float]]], top: int
               ) -> list[str]:
    """Every series (natural order) when at most ``top``, else the ``top`` best by rank (best first)."""
    if len(series) <= top:
        return list(series)
    return layout.top_names(scores, track, top)


def defense_curves(scores: Sequence[ScoreRow], *, top: int = layout.CURVES_TOP) -> bytes:
    """Defense accuracy vs ε: mean over attacks (normalized score, clean accuracy at ε = 0) and all-or-nothing.

    With more than ``top`` defenses, the ``top`` best by rank at the largest ε are drawn in colour and named in the
    legend, the others thin and grey (their numbers are in the report's tables): the figure keeps its size.

    Args:
        scores: Leaderboard rows of every ε.
        top: Defenses drawn in colour (at least 1).

    Returns:
        SVG bytes.
    """
    mean = _series(scores, DEFENSE, "normalized")
    clean = _series(scores, DEFENSE, "clean_accuracy")
    for name, points in mean.items():
        if clean.get(name):
            points.insert(0, (0, clean[name][0][1]))
    worst = _series(scores, DEFENSE, "all_or_nothing")
    highlight = _highlight(scores, DEFENSE, mean, top)
    figure = _figure(9.5, 3.6)
    left, right = figure.subplots(1, 2, sharey=True)  # type: ignore[attr-defined]
    _curves(left, mean, "mean over attacks (ε = 0: clean)", "accuracy (%)", highlight)
    _curves(right, worst, "all-or-nothing (right under every attack)", "", highlight)
    _legend(right, mean, highlight)
    return _svg(figure)


def attack_curves(scores: Sequence[ScoreRow], *, top: int = layout.CURVES_TOP) -> bytes:
    """Attack success vs ε (normalized scores): misclassification rate and targeted hit rate; per track, the
    ``top`` best by rank in colour when there are more (as :func:`defense_curves`).

    Returns:
        SVG bytes.
    """
    tracks = [(t, title) for t, title in ((ATTACK, "attacks: misclassified (%)"),
                                          (TARGETED_ATTACK, "targeted attacks: target hit (%)"))
              if _series(scores, t, "normalized")]
    figure = _figure(4.9 * max(1, len(tracks)) + 1.2, 3.6)
    axes = figure.subplots(1, max(1, len(tracks)), squeeze=False)[0]  # type: ignore[attr-defined]
    for ax, (track, title) in zip(axes, tracks, strict=False):  # one axis even without tracks
        series = _series(scores, track, "normalized")
        highlight = _highlight(scores, track, series, top)
        _curves(ax, series, title, "success rate (%)", highlight)
        _legend(ax, series, highlight)
    return _svg(figure)


def heatmap(matrix: Matrix, *, title: str, colormap: str) -> bytes:
    """A defense × column matrix as a heatmap (rates in %, blank where nothing was scored) whose size grows with
    the matrix: cells annotated with their rate up to :data:`ANNOTATED_CELLS` cells (and
    :data:`ANNOTATED_COLUMNS` columns), smaller and unannotated beyond (the numbers are in the tables and CSVs).

    Args:
        matrix: Rates in [0, 1] or None; rows and columns in the order drawn.
        title: Figure title.
        colormap: matplotlib colormap name (e.g. ``"viridis"``).

    Returns:
        SVG bytes.
    """
    import matplotlib
    import numpy as np

    rows = [name for name, _ in matrix.rows]
    values = np.array([[np.nan if r is None else 100 * r for r in rates] for _, rates in matrix.rows],
                      dtype=float).reshape(len(rows), len(matrix.columns))
    annotate = annotated(matrix)
    cell_width, cell_height, label_size = (0.55, 0.3, 9.0) if annotate else (0.15, 0.15, 6.5)
    width = 2.2 + cell_width * max(1, len(matrix.columns))
    height = 1.4 + cell_height * max(1, len(rows))
    figure = _figure(width, height, constrained=annotate)
    ax = figure.subplots()  # type: ignore[attr-defined]
    with matplotlib.rc_context(_RC):
        image = ax.imshow(np.ma.masked_invalid(values), cmap=colormap, vmin=0, vmax=100, aspect="auto",
                          interpolation="nearest")
        ax.set_xticks(range(len(matrix.columns)), labels=list(matrix.columns), rotation=50, ha="right",
                      rotation_mode="anchor", fontsize=label_size)
        ax.set_yticks(range(len(rows)), labels=rows, fontsize=label_size)
        if annotate:
            for i in range(len(rows)):
                for j in range(len(matrix.columns)):
                    if not np.isnan(values[i, j]):
                        ax.text(j, i, f"{values[i, j]:.0f}", ha="center", va="center", fontsize=7,
                                color="black" if values[i, j] > 55 else "white")
        ax.set_title(title)
        if annotate:
            figure.colorbar(image, ax=ax, shrink=0.8, label="%")  # type: ignore[attr-defined]
        else:
            figure.colorbar(image, ax=ax, shrink=min(0.8, 4.0 / height), fraction=0.02, pad=0.01,  # type: ignore
                            label="%")
    return _svg(figure)


def annotated(matrix: Matrix) -> bool:
    """Whether :func:`heatmap` writes each cell's rate (small matrices) or only colours it."""
    return len(matrix.rows) * len(matrix.columns) <= ANNOTATED_CELLS and len(matrix.columns) <= ANNOTATED_COLUMNS
