"""What runs on a Dask worker for :mod:`harness.dask_executor`: one work unit per task, and the worker's checks.

A task unpickles a :class:`WorkerContext` (small; sent once per stage), checks once per worker process that this
worker can serve the competition (:func:`check_self`: same harness version, the shared folders visible and the
results folder writable, the sandbox available), then runs the unit with a :class:`~harness.execution.Runner`
sharing the worker's device pool, unless its record is already in the store (tasks are idempotent).

Workers get only what a unit needs: the true labels and the results folder's secret stay on the driver. The context
carries the dataset's folder without its image records, an attack unit its images without their true labels (and
without target classes unless the attack is targeted: :func:`for_workers`), and a defense unit comes with the
opaque file names the driver derived from the secret (:meth:`harness.execution.Runner.opaque_names`). Scoring
happens on the driver.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from harness.dataset import Dataset
from harness.devices import DevicePool, visible_gpus
from harness.errors import ClusterError
from harness.execution import Runner
from harness.library import Fingerprint
from harness.limits import LimitPolicy
from harness.parallelism import CpuShare, worker_cpu_shares
from harness.planning import AttackUnit, DefenseUnit, Unit
from harness.records import Record
from harness.sandboxes.base import Protections, SandboxKind
from harness.sandboxes.factory import probe
from harness.submission import SubmissionType
from harness.workspace import Workspace

__all__ = ["HIDDEN", "ClosedHttp", "ClusterError", "WorkerContext", "check_self", "close_http_server",
           "describe_worker", "exception_text", "for_workers", "harness_location", "identity", "remove_scratch",
           "run_unit", "submission_slots", "worker_problems", "worker_workspace"]

#: What a worker sees in place of a true label (and of the target class of an untargeted attack's image).
HIDDEN = -1


@dataclass(frozen=True)
class WorkerContext:
    """What a worker needs to run any unit of one competition (pickled once per task; small).

    Attributes:
        dataset: The dataset's folder (it must exist on the worker), without image records: units carry their
            images (see :func:`for_workers`).
        workspace: The results folder (shared), and the driver's harness instance: a worker makes its things as
            that instance adopted by the worker process (:meth:`harness.instance.Instance.adopted`).
        seed: Seeds opaque names.
        batch_size: Images per batch.
        policy: Per-run limits.
        sandbox: The sandbox kind asked for; each worker probes what it can give.
        environment: The driver's environment fingerprint (part of every key).
        harness_version: The driver's harness version; a worker with another one refuses the task.
        clean_versions: Pixel hash of every clean image, by image id.
        host_slots: Units that run at once on each host (all its workers together), by host address; a run
            gets ``cores // slots`` CPU threads of its host.
        paths: The results folder, then the dataset and submission folders: what every worker must see.
    """

    dataset: Dataset
    workspace: Workspace
    seed: int
    batch_size: int
    policy: LimitPolicy
    sandbox: SandboxKind
    environment: Fingerprint
    harness_version: str
    clean_versions: dict[str, str]
    host_slots: dict[str, int]
    paths: tuple[str, ...]


_PROTECTIONS: dict[SandboxKind, Protections] = {}
_CHECKED: set[tuple[tuple[str, ...], SandboxKind, str]] = set()  # what this worker process has already passed
_POOLS: dict[tuple[tuple[str, ...], int, tuple[CpuShare, ...]], DevicePool] = {}


def _worker_name() -> str:
    try:
        from distributed import get_worker
        worker = get_worker()
        return f"{worker.address} ({worker.name})" if worker.name != worker.address else str(worker.address)
    except ValueError:
        return f"process {os.getpid()}"


def _worker_protections(kind: SandboxKind) -> Protections:
    """The sandbox this worker process gives (probed once per process)."""
    if kind not in _PROTECTIONS:
        _PROTECTIONS[kind] = probe(kind)
    return _PROTECTIONS[kind]


def submission_slots(nthreads: int, resources: dict[str, Any]) -> int:
    """Submission processes a worker runs at once: one per GPU when it offers the ``GPU`` resource, else its
    ``RUNS`` resource, else one per thread. Threads beyond ``RUNS`` pipeline the harness's own work (copying the
    next unit's inputs, refereeing and storing the last unit's outputs) with the running processes."""
    gpus = resources.get("GPU")
    runs = resources.get("RUNS")
    return max(1, int(gpus) if gpus else int(runs) if runs else int(nthreads))


def _concurrency(host_slots: dict[str, int]) -> int:
    """Units running at once on this worker's host (all its workers), for the per-run thread share."""
    try:
        from distributed import get_worker
        worker = get_worker()
    except ValueError:
        return 1
    own = submission_slots(worker.state.nthreads, dict(worker.state.total_resources))
    return max(own, host_slots.get(str(worker.ip), own))


