"""``--sandbox docker`` and ``--sandbox gvisor`` for real: NIPS 2017-style folders whose ``container`` names the
local image made by ``scripts/build_sandbox_images.sh`` (python3, numpy, Pillow; no torch).

Each test runs under both kinds. They skip only when the docker engine (or its runsc runtime) cannot be reached;
a missing image is a failure that names the script that builds it.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import stat
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest
from test_instances import two_competitions_at_once

from harness.competition import CompetitionResult, run_competition
from harness.instance import Instance
from harness.limits import LimitPolicy
from harness.sandboxes import docker as sandbox_docker
from harness.sandboxes.base import SandboxKind
from harness.sandboxes.factory import probe
from harness.workspace import scratch_folders
from tiny_world import (
    BUCKET_DEFENSE,
    CONSTANT_DEFENSE,
    GREEDY,
    MEMORY_HOG,
    NOOP,
    PLUS,
    TOWARD_TARGET,
    config_for,
    fork_bomb,
    tcp_listener,
    write_submission,
)
from two_harnesses import gated_attack, kill_a_harness_mid_run, new_nonce, things_of

#: The image scripts/build_sandbox_images.sh builds (debootstrap bookworm minbase + python3-numpy + python3-pil).
IMAGE = "adv-harness/python-numpy-pil:bookworm"
KINDS = (SandboxKind.DOCKER, SandboxKind.GVISOR)


def _engine_problem(kind: SandboxKind) -> str:
    try:
        probe(kind)
    except RuntimeError as exc:
        return str(exc)
    return ""


@pytest.fixture(params=KINDS, ids=[k.value for k in KINDS])
def kind(request: pytest.FixtureRequest) -> SandboxKind:
    request.getfixturevalue("gvisor" if request.param is SandboxKind.GVISOR else "container_engine")
    return request.param


def write_container_submission(parent: Path, name: str, kind: str, body: str, *, image: str = IMAGE,
                               image_gpu: str = "") -> Path:
    """:func:`tiny_world.write_submission` whose metadata names a docker image."""
    folder = write_submission(parent, name, kind, body)
    metadata = json.loads((folder / "metadata.json").read_text())
    metadata.update(container=image, container_gpu=image_gpu or image)
    (folder / "metadata.json").write_text(json.dumps(metadata))
    return folder


def _board(results: Path) -> dict[str, dict[str, str]]:
    with open(results / "leaderboard.csv") as handle:
        return {row["name"]: row for row in csv.DictReader(handle)}


def _no_leftovers(result: CompetitionResult, results: Path) -> None:
    """Nothing of ``result``'s harness instance is left on the machine (other harnesses' things are not looked at)."""
    assert sandbox_docker.leftover_containers(result.instance) == [], "a container outlived its run"
    assert scratch_folders(results, result.instance) == [], "the harness could not remove a run's files"
    assert things_of(result.instance, results) == []


def test_leaderboard_matches_bubblewrap(kind: SandboxKind, world: dict[str, Path]) -> None:
    for name, body in (("noop", NOOP), ("plus", PLUS), ("greedy", GREEDY)):
        write_container_submission(world["attacks"], name, "attack", body)
    write_container_submission(world["attacks"], "toward", "targeted_attack", TOWARD_TARGET)
    write_container_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    write_container_submission(world["defenses"], "constant", "defense", CONSTANT_DEFENSE)
    reference_kind = SandboxKind.BWRAP if not _engine_problem(SandboxKind.BWRAP) else SandboxKind.NONE
    reference = run_competition(config_for(world, output_dir=world["root"] / "reference", sandbox=reference_kind),
                                echo=lambda _: None)
    result = run_competition(config_for(world, sandbox=kind), echo=lambda _: None)
    assert not [r for r in result.runs if r.problem], [(r.name, r.problem) for r in result.runs]
    assert len(result.runs) == len(reference.runs) >= 4 + 2
    for name in ("leaderboard.csv", "per_image.csv", "attack_images.csv", "accuracy_matrix.csv"):
        assert (world["results"] / name).read_text() == (world["root"] / "reference" / name).read_text(), name
    assert result.manifest.to_json()["protections"]["sandbox"] == kind.value
    logs = [(world["results"] / r.log).read_text() for r in result.runs]
    assert all(f"[{kind.value} sandbox]" in log.splitlines()[0] for log in logs)
    _no_leftovers(result, world["results"])


HOSTILE = """
import socket, time
inp, out = Path(sys.argv[1]), Path(sys.argv[2])
for p in sorted(inp.glob("*.png")):
    try:
        p.write_bytes(b"overwritten")
        print("WROTE INPUT")
    except OSError as exc:
        print("input write refused:", type(exc).__name__)
