"""Submissions: folders with a ``metadata.json`` and an entry point, as in the NIPS 2017 competition.

``metadata.json`` holds ``type`` (attack | targeted_attack | defense), ``entry_point`` (a path relative to the
folder, run as ``./ENTRY`` with the folder as working directory) and optionally ``container`` /
``container_gpu`` (docker images, recorded for the docker runner). Unknown keys are kept and ignored.

Discovery never stops at a broken folder: it returns the good submissions and a list of problems, each
naming the file and the fix.
"""

from __future__ import annotations

import difflib
import enum
import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from harness.names import NAME_PATTERN, NAME_RULE, entry_point_problem, name_problem, one_line, shown

METADATA_FILE = "metadata.json"
#: Folders and files never hashed nor copied (caches that change without the submission changing).
IGNORED_NAMES = frozenset({"__pycache__", ".git", ".ipynb_checkpoints", ".DS_Store"})


class SubmissionType(str, enum.Enum):
    """The three tracks of the competition."""

    ATTACK = "attack"
    TARGETED_ATTACK = "targeted_attack"
    DEFENSE = "defense"

    @property
    def is_attack(self) -> bool:
        """True for both attack tracks."""
        return self is not SubmissionType.DEFENSE


class SubmissionError(ValueError):
    """A submission folder that cannot be run; the message names the file and the fix."""


@dataclass(frozen=True)
class Submission:
    """A parsed, runnable submission.

    Attributes:
        name: Folder name; unique across the competition.
        type: Its track.
        entry_point: Entry point path relative to ``path``.
        path: The submission folder.
        content_hash: SHA-256 over every file's relative path, mode bits and bytes.
        container: Docker image from metadata ("" when absent).
        container_gpu: GPU docker image from metadata ("" when absent).
        warnings: Non-fatal remarks (e.g. entry point not executable).
        targets_defense: Attacks only, optional: the defense the attack was written against (metadata key
            ``targets_defense``; adaptive attacks). A label for views (:mod:`harness.adaptive`); never used in
            scoring ("" when absent).
    """

    name: str
    type: SubmissionType
    entry_point: str
    path: Path
    content_hash: str
    container: str = ""
    container_gpu: str = ""
    warnings: tuple[str, ...] = field(default=())
    targets_defense: str = ""


@dataclass(frozen=True)
class SubmissionProblem:
    """A folder that was skipped, with the reason."""

    path: Path
    message: str


def iter_files(folder: Path) -> list[Path]:
    """Regular files below ``folder`` (relative paths, sorted), skipping :data:`IGNORED_NAMES` and symlinks."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d not in IGNORED_NAMES
                             and not os.path.islink(os.path.join(dirpath, d)))
        for name in sorted(filenames):
            full = Path(dirpath) / name
            if name in IGNORED_NAMES or name.endswith(".pyc") or full.is_symlink():
                continue
            found.append(full.relative_to(folder))
    return sorted(found)


@dataclass(frozen=True)
class Link:
    """A symbolic link inside a submission folder that resolves inside it (kept in every fresh copy).

    Attributes:
        path: The link, relative to the folder.
        target: What it resolves to (all links followed), relative to the folder.
    """

    path: Path
    target: Path


def scan_links(folder: Path) -> tuple[list[Link], list[str]]:
    """Symbolic links below ``folder`` (not inside :data:`IGNORED_NAMES`), sorted by path.

    Public NIPS 2017 submissions link checkpoints (``ckpt -> store``); the organisers' docker volume mount kept
    such links, so links resolving to an existing file or folder inside ``folder`` are kept (and hashed).

    Returns:
        ``(kept, leaving)``: the links resolving inside the folder, and one plain-words remark per link that
        leaves it, dangles or points into an ignored cache (such links are not copied into runs).
    """
    root = folder.resolve()
    kept: list[Link] = []
    leaving: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d not in IGNORED_NAMES)
        for name in sorted(dirnames + filenames):
            full = Path(dirpath) / name
            if name in IGNORED_NAMES or not full.is_symlink():
                continue
            rel = full.relative_to(folder)
            try:
                target = full.resolve(strict=True).relative_to(root)
            except (OSError, RuntimeError, ValueError):
                target = None
            if target is None or any(part in IGNORED_NAMES for part in target.parts):
                leaving.append(f"{folder / rel}: symbolic link to {os.readlink(full)!r} leaves the submission "
                               "folder (or leads nowhere); runs get a copy of the folder without it — move "
                               "what it points to into the folder and link to that")
            else:
                kept.append(Link(path=rel, target=target))
    return kept, leaving


def content_hash(folder: Path) -> str:
    """SHA-256 over relative paths, executable bits and bytes of every file in ``folder``, and over the links
    kept inside it (:func:`scan_links`: path and target)."""
    digest = hashlib.sha256()
    for rel in iter_files(folder):
        full = folder / rel
        executable = bool(full.stat().st_mode & stat.S_IXUSR)
        digest.update(f"{rel.as_posix()}\0{int(executable)}\0".encode())
        with open(full, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    for link in scan_links(folder)[0]:  # no line for a folder without links: its hash is unchanged
        digest.update(f"{link.path.as_posix()}\0link\0{link.target.as_posix()}\0".encode())
    return digest.hexdigest()


def suggest(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """A " — did you mean 'x'?" suffix when ``name`` resembles one of ``choices``, else ""."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" — did you mean {close[0]!r}?" if close else ""


