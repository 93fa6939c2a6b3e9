"""Stored unit records → the columnar per-image table (:class:`harness.per_image.PerImageTable`), streamed.

:func:`tabulate` reads records one at a time (attack batches, then each defense's batches in the order their answers
apply) and keeps only columns: version rows as growing integer arrays, each defense's answers as one int32 array
over the distinct image versions, scattered into the D × V matrices when that defense is done. No record outlives
its turn, so memory grows with the table (≈ 8 bytes a prediction), not with the JSON.

:func:`table_from_rows` builds the same table from row lists (:class:`harness.table.PredictionRow`, ...): what
results folders written before the columnar files hold, and what hand-made tests write.
"""

from __future__ import annotations

import multiprocessing
from array import array
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import repeat
from typing import Any, Union, cast

import numpy as np

from harness.names import one_line
from harness.per_image import (
    ABSENT,
    CLEAN_CODE,
    NO_PREDICTION,
    NOT_STARTED,
    TRACK_ORDER,
    ImageColumns,
    PerImageTable,
    RunColumns,
    StringPool,
    VersionColumns,
)
from harness.records import AttackHead, AttackUnitRecord, DefenseHead, DefenseUnitRecord, RunRecord
from harness.table import CLEAN, AttackImageRow, PredictionRow, RunRow
from harness.tracks import Track

__all__ = ["NOT_CLASSIFIED", "Answers", "AttackSource", "DefenseSource", "TableBuilder", "gather_answers",
           "table_from_rows", "tabulate"]

#: An attack batch as :func:`tabulate` takes it: its record, or its head and verdict columns.
AttackSource = Union[AttackUnitRecord, tuple[AttackHead, dict[str, list[Any]]]]
#: A defense batch as :func:`tabulate` takes it: its record, or its head and answer columns.
DefenseSource = Union[DefenseUnitRecord, tuple[DefenseHead, dict[str, list[Any]]]]

#: The problem of a version no defense batch answered (its batch never ran).
NOT_CLASSIFIED = "not classified"

_INT_COLUMNS = (("epsilon", "h", np.int16), ("attack", "h", np.int16), ("image", "i", np.int32),
                ("draw", "h", np.int16), ("verdict", "b", np.bool_), ("problem", "i", np.int32),
                ("clipped_values", "q", np.int64), ("max_violation", "h", np.int16), ("linf", "h", np.int16),
                ("note", "i", np.int32))


