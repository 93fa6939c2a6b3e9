"""Plan and execute the competition's work, feed the referee, build the per-image table.

Work comes in two stages of independent units:

1. **Attack batches** — (attack, ε, batch of images). The attack sees a folder holding only the batch's PNGs
   (plus ``target_class.csv`` for targeted attacks); every expected output goes through the referee and the
   refereed image is stored under the hash of its pixels.
2. **Defense batches** — each defense classifies every distinct image version (clean images and every
   attack's refereed images at every ε) that it has not classified before. Versions are packed into batches so
   that a batch never holds two versions of the same original image (a defense that saw ``x`` and ``x + δ``
   side by side could match them), and every file gets an opaque name that reveals neither the attack nor
   the original image. Predictions are cached per (defense content hash, image pixels).

Every unit's record is written atomically once the unit is complete; a rerun skips finished units, so a new
attack runs only itself plus the defenses on its images, and a changed defense runs only itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import queue
import random
import shutil
import subprocess
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from joblib import Parallel, delayed

from harness import contract
from harness.dataset import Dataset, ImageRecord
from harness.defense_output import parse_predictions
from harness.isolation import Limits, Protections
from harness.parallelism import threads_per_run
from harness.sandbox import RunRecord, precompile_library, run_submission
from harness.store import Store, key_of
from harness.submission import Submission, SubmissionType, content_hash
from harness.table import CLEAN, AttackImageRow, PredictionRow, RunRow

_HARNESS_DIR = Path(__file__).resolve().parent

#: Bump when the referee's verdicts could change, so stored attack batches are redone.
REFEREE_VERSION = "referee-1"
#: Bump when the defense batch protocol changes.
DEFENSE_PROTOCOL = "defense-1"


@dataclass(frozen=True)
class LimitPolicy:
    """Resource limits of a run over some number of images.

    The wall-clock limit is ``max(minimum_seconds, seconds_per_image × images)`` (NIPS 2017 allowed 500 s per
    batch of 100 images: 5 s per image); the CPU-time limit is ``cpu_factor`` times the wall-clock limit (a
    process may use several cores).

    Attributes:
        seconds_per_image: Wall-clock seconds allowed per image.
        minimum_seconds: Smallest wall-clock limit (process start-up, model loading).
        cpu_factor: CPU seconds allowed per wall-clock second of the limit.
        memory_mb: Memory per run.
        max_processes: Processes and threads per run at once.
        output_mb: Output folder size per run.
    """

    seconds_per_image: float = 5.0
    minimum_seconds: float = 60.0
    cpu_factor: float = 4.0
    memory_mb: int | None = 8192
    max_processes: int | None = 256
    output_mb: int | None = 1024

    def limits(self, images: int) -> Limits:
        """Limits for a run over ``images`` images."""
        wall = max(self.minimum_seconds, self.seconds_per_image * images)
        return Limits(wall_seconds=wall, cpu_seconds=wall * self.cpu_factor, memory_mb=self.memory_mb,
                      max_processes=self.max_processes, output_mb=self.output_mb)


class DevicePool:
    """Hands each running unit a CUDA_VISIBLE_DEVICES value, round-robin over the GPUs.

    Without GPUs every unit gets None (the variable is left out and submissions fall back to the CPU).

    Args:
        gpus: GPU ids visible to the harness.
        jobs: Parallel units; each GPU is shared by at most ``ceil(jobs / len(gpus))`` of them.
    """

    def __init__(self, gpus: list[str], jobs: int) -> None:
        self.gpus = list(gpus)
        self._queue: queue.Queue[str | None] = queue.Queue()
        for slot in range(max(jobs, 1)):
            self._queue.put(self.gpus[slot % len(self.gpus)] if self.gpus else None)

    @contextlib.contextmanager
    def acquire(self) -> Iterator[str | None]:
        """Borrow a device value for the duration of a run."""
        value = self._queue.get()
        try:
            yield value
        finally:
            self._queue.put(value)


def visible_gpus() -> list[str]:
    """GPU ids this machine offers (respects an existing CUDA_VISIBLE_DEVICES); [] without ``nvidia-smi``."""
    preset = os.environ.get("CUDA_VISIBLE_DEVICES")
    if preset is not None:
        return [g.strip() for g in preset.split(",") if g.strip() and g.strip() != "-1"]
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(listing.stdout.splitlines()) if line.startswith("GPU ")]


def default_scratch(root: Path) -> Path:
    """Scratch folder for ``root``'s runs: in RAM (``/dev/shm``) when available, else ``root/tmp``.

    Runs create and delete thousands of small files; on a disk mounted with ``discard`` each unlink costs
    milliseconds, in RAM microseconds.
    """
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        tag = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
        return shm / f"adv-harness-{tag}"
    return root / "tmp"


@dataclass(frozen=True)
class Workspace:
    """Where a competition keeps its files.

    Attributes:
        root: The results folder (``--output_dir``).
        scratch: Per-unit scratch folders, removed after each unit (default: :func:`default_scratch`).
    """

    root: Path
    scratch: Path = field(default=Path())

    def __post_init__(self) -> None:
        if self.scratch == Path():
            object.__setattr__(self, "scratch", default_scratch(self.root))

    @property
    def store(self) -> Store:
        return Store(self.root / "store")


@dataclass(frozen=True)
class AttackUnit:
    """One attack batch: an attack at one ε over a batch of images.

    Attributes:
        attack: The attack.
        epsilon: ε in 0–255 units.
        images: The batch.
        version: What the run depends on besides the images: the attack's content and the harness package's
            (sample submissions import it, and its zoo weights).
    """

    attack: Submission
    epsilon: int
    images: tuple[ImageRecord, ...]
    version: str

    @property
    def key(self) -> str:
        targeted = self.attack.type is SubmissionType.TARGETED_ATTACK
        return key_of(REFEREE_VERSION, self.version, self.epsilon, targeted,
                      *((r.image_id, r.sha256, r.target_class if targeted else "") for r in self.images))


@dataclass(frozen=True)
class DefenseUnit:
    """One defense batch: distinct image versions (pixel hashes), at most one per original image.

    ``version`` plays the same role as :attr:`AttackUnit.version`.
    """

    defense: Submission
    versions: tuple[str, ...]
    version: str

    @property
    def key(self) -> str:
        return key_of(DEFENSE_PROTOCOL, self.version, *sorted(self.versions))


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

    attack_records: list[dict[str, Any]] = field(default_factory=list)
    defense_predictions: dict[str, dict[str, tuple[int | None, str]]] = field(default_factory=dict)
    defense_records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    executed: dict[str, int] = field(default_factory=lambda: {"attack": 0, "defense": 0})
    reused: dict[str, int] = field(default_factory=lambda: {"attack": 0, "defense": 0})
    clean_versions: dict[str, str] = field(default_factory=dict)
    fresh_keys: set[str] = field(default_factory=set)


def batches(images: tuple[ImageRecord, ...], size: int) -> list[tuple[ImageRecord, ...]]:
    """Consecutive batches of at most ``size`` images, in image-id order."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    return [images[i:i + size] for i in range(0, len(images), size)]


