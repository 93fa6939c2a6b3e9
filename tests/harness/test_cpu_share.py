"""Each parallel run's share of the CPU is enforced: a run that forks many busy processes slows only itself.

The hostile neighbour: an attack that forks 16 busy processes, each in its own session, beside an honest attack that
does a fixed amount of work. Without CPU shares the honest run got about 2/17 of the machine and timed out; with
them (its own cores and a quota, by cgroup or by ``docker run --cpus --cpuset-cpus``) its CPU time and wall time
stay within 1.3x of its figures alone, and its outcome is the same.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Iterator, NamedTuple

import pytest
from test_sandbox_containers import IMAGE, write_container_submission

from harness.cgroups import CgroupJail, parse_cpu_list, weigh_runs
from harness.competition import run_competition
from harness.devices import DevicePool
from harness.instance import Instance
from harness.limits import LimitPolicy, Limits
from harness.parallelism import CpuShare, cpu_shares, usable_core_ids, usable_cores, worker_cpu_shares
from harness.records import AttackUnitRecord
from harness.sandboxes.base import SandboxKind
from harness.sandboxes.docker import docker_run_command
from harness.sandboxes.factory import probe
from machine import needs_bwrap, needs_root
from tiny_world import BUCKET_DEFENSE, config_for, write_dataset, write_submission

#: Attack doing a fixed amount of pure-Python work (about 2.5 CPU seconds here), reporting its own CPU time and the
#: wall time of that work (a container's start-up, done by the docker engine outside the run, is not in it).
HONEST = """
import time
start = time.monotonic()
x = 0
for i in range(15_000_000):
    x = (x * 31 + i) % 1000003
print(f"work={x} cpu={time.process_time():.3f} wall={time.monotonic() - start:.3f}", flush=True)
inp, out, eps = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
for p in sorted(inp.glob("*.png")):
    a = np.asarray(Image.open(p)).astype(int)
    Image.fromarray(np.clip(a + eps, 0, 255).astype(np.uint8)).save(out / p.name)
"""
#: Attack that forks 16 busy processes, each in a session of its own, for 8 s, then submits clean images.
HOG = """
import time
children = []
for _ in range(16):
    pid = os.fork()
    if pid == 0:
        os.setsid()
        end = time.monotonic() + 8
        while time.monotonic() < end:
            pass
        os._exit(0)
    children.append(pid)
for pid in children:
    os.waitpid(pid, 0)
inp, out = Path(sys.argv[1]), Path(sys.argv[2])
for p in sorted(inp.glob("*.png")):
    Image.open(p).save(out / p.name)
