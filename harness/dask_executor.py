"""Run the competition's work units on a Dask cluster (``distributed``): many machines, GPUs as resources.

The local path (:meth:`harness.execution.Runner._parallel`: threads driving processes) and this one share every
unit function: a Dask task is one work unit (attack × ε × batch, or defense × packed batch), keyed by the unit's
content key, and runs :meth:`~harness.execution.Runner.run_attack_unit` or
:meth:`~harness.execution.Runner.run_defense_unit` on the worker. The worker writes the unit's record atomically
to the shared store; only the small record travels back. A task whose record already exists returns it (tasks
are idempotent, so a rerun after a worker death or a driver restart does no work twice).

Version 1 needs a shared filesystem: the dataset, the submission folders and the results folder at the same path
on every worker. :func:`check_workers` refuses a worker that cannot see them or runs another harness version,
naming the worker and the fix. A worker that joins while the competition runs is checked the same way by the
first unit it is given (and described for the manifest); ``logs/cluster.log`` and ``manifest.json`` →
``worker_events`` record every worker that joined or left during the run, with the units a lost worker was running.

Workers:

* each probes its own sandbox (:func:`harness.isolation.probe`); ``manifest.json`` → ``workers`` records them;
* a worker that owns a GPU is started with ``CUDA_VISIBLE_DEVICES`` set and the Dask resource ``GPU=1``; when any
  worker advertises ``GPU``, every unit asks for ``GPU=1``, so one run at a time uses each GPU;
* a worker runs one submission process per GPU, or ``RUNS`` of them (a Dask resource it advertises; threads beyond
  it prepare and referee units meanwhile), or one per thread; a run gets ``cores // concurrent runs`` CPU
  threads of the worker's own machine.

A worker that dies mid-unit (SIGKILL, out of memory) is replaced by its nanny and the scheduler reruns the unit
elsewhere; after Dask's ``distributed.scheduler.allowed-failures`` retries the unit raises
:class:`distributed.KilledWorker`. Dask counts a death against every unit the dead worker held, so such a unit is
then run once more alone, with nothing else in flight: only if it kills its worker again is it recorded as a
failed run ("worker died N times"); a unit that merely stood beside the culprit gets its real record.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Union

from harness.competition import CompetitionError
from harness.dataset import Dataset
from harness.defense_output import parse_predictions
from harness.devices import DevicePool
from harness.isolation import Protections, SandboxKind, probe
from harness.library import Fingerprint
from harness.limits import LimitPolicy
from harness.planning import AttackUnit, DefenseUnit
from harness.process import RunRecord
from harness.records import AttackUnitRecord, DefenseAnswer, DefenseUnitRecord, ImageVerdict, RecordError
from harness.workspace import Workspace

if TYPE_CHECKING:  # distributed is imported only when a cluster is used
    from distributed import Client

from harness.execution import Runner
from harness.secret import load as load_secret

__all__ = ["ClusterError", "DaskExecutor", "WorkerContext", "check_address", "check_workers", "connect"]

#: Plain progress lines go to this file of the results folder.
PROGRESS_LOG = "logs/cluster.log"

#: Submission processes each worker of a local cluster (``--workers N``) runs at once. Its one extra thread
#: prepares and referees units while the process runs, as the ``--jobs`` path's extra thread does.
LOCAL_RUNS = 1

_Record = Union[AttackUnitRecord, DefenseUnitRecord]
_Unit = Union[AttackUnit, DefenseUnit]


class ClusterError(CompetitionError):
    """The cluster cannot run this competition (unreachable scheduler, refused workers); the message says why."""


@dataclass(frozen=True)
class WorkerContext:
    """What a worker needs to run any unit of one competition (pickled once per task; small).

    Attributes:
        dataset: The images and labels (paths must exist on the worker).
        workspace: The results folder (shared).
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


# -- worker side ----------------------------------------------------------------------------------------
_PROTECTIONS: dict[SandboxKind, Protections] = {}
_CHECKED: set[tuple[tuple[str, ...], SandboxKind, str]] = set()  # what this worker process has already passed
_POOLS: dict[tuple[tuple[str, ...], int], DevicePool] = {}


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


