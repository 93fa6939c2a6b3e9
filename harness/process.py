"""Run one process under limits and record what happened.

The process runs in its own session and process group, with rlimits and, where the harness may create cgroups,
in a cgroup of its own (:class:`harness.cgroups.CgroupJail`); its stdout and stderr go to a log file of bounded
size; its output folder is watched; the whole process group (and cgroup) is killed at the limit and after the
entry point exits, so children cannot outlive their run. The outcome — exit code, timeout, wall time, a
plain-words problem — is returned as a :class:`harness.records.RunRecord`, never only printed. What runs (a plain
entry point, bubblewrap, a docker client) is the caller's: :mod:`harness.sandboxes`.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import signal
import stat
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable

from harness.cgroups import CgroupJail
from harness.cleanup import chmod_at
from harness.instance import Instance
from harness.limits import Limits
from harness.names import one_line
from harness.records import RunRecord

#: How often a running process's output folder is measured.
POLL_SECONDS = 0.5

__all__ = ["POLL_SECONDS", "apply_rlimits", "folder_bytes", "folder_usage", "run_process"]


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


def run_process(argv: list[str], *, cwd: Path, env: dict[str, str], limits: Limits, log_path: Path,
                log_name: str, watch: Path | None = None, cgroup: dict[str, Path] | None = None,
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
        cgroup: Controller → the cgroup folder the run's own cgroup is made in
            (:attr:`harness.sandboxes.base.Protections.cgroup`); None or empty for rlimits only.
        display: The command line written at the top of the log (default: ``argv``).
        drop: Called in the child last before exec (switches to the run's uid, see :mod:`harness.privilege`).
        instance: The harness instance the run's cgroup is named for; needed with a ``cgroup``.
        pass_fds: Open file descriptors the child inherits (bubblewrap's ``--args`` pipe); the caller closes them.

    Returns:
        The :class:`harness.records.RunRecord`. A run whose cgroup limits cannot all be set and read back is not
        started: its record says which limit failed and why.

    Raises:
        ValueError: ``cgroup`` is given and no ``instance``.
    """
    jail = _jail(cgroup, limits, instance)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    shown = f"$ {one_line(display or ' '.join(argv), limit=2000)}\n"
    if jail is not None and jail.problems:  # the manifest promised these limits: no run without them
        problem = one_line(f"not started: its limits could not be set ({'; '.join(jail.problems)})")
        log_path.write_bytes(f"{shown}[harness] {problem}\n".encode())
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
        log.write(shown.encode())
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
            problem = _not_started(exc)
            log.write(f"[harness] {problem}\n".encode())
            if jail is not None:
                jail.remove()
            return RunRecord(exit_code=None, timed_out=False, seconds=0.0, problem=problem, log=log_name)
        os.close(write_end)
        pump = _LogPump(read_end, log, limits.log_mb << 20 if limits.log_mb else None)
        timed_out, stopped = _supervise(process, pump, limits, watch, start)
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
        problem = _problem(exit_code, timed_out, stopped, limits=limits, jail=jail, pump=pump, watch=watch)
        if problem:
            log.write(f"\n[harness] {problem}\n".encode())
    cpu_seconds = _dismantle(jail)
    return RunRecord(exit_code=exit_code, timed_out=timed_out, seconds=round(seconds, 3), problem=problem,
                     log=log_name, cpu_seconds=None if cpu_seconds is None else round(cpu_seconds, 3))


def _jail(cgroup: dict[str, Path] | None, limits: Limits, instance: Instance | None) -> CgroupJail | None:
    """The run's cgroup under ``cgroup``'s controllers (its limits written and read back); None without any."""
    if not cgroup:
        return None
    if instance is None:
        raise ValueError("run_process: a run in a cgroup needs the harness instance it is named for")
    return CgroupJail(cgroup, limits, instance=instance)


def _not_started(exc: BaseException) -> str:
    """The one-line problem of an entry point that could not be started (with the fix for a missing ``#!``)."""
    number = getattr(exc, "errno", None)
    reason = os.strerror(number) if number else str(exc)
    hint = " (add a #! line to the entry point)" if number == errno.ENOEXEC else ""
    return one_line(f"entry point could not be started: {reason}{hint}")


def _supervise(process: subprocess.Popen[bytes], pump: _LogPump, limits: Limits, watch: Path | None,
               start: float) -> tuple[bool, str]:
    """Wait for ``process`` while watching its wall-clock limit, its log size and its output folder.

    Returns:
        (timed out, why it was stopped: "" when it ended by itself or timed out).
    """
    while True:
        remaining = limits.wall_seconds - (time.monotonic() - start)
        if remaining <= 0:
            return True, ""
        try:
            process.wait(timeout=min(POLL_SECONDS, remaining))
            return False, ""
        except subprocess.TimeoutExpired:
            if pump.over.is_set():
                return False, f"log reached the {limits.log_mb} MB limit; run stopped"
            stopped = _over_output_limit(watch, limits)
            if stopped:
                return False, stopped


def _problem(exit_code: int, timed_out: bool, stopped: str, *, limits: Limits, jail: CgroupJail | None,
             pump: _LogPump, watch: Path | None) -> str:
    """The run's problem after it ended: its time limit, a limit that stopped it (also one reached in its last
    moments: the log or the output folder), else what its exit status says ("" for a clean exit)."""
    if timed_out:
        return f"timed out after {limits.wall_seconds:g} s"
    if not stopped and pump.over.is_set():
        stopped = f"log reached the {limits.log_mb} MB limit; run stopped"
    if not stopped:
        stopped = _over_output_limit(watch, limits)
    return stopped or _describe_exit(exit_code, limits, jail)


def _dismantle(jail: CgroupJail | None) -> float | None:
    """Read the run's CPU seconds off its cgroup, then kill what is left in it and remove it; None without one."""
    if jail is None:
        return None
    cpu_seconds = jail.cpu_seconds()
    for _ in range(20):
        jail.kill_all()
        jail.remove()
        if not any(folder.exists() for folder in jail.folders):
            break
        time.sleep(0.05)
    return cpu_seconds


def apply_rlimits(limits: Limits, *, memory_by_cgroup: bool) -> None:
    """Set RLIMIT_CPU, RLIMIT_DATA (unless a cgroup limits memory), RLIMIT_FSIZE and no core dumps."""
    def set_limit(which: int, value: int) -> None:
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            pass

    set_limit(resource.RLIMIT_CORE, 0)
    if limits.cpu_seconds:
        soft = max(1, int(limits.cpu_seconds))
        try:  # SIGXCPU at the soft limit, SIGKILL at the hard one for a process that ignores it
            resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 5))
        except (ValueError, OSError):
            pass
    if limits.memory_mb and not memory_by_cgroup:
        set_limit(resource.RLIMIT_DATA, limits.memory_mb << 20)
    if limits.output_mb:
        set_limit(resource.RLIMIT_FSIZE, limits.output_mb << 20)