class TableBuilder:
    """Builds a :class:`PerImageTable` in two phases: version rows and runs first (:meth:`add_clean`,
    :meth:`add_attack_record`, :meth:`add_row`, :meth:`add_run`), then, after :meth:`freeze_rows`, answers
    (:meth:`add_answers` by image version, or :meth:`set_prediction` by row); :meth:`build` ends it.

    Args:
        image_ids: The images, any order (the table sorts them).
        true_labels, target_classes: Per image id.
        defenses: Defense names, in the competition's order.
        attacks: (name, track) of every attack, in the competition's order.
        epsilons: ε values asked for.
        absent_by_default: Predictions nobody set are :data:`harness.per_image.ABSENT` (no row) instead of
            "no prediction: not classified" (a defense batch that never ran).
    """

    def __init__(self, *, image_ids: Sequence[str], true_labels: Sequence[int], target_classes: Sequence[int],
                 defenses: Sequence[str], attacks: Sequence[tuple[str, Track]], epsilons: Sequence[int] = (),
                 absent_by_default: bool = False) -> None:
        order = sorted(range(len(image_ids)), key=lambda i: image_ids[i])
        self.images = ImageColumns(ids=tuple(image_ids[i] for i in order),
                                   true_label=np.array([true_labels[i] for i in order], dtype=np.int32),
                                   target_class=np.array([target_classes[i] for i in order], dtype=np.int32))
        self._image_index = {image_id: i for i, image_id in enumerate(self.images.ids)}
        self.defenses = tuple(defenses)
        self._defense_index = {name: i for i, name in enumerate(self.defenses)}
        self.attacks = tuple(name for name, _ in attacks)
        self.attack_tracks = tuple(Track(track) for _, track in attacks)
        self._attack_index = {name: i for i, name in enumerate(self.attacks)}
        self.epsilons = tuple(sorted(set(epsilons)))
        self.strings = StringPool()
        self._not_classified = self.strings.code(NOT_CLASSIFIED)
        self._absent = absent_by_default
        self._columns = {name: array(code) for name, code, _ in _INT_COLUMNS}
        self._row_version = array("i")  # row → index of its image version (-1: none known)
        self._versions: dict[str, int] = {}
        self._row_keys: dict[tuple[int, int, int], int] = {}
        self._runs: dict[str, list[object]] = {name: [] for name in (
            "track", "name", "epsilon", "batch", "images", "exit_code", "timed_out", "seconds", "problem", "log")}
        self._label: np.ndarray | None = None
        self._answer_problem: np.ndarray | None = None
        self._row_of_version: np.ndarray | None = None

    # -- phase 1: rows and runs ---------------------------------------------------------------------------------
    def image_index(self, image_id: str) -> int:
        """Index of an image id. Raises ``KeyError`` for an id that is not in the table."""
        return self._image_index[image_id]

    def _version(self, sha256: str) -> int:
        found = self._versions.get(sha256)
        if found is None:
            found = self._versions[sha256] = len(self._versions)
        return found

    def add_row(self, *, epsilon: int, attack: str, image_id: str, version: str | None = None) -> int:
        """The version row of (ε, attack, image) — ``attack`` "" for a clean row — made on first use; its index."""
        attack_code = CLEAN_CODE if attack == "" else self._attack_index[attack]
        key = (CLEAN_CODE if attack == "" else epsilon, attack_code, self._image_index[image_id])
        row = self._row_keys.get(key)
        if row is None:
            row = self._row_keys[key] = len(self._row_version)
            for (name, _, _), value in zip(_INT_COLUMNS, (*key, 0, 0, 0, 0, 0, 0, 0), strict=True):
                self._columns[name].append(value)
            self._row_version.append(-1)
        if version is not None:
            self._row_version[row] = self._version(version)
        return row

    def set_verdict(self, row: int, *, problem: str, clipped_values: int, max_violation: int, linf: int,
                    note: str) -> None:
        """The referee's verdict on an attack row."""
        columns = self._columns
        columns["verdict"][row] = 1
        columns["problem"][row] = self.strings.code(problem)
        columns["clipped_values"][row] = clipped_values
        columns["max_violation"][row] = max_violation
        columns["linf"][row] = linf
        columns["note"][row] = self.strings.code(note)

    def add_clean(self, clean_versions: dict[str, str]) -> None:
        """One clean row per image (image id → pixel hash of the clean image)."""
        for image_id in self.images.ids:
            self.add_row(epsilon=CLEAN_CODE, attack="", image_id=image_id, version=clean_versions[image_id])

    def add_attack_record(self, record: AttackSource) -> None:
        """An attack batch's rows (one per image, with its verdict) and its run: a record, or its head and columns
        (:meth:`harness.record_store.RecordStore.attack_columns`)."""
        if not isinstance(record, AttackUnitRecord):
            self._add_attack_columns(*record)
            return
        for image in record.images:
            row = self.add_row(epsilon=record.epsilon, attack=record.attack, image_id=image.image_id,
                               version=image.version)
            self.set_verdict(row, problem=image.problem, clipped_values=image.clipped_values,
                             max_violation=image.max_violation, linf=image.linf, note=image.note)
        self.add_run(track=record.attack_type, name=record.attack, epsilon=record.epsilon, batch=record.key,
                     images=len(record.images), run=record.run)

    def _add_attack_columns(self, head: AttackHead, columns: dict[str, list[Any]]) -> None:
        for image_id, version, problem, clipped, violation, linf, note in zip(
                columns["image_id"], columns["version"], columns["problem"], columns["clipped_values"],
                columns["max_violation"], columns["linf"], columns["note"], strict=True):
            row = self.add_row(epsilon=head.epsilon, attack=head.attack, image_id=image_id, version=version)
            self.set_verdict(row, problem=problem, clipped_values=clipped, max_violation=violation, linf=linf,
                             note=note)
        self.add_run(track=head.attack_type, name=head.attack, epsilon=head.epsilon, batch=head.key,
                     images=head.images, run=head.run)

    def add_run(self, *, track: Track | str, name: str, epsilon: int | None, batch: str, images: int,
                run: RunRecord | RunRow) -> None:
        """One process row."""
        runs = self._runs
        runs["track"].append(TRACK_ORDER.index(Track(track)))
        runs["name"].append(self.strings.code(name))
        runs["epsilon"].append(CLEAN_CODE if epsilon is None else epsilon)
        runs["batch"].append(batch)
        runs["images"].append(images)
        runs["exit_code"].append(NOT_STARTED if run.exit_code is None else run.exit_code)
        runs["timed_out"].append(run.timed_out)
        runs["seconds"].append(run.seconds)
        runs["problem"].append(self.strings.code(one_line(run.problem) if isinstance(run, RunRecord)
                                                 else run.problem))
        runs["log"].append(run.log)

    # -- phase 2: answers -------------------------------------------------------------------------------------
    def freeze_rows(self) -> None:
        """End phase 1: sort the version rows (clean first, then ε, attack, image) and make the answer matrices."""
        columns = {name: np.frombuffer(self._columns[name], dtype=code).astype(dtype) if len(self._columns[name])
                   else np.zeros(0, dtype=dtype) for name, code, dtype in _INT_COLUMNS}
        columns["verdict"] = columns["verdict"].astype(np.bool_)
        attack_rank = np.argsort(np.argsort(np.array(self.attacks, dtype=object), kind="stable"), kind="stable")
        rank = (np.where(columns["attack"] == CLEAN_CODE, -1, attack_rank[np.maximum(columns["attack"], 0)])
                if len(attack_rank) else np.full(len(columns["attack"]), -1))
        self._order = np.lexsort((columns["draw"], columns["image"], rank, columns["epsilon"]))
        self._position = np.empty_like(self._order)
        self._position[self._order] = np.arange(len(self._order))
        self.versions = VersionColumns(**{name: columns[name][self._order] for name in columns})
        row_version = np.frombuffer(self._row_version, dtype=np.int32) if len(self._row_version) \
            else np.zeros(0, dtype=np.int32)
        self._row_of_version = row_version[self._order]
        self._shape = (len(self.defenses), len(self._order))
        self._columns = {}
        self._row_keys_frozen = self._row_keys
        self._row_keys = {}

    def _matrices(self) -> tuple[np.ndarray, np.ndarray]:
        """The D × V answer matrices, made on first use (after :meth:`freeze_rows`; after any reader process forked,
        so that it does not map them)."""
        if self._label is None or self._answer_problem is None:
            assert hasattr(self, "_shape"), "freeze_rows() first"
            self._label = np.full(self._shape, ABSENT if self._absent else NO_PREDICTION, dtype=np.int32)
            self._answer_problem = np.full(self._shape, 0 if self._absent else self._not_classified, dtype=np.int32)
        return self._label, self._answer_problem

    def row(self, *, epsilon: int | None, attack: str, image_id: str) -> int:
        """Index (after :meth:`freeze_rows`) of the row of (ε, attack, image); raises ``KeyError`` if none."""
        attack_code = CLEAN_CODE if attack == "" else self._attack_index[attack]
        key = (CLEAN_CODE if attack == "" or epsilon is None else epsilon, attack_code,
               self._image_index[image_id])
        return int(self._position[self._row_keys_frozen[key]])

    def set_prediction(self, defense: str, row: int, label: int | None, problem: str) -> None:
        """One defense's answer on one row (after :meth:`freeze_rows`)."""
        label_matrix, problem_matrix = self._matrices()
        d = self._defense_index[defense]
        label_matrix[d, row] = NO_PREDICTION if label is None else label
        problem_matrix[d, row] = self.strings.code(problem)

    def add_answers(self, defense: str, records: Iterable[DefenseSource]) -> None:
        """A defense's batches, in the order their answers apply (a later answer for a version wins): records, or
        heads with their columns (:meth:`harness.record_store.RecordStore.defense_columns`); each batch's run is a
        run row. Versions that no row holds are ignored."""
        self.apply_answers(defense, gather_answers(records, self._versions, StringPool(), NOT_CLASSIFIED))

    def apply_answers(self, defense: str, answers: Answers) -> None:
        """A defense's answers gathered by :func:`gather_answers` (here or in another process)."""
        label_matrix, problem_matrix = self._matrices()
        assert self._row_of_version is not None
        codes = self.strings.codes(answers.strings).astype(np.int32)  # the gatherer's codes → the table's
        for track, name, batch, images, run in answers.runs:
            self.add_run(track=track, name=name, epsilon=None, batch=batch, images=images, run=run)
        d = self._defense_index[defense]
        rows = np.flatnonzero(self._row_of_version >= 0)
        versions_of_rows = self._row_of_version[rows]
        label_matrix[d, rows] = answers.labels[versions_of_rows]
        problem_matrix[d, rows] = codes[answers.problems[versions_of_rows]]

    def version_index(self) -> dict[str, int]:
        """Pixel hash → index of every image version the rows hold (what :func:`gather_answers` looks up)."""
        return self._versions

    def build(self) -> PerImageTable:
        """The table (after :meth:`freeze_rows` and every answer)."""
        label_matrix, problem_matrix = self._matrices()
        runs = self._runs
        tracks, names = cast(list[int], runs["track"]), cast(list[int], runs["name"])
        order = sorted(range(len(tracks)), key=lambda i: (  # runs.csv's order: kind, name, ε, batch
            TRACK_ORDER[tracks[i]].value, self.strings.strings[names[i]], cast(int, runs["epsilon"][i]),
            cast(str, runs["batch"][i])))
        runs = {name: [values[i] for i in order] for name, values in runs.items()}
        return PerImageTable(
            images=self.images, defenses=self.defenses, attacks=self.attacks, attack_tracks=self.attack_tracks,
            versions=self.versions, label=label_matrix, answer_problem=problem_matrix,
            runs=RunColumns(track=np.array(runs["track"], dtype=np.int8),
                            name=np.array(runs["name"], dtype=np.int32),
                            epsilon=np.array(runs["epsilon"], dtype=np.int16),
                            batch=tuple(str(b) for b in runs["batch"]),
                            images=np.array(runs["images"], dtype=np.int32),
                            exit_code=np.array(runs["exit_code"], dtype=np.int32),
                            timed_out=np.array(runs["timed_out"], dtype=np.bool_),
                            seconds=np.array(runs["seconds"], dtype=np.float64),
                            problem=np.array(runs["problem"], dtype=np.int32),
                            log=tuple(str(log) for log in runs["log"])),
            strings=self.strings.frozen(), epsilons=self.epsilons)


