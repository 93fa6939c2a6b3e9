"""The per-image results table and its CSV form.

Three kinds of rows describe a competition completely; scores, matrices and reports are views of them:

* :class:`PredictionRow` — one defense's answer on one version of one image (clean, or one attack at one ε);
* :class:`AttackImageRow` — what the referee made of one attack output (substituted? how much clipped?);
* :class:`RunRow` — one submission process (exit code, timeout, seconds).
"""

from __future__ import annotations

import csv
import io
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, Iterable, TypeVar

from harness.store import atomic_write_text

#: ``attack_type`` of the rows that hold clean-image predictions.
CLEAN = "clean"


@dataclass(frozen=True)
class PredictionRow:
    """One defense prediction.

    Attributes:
        epsilon: ε of the attack in 0–255 units; None for clean images.
        attack: Attack name; "" for clean images.
        attack_type: "clean", "attack" or "targeted_attack".
        defense: Defense name.
        image_id: Original image id.
        true_label: Ground truth.
        target_class: The image's target class.
        prediction: Predicted class, or None for "no prediction".
        problem: Why there is no prediction ("" otherwise).
    """

    epsilon: int | None
    attack: str
    attack_type: str
    defense: str
    image_id: str
    true_label: int
    target_class: int
    prediction: int | None
    problem: str = ""


@dataclass(frozen=True)
class AttackImageRow:
    """The referee's verdict on one attack output.

    Attributes:
        epsilon: ε in 0–255 units.
        attack: Attack name.
        attack_type: "attack" or "targeted_attack".
        image_id: Original image id.
        problem: Why the clean image was substituted ("" when the output was used).
        clipped_values: Channel values moved back onto the ε-ball.
        max_violation: Largest violation in 0–255 units.
        linf: L∞ distance of the refereed image to the clean one.
        note: "" or a remark on a used output (its mode converted to RGB); a results folder written before
            this column existed reads as "".
    """

    epsilon: int
    attack: str
    attack_type: str
    image_id: str
    problem: str
    clipped_values: int
    max_violation: int
    linf: int
    note: str = ""


@dataclass(frozen=True)
class RunRow:
    """One submission process.

    Attributes:
        kind: "attack", "targeted_attack" or "defense".
        name: Submission name.
        epsilon: ε for attack runs; None for defense runs (they mix ε).
        batch: Key of the batch (the store record's name).
        images: Images in the batch.
        exit_code: Exit status (None when it never started).
        timed_out: Whether the wall-clock limit killed it.
        seconds: Wall time inside the process.
        problem: "" or a plain-words reason.
        log: Log file, relative to the results folder.
    """

    kind: str
    name: str
    epsilon: int | None
    batch: str
    images: int
    exit_code: int | None
    timed_out: bool
    seconds: float
    problem: str
    log: str


Row = TypeVar("Row", PredictionRow, AttackImageRow, RunRow)


def _encode(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def to_csv(rows: Iterable[Any], row_type: type) -> str:
    """CSV text (header + rows) of dataclass rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    names = [f.name for f in fields(row_type)]
    writer.writerow(names)
    for row in rows:
        writer.writerow([_encode(getattr(row, name)) for name in names])
    return buffer.getvalue()


def write_csv(path: Path, rows: Iterable[Any], row_type: type) -> None:
    """Write rows atomically as CSV."""
    atomic_write_text(path, to_csv(rows, row_type))


_INT_OR_NONE = {"epsilon", "prediction", "exit_code"}
_INT = {"true_label", "target_class", "clipped_values", "max_violation", "linf", "images"}


def read_csv(path: Path, row_type: type[Row]) -> list[Row]:
    """Read rows written by :func:`write_csv`.

    Raises:
        ValueError: The file's header does not match ``row_type`` (names the file and the expected header), or the
            file is not CSV of such rows (a field beyond the csv module's limit, a malformed value).
    """
    try:
        return _read_csv(path, row_type)
    except csv.Error as exc:
        raise ValueError(f"{path}: not a results table of this harness ({exc})") from None


def _read_csv(path: Path, row_type: type[Row]) -> list[Row]:
    names = [f.name for f in fields(row_type)]
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        optional = [f.name for f in fields(row_type) if f.default is not MISSING]
        if header is not None and header != names and header == names[:len(names) - len(optional)]:
            names = header  # an older folder without the trailing optional columns: they take their defaults
        elif header != names:
            raise ValueError(f"{path}: header {header} does not match the expected {names}; "
                             "was it written by another version of the harness?")
        rows = []
        for values in reader:
            kwargs: dict[str, Any] = {}
            for name, text in zip(names, values, strict=False):  # a short row fails below
                if name in _INT_OR_NONE:
                    kwargs[name] = int(text) if text != "" else None
                elif name in _INT:
                    kwargs[name] = int(text)
                elif name == "timed_out":
                    kwargs[name] = text == "1"
                elif name == "seconds":
                    kwargs[name] = float(text)
                else:
                    kwargs[name] = text
            rows.append(row_type(**kwargs))
    return rows
