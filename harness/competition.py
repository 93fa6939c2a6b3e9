"""One competition end to end: dataset + submissions → runs → per-image table → scores → result files."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from harness import __version__
from harness.cgroups import CGROUP_LIMITS, sweep_dead_cgroups
from harness.cleanup import remove_tree
from harness.dataset import Dataset, load_dataset
from harness.devices import DevicePool, visible_gpus
from harness.errors import CompetitionError as CompetitionError  # re-exported: its old home
from harness.execution import Runner
from harness.instance import Instance
from harness.library import KEY_SCHEME
from harness.limits import LimitPolicy
from harness.manifest import DatasetEntry, Manifest, ManifestError, SkippedEntry, SubmissionEntry
from harness.names import one_line
from harness.parallelism import cpu_shares, default_jobs, threads_per_run
from harness.per_image import PerImageTable
from harness.privilege import RUN_GID, RUN_UID, staging_parent, sweep_stale_staging
from harness.provenance import ManifestConditions
from harness.record_store import KEY_SCHEME_KEY
from harness.records import Outcome, RecordError
from harness.report import write_results
from harness.results_folder import ResultsFolder
from harness.sandboxes.base import Protections, SandboxKind
from harness.sandboxes.factory import probe, sandbox_for
from harness.scoring import Matrix, ScoreRow, score_table
from harness.secret import SecretError, fingerprint
from harness.secret import load as load_secret
from harness.secret import new as new_secret
from harness.secret import save as save_secret
from harness.store import FOLDER_MODE, make_private
from harness.submission import Discovery, Submission, discover, suggest
from harness.table import AttackImageRow, PredictionRow, RunRow
from harness.table_files import load_table
from harness.tabulation import tabulate
from harness.tracks import Track
from harness.workspace import Workspace, remove_legacy_scratch, scratch_parent, sweep_dead_scratch
from submission_kit.contract import parse_epsilon


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
        dataset_metadata: The label file when it is not in ``input_dir`` (NIPS 2017 toolkit's flag).
        only_present_images: Run on the labelled images that have a PNG, reporting how many were left out.
        scheduler: Address of a Dask scheduler (``tls://host:8786``) whose workers run every unit.
        workers: Start a local Dask cluster of this many worker processes and run every unit on it.
        allow_unenforced: Limits (of :data:`harness.cgroups.CGROUP_LIMITS`) that a non-root harness may run
            without when it cannot enforce them here (``--allow_unenforced``); the manifest lists those left out.
        tls_ca_file: For a ``tls://`` scheduler: the CA certificate that signed the cluster's certificates.
        tls_cert: For a ``tls://`` scheduler: the driver's certificate (PEM; it may hold the key too).
        tls_key: For a ``tls://`` scheduler: the driver's private key (PEM).
        per_image_csv: Write ``per_image.csv`` beside ``per_image.parquet`` (True), never (False), or when the
            competition has at most :data:`harness.table_files.PER_IMAGE_CSV_LIMIT` predictions (None).
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
    dataset_metadata: Path | None = None
    only_present_images: bool = False
    scheduler: str | None = None
    workers: int | None = None
    allow_unenforced: tuple[str, ...] = field(default=(), kw_only=True)
    tls_ca_file: Path | None = field(default=None, kw_only=True)
    tls_cert: Path | None = field(default=None, kw_only=True)
    tls_key: Path | None = field(default=None, kw_only=True)
    per_image_csv: bool | None = field(default=None, kw_only=True)


@dataclass
class CompetitionResult:
    """What a run produced (also written to ``output_dir``); ``instance`` is the harness instance whose things on
    the machine (scratch folders, cgroups, containers) its runs made."""

    scores: list[ScoreRow]
    table: PerImageTable
    discovery: Discovery
    outcome: Outcome
    dataset: Dataset
    manifest: Manifest
    matrices: list[Matrix]
    instance: Instance

    @property
    def predictions(self) -> list[PredictionRow]:
        """The per-image rows (a view of :attr:`table`; for small competitions and tests)."""
        return list(self.table.prediction_rows())

    @property
    def attack_images(self) -> list[AttackImageRow]:
        """The referee's rows (a view of :attr:`table`)."""
        return list(self.table.attack_image_rows())

    @property
    def runs(self) -> list[RunRow]:
        """The process rows (a view of :attr:`table`)."""
        return list(self.table.run_rows())


