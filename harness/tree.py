"""Walking and reading a folder that a participant controls, without letting the folder stop the harness.

A submission folder may hold anything a file system can: a named pipe (opening it for reading blocks until a
writer comes), a unix socket or a device node (opening it fails or has side effects), thousands of nested folders
(a recursive walk raises RecursionError), millions of entries. :func:`walk` lists such a folder iteratively, bounded
in depth and entries, never following a symbolic link and never opening anything but folders; it classifies every
entry (:class:`Kind`). :func:`open_regular` opens one file for reading only when it is a regular file, without
following a final link and without blocking.
"""

from __future__ import annotations

import enum
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Collection

from harness.errors import TreeError
from harness.names import one_line

__all__ = ["MAX_DEPTH", "MAX_ENTRIES", "Entry", "Kind", "TreeError", "kind_of", "one_path", "open_regular", "walk"]

#: Folders nested deeper than this below the walked folder are refused (NIPS 2017 submissions nest a few levels).
MAX_DEPTH = 64
#: Entries (files, folders, links) below the walked folder beyond this are refused.
MAX_ENTRIES = 100_000


class Kind(str, enum.Enum):
    """What a directory entry is (its ``lstat`` type); the value names it in messages."""

    FOLDER = "folder"
    FILE = "regular file"
    LINK = "symbolic link"
    FIFO = "named pipe (FIFO)"
    SOCKET = "unix socket"
    CHAR_DEVICE = "character device"
    BLOCK_DEVICE = "block device"
    OTHER = "special file"


def kind_of(mode: int) -> Kind:
    """The :class:`Kind` of an ``st_mode`` (from ``lstat``)."""
    for test, kind in ((stat.S_ISDIR, Kind.FOLDER), (stat.S_ISREG, Kind.FILE), (stat.S_ISLNK, Kind.LINK),
                       (stat.S_ISFIFO, Kind.FIFO), (stat.S_ISSOCK, Kind.SOCKET), (stat.S_ISCHR, Kind.CHAR_DEVICE),
                       (stat.S_ISBLK, Kind.BLOCK_DEVICE)):
        if test(mode):
            return kind
    return Kind.OTHER


@dataclass(frozen=True)
class Entry:
    """One entry below a walked folder.

    Attributes:
        path: Relative to the walked folder.
        kind: What it is (links are not followed).
    """

    path: Path
    kind: Kind


def _shown_path(folder: Path, rel: Path) -> str:
    parts = rel.parts
    return one_path(folder.joinpath(*(parts if len(parts) <= 4 else [*parts[:3], "…", parts[-1]])))


def walk(folder: Path, *, skip: Collection[str] = (), max_depth: int = MAX_DEPTH,
         max_entries: int | None = MAX_ENTRIES) -> list[tuple[Path, list[Entry]]]:
    """List ``folder`` and every folder below it, without recursion, links followed or files opened.

    Args:
        folder: The folder to walk.
        skip: Names left out wherever they occur (neither listed nor entered), e.g. caches.
        max_depth: Deepest folder allowed, in levels below ``folder``.
        max_entries: Most entries allowed below ``folder`` in all (None: no bound, for the harness's own folders).

    Returns:
        ``(relative folder, its entries sorted by name)`` for ``folder`` (relative path ``.``) and each folder below
        it, in depth-first pre-order, sub-folders in name order (as ``os.walk`` with sorted names visits them).

    Raises:
        TreeError: A folder below ``folder`` is nested deeper than ``max_depth``, there are more than
            ``max_entries`` entries, or a folder cannot be listed (the message names it).
    """
    result: list[tuple[Path, list[Entry]]] = []
    pending = [Path()]
    count = 0
    while pending:
        rel = pending.pop()
        where = folder / rel
        try:
            with os.scandir(where) as listing:
                found = []
                for item in listing:
                    if item.name in skip:
                        continue
                    count += 1
                    if max_entries is not None and count > max_entries:
                        raise TreeError(f"{folder}: more than {max_entries:,} files and folders; remove what the "
                                        "submission does not need (data sets, caches, logs)")
                    if item.is_symlink():
                        kind = Kind.LINK
                    elif item.is_dir(follow_symlinks=False):
                        kind = Kind.FOLDER
                    elif item.is_file(follow_symlinks=False):
                        kind = Kind.FILE
                    else:
                        kind = kind_of(item.stat(follow_symlinks=False).st_mode)
                    found.append(Entry(rel / item.name, kind))
        except TreeError:
            raise
        except OSError as exc:
            raise TreeError(f"{_shown_path(folder, rel)}: cannot list this folder ({exc.strerror or exc}); "
                            "make it readable or remove it") from None
        found.sort(key=lambda entry: entry.path.name)
        result.append((rel, found))
        subfolders = [entry.path for entry in found if entry.kind is Kind.FOLDER]
        if subfolders and len(rel.parts) + 1 > max_depth:
            raise TreeError(f"{_shown_path(folder, subfolders[0])}: folders nested more than {max_depth} levels "
                            "deep; flatten the folder")
        pending += reversed(subfolders)
    return result


def open_regular(path: Path) -> BinaryIO:
    """Open ``path`` for binary reading only when it is a regular file: a final symbolic link is not followed and
    opening never blocks (a named pipe opens at once and is then refused).

    Raises:
        TreeError: ``path`` cannot be opened (missing, a link, unreadable) or is not a regular file.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise TreeError(f"{one_path(path)}: cannot open it for reading ({exc.strerror or exc}); it must be a "
                        "readable regular file, not a symbolic link") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise TreeError(f"{one_path(path)}: is a {kind_of(mode).value}, not a regular file; remove it or "
                            "replace it with a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def one_path(path: Path | str) -> str:
    """``path`` for a one-line message: control characters escaped, at most 200 characters (a participant names
    the files)."""
    return one_line(str(path), limit=200)
