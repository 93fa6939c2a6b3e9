"""Submissions: folders with a ``metadata.json`` and an entry point, as in the NIPS 2017 competition.

``metadata.json`` holds ``type`` (attack | targeted_attack | defense), ``entry_point`` (a path relative to the
folder, run as ``./ENTRY`` with the folder as working directory) and optionally ``container`` /
``container_gpu`` (docker image references, checked against docker's grammar at discovery and used by the docker
runner), ``targets_defense``, ``role`` and ``iterates`` (labels for the report's views and sanity checks:
:class:`Submission`). Unknown keys are kept and ignored.

Discovery never stops at a broken folder: it returns the good submissions and a list of problems, each
naming the file and the fix.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import SubmissionError as SubmissionError  # re-exported: its old home
from harness.names import (
    NAME_PATTERN,
    NAME_RULE,
    entry_point_problem,
    image_reference_problem,
    name_problem,
    one_line,
    shown,
)
from harness.tracks import AttackRole, Track
from harness.tree import Kind, TreeError, one_path, open_regular, walk
from submission_kit.messages import close_names

METADATA_FILE = "metadata.json"
#: Folders and files never hashed nor copied (caches that change without the submission changing).
IGNORED_NAMES = frozenset({"__pycache__", ".git", ".ipynb_checkpoints", ".DS_Store"})


#: A submission's track (``metadata.json``'s ``type``): the one track enum, :class:`harness.tracks.Track`.
SubmissionType = Track

__all__ = ["IGNORED_NAMES", "METADATA_FILE", "AttackRole", "Discovery", "Link", "Listing", "Submission",
           "SubmissionError", "SubmissionProblem", "SubmissionType", "Track", "content_hash", "discover", "iter_files",
           "list_folder", "parse_submission", "scan_links", "suggest"]


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
        role: Attacks only, optional: its :class:`AttackRole` (metadata key ``role``), read by the report's sanity
            checks; never used in scoring (None when absent).
        iterates: Attacks only, optional: the single-step attack this iterative one repeats (metadata key
            ``iterates``, a folder name, e.g. ``"fgsm"`` for I-FGSM and PGD); the sanity checks compare the two
            ("" when absent).
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
    role: AttackRole | None = None
    iterates: str = ""

    def optional_keys(self) -> dict[str, str]:
        """The optional metadata keys that are set (``targets_defense``, ``role``, ``iterates``), as the manifest
        records them; {} for NIPS 2017 metadata."""
        keys = {"targets_defense": self.targets_defense, "role": self.role.value if self.role else "",
                "iterates": self.iterates}
        return {key: value for key, value in keys.items() if value}


@dataclass(frozen=True)
class SubmissionProblem:
    """A folder that was skipped, with the reason."""

    path: Path
    message: str


@dataclass(frozen=True)
class Listing:
    """What a submission folder holds (:func:`list_folder`).

    Attributes:
        files: Regular files, relative, sorted (caches of :data:`IGNORED_NAMES` and ``*.pyc`` left out).
        links: Symbolic links, relative, in walk order (depth first, each folder's links by name before its
            sub-folders).
    """

    files: tuple[Path, ...]
    links: tuple[Path, ...]


def list_folder(folder: Path) -> Listing:
    """Classify everything below ``folder`` without recursion and without opening a file (:func:`harness.tree.walk`).

    Regular files and folders are kept; symbolic links are listed for :func:`scan_links`; anything else (named
    pipe, unix socket, device) is refused by name. :data:`IGNORED_NAMES` are neither entered nor checked.

    Raises:
        SubmissionError: A special file, folders nested deeper than :data:`harness.tree.MAX_DEPTH`, more than
            :data:`harness.tree.MAX_ENTRIES` entries, or a folder that cannot be listed (one line naming it).
    """
    try:
        tree = walk(folder, skip=IGNORED_NAMES)
    except TreeError as exc:
        raise SubmissionError(str(exc)) from None
    files: list[Path] = []
    links: list[Path] = []
    for _, entries in tree:
        for entry in entries:
            if entry.kind is Kind.FILE:
                if not entry.path.name.endswith(".pyc"):
                    files.append(entry.path)
            elif entry.kind is Kind.LINK:
                links.append(entry.path)
            elif entry.kind is not Kind.FOLDER:
                raise SubmissionError(f"{one_path(folder / entry.path)}: a {entry.kind.value}; a submission folder "
                                      "may hold only regular files, folders and symbolic links: remove it")
    return Listing(files=tuple(sorted(files)), links=tuple(links))


def iter_files(folder: Path) -> list[Path]:
    """Regular files below ``folder`` (relative paths, sorted), skipping :data:`IGNORED_NAMES` and symlinks.

    Raises:
        SubmissionError: The folder holds a special file or is too deep or too large (:func:`list_folder`).
    """
    return list(list_folder(folder).files)


@dataclass(frozen=True)
class Link:
    """A symbolic link inside a submission folder that resolves inside it (kept in every fresh copy).

    Attributes:
        path: The link, relative to the folder.
        target: What it resolves to (all links followed), relative to the folder.
    """

    path: Path
    target: Path


def _link_target(full: Path, root: Path) -> Path | None:
    """Where the link ``full`` leads, relative to ``root``; None when it dangles, loops, or leads to something
    other than a regular file or folder. The kernel follows the chain first (at most 40 links, never opening the
    target), so the resolution below it is bounded."""
    try:
        fd = os.open(full, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return None
    finally:
        os.close(fd)
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return None
    try:
        return full.resolve(strict=True).relative_to(root)
    except (OSError, RuntimeError, ValueError):
        return None


def scan_links(folder: Path, listing: Listing | None = None) -> tuple[list[Link], list[str]]:
    """Symbolic links below ``folder`` (not inside :data:`IGNORED_NAMES`), in walk order.

    Public NIPS 2017 submissions link checkpoints (``ckpt -> store``); the organisers' docker volume mount kept
    such links, so links resolving to an existing file or folder inside ``folder`` are kept (and hashed).

    Args:
        folder: The submission folder.
        listing: Its :func:`list_folder` (listed here when None).

    Returns:
        ``(kept, leaving)``: the links resolving inside the folder, and one plain-words remark per link that
        leaves it, dangles or points into an ignored cache (such links are not copied into runs).

    Raises:
        SubmissionError: As :func:`list_folder`, when ``listing`` is None.
    """
    root = folder.resolve()
    kept: list[Link] = []
    leaving: list[str] = []
    for rel in (listing or list_folder(folder)).links:
        full = folder / rel
        target = _link_target(full, root)
        if target is None or any(part in IGNORED_NAMES for part in target.parts):
            try:
                text = shown(os.readlink(full), limit=80)
            except OSError:
                text = "(unreadable)"
            leaving.append(f"{one_path(full)}: symbolic link to {text} leaves the submission folder (or leads "
                           "nowhere); runs get a copy of the folder without it — move what it points to into the "
                           "folder and link to that")
        else:
            kept.append(Link(path=rel, target=target))
    return kept, leaving


def content_hash(folder: Path, listing: Listing | None = None) -> str:
    """SHA-256 over relative paths, executable bits and bytes of every file in ``folder``, and over the links
    kept inside it (:func:`scan_links`: path and target).

    Args:
        folder: The folder.
        listing: Its :func:`list_folder` (listed here when None).

    Raises:
        SubmissionError: A file cannot be read or is no longer a regular file, or as :func:`list_folder`.
    """
    listing = listing or list_folder(folder)
    digest = hashlib.sha256()
    for rel in listing.files:
        try:
            with open_regular(folder / rel) as handle:
                executable = bool(os.fstat(handle.fileno()).st_mode & stat.S_IXUSR)
                digest.update(os.fsencode(rel.as_posix()) + f"\0{int(executable)}\0".encode())
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
        except TreeError as exc:
            raise SubmissionError(str(exc)) from None
        except OSError as exc:
            raise SubmissionError(f"{one_path(folder / rel)}: cannot read ({exc.strerror or exc})") from None
        digest.update(b"\0")
    for link in scan_links(folder, listing)[0]:  # no line for a folder without links: its hash is unchanged
        digest.update(os.fsencode(f"{link.path.as_posix()}\0link\0{link.target.as_posix()}\0"))
    return digest.hexdigest()


def suggest(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """A " — did you mean 'x'?" suffix when ``name`` resembles one of ``choices``, else ""."""
    close = close_names(name, choices)
    return f" — did you mean {close[0]!r}?" if close else ""


#: Largest ``metadata.json`` read (NIPS 2017 ones are a few hundred bytes; bounded, not tight).
MAX_METADATA_BYTES = 16 << 20


def _read_metadata(folder: Path, meta_path: Path) -> object:
    """The parsed ``metadata.json``: a regular file, or a symbolic link to one inside ``folder``."""
    try:
        mode = os.lstat(meta_path).st_mode
    except FileNotFoundError:
        raise SubmissionError(f"{meta_path}: missing; add a metadata.json with "
                              '{"type": "attack|targeted_attack|defense", "entry_point": "run.sh"}') from None
    except OSError as exc:
        raise SubmissionError(f"{meta_path}: cannot read ({exc.strerror or exc})") from None
    source = meta_path
    if stat.S_ISLNK(mode):
        target = _link_target(meta_path, folder.resolve())
        if target is None:
            raise SubmissionError(f"{meta_path}: a symbolic link that leaves the folder (or leads nowhere); make "
                                  "it a regular file")
        source = folder / target
    try:
        with open_regular(source) as handle:
            data = handle.read(MAX_METADATA_BYTES + 1)
    except TreeError as exc:
        raise SubmissionError(str(exc)) from None
    except OSError as exc:
        raise SubmissionError(f"{meta_path}: cannot read ({exc.strerror or exc})") from None
    if len(data) > MAX_METADATA_BYTES:
        raise SubmissionError(f"{meta_path}: larger than {MAX_METADATA_BYTES >> 20} MB; it holds only a few keys "
                              '("type", "entry_point", "container")')
    try:
        return json.loads(data.decode("utf-8"))
    except json.JSONDecodeError as exc:
        raise SubmissionError(f"{meta_path}:{exc.lineno}:{exc.colno}: invalid JSON ({exc.msg})") from None
    except UnicodeDecodeError as exc:
        raise SubmissionError(f"{meta_path}: cannot read ({exc})") from None


def parse_submission(folder: str | Path) -> Submission:
    """Parse one submission folder.

    Args:
        folder: A folder holding ``metadata.json`` and the entry point.

    Returns:
        The :class:`Submission`.

    Raises:
        SubmissionError: Missing or malformed metadata, unknown type, missing entry point, bad folder name, a
            ``container``/``container_gpu`` that is not a docker image reference
            (:func:`harness.names.image_reference_problem`), a special file (named pipe, socket, device) or a folder
            too deep or too large (:func:`list_folder`); one line naming the file.
    """
    folder = Path(folder)
    meta_path = folder / METADATA_FILE
    problem = name_problem(folder.name)
    if problem:
        raise SubmissionError(f"{one_line(str(folder))}: folder {problem}")
    metadata = _read_metadata(folder, meta_path)
    if not isinstance(metadata, dict):
        raise SubmissionError(f"{meta_path}: must hold a JSON object, not {type(metadata).__name__}")

    raw_type = _metadata_type(meta_path, metadata)
    entry = _metadata_entry_point(meta_path, metadata)
    entry_rel = Path(entry)
    for key in ("container", "container_gpu"):
        if key in metadata and not isinstance(metadata[key], str):
            raise SubmissionError(f"{meta_path}: \"{key}\" must be a string (a docker image name)")
        problem = image_reference_problem(metadata.get(key, ""))
        if problem:
            raise SubmissionError(f"{meta_path}: \"{key}\" {problem}")
    listing = list_folder(folder)
    entry_path = folder / entry_rel
    _check_entry_listed(folder, meta_path, entry, listing)
    _check_interpreter_line(entry_path)
    warnings = list(scan_links(folder, listing)[1])
    if not os.access(entry_path, os.X_OK):
        warnings.append(f"{entry_path}: not executable; the harness marks its copy executable "
                        f"(fix with: chmod +x {entry_path})")
    aim = _metadata_name(meta_path, metadata, "targets_defense", "one defense", "jpeg")
    iterates = _metadata_name(meta_path, metadata, "iterates", "one single-step attack", "fgsm")
    return Submission(
        name=folder.name,
        type=SubmissionType(raw_type),
        entry_point=entry_rel.as_posix(),
        path=folder.resolve(),
        content_hash=content_hash(folder, listing),
        container=metadata.get("container", ""),
        container_gpu=metadata.get("container_gpu", ""),
        warnings=tuple(warnings),
        targets_defense=aim,
        role=_metadata_role(meta_path, metadata),
        iterates=iterates,
    )


def _metadata_type(meta_path: Path, metadata: dict[str, object]) -> str:
    """The metadata's ``type``, one of :class:`SubmissionType`'s values (SubmissionError otherwise)."""
    kinds = [kind.value for kind in SubmissionType]
    raw_type = metadata.get("type")
    if raw_type is None:
        raise SubmissionError(f"{meta_path}: no \"type\"; set it to one of {', '.join(kinds)}")
    if raw_type not in kinds:
        raise SubmissionError(f"{meta_path}: unknown type {one_line(repr(raw_type), limit=60)}; "
                              f"use one of {', '.join(kinds)}{suggest(str(raw_type), kinds)}")
    return str(raw_type)


def _metadata_name(meta_path: Path, metadata: dict[str, object], key: str, what: str, example: str) -> str:
    """The optional key ``key`` naming another submission's folder ("" when absent; SubmissionError otherwise)."""
    name = metadata.get(key, "")
    if not isinstance(name, str) or (name and not NAME_PATTERN.fullmatch(name)):
        raise SubmissionError(f"{meta_path}: \"{key}\" must be the folder name of {what} "
                              f"({NAME_RULE}), e.g. \"{key}\": \"{example}\"")
    return name


