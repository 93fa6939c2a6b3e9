"""The referee's whole path after the runs, at the NIPS 2017 final round's size and at 1/10 and 1/100 of it.

    python benchmarks/referee_scale.py                           # 1/100, 1/10, then the full size
    python benchmarks/referee_scale.py --scale 0.01 0.1          # the two small sizes only
    python benchmarks/referee_scale.py --store /work/bench           # write each size's store once, reuse it

A store under ``--store`` is reused when its world, record schema and store layout are the ones asked for; a
writing that was stopped resumes where it was (finished tasks are kept).

Synthetic stored records of (91 attacks + 65 targeted attacks) × 107 defenses × 5,000 images at one ε (16), one
draw: 107 × (5,000 clean + 156 × 5,000 attacked) ≈ 84 M predictions. A smaller size keeps every submission and
scales the images (5,000 × scale): the leaderboard, matrices and report keep their NIPS 2017 shape at every size,
so the ratios between sizes show how the cost grows with the predictions, and what does not grow with them (per
submission) shows as a constant.

The records are written by the real store code (:class:`harness.record_store.RecordStore` of a
:class:`harness.results_folder.ResultsFolder`), with predictions drawn from a seeded model (see :func:`answers`):
each defense has an accuracy and a robustness, each attack a strength (targeted ones a hit rate), each image a
difficulty; some runs fail, some answers are "no prediction" with a reason, some attacked images were substituted
by the clean one or clipped. Attack batches hold 100 images (the harness's default); defense batches hold at most
``--defense_batch`` versions (default 1,000; at most one version per image, as the planner packs them, so
min(1,000, images)): ≈ 84 k defense records at the full size instead of ≈ 840 k with 100-version batches. Every
image version is in the store (a record whose images are missing reads as absent); the versions the report's gallery
shows are real ``--image_size`` PNGs, every other one the same tiny PNG. Writing is not timed; it runs in
``--writers`` processes and its wall time is printed.

The timed part — tabulate (streaming the stored records), score, write the files (``write_results``), build the
report — runs in a fresh child process per size; its peak memory is the larger of the child's ``ru_maxrss``
(``os.wait4``) and the summed RSS of its process tree sampled every 50 ms. Target: the full size in ≤ 4 GB peak
and ≤ 5 minutes on the 2-core machine, growth linear or better.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import inspect
import json
import math
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: the harness beside it (PYTHONPATH may name another checkout)
    sys.path.append(str(ROOT))

FULL_IMAGES = 5000
EPSILON = 16
CLASSES = 1000  # ImageNet labels 1..1000 (the NIPS 2017 dev set's TrueLabel range)
#: Reasons of "no prediction" answers and of substituted attack outputs, as the harness words them.
ANSWER_PROBLEMS = ("missing row", "duplicate rows", "label 'n01440764' is not an integer")
SUBSTITUTION_PROBLEMS = ("missing output image", "image size 300x299, expected 299x299", "not a PNG file")


@dataclass(frozen=True)
class World:
    """One size of the synthetic competition (every field is part of what a reused store must match)."""

    images: int
    attacks: int = 91
    targeted: int = 65
    defenses: int = 107
    epsilon: int = EPSILON
    attack_batch: int = 100
    defense_batch: int = 1000
    image_size: int = 299
    seed: int = 0

    @property
    def attack_names(self) -> list[tuple[str, str]]:
        """(name, track) of every attack; names unpadded, so that text order is not natural order."""
        return ([(f"attack_{i + 1}", "attack") for i in range(self.attacks)]
                + [(f"targeted_{i + 1}", "targeted_attack") for i in range(self.targeted)])

    @property
    def defense_names(self) -> list[str]:
        return [f"defense_{i + 1}" for i in range(self.defenses)]

    @property
    def predictions(self) -> int:
        return self.defenses * self.images * (1 + self.attacks + self.targeted)


def _rng(world: World, *tags: int) -> np.random.Generator:
    return np.random.default_rng([world.seed, *tags])


def _hexes(rng: np.random.Generator, count: int) -> list[str]:
    """``count`` random 64-hex-digit strings (as SHA-256 pixel hashes)."""
    text = rng.bytes(32 * count).hex()
    return [text[64 * i:64 * (i + 1)] for i in range(count)]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def image_table(world: World) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(image ids sorted, TrueLabel, TargetClass ≠ TrueLabel, difficulty) of the dataset."""
    rng = _rng(world, 0)
    ids = sorted({f"{value:016x}" for value in rng.integers(0, 2 ** 63, size=world.images * 2)})
    ids = sorted(rng.choice(ids, size=world.images, replace=False).tolist())
    true = rng.integers(1, CLASSES + 1, size=world.images)
    target = (true - 1 + rng.integers(1, CLASSES, size=world.images)) % CLASSES + 1
    return ids, true, target, rng.normal(0.0, 1.0, size=world.images)