"""


# -- the shares ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cores, slots, expected", [
    ([0, 1], 2, [(1.0, (0,)), (1.0, (1,))]),
    ([0, 1, 2], 2, [(1.0, (0,)), (1.0, (1,))]),  # the core left over serves the harness itself
    ([0, 1, 2, 3, 4, 5, 6, 7], 3, [(2.0, (0, 1)), (2.0, (2, 3)), (2.0, (4, 5))]),
    ([0, 1], 3, [(0.5, (0,)), (0.5, (1,)), (0.5, (0,))]),  # crowded: equal quota, the most crowded core's share
    ([3, 5], 1, [(2.0, (3, 5))]),
])
def test_shares_are_equal_and_never_overlap_when_cores_suffice(cores: list[int], slots: int,
                                                               expected: list[tuple[float, tuple[int, ...]]]) -> None:
    shares = cpu_shares(slots, cores)
    assert [(s.cpus, s.cores) for s in shares] == expected
    if slots <= len(cores):
        taken = [core for share in shares for core in share.cores]
        assert len(taken) == len(set(taken))


def test_share_quota_and_cpuset_text() -> None:
    assert CpuShare(cpus=0.5, cores=(0, 2)).quota_us == 50_000
    assert CpuShare(cpus=0.5, cores=(0, 2)).cpuset == "0,2"
    assert parse_cpu_list("0-2,5\n") == {0, 1, 2, 5}
    with pytest.raises(ValueError, match="at least 1"):
        cpu_shares(0, [0])


def test_local_cluster_workers_get_disjoint_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("harness.parallelism.usable_core_ids", lambda: [0, 1, 2, 3])
    first = worker_cpu_shares(2, on_host=4, index=0)
    second = worker_cpu_shares(2, on_host=4, index=1)
    assert first and second
    assert {c for s in first for c in s.cores}.isdisjoint({c for s in second for c in s.cores})
    unknown = worker_cpu_shares(2, on_host=4, index=None)  # cores unknown: the quota still holds
    assert unknown == [CpuShare(cpus=1.0, cores=(0, 1, 2, 3))] * 2
    assert worker_cpu_shares(1, on_host=1, index=0) is None


def test_device_pool_slots_carry_their_shares(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("harness.parallelism.usable_core_ids", lambda: [0, 1])
    pool = DevicePool(["7"], jobs=2)
    with pool.acquire() as a, pool.acquire() as b:
        assert {a.cpu, b.cpu} == {CpuShare(1.0, (0,)), CpuShare(1.0, (1,))} and a.gpu == b.gpu == "7"
    with DevicePool([], jobs=1).acquire() as alone:
        assert alone.cpu is None
    with pytest.raises(ValueError, match="1 CPU share"):
        DevicePool([], jobs=2, cpu=[CpuShare(1.0, (0,))])


def test_cpu_time_limit_follows_the_share() -> None:
    """A run held to one core can use at most one CPU-second per second: its CPU-time limit says so too."""
    policy = LimitPolicy(seconds_per_image=1.0, minimum_seconds=10.0, cpu_factor=4.0)
    assert policy.limits(5).cpu_seconds == 40.0
    assert policy.limits(5, cpu_share=CpuShare(1.0, (0,))).cpu_seconds == 10.0
    assert policy.limits(5, cpu_share=CpuShare(0.5, (0,))).cpu_seconds == 5.0
    assert LimitPolicy(minimum_seconds=10.0, cpu_factor=0.5).limits(1, cpu_share=CpuShare(2.0, (0, 1))) \
        .cpu_seconds == 5.0


def test_jail_writes_and_reads_back_the_share_v1_and_v2(tmp_path: Path) -> None:
    """Plain folders stand in for the controllers: cgroup v1's cpu and cpuset files, and cgroup v2's one folder."""
    share = CpuShare(cpus=0.5, cores=(1,))
    limits = Limits(wall_seconds=1, cpu_share=share)
    v1 = {"cpu": tmp_path / "cpu", "cpuset": tmp_path / "cpuset"}
    for folder in v1.values():
        folder.mkdir()
    jail = CgroupJail(v1, limits, instance=Instance.create())
    assert not jail.problems and jail.applied == ["cpu_share", "cpuset"]
    (cpu,) = [f for f in jail.folders if f.parent.name == "cpu"]
    (cpuset,) = [f for f in jail.folders if f.parent.name == "cpuset"]
    assert (cpu / "cpu.cfs_quota_us").read_text() == "50000" and (cpu / "cpu.cfs_period_us").read_text() == "100000"
    assert (cpuset / "cpuset.cpus").read_text() == "1"
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cgroup.controllers").write_text("cpu cpuset pids memory\n")  # marks a cgroup v2 folder
    jail = CgroupJail({"cpu": v2, "cpuset": v2}, limits, instance=Instance.create())
    (folder,) = jail.folders
    assert (folder / "cpu.max").read_text() == "50000 100000" and not (folder / "cpu.cfs_quota_us").exists()
    assert (folder / "cpuset.cpus").read_text() == "1" and jail.applied == ["cpu_share", "cpuset"]


def test_parallel_runs_weigh_as_many_processes_as_cores(tmp_path: Path) -> None:
    """The runs share one cpu folder, which the scheduler weighs as one process: it gets one per core (v1 and v2)."""
    v1, v2 = tmp_path / "v1", tmp_path / "v2"
    v1.mkdir()
    v2.mkdir()
    (v1 / "cpu.shares").write_text("1024")
    (v2 / "cpu.weight").write_text("100")
    assert weigh_runs(v1, 2) and (v1 / "cpu.shares").read_text() == "2048"
    assert weigh_runs(v2, 2) and (v2 / "cpu.weight").read_text() == "200"
    assert weigh_runs(v1, 1000) and (v1 / "cpu.shares").read_text() == "262144"  # the kernel's largest
    assert weigh_runs(v2, 1000) and (v2 / "cpu.weight").read_text() == "10000"
    (v1 / "cpu.shares").unlink()
    (v1 / "cpu.shares").mkdir()  # a folder that refuses the write
    assert not weigh_runs(v1, 2)


@needs_root
def test_the_harness_cpu_folder_has_the_weight_of_its_cores() -> None:
    probe.cache_clear()
    folder = probe(SandboxKind.NONE).cgroup.get("cpu")
    assert folder is not None, "a root harness has a cpu cgroup controller"
    weight = folder / ("cpu.weight" if (folder / "cpu.weight").exists() else "cpu.shares")
    expected = min(10000, 100 * usable_cores()) if weight.name == "cpu.weight" else min(262144, 1024 * usable_cores())
    assert weight.read_text().strip() == str(expected)


def test_a_share_that_does_not_read_back_is_a_problem(tmp_path: Path) -> None:
    """The kernel refuses cores outside the parent's set by reading back something else: the run must not start."""
    (tmp_path / "cpuset").mkdir()
    jail = CgroupJail({"cpuset": tmp_path / "cpuset"}, Limits(1), instance=Instance.create())
    (folder,) = jail.folders
    (folder / "cpuset.cpus").mkdir()  # not writable as a file: the write fails
    jail._apply(Limits(1, cpu_share=CpuShare(1.0, (0,))))
    assert jail.problems and jail.problems[0].startswith("cpuset: cannot set") and "cpuset" not in jail.applied