#: Marker in ``store/`` naming the unit-key scheme the stored work was keyed with.
KEY_SCHEME_FILE = KEY_SCHEME_KEY


def _check_output_dir(output_dir: Path, dataset: Dataset, force: bool) -> None:
    folder = ResultsFolder(output_dir)
    try:
        previous = folder.read_manifest()
    except ManifestError:
        previous = Manifest()  # no dataset hash: unreadable
    if previous is None:
        return
    if not previous.dataset.content_hash:
        raise CompetitionError(f"{folder.manifest}: unreadable manifest; pick an empty --output_dir or pass "
                               "--force to start this one afresh")
    if previous.dataset.content_hash != dataset.content_hash and not force:
        raise CompetitionError(
            f"{output_dir} holds results for another dataset ({previous.dataset.root or None}); pick another "
            "--output_dir, or pass --force to discard them")


def stored_key_scheme(output_dir: Path) -> int | None:
    """The unit-key scheme a results folder was written under; None for a folder without stored work.

    Folders written before the scheme was recorded (their manifest has ``harness_content_hash`` and their store
    has no ``key_scheme.json``) are scheme 1.
    """
    folder = ResultsFolder(output_dir)
    store = folder.store()
    marked = store.key_scheme()
    if marked is not None:
        return marked
    try:
        manifest = folder.read_manifest()
    except ManifestError:
        return 0
    if manifest is not None:
        return manifest.key_scheme
    return 1 if store.holds_records() else None


def _check_key_scheme(output_dir: Path, force: bool) -> None:
    scheme = stored_key_scheme(output_dir)
    if scheme is not None and scheme != KEY_SCHEME and not force:
        raise CompetitionError(
            f"{output_dir} was written under unit-key scheme {scheme or 'unknown'} (this harness uses scheme "
            f"{KEY_SCHEME}: keys now follow the submission library and the Python/torch versions, not the harness "
            "code); its stored work cannot be reused. Rerun with --force to recompute it in place, or pick a new "
            "--output_dir")


def _select(discovery: Discovery, only: tuple[str, ...]) -> list[Submission]:
    names = [s.name for s in discovery.submissions]
    for name in only:
        if name not in names:
            raise CompetitionError(f"--only {name}: no such submission{suggest(name, names)}; "
                                   f"known: {', '.join(names) or 'none'}")
    return [s for s in discovery.submissions if not only or s.name in only]