for target in ("/code/run.py", "/etc/passwd", "/written_to_root"):
    try:
        open(target, "a").write("vandal")
        print("WROTE", target)
    except OSError as exc:
        print("refused", target, type(exc).__name__)
for host in {hosts!r}:
    try:
        s = socket.create_connection((host, {port}), timeout=3)
        s.sendall(b"leak")
        print("CONNECTED", host)
    except OSError as exc:
        print("NO NETWORK", host, type(exc).__name__)
for p in sorted(inp.glob("*.png")):
    Image.open(p).save(out / p.name)
"""

FORK_BOMB = fork_bomb(child_seconds=60)

SLEEPER = """
import time
print("sleeping", flush=True)
time.sleep(600)
print("woke up")
"""


def _host_addresses() -> list[str]:
    """127.0.0.1 and the host's other IPv4 addresses (docker0's included), where a listener on 0.0.0.0 answers."""
    addresses = {"127.0.0.1"}
    try:
        addresses.update(info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET))
    except OSError:
        pass
    for line in Path("/proc/net/fib_trie").read_text().splitlines() if Path("/proc/net/fib_trie").exists() else []:
        parts = line.split()
        if parts[:1] == ["|--"] and len(parts) == 2 and parts[1].count(".") == 3 and not parts[1].endswith(".0") \
                and not parts[1].endswith(".255") and not parts[1].startswith("127."):
            addresses.add(parts[1])
    return sorted(addresses)


def test_hostile_submissions_are_contained(kind: SandboxKind, world: dict[str, Path]) -> None:
    write_container_submission(world["attacks"], "plus", "attack", PLUS)
    write_container_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    hosts = _host_addresses()
    write_container_submission(world["attacks"], "fork_bomb", "attack", FORK_BOMB)
    write_container_submission(world["attacks"], "memory_hog", "attack", MEMORY_HOG)
    write_container_submission(world["attacks"], "sleeper", "attack", SLEEPER)
    inputs_before = {p.name: p.read_bytes() for p in world["data"].iterdir()}
    policy = LimitPolicy(seconds_per_image=1.0, minimum_seconds=20.0, memory_mb=300, max_processes=40,
                         output_mb=20)
    with tcp_listener("0.0.0.0") as (port, accepted):
        write_container_submission(world["attacks"], "hostile", "attack", HOSTILE.format(hosts=hosts, port=port))
        result = run_competition(config_for(world, policy=policy, sandbox=kind), echo=lambda _: None)
    assert accepted == [], "a container reached a listener on the host"
    board = _board(world["results"])
    logs = {r.name: (world["results"] / r.log).read_text() for r in result.runs}
    hostile = logs["hostile"]
    assert "WROTE" not in hostile and hostile.count("input write refused: ") == 6, hostile
    assert all(f"refused {target} " in hostile for target in ("/code/run.py", "/etc/passwd",
                                                                       "/written_to_root")), hostile
    assert all(f"NO NETWORK {host}" in hostile for host in hosts) and "CONNECTED" not in hostile, hostile
    assert {p.name: p.read_bytes() for p in world["data"].iterdir()} == inputs_before
    assert board["hostile"]["failures"] == "" and board["plus"]["failures"] == ""
    assert board["memory_hog"]["failures"] == "1 run: memory limit of 300 MB exceeded; 6 images: missing output image"
    assert "allocated" not in logs["memory_hog"]
    # Stopped by the process limit (fork fails: EAGAIN) or, under gVisor, whose guest processes cost more memory,
    # possibly first by the memory limit; never allowed to fork 200 processes.
    fork_bomb = board["fork_bomb"]["failures"]
    assert "forked" not in logs["fork_bomb"]
    assert (fork_bomb.startswith("1 run: exit code 1") and "Resource temporarily unavailable" in logs["fork_bomb"]) \
        or fork_bomb.startswith("1 run: memory limit of 300 MB exceeded"), fork_bomb
    assert board["sleeper"]["failures"].startswith("1 run: timed out after 20 s")
    assert "sleeping" in logs["sleeper"] and "woke up" not in logs["sleeper"]
    for name in ("fork_bomb", "memory_hog", "sleeper"):
        assert board[name]["failed_images"] == "6"
    _no_leftovers(result, world["results"])


def test_missing_image_is_a_one_line_failure(kind: SandboxKind, world: dict[str, Path]) -> None:
    write_container_submission(world["attacks"], "plus", "attack", PLUS)
    write_container_submission(world["attacks"], "lost", "attack", PLUS, image="adv-harness/not-built:1")
    write_container_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    result = run_competition(config_for(world, sandbox=kind), echo=lambda _: None)
    board = _board(world["results"])
    expected = ("docker image 'adv-harness/not-built:1' is not on this machine: load it (docker load -i IMAGE.tar), "
                "build it (docker build -t adv-harness/not-built:1 FOLDER) or docker pull adv-harness/not-built:1 "
                "where a registry is reachable")
    (lost,) = [r for r in result.runs if r.name == "lost"]
    assert lost.problem == expected and lost.exit_code is None
    assert expected in (world["results"] / lost.log).read_text()
    assert board["lost"]["failures"].startswith(f"1 run: {expected}")
    assert board["plus"]["failures"] == ""
    _no_leftovers(result, world["results"])


FAKE_DOCKER = """#!/bin/sh
echo "$@" >> {log}
case "$1" in
  info) echo '{{"runc":{{}},"runsc":{{}}}}' ;;
