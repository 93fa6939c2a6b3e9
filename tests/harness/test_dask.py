"""Running on a Dask cluster (issue 19): local clusters, clusters started with the `dask` command-line tools on
loopback, killed workers, GPU workers, refused workers, a killed driver; TLS clusters, and what workers get (issue
28). Plain (unsandboxed) runs where a test needs a submission to reach a file outside its folder."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from harness.cleanup import owner_of
from harness.competition import CompetitionError, run_competition
from harness.sandboxes.base import SandboxKind
from harness.workspace import SCRATCH_PREFIX, scratch_parent
from machine import needs_root
from tiny_world import BUCKET_DEFENSE, NOOP, PLUS, TOWARD_TARGET, config_for, write_submission

ROOT = Path(__file__).resolve().parents[2]
FILES = ("leaderboard.csv", "per_image.csv")

#: Attack that records (CUDA_VISIBLE_DEVICES, start, end, pid, parent pid, attack scratch folders present when
#: it ends) in $MARKS/<pid>.json, after sleeping $SLEEP seconds; a no-op otherwise.
RECORDING = """
import json, time
inp, out, eps = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
marks = Path(MARKS)
start = time.time()
first = not any(marks.glob("*.json"))
(marks / f"{os.getpid()}.json").write_text(json.dumps({"gpu": os.environ.get("CUDA_VISIBLE_DEVICES"),
    "threads": os.environ.get("OMP_NUM_THREADS"),
    "start": start, "pid": os.getpid(), "ppid": os.getppid(), "first": first}))
time.sleep(SLEEP if first or not ONLY_FIRST else 0)
for p in sorted(inp.glob("*.png")):
    Image.open(p).save(out / p.name)
mark = json.loads((marks / f"{os.getpid()}.json").read_text())
mark["end"] = time.time()
mark["scratch_folders"] = len(list(inp.parent.parent.glob("a-*")))  # units prepared on this machine meanwhile
(marks / f"{os.getpid()}.json").write_text(json.dumps(mark))
"""

#: Attack that SIGKILLs the process that started it (its Dask worker), every time.
SUICIDAL = """
import signal
os.kill(os.getppid(), signal.SIGKILL)
"""


def recording(marks: Path, *, sleep: float, only_first: bool) -> str:
    return (f"MARKS = {str(marks)!r}\nSLEEP = {sleep}\nONLY_FIRST = {only_first}\n" + RECORDING)


def marks_of(folder: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return status.exists() and status.read_text().split()[2] != "Z"


class CommandLineCluster:
    """A `dask scheduler` and `dask worker` processes on loopback, each in its own process group."""

    def __init__(self, folder: Path, *, allowed_failures: int = 1, harness_on_scheduler: bool = True,
                 tls: dict[str, Path] | None = None) -> None:
        """``tls``: the files of :func:`make_credentials`; the scheduler and workers then speak TLS only, with the
        node certificate (``--tls-ca-file``, ``--tls-cert``, ``--tls-key``)."""
        self.folder = folder
        self.tls = tls
        self.node_options: tuple[str, ...] = () if tls is None else (
            "--tls-ca-file", str(tls["ca"]), "--tls-cert", str(tls["node_cert"]), "--tls-key", str(tls["node_key"]))
        folder.mkdir(parents=True, exist_ok=True)
        self.file = folder / "scheduler.json"
        self.env = {**os.environ, "PYTHONPATH": str(ROOT),
                    "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": str(allowed_failures)}
        self.processes: list[subprocess.Popen[bytes]] = []
        self._start([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port", "0",
                     "--no-dashboard", "--scheduler-file", str(self.file),
                     *(("--protocol", "tls", *self.node_options) if tls else ())], "scheduler",
                    None if harness_on_scheduler else self.without_harness())
        deadline = time.monotonic() + 60
        self.address = ""
        while not self.address:  # the scheduler writes its file in place: wait until it is whole JSON
            assert time.monotonic() < deadline, (folder / "scheduler.log").read_text()
            try:
                self.address = str(json.loads(self.file.read_text())["address"])
            except (OSError, ValueError, KeyError):
                time.sleep(0.1)
        self.workers = 0

    def without_harness(self) -> dict[str, str]:
        """An environment in which `import harness` fails as on a machine without it. The harness may be installed
        in this Python (pip install -e), so a package of that name that raises ModuleNotFoundError comes first on
        the path; processes with this environment start outside the checkout (see :meth:`_start`)."""
        shadow = self.folder / "no_harness"
        (shadow / "harness").mkdir(parents=True, exist_ok=True)
        (shadow / "harness" / "__init__.py").write_text(
            'raise ModuleNotFoundError("No module named \'harness\'", name="harness")\n')
        return {**self.env, "PYTHONPATH": str(shadow)}

    def _start(self, argv: list[str], name: str, env: dict[str, str] | None = None) -> None:
        log = open(self.folder / f"{name}.log", "wb")
        cwd = self.folder if env is not None and env.get("PYTHONPATH") != str(ROOT) else ROOT
        self.processes.append(subprocess.Popen(argv, cwd=cwd, env=env or self.env, stdout=log,
                                               stderr=subprocess.STDOUT, start_new_session=True))

    def add_worker(self, name: str, *, nthreads: int = 1, env: dict[str, str] | None = None,
                   extra: tuple[str, ...] = (), harness: bool = True, prefix: tuple[str, ...] = ()) -> None:
        self._start([*prefix, sys.executable, "-m", "dask", "worker", "--scheduler-file", str(self.file), "--host",
                     "127.0.0.1", "--nthreads", str(nthreads), "--no-dashboard", "--name", name,
                     *self.node_options, *extra],
                    name, {**(self.env if harness else self.without_harness()), **(env or {})})
        self.workers += 1

    def security(self) -> object:
        """What a client of this cluster needs: None, or the driver's certificate of ``tls``."""
        from distributed import Security
        if self.tls is None:
            return None
        return Security(require_encryption=True, tls_ca_file=str(self.tls["ca"]),
                        tls_client_cert=str(self.tls["driver_cert"]), tls_client_key=str(self.tls["driver_key"]))

    def wait(self) -> None:
        from distributed import Client
        with Client(self.address, timeout="30s", security=self.security()) as client:
            client.wait_for_workers(self.workers, timeout=90)

    def close(self) -> None:
        for process in reversed(self.processes):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()