def _metadata_role(meta_path: Path, metadata: dict[str, object]) -> AttackRole | None:
    """The optional ``role`` (None when absent or ""; SubmissionError naming the roles when it is not one)."""
    role = metadata.get("role", "")
    if role == "":
        return None
    roles = [r.value for r in AttackRole]
    if role not in roles:
        raise SubmissionError(f"{meta_path}: \"role\" {one_line(repr(role), limit=60)} is not one of "
                              f"{', '.join(roles)}{suggest(str(role), roles)}; or leave it out")
    return AttackRole(role)


def _metadata_entry_point(meta_path: Path, metadata: dict[str, object]) -> str:
    """The metadata's ``entry_point``, stripped: a relative path inside the folder (SubmissionError otherwise)."""
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
    return entry


def _check_entry_listed(folder: Path, meta_path: Path, entry: str, listing: Listing) -> None:
    """Raise SubmissionError when the entry point is not one of the folder's regular files (missing, a symbolic
    link or an ignored cache file), with the closest existing name."""
    if Path(entry) in listing.files:
        return
    entry_path = folder / entry
    if os.path.islink(entry_path) or os.path.isfile(entry_path):
        raise SubmissionError(f"{meta_path}: entry_point {entry!r} is a symbolic link or an ignored file "
                              "(cache); point it at a regular file in the folder")
    present = [p.as_posix() for p in listing.files]
    raise SubmissionError(f"{meta_path}: entry_point {entry!r} does not exist in {folder}"
                          f"{suggest(entry, present)}")


