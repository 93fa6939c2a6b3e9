"""Where a competition keeps its files: the results folder, its store and the per-unit scratch folders.

Scratch lives in a folder only the harness may use: created fresh (``mkdir``, mode 700) under a name no other user
can guess before it exists (:attr:`Workspace.scratch`), opened without following a link and checked (a folder,
owned by this process's user, no permission for anyone else) each time a unit starts (:meth:`Workspace.open_scratch`).
``/dev/shm`` is world-writable but sticky, so no other user can rename, replace or enter that folder; everything
below it is reachable only by the harness and, through bind mounts and its own uid, by the run it belongs to.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from harness.cleanup import remove_tree, sweep_dead
from harness.errors import ScratchError
from harness.instance import Instance
from harness.record_store import RecordStore
from harness.results_folder import ResultsFolder

__all__ = ["SCRATCH_PREFIX", "ScratchError", "Workspace", "legacy_scratch", "private_folder",
           "remove_legacy_scratch", "scratch_folders", "scratch_parent", "sweep_dead_scratch"]

#: Scratch folders are ``<scratch parent>/adv-harness-scratch-<instance tag>-<random>``.
SCRATCH_PREFIX = "adv-harness-scratch-"

#: This process's scratch folder per (scratch parent, instance tag): the random part of the name is drawn when a
#: folder is first needed and dropped once the folder is removed (:meth:`Workspace.remove_scratch`).
_FOLDERS: dict[tuple[str, str], Path] = {}
_FOLDERS_LOCK = threading.Lock()


def scratch_parent(root: Path) -> Path:
    """Where scratch folders of ``root``'s runs go: in RAM (``/dev/shm``) when available, else ``root/tmp``.

    Runs create and delete thousands of small files; on a disk mounted with ``discard`` each unlink costs
    milliseconds, in RAM microseconds.
    """
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm
    return ResultsFolder(root).local_scratch


def scratch_folders(root: Path, instance: Instance) -> list[Path]:
    """The scratch folders of ``instance`` that exist now where ``root``'s scratch goes (whichever process made
    them: their random part is known only to it)."""
    return sorted(scratch_parent(root).glob(f"{SCRATCH_PREFIX}{instance.tag}-*"))


def legacy_scratch(root: Path) -> Path:
    """The scratch folder harnesses before instance identities used for ``root`` (``/dev/shm/adv-harness-HASH``);
    removed when ``root`` is used again."""
    tag = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return Path("/dev/shm") / f"adv-harness-{tag}"


def remove_legacy_scratch(root: Path) -> str:
    """Remove :func:`legacy_scratch` of ``root`` when it is a folder of this process's user. Its name is
    predictable: one another user made (or a link) is left alone.

    Returns:
        "" when nothing is left of ours, else a one-line description of what could not be removed. Never raises.
    """
    folder = legacy_scratch(root)
    try:
        info = os.lstat(folder)
    except OSError:
        return ""
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        return ""
    return remove_tree(folder)


def sweep_dead_scratch(root: Path) -> list[Path]:
    """Delete the scratch folders that dead harness instances left where ``root``'s scratch goes.

    Returns:
        The folders deleted. Never raises.
    """
    return sweep_dead(scratch_parent(root), SCRATCH_PREFIX)


def private_folder(path: Path) -> int:
    """Create ``path`` as a folder only this process's user may use (mode 700) unless it exists, open it without
    following a link and check it: a folder, owned by this process's effective uid, no permission for anyone else.

    Returns:
        An open descriptor of the folder (``O_DIRECTORY | O_NOFOLLOW``); the caller closes it.

    Raises:
        ScratchError: It cannot be created or opened, or it is a link, not a folder, another user's, or open to
            other users (not what the harness made).
    """
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ScratchError(exc.errno, f"cannot create the scratch folder {path}: {exc.strerror or exc}") from None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        why = "a symbolic link or not a folder" if exc.errno in (errno.ELOOP, errno.ENOTDIR) else exc.strerror
        raise ScratchError(exc.errno, f"scratch folder {path} refused: {why} (not what the harness made)") from None
    info = os.fstat(fd)
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid != os.geteuid() or mode & 0o077:
        os.close(fd)
        raise ScratchError(errno.EPERM, f"scratch folder {path} refused: owned by uid {info.st_uid} with mode "
                                        f"{mode:o}, not the harness's own (uid {os.geteuid()}, mode 700)")
    if mode != 0o700:
        os.fchmod(fd, 0o700)
    return fd


@dataclass(frozen=True)
class Workspace:
    """Where a competition keeps its files, and whose they are.

    Attributes:
        root: The results folder (``--output_dir``).
        instance: The harness instance that makes the runs' files (:mod:`harness.instance`).
    """

    root: Path
    instance: Instance

    @property
    def _key(self) -> tuple[str, str]:
        return str(scratch_parent(self.root)), self.instance.tag

    @property
    def scratch(self) -> Path:
        """This process's scratch folder for the instance's runs into ``root``: :func:`scratch_parent` /
        ``adv-harness-scratch-TAG-RANDOM``. The random part is drawn in this process (once, until
        :meth:`remove_scratch`), so no other user can make the folder first; the folder itself is made by
        :meth:`open_scratch`. It is swept once the instance is dead (:func:`sweep_dead_scratch`)."""
        key = self._key
        with _FOLDERS_LOCK:
            if key not in _FOLDERS:
                _FOLDERS[key] = Path(key[0]) / f"{SCRATCH_PREFIX}{key[1]}-{secrets.token_hex(8)}"
            return _FOLDERS[key]

    def open_scratch(self) -> int:
        """Make :attr:`scratch` when missing and open it, checked (:func:`private_folder`).

        Returns:
            An open descriptor of the folder; the caller closes it.

        Raises:
            ScratchError: It cannot be made, or what is there is not the harness's own folder.
        """
        parent = scratch_parent(self.root)
        if not parent.is_dir():  # root/tmp: in the results folder, which is the harness's
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ScratchError(exc.errno, f"cannot create {parent}: {exc.strerror or exc}") from None
        return private_folder(self.scratch)

    def remove_scratch(self) -> str:
        """Delete this process's scratch folder (a later :attr:`scratch` is a new name).

        Returns:
            "" when nothing is left, else a one-line description of what could not be removed. Never raises.
        """
        with _FOLDERS_LOCK:
            folder = _FOLDERS.pop(self._key, None)
        return "" if folder is None else remove_tree(folder)

    @property
    def folder(self) -> ResultsFolder:
        """The results folder's paths and file names."""
        return ResultsFolder(self.root)

    @property
    def store(self) -> RecordStore:
        return self.folder.store()
