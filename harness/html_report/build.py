"""Build ``<results>/report/``: render the pages, draw the figures, copy the gallery images, swap the folder in.

Layout of the report folder::

    index.html        header, warnings, leaderboards, curves, heatmaps, sanity flags, gallery, failures, and
                      one folded section per submission (anchor ``<track>-<name>``, :func:`layout.anchor_id`)
    timings.html      wall time and per-submission seconds (kept apart: they differ between reruns)
    submissions/*.html  one page per submission (``<anchor>.html``): its rate under or against every other
    report.css        the only style sheet (the pages allow no inline style and no script)
    figures/*.svg     matplotlib figures (heatmaps larger than a figure can show cut into parts)
    gallery/*.png     clean image, refereed outputs and their perturbations for a few seeded images

``index.html``, ``report.css``, ``figures/`` and ``gallery/`` are pure functions of the results folder's tables,
manifest (less its clocks) and store: two runs with the same seed and submissions give byte-identical files.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.html_report import content, figures, layout, sanity
from harness.per_image import PerImageTable
from harness.report import LEADERBOARD_COLUMNS, leaderboard_csv
from harness.results_folder import REPORT_DIR, ResultsFolder
from harness.scoring import TRACKS, Matrix, ScoreRow
from harness.store import make_private
from harness.tracks import Track
from submission_kit import contract

#: No script, no network, no inline style: images and the style sheet from the report's own folder only
#: (``file:`` beside ``'self'`` because browsers differ on whether 'self' covers pages opened from disk).
CONTENT_SECURITY_POLICY = ("default-src 'none'; img-src 'self' file:; style-src 'self' file:; base-uri 'none'; "
                           "form-action 'none'")
_TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True)
class Figure:
    """One figure file and its caption; ``wide`` ones are shown at their own size in a scrolling box."""

    href: str
    alt: str
    wide: bool = False


@dataclass(frozen=True)
class _Group:
    """The submissions of one track, for their sections of the page."""

    track: Track
    title: str
    sections: list[layout.Section]


#: Tables of more rows than this (besides the leaderboards) are folded into a ``<details>`` section.
FOLD_ROWS = 30


def _environment() -> Any:
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(_TEMPLATES)), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                              keep_trailing_newline=True)


class _Writer:
    """Files of the report being built in a temporary folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, relative: str, data: bytes) -> str:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return relative


def _gallery_files(writer: _Writer, results: content.Results, entries: list[content.GalleryImage]
                   ) -> dict[str, str]:
    """Write gallery PNGs; return version (or version+"-delta") → href. Unreadable store images are left out."""
    store = ResultsFolder(results.root).store()
    hrefs: dict[str, str] = {}

    def load(version: str | None) -> Any:
        if not version:
            return None
        try:
            data = store.image(version)
            return None if data is None else contract.decode_png(data, what=f"stored image {version}")
        except contract.ImageError:
            return None

    for index, entry in enumerate(entries):
        clean = load(entry.clean_version)
        if clean is None:
            continue
        hrefs[entry.clean_version or ""] = writer.write(f"gallery/i{index}-clean.png", contract.encode_png(clean))
        for number, attack in enumerate(entry.attacks):
            version = attack.version or ""
            if version not in hrefs:
                adversarial = load(version)
                if adversarial is None or adversarial.shape != clean.shape:
                    continue
                hrefs[version] = writer.write(f"gallery/i{index}-a{number}.png", contract.encode_png(adversarial))
            else:
                adversarial = load(version)
            if f"{version}-delta" not in hrefs and adversarial is not None:
                hrefs[f"{version}-delta"] = writer.write(
                    f"gallery/i{index}-a{number}-delta.png",
                    contract.encode_png(contract.visible_perturbation(adversarial, clean)))
    return hrefs