def _check_interpreter_line(entry_path: Path) -> None:
    """Raise SubmissionError when the entry point's ``#!`` line cannot be used by the system: saved with
    Windows line endings (``#!/bin/bash\\r`` → "No such file or directory") or preceded by a byte-order mark."""
    try:
        with open_regular(entry_path) as handle:
            first = handle.readline(4096)
    except TreeError as exc:
        raise SubmissionError(str(exc)) from None
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
        A :class:`Discovery`. Folders that cannot run are problems, never exceptions: a bad folder (special file,
        too deep, bad metadata) is skipped with its reason, and submissions sharing a name (case-insensitively)
        are all skipped, each naming the others.

    Raises:
        SubmissionError: A parent folder is missing.
    """
    found: list[Submission] = []
    problems: list[SubmissionProblem] = []
    seen_parents: set[Path] = set()
    for parent in folders:
        if parent.resolve() in seen_parents:  # one folder given twice (e.g. as attacks and targeted attacks)
            continue
        seen_parents.add(parent.resolve())
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
            except (OSError, ValueError) as exc:  # whatever else the folder holds, the others still run
                problems.append(SubmissionProblem(child, one_line(f"{child}: cannot be read ({exc})")))
                continue
            allowed = (expected or {}).get(parent)
            if allowed is not None and submission.type not in allowed:
                problems.append(SubmissionProblem(child, (
                    f"{child / METADATA_FILE}: type {submission.type.value!r} does not belong in {parent}; "
                    f"move the folder or fix its type")))
                continue
            found.append(submission)
    by_name: dict[str, list[Submission]] = {}
    for submission in found:
        by_name.setdefault(submission.name.lower(), []).append(submission)
    kept = []
    for submission in found:
        others = [s for s in by_name[submission.name.lower()] if s is not submission]
        if others:
            problems.append(SubmissionProblem(submission.path, (
                f"{submission.path}: another submission has the same name ({', '.join(str(o.path) for o in others)}"
                "); names must be unique, case-insensitively: rename one folder")))
        else:
            kept.append(submission)
    return Discovery(submissions=tuple(sorted(kept, key=lambda s: s.name)), problems=tuple(problems))