esac
exit 0
"""


@pytest.mark.parametrize("sandbox_kind", KINDS, ids=[k.value for k in KINDS])
def test_gpu_image_and_devices_on_the_command_line(sandbox_kind: SandboxKind, world: dict[str, Path],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """With GPUs listed by nvidia-smi, docker runs ``container_gpu`` with ``--gpus device=ID``; gVisor (no GPU in
    runsc) runs ``container`` without. Fake ``docker`` and ``nvidia-smi`` record the command lines."""
    bin_dir = world["root"] / "bin"
    bin_dir.mkdir()
    calls = world["root"] / "docker_calls.txt"
    (bin_dir / "docker").write_text(FAKE_DOCKER.format(log=calls))
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\necho 'GPU 0: Fake A (UUID: GPU-0)'\n"
                                        "echo 'GPU 1: Fake B (UUID: GPU-1)'\n")
    for tool in ("docker", "nvidia-smi"):
        (bin_dir / tool).chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    probe.cache_clear()
    sandbox_docker._image_present.cache_clear()
    try:
        write_container_submission(world["attacks"], "plus", "attack", PLUS, image="img/cpu:1",
                                   image_gpu="img/gpu:1")
        write_container_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE, image="img/cpu:1",
                                   image_gpu="img/gpu:1")
        result = run_competition(config_for(world, sandbox=sandbox_kind, jobs=2), echo=lambda _: None)
    finally:
        probe.cache_clear()
        sandbox_docker._image_present.cache_clear()
    assert result.manifest.to_json()["gpus"] == ["0", "1"]
    runs = [line.split() for line in calls.read_text().splitlines() if line.startswith("run ")]
    assert len(runs) == len(result.runs) == 2
    for argv in runs:
        assert argv[argv.index("--runtime") + 1] == sandbox_docker.RUNTIMES[sandbox_kind]
        assert "--network=none" in argv and "--read-only" in argv
        assert not any(a.startswith("CUDA_VISIBLE_DEVICES") for a in argv)
        if sandbox_kind is SandboxKind.DOCKER:
            assert argv[argv.index("--gpus") + 1] in ("device=0", "device=1")
            assert "img/gpu:1" in argv and "img/cpu:1" not in argv
        else:
            assert "--gpus" not in argv and "img/cpu:1" in argv and "img/gpu:1" not in argv
    removed = [line for line in calls.read_text().splitlines() if line.startswith("rm -f")]
    assert len(removed) == 2  # every container is removed after its run


PRIVATE_FILE_READER = """
inp, out = Path(sys.argv[1]), Path(sys.argv[2])
offset = int(Path("weights/offset.txt").read_text())      # a file only its owner may read (mode 600)
for p in sorted(inp.glob("*.png")):
    x = np.asarray(Image.open(p)).astype(int)
    Image.fromarray(np.clip(x + offset, 0, 255).astype(np.uint8)).save(out / p.name)
