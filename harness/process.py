"""Run one submission process and record what happened.

Each run gets a fresh copy of the submission folder, a private HOME and TMPDIR, a scrubbed environment and
resource limits, inside the strongest sandbox this machine offers (see :mod:`harness.isolation`); its stdout
and stderr go to a log file; the whole process group (and cgroup, where available) is killed at the limit and
after the entry point exits, so children cannot outlive their run. The outcome — exit code, timeout, wall time,
a plain-words problem — is returned as data, never only printed.
"""

from __future__ import annotations

import compileall
import ctypes
import errno
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable

from harness.cleanup import chmod_at
from harness.cgroups import CgroupJail
from harness.isolation import (SANDBOX_HOME, SANDBOX_INPUT, SANDBOX_OUTPUT, Protections, SandboxKind, apply_rlimits,
                               arguments_by_fd, bwrap_command)
from harness.library import library_dir, library_link, python_path
from harness.limits import Limits
from harness.names import one_line
from harness.instance import Instance
from harness.privilege import give_to_run, run_identity, stage_command
from harness.submission import Submission, SubmissionError, list_folder, scan_links
from harness.tree import TreeError, open_regular

#: How often a running process's output folder is measured.
POLL_SECONDS = 0.5

__all__ = ["Limits", "RunRecord", "fresh_copy", "precompile_library", "run_process", "run_submission",
           "scrubbed_environment"]


@dataclass(frozen=True)
class RunRecord:
    """Outcome of one submission process.

    Attributes:
        exit_code: Process exit status; negative for "killed by signal"; None when it never started.
        timed_out: True when the wall-clock limit killed it.
        seconds: Wall time spent inside the process (0 when it never started).
        problem: "" for a clean exit, else a plain-words reason ("exit code 1", "timed out after 60 s", …).
        log: Path of the log file relative to the results folder.
        cpu_seconds: CPU time (user + system) of every process of the run, from its cgroup's accounting; None
            where the run had no cgroup with CPU accounting (and in records made before it was measured).
    """

    exit_code: int | None
    timed_out: bool
    seconds: float
    problem: str
    log: str
    cpu_seconds: float | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> "RunRecord":
        """Inverse of :meth:`to_json`."""
        cpu = value.get("cpu_seconds")
        return cls(exit_code=value["exit_code"], timed_out=bool(value["timed_out"]),
                   seconds=float(value["seconds"]), problem=str(value["problem"]), log=str(value["log"]),
                   cpu_seconds=None if cpu is None else float(cpu))


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


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def folder_bytes(folder: Path) -> int:
    """Total size of the regular files below ``folder`` (symlinks not followed)."""
    return folder_usage(folder)[0]


def folder_usage(folder: Path, *, stop_at_entries: int | None = None) -> tuple[int, int]:
    """(bytes of regular files, entries) below ``folder``; symlinks not followed.

    A non-root harness's runs write as its own uid, so a run can make a folder of its output unreadable to hide
    what it holds: such folders (owned by this uid) are made readable again and counted. Other unreadable folders
    are skipped. Counting stops once ``stop_at_entries`` entries are seen (a folder of millions of empty files is
    not walked).
    """
    total = count = 0
    stack = [folder]
    while stack:
        current = stack.pop()
        budget = None if stop_at_entries is None else stop_at_entries - count
        try:
            size, entries, subfolders = _scan(current, budget)
        except PermissionError:
            if not _open_up(current):
                continue
            try:
                size, entries, subfolders = _scan(current, budget)
            except OSError:
                continue
        except OSError:
            continue
        total += size
        count += entries
        stack += subfolders
        if stop_at_entries is not None and count >= stop_at_entries:
            break
    return total, count


