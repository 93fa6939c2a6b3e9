"""Run one submission process and record what happened.

Each run gets a fresh copy of the submission folder, a private HOME and TMPDIR, a scrubbed environment and a
wall-clock limit; its stdout and stderr go to a log file; the whole process group is killed at the limit and
after the entry point exits (so children cannot outlive their run). The outcome — exit code, timeout, wall
time, a plain-words problem — is returned as data, never only printed.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.submission import Submission, iter_files

_HARNESS_PARENT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Limits:
    """Resource limits of one run.

    Attributes:
        wall_seconds: Wall-clock limit; the process group is killed when it is reached.
    """

    wall_seconds: float


@dataclass(frozen=True)
class RunRecord:
    """Outcome of one submission process.

    Attributes:
        exit_code: Process exit status; negative for "killed by signal"; None when it never started.
        timed_out: True when the wall-clock limit killed it.
        seconds: Wall time spent inside the process (0 when it never started).
        problem: "" for a clean exit, else a plain-words reason ("exit code 1", "timed out after 60 s", …).
        log: Path of the log file relative to the results folder.
    """

    exit_code: int | None
    timed_out: bool
    seconds: float
    problem: str
    log: str

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> "RunRecord":
        """Inverse of :meth:`to_json`."""
        return cls(exit_code=value["exit_code"], timed_out=bool(value["timed_out"]),
                   seconds=float(value["seconds"]), problem=str(value["problem"]), log=str(value["log"]))


def fresh_copy(submission: Submission, destination: Path) -> Path:
    """Copy a submission's regular files (no symlinks, no caches) into ``destination``; mark the entry executable."""
    destination.mkdir(parents=True, exist_ok=False)
    for rel in iter_files(submission.path):
        target = destination / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(submission.path / rel, target)
    entry = destination / submission.entry_point
    entry.chmod(entry.stat().st_mode | 0o755)
    return destination


def scrubbed_environment(*, home: Path, tmp: Path, gpu: str | None) -> dict[str, str]:
    """The only environment a submission sees.

    Args:
        home: Private HOME folder.
        tmp: Private TMPDIR folder.
        gpu: Value for CUDA_VISIBLE_DEVICES ("" hides every GPU); None leaves the variable out.
    """
    python_bin = str(Path(sys.executable).parent)
    env = {
        "PATH": os.pathsep.join([python_bin, "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "TMP": str(tmp),
        "TEMP": str(tmp),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONPATH": str(_HARNESS_PARENT),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "PYTHONUNBUFFERED": "1",
        "MPLBACKEND": "Agg",
    }
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if name in os.environ:
            env[name] = os.environ[name]
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return env


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_process(argv: list[str], *, cwd: Path, env: dict[str, str], limits: Limits, log_path: Path,
                log_name: str) -> RunRecord:
    """Run ``argv`` in its own session and process group, logging stdout+stderr.

    Args:
        argv: Command; ``argv[0]`` is resolved relative to ``cwd`` when it starts with ``./``.
        cwd: Working directory (the fresh submission copy).
        env: The complete environment.
        limits: Wall-clock limit.
        log_path: Log file (overwritten).
        log_name: How the record names the log (path relative to the results folder).

    Returns:
        The :class:`RunRecord`.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        log.write(f"$ {' '.join(argv)}\n".encode())
        log.flush()
        start = time.monotonic()
        try:
            process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            hint = " (add a #! line to the entry point)" if exc.errno == errno.ENOEXEC else ""
            problem = f"entry point could not be started: {reason}{hint}"
            log.write(f"[harness] {problem}\n".encode())
            return RunRecord(exit_code=None, timed_out=False, seconds=0.0, problem=problem, log=log_name)
        timed_out = False
        try:
            exit_code = process.wait(timeout=limits.wall_seconds)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(process.pid)
            exit_code = process.wait()
        seconds = time.monotonic() - start
        _kill_group(process.pid)  # children that outlived the entry point
        if timed_out:
            problem = f"timed out after {limits.wall_seconds:g} s"
        elif exit_code < 0:
            try:
                name = signal.Signals(-exit_code).name
            except ValueError:
                name = f"signal {-exit_code}"
            problem = f"killed by {name}"
        elif exit_code != 0:
            problem = f"exit code {exit_code}"
        else:
            problem = ""
        if problem:
            log.write(f"\n[harness] {problem}\n".encode())
    return RunRecord(exit_code=exit_code, timed_out=timed_out, seconds=round(seconds, 3), problem=problem,
                     log=log_name)


def run_submission(submission: Submission, args: list[str], *, workdir: Path, limits: Limits, log_path: Path,
                   log_name: str, gpu: str | None) -> RunRecord:
    """Run a submission's entry point on a fresh copy of its folder.

    Args:
        submission: What to run.
        args: Arguments after the entry point (NIPS 2017 argv: input dir, output dir/file[, ε]).
        workdir: An empty scratch folder owned by this run (holds the copy, HOME and TMPDIR).
        limits: Resource limits.
        log_path: Where stdout and stderr go.
        log_name: The log's name in the returned record.
        gpu: CUDA_VISIBLE_DEVICES for the run ("" = no GPU).

    Returns:
        The :class:`RunRecord`.
    """
    code = fresh_copy(submission, workdir / "submission")
    home = workdir / "home"
    tmp = workdir / "tmp"
    home.mkdir()
    tmp.mkdir()
    env = scrubbed_environment(home=home, tmp=tmp, gpu=gpu)
    return run_process([f"./{submission.entry_point}", *args], cwd=code, env=env, limits=limits,
                       log_path=log_path, log_name=log_name)
