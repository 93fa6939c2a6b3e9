"""Staging a submission run, the same for every sandbox: a fresh copy of the submission folder, the scrubbed
environment it sees, a ``python`` command where the interpreter's folder has none, and the submission library
byte-compiled once for all runs."""

from __future__ import annotations

import compileall
import os
import shutil
import stat
import sys
from pathlib import Path

from harness.library import library_dir, python_path
from harness.submission import Submission, SubmissionError, list_folder, scan_links
from harness.tree import TreeError, open_regular

__all__ = ["SANDBOX_PYTHON_ALIAS", "fresh_copy", "precompile_library", "python_alias_needed",
           "scrubbed_environment"]


def fresh_copy(submission: Submission, destination: Path) -> Path:
    """Copy a submission's regular files (no caches) into ``destination`` and recreate, as relative links, the
    symbolic links that resolve inside it (:func:`harness.submission.scan_links`); mark the entry executable by its
    owner (the run reaches the copy through its own uid, :func:`harness.privilege.give_to_run`).

    The folder is listed without recursion (:func:`harness.submission.list_folder`) and each file is read only when
    it is still a regular file (:func:`harness.tree.open_regular`: no link followed, no blocking open).

    Raises:
        harness.submission.SubmissionError: The folder changed since discovery into one that cannot run (a special
            file, too deep or too large, a file that is no longer regular).
        OSError: ``destination`` exists or cannot be written.
    """
    destination.mkdir(parents=True, exist_ok=False)
    listing = list_folder(submission.path)
    for rel in listing.files:
        target = destination / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open_regular(submission.path / rel) as source, open(target, "xb") as copy:
                shutil.copyfileobj(source, copy)
                info = os.fstat(source.fileno())
        except TreeError as exc:
            raise SubmissionError(str(exc)) from None
        os.chmod(target, stat.S_IMODE(info.st_mode))
        os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))
    for link in scan_links(submission.path, listing)[0]:
        where, points_to = destination / link.path, destination / link.target
        if (submission.path / link.target).is_dir():
            points_to.mkdir(parents=True, exist_ok=True)
        where.parent.mkdir(parents=True, exist_ok=True)
        if not os.path.lexists(where):
            os.symlink(os.path.relpath(points_to, where.parent), where)
    entry = destination / submission.entry_point
    entry.chmod(entry.stat().st_mode | 0o700)
    return destination


def scrubbed_environment(*, home: str, tmp: str, gpu: str | None, threads: int | None = None,
                         sandboxed: bool = False, library_parent: Path | None = None) -> dict[str, str]:
    """The only environment a submission sees.

    Args:
        home: Private HOME folder (as the process sees it).
        tmp: Private TMPDIR folder (as the process sees it).
        gpu: Value for CUDA_VISIBLE_DEVICES; None leaves the variable out.
        threads: CPU threads the run should use (OMP/MKL/OpenBLAS thread counts), so that parallel runs do not
            oversubscribe the cores; None keeps the harness's own settings.
        sandboxed: The run is in a bubblewrap or docker sandbox, where the submission library is mounted at
            :data:`harness.library.SANDBOX_LIBRARY_PARENT`; ``PYTHONPATH`` holds only the library's folder.
        library_parent: For a plain process, a folder holding only the library (:func:`harness.library.library_link`);
            None puts the library's real parent folder on ``PYTHONPATH``.
    """
    python_bin = str(Path(sys.executable).parent)
    env = {
        "PATH": os.pathsep.join([python_bin, "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": home,
        "TMPDIR": tmp,
        "TMP": tmp,
        "TEMP": tmp,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONPATH": str(library_parent) if library_parent and not sandboxed else python_path(sandboxed=sandboxed),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "PYTHONUNBUFFERED": "1",
        "MPLBACKEND": "Agg",
    }
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if name in os.environ:
            env[name] = os.environ[name]
    if threads is not None:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[name] = str(threads)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return env


#: Folder holding a ``python`` command inside the sandbox when the interpreter's folder has none.
SANDBOX_PYTHON_ALIAS = "/python_alias"


def python_alias_needed() -> bool:
    """True when the interpreter's folder has no ``python`` command (e.g. a system ``/usr/bin/python3``).

    NIPS 2017 entry points call ``python`` (the organisers' containers had one); such runs are then given a
    ``python`` that is the harness's own interpreter, on ``PATH`` before everything else.
    """
    return not (Path(sys.executable).parent / "python").exists()


def precompile_library() -> bool:
    """Byte-compile the submission library (``__pycache__`` next to its sources), once per change.

    Sandboxed runs see the library read-only with ``PYTHONDONTWRITEBYTECODE``, so without this step every one of
    the hundreds of runs of a competition recompiles each module it imports (tens of milliseconds per run). The
    compiled files are outside every content hash (:data:`harness.submission.IGNORED_NAMES`). Returns False when
    the folder is not writable (nothing else changes: runs then compile in memory, as before).
    """
    try:
        return bool(compileall.compile_dir(str(library_dir()), quiet=2, workers=1))
    except OSError:
        return False
