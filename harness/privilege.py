"""Who a sandboxed run is: never real uid 0, whatever user starts the harness.

bubblewrap started by root maps the sandbox's uid to root outside (it could read ``/etc/shadow`` and write
``/proc/sys``). So a root harness starts bubblewrap through :data:`RUN_UID`, a dedicated unprivileged uid that owns
nothing on the machine but each run's output folder; bubblewrap then creates its own user namespace as that uid, as
it does for any unprivileged user. A non-root harness runs bubblewrap as itself (its uid is already not 0).

Folders a run needs (the Python installation, the referee's package, the run's scratch folder) may sit below a
folder the dedicated uid cannot traverse (``/root`` is mode 700 and often holds a pyenv Python; the scratch folder
is always mode 700, :mod:`harness.workspace`). The run's own folders are chowned to it (:func:`give_to_run`), never
opened to other users. For those the
child process, still root, enters a private mount namespace and bind-mounts each such folder onto an empty
placeholder in a world-traversable staging folder, then drops to :data:`RUN_UID`; bubblewrap binds the placeholder.
The mounts vanish with the run's mount namespace. The staging folder is named for the harness instance that made it
(:mod:`harness.instance`), so the folders of a harness that was killed before it could delete them are removed by
the next one (:func:`sweep_stale_staging`).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import stat
import tempfile
import uuid
from pathlib import Path

from harness.cleanup import chmod_at, sweep_dead
from harness.instance import Instance, process_start_time
from harness.tree import Kind, walk

#: The dedicated unprivileged uid and gid that a root harness runs sandboxes as (no account, owns no file).
RUN_UID = 65533
RUN_GID = 65533

_CLONE_NEWNS = 0x00020000
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18
_BIND_OPTIONS = ("--bind", "--ro-bind", "--ro-bind-try", "--bind-try")
#: Staging folders are ``<tempdir>/adv-harness-stage-<instance tag>-<random>``.
STAGING_PREFIX = "adv-harness-stage-"

try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - every glibc/musl Linux has it
    _LIBC = None


def run_identity() -> tuple[int, int] | None:
    """(uid, gid) to switch to before starting a sandbox: :data:`RUN_UID` for a root harness, None otherwise."""
    return (RUN_UID, RUN_GID) if os.geteuid() == 0 else None


def reachable(path: Path, *, uid: int, gid: int) -> bool:
    """True when ``uid``/``gid`` (no supplementary groups) may traverse to ``path`` and read it (mode bits only)."""
    def allows(info: os.stat_result, bits: int) -> bool:
        if info.st_uid == uid:
            return info.st_mode & (bits << 6) == bits << 6
        if info.st_gid == gid:
            return info.st_mode & (bits << 3) == bits << 3
        return info.st_mode & bits == bits

    path = Path(os.path.abspath(path))
    try:
        for parent in reversed(path.parents):
            if not allows(os.stat(parent), 0o1):
                return False
        info = os.stat(path)
    except OSError:
        return False
    return allows(info, 0o5 if stat.S_ISDIR(info.st_mode) else 0o4)


def staging_parent(*, uid: int, gid: int) -> Path:
    """Where staging folders go: the temporary folder (``TMPDIR``), or ``/tmp``, ``/var/tmp``, ``/dev/shm`` when
    ``uid`` cannot traverse it (a root harness's TMPDIR may lie below ``/root``).

    Raises:
        OSError: None of them is both writable here and traversable by ``uid``.
    """
    for candidate in (tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm"):
        folder = Path(candidate)
        if folder.is_dir() and os.access(folder, os.W_OK | os.X_OK) and reachable(folder, uid=uid, gid=gid):
            return folder
    raise OSError(f"no temporary folder is both writable by the harness and traversable by uid {uid} "
                  f"(TMPDIR is {tempfile.gettempdir()}): set TMPDIR to a folder every user may traverse, e.g. /tmp")


def sweep_stale_staging(parent: Path | None = None) -> list[Path]:
    """Delete staging folders whose harness instance is dead (it was killed before its own clean-up ran).

    An instance is dead when no process on this host has its pid, or the process with that pid started at another
    time (the pid was reused); see :meth:`harness.instance.Instance.dead`. Folders named
    ``adv-harness-stage-PID-START-RANDOM`` by earlier harness versions are judged by pid and start time alike.
    Only folders owned by this process's user are touched; folders of another naming are left alone.

    Args:
        parent: The folder to look in (default: :func:`tempfile.gettempdir`).

    Returns:
        The folders deleted. Never raises.
    """
    parent = Path(parent or tempfile.gettempdir())
    removed = sweep_dead(parent, STAGING_PREFIX)
    if process_start_time(os.getpid()) is None:  # no /proc here: liveness cannot be told, so nothing is stale
        return removed
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for entry in entries:  # the naming of harnesses before instance identities
        if not entry.name.startswith(STAGING_PREFIX):
            continue
        fields = entry.name[len(STAGING_PREFIX):].split("-")
        if len(fields) != 3 or not fields[0].isdigit() or not fields[1].isdigit():
            continue
        try:
            if entry.is_symlink() or not entry.is_dir() or entry.stat().st_uid != os.geteuid():
                continue
        except OSError:
            continue
        if process_start_time(int(fields[0])) == int(fields[1]):
            continue  # its harness is alive
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def _mount(source: bytes | None, target: bytes, flags: int) -> None:
    assert _LIBC is not None
    if _LIBC.mount(source, target, None, ctypes.c_ulong(flags), None) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"mount {target.decode(errors='replace')}: {os.strerror(error)}")


class Dropper:
    """What the child process does between fork and exec to become :data:`RUN_UID` (see the module docstring).

    Args:
        uid: The run's uid.
        gid: The run's gid.
        staged: (source, placeholder) folders or files to bind-mount before dropping root.
        placeholders: The staging folder to delete after the run.
    """

    def __init__(self, uid: int, gid: int, staged: list[tuple[str, str]], placeholders: Path | None) -> None:
        self.uid, self.gid = uid, gid
        self.staged = [(source.encode(), target.encode()) for source, target in staged]
        self.placeholders = placeholders

    def __call__(self) -> None:
        """Enter a private mount namespace (when anything is staged), mount the staged folders, drop to uid."""
        if self.staged:
            if _LIBC is None or _LIBC.unshare(_CLONE_NEWNS) != 0:
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS) failed")
            _mount(None, b"/", _MS_REC | _MS_PRIVATE)
            for source, target in self.staged:
                _mount(source, target, _MS_BIND | _MS_REC)
        os.setgroups([])
        os.setresgid(self.gid, self.gid, self.gid)
        os.setresuid(self.uid, self.uid, self.uid)

    def cleanup(self) -> None:
        """Delete the (empty) placeholders; never raises."""
        if self.placeholders is not None:
            shutil.rmtree(self.placeholders, ignore_errors=True)


def stage_command(command: list[str], *, uid: int, gid: int, instance: Instance) -> tuple[list[str], Dropper]:
    """Rewrite a bubblewrap command's bind sources that ``uid`` cannot reach to staged placeholders.

    Args:
        command: A bubblewrap command line (``--bind``/``--ro-bind`` SRC DEST pairs are looked at).
        uid: The uid bubblewrap will run as.
        gid: Its gid.
        instance: The harness instance the staging folder is named for.

    Returns:
        The command to run and the :class:`Dropper` to call in the child before exec.
    """
    out: list[str] = []
    staged: list[tuple[str, str]] = []
    staging: Path | None = None
    index = 0
    while index < len(command):
        word = command[index]
        if word == "--":
            out += command[index:]
            break
        if word in _BIND_OPTIONS and index + 2 < len(command):
            source = command[index + 1]
            if os.path.exists(source) and not reachable(Path(source), uid=uid, gid=gid):
                if staging is None:
                    parent = staging_parent(uid=uid, gid=gid)
                    sweep_stale_staging(parent)
                    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{instance.tag}-", dir=parent))
                    staging.chmod(0o711)
                placeholder = staging / uuid.uuid4().hex[:12]
                if os.path.isdir(source):
                    placeholder.mkdir(mode=0o755)
                else:
                    placeholder.touch(mode=0o644)
                staged.append((source, str(placeholder)))
                source = str(placeholder)
            out += [word, source, command[index + 2]]
            index += 3
            continue
        out.append(word)
        index += 1
    return out, Dropper(uid, gid, staged, staging)


def give_to_run(folder: Path, *, uid: int, gid: int, writable: bool) -> None:
    """Hand a run's folder to its uid: the folder and everything in it are chowned to ``uid``/``gid`` (links
    themselves, never what they point to). What the run only reads (``writable`` False; it is bind-mounted
    read-only) also gets read permission for its owner (search on folders), never any permission for other users:
    the run reaches it through its own uid and a bind mount, not through world-readable modes.

    Raises:
        OSError: The folder cannot be changed, or is nested deeper than :data:`harness.tree.MAX_DEPTH` (the run
            cannot start).
    """
    paths = [folder] + [folder / entry.path for _, entries in walk(folder, max_entries=None) for entry in entries
                        if entry.kind is not Kind.LINK]
    for path in paths:
        os.chown(path, uid, gid, follow_symlinks=False)
        if not writable:
            mode = stat.S_IMODE(os.lstat(path).st_mode)
            extra = 0o500 if stat.S_ISDIR(os.lstat(path).st_mode) or mode & 0o100 else 0o400
            if mode & extra != extra:
                chmod_at(str(path), mode | extra)
