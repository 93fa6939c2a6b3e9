"""Names and text that reach files and the terminal: submission names, entry points, labels, messages.

Everything a participant controls is either restricted to a safe character set (names, entry points, labels) or
escaped before it is shown (messages): no terminal escape sequence, no line break, nothing unbounded.
"""

from __future__ import annotations

import re

from submission_kit.messages import one_line

__all__ = ["NAME_PATTERN", "NAME_RULE", "RESERVED_NAMES", "LABEL_PATTERN", "name_problem", "entry_point_problem",
           "parse_label", "one_line", "shown", "IMAGE_REFERENCE_RULE", "image_reference_problem"]

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


# A docker image reference, as docker's reference grammar has it: [host[:port]/]path[:tag][@sha256:digest].
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_NAME = rf"(?:{_HOST}(?::[0-9]+)?/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_REFERENCE = re.compile(rf"(?P<name>{_NAME})(?::[\w][\w.-]{{0,127}})?(?:@sha256:[a-f0-9]{{64}})?", re.ASCII)
#: Longest name part of an image reference (docker's limit, registry host included).
IMAGE_NAME_MAX = 255
#: Longest image reference: the name, a tag of at most 128 characters and a sha256 digest.
IMAGE_REFERENCE_MAX = IMAGE_NAME_MAX + 1 + 128 + 1 + 71
#: What :func:`image_reference_problem` allows, in words.
IMAGE_REFERENCE_RULE = ("[registry[:port]/]name[:tag][@sha256:digest], the name in lowercase letters, digits and "
                        f"separators . _ __ - (at most {IMAGE_NAME_MAX} characters), e.g. "
                        "\"gcr.io/tensorflow/tensorflow:1.1.0\"")


def image_reference_problem(reference: str) -> str:
    """Why ``reference`` is not a docker image reference ("" when it is, or when it is empty: no image named).

    The grammar is docker's (``[host[:port]/]path[:tag][@sha256:<64 hex>]``, path components of lowercase letters
    and digits joined by ``.``, ``_``, ``__`` or dashes, tags ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``, the name at most
    :data:`IMAGE_NAME_MAX` characters), so nothing starting with ``-`` (an option to docker), no control character
    and nothing unbounded reaches docker, the results or a terminal.
    """
    if reference == "":
        return ""
    if len(reference) > IMAGE_REFERENCE_MAX:
        return (f"{shown(reference)} is {len(reference):,} characters long, not a docker image reference; write "
                f"{IMAGE_REFERENCE_RULE}")
    match = _REFERENCE.fullmatch(reference)
    if match is None:
        hint = " (docker image names are lowercase)" if _REFERENCE.fullmatch(reference.lower()) else ""
        return f"{shown(reference)} is not a docker image reference{hint}; write {IMAGE_REFERENCE_RULE}"
    if len(match.group("name")) > IMAGE_NAME_MAX:
        return f"{shown(reference)} has a name longer than {IMAGE_NAME_MAX} characters; use a shorter image name"
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