"""


def test_owner_only_files_of_a_submission_are_readable_inside(kind: SandboxKind, world: dict[str, Path]) -> None:
    """Participants' files keep their modes in the fresh copy; the container's unprivileged user must still read
    them (and the input), whoever runs the harness."""
    folder = write_container_submission(world["attacks"], "private", "attack", PRIVATE_FILE_READER)
    (folder / "weights").mkdir(mode=0o700)
    (folder / "weights" / "offset.txt").write_text("4")
    (folder / "weights" / "offset.txt").chmod(0o600)
    write_container_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    result = run_competition(config_for(world, sandbox=kind), echo=lambda _: None)
    assert [(r.name, r.problem) for r in result.runs if r.problem] == []
    verdicts = [r for r in result.attack_images if r.attack == "private"]
    assert len(verdicts) == 6 and {r.linf for r in verdicts} == {4}
    _no_leftovers(result, world["results"])


def test_containers_of_a_killed_harness_are_removed(kind: SandboxKind) -> None:
    """A harness killed mid-run cannot remove its containers; the next one to start removes them, and only those
    of dead harness instances on this host."""
    own = Instance.create()
    dead_pid = 2 ** 22 + 17  # above pid_max's default: no such process
    assert not Path(f"/proc/{dead_pid}").exists()
    labels = {  # name suffix: (instance label, pid label)
        "dead": (replace(own, pid=dead_pid).tag, str(dead_pid)),
        "reused": (replace(own, start=own.start + 1).tag, str(own.pid)),  # this pid, started at another time
        "alive": (own.tag, str(own.pid)),
        "other-harness": (Instance.create().tag, str(own.pid)),  # a live harness beside this one
        "elsewhere": (replace(Instance.create(), host="another.host", pid=dead_pid).tag, str(dead_pid)),
        "unreadable": ("not-a-tag", str(dead_pid)),
        "legacy-dead": ("", str(dead_pid)),  # started by a harness before instance identities
        "legacy-alive": ("", str(own.pid)),
    }
    names = {suffix: f"adv-harness-test-{own.token}-{suffix}" for suffix in labels}
    for suffix, (tag, pid) in labels.items():
        instance_label = ["--label", f"{sandbox_docker.INSTANCE_LABEL}={tag}"] if tag else []
        created = sandbox_docker._docker("create", "--name", names[suffix], "--label", f"{sandbox_docker.LABEL}=test",
                                         *instance_label, "--label", f"adv-harness.pid={pid}", IMAGE)
        assert created.returncode == 0, created.stderr
    try:
        removed = sandbox_docker.remove_orphans()
        assert {names["dead"], names["reused"], names["legacy-dead"]} <= set(removed)
        assert not {names[s] for s in ("alive", "other-harness", "elsewhere", "unreadable", "legacy-alive")} \
            & set(removed)
        assert sandbox_docker.leftover_containers(own) == [names["alive"]]
    finally:
        for name in names.values():
            sandbox_docker.remove_container(name)
    assert sandbox_docker.leftover_containers(own) == []


def test_two_competitions_at_once(kind: SandboxKind, world: dict[str, Path]) -> None:
    """Each competition's leftover check, made while the other's container still runs, sees only its own."""
    two_competitions_at_once(world, kind, write_container_submission)


def test_a_killed_harness_container_dies_with_it(kind: SandboxKind, world: dict[str, Path]) -> None:
    """A SIGKILLed harness's running container is removed by its watchdog, with no other harness started (the
    time limit, 300 s, is far off); the next harness then finds nothing of it left."""
    nonce = new_nonce()
    write_container_submission(world["attacks"], "gated", "attack", gated_attack(nonce))
    write_container_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    killed = kill_a_harness_mid_run(data=world["data"], attacks=world["attacks"], defenses=world["defenses"],
                                    results=world["results"], sandbox=kind.value, nonce=nonce)
    deadline = time.monotonic() + 60
    while sandbox_docker.leftover_containers(killed) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert sandbox_docker.leftover_containers(killed) == [], "the container outlived its harness by 60 s"
    others = world["root"] / "other_attacks"
    write_container_submission(others, "plus", "attack", PLUS)
    result = run_competition(config_for(world, attacks_dirs=(others,), output_dir=world["root"] / "next",
                                        sandbox=kind), echo=lambda _: None)
    assert not [r for r in result.runs if r.problem]
    assert things_of(killed, world["results"]) == []
    _no_leftovers(result, world["root"] / "next")


def test_engine_problems_are_one_line_errors_with_the_fix(world: dict[str, Path],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """No docker client, or an engine without the runsc runtime: probe refuses with what to run."""
    bin_dir = world["root"] / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    probe.cache_clear()
    try:
        with pytest.raises(RuntimeError, match=r"^--sandbox docker needs the docker client: run "
                                               r"scripts/build_sandbox_images.sh as root"):
            probe(SandboxKind.DOCKER)
        (bin_dir / "docker").write_text(FAKE_DOCKER.replace('"runsc":{{}}', '"other":{{}}').format(
            log=world["root"] / "calls.txt"))
        (bin_dir / "docker").chmod(stat.S_IRWXU)
        probe.cache_clear()
        assert probe(SandboxKind.DOCKER).kind is SandboxKind.DOCKER
        with pytest.raises(RuntimeError, match=r"^--sandbox gvisor needs docker's 'runsc' runtime .*"
                                               r"build_sandbox_images.sh"):
            probe(SandboxKind.GVISOR)
    finally:
        probe.cache_clear()


CPU_BURNER = """
print("burning", flush=True)
while True:
    pass
