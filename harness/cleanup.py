"""Removing what a run left behind, whatever it left: cleanup that cannot crash the harness.

A run controls its output folder: it may nest thousands of folders (``shutil.rmtree`` recurses and raises
RecursionError), ``chmod 000`` folders and files (a non-root harness cannot list or delete them until it gives the
permissions back), or leave entries that cannot be deleted at all. :func:`remove_tree` walks iteratively, restores
the owner's permissions on the way, never follows symbolic links, and returns what it could not remove instead of
raising.

:func:`sweep_dead` removes the folders that harness instances which are now dead left in a shared folder
(``/dev/shm``, the temporary folder): those named for an :class:`~harness.instance.Instance`.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from harness.instance import Instance, InstanceError

__all__ = ["chmod_at", "owner_of", "remove_tree", "sweep_dead"]


def _describe(where: str, exc: OSError) -> str:
    return f"{where}: {exc.strerror or exc}"


def chmod_at(name: str, mode: int, *, dir_fd: int | None = None, folder: bool = False) -> None:
    """Set the permission bits of ``name`` (relative to ``dir_fd``, or a path) without ever following a symbolic
    link: the entry itself is opened (``O_PATH | O_NOFOLLOW``) and checked, and the open file is changed, so a link
    swapped in after the caller looked is refused instead of followed (Linux has no ``lchmod``).

    Args:
        name: The entry (a name in ``dir_fd``, or a path whose last component is the entry).
        mode: The new permission bits.
        dir_fd: An open folder ``name`` is relative to; None for a path.
        folder: Refuse anything but a folder.

    Raises:
        OSError: ``name`` is missing, a symbolic link (ELOOP), not a folder when ``folder`` is set (ENOTDIR), or
            cannot be changed.
    """
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        kind = stat.S_IFMT(os.fstat(fd).st_mode)
        if kind == stat.S_IFLNK:
            raise OSError(errno.ELOOP, "is a symbolic link (not followed)")
        if folder and kind != stat.S_IFDIR:
            raise OSError(errno.ENOTDIR, "is no longer a folder")
        os.chmod(f"/proc/self/fd/{fd}", mode)  # the opened entry itself, never a name looked up again
    finally:
        os.close(fd)


def _not_a_folder(exc: OSError) -> bool:
    """True when ``exc`` says an entry that was a folder is now something else (a link or file swapped in)."""
    return exc.errno in (errno.ELOOP, errno.ENOTDIR)


def remove_tree(path: Path) -> str:
    """Delete ``path`` and everything below it, never following symlinks, whatever its depth.

    Sub-folders are first moved up to ``path`` itself under fresh names, so no path below it ever grows longer than
    two names (a 3,000-level chain exceeds PATH_MAX) and at most two folders are open at once; folders are given
    back their owner's permissions before they are listed.

    Args:
        path: A folder, file or link; a missing path is not an error.

    Returns:
        "" when nothing is left, else a one-line description of what could not be removed.
    """
    top = str(path)
    try:
        info = os.lstat(top)
    except FileNotFoundError:
        return ""
    except OSError as exc:
        return f"cleanup of {top} failed: {_describe(top, exc)}"
    if not stat.S_ISDIR(info.st_mode):
        try:
            os.unlink(top)
            return ""
        except OSError as exc:
            return f"cleanup of {top} failed: {_describe(top, exc)}"
    try:
        if stat.S_IMODE(info.st_mode) & 0o700 != 0o700:
            chmod_at(top, stat.S_IMODE(info.st_mode) | 0o700, folder=True)
        top_fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        return f"cleanup of {top} failed: {_describe(top, exc)}"
    try:
        failures = _empty_folder(top, top_fd)
    finally:
        os.close(top_fd)
    if not failures:
        _remove_folder(top, None, top, failures)
    if not failures:
        return ""
    count = len(failures)
    return f"cleanup of {top} left {count} entr{'y' if count == 1 else 'ies'} ({failures[0]})"


# The steps of remove_tree below work only through open folder descriptors (``dir_fd``) and ``O_NOFOLLOW``, so
# splitting them keeps its guarantees: no path is looked up twice, no symbolic link is followed.
def _empty_folder(top: str, top_fd: int) -> list[str]:
    """Delete everything inside the open folder ``top_fd`` (named ``top`` in messages); return the failures.

    Folders directly below it are emptied one by one; deeper ones are first moved up next to them under fresh
    names (:func:`_move_up`), so at most two folders are open at once and no path grows.
    """
    failures: list[str] = []
    pending: list[str | None] = [None]  # None: the top folder itself; names: folders moved directly below it
    moved = 0
    while pending:
        name = pending.pop()
        fd = top_fd if name is None else _open_below(top, top_fd, name, failures)
        if fd is None:
            continue
        try:
            moved = _clear_entries(top, top_fd, fd, name, pending, moved, failures)
        finally:
            if fd != top_fd:
                os.close(fd)
        if name is not None:
            _remove_folder(name, top_fd, os.path.join(top, name), failures)
    return failures


def _open_below(top: str, top_fd: int, name: str, failures: list[str]) -> int | None:
    """Open folder ``name`` of ``top_fd`` after giving it back its owner's permissions; None when it cannot be
    opened (a failure) or is no folder any more (swapped in after the scan: removed, never followed)."""
    try:
        chmod_at(name, 0o700, dir_fd=top_fd, folder=True)
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=top_fd)
    except OSError as exc:
        if not _not_a_folder(exc):
            failures.append(_describe(os.path.join(top, name), exc))
            return None
    try:  # something else was swapped in after the scan: removed, never followed
        os.unlink(name, dir_fd=top_fd)
    except FileNotFoundError:
        pass
    except OSError as unlink_error:
        failures.append(_describe(os.path.join(top, name), unlink_error))
    return None


def _clear_entries(top: str, top_fd: int, fd: int, name: str | None, pending: list[str | None], moved: int,
                   failures: list[str]) -> int:
    """Unlink the non-folders of the open folder ``fd`` (``name`` below ``top``; None: ``top`` itself) and queue its
    folders in ``pending`` (those of ``top`` by name, deeper ones moved up first). Returns the updated count of
    moved folders (which makes their fresh names)."""
    try:
        with os.scandir(fd) as entries:
            children = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
        for child, is_dir in children:
            try:
                if not is_dir:
                    os.unlink(child, dir_fd=fd)
                elif name is None:
                    pending.append(child)
                else:  # move the sub-folder up next to its parent: depth never grows
                    moved += 1
                    flat = f".cleanup-{os.getpid()}-{moved}"
                    if _move_up(fd, top_fd, child, flat):
                        pending.append(flat)
            except FileNotFoundError:
                pass
            except OSError as exc:
                failures.append(_describe(os.path.join(top, name or "", child), exc))
    except OSError as exc:
        failures.append(_describe(os.path.join(top, name or ""), exc))
    return moved


def _move_up(fd: int, top_fd: int, child: str, flat: str) -> bool:
    """Move folder ``child`` of ``fd`` to ``flat`` in ``top_fd``; False when it was no folder any more (then it is
    unlinked, never followed). Raises OSError when it can be neither moved nor removed."""
    try:  # moving a folder needs write permission on it
        chmod_at(child, 0o700, dir_fd=fd, folder=True)
    except OSError as exc:
        if not _not_a_folder(exc):
            raise
        os.unlink(child, dir_fd=fd)  # swapped in after the scan: removed, not followed
        return False
    os.rename(child, flat, src_dir_fd=fd, dst_dir_fd=top_fd)
    return True


def _remove_folder(name: str, dir_fd: int | None, where: str, failures: list[str]) -> None:
    """Remove the empty folder ``name`` (of ``dir_fd``, or a path); a missing one is fine, other errors are added to
    ``failures`` as ``where: reason``."""
    try:
        os.rmdir(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except OSError as exc:
        failures.append(_describe(where, exc))


def owner_of(name: str, prefix: str) -> Instance | None:
    """The instance a name ``PREFIX + TAG`` or ``PREFIX + TAG + "-" + anything`` carries; None for another naming."""
    if not name.startswith(prefix):
        return None
    parts = name[len(prefix):].split("-", 4)
    try:
        return Instance.parse("-".join(parts[:4]))
    except InstanceError:
        return None


def sweep_dead(parent: Path, prefix: str) -> list[Path]:
    """Delete the folders in ``parent`` named for a harness instance that is dead (see :func:`owner_of` and
    :meth:`harness.instance.Instance.dead`).

    Folders of live instances, of another host, of another naming, other users' folders, files and links are left
    alone; a folder that cannot be deleted completely is left as it is now.

    Returns:
        The folders deleted. Never raises.
    """
    removed: list[Path] = []
    try:
        entries = sorted(parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        owner = owner_of(entry.name, prefix)
        if owner is None or not owner.dead():
            continue
        try:
            info = os.lstat(entry)
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            continue
        if not remove_tree(entry):
            removed.append(entry)
    return removed
