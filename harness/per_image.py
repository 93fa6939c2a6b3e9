"""The per-image table as columns: the one in-memory form of a competition's results (data types, no I/O).

A competition answers, for every *version row* — a clean image, or one attack's refereed output of one image at one
ε — one label per defense. The table keeps that shape:

* :class:`ImageColumns` — the N images (ids sorted, TrueLabel and TargetClass as int32);
* :class:`VersionColumns` — the V version rows, clean rows first, then every (ε, attack, image) the referee judged,
  with the referee's verdict (substituted? clipped values? L∞) as columns; names and messages as small integer codes;
* ``label`` and ``answer_problem`` — D × V int32 matrices: defense d's label on version row v
  (:data:`NO_PREDICTION` for "no prediction", :data:`ABSENT` where the table has no such row at all) and the code of
  the reason there is no label;
* :class:`RunColumns` — one row per submission process.

At the NIPS 2017 final round's size (107 defenses × (5,000 clean + 156 × 5,000 attacked rows)) the two matrices take
8 bytes a prediction (≈ 0.7 GB); the long per-image rows (:class:`harness.table.PredictionRow`) are a view written
in streamed chunks (:mod:`harness.table_files`), never held at once. Scores (:mod:`harness.scoring`) are vectorised
over these columns.

Room left for what comes next: a ``draw`` column on version rows (repeated runs of a randomized defense; always 0
now), :meth:`PerImageTable.select` (submissions excluded at scoring time), and the referee's ``note`` codes (an
output converted to RGB is a non-empty note).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from harness.table import CLEAN, AttackImageRow, PredictionRow, RunRow
from harness.tracks import Track

__all__ = ["ABSENT", "CLEAN_CODE", "NO_PREDICTION", "ImageColumns", "PerImageTable", "RunColumns", "StringPool",
           "VersionColumns"]

#: ``label`` of a defense that gave no prediction for a version row (the reason is in ``answer_problem``).
NO_PREDICTION = -1
#: ``label`` where the table holds no prediction row at all (only tables read from partial row lists have these).
ABSENT = -2
#: ``epsilon`` and ``attack`` code of clean version rows.
CLEAN_CODE = -1
#: ``exit_code`` of a run that never started.
NOT_STARTED = np.iinfo(np.int32).min


class StringPool:
    """Strings ↔ small integer codes; code 0 is always ""."""

    def __init__(self, strings: Sequence[str] = ()) -> None:
        self._codes: dict[str, int] = {"": 0}
        self.strings: list[str] = [""]
        for text in strings:
            self.code(text)

    def code(self, text: str) -> int:
        """The code of ``text`` (a new one the first time it is seen)."""
        found = self._codes.get(text)
        if found is None:
            found = self._codes[text] = len(self.strings)
            self.strings.append(text)
        return found

    def codes(self, texts: Sequence[str]) -> np.ndarray:
        """The codes of many strings at once (int64 [len(texts)]); new ones get new codes."""
        found = list(map(self._codes.get, texts))
        if None in found:
            for position in [i for i, code in enumerate(found) if code is None]:
                found[position] = self.code(texts[position])
        return np.array(found, dtype=np.int64)

    def frozen(self) -> tuple[str, ...]:
        return tuple(self.strings)


@dataclass(frozen=True, eq=False)
class ImageColumns:
    """The dataset's images.

    Attributes:
        ids: Image ids, sorted (N of them).
        true_label: int32 [N], TrueLabel of each image.
        target_class: int32 [N], TargetClass of each image.
    """

    ids: tuple[str, ...]
    true_label: np.ndarray
    target_class: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True, eq=False)
class VersionColumns:
    """One row per version a defense classifies: clean rows, then the referee's rows (V in all).

    Attributes:
        epsilon: int16 [V]: ε in 0–255 units; :data:`CLEAN_CODE` on clean rows.
        attack: int16 [V]: index into :attr:`PerImageTable.attacks`; :data:`CLEAN_CODE` on clean rows.
        image: int32 [V]: index into :attr:`ImageColumns.ids`.
        draw: int16 [V]: repetition index (0; reserved for randomized defenses run several times).
        verdict: bool [V]: the row has a referee verdict (False on clean rows).
        problem: int32 [V]: code (:attr:`PerImageTable.strings`) of why the clean image was substituted (0: used).
        clipped_values: int64 [V]: channel values the referee clipped into the ε-ball.
        max_violation: int16 [V]: largest violation, 0–255 units.
        linf: int16 [V]: L∞ distance of the refereed image to the clean one, 0–255 units.
        note: int32 [V]: code of the referee's remark on a used output (0: none).
    """

    epsilon: np.ndarray
    attack: np.ndarray
    image: np.ndarray
    draw: np.ndarray
    verdict: np.ndarray
    problem: np.ndarray
    clipped_values: np.ndarray
    max_violation: np.ndarray
    linf: np.ndarray
    note: np.ndarray

    def __len__(self) -> int:
        return len(self.epsilon)

    def take(self, index: np.ndarray) -> VersionColumns:
        """The rows at ``index`` (an int array or a bool mask)."""
        return VersionColumns(**{name: getattr(self, name)[index] for name in _VERSION_FIELDS})


_VERSION_FIELDS = ("epsilon", "attack", "image", "draw", "verdict", "problem", "clipped_values", "max_violation",
                   "linf", "note")


@dataclass(frozen=True, eq=False)
class RunColumns:
    """One row per submission process (K in all).

    Attributes:
        track: int8 [K]: index into :data:`harness.scoring.TRACKS` order (defense, attack, targeted_attack).
        name: int32 [K]: code (:attr:`PerImageTable.strings`) of the submission's name.
        epsilon: int16 [K]: ε of attack runs; :data:`CLEAN_CODE` for defense runs.
        batch: The batch key of each run (its store record's name).
        images: int32 [K]: images in the batch.
        exit_code: int32 [K]: exit status; :data:`NOT_STARTED` when the process never started.
        timed_out: bool [K].
        seconds: float64 [K]: wall time inside the process.
        problem: int32 [K]: code of the plain-words reason ("" for a clean exit).
        log: Log file of each run, relative to the results folder.
    """

    track: np.ndarray
    name: np.ndarray
    epsilon: np.ndarray
    batch: tuple[str, ...]
    images: np.ndarray
    exit_code: np.ndarray
    timed_out: np.ndarray
    seconds: np.ndarray
    problem: np.ndarray
    log: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.track)


#: Tracks in the order of :attr:`RunColumns.track` codes.
TRACK_ORDER = (Track.DEFENSE, Track.ATTACK, Track.TARGETED_ATTACK)


@dataclass(frozen=True, eq=False)
class PerImageTable:
    """A competition's results as columns (see the module's docstring).

    Attributes:
        images: The N images.
        defenses: Defense names (D), in the competition's order.
        attacks: Attack names (A), targeted ones included, in the competition's order.
        attack_tracks: Each attack's track (:attr:`Track.ATTACK` or :attr:`Track.TARGETED_ATTACK`).
        versions: The V version rows.
        label: int32 [D, V]: each defense's label per version row (:data:`NO_PREDICTION`, :data:`ABSENT`); a
            defense may answer any label of up to 9 digits, kept as given.
        answer_problem: int32 [D, V]: code of why there is no label (0 where there is one).
        runs: The processes.
        strings: The string dictionary of every code column (index 0 is "").
        epsilons: The ε values the competition asked for (0–255 units), sorted.
    """

    images: ImageColumns
    defenses: tuple[str, ...]
    attacks: tuple[str, ...]
    attack_tracks: tuple[Track, ...]
    versions: VersionColumns
    label: np.ndarray
    answer_problem: np.ndarray
    runs: RunColumns
    strings: tuple[str, ...]
    epsilons: tuple[int, ...] = field(default=())

    # -- selections ------------------------------------------------------------------------------------------
    def attacks_of(self, track: Track | None = None) -> list[str]:
        """Attack names in table order, all of them or one track's."""
        return [name for name, kind in zip(self.attacks, self.attack_tracks, strict=True)
                if track is None or kind == track]

    @property
    def predictions(self) -> int:
        """Prediction rows the table holds (its long form's length)."""
        return int(np.count_nonzero(self.label != ABSENT))

    def select(self, *, defenses: Sequence[str] | None = None, attacks: Sequence[str] | None = None
               ) -> PerImageTable:
        """The table restricted to some defenses and attacks (e.g. without excluded submissions); runs of the
        others are dropped too.

        Raises:
            ValueError: A name that is not in the table.
        """
        keep_d = list(self.defenses) if defenses is None else list(defenses)
        keep_a = list(self.attacks) if attacks is None else list(attacks)
        for name in (*keep_d, *keep_a):
            if name not in self.defenses and name not in self.attacks:
                raise ValueError(f"{name!r} is not a submission of this table")
        d_index = np.array([self.defenses.index(d) for d in keep_d], dtype=np.intp)
        a_old = np.array([self.attacks.index(a) for a in keep_a], dtype=np.intp)
        remap = np.full(len(self.attacks) + 1, -2, dtype=np.int16)  # last entry: CLEAN_CODE maps to itself
        remap[-1] = CLEAN_CODE
        remap[a_old] = np.arange(len(a_old), dtype=np.int16)
        new_attack = remap[self.versions.attack]
        rows = new_attack != -2
        versions = self.versions.take(rows)
        versions = VersionColumns(**{**{n: getattr(versions, n) for n in _VERSION_FIELDS},
                                     "attack": new_attack[rows]})
        names = {self.strings.index(n) for n in (*keep_d, *keep_a) if n in self.strings}
        run_rows = np.isin(self.runs.name, np.array(sorted(names), dtype=np.int32))
        picked = np.flatnonzero(run_rows)
        runs = RunColumns(track=self.runs.track[picked], name=self.runs.name[picked],
                          epsilon=self.runs.epsilon[picked], batch=tuple(self.runs.batch[i] for i in picked),
                          images=self.runs.images[picked], exit_code=self.runs.exit_code[picked],
                          timed_out=self.runs.timed_out[picked], seconds=self.runs.seconds[picked],
                          problem=self.runs.problem[picked], log=tuple(self.runs.log[i] for i in picked))
        return PerImageTable(
            images=self.images, defenses=tuple(keep_d), attacks=tuple(keep_a),
            attack_tracks=tuple(self.attack_tracks[i] for i in a_old), versions=versions,
            label=self.label[np.ix_(d_index, np.flatnonzero(rows))],
            answer_problem=self.answer_problem[np.ix_(d_index, np.flatnonzero(rows))],
            runs=runs, strings=self.strings, epsilons=self.epsilons)

    # -- the long rows (views) ---------------------------------------------------------------------------------
    def block_order(self) -> list[np.ndarray]:
        """Version rows grouped in the long form's order: one array of row indexes per (ε, attack) block — clean
        rows first, then ε ascending and attack names in text order — each sorted by image id."""
        versions = self.versions
        attack_rank = np.argsort(np.argsort(np.array(self.attacks, dtype=object), kind="stable"), kind="stable")
        rank = np.where(versions.attack == CLEAN_CODE, -1, attack_rank[np.maximum(versions.attack, 0)]
                        if len(attack_rank) else -1)
        order = np.lexsort((versions.draw, versions.image, rank, versions.epsilon))
        if not len(order):
            return []
        keys = np.stack([versions.epsilon[order], rank[order]])
        breaks = np.flatnonzero(np.any(keys[:, 1:] != keys[:, :-1], axis=0)) + 1
        return np.split(order, breaks)

    def defense_order(self) -> np.ndarray:
        """Defense indexes in name order (the long form's order within a block)."""
        return np.argsort(np.array(self.defenses, dtype=object), kind="stable")

    def prediction_rows(self) -> Iterator[PredictionRow]:
        """Every prediction as a :class:`PredictionRow`, sorted by (ε, attack, defense, image id), clean rows first
        (the order of ``per_image.csv``). Meant for small tables and tests; files stream columns instead."""
        versions, images = self.versions, self.images
        for block in self.block_order():
            for d in self.defense_order():
                for v in block:
                    label = int(self.label[d, v])
                    if label == ABSENT:
                        continue
                    attack = int(versions.attack[v])
                    image = int(versions.image[v])
                    yield PredictionRow(
                        epsilon=None if attack == CLEAN_CODE else int(versions.epsilon[v]),
                        attack="" if attack == CLEAN_CODE else self.attacks[attack],
                        attack_type=CLEAN if attack == CLEAN_CODE else self.attack_tracks[attack].value,
                        defense=self.defenses[d], image_id=images.ids[image],
                        true_label=int(images.true_label[image]), target_class=int(images.target_class[image]),
                        prediction=None if label == NO_PREDICTION else label,
                        problem=self.strings[int(self.answer_problem[d, v])])

    def attack_image_rows(self) -> Iterator[AttackImageRow]:
        """Every referee verdict as an :class:`AttackImageRow`, sorted by (ε, attack, image id)."""
        versions = self.versions
        for block in self.block_order():
            for v in block:
                if not versions.verdict[v]:
                    continue
                attack = int(versions.attack[v])
                yield AttackImageRow(
                    epsilon=int(versions.epsilon[v]), attack=self.attacks[attack],
                    attack_type=self.attack_tracks[attack].value,
                    image_id=self.images.ids[int(versions.image[v])], problem=self.strings[int(versions.problem[v])],
                    clipped_values=int(versions.clipped_values[v]), max_violation=int(versions.max_violation[v]),
                    linf=int(versions.linf[v]), note=self.strings[int(versions.note[v])])

    def run_rows(self) -> Iterator[RunRow]:
        """Every process as a :class:`RunRow`, sorted by (kind, name, ε, batch)."""
        runs = self.runs
        keys = sorted(range(len(runs)), key=lambda i: (
            TRACK_ORDER[int(runs.track[i])].value, self.strings[int(runs.name[i])], int(runs.epsilon[i]),
            runs.batch[i]))
        for i in keys:
            epsilon = int(runs.epsilon[i])
            exit_code = int(runs.exit_code[i])
            yield RunRow(kind=TRACK_ORDER[int(runs.track[i])].value, name=self.strings[int(runs.name[i])],
                         epsilon=None if epsilon == CLEAN_CODE else epsilon, batch=runs.batch[i],
                         images=int(runs.images[i]), exit_code=None if exit_code == NOT_STARTED else exit_code,
                         timed_out=bool(runs.timed_out[i]), seconds=float(runs.seconds[i]),
                         problem=self.strings[int(runs.problem[i])], log=runs.log[i])