# issue 29: split with the executor/sandbox interfaces
def run_competition(config: CompetitionConfig, *, echo: Callable[[str], None] = print,
                    progress: Callable[[str, int], Callable[..., None]] | None = None) -> CompetitionResult:
    """Run every attack against every defense and write the results folder.

    The competition is one harness instance (:mod:`harness.instance`): everything its runs make on the machine
    carries its identity, and it removes what dead instances left (:func:`sweep_dead`), never a live one's.

    Args:
        config: What to run.
        echo: Receives one-line messages (skipped submissions, warnings).
        progress: Progress factory (:func:`harness.progress.reporter`), see :class:`harness.execution.Runner`.

    Returns:
        The :class:`CompetitionResult`.

    Raises:
        CompetitionError: Bad harness input (folders, ε, output folder of another dataset).
        harness.dataset.DatasetError: Bad dataset.
        harness.submission.SubmissionError: Missing submission folder or duplicate names.
    """
    started = time.time()
    config = _absolute(config)  # cluster workers resolve paths in their own working folders
    epsilons, jobs = _checked(config)
    try:
        stored_secret = load_secret(ResultsFolder(config.output_dir).secret)
    except SecretError as exc:
        raise CompetitionError(one_line(str(exc))) from None
    secret = stored_secret or new_secret()
    dataset = load_dataset(config.input_dir, seed=config.seed, num_classes=config.num_classes, secret=secret,
                           metadata=config.dataset_metadata, only_present=config.only_present_images)
    if dataset.left_out:
        echo(f"left out {len(dataset.left_out)} labelled image(s) without a PNG in {dataset.root} "
             f"(--only_present_images); running on the {len(dataset)} present")
    discovery = _discovered(config, echo)
    selected = _select(discovery, config.only)
    attacks = [s for s in selected if s.type.is_attack]
    defenses = [s for s in selected if s.type is Track.DEFENSE]

    output_dir = config.output_dir
    folder = ResultsFolder(output_dir)
    _check_output_dir(output_dir, dataset, config.force)
    _check_key_scheme(output_dir, config.force)
    earlier = _earlier_conditions(output_dir)  # before this run's manifest replaces it
    workspace = Workspace(output_dir, Instance.create())
    _prepare_folder(folder, force=config.force, secret=None if stored_secret else secret, echo=echo)
    protections, unenforced = _protections(config, workspace, jobs=jobs, echo=echo)
    gpus = visible_gpus()
    with contextlib.ExitStack() as cluster:
        executor = None
        if config.scheduler is not None or config.workers is not None:
            from harness.dask_executor import connect  # its ClusterError is a CompetitionError
            executor = cluster.enter_context(connect(
                scheduler=config.scheduler, workers=config.workers, sandbox=config.sandbox, echo=echo,
                tls_ca_file=config.tls_ca_file, tls_cert=config.tls_cert, tls_key=config.tls_key,
                paths=[output_dir, dataset.root, *sorted({s.path for s in selected})]))
        devices = DevicePool(gpus, jobs)
        runner = Runner(dataset, workspace, seed=config.seed, batch_size=config.batch_size, jobs=jobs,
                        policy=config.policy, devices=devices, protections=protections,
                        progress=progress, secret=secret, executor=executor,
                        # parallel runs share the cores: each gets its share (torch oversubscribed is much slower)
                        threads=threads_per_run(jobs), earlier=earlier)
        outcome = runner.execute(attacks, defenses, epsilons)
    for line in rerun_lines(outcome.reruns):
        echo(one_line(line))
    table = tabulate(images=[(r.image_id, r.true_label, r.target_class) for r in dataset.images],
                     clean_versions=outcome.clean_versions, attack_records=outcome.attack_records,
                     defenses=[d.name for d in defenses], defense_records=runner.defense_records_of(outcome),
                     attacks=[(a.name, a.type) for a in attacks], epsilons=epsilons,
                     processes=_reader_processes(len(defenses) * len(dataset) * (1 + len(attacks) * len(epsilons))))
    scores = score_table(table, epsilons=epsilons)
    manifest = Manifest(
        harness_version=__version__, key_scheme=KEY_SCHEME, environment=runner.environment.describe(),
        seed=config.seed, secret_sha256=fingerprint(secret), epsilons=tuple(epsilons), batch_size=config.batch_size,
        jobs=None if executor else jobs,  # on a cluster each worker's threads and RUNS decide
        limits=asdict(config.policy),
        # each parallel run's enforced CPU share: CPUs of quota and its own cores (none when runs run one at a time)
        cpu_shares=None if executor else [asdict(slot.cpu) for slot in devices.slots if slot.cpu is not None],
        protections=protections.describe(), unenforced_limits=tuple(unenforced), dataset=_dataset_entry(dataset),
        submissions=tuple(_submission_entry(s) for s in selected),
        skipped=tuple(SkippedEntry(path=str(p.path), problem=p.message) for p in discovery.problems),
        executed_units=dict(outcome.executed), reused_units=dict(outcome.reused), gpus=tuple(gpus),
        workers=dict(sorted(executor.workers.items())) if executor else None,
        worker_events=executor.events if executor else None,
        scheduling_seconds=executor.driver_seconds if executor else None,
        platform={"python": sys.version.split()[0], "system": platform.platform()},
        started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        submission_seconds=_submission_seconds(table, outcome))
    matrices = write_results(output_dir, scores=scores, table=table, per_image_csv=config.per_image_csv,
                             aims={a.name: a.targets_defense for a in attacks if a.targets_defense})
    _warn(workspace.remove_scratch(), echo)
    manifest = replace(manifest, wall_seconds=round(time.time() - started, 3))
    folder.write_manifest(manifest)
    _make_private(output_dir, echo)
    return CompetitionResult(scores=scores, table=table, discovery=discovery, outcome=outcome, dataset=dataset,
                             manifest=manifest,
                             matrices=matrices, instance=workspace.instance)


