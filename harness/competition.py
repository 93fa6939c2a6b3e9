"""One competition end to end: dataset + submissions → runs → per-image table → scores → result files."""

from __future__ import annotations

import json
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness import __version__
from harness.contract import parse_epsilon
from harness.dataset import Dataset, load_dataset
from harness.report import (ATTACK_IMAGES, LEADERBOARD, MANIFEST, PER_IMAGE, RUNS, TIMINGS, leaderboard_csv,
                            timings_csv, write_matrix)
from harness.isolation import SandboxKind, probe
from harness.parallelism import default_jobs
from harness.runner import DevicePool, LimitPolicy, Outcome, Runner, Workspace, build_tables, visible_gpus
from harness.scoring import Matrix, ScoreRow, accuracy_matrix, hit_matrix, score
from harness.store import atomic_write_json, atomic_write_text
from harness.submission import Discovery, Submission, SubmissionType, discover, suggest
from harness.table import AttackImageRow, PredictionRow, RunRow, read_csv, write_csv


class CompetitionError(ValueError):
    """A problem with the harness's own inputs (not a submission's fault); the message says what to fix."""


@dataclass(frozen=True)
class CompetitionConfig:
    """Everything a competition run depends on.

    Attributes:
        input_dir: Images and labels.
        attacks_dirs: Folders of attack and targeted-attack submissions.
        defenses_dirs: Folders of defense submissions.
        output_dir: Results folder.
        epsilons: ε values in 0–255 units (one leaderboard each).
        batch_size: Images per attack batch and per defense batch.
        jobs: Units run in parallel; None = one per usable core (:func:`harness.parallelism.default_jobs`).
        seed: Seeds target draws, batch shuffling and opaque names.
        force: Discard stored work and recompute everything.
        policy: Per-run resource limits.
        sandbox: How submission processes are isolated.
        only: If set, run only these submissions (names).
        num_classes: Classes for drawn targets (default: largest label + 1).
    """

    input_dir: Path
    attacks_dirs: tuple[Path, ...]
    defenses_dirs: tuple[Path, ...]
    output_dir: Path
    epsilons: tuple[int, ...] = (16,)
    batch_size: int = 100
    jobs: int | None = None
    seed: int = 0
    force: bool = False
    policy: LimitPolicy = field(default_factory=LimitPolicy)
    sandbox: SandboxKind = SandboxKind.AUTO
    only: tuple[str, ...] = ()
    num_classes: int | None = None


@dataclass
class CompetitionResult:
    """What a run produced (also written to ``output_dir``)."""

    scores: list[ScoreRow]
    predictions: list[PredictionRow]
    attack_images: list[AttackImageRow]
    runs: list[RunRow]
    discovery: Discovery
    outcome: Outcome
    dataset: Dataset
    manifest: dict[str, Any]
    matrices: list[Matrix]


def _check_output_dir(output_dir: Path, dataset: Dataset, force: bool) -> None:
    manifest_path = output_dir / MANIFEST
    if not manifest_path.exists():
        return
    try:
        previous = json.loads(manifest_path.read_text())
        previous_hash = previous["dataset"]["content_hash"]
    except (OSError, ValueError, KeyError, TypeError):
        raise CompetitionError(f"{manifest_path}: unreadable manifest; pick an empty --output_dir or pass "
                               "--force to start this one afresh") from None
    if previous_hash != dataset.content_hash and not force:
        raise CompetitionError(
            f"{output_dir} holds results for another dataset ({previous['dataset'].get('root')}); pick another "
            "--output_dir, or pass --force to discard them")


def _select(discovery: Discovery, only: tuple[str, ...]) -> list[Submission]:
    names = [s.name for s in discovery.submissions]
    for name in only:
        if name not in names:
            raise CompetitionError(f"--only {name}: no such submission{suggest(name, names)}; "
                                   f"known: {', '.join(names) or 'none'}")
    return [s for s in discovery.submissions if not only or s.name in only]