def _slots(nthreads: int, resources: dict[str, Any]) -> int:
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
    own = _slots(worker.state.nthreads, dict(worker.state.total_resources))
    return max(own, host_slots.get(str(worker.ip), own))


def _check_self(context: WorkerContext) -> None:
    """Refuse to run units of a competition this worker cannot serve (it may have joined after the driver's check
    of every worker): the same checks and messages as :func:`check_workers`, once per worker process.

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
    problems = _worker_problems(_worker_name(), describe_worker(list(context.paths), context.sandbox.value),
                                context.harness_version)
    if problems:
        raise ClusterError("; ".join(problems))
    _CHECKED.add(checked)


def _worker_runner(context: WorkerContext) -> Runner:
    from harness.devices import visible_gpus
    from harness.execution import Runner
    _check_self(context)
    gpus = visible_gpus()
    try:
        from distributed import get_worker
        worker = get_worker()
        own = _slots(worker.state.nthreads, dict(worker.state.total_resources))
        if gpus and str(worker.name).isdigit():  # a local cluster's workers 0, 1, ... start on different GPUs
            offset = int(str(worker.name)) % len(gpus)
            gpus = gpus[offset:] + gpus[:offset]
    except ValueError:
        own = 1
    pool = _POOLS.setdefault((tuple(gpus), own), DevicePool(gpus, own))  # shared by this worker's threads
    runner = Runner(context.dataset, context.workspace, seed=context.seed, batch_size=context.batch_size,
                    jobs=own, policy=context.policy, devices=pool,
                    protections=_worker_protections(context.sandbox), environment=context.environment,
                    secret=load_secret(context.workspace.root))  # from the shared results folder, never sent
    sharing = _concurrency(context.host_slots)  # the host's cores are shared by every unit running on it
    runner.threads = max(1, (os.cpu_count() or 1) // sharing) if sharing > 1 else None
    return runner


def run_unit(context: WorkerContext, unit: _Unit) -> _Record:
    """Task body: the unit's stored record if it exists (idempotent), else run the unit and store its record."""
    runner = _worker_runner(context)
    store = runner.store
    if isinstance(unit, AttackUnit):
        from harness.execution import _attack_record
        record = _attack_record(store.read(store.attack_record_path(unit.key)))
        if record is not None and all(store.image_path(i.version).exists() for i in record.images):
            return record
        return runner.run_attack_unit(unit, context.clean_versions)
    stored = store.read(store.defense_record_path(unit.version, unit.key))
    if stored is not None:
        with contextlib.suppress(RecordError):
            return DefenseUnitRecord.from_json(stored)
    return runner.run_defense_unit(unit)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _log_line(log: Any, text: str) -> None:
    """One dated line of the plain progress log, flushed at once (``tail -f`` shows it live)."""
    log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")
    log.flush()


def _identity(value: WorkerContext) -> WorkerContext:
    return value


def _remove_scratch(folder: str) -> None:
    """Run on every worker after a stage: remove this machine's scratch folder of the competition."""
    import shutil
    shutil.rmtree(folder, ignore_errors=True)


def describe_worker(paths: list[str], sandbox: str) -> dict[str, Any]:
    """Run on every worker by :func:`check_workers`: its harness version, the paths it cannot use, its sandbox
    and cores."""
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


def check_workers(client: Client, *, paths: list[Path], sandbox: SandboxKind, version: str) -> dict[str, Any]:
    """Ask every worker what it sees; return worker address → description for the manifest.

    Args:
        client: Connected client.
        paths: The results folder first, then the dataset and submission folders.
        sandbox: The sandbox kind asked for.
        version: The driver's harness version.

    Raises:
        ClusterError: No worker, or a worker with another harness version, missing paths or a sandbox it
            cannot give; the message names the worker and the fix.
    """
    for _ in range(100):  # a freshly started cluster may take a moment to register its workers
        if client.scheduler_info()["workers"]:
            break
        time.sleep(0.1)
    if not client.scheduler_info()["workers"]:
        address = client.scheduler_info().get("address", "ADDRESS")
        raise ClusterError(f"the Dask scheduler at {address} has no workers; start some with "
                           f"`dask worker {address}`")
    _check_scheduler(client)
    answers: dict[str, Any] = client.run(describe_worker, [str(p) for p in paths], sandbox.value, on_error="return")
    problems = [problem for address, answer in sorted(answers.items())
                for problem in _worker_problems(address, answer, version)]
    if problems:
        raise ClusterError("; ".join(problems))
    return dict(sorted(answers.items()))