@dataclass(frozen=True, eq=False)
class Answers:
    """One defense's answers over the table's image versions, gathered from its batches.

    Attributes:
        labels: int32 [H]: the label per image version (:data:`harness.per_image.NO_PREDICTION` where none).
        problems: int32 [H]: code into :attr:`strings` of why there is none.
        strings: The codes' strings.
        runs: (track, name, batch key, images, run record) of each batch.
    """

    labels: np.ndarray
    problems: np.ndarray
    strings: tuple[str, ...]
    runs: list[tuple[Track, str, str, int, RunRecord]]


def gather_answers(records: Iterable[DefenseSource], versions: dict[str, int], strings: StringPool,
                   unanswered: str) -> Answers:
    """A defense's batches, in the order their answers apply, as one array per image version: the last answer
    for a version wins; versions not in ``versions`` are ignored; a version no batch answers has ``unanswered``.
    Gathered in lists and converted once, so a batch costs a few list extends."""
    known = len(versions)
    labels = np.full(known, NO_PREDICTION, dtype=np.int32)
    problems = np.full(known, strings.code(unanswered), dtype=np.int64)
    all_versions: list[str] = []
    all_given: list[int | None] = []
    all_reasons: list[str] = []
    runs: list[tuple[Track, str, str, int, RunRecord]] = []
    for record in records:
        if isinstance(record, DefenseUnitRecord):
            answers = record.predictions
            all_versions.extend(answers)
            all_given.extend(a.label for a in answers.values())
            all_reasons.extend(a.problem for a in answers.values())
            runs.append((Track.DEFENSE, record.defense, record.key, len(answers), record.run))
        else:
            head, columns = record
            all_versions.extend(columns["versions"])
            all_given.extend(columns["labels"])
            all_reasons.extend(columns["problems"])
            runs.append((Track.DEFENSE, head.defense, head.key, head.predictions, head.run))
    index = np.array(list(map(versions.get, all_versions, repeat(-1))), dtype=np.int64)
    del all_versions
    answered = np.array([NO_PREDICTION if g is None else g for g in all_given], dtype=np.int64)
    codes = strings.codes(all_reasons)
    _, last_reversed = np.unique(index[::-1], return_index=True)  # each version's last answer
    last = len(index) - 1 - last_reversed
    last = last[index[last] >= 0]
    labels[index[last]] = answered[last]
    problems[index[last]] = codes[last]
    return Answers(labels=labels, problems=problems, strings=strings.frozen(), runs=runs)


