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
table is built from the :class:`~harness.records.Outcome` by :mod:`harness.tabulation`.

One unit runs in one place, :meth:`Runner.run_unit` (its stored record if there is one, else stage its inputs, run,
referee, store). An :class:`Executor` maps it over a stage's units: :class:`LocalExecutor` on this machine's
threads, :class:`harness.dask_executor.DaskExecutor` on a Dask cluster (whose workers call the same method).
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator, Protocol, Sequence, TypeVar, overload

from joblib import Parallel, delayed

from harness.cleanup import remove_tree
from harness.dataset import Dataset
from harness.defense_output import parse_predictions
from harness.devices import DevicePool, Slot, device_class
from harness.library import Fingerprint, fingerprint
from harness.limits import LimitPolicy
from harness.names import one_line
from harness.planning import AttackUnit, DefenseUnit, Unit, batches, log_name, opaque_name, pack_versions
from harness.provenance import ManifestConditions, Provenance, applied_limits
from harness.records import (
    AttackUnitRecord,
    DefenseAnswer,
    DefenseUnitRecord,
    Head,
    ImageVerdict,
    Outcome,
    Record,
    RunRecord,
)
from harness.results_folder import ResultsFolder
from harness.sandboxes.base import Protections, RunRequest
from harness.sandboxes.factory import sandbox_for
from harness.sandboxes.staging import precompile_library
from harness.secret import derive
from harness.store import key_of
from harness.submission import Submission, SubmissionType
from harness.tabulation import DefenseSource
from harness.workspace import Workspace
from submission_kit import contract

__all__ = ["Executor", "LocalExecutor", "Runner", "failed_record"]


_Record = TypeVar("_Record", AttackUnitRecord, DefenseUnitRecord)


class Executor(Protocol):
    """Maps :meth:`Runner.run_unit` over a stage's units: :class:`LocalExecutor` (threads of this machine) or
    :class:`harness.dask_executor.DaskExecutor` (a Dask cluster)."""

    def map(self, runner: Runner, label: str, units: Sequence[Unit], clean_versions: dict[str, str]) -> list[Record]:
        """Each unit's record, in the order of ``units`` (all attack or all defense units), as
        ``runner.run_unit(unit, clean_versions, names)`` gives it (``names``: :meth:`Runner.opaque_names` of a
        defense unit); ``runner.progress(label, len(units))`` ticks once per unit."""
        ...


class LocalExecutor:
    """Runs a stage's units on ``jobs + 1`` threads of this machine. At most ``jobs`` submission processes run at
    once (the runner's device pool has ``jobs`` slots, held only while a process runs), so the extra thread
    pipelines the harness's own work — preparing the next unit's inputs, refereeing and storing the last unit's
    outputs — with the running process."""

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs

    def map(self, runner: Runner, label: str, units: Sequence[Unit], clean_versions: dict[str, str]) -> list[Record]:
        """See :meth:`Executor.map`."""
        tick = runner.progress(label, len(units))
        lock = threading.Lock()

        def call(unit: Unit) -> Record:
            names = runner.opaque_names(unit) if isinstance(unit, DefenseUnit) else None
            result = runner.slim(unit, runner.run_unit(unit, clean_versions, names))
            with lock:
                tick(failed=bool(result.run.problem))
            return result

        try:
            if len(units) <= 1:
                return [call(unit) for unit in units]
            return list(Parallel(n_jobs=self.jobs + 1, backend="threading")(delayed(call)(unit) for unit in units))
        finally:
            getattr(tick, "close", lambda: None)()


@overload
def failed_record(unit: AttackUnit, run: RunRecord, clean_versions: dict[str, str], problem: str) -> AttackUnitRecord:
    ...


@overload
def failed_record(unit: DefenseUnit, run: RunRecord, clean_versions: dict[str, str], problem: str
                  ) -> DefenseUnitRecord:
    ...


