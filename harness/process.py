"""Run one submission process and record what happened.

Each run gets a fresh copy of the submission folder, a private HOME and TMPDIR, a scrubbed environment and
resource limits, inside the strongest sandbox this machine offers (see :mod:`harness.isolation`); its stdout
and stderr go to a log file; the whole process group (and cgroup, where available) is killed at the limit and
after the entry point exits, so children cannot outlive their run. The outcome — exit code, timeout, wall time,
a plain-words problem — is returned as data, never only printed.
"""

from __future__ import annotations

import ctypes
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

from harness.isolation import (SANDBOX_HOME, SANDBOX_INPUT, SANDBOX_OUTPUT, CgroupJail, Limits,
                               Protections, SandboxKind, apply_rlimits, bwrap_command, docker_command)
from harness.library import library_link, python_path
from harness.submission import Submission, iter_files

#: How often a running process's output folder is measured.
POLL_SECONDS = 0.5

__all__ = ["Limits", "RunRecord", "fresh_copy", "run_process", "run_submission", "scrubbed_environment"]


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


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def folder_bytes(folder: Path) -> int:
    """Total size of the regular files below ``folder`` (symlinks not followed)."""
    total = 0
    stack = [folder]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
        except OSError:
            continue
    return total


def _over_output_limit(watch: Path | None, limits: Limits) -> bool:
    """True when the output folder holds at least ``limits.output_mb`` (RLIMIT_FSIZE stops a file exactly there)."""
    return watch is not None and bool(limits.output_mb) and folder_bytes(watch) >= (limits.output_mb or 0) << 20


def _describe_exit(exit_code: int, limits: Limits, jail: CgroupJail | None) -> str:
    if exit_code < 0:
        number = -exit_code
        if number == signal.SIGXCPU:
            return f"CPU time limit of {limits.cpu_seconds:g} s reached"
        if number == signal.SIGXFSZ:
            return f"file size limit of {limits.output_mb} MB reached"
        if number == signal.SIGKILL and jail is not None and jail.memory_limit_hit():
            return f"memory limit of {limits.memory_mb} MB exceeded"
        try:
            return f"killed by {signal.Signals(number).name}"
        except ValueError:
            return f"killed by signal {number}"
    if exit_code != 0:
        if jail is not None and jail.memory_limit_hit():
            return f"exit code {exit_code} (memory limit of {limits.memory_mb} MB reached)"
        if jail is not None and jail.pids_limit_hit():
            return f"exit code {exit_code} (process limit of {limits.max_processes} reached)"
        return f"exit code {exit_code}"
    return ""


#: prctl(2) option: the signal a process receives when the thread that started it dies.
_PR_SET_PDEATHSIG = 1


