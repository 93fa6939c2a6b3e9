"""Strict but tolerant parsing of a defense's ``OUTPUT_FILE`` (``<file>.png,<label>`` rows, no header).

Nothing in the file can stop the run: every expected image gets either a label or the reason it has none
("missing row", "duplicate rows", "non-integer label …"), and rows naming unknown files are counted as notes.

The variants the NIPS 2017 evaluator accepted are accepted: a file name with or without its ``.png`` extension
(or with ``.jpg``), a UTF-8 byte-order mark, Windows line endings, a header row, and a row repeated with the same
label. Rows that disagree for one image stay "duplicate rows" (the evaluator silently kept the last one).
"""

from __future__ import annotations

import csv
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from harness.names import parse_label

#: Largest prediction file read; a larger one is cut here (its later rows count as missing).
MAX_CSV_BYTES = 64 << 20


@dataclass(frozen=True)
class Answer:
    """A defense's answer for one image: a label, or None with the reason."""

    label: int | None
    problem: str


@dataclass(frozen=True)
class ParsedPredictions:
    """Every expected file's answer plus notes on rows that were ignored.

    Attributes:
        answers: File name → :class:`Answer`, one per expected name.
        notes: Plain-words remarks (unknown names, malformed rows, a missing or oversized file).
    """

    answers: dict[str, Answer]
    notes: list[str]


def parse_predictions(path: Path, *, expected: set[str], num_classes: int | None = None) -> ParsedPredictions:
    """Parse a defense's output file.

    Args:
        path: The CSV the defense wrote (may be missing, empty, binary, a symlink, unreadable …).
        expected: The file names the defense was given.
        num_classes: Labels must lie in ``0..num_classes-1`` (None: any ASCII-digit label).

    Returns:
        :class:`ParsedPredictions` with an answer for every name in ``expected``.
    """
    data, reason = _read_output(path)
    if reason:
        return ParsedPredictions({name: Answer(None, reason) for name in sorted(expected)}, [reason])
    notes: list[str] = []
    if len(data) > MAX_CSV_BYTES:
        notes.append(f"output file larger than {MAX_CSV_BYTES >> 20} MiB; read only its beginning")
        data = data[:MAX_CSV_BYTES]
        data = data[:data.rfind(b"\n") + 1]  # never keep half a row: "b.png,12" must not become "b.png,1"
    text = data.decode("utf-8", errors="replace").replace("\0", "").removeprefix("\ufeff")
    labels = _labels_by_name(text, expected, notes)
    answers = {}
    for name in sorted(expected):
        values = labels.get(name)
        if not values:
            answers[name] = Answer(None, "missing row")
        elif len(set(values)) > 1:
            answers[name] = Answer(None, "duplicate rows")
        else:
            answers[name] = _label(values[0], num_classes)
    return ParsedPredictions(answers, notes)


def _read_output(path: Path) -> tuple[bytes, str]:
    """(the file's first ``MAX_CSV_BYTES + 1`` bytes, "") or (b"", why it cannot be read), never following a link."""
    try:
        info = os.lstat(path)
        reason = ("output file is a symbolic link" if stat.S_ISLNK(info.st_mode)
                  else "" if stat.S_ISREG(info.st_mode) else "no output file")
    except FileNotFoundError:
        reason = "no output file"
    except OSError as exc:
        reason = f"output file unreadable ({exc.strerror or exc})"
    if reason:
        return b"", reason
    try:
        with open(path, "rb", opener=lambda name, flags: os.open(name, flags | os.O_NOFOLLOW)) as handle:
            return handle.read(MAX_CSV_BYTES + 1), ""
    except OSError as exc:
        return b"", f"output file unreadable ({exc.strerror or exc})"


def _labels_by_name(text: str, expected: set[str], notes: list[str]) -> dict[str, list[str]]:
    """Expected file name → the label cells of its rows; rows naming no given file, without a label column or not
    CSV are counted in ``notes``."""
    labels: dict[str, list[str]] = {}
    unknown = malformed = unparseable = 0
    unknown_example = ""
    for line in text.splitlines():
        try:
            row = next(csv.reader([line]), [])
        except csv.Error:
            unparseable += 1
            continue
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) < 2:
            malformed += 1
            continue
        name = _expected_name(row[0].strip(), expected)
        if name is None:
            unknown += 1
            unknown_example = unknown_example or row[0].strip()
            continue
        labels.setdefault(name, []).append(row[1].strip())
    if unknown:
        shown = unknown_example if len(unknown_example) <= 40 else unknown_example[:40] + "…"
        notes.append(f"{unknown} row(s) name files that were not given (e.g. {shown!r})")
    if malformed:
        notes.append(f"{malformed} row(s) without a label column")
    if unparseable:
        notes.append(f"{unparseable} unparseable row(s)")
    return labels


def _label(text: str, num_classes: int | None) -> Answer:
    try:
        return Answer(parse_label(text, num_classes=num_classes), "")
    except ValueError as exc:
        return Answer(None, str(exc))


def _expected_name(name: str, expected: set[str]) -> str | None:
    """The expected file ``name`` designates: itself, ``name + ".png"`` or ``<stem>.png`` for ``<stem>.jpg``
    (as the NIPS 2017 evaluator matched rows); None when it names no given file."""
    if name in expected:
        return name
    stem = name[:-4] if name.lower().endswith((".png", ".jpg")) else name
    candidate = stem + ".png"
    return candidate if candidate in expected else None