def _checked(config: CompetitionConfig) -> tuple[list[int], int]:
    """The competition's ε values (sorted, distinct) and parallel runs, after checking the options that need no
    folder: ε, batch size, jobs, the scheduler's address and TLS files.

    Raises:
        CompetitionError: One of them is wrong (the message says which and how to fix it).
    """
    epsilons = sorted({parse_epsilon(e) for e in config.epsilons})
    if not epsilons:
        raise CompetitionError("no epsilon given; pass --max_epsilon with one or more integers in 0..255")
    jobs = default_jobs() if config.jobs is None else config.jobs
    if config.batch_size < 1 or jobs < 1:
        raise CompetitionError("--batch_size and --jobs must be at least 1")
    if config.scheduler is not None or any(p is not None for p in (config.tls_ca_file, config.tls_cert,
                                                                    config.tls_key)):
        from harness.dask_executor import check_address, scheduler_security  # its errors are CompetitionErrors
        if config.scheduler is not None:
            check_address(config.scheduler)
        scheduler_security(config.scheduler, ca_file=config.tls_ca_file, cert=config.tls_cert, key=config.tls_key)
    return epsilons, jobs


def _discovered(config: CompetitionConfig, echo: Callable[[str], None]) -> Discovery:
    """The submissions of the configured folders; each skipped folder and each warning echoed in one line."""
    expected = {d: {Track.ATTACK, Track.TARGETED_ATTACK} for d in config.attacks_dirs}
    for d in config.defenses_dirs:
        expected[d] = {Track.DEFENSE}
    discovery = discover([*config.attacks_dirs, *config.defenses_dirs], expected=expected)
    for problem in discovery.problems:
        echo(one_line(f"skipped {problem.path}: {problem.message}"))
    for submission in discovery.submissions:
        for warning in submission.warnings:
            echo(one_line(f"warning: {warning}"))
    return discovery


def _prepare_folder(folder: ResultsFolder, *, force: bool, secret: bytes | None,
                    echo: Callable[[str], None]) -> None:
    """Make the results folder ready for a run: discard what ``force`` discards, remove an earlier harness's scratch
    folder, make it owner-only, store ``secret`` when it is new (None: one is stored), bring its store to the
    current layout (:meth:`harness.record_store.RecordStore.migrate`), mark the key scheme and delete half-written
    files of a harness that was killed."""
    if force:
        for discarded in folder.discarded_by_force():
            _remove(discarded, echo)
    _warn(remove_legacy_scratch(folder.root), echo)
    folder.root.mkdir(parents=True, exist_ok=True)
    os.chmod(folder.root, FOLDER_MODE)  # owner only from the start (make_private sets the rest at the end)
    if secret is not None:
        save_secret(folder.secret, secret)
    try:
        for line in folder.store().migrate():  # a store of an older layout is moved in place, nothing rerun
            echo(one_line(line))
    except RecordError as exc:
        raise CompetitionError(one_line(f"{folder.store_root}: {exc}")) from None
    folder.store().put_key_scheme(KEY_SCHEME)
    for stale in folder.stale_temporaries():
        stale.unlink(missing_ok=True)