def _heatmaps(writer: _Writer, matrices: list[Matrix], *, stem: str, title: str, alt: str, colormap: str
              ) -> list[Figure]:
    """One figure per matrix (``<stem>_eps<ε>.svg``), or per block when it is larger than a heatmap can show
    (``<stem>_eps<ε>_part<k>.svg``, :func:`layout.matrix_blocks`)."""
    shown = []
    for matrix in matrices:
        if not (matrix.rows and matrix.columns):
            continue
        blocks = layout.matrix_blocks(matrix)
        for number, block in enumerate(blocks, start=1):
            part = f"_part{number}" if len(blocks) > 1 else ""
            label = f" (part {number} of {len(blocks)}: {block.rows[0][0]}–{block.rows[-1][0]} × " \
                    f"{block.columns[0]}–{block.columns[-1]})" if len(blocks) > 1 else ""
            shown.append(Figure(
                writer.write(f"figures/{stem}_eps{matrix.epsilon}{part}.svg",
                             figures.heatmap(block, title=f"{title}, ε = {matrix.epsilon}", colormap=colormap)),
                f"{alt}, ε = {matrix.epsilon}{label}", wide=not figures.annotated(block)))
    return shown


def _boards(results: content.Results, scores: list[ScoreRow]) -> list[dict[str, Any]]:
    """Leaderboard tables per (ε, track): ``leaderboard.csv``'s cells, each row with its submission's anchor."""
    boards = []
    name_column = LEADERBOARD_COLUMNS.index("name")
    for eps in results.epsilons:
        for track in TRACKS:
            rows = [s for s in layout.ranked(scores) if s.epsilon == eps and s.track == track]
            if rows:
                cells = list(csv.reader(io.StringIO(leaderboard_csv(rows))))[1:]  # exactly leaderboard.csv's cells
                boards.append({"epsilon": eps, "track": track, "title": content.TRACK_TITLES[track],
                               "rows": [(row, layout.anchor_id(track, row[name_column])) for row in cells]})
    return boards


