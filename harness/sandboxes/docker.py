"""Container sandboxes: each run in its own docker container, with runc (``--sandbox docker``) or gVisor's runsc
(``--sandbox gvisor``) as the runtime (:class:`ContainerSandbox`, one class for both).

A run gets the image its metadata names (``container``; ``container_gpu`` with ``--gpus`` when the run holds a
GPU), as the NIPS 2017 organisers ran submissions: ``--network=none``, read-only root filesystem, its fresh code
copy read-only at ``/code``, its input read-only at ``/input_images``, its output folder the only writable bind
mount at ``/output``, private tmpfs ``/tmp`` and HOME, no capabilities, no new privileges, an unprivileged user,
``--memory`` (swap included), a process limit and RLIMIT_CPU/RLIMIT_FSIZE. Every path the image declares as a
``VOLUME`` gets a tmpfs like ``/tmp`` (:func:`image_volumes`): docker would otherwise make it an anonymous volume
on the host disk, writable whatever ``--read-only`` and ``--output_mb`` say. RAM folders (``/tmp``, HOME, volumes)
are each at most ``memory_mb``, and what they hold counts in the container's ``--memory``.
The submission library is mounted read-only at ``/submission_library/submission_kit`` (its parent alone on
``PYTHONPATH``) like under bubblewrap; neither the referee nor the research code is visible.

gVisor (https://gvisor.dev, Debian's ``runsc``) puts a user-space guest kernel between the run and the host
kernel: host kernel state that namespaces share between runs (page-cache residency of files every run sees,
for one) is not observable inside. Differences measured with Debian's runsc 20221219: the host-side
``--pids-limit`` also counts the guest kernel's own threads (a small value stops the sandbox from starting), so
processes are limited with ``RLIMIT_NPROC`` inside the guest instead (one uid, one guest kernel per run); the
guest does not enforce ``RLIMIT_CPU`` (the wall-clock limit still holds); no GPU (runs use ``container``).

Every container carries the label :data:`LABEL`, the label :data:`INSTANCE_LABEL` with the tag of the harness
instance that started it (:mod:`harness.instance`) and a unique ``--name`` holding that tag; it is removed
(``docker rm -f``) after its run, whatever happened, and a timed-out run's container is killed by that removal.
A container does not depend on its harness to end: a watchdog process of its own (:func:`start_watchdog`, in a
session of its own, so it outlives a SIGKILLed harness) removes it as soon as the process driving it is gone, or
:data:`DEADLINE_MARGIN` seconds after its wall-clock limit, whichever comes first. Containers of a harness instance
that is dead and whose watchdog is gone too (the machine rebooted, the watchdog was killed) are removed by the next
harness on the machine (:func:`remove_orphans`); those of live instances never are.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from harness.cgroups import cgroup_roots
from harness.instance import Instance, InstanceError, process_start_time
from harness.library import LIBRARY_PACKAGE, SANDBOX_LIBRARY_PARENT, library_dir
from harness.limits import Limits
from harness.names import image_reference_problem
from harness.privilege import give_to_run
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
from harness.sandboxes.staging import fresh_copy, scrubbed_environment
from harness.submission import Submission

__all__ = ["INSTANCE_LABEL", "LABEL", "RUNTIMES", "ContainerSandbox", "container_user", "docker_run_command",
           "engine_notes", "engine_problem", "image_id", "image_problem", "image_volumes", "leftover_containers",
           "remove_container", "remove_orphans", "run_in_container", "start_watchdog"]

#: Label on every container the harness starts (``docker ps -a --filter label=adv-harness.run``).
LABEL = "adv-harness.run"
#: Label holding the tag of the harness instance that started the container.
INSTANCE_LABEL = "adv-harness.instance"
#: Label holding the pid of that instance's process (read by harnesses before instance identities).
PID_LABEL = "adv-harness.pid"
#: docker ``--runtime`` per sandbox kind.
RUNTIMES = {SandboxKind.DOCKER: "runc", SandboxKind.GVISOR: "runsc"}
#: Seconds a docker CLI call (inspect, rm) may take.
_CLI_SECONDS = 60
_CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _docker(*args: str, timeout: float = _CLI_SECONDS) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)


def engine_problem(kind: SandboxKind) -> str:
    """Why ``kind`` (DOCKER or GVISOR) cannot run here, in one line with the fix; "" when it can."""
    fix = "run scripts/build_sandbox_images.sh as root (installs docker.io and runsc, starts dockerd)"
    if shutil.which("docker") is None:
        return f"--sandbox {kind.value} needs the docker client: {fix}"
    try:
        info = _docker("info", "--format", "{{json .Runtimes}}")
    except (OSError, subprocess.SubprocessError) as exc:
        return f"--sandbox {kind.value}: docker does not answer ({exc}): {fix}"
    if info.returncode != 0:
        detail = (info.stderr.strip().splitlines() or ["no answer"])[-1]
        return f"--sandbox {kind.value} needs a running docker engine ({detail}): {fix}"
    runtime = RUNTIMES[kind]
    try:
        runtimes = json.loads(info.stdout or "{}") or {}
    except json.JSONDecodeError:
        runtimes = {}
    if runtime not in runtimes:
        return (f"--sandbox {kind.value} needs docker's '{runtime}' runtime (/etc/docker/daemon.json \"runtimes\"), "
                f"which this engine lacks: {fix}")
    return ""


def engine_notes(kind: SandboxKind) -> tuple[str, ...]:
    """Plain-words remarks for the manifest about what ``kind`` enforces here."""
    orphans = remove_orphans()
    notes = [(f"each run in its own docker container (runtime {RUNTIMES[kind]}), --network=none, read-only root, "
              f"code and input, user {container_user()}, no capabilities; container removed after the run, or by "
              f"its watchdog once the harness is gone or {DEADLINE_MARGIN:g} s past its time limit")]
    if kind is SandboxKind.GVISOR:
        notes.append("gVisor guest kernel per run; processes limited by RLIMIT_NPROC in the guest; RLIMIT_CPU not "
                     "enforced by runsc (the wall-clock limit holds); no GPU: runs use the CPU image 'container'")
    if orphans:
        notes.append(f"removed {len(orphans)} container(s) left by a harness process that was killed")
    return tuple(notes)


@functools.cache
def _image_present(image: str) -> bool:
    try:
        return _docker("image", "inspect", "--format", "{{.Id}}", image).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def image_id(image: str) -> str:
    """The id ("sha256:…", ``docker image inspect`` ``.Id``) of the local image ``image`` names now; "" when it is
    not on this machine, names no image, or docker does not answer. Not cached: a tag re-pushed gets a new id."""
    if not image or image_reference_problem(image):
        return ""
    try:
        found = _docker("image", "inspect", "--format", "{{.Id}}", image)
    except (OSError, subprocess.SubprocessError):
        return ""
    answer = found.stdout.strip()
    return answer if found.returncode == 0 and answer.startswith("sha256:") else ""


@functools.cache
def image_volumes(image: str) -> tuple[str, ...]:
    """The paths ``image`` declares as a ``VOLUME`` (``.Config.Volumes``), normalised (``/data/`` is ``/data``).

    Raises:
        RuntimeError: docker cannot tell (the run must not start: each such path would otherwise become an
            anonymous volume on the host disk, outside every limit).
    """
    try:
        found = _docker("image", "inspect", "--format", "{{json .Config.Volumes}}", image)
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"cannot read the VOLUME list of docker image '{image}': {exc}") from None
    if found.returncode != 0:
        detail = (found.stderr.strip().splitlines() or ["no answer"])[-1]
        raise RuntimeError(f"cannot read the VOLUME list of docker image '{image}': {detail}")
    try:
        declared = json.loads(found.stdout or "null") or {}
    except json.JSONDecodeError:
        raise RuntimeError(f"cannot read the VOLUME list of docker image '{image}': docker answered "
                           f"{found.stdout.strip()[:80]!r}") from None
    return tuple(sorted({os.path.normpath(path) for path in declared if isinstance(path, str)}))


def image_problem(image: str) -> str:
    """One-line error when ``image`` is not on this machine (images are never pulled by the harness); "" if it is."""
    if not image:
        return ("metadata.json names no \"container\" image: add one (e.g. \"adv-harness/python-numpy-pil:bookworm\", "
                "made by scripts/build_sandbox_images.sh)")
    problem = image_reference_problem(image)
    if problem:  # never handed to docker: "--help" would pass its image check and print its help as a run
        return f"metadata.json \"container\" {problem}"
    if _image_present(image):
        return ""
    return (f"docker image '{image}' is not on this machine: load it (docker load -i IMAGE.tar), build it "
            f"(docker build -t {image} FOLDER) or docker pull {image} where a registry is reachable")


def container_user() -> str:
    """``uid:gid`` the container runs as: the harness's own user when it is unprivileged (the output files are then
    its own), else nobody (:data:`harness.sandboxes.base.SANDBOX_UID`), whose files root can read and remove."""
    uid = os.getuid()
    return f"{SANDBOX_UID}:{SANDBOX_UID}" if uid == 0 else f"{uid}:{os.getgid()}"


def docker_run_command(argv: list[str], *, kind: SandboxKind, image: str, name: str, code: Path, inputs: Path,
                       outputs: Path, limits: Limits, env: dict[str, str], gpu: str | None,
                       instance: Instance, volumes: tuple[str, ...] = ()) -> list[str]:
    """The ``docker run`` command line of one run.

    Args:
        argv: Entry point and arguments as the container sees them (``/input_images``, ``/output`` …).
        kind: DOCKER (runc) or GVISOR (runsc).
        image: Local image name.
        name: Unique container name (the harness removes the container by it).
        code, inputs, outputs: Host folders mounted at ``/code`` (ro), ``/input_images`` (ro), ``/output`` (rw).
        limits: ``memory_mb`` → ``--memory`` = ``--memory-swap``; ``max_processes`` → ``--pids-limit`` (runc) or
            RLIMIT_NPROC (gVisor); ``cpu_seconds`` → RLIMIT_CPU; ``output_mb`` → RLIMIT_FSIZE. The wall-clock
            limit is the caller's (it removes the container).
        env: Environment of the entry point (PATH and PYTHONPATH are set for the container here; a
            CUDA_VISIBLE_DEVICES is dropped, ``--gpus`` exposes the device instead).
        gpu: GPU id for ``--gpus device=ID`` (docker only; gVisor runs on the CPU).
        instance: The harness instance the container is labelled with.
        volumes: Paths the image declares as a ``VOLUME`` (:func:`image_volumes`). Each gets a tmpfs like ``/tmp``
            (at most ``memory_mb``, its pages charged to the container's ``--memory``), so docker creates no
            anonymous volume on the host disk; one the run's own mounts already cover gets nothing more.
    """
    runtime = RUNTIMES[kind]
    tmpfs_size = f",size={limits.memory_mb}m" if limits.memory_mb else ""
    command = ["docker", "run", "--name", name, "--label", f"{LABEL}={name}",
               "--label", f"{INSTANCE_LABEL}={instance.tag}", "--label", f"{PID_LABEL}={instance.pid}",
               "--runtime", runtime,
               "--init",  # the entry point is not PID 1, which ignores signals it has no handler for (SIGXCPU)
               "--network=none", "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
               "--user", container_user(), "--hostname", "sandbox", "--stop-timeout", "1",
               "--tmpfs", f"/tmp:rw,nosuid,nodev,mode=1777{tmpfs_size}",
               "--tmpfs", f"{SANDBOX_HOME}:rw,nosuid,nodev,mode=1777{tmpfs_size}",
               "-v", f"{code}:{SANDBOX_CODE}:ro", "-v", f"{inputs}:{SANDBOX_INPUT}:ro",
               "-v", f"{outputs}:{SANDBOX_OUTPUT}:rw",
               "-v", f"{library_dir()}:{SANDBOX_LIBRARY_PARENT}/{LIBRARY_PACKAGE}:ro", "-w", SANDBOX_CODE,
               "--ulimit", "core=0:0"]
    own = {"/tmp", SANDBOX_HOME, SANDBOX_CODE, SANDBOX_INPUT, SANDBOX_OUTPUT,
           f"{SANDBOX_LIBRARY_PARENT}/{LIBRARY_PACKAGE}", "/"}
    for path in sorted(set(volumes) - own):
        command += ["--tmpfs", f"{path}:rw,nosuid,nodev,mode=1777{tmpfs_size}"]
    if limits.memory_mb:
        command += ["--memory", f"{limits.memory_mb}m", "--memory-swap", f"{limits.memory_mb}m"]
    if limits.max_processes:
        if kind is SandboxKind.GVISOR:
            command += ["--ulimit", f"nproc={limits.max_processes}:{limits.max_processes}"]
        else:
            command += ["--pids-limit", str(limits.max_processes)]
    if limits.cpu_seconds:
        soft = max(1, int(limits.cpu_seconds))
        command += ["--ulimit", f"cpu={soft}:{soft + 5}"]
    if limits.cpu_share is not None:  # the container's cgroup holds the run to its share of the CPU
        command += ["--cpus", f"{limits.cpu_share.cpus:g}", "--cpuset-cpus", limits.cpu_share.cpuset]
    if limits.output_mb:
        size = limits.output_mb << 20
        command += ["--ulimit", f"fsize={size}:{size}"]
    if gpu is not None and kind is SandboxKind.DOCKER:
        command += ["--gpus", f"device={gpu}"]
    container_env = {k: v for k, v in env.items() if k != "CUDA_VISIBLE_DEVICES"}
    container_env.update(PATH=_CONTAINER_PATH, PYTHONPATH=SANDBOX_LIBRARY_PARENT, HOME=SANDBOX_HOME, TMPDIR="/tmp",
                         TMP="/tmp", TEMP="/tmp")
    for key in sorted(container_env):
        command += ["-e", f"{key}={container_env[key]}"]
    return command + [image, *argv]


def _labelled() -> list[tuple[str, str, str]]:
    """(name, instance label, pid label) of every container carrying :data:`LABEL`; [] when docker does not answer.
    """
    try:
        listing = _docker("ps", "-a", "--filter", f"label={LABEL}", "--format",
                          f'{{{{.Names}}}}\t{{{{.Label "{INSTANCE_LABEL}"}}}}\t{{{{.Label "{PID_LABEL}"}}}}')
    except (OSError, subprocess.SubprocessError):
        return []
    rows = []
    for line in listing.stdout.splitlines() if listing.returncode == 0 else []:
        name, tag, pid = (line.split("\t") + ["", ""])[:3]
        rows.append((name, tag, pid))
    return rows


def _owner(tag: str) -> Instance | None:
    try:
        return Instance.parse(tag)
    except InstanceError:
        return None


def remove_orphans() -> list[str]:
    """Remove containers left by harness instances that are dead (killed before they could clean up).

    Containers of live instances, of instances on another host and of an unreadable instance label are left
    alone. A container without the instance label (an earlier harness version's) is removed when no process has
    its ``adv-harness.pid``.

    Returns:
        The names removed; [] when docker does not answer.
    """
    removed = []
    for name, tag, pid in _labelled():
        owner = _owner(tag)
        if owner is not None:
            dead = owner.dead()
        else:
            dead = not tag and pid.isdigit() and not Path(f"/proc/{pid}").exists()
        if dead:
            remove_container(name)
            removed.append(name)
    return removed


def remove_container(name: str) -> None:
    """Kill and remove a container (no error when it is already gone)."""
    try:
        _docker("rm", "-f", "-v", name)
    except (OSError, subprocess.SubprocessError):
        pass


def leftover_containers(instance: Instance) -> list[str]:
    """Names of the containers (running or not) that ``instance``'s competition started and has not removed: those
    labelled with its tag or with the tag of a process serving it (same token, :meth:`Instance.adopted`). []
    when docker does not answer."""
    return [name for name, tag, _ in _labelled()
            if (owner := _owner(tag)) is not None and owner.token == instance.token]


#: Seconds past a run's wall-clock limit after which its watchdog removes the container even though the harness
#: still runs (the harness itself removes it at the limit; this covers a harness that hangs).
DEADLINE_MARGIN = 30.0
#: The watchdog: stdlib only (``python -I -S``), argv = container name, pid and start time (``/proc/PID/stat``
#: field 22; "0" when unknown: the pid alone) of the process driving the container, seconds until its deadline.
_WATCHDOG = """
import subprocess, sys, time
name, pid, start, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
def alive():
    try:
        with open("/proc/" + pid + "/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return start == "0" or fields[19:20] == [start]
deadline = time.monotonic() + seconds
while alive() and time.monotonic() < deadline:
    time.sleep(0.5)
for _ in range(5):  # a docker client killed while it started the container: the engine may still create it
    try:
        subprocess.run(["docker", "rm", "-f", "-v", name], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)
    except Exception:
        pass
    time.sleep(1)
"""


def start_watchdog(name: str, seconds: float) -> subprocess.Popen[bytes] | None:
    """Start the watchdog of container ``name``: a process in a session of its own that removes the container once
    the calling process is gone (even SIGKILLed) or ``seconds`` have passed. The caller kills it (and waits for
    it) after removing the container itself.

    Returns:
        The watchdog process; None when it cannot be started (the run then goes on without one: the harness's own
        removal and :func:`remove_orphans` still hold).
    """
    pid = os.getpid()
    argv = [sys.executable, "-I", "-S", "-c", _WATCHDOG, name, str(pid), str(process_start_time(pid) or 0),
            str(max(1.0, seconds))]
    try:
        return subprocess.Popen(argv, cwd="/", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError:
        return None


def _stop_watchdog(watchdog: subprocess.Popen[bytes] | None) -> None:
    if watchdog is None:
        return
    watchdog.kill()
    try:
        watchdog.wait(timeout=_CLI_SECONDS)
    except subprocess.TimeoutExpired:
        pass


def _oom_killed(name: str) -> bool:
    try:
        state = _docker("inspect", "--format", "{{.State.OOMKilled}}", name)
    except (OSError, subprocess.SubprocessError):
        return False
    return state.stdout.strip() == "true"


def run_in_container(submission_image: str, argv: list[str], *, kind: SandboxKind, code: Path, inputs: Path,
                     outputs: Path, limits: Limits, env: dict[str, str], gpu: str | None, log_path: Path,
                     log_name: str, display: str, instance: Instance, image: str = "") -> RunRecord:
    """Run ``argv`` in a new container of ``submission_image`` (of the image whose id is ``image`` when given:
    :func:`image_id` of ``submission_image``); always remove the container afterwards.

    The docker client is the process :func:`harness.process.run_process` watches (wall clock, output size, log);
    killing it at the limit does not stop the container, removing the container does. The container is named and
    labelled for ``instance``, and its watchdog (:func:`start_watchdog`) removes it should this process die first.

    Returns:
        A :class:`harness.records.RunRecord`; a missing image or engine is a record with ``exit_code`` None and a
        one-line problem (also written to the log), never an exception.
    """
    problem = image_problem(submission_image)
    if problem:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(f"$ {display}\n[harness] {problem}\n")
        return RunRecord(exit_code=None, timed_out=False, seconds=0.0, problem=problem, log=log_name)
    image = image or submission_image
    try:
        volumes = image_volumes(image)
    except RuntimeError as exc:
        problem = str(exc)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(f"$ {display}\n[harness] {problem}\n")
        return RunRecord(exit_code=None, timed_out=False, seconds=0.0, problem=problem, log=log_name)
    # The container's user owns the run's folders (read-only mounts but for the output, which root reads and
    # removes): no file is made readable by other users of the machine.
    user, group = (int(part) for part in container_user().split(":"))
    for folder, writable in ((code, False), (inputs, False), (outputs, True)):
        give_to_run(folder, uid=user, gid=group, writable=writable)
    name = f"adv-harness-{instance.tag}-{uuid.uuid4().hex[:8]}"
    command = docker_run_command(argv, kind=kind, image=image, name=name, code=code, inputs=inputs,
                                 outputs=outputs, limits=limits, env=env, gpu=gpu, instance=instance,
                                 volumes=volumes)
    client_limits = Limits(wall_seconds=limits.wall_seconds, output_mb=limits.output_mb)  # the rest: in the container
    watchdog = start_watchdog(name, limits.wall_seconds + DEADLINE_MARGIN)
    try:
        record = run_process(command, cwd=code, env=dict(os.environ), limits=client_limits, log_path=log_path,
                             log_name=log_name, watch=outputs, display=display)
        problem = ""
        if record.exit_code not in (None, 0) and record.problem.startswith(f"exit code {record.exit_code}"):
            # docker run exits with the container's status: 128 + N when a signal N killed its main process.
            if limits.memory_mb and _oom_killed(name):
                problem = f"memory limit of {limits.memory_mb} MB exceeded"
            elif limits.cpu_seconds and record.exit_code == 128 + signal.SIGXCPU:
                problem = f"CPU time limit of {limits.cpu_seconds:g} s reached"
            elif record.exit_code == 125:
                problem = "docker could not start the container (exit code 125; its message is in the log)"
        if problem:
            with open(log_path, "a") as log:
                log.write(f"[harness] {problem}\n")
            record = dataclasses.replace(record, problem=problem)
    finally:
        remove_container(name)
        _stop_watchdog(watchdog)
    return record


class ContainerSandbox(Sandbox):
    """Each run in its own docker container of the submission's image.

    Args:
        kind: DOCKER (runtime runc) or GVISOR (runtime runsc, :data:`RUNTIMES`).

    Raises:
        ValueError: ``kind`` is not a container kind.
    """

    def __init__(self, kind: SandboxKind) -> None:
        if kind not in RUNTIMES:
            raise ValueError(f"ContainerSandbox: {kind.value} is not a container sandbox (docker or gvisor)")
        self.kind = kind
        self.runtime = RUNTIMES[kind]

    def probe(self) -> Protections:
        """The container's protections (it enforces the limits itself: no cgroup roots of the harness's).

        Raises:
            RuntimeError: No docker engine with this runtime answers here (one line with the fix).
        """
        cgroup_roots()  # every probe sweeps dead instances' cgroup folders, though containers use none of them
        problem = engine_problem(self.kind)
        if problem:
            raise RuntimeError(problem)
        return Protections(self.kind, namespaces=True, network=True, notes=engine_notes(self.kind))

    def run(self, request: RunRequest) -> RunRecord:
        """Run the entry point in a new container (:func:`run_in_container`) of the submission's ``container``
        image, or of its ``container_gpu`` image when the run holds a GPU (docker only: runsc here has none)."""
        code = fresh_copy(request.submission, request.workdir / "submission")
        sandboxed = [f"./{request.submission.entry_point}", *request.sandbox_args()]
        display = f"{' '.join(sandboxed)}    [{self.kind.value} sandbox]"
        env = scrubbed_environment(home=SANDBOX_HOME, tmp="/tmp", gpu=request.gpu, threads=request.threads,
                                   sandboxed=True)
        gpu = self.gpu_for(request.gpu)
        return run_in_container(self.image_name(request.submission, gpu), sandboxed, kind=self.kind, code=code,
                                inputs=request.inputs, outputs=request.outputs, limits=request.limits, env=env,
                                gpu=gpu, log_path=request.log_path, log_name=request.log_name, display=display,
                                instance=request.instance, image=request.image)

    def gpu_for(self, gpu: str | None) -> str | None:
        """``gpu`` under docker; None under gVisor (runsc here has no GPU support)."""
        return gpu if self.kind is SandboxKind.DOCKER else None

    @staticmethod
    def image_name(submission: Submission, gpu: str | None) -> str:
        """The image a run of ``submission`` holding ``gpu`` (after :meth:`gpu_for`) uses: its ``container_gpu``
        with a GPU when it names one, else its ``container``."""
        return (submission.container_gpu if gpu is not None else "") or submission.container

    def image_digest(self, submission: Submission, gpu: str | None) -> str:
        """:func:`image_id` of :meth:`image_name` (``gpu`` after :meth:`gpu_for`)."""
        return image_id(self.image_name(submission, self.gpu_for(gpu)))

    def sweep(self) -> list[str]:
        """Remove the containers of dead harness instances (:func:`remove_orphans`)."""
        return remove_orphans()