def _scan(folder: Path, budget: int | None) -> tuple[int, int, list[Path]]:
    """(bytes of regular files, entries, subfolders) directly in ``folder``, reading at most ``budget`` entries."""
    total = count = 0
    subfolders: list[Path] = []
    with os.scandir(folder) as entries:
        for entry in entries:
            count += 1
            if entry.is_dir(follow_symlinks=False):
                subfolders.append(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
            if budget is not None and count >= budget:
                break
    return total, count, subfolders


def _open_up(folder: Path) -> bool:
    """For a non-root harness: give this uid read and search rights on ``folder`` when it owns it (a run made it
    unreadable). Returns whether it did; a root harness reads every folder already."""
    if os.geteuid() == 0:
        return False
    try:
        info = os.lstat(folder)
        if info.st_uid != os.geteuid() or not stat.S_ISDIR(info.st_mode):
            return False
        chmod_at(str(folder), stat.S_IMODE(info.st_mode) | 0o700, folder=True)  # a link swapped in: refused
    except OSError:
        return False
    return True


def _over_output_limit(watch: Path | None, limits: Limits) -> str:
    """Why the output folder is over its limits ("" when it is not): at least ``limits.output_mb`` (RLIMIT_FSIZE
    stops a file exactly there) or more than ``limits.output_files`` entries."""
    if watch is None or not (limits.output_mb or limits.output_files):
        return ""
    size, count = folder_usage(watch, stop_at_entries=limits.output_files + 1 if limits.output_files else None)
    if limits.output_mb and size >= limits.output_mb << 20:
        return f"output reached the {limits.output_mb} MB limit; run stopped"
    if limits.output_files and count > limits.output_files:
        return f"output folder holds more than {limits.output_files} files; run stopped"
    return ""


def _describe_exit(exit_code: int, limits: Limits, jail: CgroupJail | None) -> str:
    if exit_code < 0:
        number = -exit_code
        if number == signal.SIGXCPU:
            if limits.cpu_seconds is None:  # e.g. a docker client, whose container holds the limit
                return "CPU time limit reached"
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
        if exit_code - 128 in (signal.SIGXFSZ, signal.SIGXCPU):  # a shell reporting its child's signal
            inner = _describe_exit(128 - exit_code, limits, jail)
            return f"exit code {exit_code} (a process was stopped: {inner})"
        return f"exit code {exit_code}"
    return ""


class _LogPump:
    """Copies a run's stdout+stderr from a pipe into its log, up to ``limit`` bytes (then flags and discards)."""

    def __init__(self, source: int, log: BinaryIO, limit: int | None) -> None:
        self.source, self.log, self.limit = source, log, limit
        self.written = 0
        self.over = threading.Event()
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        try:
            while True:
                chunk = os.read(self.source, 1 << 16)
                if not chunk:
                    break
                if self.limit is not None and self.written + len(chunk) > self.limit:
                    chunk = chunk[:max(0, self.limit - self.written)]
                    self.over.set()
                if chunk:
                    self.log.write(chunk)
                    self.written += len(chunk)
        except OSError:
            pass
        finally:
            os.close(self.source)

    def join(self) -> None:
        self.thread.join(timeout=10)


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


# issue 29: split with the executor/sandbox interfaces
def run_process(argv: list[str], *, cwd: Path, env: dict[str, str], limits: Limits, log_path: Path,  # noqa: C901
                log_name: str, watch: Path | None = None, protections: Protections | None = None,
                display: str | None = None, drop: Callable[[], None] | None = None,
                instance: Instance | None = None, pass_fds: tuple[int, ...] = ()) -> RunRecord:
    """Run ``argv`` in its own session and process group under ``limits``, logging stdout+stderr.

    Args:
        argv: Command (``argv[0]`` relative to ``cwd`` when it starts with ``./``).
        cwd: Working directory.
        env: The complete environment.
        limits: Resource limits.
        log_path: Log file (overwritten; holds at most ``limits.log_mb`` of the run's output).
        log_name: How the record names the log (path relative to the results folder).
        watch: Output folder whose total size is held to ``limits.output_mb`` and ``limits.output_files``.
        protections: What the machine enforces (cgroups); None for rlimits only.
        display: The command line written at the top of the log (default: ``argv``).
        drop: Called in the child last before exec (switches to the run's uid, see :mod:`harness.privilege`).
        instance: The harness instance the run's cgroup is named for; needed when ``protections`` has cgroups.
        pass_fds: Open file descriptors the child inherits (bubblewrap's ``--args`` pipe); the caller closes them.

    Returns:
        The :class:`RunRecord`. A run whose cgroup limits (``protections.cgroup``) cannot all be set and read back
        is not started: its record says which limit failed and why.

    Raises:
        ValueError: ``protections`` has cgroups and no ``instance`` is given.
    """
    jail = None
    if protections and protections.cgroup:
        if instance is None:
            raise ValueError("run_process: a run in a cgroup needs the harness instance it is named for")
        jail = CgroupJail(protections.cgroup, limits, instance=instance)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if jail is not None and jail.problems:  # the manifest promised these limits: no run without them
        problem = one_line(f"not started: its limits could not be set ({'; '.join(jail.problems)})")
        log_path.write_bytes(f"$ {one_line(display or ' '.join(argv), limit=2000)}\n[harness] {problem}\n".encode())
        jail.remove()
        return RunRecord(exit_code=None, timed_out=False, seconds=0.0, problem=problem, log=log_name)
    memory_by_cgroup = bool(jail and jail.memory_enforced)

    def prepare_child() -> None:
        _die_with_parent()
        if jail is not None:
            jail.enter()
        apply_rlimits(limits, memory_by_cgroup=memory_by_cgroup)
        if drop is not None:
            drop()

    with open(log_path, "wb") as log:
        log.write(f"$ {one_line(display or ' '.join(argv), limit=2000)}\n".encode())
        log.flush()
        start = time.monotonic()
        read_end, write_end = os.pipe()
        try:
            process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=write_end,
                                       stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=prepare_child,
                                       pass_fds=pass_fds)
        except (OSError, subprocess.SubprocessError) as exc:
            os.close(read_end)
            os.close(write_end)
            number = getattr(exc, "errno", None)
            reason = os.strerror(number) if number else str(exc)
            hint = " (add a #! line to the entry point)" if number == errno.ENOEXEC else ""
            problem = one_line(f"entry point could not be started: {reason}{hint}")
            log.write(f"[harness] {problem}\n".encode())
            if jail is not None:
                jail.remove()
            return RunRecord(exit_code=None, timed_out=False, seconds=0.0, problem=problem, log=log_name)
        os.close(write_end)
        log_limit = limits.log_mb << 20 if limits.log_mb else None
        pump = _LogPump(read_end, log, log_limit)
        timed_out = False
        stopped = ""
        while True:
            remaining = limits.wall_seconds - (time.monotonic() - start)
            if remaining <= 0:
                timed_out = True
                break
            try:
                process.wait(timeout=min(POLL_SECONDS, remaining))
                break
            except subprocess.TimeoutExpired:
                if pump.over.is_set():
                    stopped = f"log reached the {limits.log_mb} MB limit; run stopped"
                    break
                stopped = _over_output_limit(watch, limits)
                if stopped:
                    break
        if timed_out or stopped:
            _kill_group(process.pid)
            if jail is not None:
                jail.kill_all()
        exit_code = process.wait()
        seconds = time.monotonic() - start
        _kill_group(process.pid)  # children that outlived the entry point
        if jail is not None:
            jail.kill_all()
        pump.join()
        if not stopped and pump.over.is_set():
            stopped = f"log reached the {limits.log_mb} MB limit; run stopped"
        if not stopped:
            stopped = _over_output_limit(watch, limits)
        if timed_out:
            problem = f"timed out after {limits.wall_seconds:g} s"
        elif stopped:
            problem = stopped
        else:
            problem = _describe_exit(exit_code, limits, jail)
        if problem:
            log.write(f"\n[harness] {problem}\n".encode())
    cpu_seconds = jail.cpu_seconds() if jail is not None else None
    if jail is not None:
        for _ in range(20):
            jail.kill_all()
            jail.remove()
            if not any(folder.exists() for folder in jail.folders):
                break
            time.sleep(0.05)
    return RunRecord(exit_code=exit_code, timed_out=timed_out, seconds=round(seconds, 3), problem=problem,
                     log=log_name, cpu_seconds=None if cpu_seconds is None else round(cpu_seconds, 3))


