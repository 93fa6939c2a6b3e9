"""The fault suite: submissions that misbehave in every way we know of.

For each one the run finishes, the failure is recorded with a plain reason (leaderboard + log), the
well-behaved submissions are scored exactly as without it, and nothing outside the run's sandbox changes.
Isolation checks (filesystem, network) need bubblewrap and are skipped where it cannot run.
"""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

import pytest

from harness.competition import run_competition
from harness.limits import LimitPolicy
from harness.sandboxes.base import SandboxKind
from harness.sandboxes.factory import probe
from machine import needs_bwrap
from tiny_world import BUCKET_DEFENSE, MEMORY_HOG, PLUS, config_for, fork_bomb, tcp_listener, write_submission

HAVE_CGROUPS = bool(probe(SandboxKind.NONE).cgroup)


def snapshot(root: Path, *, skip: Path) -> dict[str, str]:
    """Path → content hash (or 'dir'/'link') of everything below ``root`` except ``skip``."""
    state = {}
    for path in sorted(root.rglob("*")):
        if path == skip or skip in path.parents:
            continue
        if path.is_symlink():
            state[str(path)] = "link"
        elif path.is_dir():
            state[str(path)] = "dir"
        else:
            state[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def leaderboard(results: Path) -> dict[str, dict[str, str]]:
    with open(results / "leaderboard.csv") as handle:
        return {row["name"]: row for row in csv.DictReader(handle)}


BAD_FORMATS = """
inp, out = Path(sys.argv[1]), Path(sys.argv[2])
files = sorted(inp.glob("*.png"))
x = np.asarray(Image.open(files[0]))
Image.fromarray(x).save(out / files[0].name, format="JPEG")            # JPEG bytes named .png
Image.fromarray(x[..., 0].astype(np.uint16) * 256).save(out / files[1].name)  # 16-bit grayscale (8-bit: converted)
Image.fromarray(np.zeros((3, 3, 3), np.uint8)).save(out / files[2].name)  # wrong size
(out / files[3].name).write_bytes(b"garbage")                         # not an image
os.symlink(files[4], out / files[4].name)                              # symlink to the clean input
Image.fromarray(x).save(out / "extra_file.png")                        # extra files are ignored
try:
    Image.fromarray(x).save(out / ".." / "escaped.png")                # '../' outside the output folder
except OSError as exc:
    print("escape failed:", exc)
for p in files[5:]:
    Image.open(p).save(out / p.name)
"""

VANDAL = """
inp, out = Path(sys.argv[1]), Path(sys.argv[2])
for p in sorted(inp.glob("*.png")):
    try:
        p.write_bytes(b"overwritten")                                  # write into the input folder
        print("WROTE INPUT")
    except OSError as exc:
        print("input write refused:", type(exc).__name__)
for target in {targets!r}:
    try:
        Path(target).write_text("vandal was here")
        print("WROTE", target)
    except OSError as exc:
        print("refused", target, type(exc).__name__)
for p in sorted(inp.glob("*.png")):
    try:
        Image.open(p).save(out / p.name)
    except Exception:
        pass
"""

SNOOP = """
inp, out = Path(sys.argv[1]), Path(sys.argv[2])
for secret in {secrets!r}:
    try:
        data = Path(secret).read_bytes() if Path(secret).is_file() else os.listdir(secret)
        print("READ", secret, len(data))
    except OSError as exc:
        print("HIDDEN", secret, type(exc).__name__)
try:
    s = socket.create_connection(("127.0.0.1", {port}), timeout=3)
    s.sendall(b"leak")
    print("CONNECTED")
except OSError as exc:
    print("NO NETWORK", type(exc).__name__)
for p in sorted(inp.glob("*.png")):
    Image.open(p).save(out / p.name)
"""

OUTPUT_HOG = """
out = Path(sys.argv[2])
chunk = b"x" * (1 << 20)
with open(out / "huge.bin", "wb") as f:
    for _ in range(64):
        f.write(chunk)
        f.flush()
import time
time.sleep(30)
"""

FORK_BOMB = fork_bomb(child_seconds=20)


@pytest.fixture
def fault_world(world: dict[str, Path]) -> dict[str, Path]:
    write_submission(world["attacks"], "plus", "attack", PLUS)
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    return world


def _policy() -> LimitPolicy:
    # 30 s per run: well-behaved submissions start in ~1 s even on a loaded 2-core machine; the faulty ones are
    # stopped by their own limit (output, memory, processes), not by time.
    return LimitPolicy(seconds_per_image=1.0, minimum_seconds=30.0, memory_mb=600, max_processes=40,
                       output_mb=20)


def test_bad_outputs_are_refereed_and_recorded(fault_world: dict[str, Path]) -> None:
    baseline = run_competition(config_for(fault_world, output_dir=fault_world["root"] / "base"),
                               echo=lambda _: None)
    before = snapshot(fault_world["root"], skip=fault_world["results"])
    before = {k: v for k, v in before.items() if "/base" not in k}
    write_submission(fault_world["attacks"], "bad_formats", "attack", BAD_FORMATS)
    before.update(snapshot(fault_world["attacks"] / "bad_formats", skip=fault_world["results"]))
    before[str(fault_world["attacks"] / "bad_formats")] = "dir"
    result = run_competition(config_for(fault_world, policy=_policy()), echo=lambda _: None)

    reasons = {r.image_id: r.problem for r in result.attack_images if r.attack == "bad_formats"}
    assert reasons == {"img0": "not a PNG file (format JPEG)", "img1": "16-bit PNG, expected 8-bit RGB",
                       "img2": "wrong size 3x3, expected 8x8", "img3": "unreadable PNG (not an image file)",
                       "img4": "output is a symbolic link", "img5": ""}
    row = leaderboard(fault_world["results"])["bad_formats"]
    assert row["failed_images"] == "5" and "1 image: output is a symbolic link" in row["failures"]
    # The well-behaved pair is scored exactly as without the bad attack.
    assert [r for r in result.predictions if r.attack in ("", "plus")] == [
        r for r in baseline.predictions if r.attack in ("", "plus")]
    after = {k: v for k, v in snapshot(fault_world["root"], skip=fault_world["results"]).items() if "/base" not in k}
    assert after == before


@needs_bwrap
def test_sandbox_blocks_vandalism_snooping_and_network(fault_world: dict[str, Path]) -> None:
    root = fault_world["root"]
    canary = root / "canary.txt"
    targets = [str(canary), str(fault_world["data"] / "dev_dataset.csv"), "/code/run.py",
               str(Path(__file__).resolve())]
    secrets = [str(fault_world["data"] / "dev_dataset.csv"), str(fault_world["data"]),
               str(fault_world["defenses"] / "bucket" / "run.py"), str(fault_world["results"]),
               str(Path.home() / ".cache"), str(Path(__file__).resolve().parents[2] / "sample_data")]
    with tcp_listener("127.0.0.1") as (port, accepted):
        write_submission(fault_world["attacks"], "vandal", "attack", VANDAL.format(targets=targets))
        write_submission(fault_world["attacks"], "snoop", "attack",
                         "import socket\n" + SNOOP.format(secrets=secrets, port=port))
        write_submission(fault_world["defenses"], "snoop_defense", "defense",
                         "import socket\n" + SNOOP.format(secrets=secrets, port=port).replace(
                             "Image.open(p).save(out / p.name)", "open(out, 'a').write(f'{p.name},0\\n')"))
        before = snapshot(root, skip=fault_world["results"])
        result = run_competition(config_for(fault_world, policy=_policy(), sandbox=SandboxKind.BWRAP),
                                 echo=lambda _: None)
    assert accepted == [], "a sandboxed submission reached a loopback listener"
    assert snapshot(root, skip=fault_world["results"]) == before
    assert not canary.exists()
    logs = {r.name: (fault_world["results"] / r.log).read_text() for r in result.runs}
    assert "WROTE" not in logs["vandal"] and "input write refused" in logs["vandal"]
    for name in ("snoop", "snoop_defense"):
        assert "READ" not in logs[name], logs[name]
        assert "NO NETWORK" in logs[name] and "CONNECTED" not in logs[name]
        for secret in secrets:
            assert f"HIDDEN {secret}" in logs[name]
    # The vandal's outputs are its (untouched) inputs: a clean no-op, scored as such.
    assert not any(r.problem for r in result.attack_images if r.attack == "vandal")
    assert result.manifest.to_json()["protections"]["sandbox"] == "bwrap"


def test_resource_limits(fault_world: dict[str, Path]) -> None:
    baseline = run_competition(config_for(fault_world, output_dir=fault_world["root"] / "base"),
                               echo=lambda _: None)
    write_submission(fault_world["attacks"], "output_hog", "attack", OUTPUT_HOG)
    write_submission(fault_world["attacks"], "fork_bomb", "attack", FORK_BOMB)
    write_submission(fault_world["attacks"], "memory_hog", "attack", MEMORY_HOG)
    result = run_competition(config_for(fault_world, policy=_policy()), echo=lambda _: None)
    board = leaderboard(fault_world["results"])
    logs = {r.name: (fault_world["results"] / r.log).read_text() for r in result.runs}

    assert board["output_hog"]["failures"].startswith("1 run: output reached the 20 MB limit; run stopped")
    assert not list((fault_world["results"] / "store").rglob("huge.bin"))
    memory = board["memory_hog"]["failures"]
    assert memory.startswith("1 run:") and ("memory limit of 600 MB" in memory or "MemoryError" in logs["memory_hog"])
    assert "allocated" not in logs["memory_hog"]
    if HAVE_CGROUPS or os.geteuid() == 0:  # a root harness always has the pids controller here
        assert "process limit of 40 reached" in board["fork_bomb"]["failures"]
        assert "forked" not in logs["fork_bomb"]
    for name in ("output_hog", "fork_bomb", "memory_hog"):
        assert board[name]["failed_images"] == "6"
    assert [r for r in result.predictions if r.attack in ("", "plus")] == [
        r for r in baseline.predictions if r.attack in ("", "plus")]