#: A reader process's state, set in that process only by :func:`_reader_state` when it starts (forked: the version
#: index and the reader come from its parent's memory, nothing is pickled); the parent never sets it.
_READER: tuple[dict[str, int], Callable[[str], Iterable[DefenseSource]]] | None = None


def _reader_state(versions: dict[str, int], defense_records: Callable[[str], Iterable[DefenseSource]]) -> None:
    global _READER
    _READER = (versions, defense_records)


def _gather_in_reader(defense: str) -> Answers:
    assert _READER is not None, "a reader process started without its parent's state"
    versions, defense_records = _READER
    return gather_answers(defense_records(defense), versions, StringPool(), NOT_CLASSIFIED)


def _answers_in_processes(builder: TableBuilder, defenses: Sequence[str],
                          defense_records: Callable[[str], Iterable[DefenseSource]], processes: int) -> None:
    """Each defense's answers gathered in ``processes`` forked processes (they inherit the version index and the
    reader), applied here in ``defenses`` order."""
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork"), initializer=_reader_state,
                             initargs=(builder.version_index(), defense_records)) as pool:
        for defense, answers in zip(defenses, pool.map(_gather_in_reader, defenses), strict=True):
            builder.apply_answers(defense, answers)


def tabulate(*, images: Iterable[tuple[str, int, int]], clean_versions: dict[str, str],
             attack_records: Iterable[AttackSource], defenses: Sequence[str],
             defense_records: Callable[[str], Iterable[DefenseSource]],
             attacks: Sequence[tuple[str, Track]], epsilons: Sequence[int], processes: int = 1) -> PerImageTable:
    """The per-image table of a competition, from its records, streamed.

    Args:
        images: (image id, TrueLabel, TargetClass) of every dataset image.
        clean_versions: Image id → pixel hash of its clean image.
        attack_records: Every attack batch (any order; read once): records, or heads with columns.
        defenses: Defense names, in the competition's order.
        defense_records: Defense name → its batches (records, or heads with columns) in the order their answers
            apply (cached before fresh); called once per defense, so it may read them from the store as it goes.
        attacks: (name, track) of every attack, in the competition's order.
        epsilons: ε values asked for.
        processes: Read the defenses' batches in this many processes (forked, where the platform can fork: they
            inherit ``defense_records``; each returns one array per defense). 1: in this process.

    Returns:
        The table: every defense has a row for every version row; a version no batch answered is
        "no prediction: not classified".
    """
    ids, labels, targets = [], [], []
    for image_id, true_label, target_class in images:
        ids.append(image_id)
        labels.append(true_label)
        targets.append(target_class)
    builder = TableBuilder(image_ids=ids, true_labels=labels, target_classes=targets, defenses=defenses,
                           attacks=attacks, epsilons=epsilons)
    if defenses:
        builder.add_clean(clean_versions)
    for record in attack_records:
        builder.add_attack_record(record)
    builder.freeze_rows()
    if processes > 1 and len(defenses) > 1 and "fork" in multiprocessing.get_all_start_methods():
        _answers_in_processes(builder, defenses, defense_records, min(processes, len(defenses)))
    else:
        for defense in defenses:
            builder.add_answers(defense, defense_records(defense))
    return builder.build()


