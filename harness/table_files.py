"""The per-image table's files: ``per_image.parquet`` (always), ``per_image.csv`` (small competitions or on request),
``attack_images.csv`` and ``runs.csv`` — written streamed from a :class:`PerImageTable` and read back into one.

``per_image.parquet`` holds the long form, one row per (ε, attack, defense, image, draw), in the order of
``per_image.csv`` (clean rows first, then ε, attack, defense and image id ascending), one row group per (ε, attack)
block; its schema is :data:`PER_IMAGE_SCHEMA` (``docs/results_layout.md``). Names and messages are dictionary
columns, ε int16, labels int32, "no prediction" a null ``prediction``. It is written with pyarrow (Apache Arrow's
Parquet writer: streamed row groups, dictionary encoding, zstd) so the table never exists as rows in memory.

A results folder written before Parquet (``per_image.csv`` only) is read from its CSV.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from harness.manifest import Manifest
from harness.per_image import (
    ABSENT,
    CLEAN_CODE,
    NO_PREDICTION,
    ImageColumns,
    PerImageTable,
    RunColumns,
    StringPool,
    VersionColumns,
)
from harness.results_folder import ATTACK_IMAGES, PER_IMAGE, PER_IMAGE_PARQUET, RUNS, ResultsFolder
from harness.store import atomic_write_text
from harness.table import CLEAN, AttackImageRow, PredictionRow, RunRow, read_csv, to_csv
from harness.tabulation import table_from_rows
from harness.tracks import Track

__all__ = ["PER_IMAGE_CSV_LIMIT", "PER_IMAGE_SCHEMA", "load_table", "read_per_image", "write_attack_images",
           "write_per_image_csv", "write_per_image_parquet", "write_runs"]

#: Prediction rows up to which ``per_image.csv`` is written beside the Parquet file unless asked otherwise.
PER_IMAGE_CSV_LIMIT = 1_000_000

_NAME = pa.dictionary(pa.int32(), pa.string())
#: Columns of ``per_image.parquet``: those of ``per_image.csv`` and ``draw`` (always 0 for now: the repetition of a
#: randomized defense's run).
PER_IMAGE_SCHEMA = pa.schema([
    ("epsilon", pa.int16()), ("attack", _NAME), ("attack_type", _NAME), ("defense", _NAME), ("image_id", _NAME),
    ("true_label", pa.int32()), ("target_class", pa.int32()), ("prediction", pa.int32()), ("problem", _NAME),
    ("draw", pa.int16())])
_TYPES = (CLEAN, Track.ATTACK.value, Track.TARGETED_ATTACK.value)


def _blocks(table: PerImageTable) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(version rows, defense indexes, row-major mask of present rows) per (ε, attack) block, in file order."""
    defense_order = table.defense_order()
    for block in table.block_order():
        labels = table.label[np.ix_(defense_order, block)]
        yield block, defense_order, (labels != ABSENT).ravel()


def _batch(table: PerImageTable, block: np.ndarray, defense_order: np.ndarray, present: np.ndarray,
           dictionaries: dict[str, pa.Array]) -> pa.RecordBatch:
    versions, images = table.versions, table.images
    n_def, n_rows = len(defense_order), len(block)
    attack = versions.attack[block]
    image = np.tile(versions.image[block], n_def)[present]
    labels = table.label[np.ix_(defense_order, block)].ravel()[present]
    problems = table.answer_problem[np.ix_(defense_order, block)].ravel()[present]
    clean = attack == CLEAN_CODE
    type_code = np.where(clean, 0, np.array([1 if t is Track.ATTACK else 2 for t in table.attack_tracks] or [0],
                                            dtype=np.int32)[np.maximum(attack, 0)])

    def column(values: np.ndarray, name: str) -> pa.DictionaryArray:
        return pa.DictionaryArray.from_arrays(pa.array(values.astype(np.int32)), dictionaries[name])

    return pa.RecordBatch.from_arrays([
        pa.array(np.tile(versions.epsilon[block], n_def)[present], pa.int16(), mask=np.tile(clean, n_def)[present]),
        column(np.tile(np.where(clean, 0, attack + 1), n_def)[present], "attack"),
        column(np.tile(type_code, n_def)[present], "attack_type"),
        column(np.repeat(defense_order, n_rows)[present], "defense"),
        column(image, "image_id"),
        pa.array(images.true_label[image], pa.int32()), pa.array(images.target_class[image], pa.int32()),
        pa.array(labels, pa.int32(), mask=labels == NO_PREDICTION),
        column(problems, "problem"),
        pa.array(np.tile(versions.draw[block], n_def)[present], pa.int16()),
    ], schema=PER_IMAGE_SCHEMA)


