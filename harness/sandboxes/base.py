"""The sandbox interface: the kinds, what a machine enforces, one run's request, and the abstract sandbox.

Like foolbox 3's models (one small abstract class, one module per framework), each kind of sandbox is a module
implementing :class:`Sandbox`: :meth:`Sandbox.probe` says which protections work on this machine (or raises, saying
what it would take), :meth:`Sandbox.run` runs one submission process under a :class:`RunRequest` and returns its
:class:`harness.records.RunRecord`. :func:`harness.sandboxes.factory.sandbox_for` picks the implementation once.
This module does no I/O.
"""

from __future__ import annotations

import abc
import enum
import os
from dataclasses import dataclass, field
from pathlib import Path

from harness.cgroups import CGROUP_LIMITS
from harness.instance import Instance
from harness.limits import Limits
from harness.privilege import run_identity
from harness.records import RunRecord
from harness.submission import Submission

__all__ = ["SANDBOX_CODE", "SANDBOX_HOME", "SANDBOX_INPUT", "SANDBOX_OUTPUT", "SANDBOX_UID", "Protections",
           "RunRequest", "Sandbox", "SandboxKind"]

#: Paths of the run's folders inside a bubblewrap or container sandbox (the NIPS 2017 containers used similar
#: fixed paths).
SANDBOX_CODE = "/code"
SANDBOX_INPUT = "/input_images"
SANDBOX_OUTPUT = "/output"
SANDBOX_HOME = "/home/sandbox"
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
        this sandbox cannot enforce for a whole run: those of :data:`harness.cgroups.CGROUP_LIMITS` whose controller
        is missing. A docker or gVisor container enforces them itself."""
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


@dataclass(frozen=True, kw_only=True)
class RunRequest:
    """One run of a submission's entry point.

    Attributes:
        submission: What to run.
        args: Arguments after the entry point; ``{input}`` and ``{output}`` stand for the input and output
            folders as the process sees them (NIPS 2017 argv: input dir, output dir/file[, ε]).
        inputs: Input folder on the host (read-only for the process when sandboxed).
        outputs: Output folder on the host (the only place the process may write when sandboxed).
        workdir: An empty scratch folder owned by this run (holds the copy, HOME and TMPDIR).
        limits: Resource limits.
        log_path: Where stdout and stderr go.
        log_name: The log's name in the returned record (path relative to the results folder).
        protections: What the sandbox enforces on this machine (:meth:`Sandbox.probe`; its cgroup roots).
        instance: The harness instance whose things the run's cgroup, staging folder or container are.
        gpu: CUDA_VISIBLE_DEVICES for the run (None: leave unset).
        threads: CPU threads for the run (:func:`harness.sandboxes.staging.scrubbed_environment`); None keeps
            the harness's own settings.
        image: For a container sandbox: the id of the image to run (:meth:`Sandbox.image_digest`, so that the
            run's record names the image that ran); "" runs the image the submission's metadata names.
    """

    submission: Submission
    args: list[str]
    inputs: Path
    outputs: Path
    workdir: Path
    limits: Limits
    log_path: Path
    log_name: str
    protections: Protections
    instance: Instance
    gpu: str | None = None
    threads: int | None = None
    image: str = ""

    def sandbox_args(self) -> list[str]:
        """:attr:`args` with ``{input}`` and ``{output}`` as a bubblewrap or container sandbox mounts them."""
        return [a.replace("{input}", SANDBOX_INPUT).replace("{output}", SANDBOX_OUTPUT) for a in self.args]


class Sandbox(abc.ABC):
    """One kind of sandbox for submission processes.

    Attributes:
        kind: The kind a run under this sandbox is (what :meth:`probe` returns in :attr:`Protections.kind`).
    """

    kind: SandboxKind

    @abc.abstractmethod
    def probe(self) -> Protections:
        """Which protections this sandbox gives on this machine.

        Raises:
            RuntimeError: The sandbox cannot run here (one line saying what it would take).
        """

    @abc.abstractmethod
    def run(self, request: RunRequest) -> RunRecord:
        """Run ``request``'s entry point on a fresh copy of its submission folder, in this sandbox.

        Returns:
            The run's record; a run that could not start is a record with ``exit_code`` None and a one-line
            problem (also written to its log), never an exception.

        Raises:
            harness.submission.SubmissionError: The submission folder changed since discovery into one that cannot
                run (:func:`harness.sandboxes.staging.fresh_copy`).
        """

    def gpu_for(self, gpu: str | None) -> str | None:
        """The GPU a run handed ``gpu`` really gets under this sandbox (gVisor's runs none)."""
        return gpu

    def image_digest(self, submission: Submission, gpu: str | None) -> str:
        """The id ("sha256:…") of the container image a run of ``submission`` handed ``gpu`` would run; "" for a
        sandbox that runs no image, or when the image is not on this machine (the run then fails saying so)."""
        return ""

    def sweep(self) -> list[str]:
        """Remove what dead harness instances left of this kind's runs outside the folders and cgroups every kind
        sweeps (containers). Returns what was removed; never raises."""
        return []