def _worker_problems(address: str, answer: dict[str, Any] | BaseException, version: str) -> list[str]:
    """What keeps a worker from running this competition (from :func:`describe_worker`'s answer), each with
    the fix; empty when it may run units."""
    if isinstance(answer, BaseException):
        return [f"worker {address} cannot run the harness ({_exception_text(answer)}): install the harness "
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


def harness_location() -> str:
    """Run on the scheduler by :func:`check_workers`: where it imports the harness from (it unpickles tasks)."""
    import harness
    return str(Path(harness.__file__).parent)


def _exception_text(exc: BaseException) -> str:
    """``Type: message`` of an exception a worker or the scheduler returned, on one line (Dask wraps an error it
    could not unpickle as ``Exception('Type("message")')``; that is unwrapped)."""
    name, text = type(exc).__name__, " ".join(str(exc).split())
    wrapped = re.fullmatch(r"(\w+)\((['\"])(.*)\2\)", text)
    if type(exc) is Exception and wrapped:
        name, text = wrapped.group(1), wrapped.group(3)
    return f"{name}: {text}" if text else name


def _check_scheduler(client: Client) -> None:
    """Refuse a scheduler that cannot import the harness (it would fail every task graph with a traceback)."""
    try:
        client.run_on_scheduler(harness_location)  # type: ignore[no-untyped-call]
    except Exception as exc:  # whatever the scheduler raised while unpickling or running the probe
        address = client.scheduler_info().get("address", "the scheduler")
        raise ClusterError(f"the Dask scheduler at {address} cannot import the harness ({_exception_text(exc)}): "
                           "install the harness in the Python environment of `dask scheduler` too (it unpickles "
                           "the tasks; pip install -e <checkout>, or start it with PYTHONPATH=<checkout>) and "
                           "restart it") from None


# -- driver side ----------------------------------------------------------------------------------------
def _allowed_failures() -> int:
    import dask
    return int(dask.config.get("distributed.scheduler.allowed-failures"))


def _worker_died_record(unit: _Unit, context: WorkerContext, deaths: int) -> _Record:
    """The failed-run record of a unit that killed its worker every time it ran."""
    problem = f"worker died {deaths} times"
    if isinstance(unit, AttackUnit):
        log = f"logs/attacks/{unit.attack.name}/eps{unit.epsilon}_{unit.key[:12]}.log"
        run = RunRecord(exit_code=None, timed_out=False, seconds=0.0, problem=problem, log=log)
        images = tuple(ImageVerdict(image_id=r.image_id, version=context.clean_versions[r.image_id],
                                    problem="missing output image", clipped_values=0, max_violation=0, linf=0)
                       for r in unit.images)
        return AttackUnitRecord(key=unit.key, attack=unit.attack.name, attack_hash=unit.attack.content_hash,
                                attack_type=unit.attack.type.value, epsilon=unit.epsilon, run=run, images=images)
    log = f"logs/defenses/{unit.defense.name}/{unit.key[:12]}.log"
    run = RunRecord(exit_code=None, timed_out=False, seconds=0.0, problem=problem, log=log)
    parsed = parse_predictions(Path(os.devnull) / "absent.csv", expected=set(unit.versions))
    predictions = {version: DefenseAnswer(label=None, problem=parsed.answers[version].problem)
                   for version in unit.versions}
    return DefenseUnitRecord(key=unit.key, defense=unit.defense.name, defense_hash=unit.defense.content_hash,
                             run=run, csv_notes=(), predictions=predictions)


class DaskExecutor:
    """Submits a stage's units to a Dask cluster and gathers their records (the hook of
    :class:`harness.execution.Runner`).

    Workers that join or leave while it runs are followed through the scheduler's events: each is logged to
    ``logs/cluster.log`` of the results folder and listed in :attr:`events`; a worker that joins is described for
    the manifest (and checked by the first unit it runs, see :func:`_check_self`).

    Args:
        client: A connected :class:`distributed.Client`.
        workers: What :func:`check_workers` returned (worker address → description).
        paths: The results folder first, then the dataset and submission folders (as for :func:`check_workers`).
        sandbox: The sandbox kind asked for.
        echo: Receives plain one-line messages.
    """

    def __init__(self, client: Client, *, workers: dict[str, Any], paths: list[Path] | None = None,
                 sandbox: SandboxKind = SandboxKind.AUTO, echo: Callable[[str], None] = print) -> None:
        self.client = client
        #: Worker address → its description (harness version, protections, cores), joiners included.
        self.workers = workers
        self.paths = [str(p) for p in paths or []]
        self.sandbox = sandbox
        self.echo = echo
        #: Workers that joined or left during the run: {"time", "worker", "event": "joined" | "left", ...}.
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._describing: list[threading.Thread] = []
        resources = client.scheduler_info()["workers"].values()
        #: Every unit asks for one GPU when a worker offers any (one run per GPU at a time).
        self.resources = {"GPU": 1} if any(w.get("resources", {}).get("GPU") for w in resources) else None
        #: Seconds the driver spent submitting and collecting, per stage (scheduling overhead).
        self.driver_seconds: dict[str, float] = {}

    # -- cluster membership ----------------------------------------------------------------------------
    def follow_membership(self) -> None:
        """Start logging workers that join or leave (the scheduler's ``add-worker``/``remove-worker`` events)."""
        self.client.subscribe_topic("all", self._on_scheduler_event)  # type: ignore[no-untyped-call]

    def stop_following(self) -> None:
        """Stop listening, and wait (briefly) for descriptions of joined workers still under way."""
        with contextlib.suppress(Exception):  # the connection may already be gone
            self.client.unsubscribe_topic("all")  # type: ignore[no-untyped-call]
        for thread in self._describing:
            thread.join(timeout=30)

    def _log(self, text: str) -> None:
        if not self.paths:
            return
        path = Path(self.paths[0]) / PROGRESS_LOG
        with self._lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as log:
                _log_line(log, text)

    def _on_scheduler_event(self, event: tuple[float, Any]) -> None:
        """Called on the client's event loop for every event of the scheduler's ``all`` topic; never raises."""
        stamp, message = event
        if not isinstance(message, dict) or message.get("action") not in ("add-worker", "remove-worker"):
            return
        address = str(message.get("worker", "?"))
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))
        if message["action"] == "add-worker":
            with self._lock:
                self.events.append({"time": when, "worker": address, "event": "joined"})
            self._log(f"worker {address} joined; its first unit checks that it can serve this competition")
            if self.paths:
                thread = threading.Thread(target=self._describe, args=(address,), daemon=True)
                self._describing.append(thread)
                thread.start()
            return
        units = sorted(str(k)[len("harness-"):] for k in message.get("processing-tasks", ())
                       if str(k).startswith("harness-") and not str(k).startswith("harness-context-"))
        expected = bool(message.get("expected"))
        with self._lock:
            self.events.append({"time": when, "worker": address, "event": "left", "expected": expected,
                                "units_running": units})
        how = "left" if expected else "was lost (died or unreachable)"
        rerun = f" while running {_count(len(units), 'unit')} ({', '.join(u[:40] for u in units)}), which rerun " \
                "elsewhere" if units else ""
        self._log(f"worker {address} {how}{rerun}")

    def _describe(self, address: str) -> None:
        """Describe a worker that joined during the run, for the manifest (thread; never raises)."""
        try:
            answers = self.client.run(describe_worker, self.paths, self.sandbox.value, workers=[address],
                                      on_error="return")
        except Exception as exc:  # the worker left again, the connection closed
            answers = {address: exc}
        for worker, answer in answers.items():
            from harness import __version__
            problems = _worker_problems(worker, answer, __version__)
            with self._lock:
                self.workers[worker] = {"error": "; ".join(problems)} if problems else answer
            if problems:
                self._log(f"worker {worker} cannot serve this competition: {'; '.join(problems)}")

    def context(self, runner: Runner, clean_versions: dict[str, str]) -> WorkerContext:
        from harness import __version__
        slots: dict[str, int] = {}
        for worker in self.client.scheduler_info()["workers"].values():
            host = str(worker.get("host", ""))
            slots[host] = slots.get(host, 0) + _slots(int(worker.get("nthreads", 1)), worker.get("resources", {}))
        return WorkerContext(dataset=runner.dataset, workspace=runner.workspace, seed=runner.seed,
                             batch_size=runner.batch_size, policy=runner.policy, sandbox=runner.protections.kind,
                             environment=runner.environment, harness_version=__version__,
                             clean_versions=clean_versions, host_slots=slots, paths=tuple(self.paths))

    def run(self, runner: Runner, label: str, units: list[Any], clean_versions: dict[str, str]) -> list[Any]:
        """Run ``units`` (all attack or all defense units) as one task each; records in the order of ``units``.

        A unit that killed its worker more than Dask's allowed failures gets a failed-run record, stored like
        any other.

        Raises:
            ClusterError: A worker refused a task (another harness version); it reaches the caller as is.
        """
        from distributed import KilledWorker, as_completed
        if not units:
            return []
        context = self.context(runner, clean_versions)
        tick = runner.progress(label, len(units))
        log_path = runner.workspace.root / PROGRESS_LOG
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # the context travels once, as a task's result: unlike scattered data it is recomputed when the worker
        # holding it dies
        shared = self.client.submit(_identity, context, key=f"harness-context-{label}-{uuid.uuid4().hex}",
                                    pure=False)
        futures = {}
        for index, unit in enumerate(units):
            future = self.client.submit(run_unit, shared, unit, key=f"harness-{label}-{unit.key}",
                                        resources=self.resources, pure=False, retries=0)
            futures[future.key] = (index, future)
        results: list[Any] = [None] * len(units)
        failed = 0
        started = time.monotonic()
        suspects: list[int] = []

        def finish(index: int, record: Any, done: int, log: Any) -> None:
            nonlocal failed
            results[index] = record
            failed += bool(record.run.problem)
            tick(failed=bool(record.run.problem))
            _log_line(log, f"{label}: {done}/{len(units)} done, {failed} failed")

        with open(log_path, "a") as log:
            _log_line(log, f"{label}: {_count(len(units), 'unit')} on "
                           f"{_count(len(self.client.scheduler_info()['workers']), 'worker')}")
            done = 0
            try:
                for future in as_completed([f for _, f in futures.values()]):  # type: ignore[no-untyped-call]
                    index = futures[future.key][0]
                    try:
                        record = future.result()
                    except KilledWorker:
                        # Dask counts a worker's death against every unit it was running or holding: an innocent
                        # unit beside one that kills its worker can reach the allowed failures too. Rerun each
                        # alone below.
                        suspects.append(index)
                        _log_line(log, f"{label}: unit {units[index].key[:12]} lost its worker too often; it "
                                       "reruns alone at the end of the stage")
                        future.release()
                        continue
                    done += 1
                    finish(index, record, done, log)
                    future.release()
                for index in suspects:  # one at a time, nothing else in flight: a death is this unit's own doing
                    unit = units[index]
                    alone = self.client.submit(run_unit, shared, unit, key=f"harness-{label}-{unit.key}-alone",
                                               resources=self.resources, pure=False, retries=0)
                    futures[alone.key] = (index, alone)
                    try:
                        record = alone.result()
                    except KilledWorker as exc:  # the scheduler's allowed failures, not the driver's setting
                        deaths = int(getattr(exc, "allowed_failures", _allowed_failures())) + 1
                        record = _worker_died_record(unit, context, deaths)
                        path = (runner.store.attack_record_path(unit.key) if isinstance(unit, AttackUnit)
                                else runner.store.defense_record_path(unit.version, unit.key))
                        runner.store.write(path, record.to_json())
                    alone.release()  # type: ignore[no-untyped-call]
                    done += 1
                    finish(index, record, done, log)
            except BaseException:  # Ctrl-C, a refused worker: the cluster must not go on running this stage
                self.client.cancel([f for _, f in futures.values()] + [shared])  # type: ignore[no-untyped-call]
                _log_line(log, f"{label}: stopped after {done}/{len(units)} units; rerun the same command to "
                               "resume (finished units are kept)")
                raise
        getattr(tick, "close", lambda: None)()
        self.driver_seconds[label] = round(time.monotonic() - started, 3)
        # a worker killed mid-unit leaves its scratch folder on its own machine: every worker clears its own
        self.client.run(_remove_scratch, str(runner.workspace.scratch))
        return results