def _render(results: content.Results, writer: _Writer) -> None:
    scores = content.leaderboard(results)
    accuracy = [layout.sorted_matrix(m) for m in content.accuracy_matrices(results)]
    hits = [layout.sorted_matrix(m, leading=()) for m in content.hit_matrices(results)]
    figure_list: list[Figure] = []
    if scores:
        figure_list.append(Figure(writer.write("figures/defense_accuracy_vs_epsilon.svg",
                                               figures.defense_curves(scores)),
                                  "defense accuracy vs ε"))
        if any(s.track is not Track.DEFENSE for s in scores):
            figure_list.append(Figure(writer.write("figures/attack_success_vs_epsilon.svg",
                                                   figures.attack_curves(scores)),
                                      "attack success vs ε"))
    heatmaps = _heatmaps(writer, accuracy, stem="accuracy", title="defense accuracy (%)",
                         alt="defense × attack accuracy heatmap", colormap="viridis")
    heatmaps += _heatmaps(writer, hits, stem="targeted_hits", title="targeted hit rate (%)",
                          alt="defense × targeted attack hit-rate heatmap", colormap="magma")
    shown = layout.gallery_attacks(scores, results.attacks)
    gallery = layout.gallery_view(content.gallery(results), shown=shown, attacks=len(results.attacks),
                                  defenses=layout.gallery_defenses(scores, results.defenses),
                                  every_defense=results.defenses)
    images = _gallery_files(writer, results, gallery.entries)

    worst_headers, worst_rows = content.worst_case(results) if results.attacks else ([], [])
    if worst_rows:
        worst_rows = layout.sorted_rows(worst_rows, name_column=worst_headers.index("defense"),
                                        epsilon_column=worst_headers.index("epsilon"))
    environment = _environment()
    n_images = max((s.images for s in scores), default=0)
    roles = sanity.Roles.from_manifest(results.manifest)
    flags = sanity.flags(scores, accuracy, hits, images=n_images or None, roles=roles)
    checks = list(dict.fromkeys(f.check for f in flags))
    flags.sort(key=lambda f: (checks.index(f.check), -1 if f.epsilon is None else f.epsilon,
                              layout.natural_key(f.subject)))
    standings = layout.standings(scores)
    every_section = layout.sections(standings, accuracy, hits)
    groups = [_Group(track=track, title=content.TRACK_TITLES[track],
                     sections=[s for s in every_section if s.standing.track == track]) for track in TRACKS]
    common = {"csp": CONTENT_SECURITY_POLICY, "header": content.header(results), "fold": FOLD_ROWS, "root": ""}
    page = environment.get_template("index.html.j2").render(
        **common, boards=_boards(results, scores), columns=LEADERBOARD_COLUMNS,
        leaderboard_href=content.leaderboard_csv_href(), curves=figure_list, heatmaps=heatmaps, flags=flags,
        unchecked=layout.natural_sorted(roles.unchecked(name for name, _ in results.attacks)),
        gallery=gallery, images=images,
        failed=sorted(content.failed_runs(results), key=lambda f: layout.natural_key(f.run.name)),
        referee=sorted(content.referee_lines(results), key=lambda r: (r.epsilon, layout.natural_key(r.attack))),
        missing=sorted(content.missing_answers(results), key=lambda m: (layout.natural_key(m[0]), -m[2], m[1])),
        skipped=list(results.manifest.skipped), worst_headers=worst_headers, worst_rows=worst_rows,
        groups=[g for g in groups if g.sections])
    writer.write("index.html", page.encode("utf-8"))
    submission_page = environment.get_template("submission.html.j2")
    for group in groups:
        for section in group.sections:
            writer.write(section.href, submission_page.render(**{**common, "root": "../"}, section=section,
                                                              title=group.title).encode("utf-8"))
    manifest = results.manifest
    timing_page = environment.get_template("timings.html.j2").render(
        **common, timings=sorted(content.timings(results), key=lambda t: (t.kind, layout.natural_key(t.name))),
        started=manifest.started or "?", wall_seconds=manifest.wall_seconds,
        submission_seconds=manifest.submission_seconds, executed=dict(manifest.executed_units),
        reused=dict(manifest.reused_units))
    writer.write("timings.html", timing_page.encode("utf-8"))
    writer.write("report.css", (_TEMPLATES / "report.css").read_bytes())


def build_report(output_dir: Path, *, table: PerImageTable | None = None) -> Path:
    """Build (or rebuild) the HTML report of a results folder, running nothing.

    The report is built in a temporary folder next to ``report/`` and swapped in by two renames, so a reader
    sees the old report or the whole new one (between the two renames, briefly none); a failed build leaves the
    old report untouched. Its folders are 700 and its files 600, like the rest of the results folder
    (:func:`harness.store.make_private`). Temporary folders of killed builds are removed, so two builds of one
    folder must not run at the same time.

    Args:
        output_dir: A results folder written by ``run`` (tables, manifest, logs, store).
        table: Its per-image table when the caller holds it already (the run that just wrote the folder); read
            from the folder's files when None.

    Returns:
        Path of ``report/index.html``.

    Raises:
        ReportError: The folder lacks the tables or the manifest of a finished run.
    """
    results = content.load_results(output_dir, table=table)
    for stale in output_dir.glob(f".{REPORT_DIR}.*"):  # left by a killed build
        shutil.rmtree(stale, ignore_errors=True)
    building = Path(tempfile.mkdtemp(dir=output_dir, prefix=f".{REPORT_DIR}.new."))
    try:
        _render(results, _Writer(building))
        make_private(building)  # the results folder's one rule (harness.store)
        final = ResultsFolder(output_dir).report
        old = None
        if final.exists():
            old = Path(tempfile.mkdtemp(dir=output_dir, prefix=f".{REPORT_DIR}.old."))
            os.replace(final, old / REPORT_DIR)
        os.replace(building, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if building.exists():
            shutil.rmtree(building, ignore_errors=True)
    return final / "index.html"