def check_self(context: WorkerContext) -> None:
    """Refuse to run units of a competition this worker cannot serve (it may have joined after the driver's check
    of every worker): the checks and messages of :func:`harness.dask_executor.check_workers`, once per process.

    Raises:
        ClusterError: Another harness version, folders it cannot see or write, or a sandbox it cannot give.
    """
    from harness import __version__
    if __version__ != context.harness_version:  # before anything else of this version runs
        raise ClusterError(f"worker {_worker_name()} runs harness {__version__}, the driver "
                           f"{context.harness_version}: install harness {context.harness_version} on it and "
                           "restart it")
    checked = (context.paths, context.sandbox, context.harness_version)
    if checked in _CHECKED or not context.paths:
        return
    problems = worker_problems(_worker_name(), describe_worker(list(context.paths), context.sandbox.value),
                                context.harness_version)
    if problems:
        raise ClusterError("; ".join(problems))
    _CHECKED.add(checked)


def for_workers(value: Any) -> Any:
    """What a worker is sent in place of ``value``: a :class:`~harness.dataset.Dataset` without its image records,
    an :class:`~harness.planning.AttackUnit` whose images carry :data:`HIDDEN` as true label (and as target class
    unless the attack is targeted); anything else as it is. The unit's key is unchanged."""
    if isinstance(value, Dataset):
        return replace(value, images=())
    if isinstance(value, AttackUnit):
        targeted = value.attack.type is SubmissionType.TARGETED_ATTACK
        images = tuple(replace(r, true_label=HIDDEN, target_class=r.target_class if targeted else HIDDEN)
                       for r in value.images)
        return replace(value, images=images)
    return value


