"""What the report shows, read from a results folder: tables, manifest and store records → plain values.

Everything here is a view: leaderboards and matrices come from :mod:`harness.scoring` applied to the per-image
table, the rest are selections, groupings and counts of rows already written. No matplotlib, no jinja2.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.errors import ReportError as ReportError  # re-exported: its old home
from harness.manifest import Manifest
from harness.per_image import ABSENT, CLEAN_CODE, NO_PREDICTION, PerImageTable
from harness.results_folder import LEADERBOARD, ResultsFolder
from harness.scoring import (
    ATTACK,
    DEFENSE,
    TARGETED_ATTACK,
    EpsilonStats,
    Matrix,
    ScoreRow,
    accuracy_matrix,
    blocks,
    epsilon_stats,
    hit_matrix,
    score_table,
)
from harness.table import RunRow
from harness.table_files import load_table
from harness.tracks import Track

#: Images shown in the gallery (fewer when the dataset is smaller).
GALLERY_IMAGES = 4
#: Lines and characters of a failed run's log shown in the report (its end: where the error is).
LOG_EXCERPT_LINES = 20
LOG_EXCERPT_CHARS = 3000


@dataclass(frozen=True)
class Results:
    """A finished results folder, as written by ``run`` (or ``score``).

    Attributes:
        root: The results folder.
        manifest: ``manifest.json``.
        table: The per-image table (``per_image.parquet``, or ``per_image.csv`` of an older folder, with
            ``attack_images.csv`` and ``runs.csv``).
        defenses: Defense names (manifest order).
        attacks: (name, track) of every attack, targeted ones included (manifest order).
    """

    root: Path
    manifest: Manifest
    table: PerImageTable
    defenses: list[str]
    attacks: list[tuple[str, Track]]
    _stats: dict[int | None, EpsilonStats] = field(default_factory=dict, compare=False, repr=False)

    def stats(self, epsilon: int | None) -> EpsilonStats:
        """:func:`harness.scoring.epsilon_stats` at ``epsilon`` (None: clean rows), made once."""
        if epsilon not in self._stats:
            self._stats[epsilon] = epsilon_stats(self.table, epsilon)
        return self._stats[epsilon]

    @property
    def epsilons(self) -> list[int]:
        return sorted(self.manifest.epsilons)

    @property
    def targeted(self) -> list[str]:
        return [name for name, track in self.attacks if track == TARGETED_ATTACK]


def load_results(output_dir: Path, *, table: PerImageTable | None = None) -> Results:
    """Read a results folder (its per-image table too, unless ``table`` is given: the one the caller holds).

    Raises:
        ReportError: A table or the manifest is missing or unreadable.
    """
    folder = ResultsFolder(output_dir)
    missing = folder.missing_tables()
    if missing:
        raise ReportError(f"{output_dir}: missing {', '.join(missing)}; run the competition into this folder first "
                          "(python run_competition.py --output_dir ...)")
    try:
        manifest = folder.read_manifest() or Manifest()
        table = load_table(folder, manifest) if table is None else table
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ReportError(f"{output_dir}: unreadable results ({exc}); rerun the competition into this folder") \
            from None
    return Results(root=output_dir, manifest=manifest, table=table, defenses=manifest.defenses,
                   attacks=manifest.attacks)


def leaderboard(results: Results) -> list[ScoreRow]:
    """The leaderboard, recomputed by :func:`harness.scoring.score` exactly as ``run`` and ``score`` do."""
    return score_table(results.table, epsilons=results.epsilons)


def accuracy_matrices(results: Results) -> list[Matrix]:
    """Defense × (clean, attacks) accuracy, one matrix per ε (as ``accuracy_matrix.csv``)."""
    attacks = [name for name, _ in results.attacks]
    return [accuracy_matrix(results.table, epsilon=e, defenses=results.defenses, attacks=attacks,
                            stats=(results.stats(None), results.stats(e))) for e in results.epsilons]


def hit_matrices(results: Results) -> list[Matrix]:
    """Defense × targeted-attack hit rates, one matrix per ε (empty when there is no targeted attack)."""
    if not results.targeted:
        return []
    return [hit_matrix(results.table, epsilon=e, defenses=results.defenses, targeted_attacks=results.targeted,
                       stats=results.stats(e)) for e in results.epsilons]


# -- header ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Header:
    """The run's identity and the warnings a reader must see first."""

    dataset: str
    images: int
    label_file: str
    targets_drawn: bool
    epsilons: list[int]
    seed: object
    harness_version: str
    batch_size: object
    sandbox: str
    protection_summary: str
    protections: list[tuple[str, str]]
    warnings: list[str]


