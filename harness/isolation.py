"""Which protections this machine can give a submission process, and the commands and limits that give them.

Without docker, Linux namespaces isolate a run: bubblewrap (``bwrap``, the sandbox Flatpak uses) gives it a
private mount namespace in which only the system, the Python installation, the submission library
(:mod:`harness.library`), its own code (read-only), its input folder (read-only) and its output folder (writable)
exist, plus a private /tmp and HOME; no network (``--unshare-net``), its own PID namespace (everything dies with
it), no capabilities, uid 65534 inside and never uid 0 outside (:mod:`harness.privilege`), no nested user
namespaces, read-only ``/proc/sys``. Resource limits come from ``setrlimit`` (CPU time, memory, file size) and,
where the harness may create cgroups (:mod:`harness.cgroups`), from the pids, memory, cpu and cpuset controllers:
each of several parallel runs is held to its share of the CPU (:class:`harness.parallelism.CpuShare`).
:func:`probe` finds out what works here, and the run's manifest says which protections were in force.

A non-root harness gets the same sandbox where the kernel allows it (bubblewrap as the harness's own uid). Without
a cgroup folder it may create runs in, ``memory_mb``, ``max_processes`` and ``cpu_share`` cannot be enforced for a
whole run (:data:`harness.cgroups.CGROUP_LIMITS`, :meth:`Protections.unenforced`); the competition then refuses to
start unless the organiser names them (``--allow_unenforced``), and the manifest lists them.
"""

from __future__ import annotations

import enum
import fcntl
import functools
import os
import resource
import shutil
import site
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from harness.cgroups import CGROUP_LIMITS, cgroup_roots
from harness.instance import Instance
from harness.library import LIBRARY_PACKAGE, SANDBOX_LIBRARY_PARENT, library_dir
from harness.limits import Limits
from harness.privilege import run_identity, stage_command, staging_parent

#: Paths of the run's folders inside a bubblewrap sandbox (the NIPS 2017 containers used similar fixed paths).
SANDBOX_CODE = "/code"
SANDBOX_INPUT = "/input_images"
SANDBOX_OUTPUT = "/output"
SANDBOX_HOME = "/home/sandbox"
#: Where HOME really lives: inside the size-limited /tmp (``SANDBOX_HOME`` is a symbolic link to it).
SANDBOX_TMP_HOME = "/tmp/.home"
#: Unprivileged user the sandboxed process runs as.
SANDBOX_UID = 65534


class SandboxKind(str, enum.Enum):
    """How submission processes are isolated (``--sandbox``)."""

    AUTO = "auto"        # bubblewrap when it works here, else refuse to run (say what it would take)
    BWRAP = "bwrap"      # require bubblewrap
    NONE = "none"        # plain processes (fresh copy, scrubbed environment, limits)
    DOCKER = "docker"    # the submission's container/container_gpu image, --network=none (needs a docker engine)
    GVISOR = "gvisor"    # the same container under gVisor's runsc runtime: a guest kernel per run


@dataclass(frozen=True)
class Protections:
    """What this machine enforces for a submission process.

    Attributes:
        kind: The sandbox in use.
        namespaces: Private filesystem view, PID namespace, no capabilities (bubblewrap or docker).
        network: No network access.
        cgroup: Root of cgroup folders this harness may create run folders in, per controller ("pids", "memory",
            "cpu", "cpuset", "cpuacct"; see :mod:`harness.cgroups`); empty when none.
        notes: Plain-words remarks for the manifest (what is missing and why).
    """

    kind: SandboxKind
    namespaces: bool
    network: bool
    cgroup: dict[str, Path] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def unenforced(self, limits: object) -> list[str]:
        """The limits of ``limits`` (a :class:`Limits` or :class:`harness.limits.LimitPolicy`) that are set but that
        this sandbox cannot enforce for a whole run: those of :data:`CGROUP_LIMITS` whose controller is missing.
        A docker or gVisor container enforces them itself."""
        if self.kind in (SandboxKind.DOCKER, SandboxKind.GVISOR):
            return []
        return [name for name, controller in CGROUP_LIMITS.items()
                if getattr(limits, name, None) and controller not in self.cgroup]

    def describe(self) -> dict[str, object]:
        """JSON-ready summary for the manifest."""
        identity = run_identity() if self.kind is SandboxKind.BWRAP else None
        return {"sandbox": self.kind.value, "private_filesystem_and_pids": self.namespaces,
                "run_uid": identity[0] if identity else os.getuid(),
                "no_network": self.network, "cgroup_controllers": sorted(self.cgroup),
                "always": ["fresh copy of the submission per run", "scrubbed environment",
                           "private HOME and TMPDIR", "process group killed at the time limit and at exit",
                           "RLIMIT_CPU, RLIMIT_DATA, RLIMIT_FSIZE, no core dumps", "output size watched"],
                "notes": list(self.notes)}


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


def _bwrap_works() -> tuple[bool, str]:
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


@functools.lru_cache(maxsize=None)
def probe(kind: SandboxKind = SandboxKind.AUTO) -> Protections:
    """Find out which protections work on this machine (cached per process).

    Raises:
        RuntimeError: ``kind`` is AUTO, BWRAP, DOCKER or GVISOR and no such sandbox can run here (the message says
            what it would take); only an explicit NONE runs submissions as plain processes.
    """
    notes: list[str] = []
    cgroups, note = cgroup_roots()
    if note:
        notes.append(note)
    if kind in (SandboxKind.DOCKER, SandboxKind.GVISOR):
        from harness.sandbox_docker import engine_notes, engine_problem
        problem = engine_problem(kind)
        if problem:
            raise RuntimeError(problem)
        return Protections(kind, namespaces=True, network=True, notes=engine_notes(kind))
    if kind in (SandboxKind.AUTO, SandboxKind.BWRAP):
        works, why = _bwrap_works()
        if works:
            if not bwrap_disables_userns():
                notes.append("bubblewrap older than 0.8: nested user namespaces are not refused inside the sandbox")
            return Protections(SandboxKind.BWRAP, namespaces=True, network=True, cgroup=cgroups, notes=tuple(notes))
        if kind is SandboxKind.BWRAP:
            raise RuntimeError(f"--sandbox bwrap: {why}")
        raise RuntimeError(f"no sandbox available, so no submission is run: {why}; or pass --sandbox none to run "
                           "submissions as plain processes that can read what the harness can and use the network")
    else:
        notes.insert(0, "--sandbox none: submissions run as plain processes without filesystem or network "
                        "isolation")
    return Protections(SandboxKind.NONE, namespaces=False, network=False, cgroup=cgroups, notes=tuple(notes))


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