def clean_versions(world: World) -> list[str]:
    return _hexes(_rng(world, 1), world.images)


@dataclass
class Layer:
    """One attack's refereed outputs at the one ε (arrays over the images, in id order)."""

    strength: float
    hit_rate: float
    versions: list[str]
    substituted: np.ndarray  # bool: the clean image stands in
    problem: np.ndarray  # index into SUBSTITUTION_PROBLEMS (where substituted)
    failed_batches: np.ndarray  # bool per batch: the run failed (every output of the batch substituted)
    timed_out: np.ndarray  # bool per batch
    clipped: np.ndarray
    max_violation: np.ndarray
    linf: np.ndarray
    converted: bool  # outputs were RGBA (the referee converted them, with a note)


def layer(world: World, attack: int, clean: list[str]) -> Layer:
    """Attack ``attack``'s outputs: a strength in [0, 1], a few failed batches, a few substituted outputs; a fifth
    of the attacks ignore ε and are clipped back."""
    rng = _rng(world, 2, attack)
    n = world.images
    batches = math.ceil(n / world.attack_batch)
    failed = rng.random(batches) < 0.01
    timed_out = failed & (rng.random(batches) < 0.3)
    substituted = (rng.random(n) < (0.05 if rng.random() < 0.1 else 0.001)) | np.repeat(failed, world.attack_batch)[:n]
    problem = rng.integers(0, len(SUBSTITUTION_PROBLEMS), size=n)
    greedy = rng.random() < 0.2
    clipped = np.where(substituted | (not greedy), 0, rng.integers(1, 3 * world.image_size ** 2, size=n))
    versions = _hexes(rng, n)
    return Layer(strength=float(rng.uniform(0.0, 1.0)), hit_rate=float(rng.uniform(0.0, 0.8)),
                 versions=[clean[i] if substituted[i] else versions[i] for i in range(n)],
                 substituted=substituted, problem=problem, failed_batches=failed, timed_out=timed_out,
                 clipped=clipped, max_violation=np.where(clipped > 0, rng.integers(1, 100, size=n), 0),
                 linf=np.where(substituted, 0, rng.integers(world.epsilon // 2, world.epsilon + 1, size=n)),
                 converted=bool(rng.random() < 0.05))


def answers(world: World, defense: int, attack: int | None, strength: float, hit_rate: float,
            truth: tuple[np.ndarray, np.ndarray, np.ndarray], targeted: bool) -> np.ndarray:
    """Defense ``defense``'s labels on one layer (``attack`` None: the clean images): right with probability
    sigmoid(logit(accuracy) − difficulty − 4 · strength · (1 − robustness)); a targeted attack's wrong answers are
    its target with probability hit_rate · (1 − robustness); other wrong answers are a random other class."""
    params = _rng(world, 3, defense)
    accuracy, robustness = params.uniform(0.5, 0.95), params.uniform(0.0, 1.0)
    true, target, difficulty = truth
    rng = _rng(world, 4, defense, world.attacks + world.targeted if attack is None else attack)
    logit = math.log(accuracy / (1 - accuracy)) - difficulty - 4.0 * strength * (1.0 - robustness)
    right = rng.random(len(true)) < 1.0 / (1.0 + np.exp(-logit))
    wrong = (true - 1 + rng.integers(1, CLASSES, size=len(true))) % CLASSES + 1
    labels = np.where(right, true, wrong)
    if targeted:
        labels = np.where(~right & (rng.random(len(true)) < hit_rate * (1.0 - robustness)), target, labels)
    return labels


def gallery_ids(world: World, ids: list[str]) -> set[str]:
    """The image ids the report's gallery draws (:func:`harness.html_report.content.gallery_ids`, seed 0)."""
    from harness.html_report import content

    rng = random.Random(f"report-gallery:{world.seed}")
    return set(rng.sample(sorted(ids), min(getattr(content, "GALLERY_IMAGES", 4), len(ids))))


def _picture(world: World, image: int, attack: int | None) -> bytes:
    """A real ``image_size`` PNG: a smooth clean picture, or it moved by ±ε noise."""
    from submission_kit import contract

    size = world.image_size
    ramp = np.linspace(0, 200, size)
    picture = (ramp[None, :, None] + ramp[:, None, None] / 4 + 10 * (image % 5)).astype(np.int64)
    picture = np.broadcast_to(picture, (size, size, 3))
    if attack is not None:
        picture = picture + _rng(world, 5, attack, image).integers(-world.epsilon, world.epsilon + 1, picture.shape)
    return contract.encode_png(np.clip(picture, 0, 255).astype(np.uint8))


def _tiny() -> bytes:
    from submission_kit import contract

    return contract.encode_png(np.full((8, 8, 3), 128, dtype=np.uint8))


def _run(seconds: float, problem: str, log: str, *, exit_code: int = 0, timed_out: bool = False) -> Any:
    from harness.records import RunRecord

    return RunRecord(exit_code=exit_code, timed_out=timed_out, seconds=round(seconds, 3), problem=problem, log=log,
                     cpu_seconds=round(seconds * 0.9, 3))


def attack_key(world: World, name: str, batch: int) -> str:
    return _digest(f"attack:{world.seed}:{name}:{world.epsilon}:{batch}")


def defense_version(world: World, name: str) -> str:
    return _digest(f"defense-version:{world.seed}:{name}")


def write_attack(world: World, folder: Path, attack: int) -> int:
    """Attack ``attack``'s images and batch records; returns how many records."""
    from harness.records import AttackUnitRecord, ImageVerdict
    from harness.results_folder import ResultsFolder
    from harness.tracks import Track

    store = ResultsFolder(folder).store()
    ids, *_ = image_table(world)
    clean = clean_versions(world)
    shown = gallery_ids(world, ids)
    outputs = layer(world, attack, clean)
    name, track = world.attack_names[attack]
    tiny = _tiny()
    rng = _rng(world, 6, attack)
    for i, version in enumerate(outputs.versions):
        if not outputs.substituted[i]:
            store.put_image(_picture(world, i, attack) if ids[i] in shown else tiny, version)
    size = world.attack_batch
    for batch, start in enumerate(range(0, world.images, size)):
        key = attack_key(world, name, batch)
        verdicts = tuple(ImageVerdict(
            image_id=ids[i], version=outputs.versions[i],
            problem=SUBSTITUTION_PROBLEMS[0] if outputs.failed_batches[batch]
            else SUBSTITUTION_PROBLEMS[outputs.problem[i]] if outputs.substituted[i] else "",
            clipped_values=int(outputs.clipped[i]), max_violation=int(outputs.max_violation[i]),
            linf=int(outputs.linf[i]),
            note="mode RGBA converted to RGB" if outputs.converted and not outputs.substituted[i] else "")
            for i in range(start, min(start + size, world.images)))
        failed, timed_out = bool(outputs.failed_batches[batch]), bool(outputs.timed_out[batch])
        log = f"logs/attacks/{name}/eps{world.epsilon}_{key[:12]}.log"
        run = _run(float(rng.uniform(5, 60)), ("timed out after 500 s" if timed_out else "exit code 1") if failed
                   else "", log, exit_code=-9 if timed_out else 1 if failed else 0, timed_out=timed_out)
        store.put_attack_record(AttackUnitRecord(key=key, attack=name, attack_hash=_digest(f"hash:{name}"),
                                                 attack_type=Track(track), epsilon=world.epsilon, run=run,
                                                 images=verdicts))
    return world.images // size + (world.images % size > 0)


def write_defense(world: World, folder: Path, defense: int) -> int:
    """Defense ``defense``'s batch records over every distinct version (clean ones and every used attack
    output), shuffled into batches; returns how many records."""
    from harness.records import DefenseAnswer, DefenseUnitRecord
    from harness.results_folder import ResultsFolder

    store = ResultsFolder(folder).store()
    ids, true, target, difficulty = image_table(world)
    clean = clean_versions(world)
    truth = (true, target, difficulty)
    versions, labels = list(clean), [answers(world, defense, None, 0.0, 0.0, truth, targeted=False)]
    for attack, (_, track) in enumerate(world.attack_names):
        outputs = layer(world, attack, clean)
        used = ~outputs.substituted
        versions += [v for v, keep in zip(outputs.versions, used) if keep]
        labels.append(answers(world, defense, attack, outputs.strength, outputs.hit_rate, truth,
                              targeted=track == "targeted_attack")[used])
    label = np.concatenate(labels).tolist()
    rng = _rng(world, 7, defense)
    order = rng.permutation(len(versions))
    missing_rate = 0.03 if rng.random() < 0.05 else 0.001
    missing = rng.random(len(versions)) < missing_rate
    reason = rng.integers(0, len(ANSWER_PROBLEMS), size=len(versions))
    name = world.defense_names[defense]
    size = min(world.defense_batch, world.images)
    count = 0
    for count, start in enumerate(range(0, len(order), size), start=1):
        members = order[start:start + size]
        failed = rng.random() < 0.005
        predictions = {versions[i]: DefenseAnswer(None, "no output file") if failed
                       else DefenseAnswer(None, ANSWER_PROBLEMS[reason[i]]) if missing[i]
                       else DefenseAnswer(label[i], "") for i in members.tolist()}
        key = _digest(f"defense:{world.seed}:{name}:{count}")
        run = _run(float(rng.uniform(10, 120)), "exit code 1" if failed else "",
                   f"logs/defenses/{name}/{key[:12]}.log", exit_code=1 if failed else 0)
        store.put_defense_record(defense_version(world, name), DefenseUnitRecord(
            key=key, defense=name, defense_hash=_digest(f"hash:{name}"), run=run,
            csv_notes=("1 row names no given file",) if missing[members].any() and rng.random() < 0.1 else (),
            predictions=predictions))
    return count


def write_clean(world: World, folder: Path, data: Path) -> int:
    """The dataset's label file, the clean images, the clean-version map and the manifest."""
    from harness.manifest import DatasetEntry, Manifest, SubmissionEntry
    from harness.results_folder import ResultsFolder
    from harness.tracks import Track

    results = ResultsFolder(folder)
    store = results.store()
    ids, true, target, _ = image_table(world)
    clean = clean_versions(world)
    shown = gallery_ids(world, ids)
    tiny = _tiny()
    for i, version in enumerate(clean):
        store.put_image(_picture(world, i, None) if ids[i] in shown else tiny, version)
    dataset_hash = _digest(f"dataset:{world.seed}:{world.images}")
    store.put_clean_versions(dataset_hash, dict(zip(ids, clean)))
    data.mkdir(parents=True, exist_ok=True)
    with open(data / "dev_dataset.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ImageId", "TrueLabel", "TargetClass"])
        writer.writerows(zip(ids, true.tolist(), target.tolist()))
    submissions = [SubmissionEntry(name=name, track=Track(track), entry_point="run.sh",
                                   content_hash=_digest(f"hash:{name}")) for name, track in world.attack_names]
    submissions += [SubmissionEntry(name=name, track=Track.DEFENSE, entry_point="run.sh",
                                    content_hash=_digest(f"hash:{name}")) for name in world.defense_names]
    results.write_manifest(Manifest(
        harness_version="referee_scale", seed=world.seed, epsilons=(world.epsilon,), batch_size=world.attack_batch,
        dataset=DatasetEntry(root=str(data), content_hash=dataset_hash, images=world.images,
                             label_file="dev_dataset.csv", num_classes=CLASSES + 1),
        submissions=tuple(submissions), started="2017-09-01T00:00:00Z"))
    return len(clean)


def _task(job: tuple[str, int, dict[str, Any], str]) -> tuple[str, int, int]:
    kind, index, fields, folder = job
    world, size_folder = World(**fields), Path(folder)
    results = size_folder / "results"
    if kind == "clean":
        count = write_clean(world, results, size_folder / "data")
    elif kind == "attack":
        count = write_attack(world, results, index)
    else:
        count = write_defense(world, results, index)
    (size_folder / "done" / f"{kind}-{index}").write_text(str(count))
    return kind, index, count


def store_format() -> dict[str, int]:
    """The record schema and store layout the harness writes (a store of another format is written again)."""
    from harness import record_store, records

    return {"schema": int(records.SCHEMA), "layout": int(getattr(record_store, "LAYOUT", 1))}


def write_world(world: World, folder: Path, writers: int) -> float | None:
    """Write ``folder``'s store unless a finished one of the same world and store format is there (a writing that
    was stopped resumes: finished tasks are not redone); the seconds it took (None when reused)."""
    # the writers fork from here with the harness already imported: a checkout that changes while they write
    # cannot mix two versions of it
    from harness.html_report import content  # noqa: F401
    from harness.manifest import Manifest  # noqa: F401
    from harness.records import AttackUnitRecord  # noqa: F401
    from harness.results_folder import ResultsFolder
    from submission_kit import contract  # noqa: F401

    wanted = {"world": asdict(world), "format": store_format()}
    marker, started = folder / "world.json", folder / "writing.json"
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        return None
    if not (started.is_file() and json.loads(started.read_text()) == wanted):
        shutil.rmtree(folder, ignore_errors=True)
        (folder / "done").mkdir(parents=True)
        started.write_text(json.dumps(wanted))
    marker.unlink(missing_ok=True)
    start = time.perf_counter()
    jobs = ([("defense", d, asdict(world), str(folder)) for d in range(world.defenses)]
            + [("attack", a, asdict(world), str(folder)) for a in range(world.attacks + world.targeted)]
            + [("clean", 0, asdict(world), str(folder))])
    todo = [job for job in jobs if not (folder / "done" / f"{job[0]}-{job[1]}").is_file()]
    with multiprocessing.get_context("fork").Pool(writers) as pool:
        for done, _ in enumerate(pool.imap_unordered(_task, todo), start=1):
            if done % max(1, len(todo) // 10) == 0 or done == len(todo):
                print(f"  {done}/{len(todo)} writing tasks done, {time.perf_counter() - start:.0f} s",
                      file=sys.stderr, flush=True)
    store = ResultsFolder(folder / "results").store()
    if hasattr(store, "mark_layout"):  # a store written whole by this harness is of its layout
        store.mark_layout()
    records = {"attack": 0, "defense": 0, "clean": 0}
    for path in (folder / "done").iterdir():
        records[path.name.split("-")[0]] += int(path.read_text())
    (folder / "records.json").write_text(json.dumps(records))
    marker.write_text(json.dumps(wanted))
    return time.perf_counter() - start


# -- the timed part (in a fresh child process) ---------------------------------------------------------------------
def _status(field: str) -> int:
    """A /proc/self/status field in bytes (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def measure(folder: Path, out: Path) -> None:
    """Tabulate, score, write the files, build the report of ``folder``'s results; write the figures to ``out``."""
    from harness.competition import PARALLEL_TABULATION
    from harness.html_report.build import build_report
    from harness.parallelism import default_jobs
    from harness.report import write_results
    from harness.results_folder import ResultsFolder
    from harness.scoring import score_table
    from harness.tabulation import tabulate
    from harness.tracks import Track

    world = World(**json.loads((folder / "world.json").read_text())["world"])
    figures: dict[str, Any] = {"rss_after_imports": _status("VmRSS")}
    start = time.perf_counter()
    results = ResultsFolder(folder / "results")
    store = results.store()
    manifest = results.read_manifest()
    assert manifest is not None, "no manifest"

    def images() -> Any:
        with open(folder / "data" / "dev_dataset.csv", newline="") as handle:
            for row in csv.DictReader(handle):
                yield row["ImageId"], int(row["TrueLabel"]), int(row["TargetClass"])

    keys = [attack_key(world, name, batch) for name, _ in world.attack_names
            for batch in range(math.ceil(world.images / world.attack_batch))]

    def attack_records() -> Any:  # as the runner gathers them for a resumed run: images checked per folder
        pairs = (store.attack_records(keys) if hasattr(store, "attack_records")
                 else ((key, store.attack_record(key)) for key in keys))
        for key, record in pairs:
            if record is None:
                raise SystemExit(f"attack record {key} does not read")
            yield record

    def defense_records(name: str) -> Any:  # as the runner streams them: head and answer columns, one at a time
        version = defense_version(world, name)
        if not hasattr(store, "defense_columns"):
            yield from store.defense_records(version)
            return
        for key in store.defense_keys(version):
            stored = store.defense_columns(version, key)
            if stored is not None:
                yield stored

    clean = store.clean_versions(manifest.dataset.content_hash)
    assert clean is not None, "no clean versions"
    options: dict[str, Any] = {}
    if "processes" in inspect.signature(tabulate).parameters:  # as run_competition chooses them
        options["processes"] = default_jobs() if world.predictions >= PARALLEL_TABULATION else 1
    figures["processes"] = options.get("processes", 1)
    table = tabulate(images=images(), clean_versions=clean, attack_records=attack_records(),
                     defenses=world.defense_names, defense_records=defense_records,
                     attacks=[(name, Track(track)) for name, track in world.attack_names],
                     epsilons=list(manifest.epsilons), **options)
    stages = [("tabulate", time.perf_counter() - start, _status("VmHWM"))]
    start = time.perf_counter()
    scores = score_table(table, epsilons=list(manifest.epsilons))
    stages.append(("score", time.perf_counter() - start, _status("VmHWM")))
    start = time.perf_counter()
    write_results(results.root, scores=scores, table=table, aims={})
    stages.append(("files", time.perf_counter() - start, _status("VmHWM")))
    start = time.perf_counter()
    if "table" in inspect.signature(build_report).parameters:  # the run hands the report its table
        build_report(results.root, table=table)
    else:
        build_report(results.root)
    stages.append(("report", time.perf_counter() - start, _status("VmHWM")))
    figures["stages"] = stages
    predictions = table.predictions
    figures["predictions"] = int(predictions() if callable(predictions) else predictions)
    out.write_text(json.dumps(figures))


def _tree_rss(pid: int) -> int:
    """Summed RSS (bytes) of ``pid`` and its descendants (0 once gone)."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return total


def timed_child(folder: Path) -> dict[str, Any]:
    """Run :func:`measure` in a fresh interpreter; its figures plus ``peak`` (bytes, whole process tree) and
    ``wall``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figures.json"
        start = time.perf_counter()
        child = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--measure", str(folder),
                                  "--figures", str(out)])
        peak = [0]
        done = threading.Event()

        def poll() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], _tree_rss(child.pid))
                done.wait(0.05)

        watcher = threading.Thread(target=poll, daemon=True)
        watcher.start()
        _, status, usage = os.wait4(child.pid, 0)
        done.set()
        watcher.join()
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise SystemExit(f"the timed child failed (exit {child.returncode}) on {folder}")
        figures: dict[str, Any] = json.loads(out.read_text())
        figures["wall"] = time.perf_counter() - start
        figures["peak"] = max(peak[0], usage.ru_maxrss * 1024)
        return figures


