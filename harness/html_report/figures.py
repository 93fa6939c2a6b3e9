"""The report's figures as SVG bytes, byte-identical for identical inputs (matplotlib, object API, no pyplot).

Determinism: a fixed ``svg.hashsalt`` (element ids), no ``Date`` metadata, glyphs drawn as paths. matplotlib is
imported here only, when a report is built.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from harness.scoring import ATTACK, DEFENSE, TARGETED_ATTACK, Matrix, ScoreRow

#: matplotlib rcParams of every figure (typed Any: matplotlib's stubs list each key as a Literal).
_RC: Any = {"svg.hashsalt": "adv-competition-harness-report", "svg.fonttype": "path", "font.size": 9,
            "axes.titlesize": 10, "figure.dpi": 72}
_METADATA = {"Date": None, "Creator": "adv-competition-harness report"}


def _svg(figure: object) -> bytes:
    import matplotlib

    buffer = io.BytesIO()
    with matplotlib.rc_context(_RC):
        figure.savefig(buffer, format="svg", metadata=_METADATA, bbox_inches="tight")  # type: ignore[attr-defined]
    return buffer.getvalue()


def _figure(width: float, height: float) -> object:
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_RC):
        return Figure(figsize=(width, height), layout="constrained")


def _series(scores: Sequence[ScoreRow], track: str, value: str) -> dict[str, list[tuple[int, float]]]:
    series: dict[str, list[tuple[int, float]]] = {}
    for row in scores:
        rate = getattr(row, value)
        if row.track == track and rate is not None:
            series.setdefault(row.name, []).append((row.epsilon, rate))
    return {name: sorted(points) for name, points in sorted(series.items())}


def _curves(axes: object, series: dict[str, list[tuple[int, float]]], title: str, ylabel: str) -> None:
    import matplotlib

    ax = axes
    markers = "osD^v<>phX*"
    with matplotlib.rc_context(_RC):
        for index, (name, points) in enumerate(series.items()):
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, [100 * y for y in ys], marker=markers[index % len(markers)], markersize=4,  # type: ignore
                    linewidth=1.2, label=name)
        ticks = sorted({0, *(x for points in series.values() for x, _ in points)})
        ax.set_xticks(ticks)  # type: ignore[attr-defined]
        ax.set_xlim(-0.05 * max(ticks[-1], 1), 1.05 * max(ticks[-1], 1))  # type: ignore[attr-defined]
        ax.set_title(title)  # type: ignore[attr-defined]
        ax.set_xlabel("ε (0–255)")  # type: ignore[attr-defined]
        ax.set_ylabel(ylabel)  # type: ignore[attr-defined]
        ax.set_ylim(-3, 103)  # type: ignore[attr-defined]
        ax.grid(True, linewidth=0.4, alpha=0.5)  # type: ignore[attr-defined]


def defense_curves(scores: Sequence[ScoreRow]) -> bytes:
    """Defense accuracy vs ε: mean over attacks (normalized score, clean accuracy at ε = 0) and all-or-nothing.

    Args:
        scores: Leaderboard rows of every ε.

    Returns:
        SVG bytes.
    """
    mean = _series(scores, DEFENSE, "normalized")
    clean = _series(scores, DEFENSE, "clean_accuracy")
    for name, points in mean.items():
        if clean.get(name):
            points.insert(0, (0, clean[name][0][1]))
    worst = _series(scores, DEFENSE, "all_or_nothing")
    figure = _figure(9.5, 3.6)
    left, right = figure.subplots(1, 2, sharey=True)  # type: ignore[attr-defined]
    _curves(left, mean, "mean over attacks (ε = 0: clean)", "accuracy (%)")
    _curves(right, worst, "all-or-nothing (right under every attack)", "")
    if mean:
        right.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False)
    return _svg(figure)


def attack_curves(scores: Sequence[ScoreRow]) -> bytes:
    """Attack success vs ε (normalized scores): misclassification rate and targeted hit rate.

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
        _curves(ax, series, title, "success rate (%)")
        ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False)
    return _svg(figure)


def heatmap(matrix: Matrix, *, title: str, colormap: str) -> bytes:
    """A defense × column matrix as an annotated heatmap (rates in %, blank where nothing was scored).

    Args:
        matrix: Rates in [0, 1] or None.
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
    width = 2.2 + 0.55 * max(1, len(matrix.columns))
    height = 1.4 + 0.3 * max(1, len(rows))
    figure = _figure(width, height)
    ax = figure.subplots()  # type: ignore[attr-defined]
    with matplotlib.rc_context(_RC):
        image = ax.imshow(np.ma.masked_invalid(values), cmap=colormap, vmin=0, vmax=100, aspect="auto")
        ax.set_xticks(range(len(matrix.columns)), labels=list(matrix.columns), rotation=50, ha="right",
                      rotation_mode="anchor")
        ax.set_yticks(range(len(rows)), labels=rows)
        for i in range(len(rows)):
            for j in range(len(matrix.columns)):
                if not np.isnan(values[i, j]):
                    ax.text(j, i, f"{values[i, j]:.0f}", ha="center", va="center", fontsize=7,
                            color="black" if values[i, j] > 55 else "white")
        ax.set_title(title)
        figure.colorbar(image, ax=ax, shrink=0.8, label="%")  # type: ignore[attr-defined]
    return _svg(figure)