def _dictionaries(table: PerImageTable) -> dict[str, pa.Array]:
    return {"attack": pa.array(["", *table.attacks], pa.string()), "attack_type": pa.array(_TYPES, pa.string()),
            "defense": pa.array(table.defenses, pa.string()), "image_id": pa.array(table.images.ids, pa.string()),
            "problem": pa.array(table.strings, pa.string())}


def _atomic(path: Path) -> tuple[Path, int]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    return Path(tmp), fd


def write_per_image_parquet(path: Path, table: PerImageTable) -> int:
    """Write the long form as Parquet, one row group per (ε, attack) block, atomically (a temporary file renamed).

    Returns:
        The rows written (the table's prediction rows).
    """
    tmp, fd = _atomic(path)
    os.close(fd)
    dictionaries = _dictionaries(table)
    written = 0
    try:
        with pq.ParquetWriter(tmp, PER_IMAGE_SCHEMA, compression="zstd") as writer:
            for block, defense_order, present in _blocks(table):
                if not present.any():
                    continue
                batch = _batch(table, block, defense_order, present, dictionaries)
                writer.write_batch(batch)
                written += batch.num_rows
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return written


def write_per_image_csv(path: Path, table: PerImageTable) -> None:
    """Write ``per_image.csv`` (the columns of :class:`harness.table.PredictionRow`), streamed, atomically."""
    tmp, fd = _atomic(path)
    versions, images, strings = table.versions, table.images, table.strings
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["epsilon", "attack", "attack_type", "defense", "image_id", "true_label", "target_class",
                             "prediction", "problem"])
            for block, defense_order, present in _blocks(table):
                attack = int(versions.attack[block[0]])
                clean = attack == CLEAN_CODE
                eps = "" if clean else str(int(versions.epsilon[block[0]]))
                name = "" if clean else table.attacks[attack]
                kind = CLEAN if clean else table.attack_tracks[attack].value
                ids = [images.ids[i] for i in versions.image[block]]
                truth = [str(int(images.true_label[i])) for i in versions.image[block]]
                target = [str(int(images.target_class[i])) for i in versions.image[block]]
                mask = present.reshape(len(defense_order), len(block))
                for row_in_order, d in enumerate(defense_order):
                    labels = table.label[d, block].tolist()
                    problems = table.answer_problem[d, block].tolist()
                    keep = mask[row_in_order]
                    writer.writerows(
                        (eps, name, kind, table.defenses[d], ids[i], truth[i], target[i],
                         "" if labels[i] == NO_PREDICTION else labels[i], strings[problems[i]])
                        for i in range(len(block)) if keep[i])
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_attack_images(path: Path, table: PerImageTable) -> None:
    """Write ``attack_images.csv`` (the referee's rows) atomically."""
    atomic_write_text(path, to_csv(table.attack_image_rows(), AttackImageRow))


def write_runs(path: Path, table: PerImageTable) -> None:
    """Write ``runs.csv`` atomically."""
    atomic_write_text(path, to_csv(table.run_rows(), RunRow))


# -- reading ------------------------------------------------------------------------------------------------------
def read_per_image(*, parquet: Path, csv_file: Path, attack_images: Path, runs: Path,
                   defenses: list[str], attacks: list[tuple[str, Track]], epsilons: list[int]) -> PerImageTable:
    """The table of a results folder: from ``per_image.parquet`` when there is one, else ``per_image.csv``.

    Raises:
        ValueError: A file that is not a table of this harness (wrong columns or values).
        OSError: A file cannot be read.
    """
    attack_rows = read_csv(attack_images, AttackImageRow)
    run_rows = read_csv(runs, RunRow)
    if not parquet.is_file():
        return table_from_rows(read_csv(csv_file, PredictionRow), attack_rows, run_rows, defenses=defenses,
                               attacks=[(name, track.value) for name, track in attacks], epsilons=epsilons)
    return _read_parquet(parquet, attack_rows, run_rows, defenses=defenses, attacks=attacks, epsilons=epsilons)


