"""What the report shows, read from a results folder: tables, manifest and store records → plain values.

Everything here is a view: leaderboards and matrices come from :mod:`harness.scoring` applied to the per-image
table, the rest are selections, groupings and counts of rows already written. No matplotlib, no jinja2.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import ReportError as ReportError  # re-exported: its old home
from harness.manifest import Manifest
from harness.results_folder import ATTACK_IMAGES, LEADERBOARD, PER_IMAGE, RUNS, ResultsFolder
from harness.scoring import ATTACK, DEFENSE, TARGETED_ATTACK, Matrix, ScoreRow, accuracy_matrix, hit_matrix, score
from harness.table import AttackImageRow, PredictionRow, RunRow, read_csv
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
        predictions: ``per_image.csv`` rows.
        attack_images: ``attack_images.csv`` rows.
        runs: ``runs.csv`` rows.
        defenses: Defense names (manifest order).
        attacks: (name, track) of every attack, targeted ones included (manifest order).
    """

    root: Path
    manifest: Manifest
    predictions: list[PredictionRow]
    attack_images: list[AttackImageRow]
    runs: list[RunRow]
    defenses: list[str]
    attacks: list[tuple[str, Track]]

    @property
    def epsilons(self) -> list[int]:
        return sorted(self.manifest.epsilons)

    @property
    def targeted(self) -> list[str]:
        return [name for name, track in self.attacks if track == TARGETED_ATTACK]