def parse_submission(folder: str | Path) -> Submission:
    """Parse one submission folder.

    Args:
        folder: A folder holding ``metadata.json`` and the entry point.

    Returns:
        The :class:`Submission`.

    Raises:
        SubmissionError: Missing or malformed metadata, unknown type, missing entry point, bad folder name.
    """
    folder = Path(folder)
    meta_path = folder / METADATA_FILE
    problem = name_problem(folder.name)
    if problem:
        raise SubmissionError(f"{one_line(str(folder))}: folder {problem}")
    if not meta_path.is_file():
        raise SubmissionError(f"{meta_path}: missing; add a metadata.json with "
                              '{"type": "attack|targeted_attack|defense", "entry_point": "run.sh"}')
    try:
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SubmissionError(f"{meta_path}:{exc.lineno}:{exc.colno}: invalid JSON ({exc.msg})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SubmissionError(f"{meta_path}: cannot read ({exc})") from None
    if not isinstance(metadata, dict):
        raise SubmissionError(f"{meta_path}: must hold a JSON object, not {type(metadata).__name__}")

    kinds = [kind.value for kind in SubmissionType]
    raw_type = metadata.get("type")
    if raw_type is None:
        raise SubmissionError(f"{meta_path}: no \"type\"; set it to one of {', '.join(kinds)}")
    if raw_type not in kinds:
        raise SubmissionError(f"{meta_path}: unknown type {one_line(repr(raw_type), limit=60)}; "
                              f"use one of {', '.join(kinds)}{suggest(str(raw_type), kinds)}")
    entry = metadata.get("entry_point")
    if not isinstance(entry, str) or not entry.strip():
        raise SubmissionError(f"{meta_path}: no \"entry_point\"; name the script to run, e.g. "
                              '"entry_point": "run_attack.sh"')
    entry = entry.strip()
    entry_rel = Path(entry)
    if entry_rel.is_absolute() or ".." in entry_rel.parts:
        raise SubmissionError(f"{meta_path}: entry_point {shown(entry)} must be a path inside the folder")
    problem = entry_point_problem(entry_rel.as_posix())
    if problem:
        raise SubmissionError(f"{meta_path}: {problem}")
    entry_path = folder / entry_rel
    if entry_path.is_symlink() or (entry_path.is_file() and entry_rel not in iter_files(folder)):
        raise SubmissionError(f"{meta_path}: entry_point {entry!r} is a symbolic link or an ignored file "
                              "(cache); point it at a regular file in the folder")
    if not entry_path.is_file():
        present = [p.as_posix() for p in iter_files(folder)]
        raise SubmissionError(f"{meta_path}: entry_point {entry!r} does not exist in {folder}"
                              f"{suggest(entry, present)}")
    _check_interpreter_line(entry_path)
    warnings = list(scan_links(folder)[1])
    if not os.access(entry_path, os.X_OK):
        warnings.append(f"{entry_path}: not executable; the harness marks its copy executable "
                        f"(fix with: chmod +x {entry_path})")
    for key in ("container", "container_gpu"):
        if key in metadata and not isinstance(metadata[key], str):
            raise SubmissionError(f"{meta_path}: \"{key}\" must be a string (a docker image name)")
    aim = metadata.get("targets_defense", "")
    if not isinstance(aim, str) or (aim and not NAME_PATTERN.fullmatch(aim)):
        raise SubmissionError(f"{meta_path}: \"targets_defense\" must be the folder name of one defense "
                              f"({NAME_RULE}), e.g. \"targets_defense\": \"jpeg\"")
    return Submission(
        name=folder.name,
        type=SubmissionType(raw_type),
        entry_point=entry_rel.as_posix(),
        path=folder.resolve(),
        content_hash=content_hash(folder),
        container=metadata.get("container", ""),
        container_gpu=metadata.get("container_gpu", ""),
        warnings=tuple(warnings),
        targets_defense=aim,
    )


def _check_interpreter_line(entry_path: Path) -> None:
    """Raise SubmissionError when the entry point's ``#!`` line cannot be used by the system: saved with
    Windows line endings (``#!/bin/bash\\r`` → "No such file or directory") or preceded by a byte-order mark."""
    try:
        with open(entry_path, "rb") as handle:
            first = handle.readline(4096)
    except OSError as exc:
        raise SubmissionError(f"{entry_path}: cannot read the entry point ({exc.strerror or exc})") from None
    fix = f"sed -i 's/\\r$//' {entry_path}  (or dos2unix)"
    if first.startswith(b"#!") and first.rstrip(b"\n").endswith(b"\r"):
        raise SubmissionError(f"{entry_path}: its #! line ends with a Windows line ending (\\r), so the system "
                              "looks for an interpreter whose name ends in '\\r' and fails with 'No such file or "
                              f"directory'; save it with Unix line endings: {fix}")
    if first.startswith(b"\xef\xbb\xbf#!"):
        raise SubmissionError(f"{entry_path}: a UTF-8 byte-order mark precedes its #! line, so the system cannot "
                              f"run it; save it without the mark (UTF-8 without BOM)")


@dataclass(frozen=True)
class Discovery:
    """Result of scanning submission folders.

    Attributes:
        submissions: Runnable submissions, sorted by name.
        problems: Folders that were skipped and why.
    """

    submissions: tuple[Submission, ...]
    problems: tuple[SubmissionProblem, ...]

    def of_type(self, *types: SubmissionType) -> list[Submission]:
        """Submissions of the given tracks, sorted by name."""
        return [s for s in self.submissions if s.type in types]


def discover(folders: list[Path], *, expected: dict[Path, set[SubmissionType]] | None = None) -> Discovery:
    """Find submissions in the immediate sub-folders of each folder.

    Args:
        folders: Parent folders (e.g. ``attacks/`` and ``defenses/``); missing ones raise.
        expected: Optional tracks allowed per parent folder; a submission of another track is reported as a
            problem and skipped (a defense dropped into ``attacks/`` is almost always a mistake).

    Returns:
        A :class:`Discovery`.

    Raises:
        SubmissionError: A parent folder is missing, or two submissions share a name (case-insensitively).
    """
    found: list[Submission] = []
    problems: list[SubmissionProblem] = []
    for parent in folders:
        if not parent.is_dir():
            raise SubmissionError(f"submission folder {parent} does not exist; create it or point "
                                  "--attacks_dir/--defenses_dir elsewhere")
        for child in sorted(parent.iterdir()):
            if not child.is_dir() or child.name.startswith((".", "_")):
                continue
            try:
                submission = parse_submission(child)
            except SubmissionError as exc:
                problems.append(SubmissionProblem(child, str(exc)))
                continue
            allowed = (expected or {}).get(parent)
            if allowed is not None and submission.type not in allowed:
                problems.append(SubmissionProblem(child, (
                    f"{child / METADATA_FILE}: type {submission.type.value!r} does not belong in {parent}; "
                    f"move the folder or fix its type")))
                continue
            found.append(submission)
    seen: dict[str, Submission] = {}
    for submission in found:
        key = submission.name.lower()
        if key in seen:
            raise SubmissionError(f"two submissions are named {submission.name!r}: {seen[key].path} and "
                                  f"{submission.path}; rename one folder (names must be unique)")
        seen[key] = submission
    return Discovery(submissions=tuple(sorted(found, key=lambda s: s.name)), problems=tuple(problems))