#: Folder holding a ``python`` command inside the sandbox when the interpreter's folder has none.
SANDBOX_PYTHON_ALIAS = "/python_alias"


def python_alias_needed() -> bool:
    """True when the interpreter's folder has no ``python`` command (e.g. a system ``/usr/bin/python3``).

    NIPS 2017 entry points call ``python`` (the organisers' containers had one); such runs are then given a
    ``python`` that is the harness's own interpreter, on ``PATH`` before everything else.
    """
    return not (Path(sys.executable).parent / "python").exists()


def run_submission(submission: Submission, args: list[str], *, inputs: Path, outputs: Path, workdir: Path,
                   limits: Limits, log_path: Path, log_name: str, gpu: str | None,
                   protections: Protections, instance: Instance, threads: int | None = None) -> RunRecord:
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
        instance: The harness instance whose things the run's cgroup, staging folder or container are.
        threads: CPU threads for the run (see :func:`scrubbed_environment`).

    Returns:
        The :class:`RunRecord`.
    """
    code = fresh_copy(submission, workdir / "submission")
    entry = f"./{submission.entry_point}"
    display = None
    if protections.kind in (SandboxKind.BWRAP, SandboxKind.DOCKER, SandboxKind.GVISOR):
        sandbox_args = [a.replace("{input}", SANDBOX_INPUT).replace("{output}", SANDBOX_OUTPUT) for a in args]
        display = f"{' '.join([entry, *sandbox_args])}    [{protections.kind.value} sandbox]"
        env = scrubbed_environment(home=SANDBOX_HOME, tmp="/tmp", gpu=gpu, threads=threads, sandboxed=True)
        if protections.kind is SandboxKind.BWRAP:
            argv = bwrap_command([entry, *sandbox_args], code=code, inputs=inputs, outputs=outputs, gpu=gpu,
                                 limits=limits)
            if python_alias_needed():  # before the root is made read-only
                at = argv.index("--remount-ro") if "--remount-ro" in argv else argv.index("--")
                argv[at:at] = ["--symlink", str(Path(sys.executable).resolve()), f"{SANDBOX_PYTHON_ALIAS}/python"]
                env["PATH"] = SANDBOX_PYTHON_ALIAS + os.pathsep + env["PATH"]
            identity = run_identity()
            dropper = None
            if identity is not None:  # a root harness: the run is the dedicated unprivileged uid
                uid, gid = identity
                give_to_run(code, uid=uid, gid=gid, writable=False)
                give_to_run(inputs, uid=uid, gid=gid, writable=False)
                give_to_run(outputs, uid=uid, gid=gid, writable=True)
                argv, dropper = stage_command(argv, uid=uid, gid=gid, instance=instance)
            try:
                argv, options = arguments_by_fd(argv)  # no host path in the sandbox's /proc/1/cmdline
                try:
                    return run_process(argv, cwd=code, env=env, limits=limits, log_path=log_path,
                                       log_name=log_name, watch=outputs, protections=protections,
                                       display=display, drop=dropper, instance=instance, pass_fds=(options,))
                finally:
                    os.close(options)
            finally:
                if dropper is not None:
                    dropper.cleanup()
        else:
            from harness.sandbox_docker import run_in_container
            use_gpu = gpu if protections.kind is SandboxKind.DOCKER else None  # runsc here has no GPU support
            image = (submission.container_gpu if use_gpu is not None else "") or submission.container
            return run_in_container(image, [entry, *sandbox_args], kind=protections.kind, code=code, inputs=inputs,
                                    outputs=outputs, limits=limits, env=env, gpu=use_gpu, log_path=log_path,
                                    log_name=log_name, display=display, instance=instance)
    else:
        home, tmp = workdir / "home", workdir / "tmp"
        home.mkdir()
        tmp.mkdir()
        env = scrubbed_environment(home=str(home), tmp=str(tmp), gpu=gpu, threads=threads,
                                   library_parent=library_link(workdir / "library"))
        if python_alias_needed():
            alias = workdir / "python_alias"
            alias.mkdir()
            (alias / "python").symlink_to(Path(sys.executable).resolve())
            env["PATH"] = str(alias) + os.pathsep + env["PATH"]
        argv = [entry, *(a.replace("{input}", str(inputs)).replace("{output}", str(outputs)) for a in args)]
    return run_process(argv, cwd=code, env=env, limits=limits, log_path=log_path, log_name=log_name,
                       watch=outputs, protections=protections, display=display, instance=instance)


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