def header(results: Results) -> Header:
    """Header values and warnings (missing protections, failed runs, skipped submissions, failed images)."""
    manifest = results.manifest
    dataset = manifest.dataset
    protections = manifest.protections  # the sandbox's own description (harness.sandboxes.base.Protections.describe)
    warnings: list[str] = []
    sandbox = str(protections.get("sandbox", "unknown"))
    rows: list[tuple[str, str]] = [("sandbox", sandbox)]
    for key, label in (("private_filesystem_and_pids", "private filesystem and PID space"),
                       ("no_network", "no network")):
        value = protections.get(key)
        rows.append((label, "yes" if value else "NO"))
        if not value:
            warnings.append(f"protection missing: {label} (sandbox {sandbox}); submissions could read or reach "
                            "what the harness can")
    controllers = protections.get("cgroup_controllers") or []
    rows.append(("cgroup controllers", ", ".join(map(str, controllers)) or "none (rlimits only)"))
    rows += [("always", str(item)) for item in protections.get("always", [])]
    rows += [("note", str(note)) for note in protections.get("notes", [])]
    table = results.table
    failed = np.flatnonzero(table.runs.problem != 0)
    if len(failed):
        names = sorted({table.strings[int(code)] for code in np.unique(table.runs.name[failed])})
        warnings.append(f"{len(failed)} run(s) failed, of {len(names)} submission(s): {', '.join(names)} "
                        "(see Failures)")
    for skipped in manifest.skipped:
        warnings.append(f"submission skipped: {skipped.path}: {skipped.problem}")
    substituted = int(np.count_nonzero(table.versions.verdict & (table.versions.problem != 0)))
    if substituted:
        warnings.append(f"{substituted} attack output(s) replaced by the clean image (see Failures)")
    unanswered = int(np.count_nonzero(table.label == NO_PREDICTION))
    if unanswered:
        warnings.append(f"{unanswered} defense answer(s) missing (counted as wrong for the defense)")
    return Header(dataset=dataset.root or "?", images=dataset.images, label_file=dataset.label_file,
                  targets_drawn=dataset.targets_drawn, epsilons=results.epsilons, seed=manifest.seed,
                  harness_version=manifest.harness_version or "?", batch_size=manifest.batch_size,
                  sandbox=sandbox, protection_summary="; ".join(f"{k}: {v}" for k, v in rows[:4]),
                  protections=rows, warnings=warnings)


# -- failures ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FailedRun:
    """One run that did not end cleanly, with the end of its log."""

    run: RunRow
    log_href: str | None
    excerpt: str


def _log_path(results: Results, log: str) -> Path | None:
    """The log file inside the results folder, or None (absent, or a path that leaves the folder)."""
    if not log:
        return None
    root = results.root.resolve()
    path = (root / log).resolve()
    if root not in path.parents or not path.is_file():
        return None
    return path


def log_excerpt(path: Path | None) -> str:
    """The last :data:`LOG_EXCERPT_LINES` lines (at most :data:`LOG_EXCERPT_CHARS` characters) of a log."""
    if path is None:
        return ""
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - 4 * LOG_EXCERPT_CHARS))
        text = handle.read().decode("utf-8", errors="replace").replace("\0", "")
    lines = text.splitlines()[-LOG_EXCERPT_LINES:]
    excerpt = "\n".join(lines)
    return excerpt[-LOG_EXCERPT_CHARS:]


def failed_runs(results: Results) -> list[FailedRun]:
    """Every run with a problem, in ``runs.csv`` order; links are relative to ``report/``."""
    failed = []
    for run in results.table.run_rows():
        if not run.problem:
            continue
        path = _log_path(results, run.log)
        failed.append(FailedRun(run=run, log_href=f"../{run.log}" if path is not None else None,
                                excerpt=log_excerpt(path)))
    return failed