def _worker_runner(context: WorkerContext) -> Runner:
    check_self(context)
    gpus = visible_gpus()
    index = None
    try:
        from distributed import get_worker
        worker = get_worker()
        own = submission_slots(worker.state.nthreads, dict(worker.state.total_resources))
        if str(worker.name).isdigit():  # a local cluster's workers 0, 1, ...: other GPUs first, cores of their own
            index = int(str(worker.name))
            if gpus:
                offset = index % len(gpus)
                gpus = gpus[offset:] + gpus[:offset]
    except ValueError:
        own = 1
    sharing = _concurrency(context.host_slots)  # the host's cores are shared by every unit running on it
    shares = worker_cpu_shares(own, on_host=sharing, index=index)
    pool = _POOLS.setdefault((tuple(gpus), own, tuple(shares or ())),
                             DevicePool(gpus, own, cpu=shares))  # shared by this worker's threads
    return Runner(context.dataset, worker_workspace(context.workspace), seed=context.seed,
                  batch_size=context.batch_size, jobs=own, policy=context.policy, devices=pool,
                  protections=_worker_protections(context.sandbox), environment=context.environment,
                  threads=max(1, (os.cpu_count() or 1) // sharing) if sharing > 1 else None)


def run_unit(context: WorkerContext, unit: Unit, names: dict[str, str] | None = None) -> Record:
    """Task body: the unit's stored record if it exists (idempotent), else run the unit and store its record.

    Args:
        context: The stage's context.
        unit: The unit, as :func:`for_workers` made it.
        names: For a defense unit: image version → the opaque file name the defense sees it under (the driver
            derives them from the secret, which workers never get).

    Raises:
        ClusterError: This worker cannot serve the competition (see :func:`check_self`), or a defense unit came
            without its opaque names.
    """
    runner = _worker_runner(context)
    if isinstance(unit, DefenseUnit) and (names is None or set(names) != set(unit.versions)):
        if runner.stored_record(unit) is None:
            raise ClusterError(f"defense unit {unit.key[:12]} came without the opaque names of its images: run "
                               f"the driver with harness {context.harness_version} as on the workers")
    return runner.slim(unit, runner.run_unit(unit, context.clean_versions, names))  # answers stay in the store


def identity(value: WorkerContext) -> WorkerContext:
    return value


def worker_workspace(workspace: Workspace) -> Workspace:
    """The driver's workspace as this worker process uses it: its things (scratch folder, cgroups, containers)
    carry the competition's token and this process as owner, so they are swept once this worker is dead."""
    return replace(workspace, instance=workspace.instance.adopted())


def remove_scratch(workspace: Workspace) -> None:
    """Run on every worker after a stage (and on the driver's machine by the driver): remove this worker's
    scratch folder of the competition, sweep those of dead harness instances."""
    from harness.workspace import sweep_dead_scratch
    worker_workspace(workspace).remove_scratch()
    sweep_dead_scratch(workspace.root)


def describe_worker(paths: list[str], sandbox: str) -> dict[str, Any]:
    """Run on every worker by :func:`harness.dask_executor.check_workers` (and by :func:`check_self`): its harness
    version, the paths it cannot use, its sandbox and cores."""
    from harness import __version__
    missing = [p for p in paths if not Path(p).exists()]
    output = Path(paths[0])
    unwritable = ""
    if output.exists():
        probe_file = output / f".worker-check-{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"  # threads check at once
        try:
            probe_file.write_text("ok")
            probe_file.unlink()
        except OSError as exc:
            unwritable = f"{output} is not writable ({exc.strerror})"
    try:
        protections: dict[str, object] = _worker_protections(SandboxKind(sandbox)).describe()
    except RuntimeError as exc:
        protections = {"error": str(exc)}
    return {"harness_version": __version__, "missing": missing, "unwritable": unwritable,
            "protections": protections, "cores": os.cpu_count() or 1,
            "gpus": os.environ.get("CUDA_VISIBLE_DEVICES")}


def worker_problems(address: str, answer: dict[str, Any] | BaseException, version: str) -> list[str]:
    """What keeps a worker from running this competition (from :func:`describe_worker`'s answer), each with
    the fix; empty when it may run units."""
    if isinstance(answer, BaseException):
        return [f"worker {address} cannot run the harness ({exception_text(answer)}): install the harness "
                f"{version} in the Python environment of `dask worker` there (pip install -e <checkout>, or start "
                "it with PYTHONPATH=<checkout>) and restart it"]
    problems = []
    if answer["harness_version"] != version:
        problems.append(f"worker {address} runs harness {answer['harness_version']}, the driver {version}: "
                        f"install harness {version} on it and restart it")
    if answer["missing"]:
        problems.append(f"worker {address} cannot see {', '.join(answer['missing'])}: every worker needs the "
                        "dataset, submission and results folders at the same path (mount the shared "
                        "filesystem there, or stop that worker)")
    if answer["unwritable"]:
        problems.append(f"worker {address}: {answer['unwritable']}; give the worker's user write access")
    if "error" in answer["protections"]:
        problems.append(f"worker {address}: {answer['protections']['error']}")
    return problems


class ClosedHttp(WorkerPlugin):
    """Worker plugin of a local cluster: the worker stops its HTTP listener as it starts (Dask serves metrics and
    health pages there without authentication, whatever the TLS of its connections); a worker that replaces a
    dead one does the same. Registered with :func:`distributed.Client.register_plugin`; see also
    :func:`close_http_server`."""

    name = "harness-closed-http"
    idempotent = True

    def setup(self, worker: Any) -> None:
        close_http_server(dask_worker=worker)


def close_http_server(dask_worker: Any = None, dask_scheduler: Any = None) -> None:
    """Run on the scheduler of a local cluster (``Client.run_on_scheduler``) or on a worker: stop its HTTP
    listener, so that nothing of the cluster listens but its TLS connections."""
    for server in (dask_worker, dask_scheduler):
        http = getattr(server, "http_server", None)
        if http is not None:
            http.stop()


def harness_location() -> str:
    """Run on the scheduler by :func:`harness.dask_executor.check_workers`: where it imports the harness from (it
    unpickles tasks)."""
    import harness
    return str(Path(harness.__file__).parent)


def exception_text(exc: BaseException) -> str:
    """``Type: message`` of an exception a worker or the scheduler returned, on one line (Dask wraps an error it
    could not unpickle as ``Exception('Type("message")')``; that is unwrapped)."""
    name, text = type(exc).__name__, " ".join(str(exc).split())
    wrapped = re.fullmatch(r"(\w+)\((['\"])(.*)\2\)", text)
    if type(exc) is Exception and wrapped:
        name, text = wrapped.group(1), wrapped.group(3)
    return f"{name}: {text}" if text else name