@pytest.mark.parametrize("kind", [SandboxKind.DOCKER, SandboxKind.GVISOR])
def test_container_command_holds_the_share(kind: SandboxKind, tmp_path: Path) -> None:
    limits = Limits(wall_seconds=10, cpu_share=CpuShare(cpus=0.5, cores=(0, 1)))
    command = docker_run_command(["./run.sh"], kind=kind, image="img", name="n", code=tmp_path, inputs=tmp_path,
                                 outputs=tmp_path, limits=limits, env={}, gpu=None, instance=Instance.create())
    assert command[command.index("--cpus") + 1] == "0.5"
    assert command[command.index("--cpuset-cpus") + 1] == "0,1"
    alone = docker_run_command(["./run.sh"], kind=kind, image="img", name="n", code=tmp_path, inputs=tmp_path,
                               outputs=tmp_path, limits=Limits(wall_seconds=10), env={}, gpu=None,
                               instance=Instance.create())
    assert "--cpus" not in alone and "--cpuset-cpus" not in alone


# -- the hostile neighbour ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def _harness_first() -> Iterator[None]:
    """Give the cgroup folders runs are placed in (the harness's, and the docker engine's for containers) the
    largest CPU weight while the test measures, as on a machine dedicated to the harness: the measurement is about
    a run's neighbours inside the harness, and the figures must not move with whatever else this machine runs
    (other test suites, CPU hogs)."""
    harness_folder = probe(SandboxKind.NONE).cgroup.get("cpu")
    assert harness_folder is not None, "a root harness has a cpu cgroup controller"
    saved: list[tuple[Path, str]] = []
    for folder in (harness_folder, harness_folder.parent / "docker"):
        weight = next((folder / n for n in ("cpu.shares", "cpu.weight") if (folder / n).exists()), None)
        if weight is not None:
            saved.append((weight, weight.read_text().strip()))
            weight.write_text("262144" if weight.name == "cpu.shares" else "10000")
    assert saved
    try:
        yield
    finally:
        for weight, before in saved:
            weight.write_text(before)


class Figures(NamedTuple):
    record: AttackUnitRecord
    cpu: float   # CPU seconds of the work, as the run measured them
    wall: float  # wall seconds of the work, as the run measured them


def _competition(world: dict[str, Path], results: str, sandbox: SandboxKind) -> Figures:
    config = config_for(world, output_dir=world["root"] / results, jobs=2, sandbox=sandbox,
                        policy=LimitPolicy(seconds_per_image=5.0, minimum_seconds=60.0))
    result = run_competition(config, echo=lambda _: None)
    (record,) = [r for r in result.outcome.attack_records if r.attack == "honest"]
    text = (world["root"] / results / record.run.log).read_text()
    found = re.search(r"cpu=([0-9.]+) wall=([0-9.]+)", text)
    assert found and not record.run.problem, text
    assert result.manifest.to_json()["cpu_shares"] == [asdict(s) for s in cpu_shares(2)]
    return Figures(record, float(found.group(1)), float(found.group(2)))