@dataclass(frozen=True)
class RefereeLine:
    """Referee results of one attack at one ε: substitutions by reason and clipping counts."""

    epsilon: int
    attack: str
    images: int
    substitutions: list[tuple[str, int]]
    clipped_images: int
    clipped_values: int
    max_violation: int
    max_linf: int


def referee_lines(results: Results) -> list[RefereeLine]:
    """One line per (ε, attack) from the referee's rows (``attack_images.csv``), sorted by ε and attack name."""
    table = results.table
    versions = table.versions
    lines = []
    for eps in sorted({int(e) for e in np.unique(versions.epsilon[versions.verdict])}):
        for attack, rows, _ in blocks(table, eps):
            judged = versions.verdict[rows]
            if not judged.any():
                continue
            problems = versions.problem[rows][judged]
            clipped = versions.clipped_values[rows][judged]
            codes, counts = np.unique(problems[problems != 0], return_counts=True)
            reasons = [(table.strings[int(c)], int(n)) for c, n in zip(codes, counts, strict=True)]
            lines.append(RefereeLine(
                epsilon=eps, attack=table.attacks[attack], images=int(judged.sum()),
                substitutions=sorted(reasons, key=lambda item: (-item[1], item[0])),
                clipped_images=int(np.count_nonzero(clipped)), clipped_values=int(clipped.sum()),
                max_violation=int(versions.max_violation[rows][judged].max(initial=0)),
                max_linf=int(versions.linf[rows][judged].max(initial=0))))
    return sorted(lines, key=lambda line: (line.epsilon, line.attack))


def missing_answers(results: Results) -> list[tuple[str, str, int]]:
    """(defense, problem, count) of predictions that are missing, by defense name, most frequent first."""
    table = results.table
    counts: Counter[tuple[str, str]] = Counter()
    for d, defense in enumerate(table.defenses):
        missing = table.label[d] == NO_PREDICTION
        if not missing.any():
            continue
        codes, found = np.unique(table.answer_problem[d][missing], return_counts=True)
        for code, count in zip(codes.tolist(), found.tolist(), strict=True):
            counts[(defense, table.strings[code] or "no prediction")] += count
    return [(d, p, n) for (d, p), n in sorted(counts.items(), key=lambda item: (item[0][0], -item[1], item[0][1]))]


# -- timings -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Timing:
    """Time inside one submission's processes."""

    kind: str
    name: str
    runs: int
    failed: int
    seconds: float
    slowest: float


def timings(results: Results) -> list[Timing]:
    """Per submission: runs, failed runs, total and slowest run seconds (from ``runs.csv``)."""
    groups: dict[tuple[str, str], list[RunRow]] = defaultdict(list)
    for run in results.table.run_rows():
        groups[(run.kind, run.name)].append(run)
    return [Timing(kind=kind, name=name, runs=len(rows), failed=sum(1 for r in rows if r.problem),
                   seconds=round(sum(r.seconds for r in rows), 1), slowest=round(max(r.seconds for r in rows), 1))
            for (kind, name), rows in sorted(groups.items())]


# -- gallery -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """One defense's answer on one image version."""

    defense: str
    prediction: int | None
    correct: bool
    hit: bool
    problem: str


@dataclass(frozen=True)
class GalleryAttack:
    """One attack's refereed output of a gallery image at one ε."""

    epsilon: int
    attack: str
    attack_type: str
    version: str | None
    linf: int
    clipped_values: int
    problem: str
    verdicts: list[Verdict]


@dataclass(frozen=True)
class GalleryImage:
    """A gallery image: its clean version and what every attack made of it."""

    image_id: str
    true_label: int
    target_class: int
    clean_version: str | None
    clean_verdicts: list[Verdict]
    attacks: list[GalleryAttack] = field(default_factory=list)


def gallery_ids(results: Results) -> list[str]:
    """:data:`GALLERY_IMAGES` image ids drawn with the run's seed (sorted; the same for the same seed)."""
    ids = list(results.table.images.ids)
    rng = random.Random(f"report-gallery:{results.manifest.seed}")
    return sorted(rng.sample(ids, min(GALLERY_IMAGES, len(ids))))