def _codes(array: pa.ChunkedArray | pa.Array, lookup: dict[str, int]) -> np.ndarray:
    """Dictionary column → our codes (``lookup``: value → code)."""
    chunks = array.chunks if isinstance(array, pa.ChunkedArray) else [array]
    parts = []
    for chunk in chunks:
        if not isinstance(chunk, pa.DictionaryArray):
            chunk = chunk.dictionary_encode()
        mapping = np.array([lookup[value] for value in chunk.dictionary.to_pylist()] or [0], dtype=np.int64)
        parts.append(mapping[chunk.indices.to_numpy(zero_copy_only=False)])
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


class _Lookup(dict[str, int]):
    """value → code, growing a :class:`StringPool` for values first seen."""

    def __init__(self, pool: StringPool) -> None:
        super().__init__()
        self.pool = pool

    def __missing__(self, key: str) -> int:
        code = self[key] = self.pool.code(key)
        return code


def _read_parquet(path: Path, attack_rows: list[AttackImageRow], run_rows: list[RunRow], *, defenses: list[str],
                  attacks: list[tuple[str, Track]], epsilons: list[int]) -> PerImageTable:
    source = pq.ParquetFile(path)
    if not source.schema_arrow.equals(PER_IMAGE_SCHEMA, check_metadata=False):
        raise ValueError(f"{path}: columns {source.schema_arrow.names} are not those of this harness's "
                         f"per_image.parquet ({PER_IMAGE_SCHEMA.names})")
    # names: the manifest's first, then any only the rows hold
    defense_names = list(defenses)
    attack_names = [name for name, _ in attacks]
    tracks = {name: track for name, track in attacks}
    truth: dict[str, tuple[int, int]] = {}
    extra_defenses: set[str] = set()
    for group in range(source.num_row_groups):
        part = source.read_row_group(group, columns=["attack", "attack_type", "defense", "image_id", "true_label",
                                                     "target_class"])
        extra_defenses |= set(part.column("defense").unique().to_pylist()) - set(defense_names)
        kinds = part.select(["attack", "attack_type"]).group_by(["attack", "attack_type"]).aggregate([])
        for name, kind in zip(kinds.column("attack").to_pylist(), kinds.column("attack_type").to_pylist(),
                              strict=True):
            if kind != CLEAN and name not in tracks:
                tracks[name] = Track(kind)
        pairs = part.select(["image_id", "true_label", "target_class"]).group_by(
            ["image_id", "true_label", "target_class"]).aggregate([])
        for image_id, true_label, target in zip(*(pairs.column(c).to_pylist() for c in pairs.column_names),
                                                strict=True):
            known = truth.setdefault(image_id, (true_label, target))
            if known != (true_label, target):
                raise ValueError(f"{path}: image {image_id!r} has two TrueLabel/TargetClass pairs")
    for row in attack_rows:
        truth.setdefault(row.image_id, (0, 0))
        if row.attack not in tracks:
            tracks[row.attack] = Track(row.attack_type)
    defense_names += sorted(extra_defenses)
    attack_names += sorted(set(tracks) - set(attack_names))
    ids = sorted(truth)
    images = ImageColumns(ids=tuple(ids), true_label=np.array([truth[i][0] for i in ids], dtype=np.int32),
                          target_class=np.array([truth[i][1] for i in ids], dtype=np.int32))
    pool = StringPool()
    image_lookup = {image_id: i for i, image_id in enumerate(ids)}
    attack_lookup = {"": CLEAN_CODE, **{name: i for i, name in enumerate(attack_names)}}
    defense_lookup = {name: i for i, name in enumerate(defense_names)}
    n_images, n_attacks = max(1, len(ids)), len(attack_names) + 1

    def keys(eps: np.ndarray, attack: np.ndarray, image: np.ndarray) -> np.ndarray:
        key: np.ndarray = ((eps.astype(np.int64) + 1) * n_attacks + (attack.astype(np.int64) + 1)) * n_images
        return np.asarray(key + image, dtype=np.int64)

    # pass 1: the version rows
    found = [keys(np.array([r.epsilon for r in attack_rows], dtype=np.int64),
                  np.array([attack_lookup[r.attack] for r in attack_rows], dtype=np.int64),
                  np.array([image_lookup[r.image_id] for r in attack_rows], dtype=np.int64))]
    for group in range(source.num_row_groups):
        part = source.read_row_group(group, columns=["epsilon", "attack", "image_id"])
        attack = _codes(part.column("attack"), attack_lookup)
        eps = part.column("epsilon").to_numpy(zero_copy_only=False)
        eps = np.where(attack == CLEAN_CODE, CLEAN_CODE, np.nan_to_num(eps.astype(np.float64), nan=CLEAN_CODE))
        found.append(np.unique(keys(eps.astype(np.int64), attack, _codes(part.column("image_id"), image_lookup))))
    version_keys = np.unique(np.concatenate(found))
    image = (version_keys % n_images).astype(np.int32)
    attack = (version_keys // n_images % n_attacks - 1).astype(np.int16)
    eps = (version_keys // n_images // n_attacks - 1).astype(np.int16)
    attack_rank = np.argsort(np.argsort(np.array(attack_names, dtype=object), kind="stable"), kind="stable")
    rank = np.where(attack == CLEAN_CODE, -1, attack_rank[np.maximum(attack, 0)] if len(attack_rank) else -1)
    order = np.lexsort((image, rank, eps))
    version_keys, image, attack, eps = version_keys[order], image[order], attack[order], eps[order]
    count = len(version_keys)
    zeros = np.zeros(count, dtype=np.int32)
    verdict, problem, note = np.zeros(count, dtype=np.bool_), zeros.copy(), zeros.copy()
    clipped, violation, linf = np.zeros(count, dtype=np.int64), np.zeros(count, np.int16), np.zeros(count, np.int16)
    position = np.argsort(version_keys)  # version_keys sorted by (ε, rank, image), not by value

    def rows_of(key_values: np.ndarray) -> np.ndarray:
        return position[np.searchsorted(version_keys[position], key_values)]

    referee = rows_of(found[0])
    for at, row in zip(referee.tolist(), attack_rows, strict=True):
        verdict[at] = True
        problem[at], note[at] = pool.code(row.problem), pool.code(row.note)
        clipped[at], violation[at], linf[at] = row.clipped_values, row.max_violation, row.linf
    versions = VersionColumns(epsilon=eps, attack=attack, image=image, draw=np.zeros(count, np.int16),
                              verdict=verdict, problem=problem, clipped_values=clipped, max_violation=violation,
                              linf=linf, note=note)
    # pass 2: the answers
    label = np.full((len(defense_names), count), ABSENT, dtype=np.int32)
    answer_problem = np.zeros((len(defense_names), count), dtype=np.int32)
    problems = _Lookup(pool)
    for group in range(source.num_row_groups):
        part = source.read_row_group(group)
        row_attack = _codes(part.column("attack"), attack_lookup)
        row_eps = np.nan_to_num(part.column("epsilon").to_numpy(zero_copy_only=False).astype(np.float64),
                                nan=CLEAN_CODE).astype(np.int64)
        row_eps = np.where(row_attack == CLEAN_CODE, CLEAN_CODE, row_eps)
        at = rows_of(keys(row_eps, row_attack, _codes(part.column("image_id"), image_lookup)))
        d = _codes(part.column("defense"), defense_lookup)
        prediction = part.column("prediction").to_numpy(zero_copy_only=False)
        label[d, at] = np.nan_to_num(prediction.astype(np.float64), nan=NO_PREDICTION).astype(np.int32)
        answer_problem[d, at] = _codes(part.column("problem"), problems)
    table = table_from_rows((), (), run_rows)
    runs: RunColumns = table.runs
    run_names = np.array([pool.code(table.strings[code]) for code in runs.name.tolist()], dtype=np.int32)
    run_problems = np.array([pool.code(table.strings[code]) for code in runs.problem.tolist()], dtype=np.int32)
    runs = RunColumns(track=runs.track, name=run_names, epsilon=runs.epsilon, batch=runs.batch, images=runs.images,
                      exit_code=runs.exit_code, timed_out=runs.timed_out, seconds=runs.seconds,
                      problem=run_problems, log=runs.log)
    return PerImageTable(images=images, defenses=tuple(defense_names), attacks=tuple(attack_names),
                         attack_tracks=tuple(tracks[name] for name in attack_names), versions=versions, label=label,
                         answer_problem=answer_problem, runs=runs, strings=pool.frozen(),
                         epsilons=tuple(sorted(set(epsilons))))


def load_table(folder: ResultsFolder, manifest: Manifest) -> PerImageTable:
    """The table of a finished results folder (:func:`read_per_image` on its files, names from its manifest).

    Raises:
        ValueError, OSError: As :func:`read_per_image`.
    """
    return read_per_image(parquet=folder.file(PER_IMAGE_PARQUET), csv_file=folder.file(PER_IMAGE),
                          attack_images=folder.file(ATTACK_IMAGES), runs=folder.file(RUNS),
                          defenses=list(manifest.defenses), attacks=list(manifest.attacks),
                          epsilons=list(manifest.epsilons))
