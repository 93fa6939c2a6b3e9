"""Run the competition's work units on a Dask cluster (``distributed``): many machines, GPUs as resources.

:class:`DaskExecutor` is the cluster's :class:`harness.execution.Executor`, as
:class:`harness.execution.LocalExecutor` (threads driving processes) is this machine's: a Dask task is one work
unit (attack × ε × batch, or defense × packed batch), keyed by the unit's content key, and runs
:meth:`harness.execution.Runner.run_unit` on the worker, the same code as the local path. The worker writes the
unit's record atomically to the shared store; only the small record travels back. A task whose record already
exists returns it (tasks are idempotent, so a rerun after a worker death or a driver restart does no work twice).

Version 1 needs a shared filesystem: the dataset, the submission folders and the results folder at the same path
on every worker. :func:`check_workers` refuses a worker that cannot see them or runs another harness version,
naming the worker and the fix. A worker that joins while the competition runs is checked the same way by the
first unit it is given (and described for the manifest); ``logs/cluster.log`` and ``manifest.json`` →
``worker_events`` record every worker that joined or left during the run, with the units a lost worker was running.

Workers:

* each probes its own sandbox (:func:`harness.sandboxes.factory.probe`); ``manifest.json`` → ``workers`` records them;
* a worker that owns a GPU is started with ``CUDA_VISIBLE_DEVICES`` set and the Dask resource ``GPU=1``; when any
  worker advertises ``GPU``, every unit asks for ``GPU=1``, so one run at a time uses each GPU;
* a worker runs one submission process per GPU, or ``RUNS`` of them (a Dask resource it advertises; threads beyond
  it prepare and referee units meanwhile), or one per thread; a run gets ``cores // concurrent runs`` CPU
  threads of the worker's own machine.

Security: a local cluster (``--workers N``) speaks TLS only, with credentials made for the competition, and has
no dashboard and no open HTTP listener; a ``tls://`` scheduler is reached with certificate files
(:func:`scheduler_security`); a plain ``tcp://`` one after a one-line warning. Workers get only what a unit needs
(:func:`harness.dask_worker.for_workers`): true labels and the results folder's secret stay on the driver.

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
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from harness.dask_worker import (
    ClosedHttp,
    ClusterError,
    WorkerContext,
    close_http_server,
    describe_worker,
    exception_text,
    for_workers,
    harness_location,
    identity,
    remove_scratch,
    run_unit,
    submission_slots,
    worker_problems,
)
from harness.defense_output import parse_predictions
from harness.execution import failed_record
from harness.planning import AttackUnit, DefenseUnit, Unit, log_name
from harness.records import Record, RunRecord
from harness.results_folder import ResultsFolder
from harness.sandboxes.base import SandboxKind

if TYPE_CHECKING:  # distributed is imported only when a cluster is used
    from distributed import Client

    from harness.execution import Runner

__all__ = ["SECURE_SCHEMES", "UNENCRYPTED_WARNING", "ClusterError", "DaskExecutor", "WorkerContext", "check_address",
           "check_workers", "connect", "scheduler_security"]

#: Plain progress lines go to this file of the results folder.
PROGRESS_LOG = ResultsFolder.CLUSTER_LOG

#: Submission processes each worker of a local cluster (``--workers N``) runs at once. Its one extra thread
#: prepares and referees units while the process runs, as the ``--jobs`` path's extra thread does.
LOCAL_RUNS = 1


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _log_line(log: Any, text: str) -> None:
    """One dated line of the plain progress log, flushed at once (``tail -f`` shows it live)."""
    log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")
    log.flush()


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
                for problem in worker_problems(address, answer, version)]
    if problems:
        raise ClusterError("; ".join(problems))
    return dict(sorted(answers.items()))


def _check_scheduler(client: Client) -> None:
    """Refuse a scheduler that cannot import the harness (it would fail every task graph with a traceback)."""
    try:
        client.run_on_scheduler(harness_location)  # type: ignore[no-untyped-call]
    except Exception as exc:  # whatever the scheduler raised while unpickling or running the probe
        address = client.scheduler_info().get("address", "the scheduler")
        raise ClusterError(f"the Dask scheduler at {address} cannot import the harness ({exception_text(exc)}): "
                           "install the harness in the Python environment of `dask scheduler` too (it unpickles "
                           "the tasks; pip install -e <checkout>, or start it with PYTHONPATH=<checkout>) and "
                           "restart it") from None


# -- driver side ----------------------------------------------------------------------------------------
def _allowed_failures() -> int:
    import dask
    return int(dask.config.get("distributed.scheduler.allowed-failures"))


def _worker_died_record(unit: Unit, clean_versions: dict[str, str], deaths: int) -> Record:
    """The failed-run record of a unit that killed its worker every time it ran: its images as a missing output."""
    run = RunRecord(exit_code=None, timed_out=False, seconds=0.0, problem=f"worker died {deaths} times",
                    log=log_name(unit))
    if isinstance(unit, AttackUnit):
        return failed_record(unit, run, clean_versions, "missing output image")
    # what a defense whose output file is missing gets for each image (one problem for all)
    absent = parse_predictions(Path(os.devnull) / "absent.csv", expected={""}).answers[""].problem
    return failed_record(unit, run, clean_versions, absent)


class DaskExecutor:
    """Submits a stage's units to a Dask cluster and gathers their records: the cluster's
    :class:`harness.execution.Executor`.

    Workers that join or leave while it runs are followed through the scheduler's events: each is logged to
    ``logs/cluster.log`` of the results folder and listed in :attr:`events`; a worker that joins is described for
    the manifest (and checked by the first unit it runs, see :func:`harness.dask_worker.check_self`).

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
        """Called on the client's event loop for every event of the scheduler's ``all`` topic; never raises (a
        progress log that cannot be written must not disturb the run)."""
        with contextlib.suppress(Exception):
            self._follow(*event)

    def _follow(self, stamp: float, message: Any) -> None:
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
        from harness import __version__
        for worker, answer in answers.items():
            problems = worker_problems(worker, answer, __version__)
            with self._lock:
                self.workers[worker] = {"error": "; ".join(problems)} if problems else answer
            if problems:
                with contextlib.suppress(OSError):
                    self._log(f"worker {worker} cannot serve this competition: {'; '.join(problems)}")

    def context(self, runner: Runner, clean_versions: dict[str, str]) -> WorkerContext:
        from harness import __version__
        slots: dict[str, int] = {}
        for worker in self.client.scheduler_info()["workers"].values():
            host = str(worker.get("host", ""))
            runs = submission_slots(int(worker.get("nthreads", 1)), worker.get("resources", {}))
            slots[host] = slots.get(host, 0) + runs
        return WorkerContext(dataset=for_workers(runner.dataset), workspace=runner.workspace, seed=runner.seed,
                             batch_size=runner.batch_size, policy=runner.policy, sandbox=runner.protections.kind,
                             environment=runner.environment, harness_version=__version__,
                             clean_versions=clean_versions, host_slots=slots, paths=tuple(self.paths))

    def map(self, runner: Runner, label: str, units: Sequence[Unit], clean_versions: dict[str, str]) -> list[Record]:
        """Run ``units`` (all attack or all defense units) as one task each; records in the order of ``units``
        (:meth:`harness.execution.Executor.map`).

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
        log_path = runner.workspace.folder.path(PROGRESS_LOG)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # the context travels once, as a task's result: unlike scattered data it is recomputed when the worker
        # holding it dies
        shared = self.client.submit(identity, context, key=f"harness-context-{label}-{uuid.uuid4().hex}",
                                    pure=False)
        # a worker gets what its unit needs: no true label, no secret (the opaque names come from the driver)
        shipped = [(for_workers(unit), runner.opaque_names(unit) if isinstance(unit, DefenseUnit) else None)
                   for unit in units]
        futures = {}
        for index, unit in enumerate(units):
            future = self.client.submit(run_unit, shared, *shipped[index], key=f"harness-{label}-{unit.key}",
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
                    alone = self.client.submit(run_unit, shared, *shipped[index],
                                               key=f"harness-{label}-{unit.key}-alone", resources=self.resources,
                                               pure=False, retries=0)
                    futures[alone.key] = (index, alone)
                    try:
                        record = alone.result()
                    except KilledWorker as exc:  # the scheduler's allowed failures, not the driver's setting
                        deaths = int(getattr(exc, "allowed_failures", _allowed_failures())) + 1
                        record = _worker_died_record(unit, clean_versions, deaths)
                        runner.save_record(unit, record)
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
        # every worker removes its own scratch folder; one a killed worker left is swept as its owner is dead
        self.client.run(remove_scratch, runner.workspace)
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


#: Schemes of Dask addresses whose connections are encrypted and authenticated (TLS).
SECURE_SCHEMES = ("tls", "wss")

#: What the harness prints for a scheduler address without TLS (one line).
UNENCRYPTED_WARNING = ("warning: the Dask scheduler at {address} is unencrypted and unauthenticated: whoever can "
                       "reach it or a worker can run code on every worker and read the task graph; use a tls:// "
                       "scheduler with --tls_ca_file, --tls_cert and --tls_key (docs/cluster.md, 'Securing a cluster')")


def scheduler_security(scheduler: str | None, *, ca_file: Path | None = None, cert: Path | None = None,
                       key: Path | None = None) -> Any:
    """The :class:`distributed.Security` with which the driver reaches ``scheduler``; None for a plain address.

    A ``tls://`` scheduler takes the CA certificate, the driver's certificate and its key (``--tls_ca_file``,
    ``--tls_cert``, ``--tls_key``; the key may be inside the certificate file), or, given none of them, dask's
    own TLS settings (``distributed.comm.tls.ca-file`` and ``distributed.comm.tls.client.cert``/``key`` of a
    dask config file). Encryption is then required of every connection.

    Args:
        scheduler: ``--scheduler``, or None (a local cluster, ``--workers``, makes its own credentials).
        ca_file: ``--tls_ca_file``.
        cert: ``--tls_cert``.
        key: ``--tls_key``.

    Raises:
        ClusterError: Certificate options without a ``tls://`` scheduler, a CA file without a certificate (or the
            reverse), a file that does not exist or does not hold PEM credentials, or a ``tls://`` scheduler with
            no credentials at all; the message says what to pass.
    """
    given = {"--tls_ca_file": ca_file, "--tls_cert": cert, "--tls_key": key}
    named = [option for option, value in given.items() if value is not None]
    scheme = scheduler.partition("://")[0] if scheduler and "://" in scheduler else "tcp"
    if scheduler is None or scheme not in SECURE_SCHEMES:
        if named:
            them = "them" if len(named) > 1 else "it"
            where = (f"only a --scheduler tls://HOST:PORT takes {them} (a local cluster, --workers, makes its own "
                     "credentials)" if scheduler is None else
                     f"--scheduler {scheduler} is not a TLS address; pass its tls://HOST:PORT address")
            raise ClusterError(f"{', '.join(named)}: {where}, or drop {them}")
        return None
    from distributed import Security
    if named:
        if ca_file is None or cert is None:
            raise ClusterError(f"--scheduler {scheduler}: pass both --tls_ca_file (the CA that signed the "
                               "cluster's certificates) and --tls_cert (this driver's certificate), and --tls_key "
                               "unless the certificate file holds the key")
        for option, path in given.items():
            if path is not None and not Path(path).is_file():
                raise ClusterError(f"{option} {path}: no such file; pass the PEM file")
        security = Security(  # type: ignore[no-untyped-call]
            require_encryption=True, tls_ca_file=str(ca_file), tls_client_cert=str(cert),
            **({"tls_client_key": str(key)} if key is not None else {}))
    else:
        security = Security()  # type: ignore[no-untyped-call]  # dask's config: distributed.comm.tls.*
        if not (getattr(security, "tls_ca_file", None) and getattr(security, "tls_client_cert", None)):
            raise ClusterError(f"--scheduler {scheduler}: no TLS credentials; pass --tls_ca_file, --tls_cert and "
                               "--tls_key, or set distributed.comm.tls.ca-file and distributed.comm.tls.client.cert "
                               "(and .key) in a dask config file")
    try:
        security.get_connection_args("client")  # type: ignore[no-untyped-call]  # loads the files now: a bad one is named here, not in a traceback
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise ClusterError(f"--scheduler {scheduler}: cannot load the TLS credentials ({' '.join(str(exc).split())})"
                           "; pass PEM files: the CA certificate, this driver's certificate and its key") from None
    return security


def _local_security() -> Any:
    """Fresh credentials for a local cluster: a self-signed certificate and key made for this competition, held in
    memory (handed to the worker processes through their start-up pipe, never through a file of ours)."""
    from distributed import Security
    try:
        return Security.temporary()  # type: ignore[no-untyped-call]
    except ImportError:
        raise ClusterError("a local cluster (--workers) secures its connections with TLS and needs the package "
                           "cryptography for that: pip install cryptography") from None


@contextlib.contextmanager
def connect(*, scheduler: str | None, workers: int | None, paths: list[Path], sandbox: SandboxKind,
            echo: Callable[[str], None] = print, tls_ca_file: Path | None = None, tls_cert: Path | None = None,
            tls_key: Path | None = None) -> Iterator[DaskExecutor]:
    """A :class:`DaskExecutor` on the cluster at ``scheduler``, or on a local cluster of ``workers`` processes
    (loopback only; each runs one submission process at a time and has a second thread that pipelines the
    harness's own work with it). The local cluster is closed on exit.

    A local cluster speaks TLS only, with credentials made for this competition (a client or worker without them
    is refused), and has no dashboard. A ``tls://`` scheduler is reached with the certificate files (see
    :func:`scheduler_security`); a plain one works too, after a one-line warning through ``echo``.

    Raises:
        ClusterError: Malformed address or certificate options (see :func:`scheduler_security`), the scheduler
            cannot be reached, or a worker is refused (see :func:`check_workers`).
    """
    import dask
    from distributed import Client, LocalCluster

    from harness import __version__
    dashboard = importlib.util.find_spec("bokeh") is not None
    with contextlib.ExitStack() as stack:
        if scheduler is not None:
            check_address(scheduler)
            security = scheduler_security(scheduler, ca_file=tls_ca_file, cert=tls_cert, key=tls_key)
            if security is None:
                echo(UNENCRYPTED_WARNING.format(address=scheduler))
            try:
                client = stack.enter_context(Client(  # type: ignore[no-untyped-call]
                    scheduler, timeout="20s", **({"security": security} if security is not None else {})))
            except OSError as exc:
                hint = (" and that --tls_ca_file signed the scheduler's certificate and it accepts --tls_cert"
                        if security is not None else "")
                raise ClusterError(f"--scheduler {scheduler}: cannot reach the Dask scheduler "
                                   f"({' '.join(str(exc).split())}); start it with `dask scheduler` and check the "
                                   f"address{hint}") from None
            except ValueError as exc:
                raise ClusterError(f"--scheduler {scheduler!r} is not a Dask scheduler address ({exc}); pass the "
                                   "address `dask scheduler` prints, e.g. tls://HOST:8786") from None
        else:
            scheduler_security(None, ca_file=tls_ca_file, cert=tls_cert, key=tls_key)  # refuses certificate options
            # TLS only, with credentials of this competition; no dashboard, and the HTTP listeners Dask starts
            # anyway (metrics, health and task pages, unauthenticated) serve nothing and are closed at once
            with dask.config.set({"distributed.scheduler.http.routes": [], "distributed.worker.http.routes": []}):
                cluster = stack.enter_context(LocalCluster(  # type: ignore[no-untyped-call]
                    n_workers=workers or 1, threads_per_worker=LOCAL_RUNS + 1, resources={"RUNS": LOCAL_RUNS},
                    processes=True, host="127.0.0.1", protocol="tls://", security=_local_security(),
                    dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                    silence_logs=40))
                client = stack.enter_context(Client(cluster))  # type: ignore[no-untyped-call]
                client.run_on_scheduler(close_http_server)
                client.register_plugin(ClosedHttp())
        if dashboard and client.dashboard_link:
            echo(f"Dask dashboard: {client.dashboard_link}")
        described = check_workers(client, paths=paths, sandbox=sandbox, version=__version__)
        executor = DaskExecutor(client, workers=described, paths=paths, sandbox=sandbox, echo=echo)
        executor.follow_membership()
        try:
            yield executor
        finally:
            executor.stop_following()