def _protections(config: CompetitionConfig, workspace: Workspace, *, jobs: int,
                 echo: Callable[[str], None]) -> tuple[Protections, list[str]]:
    """The sandbox's protections here (each note echoed), the limits it cannot enforce (:func:`_check_enforced`),
    after removing what killed harnesses left (:func:`sweep_dead`).

    Raises:
        CompetitionError: No such sandbox here, or a limit it cannot enforce that the organiser did not allow.
    """
    try:
        protections = probe(config.sandbox)
    except RuntimeError as exc:
        raise CompetitionError(str(exc)) from None
    for note in protections.notes:
        echo(one_line(f"sandbox: {note}"))
    unenforced = _check_enforced(protections, config, jobs=jobs)
    swept = sweep_dead(workspace, protections)
    if swept:
        echo(f"removed {len(swept)} leftover(s) of harness processes that were killed: {', '.join(swept[:3])}"
             f"{' ...' if len(swept) > 3 else ''}")
    return protections, unenforced


def _dataset_entry(dataset: Dataset) -> DatasetEntry:
    """The manifest's account of ``dataset``."""
    return DatasetEntry(root=str(dataset.root), content_hash=dataset.content_hash, images=len(dataset),
                        label_file=dataset.label_file, targets_drawn=dataset.targets_drawn,
                        targets_from_secret=dataset.targets_secret, num_classes=dataset.num_classes,
                        left_out=tuple(dataset.left_out))


def _submission_entry(submission: Submission) -> SubmissionEntry:
    """The manifest's account of ``submission`` (its optional metadata keys only when set)."""
    return SubmissionEntry(name=submission.name, track=submission.type, entry_point=submission.entry_point,
                           content_hash=submission.content_hash, container=submission.container,
                           container_gpu=submission.container_gpu, path=str(submission.path),
                           targets_defense=submission.targets_defense, role=submission.role,
                           iterates=submission.iterates)


def _earlier_conditions(output_dir: Path) -> ManifestConditions | None:
    """What the folder's manifest says its last competition ran under (:class:`ManifestConditions`); None without
    a readable manifest."""
    try:
        manifest = ResultsFolder(output_dir).read_manifest()
    except ManifestError:
        return None
    return None if manifest is None else ManifestConditions.from_manifest(manifest.to_json())


#: Up to this many reruns are echoed one line each; more are summed up per reason.
RERUN_LINES = 5


def rerun_lines(reruns: list[str]) -> list[str]:
    """The lines to echo for ``reruns`` (:attr:`harness.records.Outcome.reruns`, "rerunning <unit>: <reason>"): each
    one when there are at most :data:`RERUN_LINES`, else one per distinct reason with its count, most frequent
    first ("rerunning 12 stored unit(s): made without a sandbox")."""
    if len(reruns) <= RERUN_LINES:
        return list(reruns)
    counts: dict[str, int] = {}
    for line in reruns:
        reason = line.split(": ", 1)[-1]
        counts[reason] = counts.get(reason, 0) + 1
    return [f"rerunning {count} stored unit(s): {reason}"
            for reason, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]


def sweep_dead(workspace: Workspace, protections: Protections) -> list[str]:
    """Remove what harness instances that are dead left on this machine: scratch folders where ``workspace``'s go,
    staging folders, cgroup folders under ``protections``' cgroup roots, containers (docker and gVisor sandboxes).
    Things of live instances, of other hosts, users or namings are left alone.

    Returns:
        What was removed (paths and container names). Never raises.
    """
    removed = [str(p) for p in sweep_dead_scratch(workspace.root)]
    try:
        removed += [str(p) for p in sweep_stale_staging(staging_parent(uid=RUN_UID, gid=RUN_GID))]
    except OSError:  # no folder for staging here: none was made
        pass
    removed += [str(p) for p in sweep_dead_cgroups(protections.cgroup)]
    removed += sandbox_for(protections.kind).sweep()  # containers of docker and gVisor sandboxes
    return removed