def _print_table(rows: list[tuple[World, float | None, dict[str, int], dict[str, Any]]]) -> None:
    mb = 1 << 20
    print("| size | images | predictions | attack / defense records | writing | tabulate | score | files | report "
          "| total | peak (tree) | bytes / prediction |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for world, writing, records, figures in rows:
        stages = {name: seconds for name, seconds, _ in figures["stages"]}
        total = sum(stages.values())
        print(f"| 1/{round(FULL_IMAGES / world.images)} | {world.images:,} | {figures['predictions']:,} | "
              f"{records['attack']:,} / {records['defense']:,} | "
              f"{'reused' if writing is None else f'{writing:.0f} s'} | "
              + " | ".join(f"{stages[s]:.1f} s" for s in ("tabulate", "score", "files", "report"))
              + f" | {total:.1f} s | {figures['peak'] / mb:,.0f} MB | "
              f"{(figures['peak'] - figures['rss_after_imports']) / figures['predictions']:.1f} |")
    print("\nthe timed process's own high-water mark (VmHWM) at the end of each stage:")
    for world, _, _, figures in rows:
        print(f"  {world.images:,} images: after imports {figures['rss_after_imports'] / mb:,.0f} MB; "
              + ", ".join(f"{name} {peak / mb:,.0f} MB" for name, _, peak in figures["stages"]))
    print()
    for (small, _, _, a), (large, _, _, b) in zip(rows, rows[1:]):
        total_a = sum(s for _, s, _ in a["stages"])
        total_b = sum(s for _, s, _ in b["stages"])
        stage_ratios = ", ".join(f"{name} × {sb / sa:.1f}" if sa > 0 else f"{name} —"
                                 for (name, sa, _), (_, sb, _) in zip(a["stages"], b["stages"]))
        print(f"{small.images:,} → {large.images:,} images: predictions × {b['predictions'] / a['predictions']:.1f}, "
              f"time × {total_b / total_a:.1f} ({stage_ratios}), peak × {b['peak'] / a['peak']:.1f}, "
              f"peak above imports × {(b['peak'] - b['rss_after_imports']) / (a['peak'] - a['rss_after_imports']):.1f}")
    full = [figures for world, _, _, figures in rows if world.images == FULL_IMAGES]
    if full:
        seconds = sum(s for _, s, _ in full[0]["stages"])
        ok = full[0]["peak"] <= 4 << 30 and seconds <= 300
        print(f"target, full size: ≤ 4,096 MB peak and ≤ 300 s: {full[0]['peak'] / mb:,.0f} MB, {seconds:.0f} s — "
              f"{'met' if ok else 'NOT met'}")
    else:
        print("target, full size (≤ 4,096 MB peak, ≤ 300 s): not run (pass --scale 1)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, nargs="+", default=[0.01, 0.1, 1.0],
                        help="fractions of the full size's 5,000 images (default: 0.01 0.1 1)")
    parser.add_argument("--store", type=Path, help="folder of the sizes' stores (reused when already written)")
    parser.add_argument("--keep", action="store_true", help="keep the stores (the default with --store)")
    parser.add_argument("--writers", type=int, default=2, help="processes writing the records (default 2)")
    parser.add_argument("--defense_batch", type=int, default=1000, help="largest defense batch (default 1,000)")
    parser.add_argument("--image_size", type=int, default=299, help="side of the gallery's images (default 299)")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--figures", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure is not None:
        measure(args.measure, args.figures)
        return
    base = args.store or Path(tempfile.mkdtemp(prefix="referee_scale-"))
    rows = []
    try:
        for scale in sorted(args.scale):
            world = World(images=max(1, round(FULL_IMAGES * scale)), defense_batch=args.defense_batch,
                          image_size=args.image_size)
            folder = base / f"images{world.images}"
            print(f"{world.images:,} images ({world.predictions:,} predictions): writing the store in {folder} …",
                  file=sys.stderr)
            writing = write_world(world, folder, args.writers)
            records = json.loads((folder / "records.json").read_text())
            print(f"  {'reused' if writing is None else f'written in {writing:.0f} s'}; timing the referee …",
                  file=sys.stderr)
            rows.append((world, writing, records, timed_child(folder)))
            stages = rows[-1][3]["stages"]
            print("  " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds, _ in stages)
                  + f"; peak {rows[-1][3]['peak'] / (1 << 20):,.0f} MB", file=sys.stderr)
    finally:
        if args.store is None and not args.keep:
            shutil.rmtree(base, ignore_errors=True)
        elif args.store is None:
            print(f"stores kept in {base}", file=sys.stderr)
    _print_table(rows)


if __name__ == "__main__":
    main()