@pytest.fixture(scope="module")
def cli_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CommandLineCluster]:
    """A scheduler and two workers started through the `dask` command line (allowed failures: 1)."""
    cluster = CommandLineCluster(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.add_worker("w1")
        cluster.add_worker("w2")
        cluster.wait()
        yield cluster
    finally:
        cluster.close()


def no_leftovers(results: Path) -> None:
    assert not list(results.rglob("*.tmp")), "a temporary file survived"


def test_local_cluster_of_two_workers_gives_the_single_process_bytes(world: dict[str, Path]) -> None:
    write_submission(world["attacks"], "noop", "attack", NOOP)
    write_submission(world["attacks"], "plus", "attack", PLUS)
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    local = run_competition(config_for(world, batch_size=2, output_dir=world["root"] / "local"), echo=lambda _: None)
    lines: list[str] = []
    clustered = run_competition(config_for(world, batch_size=2, workers=2, output_dir=world["root"] / "dask"),
                                echo=lines.append)
    for name in FILES:
        assert (world["root"] / "local" / name).read_bytes() == (world["root"] / "dask" / name).read_bytes()
    assert clustered.outcome.executed == local.outcome.executed == {"attack": 6, "defense": 6}
    manifest = json.loads((world["root"] / "dask" / "manifest.json").read_text())
    assert len(manifest["workers"]) == 2
    for worker in manifest["workers"].values():
        assert worker["protections"] == manifest["protections"]
    log = (world["root"] / "dask" / "logs" / "cluster.log").read_text()
    assert "attacks: 6/6 done, 0 failed" in log and "defenses: 6/6 done, 0 failed" in log
    # the workers made their scratch folders for this competition (its token) and removed them
    made_for_it = [p for p in scratch_parent(world["root"] / "dask").glob(f"{SCRATCH_PREFIX}*")
                   if (owner := owner_of(p.name, SCRATCH_PREFIX)) and owner.token == clustered.instance.token]
    assert made_for_it == []


def test_local_worker_prepares_the_next_unit_while_one_process_runs(world: dict[str, Path]) -> None:
    marks = world["root"] / "marks"
    marks.mkdir()
    write_submission(world["attacks"], "recorder", "attack", recording(marks, sleep=3, only_first=True))
    run_competition(config_for(world, batch_size=1, workers=1, sandbox=SandboxKind.NONE), echo=lambda _: None)
    runs = marks_of(marks)
    assert len(runs) == 6
    spans = sorted((float(str(r["start"])), float(str(r["end"]))) for r in runs)
    assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:])), spans  # one at a time
    first = next(r for r in runs if r["first"])
    assert first["scratch_folders"] == 2  # the next unit's inputs were ready while the first unit ran


