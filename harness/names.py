"""Names and text that reach files and the terminal: submission names, entry points, labels, messages.

Everything a participant controls is either restricted to a safe character set (names, entry points, labels) or
escaped before it is shown (messages): no terminal escape sequence, no line break, nothing unbounded.
"""

from __future__ import annotations

import re

from submission_kit.messages import one_line

__all__ = ["NAME_PATTERN", "NAME_RULE", "RESERVED_NAMES", "LABEL_PATTERN", "name_problem", "entry_point_problem",
           "parse_label", "one_line", "shown"]

#: A submission name: ASCII letters, digits, '_', '-', '.'; starts with a letter or digit; at most 64 characters.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
#: What :data:`NAME_PATTERN` allows, in words (said at discovery).
NAME_RULE = "letters, digits, '_', '-', '.' (ASCII, 1-64 characters, starting with a letter or digit)"
#: Names that mean something else in the results (``clean`` is the column of unattacked images); any case.
RESERVED_NAMES = frozenset({"clean"})
#: A class label: ASCII digits only (no sign, '_', spaces, or other scripts' digits), at most 9 of them.
LABEL_PATTERN = re.compile(r"[0-9]{1,9}")


def name_problem(name: str) -> str:
    """Why ``name`` cannot name a submission ("" when it can)."""
    if not NAME_PATTERN.fullmatch(name):
        return f"name {shown(name)} must use {NAME_RULE}"
    if name.lower() in RESERVED_NAMES:
        return f"name {shown(name)} is reserved (it names the column of clean images); rename the folder"
    return ""


def entry_point_problem(entry: str) -> str:
    """Why ``entry`` cannot be an entry point path ("" when it can): each part follows :data:`NAME_RULE`."""
    parts = entry.split("/")
    if not all(NAME_PATTERN.fullmatch(part) for part in parts):
        return f"entry_point {shown(entry)} must be a relative path whose parts use {NAME_RULE}"
    return ""


def parse_label(text: str, *, num_classes: int | None = None) -> int:
    """A class label from text.

    Args:
        text: The cell, surrounding spaces removed by the caller.
        num_classes: Labels lie in ``0..num_classes-1``; None skips the upper bound.

    Returns:
        The label.

    Raises:
        ValueError: ``text`` is not 1-9 ASCII digits, or the label lies outside the class range (one-line message).
    """
    if not LABEL_PATTERN.fullmatch(text):
        raise ValueError(f"non-integer label {shown(text, limit=20)}")
    label = int(text)
    if num_classes is not None and label >= num_classes:
        raise ValueError(f"label {label} outside the classes 0..{num_classes - 1}")
    return label


def shown(value: str, *, limit: int = 40) -> str:
    """A participant's string quoted for a message: escaped, at most ``limit`` characters shown."""
    text = repr(value if len(value) <= limit else value[:limit] + "…")
    return one_line(text, limit=limit + 20)