def _find_prctl() -> Any:
    """libc's prctl, looked up once in the harness (never in a freshly forked child); None where absent."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _find_prctl()


def _die_with_parent() -> None:
    """In the child before exec: be SIGKILLed when the harness (a Dask worker, say) dies, so a run never outlives
    the process driving it. Covers the entry point itself; a sandbox's PID namespace (bubblewrap's
    ``--die-with-parent``) covers every process of the run. A no-op where prctl is unavailable."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def run_process(argv: list[str], *, cwd: Path, env: dict[str, str], limits: Limits, log_path: Path,
                log_name: str, watch: Path | None = None, protections: Protections | None = None,
                display: str | None = None) -> RunRecord:
    """Run ``argv`` in its own session and process group under ``limits``, logging stdout+stderr.

    Args:
        argv: Command (``argv[0]`` relative to ``cwd`` when it starts with ``./``).
        cwd: Working directory.
        env: The complete environment.
        limits: Resource limits.
        log_path: Log file (overwritten).
        log_name: How the record names the log (path relative to the results folder).
        watch: Output folder whose total size is held to ``limits.output_mb``.
        protections: What the machine enforces (cgroups); None for rlimits only.
        display: The command line written at the top of the log (default: ``argv``).

    Returns:
        The :class:`RunRecord`.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    jail = CgroupJail(protections.cgroup, limits) if protections and protections.cgroup else None
    memory_by_cgroup = bool(jail and jail.memory_enforced)

    def prepare_child() -> None:
        _die_with_parent()
        if jail is not None:
            jail.enter()
        apply_rlimits(limits, memory_by_cgroup=memory_by_cgroup)

    with open(log_path, "wb") as log:
        log.write(f"$ {display or ' '.join(argv)}\n".encode())
        log.flush()
        start = time.monotonic()
        try:
            process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=prepare_child)
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            hint = " (add a #! line to the entry point)" if exc.errno == errno.ENOEXEC else ""
            problem = f"entry point could not be started: {reason}{hint}"
            log.write(f"[harness] {problem}\n".encode())
            if jail is not None:
                jail.remove()
            return RunRecord(exit_code=None, timed_out=False, seconds=0.0, problem=problem, log=log_name)
        timed_out = False
        oversized = False
        while True:
            remaining = limits.wall_seconds - (time.monotonic() - start)
            if remaining <= 0:
                timed_out = True
                break
            try:
                process.wait(timeout=min(POLL_SECONDS, remaining))
                break
            except subprocess.TimeoutExpired:
                if _over_output_limit(watch, limits):
                    oversized = True
                    break
        if timed_out or oversized:
            _kill_group(process.pid)
            if jail is not None:
                jail.kill_all()
        exit_code = process.wait()
        seconds = time.monotonic() - start
        _kill_group(process.pid)  # children that outlived the entry point
        if jail is not None:
            jail.kill_all()
        if _over_output_limit(watch, limits):
            oversized = True
        if timed_out:
            problem = f"timed out after {limits.wall_seconds:g} s"
        elif oversized:
            problem = f"output reached the {limits.output_mb} MB limit; run stopped"
        else:
            problem = _describe_exit(exit_code, limits, jail)
        if problem:
            log.write(f"\n[harness] {problem}\n".encode())
    if jail is not None:
        for _ in range(20):
            jail.kill_all()
            jail.remove()
            if not any(folder.exists() for folder in jail.folders):
                break
            time.sleep(0.05)
    return RunRecord(exit_code=exit_code, timed_out=timed_out, seconds=round(seconds, 3), problem=problem,
                     log=log_name)


def run_submission(submission: Submission, args: list[str], *, inputs: Path, outputs: Path, workdir: Path,
                   limits: Limits, log_path: Path, log_name: str, gpu: str | None,
                   protections: Protections, threads: int | None = None) -> RunRecord:
    """Run a submission's entry point on a fresh copy of its folder, inside the sandbox.

    Args:
        submission: What to run.
        args: Arguments after the entry point; ``{input}`` and ``{output}`` stand for the input and output
            folders as the process sees them (NIPS 2017 argv: input dir, output dir/file[, ε]).
        inputs: Input folder on the host (read-only for the process when sandboxed).
        outputs: Output folder on the host (the only place the process may write when sandboxed).
        workdir: An empty scratch folder owned by this run (holds the copy, HOME and TMPDIR).
        limits: Resource limits.
        log_path: Where stdout and stderr go.
        log_name: The log's name in the returned record.
        gpu: CUDA_VISIBLE_DEVICES for the run (None: leave unset).
        protections: The sandbox in use (from :func:`harness.isolation.probe`).
        threads: CPU threads for the run (see :func:`scrubbed_environment`).

    Returns:
        The :class:`RunRecord`.
    """
    code = fresh_copy(submission, workdir / "submission")
    entry = f"./{submission.entry_point}"
    display = None
    if protections.kind in (SandboxKind.BWRAP, SandboxKind.DOCKER):
        sandbox_args = [a.replace("{input}", SANDBOX_INPUT).replace("{output}", SANDBOX_OUTPUT) for a in args]
        display = f"{' '.join([entry, *sandbox_args])}    [{protections.kind.value} sandbox]"
        env = scrubbed_environment(home=SANDBOX_HOME, tmp="/tmp", gpu=gpu, threads=threads, sandboxed=True)
        if protections.kind is SandboxKind.BWRAP:
            argv = bwrap_command([entry, *sandbox_args], code=code, inputs=inputs, outputs=outputs, gpu=gpu)
        else:
            image = (submission.container_gpu if gpu else submission.container) or submission.container
            argv = docker_command([entry, *sandbox_args], image=image, code=code, inputs=inputs, outputs=outputs,
                                  limits=limits, gpu=gpu)
    else:
        home, tmp = workdir / "home", workdir / "tmp"
        home.mkdir()
        tmp.mkdir()
        env = scrubbed_environment(home=str(home), tmp=str(tmp), gpu=gpu, threads=threads,
                                   library_parent=library_link(workdir / "library"))
        argv = [entry, *(a.replace("{input}", str(inputs)).replace("{output}", str(outputs)) for a in args)]
    return run_process(argv, cwd=code, env=env, limits=limits, log_path=log_path, log_name=log_name,
                       watch=outputs, protections=protections, display=display)