@pytest.fixture(params=[SandboxKind.BWRAP, SandboxKind.DOCKER], ids=["bwrap", "docker"])
def sandbox(request: pytest.FixtureRequest) -> SandboxKind:
    request.getfixturevalue("bubblewrap" if request.param is SandboxKind.BWRAP else "container_engine")
    return request.param


@needs_root
def test_a_hog_beside_an_honest_run_does_not_slow_it(sandbox: SandboxKind, tmp_path: Path) -> None:
    world = {"data": write_dataset(tmp_path / "data", [10, 45, 90, 120]), "attacks": tmp_path / "attacks",
             "defenses": tmp_path / "defenses", "root": tmp_path, "results": tmp_path / "unused"}
    write = write_submission if sandbox is SandboxKind.BWRAP else (
        lambda *args: write_container_submission(*args, image=IMAGE))
    write(world["attacks"], "honest", "attack", HONEST)
    write(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    runs: dict[str, list[Figures]] = {"alone": [], "beside": []}
    with _harness_first():
        for round_ in range(2):  # the best of two rounds: figures on a shared machine carry noise of their own
            runs["alone"].append(_competition(world, f"alone{round_}", sandbox))
            write(world["attacks"], "hog", "attack", HOG)
            runs["beside"].append(_competition(world, f"beside{round_}", sandbox))
            shutil.rmtree(world["attacks"] / "hog")
    alone, beside = (Figures(runs[k][0].record, min(f.cpu for f in runs[k]), min(f.wall for f in runs[k]))
                     for k in ("alone", "beside"))
    figures = (f"alone: {alone.wall:.2f} s wall, {alone.cpu:.2f} s CPU; beside the hog: {beside.wall:.2f} s wall, "
               f"{beside.cpu:.2f} s CPU; whole runs (s): {[f.record.run.seconds for f in runs['alone']]} alone, "
               f"{[f.record.run.seconds for f in runs['beside']]} beside")
    print(figures)
    assert beside.wall <= 1.3 * alone.wall and beside.cpu <= 1.3 * alone.cpu, figures
    assert all(f.record.images == alone.record.images for f in runs["beside"]), "the outcome changed beside the hog"
    if sandbox is SandboxKind.BWRAP:  # the harness's figures: the whole run, interpreter start-up included
        fastest = {k: min(f.record.run.seconds for f in runs[k]) for k in runs}
        assert fastest["beside"] <= 1.3 * fastest["alone"], figures
        for run in runs["alone"] + runs["beside"]:
            cpu = run.record.run.cpu_seconds
            assert cpu is not None and run.cpu <= cpu <= run.cpu + 2.0, figures


@needs_bwrap
@needs_root
def test_the_run_sees_only_its_own_cores(tmp_path: Path) -> None:
    """Inside bubblewrap a run's affinity is its share's cores (cgroup cpuset), whatever it asks for."""
    body = """
os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))  # asks for every core: the cpuset refuses the others
print("cores=" + ",".join(map(str, sorted(os.sched_getaffinity(0)))), flush=True)
inp, out = Path(sys.argv[1]), Path(sys.argv[2])
for p in sorted(inp.glob("*.png")):
    Image.open(p).save(out / p.name)
"""
    world = {"data": write_dataset(tmp_path / "data", [10, 45]), "attacks": tmp_path / "attacks",
             "defenses": tmp_path / "defenses", "root": tmp_path, "results": tmp_path / "results"}
    write_submission(world["attacks"], "a", "attack", body)
    write_submission(world["attacks"], "b", "attack", body)
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    result = run_competition(config_for(world, jobs=2, sandbox=SandboxKind.BWRAP), echo=lambda _: None)
    seen = []
    for record in result.outcome.attack_records:
        text = (world["results"] / record.run.log).read_text()
        found = re.search(r"cores=([0-9,]+)", text)
        assert found, text
        seen.append(tuple(int(c) for c in found.group(1).split(",")))
    assert sorted(seen) == sorted(share.cores for share in cpu_shares(2)), seen
    assert len(usable_core_ids()) < 2 or len({c for cores in seen for c in cores}) == 2