def failed_record(unit: Unit, run: RunRecord, clean_versions: dict[str, str], problem: str) -> Record:
    """The record of a unit whose run failed before it produced anything: every image of an attack unit is its
    clean version with ``problem``; every version of a defense unit has no label, with ``problem``."""
    if isinstance(unit, AttackUnit):
        attack = unit.attack
        return AttackUnitRecord(key=unit.key, attack=attack.name, attack_hash=attack.content_hash,
                                attack_type=attack.type, epsilon=unit.epsilon, run=run, images=tuple(
                                    ImageVerdict(image_id=r.image_id, version=clean_versions[r.image_id],
                                                 problem=problem, clipped_values=0, max_violation=0, linf=0)
                                    for r in unit.images))
    return DefenseUnitRecord(key=unit.key, defense=unit.defense.name, defense_hash=unit.defense.content_hash,
                             run=run, csv_notes=(), predictions={
                                 version: DefenseAnswer(label=None, problem=problem) for version in unit.versions})


class Runner:
    """Executes attack and defense units for one dataset into one results folder.

    Args:
        dataset: The images and labels.
        workspace: The results folder, and the harness instance whose things the runs make on the machine.
        seed: Seeds batch shuffling and opaque names.
        batch_size: Images per attack batch and per defense batch.
        jobs: Units run in parallel on this machine (by the default executor, :class:`LocalExecutor`).
        policy: Per-run resource limits.
        devices: GPU assignment.
        protections: The sandbox in use (:func:`harness.sandboxes.factory.probe`).
        progress: Called with (stage description, units) and returns a callback to tick per finished unit.
        environment: The environment fingerprint (default :func:`harness.library.fingerprint` of the installed
            submission library).
        secret: The results folder's secret (:mod:`harness.secret`); opaque names derive from it (from ``seed``
            when None, e.g. in ``validate``).
        executor: Maps :meth:`run_unit` over each stage's units (default: :class:`LocalExecutor` of ``jobs``; a
            Dask cluster's :class:`harness.dask_executor.DaskExecutor`).
        threads: CPU threads each run may use (OMP/MKL/OpenBLAS and torch); None leaves the harness's own settings
            (one run at a time). Parallel runs pass their share of the cores,
            :func:`harness.parallelism.threads_per_run`.
        earlier: What the results folder's manifest says its last competition ran under, read before this one
            overwrites it: the provenance of stored records made before records stated their own (None: such
            records rerun).
    """

    def __init__(self, dataset: Dataset, workspace: Workspace, *, seed: int, batch_size: int, jobs: int,
                 policy: LimitPolicy, devices: DevicePool, protections: Protections,
                 progress: Callable[[str, int], Callable[..., None]] | None = None,
                 environment: Fingerprint | None = None, secret: bytes | None = None,
                 executor: Executor | None = None, threads: int | None = None,
                 earlier: ManifestConditions | None = None) -> None:
        self.secret = secret
        self.dataset = dataset
        self.workspace = workspace
        self.store = workspace.store
        self.seed = seed
        self.batch_size = batch_size
        self.policy = policy
        self.devices = devices
        self.protections = protections
        self.sandbox = sandbox_for(protections.kind)
        #: What every run can use besides its folder and inputs (library content, Python/torch versions).
        self.environment: Fingerprint = environment or fingerprint()
        self.threads = threads
        self.progress = progress or (lambda _label, _total: (lambda failed=False: None))
        self.executor: Executor = executor or LocalExecutor(jobs)
        self.earlier = earlier
        #: On a cluster the workers decide each run's device and CPU share: the records' own are then asked.
        self._placement_known = isinstance(self.executor, LocalExecutor)
        self._digests: dict[tuple[str, str, bool], str] = {}
        self._reruns: dict[str, str] = {}
        self._defense_versions: dict[str, str] = {}
        self._lock = threading.Lock()

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
            made = self.made_under(submission, images, slot)
            run = self.sandbox.run(RunRequest(
                submission=submission, args=args, inputs=scratch / "input", outputs=scratch / "output",
                workdir=scratch / "work", limits=self.policy.limits(images, cpu_share=slot.cpu),
                log_path=self.workspace.folder.path(log_name), log_name=log_name, gpu=slot.gpu,
                protections=self.protections, instance=self.workspace.instance, threads=self.threads,
                image=made.image))
        return replace(run, provenance=made)

    # -- provenance ---------------------------------------------------------------------------------
    def made_under(self, submission: Submission, images: int, slot: Slot) -> Provenance:
        """What a run of ``submission`` over ``images`` images in ``slot`` is made under (:mod:`harness.provenance`):
        this sandbox, the policy's limits with the slot's CPU share (those the sandbox cannot enforce for a whole
        run marked so: a cgroup run whose promised limits cannot all be set never starts, :mod:`harness.process`),
        the slot's device class and the id of the image a container sandbox runs."""
        limits = self.policy.limits(images, cpu_share=slot.cpu)
        gpu = self.sandbox.gpu_for(slot.gpu)
        key = (submission.container, submission.container_gpu, gpu is not None)
        if key not in self._digests:
            self._digests[key] = self.sandbox.image_digest(submission, slot.gpu)
        return Provenance(sandbox=self.sandbox.kind.value, device=device_class(gpu), image=self._digests[key],
                          limits=applied_limits(self.policy, images, share=slot.cpu,
                                                unenforced=self.protections.unenforced(limits)))

    def rerun_reason(self, record: Record | Head, submission: Submission, images: int) -> str:
        """Why ``record`` may not stand in for a run of its unit asked now ("" when it may): it was made under
        weaker conditions than any slot of this runner would give, or failed under stricter ones
        (:meth:`harness.provenance.Provenance.weaker_than`). A record without a provenance (made before records
        stated one) takes it from :attr:`earlier`. With a cluster's executor the device class and CPU share are
        not compared here (the workers decide them; :meth:`harness.provenance.Provenance.placed_as`), and the image
        digest is the one this machine's engine names."""
        made = record.run.provenance
        if made is None:
            if self.earlier is None:
                return "made before records stated their conditions, and the manifest does not say them"
            made = self.earlier.provenance(images)
        reasons = []
        for slot in {(slot.gpu, slot.cpu): slot for slot in self.devices.slots}.values():
            asked = self.made_under(submission, images, slot)
            if not self._placement_known:
                asked = asked.placed_as(made)
            reason = made.weaker_than(asked, failed=bool(record.run.problem))
            if not reason:
                return ""
            reasons.append(reason)
        return reasons[0]

    def _reusable(self, record: Record | Head, submission: Submission, images: int, unit: str) -> bool:
        """True when ``record`` may be reused (:meth:`rerun_reason`); else note "rerunning <unit>: <reason>"."""
        reason = self.rerun_reason(record, submission, images)
        if reason:
            with self._lock:
                self._reruns[record.key] = f"rerunning {unit} batch {record.key[:12]}: {reason}"
        return not reason

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

    # -- one unit -----------------------------------------------------------------------------------
    @overload
    def stored_record(self, unit: AttackUnit) -> AttackUnitRecord | None:
        ...

    @overload
    def stored_record(self, unit: DefenseUnit) -> DefenseUnitRecord | None:
        ...

    def stored_record(self, unit: Unit) -> Record | None:
        """The unit's stored record; None when it is absent, of another schema or malformed, when an image it
        points to was lost, or when it was made under weaker conditions than asked now (:meth:`rerun_reason`, noted
        for :attr:`harness.records.Outcome.reruns`): the unit is redone."""
        if isinstance(unit, DefenseUnit):
            defense = self.store.defense_record(unit.version, unit.key)
            if defense is None:
                return None
            reusable = self._reusable(defense, unit.defense, len(unit.versions), f"defense {unit.defense.name}")
            return defense if reusable else None
        record = self.store.attack_record(unit.key)
        if record is None:
            return None
        return record if self._reusable(record, unit.attack, len(unit.images),
                                        f"{unit.attack.name} eps{unit.epsilon}") else None

    def stored_attack_records(self, units: Sequence[AttackUnit]) -> list[AttackUnitRecord]:
        """The stored records that stand in for ``units`` (as :meth:`stored_record` decides, in bulk): one listing
        finds which units are stored at all, their heads decide reuse, and only reusable records are read whole,
        their images checked by one listing per image folder."""
        stored = set(self.store.attack_keys())
        candidates = {}
        for unit in units:
            if unit.key not in stored:
                continue
            head = self.store.attack_head(unit.key)
            if head is not None and self._reusable(head, unit.attack, len(unit.images),
                                                   f"{unit.attack.name} eps{unit.epsilon}"):
                candidates[unit.key] = unit
        return [record for _, record in self.store.attack_records(candidates) if record is not None]

    def save_record(self, unit: Unit, record: Record) -> None:
        """Store ``unit``'s record (its images first, the record last, in one put), where :meth:`stored_record`
        finds it."""
        if isinstance(unit, DefenseUnit) and isinstance(record, DefenseUnitRecord):
            self.store.put_defense_record(unit.version, record)
        elif isinstance(unit, AttackUnit) and isinstance(record, AttackUnitRecord):
            self.store.put_attack_record(record)
        else:
            raise TypeError(f"save_record: a {type(record).__name__} for a {type(unit).__name__}")

    @overload
    def run_unit(self, unit: AttackUnit, clean_versions: dict[str, str],
                 names: dict[str, str] | None = None) -> AttackUnitRecord:
        ...

    @overload
    def run_unit(self, unit: DefenseUnit, clean_versions: dict[str, str],
                 names: dict[str, str] | None = None) -> DefenseUnitRecord:
        ...

    def run_unit(self, unit: Unit, clean_versions: dict[str, str], names: dict[str, str] | None = None) -> Record:
        """The unit's stored record if there is one (:meth:`stored_record`; running a unit twice does no work
        twice), else run it (:meth:`run_attack_unit`, :meth:`run_defense_unit`) and store its record.

        Args:
            unit: The unit.
            clean_versions: Pixel hash of every clean image, by image id (:meth:`clean_versions`).
            names: For a defense unit: version → opaque name (:meth:`opaque_names`; computed when None).
        """
        stored = self.stored_record(unit)
        if stored is not None:
            return stored
        if isinstance(unit, AttackUnit):
            return self.run_attack_unit(unit, clean_versions)
        return self.run_defense_unit(unit, names)

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
        log = log_name(unit)
        try:
            scratch, inputs, outputs = self._scratch(f"a-{key}")
        except OSError as exc:  # a failed run, not stored: a rerun tries again
            return failed_record(unit, self._not_run(log, exc), clean_versions, "the attack did not run")
        clean_images = {}
        for record in unit.images:
            data = self.dataset.path(record).read_bytes()
            (inputs / record.file_name).write_bytes(data)
            clean_images[record.image_id] = contract.decode_png(data, what=record.file_name)
        if attack.type is SubmissionType.TARGETED_ATTACK:
            (inputs / "target_class.csv").write_text(
                "".join(f"{r.file_name},{r.target_class}\n" for r in unit.images))
        run = self._run(attack, ["{input}", "{output}", str(eps)], scratch=scratch, images=len(unit.images),
                        log_name=log)
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
        self.save_record(unit, result)
        return result

    # -- defenses -----------------------------------------------------------------------------------
    def cached_versions(self, defense: Submission) -> dict[str, str]:
        """Versions this defense version's stored records answer: version → key of the record whose answer stands
        (the last in key order). Reuse is decided on each record's head; a record of another schema, a malformed
        one, or one made under weaker conditions than asked now (:meth:`rerun_reason`) is ignored (its images are
        classified again) without its body being read. Bodies are read one at a time; their answers are not kept."""
        version = self.version_of(defense)
        sources: dict[str, str] = {}
        for head in self.store.defense_heads(version):
            if not self._reusable(head, defense, max(1, head.predictions), f"defense {defense.name}"):
                continue
            found = self.store.defense_columns(version, head.key)
            for answered in found[1]["versions"] if found is not None else ():
                sources[answered] = head.key
        return sources

    def slim(self, unit: Unit, record: Record) -> Record:
        """``record``, without its answers, CSV notes and run provenance when it is a defense record the store
        holds (the table reads them back from there, so a stage's records do not all sit in memory): its
        ``predictions`` are then empty."""
        if isinstance(unit, DefenseUnit) and isinstance(record, DefenseUnitRecord) and record.predictions and \
                self.store.objects.exists(self.store.defense_key(unit.version, record.key)):
            return replace(record, predictions={}, csv_notes=(), run=replace(record.run, provenance=None))
        return record

    def defense_records_of(self, outcome: Outcome) -> Callable[[str], Iterator[DefenseSource]]:
        """Defense name → its batches in the order their answers apply (:attr:`Outcome.defense_records`): those
        without answers (:meth:`slim`) read back from the store as head and columns, one at a time."""
        def records(name: str) -> Iterator[DefenseSource]:
            for record in outcome.defense_records.get(name, []):
                if record.predictions:
                    yield record
                    continue
                stored = self.store.defense_columns(self._defense_versions[name], record.key)
                if stored is not None:
                    yield stored
        return records

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
        log = log_name(unit)
        try:
            scratch, inputs, outputs = self._scratch(f"d-{key}")
        except OSError as exc:  # a failed run, not stored: a rerun tries again
            return failed_record(unit, self._not_run(log, exc), {}, "the defense did not run")
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
                        images=len(unit.versions), log_name=log)
        # Labels must be ASCII digits; one outside the dataset's classes is a wrong answer, not a missing one (the
        # dataset's num_classes is only its largest label + 1 by default).
        parsed = parse_predictions(output_file, expected=set(versions))
        predictions = {versions[name]: DefenseAnswer(label=answer.label, problem=answer.problem)
                       for name, answer in parsed.answers.items()}
        run = _with_cleanup(run, scratch, self.workspace.folder)
        result = DefenseUnitRecord(key=key, defense=defense.name, defense_hash=defense.content_hash, run=run,
                                   csv_notes=tuple(parsed.notes), predictions=predictions)
        self.save_record(unit, result)
        return result

    # -- everything ---------------------------------------------------------------------------------
    def execute(self, attacks: list[Submission], defenses: list[Submission], epsilons: list[int]) -> Outcome:
        """Run whatever is not in the store yet and return every record the scores need."""
        outcome = Outcome()
        precompile_library()
        clean_versions = self.clean_versions()
        outcome.clean_versions = clean_versions

        units = self.attack_units(attacks, epsilons)
        outcome.attack_records = self.stored_attack_records(units)
        reused = {record.key for record in outcome.attack_records}
        pending_attacks = [unit for unit in units if unit.key not in reused]
        outcome.reused["attack"] = len(outcome.attack_records)
        fresh = _of_kind(AttackUnitRecord, self.executor.map(self, "attacks", pending_attacks, clean_versions))
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
            self._defense_versions[defense.name] = self.version_of(defense)
            sources = self.cached_versions(defense)
            pending = [v for v in needed if v not in sources]
            used = sorted({sources[v] for v in needed if v in sources})
            outcome.defense_records[defense.name] = [_stored(defense, key) for key in used]
            outcome.reused["defense"] += len(used)
            for group in pack_versions(pending, originals, size=self.batch_size, seed=self.seed):
                defense_work.append(DefenseUnit(defense, group, self.version_of(defense)))
        fresh_defenses = _of_kind(DefenseUnitRecord, self.executor.map(self, "defenses", defense_work, clean_versions))
        outcome.executed["defense"] = len(fresh_defenses)
        outcome.fresh_keys.update(r.key for r in fresh_defenses)
        for defense_record in fresh_defenses:
            outcome.defense_records[defense_record.defense].append(defense_record)
        with self._lock:
            outcome.reruns = list(self._reruns.values())
        return outcome


def _stored(defense: Submission, key: str) -> DefenseUnitRecord:
    """A stand-in for a stored defense record (no answers: :meth:`Runner.defense_records_of` reads it back)."""
    return DefenseUnitRecord(key=key, defense=defense.name, defense_hash=defense.content_hash,
                             run=RunRecord(exit_code=None, timed_out=False, seconds=0.0, problem="", log=""))


def _of_kind(kind: type[_Record], records: list[Record]) -> list[_Record]:
    """``records``, all of which are of ``kind`` (an executor returns the records of the units it was given).

    Raises:
        TypeError: A record of another kind.
    """
    wrong = [type(record).__name__ for record in records if not isinstance(record, kind)]
    if wrong:
        raise TypeError(f"expected {kind.__name__} records, got {', '.join(sorted(set(wrong)))}")
    return [record for record in records if isinstance(record, kind)]


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