def table_from_rows(predictions: Iterable[PredictionRow], attack_images: Iterable[AttackImageRow],
                    runs: Iterable[RunRow], *, defenses: Iterable[str] | None = None,
                    attacks: Iterable[tuple[str, str]] | None = None, epsilons: Iterable[int] = ()
                    ) -> PerImageTable:
    """The table holding exactly these rows (a prediction row nobody wrote is :data:`ABSENT`).

    Args:
        predictions, attack_images, runs: The rows (``per_image``, ``attack_images`` and ``runs`` tables).
        defenses: Defense names to hold even without rows, in this order; those of the rows follow, sorted.
        attacks: (name, track) to hold even without rows; those of the rows follow, sorted by name.
        epsilons: ε values asked for.

    Raises:
        ValueError: One image with two different TrueLabels or TargetClasses, or an unknown attack_type.
    """
    predictions = list(predictions)
    attack_images = list(attack_images)
    defense_names = list(dict.fromkeys(defenses or ()))
    defense_names += sorted({r.defense for r in predictions} - set(defense_names))
    kinds = dict(attacks or ())
    extra: dict[str, str] = {}
    for image_row in attack_images:
        if image_row.attack not in kinds:
            extra.setdefault(image_row.attack, image_row.attack_type)
    for row in predictions:
        if row.attack_type != CLEAN and row.attack not in kinds:
            extra.setdefault(row.attack, row.attack_type)
    attack_list = [(name, Track(kind)) for name, kind in [*kinds.items(), *sorted(extra.items())]]
    truth: dict[str, tuple[int, int]] = {}
    for row in predictions:
        known = truth.setdefault(row.image_id, (row.true_label, row.target_class))
        if known != (row.true_label, row.target_class):
            raise ValueError(f"image {row.image_id!r}: two TrueLabel/TargetClass pairs {known} and "
                             f"{(row.true_label, row.target_class)} in the per-image table")
    for image_row in attack_images:
        truth.setdefault(image_row.image_id, (0, 0))  # an image only the referee rows name: no prediction uses it
    ids = sorted(truth)
    builder = TableBuilder(image_ids=ids, true_labels=[truth[i][0] for i in ids],
                           target_classes=[truth[i][1] for i in ids], defenses=defense_names, attacks=attack_list,
                           epsilons=sorted(set(epsilons)), absent_by_default=True)
    for image_row in attack_images:
        at = builder.add_row(epsilon=image_row.epsilon, attack=image_row.attack, image_id=image_row.image_id)
        builder.set_verdict(at, problem=image_row.problem, clipped_values=image_row.clipped_values,
                            max_violation=image_row.max_violation, linf=image_row.linf, note=image_row.note)
    for row in predictions:
        if row.attack_type == CLEAN or row.epsilon is not None:
            builder.add_row(epsilon=CLEAN_CODE if row.attack_type == CLEAN else int(row.epsilon or 0),
                            attack="" if row.attack_type == CLEAN else row.attack, image_id=row.image_id)
    for run in runs:
        builder.add_run(track=run.kind, name=run.name, epsilon=run.epsilon, batch=run.batch, images=run.images,
                        run=run)
    builder.freeze_rows()
    for row in predictions:
        if row.attack_type == CLEAN or row.epsilon is not None:
            index = builder.row(epsilon=row.epsilon, attack="" if row.attack_type == CLEAN else row.attack,
                                image_id=row.image_id)
            builder.set_prediction(row.defense, index, row.prediction, row.problem)
    return builder.build()
