"""Typed records of finished work units, as stored in ``store/attack_runs`` and ``store/defense_runs``, and the
:class:`Outcome` of an execution that gathers them: data types only, no I/O.

Every record carries :data:`SCHEMA` (``"schema"`` in its JSON); :meth:`from_json` refuses another schema or a
malformed value with :class:`RecordError`, and the store treats such a record as absent (the unit is redone), so a
record is either read whole and typed or not at all. :class:`RunRecord`, the outcome of one submission process,
is part of each (data only: the sandboxes of :mod:`harness.sandboxes` make it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

from harness.errors import RecordError
from harness.provenance import Provenance
from harness.tracks import Track

__all__ = ["SCHEMA", "AttackUnitRecord", "DefenseAnswer", "DefenseUnitRecord", "ImageVerdict", "Outcome", "Record",
           "RecordError", "RunRecord"]

#: Version of the stored record layout; bump when a field changes meaning or shape.
SCHEMA = 1


def _check_schema(value: dict[str, Any], kind: str) -> None:
    if not isinstance(value, dict):
        raise RecordError(f"{kind} record: expected a JSON object, got {type(value).__name__}")
    if value.get("schema") != SCHEMA:
        raise RecordError(f"{kind} record: schema {value.get('schema')!r}, this harness reads schema {SCHEMA}")


def _optional_int(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer or null, got {value!r}")
    return value


def _attack_track(value: object) -> Track:
    track = Track(str(value))  # ValueError on another string
    if not track.is_attack:
        raise ValueError(f"attack_type {value!r} is not an attack track")
    return track


@dataclass(frozen=True)
class RunRecord:
    """Outcome of one submission process.

    Attributes:
        exit_code: Process exit status; negative for "killed by signal"; None when it never started.
        timed_out: True when the wall-clock limit killed it.
        seconds: Wall time spent inside the process (0 when it never started).
        problem: "" for a clean exit, else a plain-words reason ("exit code 1", "timed out after 60 s", …).
        log: Path of the log file relative to the results folder.
        cpu_seconds: CPU time (user + system) of every process of the run, from its cgroup's accounting; None
            where the run had no cgroup with CPU accounting (and in records made before it was measured).
        provenance: What the run was made under (sandbox, limits applied, device, image, referee modes:
            :class:`harness.provenance.Provenance`); None in records made before it was recorded (their results
            folder's manifest then says it) and for runs that never started. Absent from the JSON when None.
    """

    exit_code: int | None
    timed_out: bool
    seconds: float
    problem: str
    log: str
    cpu_seconds: float | None = None
    provenance: Provenance | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        value: dict[str, Any] = {"exit_code": self.exit_code, "timed_out": self.timed_out, "seconds": self.seconds,
                                 "problem": self.problem, "log": self.log, "cpu_seconds": self.cpu_seconds}
        if self.provenance is not None:
            value["provenance"] = self.provenance.to_json()
        return value

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> "RunRecord":
        """Inverse of :meth:`to_json` (raises ``KeyError``/``TypeError``/``ValueError`` on bad input)."""
        cpu = value.get("cpu_seconds")
        made = value.get("provenance")
        return cls(exit_code=value["exit_code"], timed_out=bool(value["timed_out"]),
                   seconds=float(value["seconds"]), problem=str(value["problem"]), log=str(value["log"]),
                   cpu_seconds=None if cpu is None else float(cpu),
                   provenance=None if made is None else Provenance.from_json(made))


@dataclass(frozen=True)
class ImageVerdict:
    """The referee's verdict on one attacked image.

    Attributes:
        image_id: The original image.
        version: SHA-256 of the refereed pixels (the clean image's when the output was substituted).
        problem: Why the output was replaced by the clean image ("" when it was used).
        clipped_values: Pixel values the referee clipped into the ε-ball.
        max_violation: Largest distance (0-255 units) of an output value outside the ε-ball.
        linf: L∞ distance (0-255 units) of the refereed image from the clean one.
        note: "" or a remark on a used output (e.g. "mode RGBA converted to RGB …").
    """

    image_id: str
    version: str
    problem: str
    clipped_values: int
    max_violation: int
    linf: int
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"image_id": self.image_id, "version": self.version, "problem": self.problem,
                "clipped_values": self.clipped_values, "max_violation": self.max_violation, "linf": self.linf,
                "note": self.note}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> ImageVerdict:
        """Inverse of :meth:`to_json` (raises ``KeyError``/``TypeError``/``ValueError`` on bad input)."""
        return cls(image_id=str(value["image_id"]), version=str(value["version"]), problem=str(value["problem"]),
                   clipped_values=int(value["clipped_values"]), max_violation=int(value["max_violation"]),
                   linf=int(value["linf"]), note=str(value.get("note", "")))


@dataclass(frozen=True)
class AttackUnitRecord:
    """One finished attack batch: the process's outcome and the referee's verdict per image.

    Attributes:
        key: The unit's key (:attr:`harness.planning.AttackUnit.key`).
        attack: Submission name.
        attack_hash: Content hash of the submission folder.
        attack_type: The attack's track (stored as ``"attack"`` or ``"targeted_attack"``; its string is accepted
            and made the enum).
        epsilon: ε in 0-255 units.
        run: The process's outcome.
        images: One verdict per image of the batch, in batch order.
    """

    key: str
    attack: str
    attack_hash: str
    attack_type: Track
    epsilon: int
    run: RunRecord
    images: tuple[ImageVerdict, ...]

    def __post_init__(self) -> None:
        # the enum in memory, whichever form was given (raises ValueError for a string that is no attack track)
        object.__setattr__(self, "attack_type", _attack_track(self.attack_type))

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict with ``"schema"``."""
        return {"schema": SCHEMA, "key": self.key, "attack": self.attack, "attack_hash": self.attack_hash,
                "attack_type": self.attack_type.value, "epsilon": self.epsilon, "run": self.run.to_json(),
                "images": [image.to_json() for image in self.images]}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> AttackUnitRecord:
        """Inverse of :meth:`to_json`.

        Raises:
            RecordError: Another schema, or a missing or mistyped field.
        """
        _check_schema(value, "attack")
        try:
            return cls(key=str(value["key"]), attack=str(value["attack"]), attack_hash=str(value["attack_hash"]),
                       attack_type=_attack_track(value["attack_type"]), epsilon=int(value["epsilon"]),
                       run=RunRecord.from_json(value["run"]),
                       images=tuple(ImageVerdict.from_json(image) for image in value["images"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordError(f"attack record: {exc!r}") from None


@dataclass(frozen=True)
class DefenseAnswer:
    """A defense's answer for one image version: a label, or None with the reason."""

    label: int | None
    problem: str

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"label": self.label, "problem": self.problem}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> DefenseAnswer:
        """Inverse of :meth:`to_json` (raises ``KeyError``/``TypeError`` on bad input)."""
        return cls(label=_optional_int(value["label"]), problem=str(value["problem"]))


@dataclass(frozen=True)
class DefenseUnitRecord:
    """One finished defense batch: the process's outcome and its answer per image version.

    Attributes:
        key: The unit's key (:attr:`harness.planning.DefenseUnit.key`).
        defense: Submission name.
        defense_hash: Content hash of the submission folder.
        run: The process's outcome.
        csv_notes: Problems found in its CSV (duplicate rows, unknown names, ...).
        predictions: Image version (pixel hash) → answer.
    """

    key: str
    defense: str
    defense_hash: str
    run: RunRecord
    csv_notes: tuple[str, ...] = ()
    predictions: dict[str, DefenseAnswer] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict with ``"schema"``."""
        return {"schema": SCHEMA, "key": self.key, "defense": self.defense, "defense_hash": self.defense_hash,
                "run": self.run.to_json(), "csv_notes": list(self.csv_notes),
                "predictions": {version: answer.to_json() for version, answer in self.predictions.items()}}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> DefenseUnitRecord:
        """Inverse of :meth:`to_json`.

        Raises:
            RecordError: Another schema, or a missing or mistyped field.
        """
        _check_schema(value, "defense")
        try:
            return cls(key=str(value["key"]), defense=str(value["defense"]),
                       defense_hash=str(value["defense_hash"]), run=RunRecord.from_json(value["run"]),
                       csv_notes=tuple(str(note) for note in value["csv_notes"]),
                       predictions={str(version): DefenseAnswer.from_json(answer)
                                    for version, answer in value["predictions"].items()})
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RecordError(f"defense record: {exc!r}") from None


#: The record of a unit of either stage.
Record = Union[AttackUnitRecord, DefenseUnitRecord]


@dataclass
class Outcome:
    """What one call of :meth:`harness.execution.Runner.execute` produced: every record the scores need.

    Attributes:
        attack_records: Records of every attack batch in the plan (fresh or cached).
        defense_records: Records (fresh or cached) that contributed predictions, per defense name, in the order
            their answers apply; one without ``predictions`` is in the store (read back by key when the table is
            made: :meth:`harness.execution.Runner.defense_records_of`), so answers are never all in memory.
        executed: Counts of units that ran now, per kind ("attack", "defense").
        reused: Counts of units taken from the store, per kind.
        clean_versions: Pixel hash of every clean image, by image id.
        fresh_keys: Keys of the units that ran now.
        reruns: Stored records not reused because they were made under weaker conditions than asked (or, failed,
            under stricter ones): one line per unit, "rerunning <unit>: <reason>"
            (:meth:`harness.provenance.Provenance.weaker_than`).
    """

    attack_records: list[AttackUnitRecord] = field(default_factory=list)
    defense_records: dict[str, list[DefenseUnitRecord]] = field(default_factory=dict)
    executed: dict[str, int] = field(default_factory=lambda: {"attack": 0, "defense": 0})
    reused: dict[str, int] = field(default_factory=lambda: {"attack": 0, "defense": 0})
    clean_versions: dict[str, str] = field(default_factory=dict)
    fresh_keys: set[str] = field(default_factory=set)
    reruns: list[str] = field(default_factory=list)
