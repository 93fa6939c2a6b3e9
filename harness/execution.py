"""Execute the competition's work units and feed the referee.

Work comes in two stages of independent units (planned by :mod:`harness.planning`):

1. **Attack batches** — (attack, ε, batch of images). The attack sees a folder holding only the batch's PNGs
   (plus ``target_class.csv`` for targeted attacks); every expected output goes through the referee and the
   refereed image is stored under the hash of its pixels.
2. **Defense batches** — each defense classifies every distinct image version (clean images and every
   attack's refereed images at every ε) that it has not classified before, under opaque names, never two
   versions of the same original image in one batch. Predictions are cached per (defense version, image pixels).

Every unit's record is written atomically once the unit is complete; a rerun skips finished units, so a new
attack runs only itself plus the defenses on its images, and a changed defense runs only itself. The per-image
table is built from the :class:`Outcome` by :mod:`harness.tabulation`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
import uuid
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TypeVar

from joblib import Parallel, delayed

from harness.cleanup import remove_tree
from harness.dataset import Dataset
from harness.defense_output import parse_predictions
from harness.devices import DevicePool
from harness.isolation import Protections
from harness.library import Fingerprint, fingerprint
from harness.limits import LimitPolicy
from harness.names import one_line
from harness.planning import AttackUnit, DefenseUnit, batches, opaque_name, pack_versions
from harness.parallelism import threads_per_run
from harness.process import RunRecord, precompile_library, run_submission
from harness.secret import derive
from harness.results_folder import ResultsFolder
from harness.records import AttackUnitRecord, DefenseAnswer, DefenseUnitRecord, ImageVerdict
from harness.store import key_of
from harness.submission import Submission, SubmissionType
from harness.workspace import Workspace
from submission_kit import contract

if TYPE_CHECKING:
    from harness.dask_executor import DaskExecutor

__all__ = ["Outcome", "Runner"]


_Record = TypeVar("_Record", AttackUnitRecord, DefenseUnitRecord)


@dataclass
class Outcome:
    """What one call of :func:`execute` produced.

    Attributes:
        attack_records: Records of every attack batch in the plan (fresh or cached).
        defense_predictions: defense name → version hash → (label or None, problem).
        defense_records: Records (fresh or cached) that contributed predictions, per defense name.
        executed: Counts of units that ran now, per kind ("attack", "defense").
        reused: Counts of units taken from the store, per kind.
        clean_versions: Pixel hash of every clean image, by image id.
        fresh_keys: Keys of the units that ran now.
    """

    attack_records: list[AttackUnitRecord] = field(default_factory=list)
    defense_predictions: dict[str, dict[str, tuple[int | None, str]]] = field(default_factory=dict)
    defense_records: dict[str, list[DefenseUnitRecord]] = field(default_factory=dict)
    executed: dict[str, int] = field(default_factory=lambda: {"attack": 0, "defense": 0})
    reused: dict[str, int] = field(default_factory=lambda: {"attack": 0, "defense": 0})
    clean_versions: dict[str, str] = field(default_factory=dict)
    fresh_keys: set[str] = field(default_factory=set)


class Runner:
    """Executes attack and defense units for one dataset into one results folder.

    Args:
        dataset: The images and labels.
        workspace: The results folder, and the harness instance whose things the runs make on the machine.
        seed: Seeds batch shuffling and opaque names.
        batch_size: Images per attack batch and per defense batch.
        jobs: Units run in parallel.
        policy: Per-run resource limits.
        devices: GPU assignment.
        protections: The sandbox in use (:func:`harness.isolation.probe`).
        progress: Called with (stage description, units) and returns a callback to tick per finished unit.
        environment: The environment fingerprint (default :func:`harness.library.fingerprint` of the installed
            submission library).
        secret: The results folder's secret (:mod:`harness.secret`); opaque names derive from it (from ``seed``
            when None, e.g. in ``validate``).
        executor: Runs each stage's units on a Dask cluster instead of local threads
            (:class:`harness.dask_executor.DaskExecutor`).
    """

    def __init__(self, dataset: Dataset, workspace: Workspace, *, seed: int, batch_size: int, jobs: int,
                 policy: LimitPolicy, devices: DevicePool, protections: Protections,
                 progress: Callable[[str, int], Callable[..., None]] | None = None,
                 environment: Fingerprint | None = None, secret: bytes | None = None,
                 executor: DaskExecutor | None = None) -> None:
        self.secret = secret
        self.dataset = dataset
        self.workspace = workspace
        self.store = workspace.store
        self.seed = seed
        self.batch_size = batch_size
        self.jobs = jobs
        self.policy = policy
        self.devices = devices
        self.protections = protections
        #: What every run can use besides its folder and inputs (library content, Python/torch versions).
        self.environment: Fingerprint = environment or fingerprint()
        # Parallel runs share the cores: each gets its share of threads (torch oversubscribed is many times slower).
        self.threads = threads_per_run(jobs)
        self.progress = progress or (lambda _label, _total: (lambda failed=False: None))
        self.executor = executor

    def version_of(self, submission: Submission) -> str:
        """Key of everything a submission's run depends on besides its inputs: its folder and the environment
        fingerprint (the submission library it can import, weights included, and the Python/torch versions it
        sees), and its name (two teams may submit identical folders: each runs, is stored and scored on its own).
        The referee's own code is not part of it."""
        return key_of(submission.content_hash, self.environment.key, submission.name)

    # -- one process ---------------------------------------------------------------------------------
    def _scratch(self, name: str) -> tuple[Path, Path, Path]:
        """A fresh unit folder (mode 700) in the workspace's scratch folder with empty ``input``, ``output`` and
        ``work`` folders: (unit folder, input, output).

        Its name is unique to this call, so that a folder an earlier run left undeletable never blocks a run. Every
        folder is made relative to an open, checked descriptor of its parent (no link followed).

        Raises:
            OSError: The scratch folder is not the harness's own (:class:`harness.workspace.ScratchError`), or the
                folders cannot be made.
        """
        unit = f"{name}-{uuid.uuid4().hex[:8]}"
        parent_fd = self.workspace.open_scratch()
        try:
            os.mkdir(unit, 0o700, dir_fd=parent_fd)
            unit_fd = os.open(unit, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
            try:
                for folder in ("input", "output", "work"):
                    os.mkdir(folder, 0o700, dir_fd=unit_fd)
            finally:
                os.close(unit_fd)
        finally:
            os.close(parent_fd)
        scratch = self.workspace.scratch / unit
        return scratch, scratch / "input", scratch / "output"

    def _not_run(self, log_name: str, exc: OSError) -> RunRecord:
        """The record of a run that could not be prepared (its scratch folder was refused): a one-line problem,
        also written to its log."""
        problem = one_line(f"not started: {exc.strerror or exc}")
        try:
            log_path = self.workspace.folder.path(log_name)
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log_path.write_text(f"[harness] {problem}\n", encoding="utf-8")
        except OSError:
            pass
        return RunRecord(exit_code=None, timed_out=False, seconds=0.0, problem=problem, log=log_name)

    def _run(self, submission: Submission, args: list[str], *, scratch: Path, images: int,
             log_name: str) -> RunRecord:
        """Run a submission over a scratch folder's input in a borrowed slot (a device and a CPU share), under the
        policy's limits."""
        with self.devices.acquire() as slot:
            return run_submission(submission, args, inputs=scratch / "input", outputs=scratch / "output",
                                  workdir=scratch / "work", limits=self.policy.limits(images, cpu_share=slot.cpu),
                                  log_path=self.workspace.folder.path(log_name), log_name=log_name, gpu=slot.gpu,
                                  protections=self.protections, instance=self.workspace.instance,
                                  threads=self.threads)

    # -- clean images -------------------------------------------------------------------------------
    def clean_versions(self) -> dict[str, str]:
        """Store every clean image by pixel hash (re-encoded: no metadata reaches a defense); return image id →
        pixel hash. The map is kept per dataset content hash, so a rerun decodes nothing."""
        known = self.store.clean_versions(self.dataset.content_hash)
        if known is not None:
            return known
        versions = {}
        for record in self.dataset.images:
            image = contract.read_png(self.dataset.path(record))
            version = contract.pixel_hash(image)
            if not self.store.has_image(version):
                self.store.put_image(contract.encode_png(image), version)
            versions[record.image_id] = version
        self.store.put_clean_versions(self.dataset.content_hash, versions)
        return versions

    # -- attacks ------------------------------------------------------------------------------------
    def attack_units(self, attacks: list[Submission], epsilons: list[int]) -> list[AttackUnit]:
        """Every (attack, ε, batch) unit, in a stable order."""
        groups = batches(self.dataset.images, self.batch_size)
        return [AttackUnit(attack, eps, group, self.version_of(attack))
                for attack in attacks for eps in epsilons for group in groups]

    def run_attack_unit(self, unit: AttackUnit, clean_versions: dict[str, str]) -> AttackUnitRecord:
        """Run one attack batch, referee its outputs, store the record; return the record."""
        attack, eps = unit.attack, unit.epsilon
        key = unit.key
        log_name = ResultsFolder.attack_log(attack.name, eps, key)
        try:
            scratch, inputs, outputs = self._scratch(f"a-{key}")
        except OSError as exc:  # a failed run, not stored: a rerun tries again
            refused = self._not_run(log_name, exc)
            return AttackUnitRecord(key=key, attack=attack.name, attack_hash=attack.content_hash,
                                    attack_type=attack.type, epsilon=eps, run=refused, images=tuple(
                                        ImageVerdict(image_id=r.image_id, version=clean_versions[r.image_id],
                                                     problem="the attack did not run", clipped_values=0,
                                                     max_violation=0, linf=0) for r in unit.images))
        clean_images = {}
        for record in unit.images:
            data = self.dataset.path(record).read_bytes()
            (inputs / record.file_name).write_bytes(data)
            clean_images[record.image_id] = contract.decode_png(data, what=record.file_name)
        if attack.type is SubmissionType.TARGETED_ATTACK:
            (inputs / "target_class.csv").write_text(
                "".join(f"{r.file_name},{r.target_class}\n" for r in unit.images))
        run = self._run(attack, ["{input}", "{output}", str(eps)], scratch=scratch, images=len(unit.images),
                        log_name=log_name)
        images = []
        for record in unit.images:
            clean = clean_images[record.image_id]
            verdict = contract.referee(outputs / record.file_name, clean, eps)
            if verdict.problem:
                version = clean_versions[record.image_id]
            else:
                version = contract.pixel_hash(verdict.image)
                if not self.store.has_image(version):
                    self.store.put_image(contract.encode_png(verdict.image), version)
            images.append(ImageVerdict(image_id=record.image_id, version=version, problem=verdict.problem,
                                       clipped_values=verdict.clipped_values, max_violation=verdict.max_violation,
                                       linf=verdict.linf, note=verdict.note))
        run = _with_cleanup(run, scratch, self.workspace.folder)
        result = AttackUnitRecord(key=key, attack=attack.name, attack_hash=attack.content_hash,
                                  attack_type=attack.type, epsilon=eps, run=run, images=tuple(images))
        self.store.put_attack_record(result)
        return result

    # -- defenses -----------------------------------------------------------------------------------
    def cached_predictions(self, defense: Submission) -> tuple[dict[str, tuple[int | None, str]],
                                                              dict[str, DefenseUnitRecord]]:
        """Stored predictions of this defense version: (version → (label, problem), version → record).
        A record of another schema or a malformed one is ignored (its images are classified again)."""
        predictions: dict[str, tuple[int | None, str]] = {}
        sources: dict[str, DefenseUnitRecord] = {}
        for record in self.store.defense_records(self.version_of(defense)):
            for version, answer in record.predictions.items():
                predictions[version] = (answer.label, answer.problem)
                sources[version] = record
        return predictions, sources

    def opaque_names(self, unit: DefenseUnit) -> dict[str, str]:
        """The file name under which the defense sees each image version of ``unit`` (version → opaque name).

        Names derive from the results folder's secret (from ``seed`` when there is none, e.g. in ``validate``);
        the driver of a cluster computes them and sends them with the unit, so workers never hold the secret."""
        secret = (hashlib.sha256(f"opaque-names:{self.seed}:{unit.version}".encode()).digest() if self.secret is None
                  else derive(self.secret, f"opaque-names:{unit.version}"))
        return {version: opaque_name(version, secret=secret) for version in unit.versions}

    def run_defense_unit(self, unit: DefenseUnit, names: dict[str, str] | None = None) -> DefenseUnitRecord:
        """Run one defense batch under opaque names, parse its CSV, store the record; return the record.

        Args:
            unit: The batch.
            names: Version → opaque name, as :meth:`opaque_names` gives them (computed here when None).
        """
        defense = unit.defense
        key = unit.key
        opaque = self.opaque_names(unit) if names is None else names
        log_name = ResultsFolder.defense_log(defense.name, key)
        try:
            scratch, inputs, outputs = self._scratch(f"d-{key}")
        except OSError as exc:  # a failed run, not stored: a rerun tries again
            return DefenseUnitRecord(key=key, defense=defense.name, defense_hash=defense.content_hash,
                                     run=self._not_run(log_name, exc), csv_notes=(), predictions={
                                         version: DefenseAnswer(label=None, problem="the defense did not run")
                                         for version in unit.versions})
        versions = {}
        for version in unit.versions:
            name = opaque[version]
            data = self.store.image(version)
            if data is None:  # planned from records whose images were all there
                raise FileNotFoundError(f"image {version} is no longer in the store")
            (inputs / name).write_bytes(data)
            versions[name] = version
        output_file = outputs / "result.csv"
        run = self._run(defense, ["{input}", "{output}/" + output_file.name], scratch=scratch,
                        images=len(unit.versions), log_name=log_name)
        # Labels must be ASCII digits; one outside the dataset's classes is a wrong answer, not a missing one (the
        # dataset's num_classes is only its largest label + 1 by default).
        parsed = parse_predictions(output_file, expected=set(versions))
        predictions = {versions[name]: DefenseAnswer(label=answer.label, problem=answer.problem)
                       for name, answer in parsed.answers.items()}
        run = _with_cleanup(run, scratch, self.workspace.folder)
        result = DefenseUnitRecord(key=key, defense=defense.name, defense_hash=defense.content_hash, run=run,
                                   csv_notes=tuple(parsed.notes), predictions=predictions)
        self.store.put_defense_record(unit.version, result)
        return result

    # -- everything ---------------------------------------------------------------------------------
    def _parallel(self, label: str, work: list[Callable[[], _Record]]) -> list[_Record]:
        """Run units on ``jobs + 1`` threads. At most ``jobs`` submission processes run at once (the device pool
        has ``jobs`` slots, held only while a process runs), so the extra thread pipelines the harness's own
        work — preparing the next unit's inputs, refereeing and storing the last unit's outputs — with the
        running process. Results come back in the order of ``work``."""
        tick = self.progress(label, len(work))
        lock = threading.Lock()

        def call(fn: Callable[[], _Record]) -> _Record:
            result = fn()
            with lock:
                tick(failed=bool(result.run.problem))
            return result

        try:
            if len(work) <= 1:
                return [call(fn) for fn in work]
            return list(Parallel(n_jobs=self.jobs + 1, backend="threading")(delayed(call)(fn) for fn in work))
        finally:
            getattr(tick, "close", lambda: None)()

    def execute(self, attacks: list[Submission], defenses: list[Submission], epsilons: list[int]) -> Outcome:
        """Run whatever is not in the store yet and return every record the scores need."""
        outcome = Outcome()
        precompile_library()
        clean_versions = self.clean_versions()
        outcome.clean_versions = clean_versions

        pending_attacks = []
        for unit in self.attack_units(attacks, epsilons):
            record = self.store.attack_record(unit.key)  # None also when an image it points to was lost
            if record is None:
                pending_attacks.append(unit)
            else:
                outcome.attack_records.append(record)
        outcome.reused["attack"] = len(outcome.attack_records)
        if self.executor is not None:
            fresh = self.executor.run(self, "attacks", pending_attacks, clean_versions)
        else:
            fresh = self._parallel("attacks", [
                functools.partial(self.run_attack_unit, unit, clean_versions) for unit in pending_attacks])
        outcome.executed["attack"] = len(fresh)
        outcome.fresh_keys.update(r.key for r in fresh)
        outcome.attack_records += fresh
        outcome.attack_records.sort(key=lambda r: (r.attack, r.epsilon, r.images[0].image_id))

        originals: dict[str, set[str]] = defaultdict(set)
        for image_id, version in clean_versions.items():
            originals[version].add(image_id)
        for record in outcome.attack_records:
            for image in record.images:
                originals[image.version].add(image.image_id)
        needed = sorted(originals)

        defense_work = []
        for defense in defenses:
            cached, sources = self.cached_predictions(defense)
            pending = [v for v in needed if v not in cached]
            outcome.defense_predictions[defense.name] = {v: cached[v] for v in needed if v in cached}
            used = {id(sources[v]): sources[v] for v in needed if v in cached}
            outcome.defense_records[defense.name] = list(used.values())
            outcome.reused["defense"] += len(used)
            for group in pack_versions(pending, originals, size=self.batch_size, seed=self.seed):
                defense_work.append(DefenseUnit(defense, group, self.version_of(defense)))
        if self.executor is not None:
            fresh_defenses = self.executor.run(self, "defenses", defense_work, clean_versions)
        else:
            fresh_defenses = self._parallel("defenses", [functools.partial(self.run_defense_unit, unit)
                                                         for unit in defense_work])
        outcome.executed["defense"] = len(fresh_defenses)
        outcome.fresh_keys.update(r.key for r in fresh_defenses)
        for defense_record in fresh_defenses:
            outcome.defense_records[defense_record.defense].append(defense_record)
            table = outcome.defense_predictions[defense_record.defense]
            for version, answer in defense_record.predictions.items():
                table[version] = (answer.label, answer.problem)
        for records in outcome.defense_records.values():
            records.sort(key=lambda r: r.key)
        return outcome


def _with_cleanup(run: RunRecord, scratch: Path, folder: ResultsFolder) -> RunRecord:
    """Delete a unit's scratch folder; a failed cleanup turns the run into a failure (never a harness crash)."""
    problem = remove_tree(scratch)
    if not problem:
        return run
    try:
        with open(folder.path(run.log), "a", encoding="utf-8") as handle:
            handle.write(f"[harness] {problem}\n")
    except OSError:
        pass
    combined = f"{run.problem}; {problem}" if run.problem else problem
    return replace(run, problem=combined)