def test_command_line_cluster_via_scheduler(world: dict[str, Path], cli_cluster: CommandLineCluster) -> None:
    write_submission(world["attacks"], "plus", "attack", PLUS)
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    run_competition(config_for(world, batch_size=3, output_dir=world["root"] / "local"), echo=lambda _: None)
    argv = [sys.executable, "run_competition.py", "--input_dir", str(world["data"]), "--attacks_dir",
            str(world["attacks"]), "--defenses_dir", str(world["defenses"]), "--output_dir",
            str(world["root"] / "dask"), "--batch_size", "3", "--max_epsilon", "16", "--scheduler",
            cli_cluster.address, "--quiet", "--seconds_per_image", "5", "--min_seconds", "20"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    warning = (f"warning: the Dask scheduler at {cli_cluster.address} is unencrypted and unauthenticated: whoever "
               "can reach it or a worker can run code on every worker and read the task graph; use a tls:// "
               "scheduler with --tls_ca_file, --tls_cert and --tls_key (docs/cluster.md, 'Securing a cluster')\n")
    assert done.stderr.count(warning) == 1, done.stderr  # a plain cluster still works, after one line
    for name in FILES:
        assert (world["root"] / "local" / name).read_bytes() == (world["root"] / "dask" / name).read_bytes()
    manifest = json.loads((world["root"] / "dask" / "manifest.json").read_text())
    assert sorted(manifest["workers"]) == sorted(cli_cluster_workers(cli_cluster))


def cli_cluster_workers(cluster: CommandLineCluster) -> list[str]:
    from distributed import Client
    with Client(cluster.address, timeout="30s") as client:
        return list(client.scheduler_info()["workers"])


def test_worker_killed_mid_unit_reruns_elsewhere(world: dict[str, Path], cli_cluster: CommandLineCluster) -> None:
    marks = world["root"] / "marks"
    marks.mkdir()
    write_submission(world["attacks"], "slow", "attack", recording(marks, sleep=120, only_first=True))
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    config = config_for(world, batch_size=100, scheduler=cli_cluster.address, sandbox=SandboxKind.NONE)
    import threading
    result: list[object] = []
    driver = threading.Thread(target=lambda: result.append(run_competition(config, echo=lambda _: None)))
    driver.start()
    deadline = time.monotonic() + 120
    while not marks_of(marks):
        assert time.monotonic() < deadline and driver.is_alive(), "the slow attack never started"
        time.sleep(0.1)
    first = marks_of(marks)[0]
    os.kill(int(str(first["ppid"])), signal.SIGKILL)  # its worker
    driver.join(timeout=240)
    assert not driver.is_alive() and result
    runs = marks_of(marks)
    assert len(runs) == 2 and runs[1]["ppid"] != first["ppid"]  # rerun by another worker process
    records = list((world["results"] / "store" / "attack_runs").rglob("*.json"))
    assert len(records) == 1
    rows = (world["results"] / "runs.csv").read_text()
    assert "worker died" not in rows
    deadline = time.monotonic() + 10
    while alive(int(str(first["pid"]))):  # the killed worker's run died with it (parent-death signal)
        assert time.monotonic() < deadline, "the first run outlived its worker"
        time.sleep(0.1)
    no_leftovers(world["results"])
    # the loss is on record: cluster.log and the manifest name the lost worker and the unit it was running
    manifest = json.loads((world["results"] / "manifest.json").read_text())
    lost = [e for e in manifest["worker_events"] if e["event"] == "left"]
    unit = f"attacks-{records[0].stem}"
    assert [(e["expected"], e["units_running"]) for e in lost] == [(False, [unit])]
    log = (world["results"] / "logs" / "cluster.log").read_text()
    assert re.search(rf"worker {re.escape(lost[0]['worker'])} was lost \(died or unreachable\) while running 1 "
                     rf"unit \({unit[:40]}\), which rerun elsewhere", log), log
    cli_cluster.wait()  # the nanny restarted the worker


def test_worker_that_joins_during_the_run_is_logged_and_described(world: dict[str, Path],
                                                                  tmp_path_factory: pytest.TempPathFactory) -> None:
    driver = _join_during_run(world, tmp_path_factory.mktemp("joining"), "late")
    assert driver.result == ["ok"], driver.result
    manifest = json.loads((world["results"] / "manifest.json").read_text())
    joined = [e["worker"] for e in manifest["worker_events"] if e["event"] == "joined"]
    assert len(joined) == 1 and len(manifest["workers"]) == 2
    assert manifest["workers"][joined[0]]["protections"] == manifest["protections"]  # described for the record
    log = (world["results"] / "logs" / "cluster.log").read_text()
    assert f"worker {joined[0]} joined" in log


@needs_root  # to hide the folders from one worker (unshare(1) and a mount)
def test_worker_that_joins_unable_to_see_the_folders_stops_the_run_in_one_line(
        world: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> None:
    # a worker on a machine without the shared filesystem: the competition's folders are not there
    hidden = ("unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
              'mount -t tmpfs none "$0" && exec "$@"', str(world["root"]))
    driver = _join_during_run(world, tmp_path_factory.mktemp("blind"), "blind", prefix=hidden)
    assert len(driver.result) == 1 and isinstance(driver.result[0], CompetitionError), driver.result
    message = str(driver.result[0])
    assert re.fullmatch(rf"worker tcp://127\.0\.0\.1:\d+ \(blind\) cannot see {re.escape(str(world['results']))}.*"
                        r": every worker needs the dataset, submission and results folders at the same path \(mount "
                        r"the shared filesystem there, or stop that worker\)", message), message
    assert list((world["results"] / "store" / "attack_runs").rglob("*.json"))  # finished units are kept
    log = (world["results"] / "logs" / "cluster.log").read_text()
    assert "joined" in log and "rerun the same command to resume" in log


def _join_during_run(world: dict[str, Path], folder: Path, name: str, *, prefix: tuple[str, ...] = ()) -> _Driver:
    """Run 6 slow units on a one-worker cluster; once the first has finished, worker ``name`` (its command line
    after ``prefix``) joins. Returns the finished driver."""
    marks = world["root"] / "marks"
    marks.mkdir()
    write_submission(world["attacks"], "slow", "attack", recording(marks, sleep=2, only_first=False))
    cluster = CommandLineCluster(folder)
    try:
        cluster.add_worker("w1")
        cluster.wait()
        driver = _drive(config_for(world, batch_size=1, scheduler=cluster.address, sandbox=SandboxKind.NONE))
        _wait_for_marks(marks, driver, finished=True)
        cluster.add_worker(name, prefix=prefix)
        driver.join(timeout=240)
        assert not driver.is_alive()
    finally:
        cluster.close()
    return driver


class _Driver(threading.Thread):
    """run_competition in a thread; ``result`` holds "ok" or the exception it raised."""

    def __init__(self, config: object) -> None:
        super().__init__(daemon=True)
        self.config = config
        self.result: list[object] = []

    def run(self) -> None:
        try:
            run_competition(self.config, echo=lambda _: None)  # type: ignore[arg-type]
            self.result.append("ok")
        except Exception as exc:  # the test looks at it
            self.result.append(exc)


def _drive(config: object) -> _Driver:
    driver = _Driver(config)
    driver.start()
    return driver


def _wait_for_marks(marks: Path, driver: _Driver, *, finished: bool = False) -> None:
    """Until a run of the recording attack has started (or ``finished``)."""
    deadline = time.monotonic() + 120
    while not [m for m in marks_of(marks) if not finished or "end" in m]:
        assert time.monotonic() < deadline and driver.is_alive(), f"no unit started: {driver.result}"
        time.sleep(0.1)


def test_unit_that_kills_its_worker_every_time_is_a_failed_run(world: dict[str, Path],
                                                                 cli_cluster: CommandLineCluster) -> None:
    write_submission(world["attacks"], "suicidal", "attack", SUICIDAL)
    write_submission(world["attacks"], "plus", "attack", PLUS)
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    result = run_competition(config_for(world, scheduler=cli_cluster.address, sandbox=SandboxKind.NONE),
                             echo=lambda _: None)
    failed = [r for r in result.runs if r.problem]
    assert [(r.name, r.problem) for r in failed] == [("suicidal", "worker died 2 times")]
    board = {(s.track, s.name): s for s in result.scores}
    assert board[("attack", "suicidal")].failed_runs == 1
    assert board[("attack", "plus")].failed_runs == 0 and board[("defense", "bucket")].failed_runs == 0
    rerun = run_competition(config_for(world, scheduler=cli_cluster.address, sandbox=SandboxKind.NONE),
                            echo=lambda _: None)
    assert rerun.outcome.executed == {"attack": 0, "defense": 0}  # the failure is a stored record
    cli_cluster.wait()


def test_gpu_workers_each_run_alone_on_their_own_gpu(world: dict[str, Path], tmp_path: Path) -> None:
    marks = world["root"] / "marks"
    marks.mkdir()
    write_submission(world["attacks"], "recorder", "attack", recording(marks, sleep=0.5, only_first=False))
    cluster = CommandLineCluster(tmp_path / "gpus")
    try:
        for gpu in ("0", "1"):  # two threads each: only the GPU resource keeps their runs apart
            cluster.add_worker(f"gpu{gpu}", nthreads=2, env={"CUDA_VISIBLE_DEVICES": gpu},
                               extra=("--resources", "GPU=1"))
        cluster.wait()
        run_competition(config_for(world, batch_size=1, scheduler=cluster.address, sandbox=SandboxKind.NONE),
                        echo=lambda _: None)
    finally:
        cluster.close()
    runs = marks_of(marks)
    assert len(runs) == 6
    assert {r["gpu"] for r in runs} == {"0", "1"}
    # two GPU workers on one host: each run gets half of the host's cores (the worker's, not the driver's)
    assert {r["threads"] for r in runs} == {str(max(1, (os.cpu_count() or 1) // 2))}
    for gpu in ("0", "1"):
        spans = sorted((float(str(r["start"])), float(str(r["end"]))) for r in runs if r["gpu"] == gpu)
        assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:])), spans


def test_worker_of_another_harness_version_is_refused(world: dict[str, Path], tmp_path: Path) -> None:
    write_submission(world["attacks"], "plus", "attack", PLUS)
    preload = tmp_path / "other_version.py"
    preload.write_text("import harness\nharness.__version__ = '0.0.0-other'\n")
    cluster = CommandLineCluster(tmp_path / "versions")
    try:
        cluster.add_worker("old", extra=("--preload", str(preload)))
        cluster.wait()
        with pytest.raises(CompetitionError, match=r"worker tcp://127\.0\.0\.1:\d+ .*runs harness 0\.0\.0-other.*"
                                                   r"install harness"):
            run_competition(config_for(world, scheduler=cluster.address), echo=lambda _: None)
    finally:
        cluster.close()
    assert not (world["results"] / "store" / "attack_runs").exists()


def test_worker_that_cannot_see_the_folders_is_refused(world: dict[str, Path], tmp_path: Path) -> None:
    from distributed import Client, LocalCluster

    from harness.dask_executor import ClusterError, check_workers
    with LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        with pytest.raises(ClusterError, match=r"worker tcp://127\.0\.0\.1:\d+ cannot see .*nowhere.*shared"):
            check_workers(client, paths=[world["root"], world["root"] / "nowhere"], sandbox=SandboxKind.NONE,
                          version=__import__("harness").__version__)


@pytest.mark.parametrize(("address", "message"), [
    ("127.0.0.1:8786x", "--scheduler 127.0.0.1:8786x: the port '8786x' is not a number; pass e.g. tcp://HOST:8786"),
    ("http://127.0.0.1:8787/status", "is the Dask dashboard's web address; pass the scheduler's own address"),
    ("", "--scheduler needs an address, e.g. tcp://HOST:8786"),
])
def test_malformed_scheduler_address_is_a_one_line_error(world: dict[str, Path], address: str, message: str) -> None:
    write_submission(world["attacks"], "plus", "attack", PLUS)
    with pytest.raises(CompetitionError) as raised:
        run_competition(config_for(world, scheduler=address), echo=lambda _: None)
    assert message in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize(("missing_on", "message"), [
    ("worker", "worker tcp://127.0.0.1:{port} cannot run the harness (ModuleNotFoundError: No module named "
               "'harness'): install the harness"),
    ("scheduler", "the Dask scheduler at {address} cannot import the harness"),
])
def test_scheduler_or_worker_without_the_harness_is_refused_in_one_line(world: dict[str, Path], tmp_path: Path,
                                                                         missing_on: str, message: str) -> None:
    write_submission(world["attacks"], "plus", "attack", PLUS)
    cluster = CommandLineCluster(tmp_path / "bare", harness_on_scheduler=missing_on != "scheduler")
    try:
        cluster.add_worker("w", harness=missing_on != "worker")
        cluster.wait()
        with pytest.raises(CompetitionError) as raised:
            run_competition(config_for(world, scheduler=cluster.address), echo=lambda _: None)
    finally:
        cluster.close()
    text = str(raised.value)
    pattern = re.escape(message).replace(re.escape("{port}"), r"\d+").replace(re.escape("{address}"),
                                                                              re.escape(cluster.address))
    assert re.search(pattern, text), text
    assert "PYTHONPATH=<checkout>" in text and "\n" not in text


def test_relative_folders_work_on_workers_started_elsewhere(world: dict[str, Path], cli_cluster: CommandLineCluster,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    write_submission(world["attacks"], "plus", "attack", PLUS)
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    monkeypatch.chdir(world["root"])  # the workers run in the checkout, not here
    relative = {"data": Path("data"), "attacks": Path("attacks"), "defenses": Path("defenses"),
                "results": Path("results")}
    result = run_competition(config_for(relative, scheduler=cli_cluster.address), echo=lambda _: None)
    assert result.outcome.executed == {"attack": 1, "defense": 2}
    manifest = json.loads((world["results"] / "manifest.json").read_text())
    assert manifest["dataset"]["root"] == str(world["data"]) and manifest["jobs"] is None
    log = (world["results"] / "logs" / "cluster.log").read_text().splitlines()
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", line) for line in log), log
    assert log[0].endswith("attacks: 1 unit on 2 workers"), log


def test_interrupted_driver_cancels_its_units_on_the_cluster(world: dict[str, Path],
                                                            cli_cluster: CommandLineCluster) -> None:
    marks = world["root"] / "marks"
    marks.mkdir()
    write_submission(world["attacks"], "slow", "attack", recording(marks, sleep=1, only_first=False))
    config = config_for(world, batch_size=1, scheduler=cli_cluster.address, sandbox=SandboxKind.NONE)

    def interrupting(label: str, total: int):  # Ctrl-C as soon as the first unit is done
        def tick(*, failed: bool = False) -> None:
            raise KeyboardInterrupt
        return tick

    with pytest.raises(KeyboardInterrupt):
        run_competition(config, echo=lambda _: None, progress=interrupting)
    time.sleep(5)  # 6 units of 1 s on 2 workers: all would have run by now
    assert len(marks_of(marks)) <= 4  # the 2 running when the driver stopped and at most 1 queued per worker
    log = (world["results"] / "logs" / "cluster.log").read_text()
    assert re.search(r"attacks: stopped after [01]/6 units; rerun the same command to resume", log), log
    cli_cluster.wait()


def test_driver_killed_and_restarted_resumes(world: dict[str, Path], cli_cluster: CommandLineCluster) -> None:
    marks = world["root"] / "marks"
    marks.mkdir()
    write_submission(world["attacks"], "recorder", "attack", recording(marks, sleep=1.0, only_first=False))
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    argv = [sys.executable, "run_competition.py", "--input_dir", str(world["data"]), "--attacks_dir",
            str(world["attacks"]), "--defenses_dir", str(world["defenses"]), "--output_dir", str(world["results"]),
            "--batch_size", "1", "--scheduler", cli_cluster.address, "--sandbox", "none", "--quiet"]
    driver = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = world["results"] / "store" / "attack_runs"
    deadline = time.monotonic() + 120
    while not (records.exists() and list(records.rglob("*.json"))):
        assert time.monotonic() < deadline and driver.poll() is None
        time.sleep(0.05)
    driver.kill()
    driver.wait()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((world["results"] / "manifest.json").read_text())
    assert manifest["reused_units"]["attack"] >= 1
    assert manifest["reused_units"]["attack"] + manifest["executed_units"]["attack"] == 6
    assert len(list(records.rglob("*.json"))) == 6
    rows = (world["results"] / "runs.csv").read_text()
    assert "worker died" not in rows and "exit code" not in rows
    no_leftovers(world["results"])


def test_submission_processes_per_worker_come_from_gpu_then_runs_then_threads() -> None:
    from harness.dask_worker import submission_slots
    assert submission_slots(3, {"RUNS": 2}) == 2  # the third thread pipelines the harness's own work
    assert submission_slots(2, {"GPU": 1, "RUNS": 2}) == 1  # one run per GPU, whatever RUNS says
    assert submission_slots(4, {}) == 4
    assert submission_slots(1, {"RUNS": 0}) == 1


def test_threads_of_one_worker_check_the_results_folder_at_once(tmp_path: Path) -> None:
    """The writability probe of :func:`describe_worker` is per call, not per process (a worker's threads run their
    first units, each checking the worker, at the same moment)."""
    from concurrent.futures import ThreadPoolExecutor

    from harness.dask_worker import describe_worker
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: describe_worker([str(tmp_path)], "none")["unwritable"], range(200)))
    assert set(answers) == {""}
    assert list(tmp_path.iterdir()) == []


class _FakeClient:
    """What DaskExecutor asks of a client before any unit runs (no cluster)."""

    def scheduler_info(self) -> dict[str, object]:
        return {"workers": {}}


@pytest.mark.parametrize("writable", [True, False])
def test_membership_events_are_recorded_and_never_raise(tmp_path: Path, writable: bool) -> None:
    from harness.dask_executor import PROGRESS_LOG, DaskExecutor
    results = tmp_path / "results"
    if writable:
        results.mkdir()
    else:
        results.write_text("a file where the results folder should be: the log cannot be written")
    executor = DaskExecutor(_FakeClient(), workers={}, paths=[results])  # type: ignore[arg-type]
    lost = {"action": "remove-worker", "worker": "tcp://10.0.0.7:40123", "expected": False,
            "processing-tasks": {"harness-attacks-5f0c", "harness-context-attacks-1"}}
    executor._on_scheduler_event((0.0, lost))
    executor._on_scheduler_event((1.0, {"action": "gather", "count": 3}))  # other scheduler events are ignored
    assert executor.events == [{"time": "1970-01-01T00:00:00Z", "worker": "tcp://10.0.0.7:40123", "event": "left",
                                "expected": False, "units_running": ["attacks-5f0c"]}]
    if writable:
        line = (results / PROGRESS_LOG).read_text().strip()
        assert line.endswith("worker tcp://10.0.0.7:40123 was lost (died or unreachable) while running 1 unit "
                             "(attacks-5f0c), which rerun elsewhere")


# -- what workers get (issue 28) ----------------------------------------------------------------------------
#: Worker preload: every open of the results folder's secret or of a label file is written to $MARKS/<pid>.txt
#: (an audit hook sees open(), os.open and pathlib alike).
WATCHING = """
import os, sys
WATCHED = ("secret.key", "dev_dataset.csv", "labels.csv")

def _hook(event, args):
    if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.fsdecode(args[0])
        if os.path.basename(path) in WATCHED:
            with open(os.path.join(MARKS, f"{os.getpid()}.txt"), "a") as marks:
                marks.write(path + "\\n")

sys.addaudithook(_hook)
"""


def watching(folder: Path) -> Path:
    """A worker preload module that records what :data:`WATCHING` watches into ``folder``/marks."""
    (folder / "marks").mkdir(parents=True, exist_ok=True)
    module = folder / "watching.py"
    module.write_text(f"MARKS = {str(folder / 'marks')!r}\n" + WATCHING)
    return module


def watched_opens(folder: Path) -> list[str]:
    return sorted(line for p in (folder / "marks").glob("*.txt") for line in p.read_text().splitlines())


def _found(value: object, kind: type, seen: set[int] | None = None) -> Iterator[object]:
    """Every instance of ``kind`` inside ``value`` (dataclass fields, tuples, lists, sets, dict keys and values)."""
    import dataclasses
    seen = set() if seen is None else seen
    if id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, kind):
        yield value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            yield from _found(getattr(value, item.name), kind, seen)
    elif isinstance(value, dict):
        for item in (*value.keys(), *value.values()):
            yield from _found(item, kind, seen)
    elif isinstance(value, (tuple, list, set, frozenset)):
        for item in value:
            yield from _found(item, kind, seen)


