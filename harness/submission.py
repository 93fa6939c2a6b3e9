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
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

METADATA_FILE = "metadata.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
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


def content_hash(folder: Path) -> str:
    """SHA-256 over relative paths, executable bits and bytes of every file in ``folder``."""
    digest = hashlib.sha256()
    for rel in iter_files(folder):
        full = folder / rel
        executable = bool(full.stat().st_mode & stat.S_IXUSR)
        digest.update(f"{rel.as_posix()}\0{int(executable)}\0".encode())
        with open(full, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
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
    if not _NAME.match(folder.name):
        raise SubmissionError(f"{folder}: folder name {folder.name!r} must use letters, digits, '_', '-', '.'")
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
        raise SubmissionError(f"{meta_path}: unknown type {raw_type!r}; use one of {', '.join(kinds)}"
                              f"{suggest(str(raw_type), kinds)}")
    entry = metadata.get("entry_point")
    if not isinstance(entry, str) or not entry.strip():
        raise SubmissionError(f"{meta_path}: no \"entry_point\"; name the script to run, e.g. "
                              '"entry_point": "run_attack.sh"')
    entry = entry.strip()
    entry_rel = Path(entry)
    if entry_rel.is_absolute() or ".." in entry_rel.parts:
        raise SubmissionError(f"{meta_path}: entry_point {entry!r} must be a path inside the folder")
    entry_path = folder / entry_rel
    if entry_path.is_symlink() or (entry_path.is_file() and entry_rel not in iter_files(folder)):
        raise SubmissionError(f"{meta_path}: entry_point {entry!r} is a symbolic link or an ignored file "
                              "(cache); point it at a regular file in the folder")
    if not entry_path.is_file():
        present = [p.as_posix() for p in iter_files(folder)]
        raise SubmissionError(f"{meta_path}: entry_point {entry!r} does not exist in {folder}"
                              f"{suggest(entry, present)}")
    warnings = []
    if not os.access(entry_path, os.X_OK):
        warnings.append(f"{entry_path}: not executable; the harness marks its copy executable "
                        f"(fix with: chmod +x {entry_path})")
    for key in ("container", "container_gpu"):
        if key in metadata and not isinstance(metadata[key], str):
            raise SubmissionError(f"{meta_path}: \"{key}\" must be a string (a docker image name)")
    aim = metadata.get("targets_defense", "")
    if not isinstance(aim, str) or (aim and not _NAME.match(aim)):
        raise SubmissionError(f"{meta_path}: \"targets_defense\" must be the folder name of one defense "
                              "(letters, digits, '_', '-', '.'), e.g. \"targets_defense\": \"jpeg\"")
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
