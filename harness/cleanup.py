"""Removing what a run left behind, whatever it left: cleanup that cannot crash the harness.

A run controls its output folder: it may nest thousands of folders (``shutil.rmtree`` recurses and raises
RecursionError), ``chmod 000`` folders and files (a non-root harness cannot list or delete them until it gives the
permissions back), or leave entries that cannot be deleted at all. :func:`remove_tree` walks iteratively, restores
the owner's permissions on the way, never follows symbolic links, and returns what it could not remove instead of
raising.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["remove_tree"]


def _open_up(path: str) -> None:
    """Give the owner read/write/search permission on a folder (best effort)."""
    try:
        mode = os.lstat(path).st_mode
        if stat.S_ISDIR(mode) and stat.S_IMODE(mode) & 0o700 != 0o700:
            os.chmod(path, stat.S_IMODE(mode) | 0o700)
    except OSError:
        pass


def remove_tree(path: Path) -> str:
    """Delete ``path`` and everything below it, iteratively (no recursion limit), never following symlinks.

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
        return f"cleanup of {top} failed: {exc.strerror or exc}"
    if not stat.S_ISDIR(info.st_mode):
        try:
            os.unlink(top)
            return ""
        except OSError as exc:
            return f"cleanup of {top} failed: {exc.strerror or exc}"
    failures = 0
    first = ""
    # Depth-first with an explicit stack: (folder, children listed yet?).
    stack: list[tuple[str, bool]] = [(top, False)]
    while stack:
        folder, listed = stack.pop()
        if listed:
            try:
                os.rmdir(folder)
            except FileNotFoundError:
                pass
            except OSError as exc:
                failures += 1
                first = first or f"{folder}: {exc.strerror or exc}"
            continue
        _open_up(folder)
        stack.append((folder, True))
        try:
            with os.scandir(folder) as entries:
                children = [(entry.path, entry.is_dir(follow_symlinks=False)) for entry in entries]
        except OSError as exc:
            failures += 1
            first = first or f"{folder}: {exc.strerror or exc}"
            continue
        for child, is_dir in children:
            if is_dir:
                stack.append((child, False))
                continue
            try:
                os.unlink(child)
            except FileNotFoundError:
                pass
            except OSError as exc:
                failures += 1
                first = first or f"{child}: {exc.strerror or exc}"
    if not failures and not os.path.lexists(top):
        return ""
    return f"cleanup of {top} left {max(failures, 1)} entr{'y' if failures <= 1 else 'ies'} ({first or 'still present'})"