def _stored_versions(results: Results, wanted: set[str]) -> dict[tuple[int, str, str], str]:
    """(ε, attack, image id) → pixel hash of the refereed image, for the ``wanted`` images, from the store's attack
    records (named by the runs' batches)."""
    store = ResultsFolder(results.root).store()
    table = results.table
    versions: dict[tuple[int, str, str], str] = {}
    for i in np.flatnonzero(table.runs.epsilon != CLEAN_CODE).tolist():
        found = store.attack_columns(table.runs.batch[i], check_images=False)  # a lost image shows as missing
        if found is None:
            continue
        head, columns = found
        for image_id, version in zip(columns["image_id"], columns["version"], strict=True):
            if image_id in wanted:
                versions[(head.epsilon, head.attack, image_id)] = version
    return versions


def _verdicts(table: PerImageTable, row: int, defenses: list[str]) -> list[Verdict]:
    image = int(table.versions.image[row])
    truth, target = int(table.images.true_label[image]), int(table.images.target_class[image])
    answers = []
    for defense in defenses:
        if defense not in table.defenses:
            continue
        d = table.defenses.index(defense)
        label = int(table.label[d, row])
        if label == ABSENT:
            continue
        prediction = None if label == NO_PREDICTION else label
        answers.append(Verdict(defense=defense, prediction=prediction, correct=prediction == truth,
                               hit=prediction == target, problem=table.strings[int(table.answer_problem[d, row])]))
    return answers


def gallery(results: Results) -> list[GalleryImage]:
    """Gallery entries for :func:`gallery_ids`; image versions come from the store's attack records
    (``store/attack_runs/<batch>.json``, named by ``runs.csv``) and its clean-version map. A version is None
    when the store no longer holds it (the page then says so)."""
    table = results.table
    wanted = set(gallery_ids(results))
    clean_map = ResultsFolder(results.root).store().clean_versions(results.manifest.dataset.content_hash) or {}
    versions = _stored_versions(results, wanted)
    index = {image_id: i for i, image_id in enumerate(table.images.ids) if image_id in wanted}
    rows = np.flatnonzero(np.isin(table.versions.image, np.array(sorted(index.values()), dtype=np.int32)))
    by_key = {(int(table.versions.epsilon[r]), int(table.versions.attack[r]), int(table.versions.image[r])): int(r)
              for r in rows.tolist()}
    entries = []
    for image_id in sorted(wanted):
        image = index[image_id]
        clean_row = by_key.get((CLEAN_CODE, CLEAN_CODE, image))
        entry = GalleryImage(image_id=image_id, true_label=int(table.images.true_label[image]),
                             target_class=int(table.images.target_class[image]),
                             clean_version=clean_map.get(image_id),
                             clean_verdicts=[] if clean_row is None else _verdicts(table, clean_row, results.defenses))
        for eps in results.epsilons:
            for attack, track in results.attacks:
                if attack not in table.attacks:
                    continue
                row = by_key.get((eps, table.attacks.index(attack), image))
                if row is None or not table.versions.verdict[row]:
                    continue
                entry.attacks.append(GalleryAttack(
                    epsilon=eps, attack=attack, attack_type=track, version=versions.get((eps, attack, image_id)),
                    linf=int(table.versions.linf[row]), clipped_values=int(table.versions.clipped_values[row]),
                    problem=table.strings[int(table.versions.problem[row])],
                    verdicts=_verdicts(table, row, results.defenses)))
        entries.append(entry)
    return entries


def leaderboard_csv_href() -> str:
    """Link from ``report/index.html`` to the leaderboard CSV."""
    return f"../{LEADERBOARD}"


TRACK_TITLES = {DEFENSE: "Defenses", ATTACK: "Attacks", TARGETED_ATTACK: "Targeted attacks"}


def worst_case(results: Results) -> tuple[list[str], list[list[str]]]:
    """Each defense's worst case per ε over every attack, the attacks aimed at it (``targets_defense``) marked:
    :func:`harness.adaptive.worst_case_view` of the per-image table, as ``worst_case.csv``."""
    from harness.adaptive import worst_case_view, worst_cases

    attacks = [name for name, _ in results.attacks]
    aims = results.manifest.aims()
    cases = [case for eps in results.epsilons
             for case in worst_cases(results.table, epsilon=eps, defenses=results.defenses, attacks=attacks,
                                     aims=aims)]
    return worst_case_view(cases)