def test_workers_get_no_true_label_and_no_secret(world: dict[str, Path], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """What the driver sends its local cluster (tasks, and the functions it runs on every worker) holds no true
    label, no untargeted attack's target class and no secret, and no worker opens the secret or a label file;
    the results are those of a local run (the target classes reach a targeted attack)."""
    import pickle

    import dask
    from distributed import Client, Future

    from harness.dataset import Dataset, ImageRecord, load_dataset
    from harness.planning import AttackUnit
    write_submission(world["attacks"], "plus", "attack", PLUS)
    write_submission(world["attacks"], "toward", "targeted_attack", TOWARD_TARGET)
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    run_competition(config_for(world, batch_size=2, output_dir=world["root"] / "local"), echo=lambda _: None)
    sent: list[object] = []
    submit, run = Client.submit, Client.run

    def recording_submit(self: Client, *args: object, **kwargs: object) -> object:
        sent.append(tuple(a for a in args if not isinstance(a, Future)))
        return submit(self, *args, **kwargs)  # type: ignore[arg-type]

    def recording_run(self: Client, *args: object, **kwargs: object) -> object:
        sent.append(args)
        return run(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Client, "submit", recording_submit)
    monkeypatch.setattr(Client, "run", recording_run)
    with dask.config.set({"distributed.worker.preload": [str(watching(tmp_path / "watch"))]}):
        run_competition(config_for(world, batch_size=2, workers=1, output_dir=world["root"] / "dask"),
                        echo=lambda _: None)
    for name in FILES:
        assert (world["root"] / "local" / name).read_bytes() == (world["root"] / "dask" / name).read_bytes()
    assert watched_opens(tmp_path / "watch") == []  # the worker read neither the secret nor a label file
    secret = bytes.fromhex((world["root"] / "dask" / "secret.key").read_text())
    blob = pickle.dumps(sent)
    assert secret not in blob and secret.hex().encode() not in blob
    truth = load_dataset(world["data"], seed=0, secret=secret).by_id()
    records = [r for r in _found(sent, ImageRecord) if isinstance(r, ImageRecord)]
    assert {r.image_id for r in records} == set(truth)  # every image travelled, in the attack units
    assert not [r for r in records if r.true_label == truth[r.image_id].true_label]
    units = [u for u in _found(sent, AttackUnit) if isinstance(u, AttackUnit)]
    targeted = {r.image_id: r.target_class for u in units if u.attack.name == "toward" for r in u.images}
    assert targeted == {i: r.target_class for i, r in truth.items()}  # what a targeted attack needs
    assert not [r for u in units if u.attack.name == "plus" for r in u.images
                if r.target_class == truth[r.image_id].target_class]
    assert all(d.images == () for d in _found(sent, Dataset) if isinstance(d, Dataset))


# -- a secured cluster (issue 28) ----------------------------------------------------------------------------
def make_credentials(folder: Path) -> dict[str, Path]:
    """A CA and two certificates it signed, as PEM files in ``folder`` (mode 700): ``node`` for the scheduler and
    the workers, ``driver`` for the harness. Keys: ca, node_cert, node_key, driver_cert, driver_key."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    def certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str,
                    signer: ec.EllipticCurvePrivateKey, *, ca: bool) -> x509.Certificate:
        return (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                .sign(signer, hashes.SHA256()))

    def write(path: Path, data: bytes) -> Path:
        path.write_bytes(data)
        path.chmod(0o600)
        return path

    ca_key = ec.generate_private_key(ec.SECP256R1())
    files = {"ca": write(folder / "ca.pem", certificate("test CA", ca_key, "test CA", ca_key, ca=True)
                         .public_bytes(serialization.Encoding.PEM))}
    for role in ("node", "driver"):
        key = ec.generate_private_key(ec.SECP256R1())
        files[f"{role}_cert"] = write(folder / f"{role}.pem", certificate(role, key, "test CA", ca_key, ca=False)
                                      .public_bytes(serialization.Encoding.PEM))
        files[f"{role}_key"] = write(folder / f"{role}.key", key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return files


def test_tls_cluster_started_through_the_dask_command_line(world: dict[str, Path], tmp_path: Path) -> None:
    write_submission(world["attacks"], "plus", "attack", PLUS)
    write_submission(world["attacks"], "toward", "targeted_attack", TOWARD_TARGET)
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    run_competition(config_for(world, batch_size=3, output_dir=world["root"] / "local"), echo=lambda _: None)
    credentials = make_credentials(tmp_path / "credentials")
    preload = watching(tmp_path / "watch")
    cluster = CommandLineCluster(tmp_path / "tls", tls=credentials)
    try:
        cluster.add_worker("w1", extra=("--preload", str(preload)))
        cluster.add_worker("w2", extra=("--preload", str(preload)))
        cluster.wait()
        assert cluster.address.startswith("tls://127.0.0.1:"), cluster.address
        argv = [sys.executable, "run_competition.py", "--input_dir", str(world["data"]), "--attacks_dir",
                str(world["attacks"]), "--defenses_dir", str(world["defenses"]), "--output_dir",
                str(world["root"] / "dask"), "--batch_size", "3", "--max_epsilon", "16", "--scheduler",
                cluster.address, "--tls_ca_file", str(credentials["ca"]), "--tls_cert",
                str(credentials["driver_cert"]), "--tls_key", str(credentials["driver_key"]), "--quiet",
                "--seconds_per_image", "5", "--min_seconds", "20"]
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    finally:
        cluster.close()
    assert done.returncode == 0, done.stderr
    assert "unencrypted" not in done.stderr, done.stderr
    for name in FILES:
        assert (world["root"] / "local" / name).read_bytes() == (world["root"] / "dask" / name).read_bytes()
    manifest = json.loads((world["root"] / "dask" / "manifest.json").read_text())
    assert len(manifest["workers"]) == 2 and all(w.startswith("tls://") for w in manifest["workers"])
    assert watched_opens(tmp_path / "watch") == []  # no worker read the secret or a label file


#: Run as another user: for each address given (the scheduler's first), whether it answers a plain connection
#: (Dask's ``identity`` request) and a TLS one made with credentials of the prober's own; then whether the
#: scheduler runs code for a plain Client (the attack of issue 28). Prints JSON: what → "answered: ..." or
#: "refused: ...".
PROBE = """
import asyncio, json, os, sys
from distributed import Client, Security
from distributed.comm import connect

async def ask(address, security):
    extra = security.get_connection_args("client") if security is not None else {}
    comm = await connect(address, timeout=5, **extra)
    try:
        await comm.write({"op": "identity"})
        return "answered: " + str(await asyncio.wait_for(comm.read(), 5))[:60]
    finally:
        comm.abort()

def attempt(address, security):
    try:
        return asyncio.run(ask(address, security))
    except Exception as exc:
        return "refused: " + type(exc).__name__

own = Security.temporary()
results = {}
for address in sys.argv[1:]:
    where = address.split("://")[-1]
    results[f"tcp://{where}"] = attempt(f"tcp://{where}", None)
    results[f"tls://{where} (own certificate)"] = attempt(f"tls://{where}", own)
try:
    with Client("tcp://" + sys.argv[1].split("://")[-1], timeout="5s") as client:
        results["Client.run"] = "answered: " + str(client.run(os.getuid))
except Exception as exc:
    results["Client.run"] = "refused: " + type(exc).__name__
print(json.dumps(results))
"""

#: Run as root: a private mount namespace in which ``uid`` can reach the Python installation (as a user's own
#: Python), then drop every id to ``uid`` and exec PROBE (a fresh process: nothing of root's is left in it).
AS_UID = """
import ctypes, os, sys
sys.path[:0] = TESTS
from test_faults_hostile import _CLONE_NEWNS, _MS_PRIVATE, _MS_REC, _give_python_to, _mount
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(_CLONE_NEWNS) != 0:
    raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
_mount(libc, b"none", b"/", None, _MS_REC | _MS_PRIVATE)
_give_python_to(UID)
os.setgroups([])
os.setresgid(UID, UID, UID)
os.setresuid(UID, UID, UID)
os.environ["HOME"] = "/nonexistent"
os.execv(sys.executable, [sys.executable, "-c", PROBE, *sys.argv[1:]])
"""


def probe_as(uid: int, addresses: list[str]) -> dict[str, str]:
    """What :data:`PROBE` found, run as ``uid``."""
    tests = [str(ROOT / "tests" / "harness"), str(ROOT / "tests")]  # test_faults_hostile and the shared helpers
    launcher = f"TESTS = {tests!r}\nUID = {uid}\nPROBE = {PROBE!r}\n" + AS_UID
    done = subprocess.run([sys.executable, "-c", launcher, *addresses], capture_output=True, text=True,
                          timeout=240, cwd="/", env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _cluster_addresses(client: object) -> tuple[str, list[str], set[int]]:
    """(scheduler address, every worker's and nanny's address, the pids of the worker and nanny processes)."""
    import psutil
    info = client.scheduler_info()  # type: ignore[attr-defined]
    others = [a for address, w in info["workers"].items() for a in (address, w["nanny"])]
    workers = set(client.run(os.getpid).values())  # type: ignore[attr-defined]
    return info["address"], others, workers | {psutil.Process(p).ppid() for p in workers}


@needs_root
def test_local_cluster_refuses_a_local_user_without_its_credentials(world: dict[str, Path],
                                                                    unprivileged_uid: int) -> None:
    """A process of another local user reaches neither the scheduler nor any worker or nanny of a ``--workers``
    cluster, with no credentials or with credentials of its own; nothing else of the cluster listens."""
    import psutil

    from harness.dask_executor import connect
    world["results"].mkdir()
    with connect(scheduler=None, workers=2, paths=[world["results"]], sandbox=SandboxKind.NONE,
                 echo=lambda _: None) as executor:
        scheduler, others, pids = _cluster_addresses(executor.client)
        found = probe_as(unprivileged_uid, [scheduler, *others])
        listening = {c.laddr.port for p in (psutil.Process(), *map(psutil.Process, pids))
                     for c in p.net_connections("inet") if c.status == psutil.CONN_LISTEN}
    assert len(found) == 2 * 5 + 1, found  # the scheduler, 2 workers and 2 nannies, and Client.run
    assert {what: answer for what, answer in found.items() if not answer.startswith("refused")} == {}, found
    assert scheduler.startswith("tls://") and all(a.startswith("tls://") for a in others)
    assert listening == {int(a.rsplit(":", 1)[1]) for a in (scheduler, *others)}  # no dashboard, nothing else


def test_local_cluster_refuses_a_client_without_its_credentials(world: dict[str, Path]) -> None:
    """The in-process check of the test above (no other user needed): plain, credential-less and self-made-TLS
    clients are all refused by the scheduler of a ``--workers`` cluster."""
    from distributed import Client, Security

    from harness.dask_executor import connect
    world["results"].mkdir()
    with connect(scheduler=None, workers=1, paths=[world["results"]], sandbox=SandboxKind.NONE,
                 echo=lambda _: None) as executor:
        scheduler = executor.client.scheduler_info()["address"]
        where = scheduler.split("://")[-1]
        for address, security in ((f"tcp://{where}", None), (f"tls://{where}", None),
                                  (f"tls://{where}", Security.temporary())):
            with pytest.raises((OSError, TypeError)):  # refused, timed out, or "TLS expects a ssl_context"
                with Client(address, timeout="5s", security=security) as client:
                    client.run(os.getuid)


@pytest.mark.parametrize(("settings", "message"), [
    ({"workers": 2, "tls_cert": "{cert}"}, "--tls_cert: only a --scheduler tls://HOST:PORT takes it (a local "
                                           "cluster, --workers, makes its own credentials), or drop it"),
    ({"tls_ca_file": "{ca}", "tls_cert": "{cert}"}, "--tls_ca_file, --tls_cert: only a --scheduler tls://"),
    ({"scheduler": "tcp://127.0.0.1:8786", "tls_ca_file": "{ca}"},
     "--tls_ca_file: --scheduler tcp://127.0.0.1:8786 is not a TLS address; pass its tls://HOST:PORT address"),
    ({"scheduler": "tls://127.0.0.1:8786", "tls_cert": "{cert}"},
     "--scheduler tls://127.0.0.1:8786: pass both --tls_ca_file (the CA that signed the cluster's certificates) "
     "and --tls_cert"),
    ({"scheduler": "tls://127.0.0.1:8786", "tls_ca_file": "{ca}", "tls_cert": "{missing}"},
     "--tls_cert {missing}: no such file; pass the PEM file"),
    ({"scheduler": "tls://127.0.0.1:8786"}, "--scheduler tls://127.0.0.1:8786: no TLS credentials; pass "
                                            "--tls_ca_file, --tls_cert and --tls_key, or set distributed.comm.tls"),
    ({"scheduler": "tls://127.0.0.1:8786", "tls_ca_file": "{ca}", "tls_cert": "{garbage}"},
     "--scheduler tls://127.0.0.1:8786: cannot load the TLS credentials ("),
])
def test_malformed_tls_options_are_one_line_errors(world: dict[str, Path], tmp_path: Path,
                                                   settings: dict[str, object], message: str) -> None:
    files = make_credentials(tmp_path / "credentials")
    (tmp_path / "garbage.pem").write_text("not a certificate\n")
    paths = {"cert": files["driver_cert"], "ca": files["ca"], "missing": tmp_path / "nowhere.pem",
             "garbage": tmp_path / "garbage.pem"}
    config = {k: Path(str(v).format(**paths)) if k.startswith("tls_") else v for k, v in settings.items()}
    write_submission(world["attacks"], "plus", "attack", PLUS)
    with pytest.raises(CompetitionError) as raised:
        run_competition(config_for(world, **config), echo=lambda _: None)
    assert message.format(**paths) in str(raised.value) and "\n" not in str(raised.value), str(raised.value)
    assert not world["results"].exists()  # refused before anything was made
