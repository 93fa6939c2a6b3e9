"""``--sandbox bwrap`` (and ``auto``): each run in a bubblewrap sandbox.

Without docker, Linux namespaces isolate a run: bubblewrap (``bwrap``, the sandbox Flatpak uses) gives it a
private mount namespace in which only the system, the Python installation, the submission library
(:mod:`harness.library`), its own code (read-only), its input folder (read-only) and its output folder (writable)
exist, plus a private /tmp and HOME; no network (``--unshare-net``), its own PID namespace (everything dies with
it), no capabilities, uid 65534 inside and never uid 0 outside (:mod:`harness.privilege`), no nested user
namespaces, read-only ``/proc/sys``. Resource limits come from ``setrlimit`` (CPU time, memory, file size) and,
where the harness may create cgroups (:mod:`harness.cgroups`), from the pids, memory, cpu and cpuset controllers:
each of several parallel runs is held to its share of the CPU (:class:`harness.parallelism.CpuShare`).
:meth:`BwrapSandbox.probe` finds out what works here, and the run's manifest says which protections were in force.

A non-root harness gets the same sandbox where the kernel allows it (bubblewrap as the harness's own uid). Without
a cgroup folder it may create runs in, ``memory_mb``, ``max_processes`` and ``cpu_share`` cannot be enforced for a
whole run (:data:`harness.cgroups.CGROUP_LIMITS`, :meth:`harness.sandboxes.base.Protections.unenforced`); the
competition then refuses to start unless the organiser names them (``--allow_unenforced``), and the manifest lists
them.
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

from harness.cgroups import cgroup_roots
from harness.instance import Instance
from harness.library import LIBRARY_PACKAGE, SANDBOX_LIBRARY_PARENT, library_dir
from harness.limits import Limits
from harness.privilege import give_to_run, run_identity, stage_command, staging_parent
from harness.process import run_process
from harness.records import RunRecord
from harness.sandboxes.base import (
    SANDBOX_CODE,
    SANDBOX_HOME,
    SANDBOX_INPUT,
    SANDBOX_OUTPUT,
    SANDBOX_UID,
    Protections,
    RunRequest,
    Sandbox,
    SandboxKind,
)
from harness.sandboxes.staging import SANDBOX_PYTHON_ALIAS, fresh_copy, python_alias_needed, scrubbed_environment

__all__ = ["SANDBOX_TMP_HOME", "BwrapSandbox", "arguments_by_fd", "bwrap_command", "bwrap_disables_userns",
           "bwrap_works", "unreadable_installation"]

#: Where HOME really lives: inside the size-limited /tmp (``SANDBOX_HOME`` is a symbolic link to it).
SANDBOX_TMP_HOME = "/tmp/.home"


@functools.lru_cache(maxsize=None)
def bwrap_disables_userns() -> bool:
    """True when this bubblewrap can refuse nested user namespaces (``--disable-userns``, bubblewrap >= 0.8)."""
    binary = shutil.which("bwrap")
    if binary is None:
        return False
    try:
        listing = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return "--disable-userns" in listing.stdout + listing.stderr


def _userns_options() -> list[str]:
    return ["--unshare-user", "--disable-userns"] if bwrap_disables_userns() else ["--unshare-user"]


def bwrap_works() -> tuple[bool, str]:
    """Whether bubblewrap runs here the way runs use it: as a non-root uid (see :mod:`harness.privilege`), in its
    own user namespace, with nested user namespaces refused."""
    binary = shutil.which("bwrap")
    if binary is None:
        return False, "bubblewrap (bwrap) is not installed: apt-get install bubblewrap"
    command = [binary, "--ro-bind", "/", "/", "--unshare-all", *_userns_options(), "--uid",
               str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--cap-drop", "ALL", "--die-with-parent", "true"]
    identity = run_identity()
    dropper = None
    if identity is None:
        unreadable = unreadable_installation()
        if unreadable:
            return False, unreadable
    else:
        try:
            staging_parent(uid=identity[0], gid=identity[1])
        except OSError as exc:
            return False, str(exc)
        command, dropper = stage_command(command, uid=identity[0], gid=identity[1], instance=Instance.create())
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=30, preexec_fn=dropper)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = (getattr(exc, "stderr", b"") or b"").decode(errors="replace").strip() or str(exc)
        who = f" as the unprivileged uid {identity[0]}" if identity else ""
        return False, (f"bubblewrap cannot create namespaces{who} here ({detail.splitlines()[0] if detail else exc}); "
                       "it needs unprivileged user namespaces (sysctl user.max_user_namespaces > 0)")
    finally:
        if dropper is not None:
            dropper.cleanup()
    return True, ""


def _may_exist(path: Path) -> bool:
    """True when ``path`` exists or this process may not look (then :func:`unreadable_installation` names it)."""
    try:
        os.lstat(path)
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _python_roots() -> list[Path]:
    """Folders holding the Python installation and its packages (deduplicated, outermost only). Never raises: a
    user site folder this process cannot see is left out (it is optional)."""
    candidates = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent.parent}
    candidates.update(Path(p) for p in site.getsitepackages())
    user_site = site.getusersitepackages()
    if isinstance(user_site, str) and os.path.isdir(user_site):
        candidates.add(Path(user_site))
    resolved = sorted({c.resolve() for c in candidates if _may_exist(c)}, key=lambda p: len(p.parts))
    roots: list[Path] = []
    for path in resolved:
        if not any(path.is_relative_to(root) for root in roots):
            roots.append(path)
    return roots


def unreadable_installation() -> str:
    """"" when this process may read every folder a sandboxed run binds from the machine (the Python installation
    and the submission library), else a one-line error naming the first one it cannot and what to do. Only a
    non-root harness needs this check: a root harness stages such folders (:mod:`harness.privilege`)."""
    for folder in [*_python_roots(), library_dir()]:
        if not os.access(folder, os.R_OK | os.X_OK):
            return (f"{folder} (Python installation or submission library) is not readable by uid {os.geteuid()}, "
                    "which runs bubblewrap here: run the harness with a Python this user can read (e.g. a venv "
                    "of its own), or as root")
    return ""


def bwrap_command(argv: list[str], *, code: Path, inputs: Path, outputs: Path, gpu: str | None,
                  limits: Limits | None = None) -> list[str]:
    """The bubblewrap command line that runs ``argv`` (paths already translated to sandbox paths).

    Nested user namespaces are refused (``--disable-userns``, where bubblewrap has it), ``/proc/sys`` and ``/dev``
    are read-only, and the RAM-backed folders (``/tmp``, which holds HOME, and ``/dev/shm``) together hold at most
    ``limits.memory_mb`` (3/4 for ``/tmp``, 1/4 for ``/dev/shm``).

    Args:
        argv: Entry point and arguments as the sandboxed process sees them.
        code: Fresh copy of the submission (mounted read-only at :data:`SANDBOX_CODE`).
        inputs: Input folder (read-only at :data:`SANDBOX_INPUT`).
        outputs: Output folder (writable at :data:`SANDBOX_OUTPUT`).
        gpu: CUDA_VISIBLE_DEVICES value; with a GPU, the NVIDIA device files are made visible.
        limits: The run's limits (sizes of the RAM-backed folders); None leaves them unbounded.
    """
    command = ["bwrap", "--unshare-all", *_userns_options(), "--uid", str(SANDBOX_UID),
               "--gid", str(SANDBOX_UID), "--cap-drop", "ALL", "--die-with-parent", "--new-session",
               "--hostname", "sandbox"]
    for name in ("usr", "etc", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "opt"):
        path = Path("/") / name
        if path.is_symlink():
            command += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            command += ["--ro-bind", str(path), str(path)]
    tmp_size: list[str] = []
    shm_size: list[str] = []
    if limits is not None and limits.memory_mb:
        total = limits.memory_mb << 20
        tmp_size = ["--size", str(total - total // 4)]
        shm_size = ["--size", str(total // 4)]
    command += ["--ro-bind-try", "/sys/devices/system/cpu", "/sys/devices/system/cpu",
                "--proc", "/proc", "--ro-bind", "/proc/sys", "/proc/sys",
                "--dev", "/dev", *shm_size, "--tmpfs", "/dev/shm", "--remount-ro", "/dev",
                *tmp_size, "--tmpfs", "/tmp", "--dir", SANDBOX_TMP_HOME, "--symlink", SANDBOX_TMP_HOME, SANDBOX_HOME]
    for root in _python_roots():
        if not str(root).startswith(("/usr", "/etc", "/opt")):
            command += ["--ro-bind", str(root), str(root)]
    command += ["--ro-bind", str(library_dir()), f"{SANDBOX_LIBRARY_PARENT}/{LIBRARY_PACKAGE}",
                "--ro-bind", str(code), SANDBOX_CODE,
                "--ro-bind", str(inputs), SANDBOX_INPUT,
                "--bind", str(outputs), SANDBOX_OUTPUT,
                "--chdir", SANDBOX_CODE]
    if gpu:
        for device in sorted(Path("/dev").glob("nvidia*")):
            command += ["--dev-bind", str(device), str(device)]
    return command + ["--remount-ro", "/", "--", *argv]


def arguments_by_fd(command: list[str]) -> tuple[list[str], int]:
    """Move a bubblewrap command's options into a pipe read with ``--args FD``, so that the sandbox's PID 1 (a copy
    of bubblewrap, whose command line every process inside may read at ``/proc/1/cmdline``) shows no host path:
    only ``bwrap --args FD -- ENTRY ARGS``. bubblewrap reads the pipe to its end and closes it before the run starts.

    Args:
        command: ``bwrap OPTIONS... -- ARGV...`` (as :func:`bwrap_command` and
            :func:`harness.privilege.stage_command` make it).

    Returns:
        The short command and the pipe's read end, which the caller passes to the child (``pass_fds``) and closes
        after starting it.

    Raises:
        ValueError: ``command`` has no ``--`` separating the options from the command.
        OSError: The pipe cannot be made large enough for the options.
    """
    if "--" not in command:
        raise ValueError("arguments_by_fd: the bubblewrap command has no '--' before the sandboxed command")
    split = command.index("--")
    data = b"".join(word.encode() + b"\0" for word in command[1:split])
    read_end, write_end = os.pipe()
    try:
        if len(data) > 60000:  # a pipe holds 64 KiB by default; bubblewrap reads only after it starts
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, len(data))
        os.write(write_end, data)
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    return [command[0], "--args", str(read_end), *command[split:]], read_end


class BwrapSandbox(Sandbox):
    """Each run in a bubblewrap sandbox (:attr:`SandboxKind.BWRAP`).

    Args:
        asked: What was asked for: BWRAP (require bubblewrap) or AUTO (bubblewrap when it works here); only the
            message :meth:`probe` raises differs.
    """

    kind = SandboxKind.BWRAP

    def __init__(self, asked: SandboxKind = SandboxKind.BWRAP) -> None:
        self.asked = asked

    def probe(self) -> Protections:
        """Bubblewrap's protections here, with the cgroup controllers this harness may use.

        Raises:
            RuntimeError: bubblewrap cannot run here (the message says what it would take; for AUTO, also that
                ``--sandbox none`` runs plain processes).
        """
        notes: list[str] = []
        cgroups, note = cgroup_roots()
        if note:
            notes.append(note)
        works, why = bwrap_works()
        if not works:
            if self.asked is SandboxKind.BWRAP:
                raise RuntimeError(f"--sandbox bwrap: {why}")
            raise RuntimeError(f"no sandbox available, so no submission is run: {why}; or pass --sandbox none to run "
                               "submissions as plain processes that can read what the harness can and use the network")
        if not bwrap_disables_userns():
            notes.append("bubblewrap older than 0.8: nested user namespaces are not refused inside the sandbox")
        return Protections(SandboxKind.BWRAP, namespaces=True, network=True, cgroup=cgroups, notes=tuple(notes))

    def run(self, request: RunRequest) -> RunRecord:
        """Run the entry point in a bubblewrap sandbox (:func:`bwrap_command`) whose options reach bubblewrap
        through a pipe (:func:`arguments_by_fd`); a root harness runs it as the dedicated unprivileged uid
        (:mod:`harness.privilege`)."""
        code = fresh_copy(request.submission, request.workdir / "submission")
        sandboxed = [f"./{request.submission.entry_point}", *request.sandbox_args()]
        display = f"{' '.join(sandboxed)}    [{self.kind.value} sandbox]"
        env = scrubbed_environment(home=SANDBOX_HOME, tmp="/tmp", gpu=request.gpu, threads=request.threads,
                                   sandboxed=True)
        argv = bwrap_command(sandboxed, code=code, inputs=request.inputs, outputs=request.outputs, gpu=request.gpu,
                             limits=request.limits)
        if python_alias_needed():  # before the root is made read-only
            at = argv.index("--remount-ro") if "--remount-ro" in argv else argv.index("--")
            argv[at:at] = ["--symlink", str(Path(sys.executable).resolve()), f"{SANDBOX_PYTHON_ALIAS}/python"]
            env["PATH"] = SANDBOX_PYTHON_ALIAS + os.pathsep + env["PATH"]
        identity = run_identity()
        dropper = None
        if identity is not None:  # a root harness: the run is the dedicated unprivileged uid
            uid, gid = identity
            give_to_run(code, uid=uid, gid=gid, writable=False)
            give_to_run(request.inputs, uid=uid, gid=gid, writable=False)
            give_to_run(request.outputs, uid=uid, gid=gid, writable=True)
            argv, dropper = stage_command(argv, uid=uid, gid=gid, instance=request.instance)
        try:
            argv, options = arguments_by_fd(argv)  # no host path in the sandbox's /proc/1/cmdline
            try:
                return run_process(argv, cwd=code, env=env, limits=request.limits, log_path=request.log_path,
                                   log_name=request.log_name, watch=request.outputs,
                                   cgroup=request.protections.cgroup, display=display, drop=dropper,
                                   instance=request.instance, pass_fds=(options,))
            finally:
                os.close(options)
        finally:
            if dropper is not None:
                dropper.cleanup()