"""


def test_cpu_time_limit(kind: SandboxKind, world: dict[str, Path]) -> None:
    """RLIMIT_CPU (``--ulimit cpu``) stops a CPU burner under runc; gVisor's guest does not enforce it, and the
    wall-clock limit stops it there."""
    write_container_submission(world["attacks"], "burner", "attack", CPU_BURNER)
    write_container_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    policy = LimitPolicy(seconds_per_image=1.0, minimum_seconds=30.0, cpu_factor=0.1)  # 3 CPU seconds
    result = run_competition(config_for(world, policy=policy, sandbox=kind), echo=lambda _: None)
    (burner,) = [r for r in result.runs if r.name == "burner"]
    log = (world["results"] / burner.log).read_text()
    assert "burning" in log
    if kind is SandboxKind.DOCKER:
        assert burner.problem == "CPU time limit of 3 s reached" and not burner.timed_out, burner
        assert burner.seconds < 25, burner
    else:
        assert burner.problem == "timed out after 30 s" and burner.timed_out, burner
    _no_leftovers(result, world["results"])


#: Attack that writes 10 MB files to the image's ``VOLUME /scratch``, 900 MB in all, then copies its input.
VOLUME_FILLER = """
import errno
mounts = [line.split() for line in open("/proc/self/mounts")]
print("scratch is", [m[2] for m in mounts if m[1] == "/scratch"], flush=True)
block = b"x" * (10 << 20)
written = 0
try:
    while written < 900:
        with open(f"/scratch/fill{written}", "wb") as handle:
            handle.write(block)
        written += 10
        print("wrote", written, "MB", flush=True)
    print("DONE", written, "MB")
except OSError as exc:
    print("stopped at", written, "MB:", errno.errorcode.get(exc.errno, exc.errno), flush=True)
inp, out = Path(sys.argv[1]), Path(sys.argv[2])
for p in sorted(inp.glob("*.png")):
    Image.open(p).save(out / p.name)
"""
VOLUME_IMAGE = "adv-harness/test-volume:1"


@pytest.fixture(scope="module")
def volume_image(container_engine: object) -> str:
    """:data:`IMAGE` plus ``VOLUME /scratch`` and ``VOLUME /data/cache/``, writable by everyone (a volume gets the
    image's folder's mode), built locally (no registry)."""
    dockerfile = (f"FROM {IMAGE}\nRUN mkdir -p /scratch /data/cache && chmod 1777 /scratch /data/cache\n"
                  "VOLUME /scratch\nVOLUME [\"/data/cache/\"]\n")
    built = subprocess.run(["docker", "build", "-q", "-t", VOLUME_IMAGE, "-"], input=dockerfile, text=True,
                           capture_output=True, timeout=600, check=False)
    assert built.returncode == 0, built.stderr
    return VOLUME_IMAGE


def _volumes() -> set[str]:
    listing = sandbox_docker._docker("volume", "ls", "-q")
    assert listing.returncode == 0, listing.stderr
    return set(listing.stdout.split())


def test_an_image_volume_is_a_bounded_tmpfs(kind: SandboxKind, world: dict[str, Path], volume_image: str) -> None:
    """A path the image declares as a ``VOLUME`` is a tmpfs within the run's memory limit, never an anonymous
    volume on the host disk: writing 900 MB there stops below the 300 MB limit."""
    assert sandbox_docker.image_volumes(volume_image) == ("/data/cache", "/scratch")
    write_container_submission(world["attacks"], "filler", "attack", VOLUME_FILLER, image=volume_image)
    write_container_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    volumes_before = _volumes()
    policy = LimitPolicy(seconds_per_image=5.0, minimum_seconds=120.0, memory_mb=300, output_mb=50)
    result = run_competition(config_for(world, policy=policy, sandbox=kind), echo=lambda _: None)
    assert _volumes() == volumes_before, "an anonymous volume was created"
    (filler,) = [r for r in result.runs if r.name == "filler"]
    log = (world["results"] / filler.log).read_text()
    assert "scratch is ['tmpfs']" in log, log
    assert "DONE" not in log, log
    written = [int(line.split()[1]) for line in log.splitlines() if line.startswith("wrote ")]
    assert max(written, default=0) < 300, log
    assert "stopped at" in log or filler.problem == "memory limit of 300 MB exceeded", (filler, log)
    _no_leftovers(result, world["results"])