def pack_versions(versions: list[str], originals: dict[str, set[str]], *, size: int,
                  seed: int) -> list[tuple[str, ...]]:
    """Pack image versions into defense batches holding at most one version of each original image.

    Args:
        versions: Pixel hashes to classify.
        originals: Pixel hash → the original image ids it is a version of.
        size: Largest batch.
        seed: Shuffles the order so batches mix attacks and ε (deterministically).

    Returns:
        Batches of pixel hashes, each sorted.
    """
    order = sorted(versions)
    random.Random(seed).shuffle(order)
    packed: list[tuple[list[str], set[str]]] = []
    for version in order:
        owners = originals[version]
        for members, taken in packed:
            if len(members) < size and not (owners & taken):
                members.append(version)
                taken |= owners
                break
        else:
            packed.append(([version], set(owners)))
    return [tuple(sorted(members)) for members, _ in packed]


def opaque_name(version: str, *, secret: bytes) -> str:
    """File name under which a defense sees an image: a keyed hash, unlinkable without ``secret``."""
    return hmac.new(secret, version.encode(), hashlib.sha256).hexdigest()[:24] + ".png"


class Runner:
    """Executes attack and defense units for one dataset into one results folder.

    Args:
        dataset: The images and labels.
        workspace: The results folder.
        seed: Seeds batch shuffling and opaque names.
        batch_size: Images per attack batch and per defense batch.
        jobs: Units run in parallel.
        policy: Per-run resource limits.
        devices: GPU assignment.
        protections: The sandbox in use (:func:`harness.isolation.probe`).
        progress: Called with (stage description, units) and returns a callback to tick per finished unit, with
            ``failed=True`` for a run that ended with a problem (:func:`harness.progress.reporter`).
    """

    def __init__(self, dataset: Dataset, workspace: Workspace, *, seed: int, batch_size: int, jobs: int,
                 policy: LimitPolicy, devices: DevicePool, protections: Protections,
                 progress: Callable[[str, int], Callable[..., None]] | None = None) -> None:
        self.dataset = dataset
        self.workspace = workspace
        self.store = workspace.store
        self.seed = seed
        self.batch_size = batch_size
        self.jobs = jobs
        self.policy = policy
        self.devices = devices
        self.protections = protections
        self.harness_hash = content_hash(_HARNESS_DIR)
        # Parallel runs share the cores: each gets its share of threads (torch oversubscribed is many times slower).
        self.threads = threads_per_run(jobs)
        self.progress = progress or (lambda _label, _total: (lambda failed=False: None))

    def version_of(self, submission: Submission) -> str:
        """Key of everything a submission's run depends on besides its inputs: its folder and the harness package
        (which sandboxed submissions can import, zoo weights included)."""
        return key_of(submission.content_hash, self.harness_hash)

    # -- one process ---------------------------------------------------------------------------------
    def _scratch(self, name: str) -> tuple[Path, Path, Path]:
        """A fresh scratch folder with empty ``input`` and ``output`` folders: (scratch, input, output)."""
        scratch = self.workspace.scratch / name
        shutil.rmtree(scratch, ignore_errors=True)
        for folder in ("input", "output", "work"):
            (scratch / folder).mkdir(parents=True)
        return scratch, scratch / "input", scratch / "output"

    def _run(self, submission: Submission, args: list[str], *, scratch: Path, images: int,
             log_name: str) -> RunRecord:
        """Run a submission over a scratch folder's input, on a borrowed device, under the policy's limits."""
        with self.devices.acquire() as gpu:
            return run_submission(submission, args, inputs=scratch / "input", outputs=scratch / "output",
                                  workdir=scratch / "work", limits=self.policy.limits(images),
                                  log_path=self.workspace.root / log_name, log_name=log_name, gpu=gpu,
                                  protections=self.protections, threads=self.threads)

    # -- clean images -------------------------------------------------------------------------------
    def clean_versions(self) -> dict[str, str]:
        """Store every clean image by pixel hash (re-encoded: no metadata reaches a defense); return image id →
        pixel hash. The map is kept per dataset content hash, so a rerun decodes nothing."""
        cache = self.store.root / "clean_versions" / f"{self.dataset.content_hash}.json"
        known = self.store.read(cache)
        if known is not None and all(self.store.image_path(v).exists() for v in known.values()):
            return {str(k): str(v) for k, v in known.items()}
        versions = {}
        for record in self.dataset.images:
            image = contract.read_png(self.dataset.path(record))
            version = contract.pixel_hash(image)
            if not self.store.image_path(version).exists():
                self.store.put_image(contract.encode_png(image), version)
            versions[record.image_id] = version
        self.store.write(cache, versions)
        return versions

    # -- attacks ------------------------------------------------------------------------------------
    def attack_units(self, attacks: list[Submission], epsilons: list[int]) -> list[AttackUnit]:
        """Every (attack, ε, batch) unit, in a stable order."""
        groups = batches(self.dataset.images, self.batch_size)
        return [AttackUnit(attack, eps, group, self.version_of(attack))
                for attack in attacks for eps in epsilons for group in groups]

    def run_attack_unit(self, unit: AttackUnit, clean_versions: dict[str, str]) -> dict[str, Any]:
        """Run one attack batch, referee its outputs, store the record; return the record."""
        attack, eps = unit.attack, unit.epsilon
        key = unit.key
        scratch, inputs, outputs = self._scratch(f"a-{key}")
        clean_images = {}
        for record in unit.images:
            data = self.dataset.path(record).read_bytes()
            (inputs / record.file_name).write_bytes(data)
            clean_images[record.image_id] = contract.decode_png(data, what=record.file_name)
        if attack.type is SubmissionType.TARGETED_ATTACK:
            (inputs / "target_class.csv").write_text(
                "".join(f"{r.file_name},{r.target_class}\n" for r in unit.images))
        log_name = f"logs/attacks/{attack.name}/eps{eps}_{key[:12]}.log"
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
                if not self.store.image_path(version).exists():
                    self.store.put_image(contract.encode_png(verdict.image), version)
            images.append({"image_id": record.image_id, "version": version, "problem": verdict.problem,
                           "clipped_values": verdict.clipped_values, "max_violation": verdict.max_violation,
                           "linf": verdict.linf})
        result = {"key": key, "attack": attack.name, "attack_hash": attack.content_hash,
                  "attack_type": attack.type.value, "epsilon": eps, "run": run.to_json(), "images": images}
        self.store.write(self.store.attack_record_path(key), result)
        shutil.rmtree(scratch, ignore_errors=True)
        return result

    # -- defenses -----------------------------------------------------------------------------------
    def cached_predictions(self, defense: Submission) -> tuple[dict[str, tuple[int | None, str]],
                                                              dict[str, dict[str, Any]]]:
        """Stored predictions of this defense version: (version → (label, problem), version → record)."""
        predictions: dict[str, tuple[int | None, str]] = {}
        sources: dict[str, dict[str, Any]] = {}
        for record in self.store.defense_records(self.version_of(defense)):
            for version, answer in record["predictions"].items():
                predictions[version] = (answer["label"], answer["problem"])
                sources[version] = record
        return predictions, sources

    def run_defense_unit(self, unit: DefenseUnit) -> dict[str, Any]:
        """Run one defense batch under opaque names, parse its CSV, store the record; return the record."""
        defense = unit.defense
        key = unit.key
        secret = hashlib.sha256(f"opaque-names:{self.seed}:{unit.version}".encode()).digest()
        scratch, inputs, outputs = self._scratch(f"d-{key}")
        names = {}
        for version in unit.versions:
            name = opaque_name(version, secret=secret)
            shutil.copyfile(self.store.image_path(version), inputs / name)
            names[name] = version
        output_file = outputs / "result.csv"
        log_name = f"logs/defenses/{defense.name}/{key[:12]}.log"
        run = self._run(defense, ["{input}", "{output}/" + output_file.name], scratch=scratch,
                        images=len(unit.versions), log_name=log_name)
        parsed = parse_predictions(output_file, expected=set(names))
        predictions = {names[name]: {"label": answer.label, "problem": answer.problem}
                       for name, answer in parsed.answers.items()}
        result = {"key": key, "defense": defense.name, "defense_hash": defense.content_hash,
                  "run": run.to_json(), "csv_notes": parsed.notes, "predictions": predictions}
        self.store.write(self.store.defense_record_path(unit.version, key), result)
        shutil.rmtree(scratch, ignore_errors=True)
        return result

    # -- everything ---------------------------------------------------------------------------------
    def _parallel(self, label: str, work: list[Callable[[], dict[str, Any]]]) -> list[dict[str, Any]]:
        """Run units on ``jobs + 1`` threads. At most ``jobs`` submission processes run at once (the device pool
        has ``jobs`` slots, held only while a process runs), so the extra thread pipelines the harness's own
        work — preparing the next unit's inputs, refereeing and storing the last unit's outputs — with the
        running process. Results come back in the order of ``work``."""
        tick = self.progress(label, len(work))
        lock = threading.Lock()

        def call(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
            result = fn()
            with lock:
                tick(failed=bool(result["run"]["problem"]))
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
            record = self.store.read(self.store.attack_record_path(unit.key))
            if record is not None and not all(self.store.image_path(i["version"]).exists()
                                              for i in record["images"]):
                record = None  # an image it points to was lost: redo the unit
            if record is None:
                pending_attacks.append(unit)
            else:
                outcome.attack_records.append(record)
        outcome.reused["attack"] = len(outcome.attack_records)
        fresh = self._parallel("attacks", [
            (lambda u=unit: self.run_attack_unit(u, clean_versions)) for unit in pending_attacks])
        outcome.executed["attack"] = len(fresh)
        outcome.fresh_keys.update(r["key"] for r in fresh)
        outcome.attack_records += fresh
        outcome.attack_records.sort(key=lambda r: (r["attack"], r["epsilon"], r["images"][0]["image_id"]))

        originals: dict[str, set[str]] = defaultdict(set)
        for image_id, version in clean_versions.items():
            originals[version].add(image_id)
        for record in outcome.attack_records:
            for image in record["images"]:
                originals[image["version"]].add(image["image_id"])
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
        fresh = self._parallel("defenses", [(lambda u=unit: self.run_defense_unit(u)) for unit in defense_work])
        outcome.executed["defense"] = len(fresh)
        outcome.fresh_keys.update(r["key"] for r in fresh)
        for record in fresh:
            outcome.defense_records[record["defense"]].append(record)
            table = outcome.defense_predictions[record["defense"]]
            for version, answer in record["predictions"].items():
                table[version] = (answer["label"], answer["problem"])
        for records in outcome.defense_records.values():
            records.sort(key=lambda r: r["key"])
        return outcome


def build_tables(dataset: Dataset, outcome: Outcome, defenses: list[Submission]
                 ) -> tuple[list[PredictionRow], list[AttackImageRow], list[RunRow]]:
    """Turn an :class:`Outcome` into the per-image table (predictions, referee rows, run rows)."""
    labels = dataset.by_id()
    predictions: list[PredictionRow] = []
    attack_rows: list[AttackImageRow] = []
    runs: list[RunRow] = []

    def answer(defense: str, version: str) -> tuple[int | None, str]:
        return outcome.defense_predictions.get(defense, {}).get(version, (None, "not classified"))

    for defense in defenses:
        for record in dataset.images:
            label, problem = answer(defense.name, outcome.clean_versions[record.image_id])
            predictions.append(PredictionRow(
                epsilon=None, attack="", attack_type=CLEAN, defense=defense.name, image_id=record.image_id,
                true_label=record.true_label, target_class=record.target_class, prediction=label,
                problem=problem))
    for record in outcome.attack_records:
        run = RunRecord.from_json(record["run"])
        runs.append(RunRow(kind=record["attack_type"], name=record["attack"], epsilon=record["epsilon"],
                           batch=record["key"], images=len(record["images"]), exit_code=run.exit_code,
                           timed_out=run.timed_out, seconds=run.seconds, problem=run.problem, log=run.log))
        for image in record["images"]:
            attack_rows.append(AttackImageRow(
                epsilon=record["epsilon"], attack=record["attack"], attack_type=record["attack_type"],
                image_id=image["image_id"], problem=image["problem"], clipped_values=image["clipped_values"],
                max_violation=image["max_violation"], linf=image["linf"]))
            truth = labels[image["image_id"]]
            for defense in defenses:
                label, problem = answer(defense.name, image["version"])
                predictions.append(PredictionRow(
                    epsilon=record["epsilon"], attack=record["attack"], attack_type=record["attack_type"],
                    defense=defense.name, image_id=image["image_id"], true_label=truth.true_label,
                    target_class=truth.target_class, prediction=label, problem=problem))
    for defense in defenses:
        for record in outcome.defense_records.get(defense.name, []):
            run = RunRecord.from_json(record["run"])
            runs.append(RunRow(kind="defense", name=defense.name, epsilon=None, batch=record["key"],
                               images=len(record["predictions"]), exit_code=run.exit_code,
                               timed_out=run.timed_out, seconds=run.seconds, problem=run.problem, log=run.log))
    predictions.sort(key=lambda r: (r.epsilon if r.epsilon is not None else -1, r.attack, r.defense, r.image_id))
    attack_rows.sort(key=lambda r: (r.epsilon, r.attack, r.image_id))
    runs.sort(key=lambda r: (r.kind, r.name, r.epsilon if r.epsilon is not None else -1, r.batch))
    return predictions, attack_rows, runs