def _check_enforced(protections: Protections, config: CompetitionConfig, *, jobs: int) -> list[str]:
    """The limits of ``config.policy`` (and, when ``jobs`` > 1, each run's CPU share) that ``protections`` cannot
    enforce for a whole run (for the manifest).

    Raises:
        CompetitionError: ``allow_unenforced`` names something else than a limit of
            :data:`harness.cgroups.CGROUP_LIMITS`; or the harness is not root and a limit it cannot enforce is
            not in ``allow_unenforced`` (a root harness runs as before, its manifest saying which are missing).
    """
    unknown = sorted(set(config.allow_unenforced) - CGROUP_LIMITS.keys())
    if unknown:
        raise CompetitionError(f"--allow_unenforced {','.join(unknown)}: not a limit that may go unenforced; "
                               f"choose from {','.join(CGROUP_LIMITS)}")
    share = cpu_shares(jobs)[0] if jobs > 1 else None
    unenforced = protections.unenforced(config.policy.limits(1, cpu_share=share))
    refused = [name for name in unenforced if name not in config.allow_unenforced]
    if refused and os.geteuid() != 0:
        raise CompetitionError(
            f"this non-root harness cannot enforce {', '.join(refused)} here (no cgroup it may create runs in): run "
            f"it as root or with a cgroup delegated to uid {os.geteuid()}, set those limits to 0 (cpu_share: "
            f"--jobs 1), or accept runs without them: --allow_unenforced {','.join(refused)}")
    return unenforced


def _absolute(config: CompetitionConfig) -> CompetitionConfig:
    """``config`` with every folder made absolute (relative to the current folder)."""
    return replace(config, input_dir=config.input_dir.absolute(),
                   attacks_dirs=tuple(p.absolute() for p in config.attacks_dirs),
                   defenses_dirs=tuple(p.absolute() for p in config.defenses_dirs),
                   output_dir=config.output_dir.absolute(),
                   dataset_metadata=None if config.dataset_metadata is None else config.dataset_metadata.absolute())


def _remove(folder: Path, echo: Callable[[str], None]) -> None:
    """Delete a folder of the results; what cannot be deleted is reported, never raised (runs use fresh names)."""
    _warn(remove_tree(folder), echo)


def _warn(problem: str, echo: Callable[[str], None]) -> None:
    """Report a clean-up ``problem`` ("" for none) as a one-line warning."""
    if problem:
        echo(one_line(f"warning: {problem}"))


#: Predictions from which a run's table reads the defenses' records in one process per usable core.
PARALLEL_TABULATION = 2_000_000


def _reader_processes(predictions: int) -> int:
    """Processes that read the defenses' records into the table: one per usable core for a large table (the
    reading is most of the bookkeeping's time), else 1 (forking costs more than it saves)."""
    return default_jobs() if predictions >= PARALLEL_TABULATION else 1


def _submission_seconds(table: PerImageTable, outcome: Outcome) -> float:
    """Wall time inside the processes that ran now (not those taken from the store)."""
    runs = table.runs
    return round(sum(float(seconds) for batch, seconds in zip(runs.batch, runs.seconds.tolist(), strict=True)
                     if batch in outcome.fresh_keys), 3)


def _make_private(output_dir: Path, echo: Callable[[str], None]) -> None:
    """:func:`harness.store.make_private` on the results folder, its scratch folder (when there) left alone; a mode
    that cannot be set is a warning."""
    scratch = scratch_parent(output_dir)
    for problem in make_private(output_dir, skip=(scratch.name,) if scratch.parent == output_dir else ()):
        echo(one_line(f"warning: cannot make owner-only: {problem}"))


def rescore(output_dir: Path, *, per_image_csv: bool | None = None) -> list[ScoreRow]:
    """Recompute and rewrite the leaderboard and matrices from a results folder's tables, running nothing.

    Raises:
        CompetitionError: The folder lacks the tables of a finished run, or they cannot be read.
    """
    folder = ResultsFolder(output_dir)
    missing = folder.missing_tables()
    if missing:
        raise CompetitionError(f"{output_dir}: missing {', '.join(missing)}; run the competition into this "
                               "folder first (python run_competition.py --output_dir ...)")
    try:
        manifest = folder.read_manifest() or Manifest()
        table = load_table(folder, manifest)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CompetitionError(one_line(f"{output_dir}: unreadable results ({exc}); rerun the competition into "
                                        "this folder")) from None
    scores = score_table(table, epsilons=list(manifest.epsilons))
    write_results(output_dir, scores=scores, table=table, aims=manifest.aims(), per_image_csv=per_image_csv)
    _make_private(output_dir, lambda _: None)
    return scores