def load_results(output_dir: Path) -> Results:
    """Read a results folder.

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
        predictions = read_csv(folder.file(PER_IMAGE), PredictionRow)
        attack_images = read_csv(folder.file(ATTACK_IMAGES), AttackImageRow)
        runs = read_csv(folder.file(RUNS), RunRow)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ReportError(f"{output_dir}: unreadable results ({exc}); rerun the competition into this folder") \
            from None
    return Results(root=output_dir, manifest=manifest, predictions=predictions, attack_images=attack_images,
                   runs=runs, defenses=manifest.defenses, attacks=manifest.attacks)


def leaderboard(results: Results) -> list[ScoreRow]:
    """The leaderboard, recomputed by :func:`harness.scoring.score` exactly as ``run`` and ``score`` do."""
    return score(results.predictions, results.attack_images, results.runs, epsilons=results.epsilons,
                 defenses=results.defenses, attacks=results.attacks)


def accuracy_matrices(results: Results) -> list[Matrix]:
    """Defense × (clean, attacks) accuracy, one matrix per ε (as ``accuracy_matrix.csv``)."""
    attacks = [name for name, _ in results.attacks]
    return [accuracy_matrix(results.predictions, epsilon=e, defenses=results.defenses, attacks=attacks)
            for e in results.epsilons]


def hit_matrices(results: Results) -> list[Matrix]:
    """Defense × targeted-attack hit rates, one matrix per ε (empty when there is no targeted attack)."""
    if not results.targeted:
        return []
    return [hit_matrix(results.predictions, epsilon=e, defenses=results.defenses,
                       targeted_attacks=results.targeted) for e in results.epsilons]


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
    failed_runs = [r for r in results.runs if r.problem]
    if failed_runs:
        names = sorted({r.name for r in failed_runs})
        warnings.append(f"{len(failed_runs)} run(s) failed, of {len(names)} submission(s): {', '.join(names)} "
                        "(see Failures)")
    for skipped in manifest.skipped:
        warnings.append(f"submission skipped: {skipped.path}: {skipped.problem}")
    substituted = sum(1 for r in results.attack_images if r.problem)
    if substituted:
        warnings.append(f"{substituted} attack output(s) replaced by the clean image (see Failures)")
    unanswered = sum(1 for r in results.predictions if r.prediction is None)
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
    for run in results.runs:
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
    """One line per (ε, attack) from ``attack_images.csv``."""
    groups: dict[tuple[int, str], list[AttackImageRow]] = defaultdict(list)
    for row in results.attack_images:
        groups[(row.epsilon, row.attack)].append(row)
    lines = []
    for (eps, attack), rows in sorted(groups.items()):
        reasons = Counter(r.problem for r in rows if r.problem)
        lines.append(RefereeLine(
            epsilon=eps, attack=attack, images=len(rows),
            substitutions=sorted(reasons.items(), key=lambda item: (-item[1], item[0])),
            clipped_images=sum(1 for r in rows if r.clipped_values), clipped_values=sum(r.clipped_values for r in rows),
            max_violation=max((r.max_violation for r in rows), default=0),
            max_linf=max((r.linf for r in rows), default=0)))
    return lines


def missing_answers(results: Results) -> list[tuple[str, str, int]]:
    """(defense, problem, count) of predictions that are missing, most frequent first."""
    counts = Counter((r.defense, r.problem or "no prediction") for r in results.predictions if r.prediction is None)
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
    for run in results.runs:
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
    ids = sorted({r.image_id for r in results.predictions} | {r.image_id for r in results.attack_images})
    rng = random.Random(f"report-gallery:{results.manifest.seed}")
    return sorted(rng.sample(ids, min(GALLERY_IMAGES, len(ids))))


def gallery(results: Results) -> list[GalleryImage]:
    """Gallery entries for :func:`gallery_ids`; image versions come from the store's attack records
    (``store/attack_runs/<batch>.json``, named by ``runs.csv``) and its clean-version map. A version is None
    when the store no longer holds it (the page then says so)."""
    wanted = set(gallery_ids(results))
    store = ResultsFolder(results.root).store()
    dataset_hash = results.manifest.dataset.content_hash
    clean_map = store.clean_versions(dataset_hash) or {}
    versions: dict[tuple[int, str, str], str] = {}
    for run in results.runs:
        if run.kind == DEFENSE or run.epsilon is None:
            continue
        record = store.attack_record(run.batch)
        for image in record.images if record is not None else ():
            if image.image_id in wanted:
                versions[(run.epsilon, run.name, image.image_id)] = image.version

    def verdict(row: PredictionRow) -> Verdict:
        return Verdict(defense=row.defense, prediction=row.prediction,
                       correct=row.prediction is not None and row.prediction == row.true_label,
                       hit=row.prediction is not None and row.prediction == row.target_class, problem=row.problem)

    by_version: dict[tuple[int | None, str, str], dict[str, Verdict]] = defaultdict(dict)
    labels: dict[str, tuple[int, int]] = {}
    for row in results.predictions:
        if row.image_id in wanted:
            by_version[(row.epsilon, row.attack, row.image_id)][row.defense] = verdict(row)
            labels[row.image_id] = (row.true_label, row.target_class)
    referee = {(r.epsilon, r.attack, r.image_id): r for r in results.attack_images if r.image_id in wanted}
    entries = []
    for image_id in sorted(wanted):
        true_label, target = labels.get(image_id, (-1, -1))
        clean = by_version.get((None, "", image_id), {})
        entry = GalleryImage(image_id=image_id, true_label=true_label, target_class=target,
                             clean_version=clean_map.get(image_id),
                             clean_verdicts=[clean[d] for d in results.defenses if d in clean])
        for eps in results.epsilons:
            for attack, track in results.attacks:
                verdict_row = referee.get((eps, attack, image_id))
                if verdict_row is None:
                    continue
                answers = by_version.get((eps, attack, image_id), {})
                entry.attacks.append(GalleryAttack(
                    epsilon=eps, attack=attack, attack_type=track, version=versions.get((eps, attack, image_id)),
                    linf=verdict_row.linf, clipped_values=verdict_row.clipped_values, problem=verdict_row.problem,
                    verdicts=[answers[d] for d in results.defenses if d in answers]))
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
             for case in worst_cases(results.predictions, epsilon=eps, defenses=results.defenses, attacks=attacks,
                                     aims=aims)]
    return worst_case_view(cases)
