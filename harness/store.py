"""Completed work: the :class:`Store` interface (put, get, exists, list by prefix) and its local-folder
implementation; content-hash keys; atomic file writes; the results folder's permission rule.

What is kept in a store, under which keys, is :class:`harness.record_store.RecordStore`'s business; no other
module reads or writes store data, so the store can move to object storage without touching its callers.

One permission rule holds for the whole results folder (:func:`make_private`): it and every folder below it are
:data:`FOLDER_MODE` (700), every file :data:`FILE_MODE` (600): its owner's alone, whatever the umask. The folder is
made 700 when a competition starts, so what it writes meanwhile (logs) is out of other users' reach until the
final pass sets every mode.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

__all__ = ["FILE_MODE", "FOLDER_MODE", "LocalStore", "MovingStore", "Store", "atomic_write_bytes", "atomic_write_json",
           "atomic_write_text", "key_of", "make_private"]


#: Mode of every folder of a results folder (the folder itself included).
FOLDER_MODE = 0o700
#: Mode of every file of a results folder.
FILE_MODE = 0o600


def make_private(root: Path, *, skip: tuple[str, ...] = ()) -> list[str]:
    """Give ``root`` and everything below it the results folder's one rule: folders :data:`FOLDER_MODE`, files
    :data:`FILE_MODE`. Symbolic links are neither changed nor followed.

    Args:
        root: A results folder, or a folder of one (``report/``).
        skip: Names of entries directly in ``root`` that are left alone (a scratch folder in use).

    Returns:
        One line per entry whose mode could not be set ([] when all were); never raises.
    """
    problems: list[str] = []

    def tighten(path: str, mode: int) -> None:
        try:
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode) or stat.S_IMODE(info.st_mode) == mode:
                return
            if stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode):
                os.chmod(path, mode)
        except OSError as exc:
            problems.append(f"{path}: {exc.strerror or exc}")

    tighten(str(root), FOLDER_MODE)
    for folder, folders, files in os.walk(root, onerror=lambda exc: problems.append(str(exc))):
        if folder == str(root):
            folders[:] = [name for name in folders if name not in skip]
            files = [name for name in files if name not in skip]
        for name in folders:
            tighten(os.path.join(folder, name), FOLDER_MODE)
        for name in files:
            tighten(os.path.join(folder, name), FILE_MODE)
    return problems


def key_of(*parts: object) -> str:
    """A stable 32-hex-digit key from the string forms of ``parts``."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(str(part).encode())
        digest.update(b"\x1f")
    return digest.hexdigest()[:32]


def atomic_write_bytes(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part.

    Args:
        path: Destination.
        data: Content.
        durable: Also flush to disk (fsync) before the rename, so the file survives a power loss, not only a
            killed process. Stored images skip it (a rename is still atomic against a killed process); the
            runner redoes a unit whose record points to an image that is missing.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """UTF-8 text version of :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, value: Any) -> None:
    """Write ``value`` as sorted, indented JSON atomically."""
    atomic_write_text(path, json.dumps(value, indent=1, sort_keys=True) + "\n")


@runtime_checkable
class Store(Protocol):
    """Where finished work is kept: named byte objects (keys like ``attack_runs/ab/<key>.json``, ``/``-separated).

    These operations are all a store needs, so that it can live in a local folder (:class:`LocalStore`) or in
    object storage. Each :meth:`put` is atomic per key (a reader sees the old object or the whole new one, as
    with object storage); a unit's work is several objects, so callers write its images first and its record
    last, in one :meth:`put`, and treat a record whose images are missing as absent (no rename of anything).
    A folder (``a/b``) is the ``/``-separated part of keys before their last name; folders exist only through
    the keys below them.
    """

    def put(self, key: str, data: bytes, *, durable: bool = True) -> None:
        """Store ``data`` under ``key`` (replacing what was there). ``durable``: also survive a power loss."""

    def get(self, key: str, *, max_bytes: int | None = None) -> bytes | None:
        """The bytes under ``key``; None when absent or unreadable.

        ``max_bytes``: read only a prefix of the object, of at most that many bytes, that holds at least its whole
        first line when that line (its ``\n`` included) is no longer (object storage: a ranged GET); a store may
        return fewer bytes than ``max_bytes`` but never a first line cut short below it."""

    def exists(self, key: str) -> bool:
        """Whether ``key`` holds an object."""

    def list(self, prefix: str) -> list[str]:
        """Every key that starts with ``prefix``, sorted (every level below it: a walk)."""

    def list_folder(self, folder: str) -> builtins.list[str]:
        """The names directly in ``folder`` (``""``: the top), sorted: an object's name as is, a folder's name
        followed by ``/`` (object storage: a listing with delimiter ``/``). [] when the folder holds nothing."""

    def delete(self, key: str) -> None:
        """Remove the object under ``key`` (nothing when there is none)."""


@runtime_checkable
class MovingStore(Store, Protocol):
    """A :class:`Store` that can also rename an object cheaply and atomically (a local folder can; object storage
    copies then deletes, which :meth:`harness.record_store.RecordStore.migrate` does itself without this)."""

    def move(self, source: str, target: str) -> None:
        """Rename the object under ``source`` to ``target`` atomically (replacing what ``target`` held): a reader
        sees it under one key or the other, never under neither.

        Raises:
            OSError: ``source`` holds nothing, or the rename failed (nothing changed).
        """

    def sync(self) -> None:
        """Make every :meth:`move` so far survive a power loss."""


class LocalStore:
    """A :class:`Store` (and :class:`MovingStore`) in a local folder: key ``a/b.json`` is the file
    ``root/a/b.json``.

    A put writes a temporary file beside the target and renames it (the folder's way of making one object's
    write atomic, as object storage does); temporary files (``.*.tmp``) are never listed.

    Args:
        root: The folder (created on first write).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._prefix = os.path.join(root, "")  # the root as a string ending in "/"

    def _file(self, key: str) -> str:
        """The file of ``key`` (a string: a million lookups build no Path objects)."""
        parts = key.split("/")
        if not key or any(part in ("", ".", "..") for part in parts):
            raise ValueError(f"store key {key!r}: expected names separated by '/', none empty, '.' or '..'")
        return self._prefix + key

    def _path(self, key: str) -> Path:
        return Path(self._file(key))

    def put(self, key: str, data: bytes, *, durable: bool = True) -> None:
        atomic_write_bytes(self._path(key), data, durable=durable)

    def get(self, key: str, *, max_bytes: int | None = None) -> bytes | None:
        try:
            with open(self._file(key), "rb") as handle:
                # with max_bytes, the first line only (buffered: one read of the file's start)
                return handle.read() if max_bytes is None else handle.readline(max_bytes)
        except OSError:
            return None

    def exists(self, key: str) -> bool:
        return os.path.isfile(self._file(key))

    def list(self, prefix: str) -> list[str]:
        folder = prefix.rpartition("/")[0]
        base = self._path(folder) if folder else self.root
        keys = []
        for path in base.rglob("*") if base.is_dir() else ():
            relative = path.relative_to(self.root).as_posix()
            if relative.startswith(prefix) and not path.name.startswith(".") and path.is_file():
                keys.append(relative)
        return sorted(keys)

    def list_folder(self, folder: str) -> builtins.list[str]:
        names = []
        try:
            with os.scandir(self._file(folder) if folder else self.root) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        names.append(entry.name + "/")
                    elif entry.is_file():
                        names.append(entry.name)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(names)

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass

    def move(self, source: str, target: str) -> None:
        destination = self._path(target)
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._path(source), destination)

    def sync(self) -> None:
        os.sync()