def run_competition(config: CompetitionConfig, *, echo: Callable[[str], None] = print,
                    progress: Callable[[str, int], Callable[..., None]] | None = None) -> CompetitionResult:
    """Run every attack against every defense and write the results folder.

    Args:
        config: What to run.
        echo: Receives one-line messages (skipped submissions, warnings).
        progress: Progress factory (:func:`harness.progress.reporter`), see :class:`harness.runner.Runner`.

    Returns:
        The :class:`CompetitionResult`.

    Raises:
        CompetitionError: Bad harness input (folders, ε, output folder of another dataset).
        harness.dataset.DatasetError: Bad dataset.
        harness.submission.SubmissionError: Missing submission folder or duplicate names.
    """
    started = time.time()
    epsilons = sorted({parse_epsilon(e) for e in config.epsilons})
    if not epsilons:
        raise CompetitionError("no epsilon given; pass --max_epsilon with one or more integers in 0..255")
    jobs = default_jobs() if config.jobs is None else config.jobs
    if config.batch_size < 1 or jobs < 1:
        raise CompetitionError("--batch_size and --jobs must be at least 1")
    dataset = load_dataset(config.input_dir, seed=config.seed, num_classes=config.num_classes)
    expected = {d: {SubmissionType.ATTACK, SubmissionType.TARGETED_ATTACK} for d in config.attacks_dirs}
    for d in config.defenses_dirs:
        expected[d] = {SubmissionType.DEFENSE}
    discovery = discover([*config.attacks_dirs, *config.defenses_dirs], expected=expected)
    for problem in discovery.problems:
        echo(f"skipped {problem.path}: {problem.message}")
    for submission in discovery.submissions:
        for warning in submission.warnings:
            echo(f"warning: {warning}")
    selected = _select(discovery, config.only)
    attacks = [s for s in selected if s.type.is_attack]
    defenses = [s for s in selected if s.type is SubmissionType.DEFENSE]

    output_dir = config.output_dir
    _check_output_dir(output_dir, dataset, config.force)
    workspace = Workspace(output_dir)
    if config.force:
        for folder in ("store", "logs"):
            shutil.rmtree(output_dir / folder, ignore_errors=True)
    shutil.rmtree(workspace.scratch, ignore_errors=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    for stale in output_dir.rglob(".*.tmp"):  # half-written files of a harness that was killed
        stale.unlink(missing_ok=True)

    try:
        protections = probe(config.sandbox)
    except RuntimeError as exc:
        raise CompetitionError(str(exc)) from None
    for note in protections.notes:
        echo(f"sandbox: {note}")
    gpus = visible_gpus()
    runner = Runner(dataset, workspace, seed=config.seed, batch_size=config.batch_size, jobs=jobs,
                    policy=config.policy, devices=DevicePool(gpus, jobs), protections=protections,
                    progress=progress)
    outcome = runner.execute(attacks, defenses, epsilons)
    predictions, attack_rows, runs = build_tables(dataset, outcome, defenses)
    scores = score(predictions, attack_rows, runs, epsilons=epsilons, defenses=[d.name for d in defenses],
                   attacks=[(a.name, a.type.value) for a in attacks])
    manifest = {
        "harness_version": __version__,
        "harness_content_hash": runner.harness_hash,
        "seed": config.seed,
        "epsilons": epsilons,
        "batch_size": config.batch_size,
        "jobs": jobs,
        "limits": asdict(config.policy),
        "protections": protections.describe(),
        "dataset": {"root": str(dataset.root), "content_hash": dataset.content_hash, "images": len(dataset),
                    "label_file": dataset.label_file, "targets_drawn": dataset.targets_drawn,
                    "num_classes": dataset.num_classes},
        "submissions": [{"name": s.name, "type": s.type.value, "entry_point": s.entry_point,
                         "content_hash": s.content_hash, "container": s.container,
                         "container_gpu": s.container_gpu, "path": str(s.path)} for s in selected],
        "skipped": [{"path": str(p.path), "problem": p.message} for p in discovery.problems],
        "executed_units": outcome.executed,
        "reused_units": outcome.reused,
        "gpus": gpus,
        "platform": {"python": sys.version.split()[0], "system": platform.platform()},
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "wall_seconds": 0.0,
        "submission_seconds": round(sum(r.seconds for r in runs
                                        if _ran_now(r, outcome)), 3),
    }
    matrices = write_results(output_dir, scores=scores, predictions=predictions, attack_images=attack_rows,
                             runs=runs, defenses=[d.name for d in defenses], attacks=[a.name for a in attacks],
                             targeted=[a.name for a in attacks if a.type is SubmissionType.TARGETED_ATTACK])
    shutil.rmtree(workspace.scratch, ignore_errors=True)
    manifest["wall_seconds"] = round(time.time() - started, 3)
    atomic_write_json(output_dir / MANIFEST, manifest)
    return CompetitionResult(scores=scores, predictions=predictions, attack_images=attack_rows, runs=runs,
                             discovery=discovery, outcome=outcome, dataset=dataset, manifest=manifest,
                             matrices=matrices)


def _ran_now(run: RunRow, outcome: Outcome) -> bool:
    return run.batch in outcome.fresh_keys


def write_results(output_dir: Path, *, scores: list[ScoreRow], predictions: list[PredictionRow],
                  attack_images: list[AttackImageRow], runs: list[RunRow], defenses: list[str],
                  attacks: list[str], targeted: list[str]) -> list[Matrix]:
    """Write the leaderboard, matrices and tables into ``output_dir`` (each file atomically).

    Returns:
        The accuracy matrices (one per ε).
    """
    epsilons = sorted({s.epsilon for s in scores})
    write_csv(output_dir / PER_IMAGE, predictions, PredictionRow)
    write_csv(output_dir / ATTACK_IMAGES, attack_images, AttackImageRow)
    write_csv(output_dir / RUNS, runs, RunRow)
    accuracy = [accuracy_matrix(predictions, epsilon=e, defenses=defenses, attacks=attacks) for e in epsilons]
    write_matrix(output_dir / "accuracy_matrix.csv", accuracy)
    write_matrix(output_dir / "targeted_hit_matrix.csv", [
        hit_matrix(predictions, epsilon=e, defenses=defenses, targeted_attacks=targeted) for e in epsilons])
    atomic_write_text(output_dir / TIMINGS, timings_csv(scores))
    atomic_write_text(output_dir / LEADERBOARD, leaderboard_csv(scores))
    return accuracy


def rescore(output_dir: Path) -> list[ScoreRow]:
    """Recompute and rewrite the leaderboard and matrices from a results folder's tables, running nothing.

    Raises:
        CompetitionError: The folder lacks the tables of a finished run.
    """
    paths = {name: output_dir / name for name in (PER_IMAGE, ATTACK_IMAGES, RUNS, MANIFEST)}
    missing = [name for name, path in paths.items() if not path.is_file()]
    if missing:
        raise CompetitionError(f"{output_dir}: missing {', '.join(missing)}; run the competition into this "
                               "folder first (python run_competition.py --output_dir ...)")
    manifest = json.loads(paths[MANIFEST].read_text())
    predictions = read_csv(paths[PER_IMAGE], PredictionRow)
    attack_images = read_csv(paths[ATTACK_IMAGES], AttackImageRow)
    runs = read_csv(paths[RUNS], RunRow)
    submissions = manifest.get("submissions", [])
    defenses = [s["name"] for s in submissions if s["type"] == SubmissionType.DEFENSE.value]
    attacks = [(s["name"], s["type"]) for s in submissions if s["type"] != SubmissionType.DEFENSE.value]
    scores = score(predictions, attack_images, runs, epsilons=manifest["epsilons"], defenses=defenses,
                   attacks=attacks)
    write_results(output_dir, scores=scores, predictions=predictions, attack_images=attack_images, runs=runs,
                  defenses=defenses, attacks=[a for a, _ in attacks],
                  targeted=[a for a, t in attacks if t == SubmissionType.TARGETED_ATTACK.value])
    return scores