def check_address(address: str) -> None:
    """Refuse what is certainly not a scheduler address, with the fix.

    Raises:
        ClusterError: An empty address, a dashboard (http) address, or a port that is not a number.
    """
    if not address.strip():
        raise ClusterError("--scheduler needs an address, e.g. tcp://HOST:8786 (`dask scheduler` prints it)")
    scheme, _, rest = address.rpartition("://")
    if scheme in ("http", "https"):
        raise ClusterError(f"--scheduler {address} is the Dask dashboard's web address; pass the scheduler's own "
                           "address instead, e.g. tcp://HOST:8786 (`dask scheduler` prints it as "
                           "'Scheduler at: ...')")
    port = rest.rsplit(":", 1)[1] if ":" in rest else ""
    if port and not port.isdigit():
        raise ClusterError(f"--scheduler {address}: the port {port!r} is not a number; pass e.g. tcp://HOST:8786")


@contextlib.contextmanager
def connect(*, scheduler: str | None, workers: int | None, paths: list[Path], sandbox: SandboxKind,
            echo: Callable[[str], None] = print) -> Iterator[DaskExecutor]:
    """A :class:`DaskExecutor` on the cluster at ``scheduler``, or on a local cluster of ``workers`` processes
    (loopback only; each runs one submission process at a time and has a second thread that pipelines the
    harness's own work with it). The local cluster is closed on exit.

    Raises:
        ClusterError: The scheduler cannot be reached or a worker is refused (see :func:`check_workers`).
    """
    from distributed import Client, LocalCluster

    from harness import __version__
    dashboard = importlib.util.find_spec("bokeh") is not None
    with contextlib.ExitStack() as stack:
        if scheduler is not None:
            check_address(scheduler)
            try:
                client = stack.enter_context(Client(scheduler, timeout="20s"))  # type: ignore[no-untyped-call]
            except OSError as exc:
                raise ClusterError(f"--scheduler {scheduler}: cannot reach the Dask scheduler ({exc}); start it "
                                   "with `dask scheduler` and check the address") from None
            except ValueError as exc:
                raise ClusterError(f"--scheduler {scheduler!r} is not a Dask scheduler address ({exc}); pass the "
                                   "address `dask scheduler` prints, e.g. tcp://HOST:8786") from None
        else:
            cluster = stack.enter_context(LocalCluster(  # type: ignore[no-untyped-call]
                n_workers=workers or 1, threads_per_worker=LOCAL_RUNS + 1, resources={"RUNS": LOCAL_RUNS},
                processes=True, host="127.0.0.1",
                dashboard_address="127.0.0.1:0", silence_logs=40))
            client = stack.enter_context(Client(cluster))  # type: ignore[no-untyped-call]
        if dashboard and client.dashboard_link:
            echo(f"Dask dashboard: {client.dashboard_link}")
        described = check_workers(client, paths=paths, sandbox=sandbox, version=__version__)
        executor = DaskExecutor(client, workers=described, paths=paths, sandbox=sandbox, echo=echo)
        executor.follow_membership()
        try:
            yield executor
        finally:
            executor.stop_following()
