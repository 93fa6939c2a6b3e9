"""Typed records of finished work units, as stored in ``store/attack_runs`` and ``store/defense_runs``, their
bytes, and the :class:`Outcome` of an execution that gathers them: data types and their encoding, no I/O.

A record is written as schema :data:`SCHEMA` (2): two lines of JSON (JSON Lines), its **head** then its **body**
(:func:`encode_record`). The head (:class:`AttackHead`, :class:`DefenseHead`: schema, kind, key, names, content
hash, track and ε, the run record with its provenance, the count of images) is read without the body
(:func:`decode_head`), so a resume decides from heads alone which units are done and reusable. The body holds the
per-image values as columns (one JSON list per field, in batch order), which parse far faster than an object per
image. Schema 1, one indented JSON object per record (written before issue 30), is still read (:func:`decode_record`,
the records' ``from_json``); no record of it is written.

A record of another schema, or a malformed one, raises :class:`RecordError`; the store treats it as absent (the
unit is redone), so a record is either read whole and typed or not at all (a head may be readable while its body is
not: the full record then reads as absent). :class:`RunRecord`, the outcome of one submission process, is part of
each (data only: the sandboxes of :mod:`harness.sandboxes` make it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Union

from harness.errors import RecordError
from harness.provenance import Provenance
from harness.tracks import Track

__all__ = ["LEGACY_SCHEMA", "SCHEMA", "AttackHead", "AttackUnitRecord", "DefenseAnswer", "DefenseHead",
           "DefenseUnitRecord", "Head", "ImageVerdict", "Outcome", "Record", "RecordError", "RunRecord",
           "decode_columns", "decode_head", "decode_record", "encode_record"]

#: Version of the stored record layout written now (a head line and a columnar body line); bump when a field
#: changes meaning or shape.
SCHEMA = 2
#: The layout of records written before issue 30 (one indented JSON object), still read.
LEGACY_SCHEMA = 1


def _check_schema(value: dict[str, Any], kind: str) -> None:
    if not isinstance(value, dict):
        raise RecordError(f"{kind} record: expected a JSON object, got {type(value).__name__}")
    if value.get("schema") != LEGACY_SCHEMA:
        raise RecordError(f"{kind} record: schema {value.get('schema')!r}, expected schema {LEGACY_SCHEMA} for one "
                          f"JSON object (schema {SCHEMA} is a head line and a body line: decode_record)")


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

    @property
    def head(self) -> AttackHead:
        """What the record says without its verdicts."""
        return AttackHead(key=self.key, attack=self.attack, attack_hash=self.attack_hash,
                          attack_type=self.attack_type, epsilon=self.epsilon, run=self.run, images=len(self.images))

    def body_json(self) -> dict[str, list[Any]]:
        """The verdicts as columns (schema 2's body): field name → one value per image, in batch order."""
        return {name: [getattr(image, name) for image in self.images] for name in _VERDICT_COLUMNS}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> AttackUnitRecord:
        """A record of schema 1 (one JSON object, as written before issue 30).

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

    @property
    def head(self) -> DefenseHead:
        """What the record says without its answers."""
        return DefenseHead(key=self.key, defense=self.defense, defense_hash=self.defense_hash, run=self.run,
                           predictions=len(self.predictions))

    def body_json(self) -> dict[str, list[Any]]:
        """The answers as columns (schema 2's body): ``versions`` (pixel hashes), ``labels`` (int or None),
        ``problems``, in one order; and ``csv_notes``."""
        return {"versions": list(self.predictions), "labels": [a.label for a in self.predictions.values()],
                "problems": [a.problem for a in self.predictions.values()], "csv_notes": list(self.csv_notes)}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> DefenseUnitRecord:
        """A record of schema 1 (one JSON object, as written before issue 30).

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

#: The verdict fields, as the columns of an attack record's body.
_VERDICT_COLUMNS = ("image_id", "version", "problem", "clipped_values", "max_violation", "linf", "note")


@dataclass(frozen=True)
class AttackHead:
    """An attack record's head: all of :class:`AttackUnitRecord` but the verdicts, and their count.

    Attributes:
        key, attack, attack_hash, attack_type, epsilon, run: As in :class:`AttackUnitRecord`.
        images: How many verdicts the body holds (the batch's size).
    """

    key: str
    attack: str
    attack_hash: str
    attack_type: Track
    epsilon: int
    run: RunRecord
    images: int

    def to_json(self) -> dict[str, Any]:
        """Schema 2's head line, as a dict."""
        return {"schema": SCHEMA, "kind": "attack", "key": self.key, "attack": self.attack,
                "attack_hash": self.attack_hash, "attack_type": self.attack_type.value, "epsilon": self.epsilon,
                "run": self.run.to_json(), "images": self.images}


@dataclass(frozen=True)
class DefenseHead:
    """A defense record's head: all of :class:`DefenseUnitRecord` but its answers and CSV notes, and the count of
    answers.

    Attributes:
        key, defense, defense_hash, run: As in :class:`DefenseUnitRecord`.
        predictions: How many image versions the body answers for.
    """

    key: str
    defense: str
    defense_hash: str
    run: RunRecord
    predictions: int

    def to_json(self) -> dict[str, Any]:
        """Schema 2's head line, as a dict."""
        return {"schema": SCHEMA, "kind": "defense", "key": self.key, "defense": self.defense,
                "defense_hash": self.defense_hash, "run": self.run.to_json(), "predictions": self.predictions}


#: The head of a record of either stage.
Head = Union[AttackHead, DefenseHead]


def _line(value: dict[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True).encode("ascii") + b"\n"


def encode_record(record: Record) -> bytes:
    """The bytes of ``record`` as stored: schema 2, its head line then its body line (UTF-8 JSON, keys sorted)."""
    return _line(record.head.to_json()) + _line(record.body_json())


def _head_from_json(value: object) -> Head:
    if not isinstance(value, dict) or value.get("schema") != SCHEMA:
        schema = value.get("schema") if isinstance(value, dict) else None
        raise RecordError(f"record head: schema {schema!r}, expected {SCHEMA}")
    try:
        run = RunRecord.from_json(value["run"])
        if value["kind"] == "attack":
            return AttackHead(key=str(value["key"]), attack=str(value["attack"]),
                              attack_hash=str(value["attack_hash"]), attack_type=_attack_track(value["attack_type"]),
                              epsilon=int(value["epsilon"]), run=run, images=int(value["images"]))
        if value["kind"] == "defense":
            return DefenseHead(key=str(value["key"]), defense=str(value["defense"]),
                               defense_hash=str(value["defense_hash"]), run=run,
                               predictions=int(value["predictions"]))
        raise ValueError(f"kind {value['kind']!r}")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RecordError(f"record head: {exc!r}") from None


def _first_line(data: bytes) -> bytes | None:
    """The first line of ``data`` without its newline; None when ``data`` holds no newline."""
    end = data.find(b"\n")
    return None if end < 0 else data[:end]


def decode_head(data: bytes) -> Head | None:
    """The head of a schema-2 record from a prefix of its bytes that holds its first line.

    Returns:
        The head; None when ``data`` holds no whole first line or the first line is not a JSON object or is one of
        schema 1 (a schema-1 record, whose head is read with :func:`decode_record`, or a prefix cut short).

    Raises:
        RecordError: The first line is a JSON object but not a schema-2 head (another schema, a missing or
            mistyped field).
    """
    line = _first_line(data)
    if line is None:
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    if not isinstance(value, dict) or value.get("schema") == LEGACY_SCHEMA:  # schema 1 on one line
        return None
    return _head_from_json(value)


def _column(body: dict[str, Any], name: str, length: int) -> list[Any]:
    column = body[name]
    if not isinstance(column, list) or len(column) != length:
        raise ValueError(f"column {name!r}: expected a list of {length} values")
    return column


def _attack_body(head: AttackHead, body: dict[str, Any]) -> AttackUnitRecord:
    columns = [_column(body, name, head.images) for name in _VERDICT_COLUMNS]
    images = tuple(ImageVerdict(image_id=str(i), version=str(v), problem=str(p), clipped_values=int(c),
                                max_violation=int(m), linf=int(d), note=str(n))
                   for i, v, p, c, m, d, n in zip(*columns, strict=True))
    return AttackUnitRecord(key=head.key, attack=head.attack, attack_hash=head.attack_hash,
                            attack_type=head.attack_type, epsilon=head.epsilon, run=head.run, images=images)


def _defense_body(head: DefenseHead, body: dict[str, Any]) -> DefenseUnitRecord:
    versions = [str(v) for v in _column(body, "versions", head.predictions)]
    labels = [_optional_int(label) for label in _column(body, "labels", head.predictions)]
    problems = [str(p) for p in _column(body, "problems", head.predictions)]
    if len(set(versions)) != len(versions):
        raise ValueError("a version answered twice")
    notes = body["csv_notes"]
    if not isinstance(notes, list):
        raise TypeError("csv_notes: expected a list")
    return DefenseUnitRecord(key=head.key, defense=head.defense, defense_hash=head.defense_hash, run=head.run,
                             csv_notes=tuple(str(note) for note in notes),
                             predictions={v: DefenseAnswer(label, problem)
                                          for v, label, problem in zip(versions, labels, problems, strict=True)})


def decode_record(data: bytes) -> Record:
    """A whole record from its stored bytes: schema 2 (head line, body line) or schema 1 (one JSON object).

    Raises:
        RecordError: Not a record of either schema: unreadable JSON, a missing or mistyped field, columns of
            another length than the head's count.
    """
    head = decode_head(data)
    if head is None:  # schema 1: one (indented) JSON object
        try:
            value = json.loads(data)
        except ValueError as exc:
            raise RecordError(f"record: not JSON ({exc})") from None
        if not isinstance(value, dict):
            raise RecordError(f"record: expected a JSON object, got {type(value).__name__}")
        if "attack" in value:
            return AttackUnitRecord.from_json(value)
        return DefenseUnitRecord.from_json(value)
    try:
        body = json.loads(data[data.index(b"\n") + 1:])
        if not isinstance(body, dict):
            raise TypeError(f"record body: expected a JSON object, got {type(body).__name__}")
        if isinstance(head, AttackHead):
            return _attack_body(head, body)
        return _defense_body(head, body)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RecordError(f"{'attack' if isinstance(head, AttackHead) else 'defense'} record {head.key}: body: "
                          f"{exc!r}") from None


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


#: Type of every body column: attack verdicts, then defense answers (``labels``: int or None).
_COLUMN_TYPES: dict[str, type | tuple[type, ...]] = {
    "image_id": str, "version": str, "problem": str, "clipped_values": int, "max_violation": int, "linf": int,
    "note": str, "versions": str, "labels": (int, type(None)), "problems": str}


def decode_columns(data: bytes) -> tuple[Head, dict[str, list[Any]]]:
    """A record's head and its body as columns, without an object per image: what a table built by streaming
    records reads (several times faster than :func:`decode_record` for a batch of 100).

    Returns:
        (head, columns): for an attack record the columns ``image_id``, ``version``, ``problem`` (str),
        ``clipped_values``, ``max_violation``, ``linf`` (int), ``note`` (str); for a defense record ``versions``
        (str), ``labels`` (int or None), ``problems`` (str) and ``csv_notes`` (str, its own length); every other
        column as long as the head's count (``images``, ``predictions``). A schema-1 record is converted.

    Raises:
        RecordError: As :func:`decode_record`; a column of another length or holding a value of another type.
    """
    head = decode_head(data)
    if head is None:
        record = decode_record(data)
        return record.head, record.body_json()
    kind = "attack" if isinstance(head, AttackHead) else "defense"
    try:
        body = json.loads(data[data.index(b"\n") + 1:])
        if not isinstance(body, dict):
            raise TypeError(f"expected a JSON object, got {type(body).__name__}")
        names = _VERDICT_COLUMNS if isinstance(head, AttackHead) else ("versions", "labels", "problems")
        count = head.images if isinstance(head, AttackHead) else head.predictions
        columns = {name: _column(body, name, count) for name in names}
        for name, column in columns.items():
            kinds = _COLUMN_TYPES[name]
            allowed = set(kinds) if isinstance(kinds, tuple) else {kinds}
            if not set(map(type, column)) <= allowed:  # exact types: JSON gives no subclass but bool of int
                raise TypeError(f"column {name!r}: a value not of {kinds}")
        if isinstance(head, DefenseHead):
            notes = body["csv_notes"]
            if not isinstance(notes, list) or not all(isinstance(note, str) for note in notes):
                raise TypeError("csv_notes: expected a list of strings")
            if len(set(columns["versions"])) != count:
                raise ValueError("a version answered twice")
            columns["csv_notes"] = notes
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordError(f"{kind} record {head.key}: body: {exc!r}") from None
    return head, columns
