"""Completed work on disk: content-hash keys, atomic writes, resume.

Layout below the results folder::

    store/images/ab/<sha256>.png          refereed adversarial images, content-addressed
    store/attack_runs/<key>.json          one attack batch: run record + referee results per image
    store/defense_runs/<defense>/<key>.json  one defense batch: run record + prediction per image hash

A record exists only once its work is complete (files are written to a temporary name, flushed and renamed),
so a killed harness leaves either a whole record or none.

One permission rule holds for the whole results folder (:func:`make_private`): it and every folder below it are
:data:`FOLDER_MODE` (700), every file :data:`FILE_MODE` (600): its owner's alone, whatever the umask. The folder is
made 700 when a competition starts, so what it writes meanwhile (logs) is out of other users' reach until the
final pass sets every mode.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any


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


class Store:
    """Content-addressed storage of finished work under ``root``.

    Args:
        root: The ``store`` folder (created on first write).
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    # -- images -------------------------------------------------------------------------------------
    def image_path(self, sha256: str) -> Path:
        """Where the image with this content hash lives."""
        return self.root / "images" / sha256[:2] / f"{sha256}.png"

    def put_image(self, data: bytes, sha256: str) -> Path:
        """Store PNG bytes under their hash (no-op when present) and return the path."""
        path = self.image_path(sha256)
        if not path.exists():
            atomic_write_bytes(path, data, durable=False)
        return path

    def holds_records(self) -> bool:
        """Whether any unit record folder exists (a store written by some run)."""
        return any((self.root / kind).is_dir() for kind in ("attack_runs", "defense_runs"))

    def clean_versions_path(self, dataset_hash: str) -> Path:
        """The map image id → pixel hash of a dataset's clean images."""
        return self.root / "clean_versions" / f"{dataset_hash}.json"

    # -- records ------------------------------------------------------------------------------------
    def attack_record_path(self, key: str) -> Path:
        """Record of one attack batch."""
        return self.root / "attack_runs" / f"{key}.json"

    def defense_record_path(self, defense_hash: str, key: str) -> Path:
        """Record of one defense batch."""
        return self.root / "defense_runs" / defense_hash[:32] / f"{key}.json"

    def defense_records(self, defense_hash: str) -> list[dict[str, Any]]:
        """Every finished batch record of a defense version (sorted by file name)."""
        folder = self.root / "defense_runs" / defense_hash[:32]
        if not folder.is_dir():
            return []
        records = (self.read(path) for path in sorted(folder.glob("*.json")))
        return [record for record in records if record is not None]

    @staticmethod
    def read(path: Path) -> dict[str, Any] | None:
        """A record, or None when absent or unreadable (an unreadable record is redone)."""
        try:
            value = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    @staticmethod
    def write(path: Path, record: dict[str, Any]) -> None:
        """Write a record atomically."""
        atomic_write_json(path, record)
