"""One identity per harness instance: what it makes carries it, sweeps remove only dead instances' things, and
two harnesses on one machine never fail each other."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import pytest

from harness.cgroups import CgroupJail
from harness.cleanup import remove_tree
from harness.competition import run_competition, sweep_dead
from harness.instance import Instance, InstanceError
from harness.limits import Limits
from harness.privilege import RUN_GID, RUN_UID, STAGING_PREFIX, stage_command
from harness.sandboxes.base import SandboxKind
from harness.sandboxes.factory import probe
from harness.workspace import SCRATCH_PREFIX, Workspace
from machine import needs_bwrap
from tiny_world import BUCKET_DEFENSE, PLUS, config_for, write_submission
from two_harnesses import (
    PATIENCE,
    Competition,
    gated_attack,
    kill_a_harness_mid_run,
    new_nonce,
    open_gate,
    things_of,
    wait_for_gates,
)

ROOT = Path(__file__).resolve().parents[2]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_tag_round_trip() -> None:
    instance = Instance.create()
    assert Instance.parse(instance.tag) == instance
    assert instance.pid == os.getpid() and instance.start > 0 and len(instance.token) == 8
    odd = Instance(host="a.b.c", pid=1, start=0, token="0123abcd")
    assert Instance.parse(odd.tag) == odd and odd.tag == "a.b.c-1-0-0123abcd"
    assert Instance.create().token != instance.token


@pytest.mark.parametrize("tag", ["", "host-1-2", "host-1-2-ABCDEFGH", "host-x-2-0123abcd", "host-1-2-0123abc",
                                 "-1-2-0123abcd", "ho/st-1-2-0123abcd", "host-1-2-0123abcd-extra"])
def test_parse_refuses_what_is_not_a_tag(tag: str) -> None:
    with pytest.raises(InstanceError, match="not a harness instance tag"):
        Instance.parse(tag)


def test_a_host_name_with_dashes_still_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "build-box_7")
    instance = Instance.create()
    assert instance.host == "build.box.7" and Instance.parse(instance.tag) == instance and instance.alive()


def test_liveness() -> None:
    own = Instance.create()
    assert own.alive() and not own.dead()
    reused = replace(own, start=own.start + 1)  # this pid, another start time: the pid was reused
    assert not reused.alive() and reused.dead()
    gone = replace(own, pid=_dead_pid())
    assert not gone.alive() and gone.dead()
    elsewhere = replace(own, host="another.host", pid=_dead_pid())
    assert not elsewhere.alive() and not elsewhere.dead()  # cannot be told here: never swept


def test_a_worker_adopts_the_competition_token() -> None:
    own = Instance.create()
    adopted = subprocess.run([sys.executable, "-c", "import sys; from harness.instance import Instance; "
                              "print(Instance.parse(sys.argv[1]).adopted().tag)", own.tag], cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                             check=True).stdout.strip()
    worker = Instance.parse(adopted)
    assert worker.token == own.token and worker.pid != own.pid and worker.dead()  # the child has exited
    assert own.adopted() == own


# A harness process that makes a scratch folder, a staging folder and a cgroup with the product code, prints its
# tag and waits to be killed.
_MAKE_AND_WAIT = """
import os, sys, time
from pathlib import Path
from harness.instance import Instance
from harness.cgroups import CgroupJail
from harness.sandboxes.base import SandboxKind
from harness.sandboxes.factory import probe
from harness.limits import Limits
from harness.privilege import RUN_GID, RUN_UID, stage_command
from harness.workspace import Workspace
instance = Instance.create()
workspace = Workspace(Path(sys.argv[1]), instance)
os.close(workspace.open_scratch())
(workspace.scratch / "unit" / "output").mkdir(parents=True)
stage_command(["bwrap", "--ro-bind", sys.argv[2], "/code", "--", "true"], uid=RUN_UID, gid=RUN_GID,
              instance=instance)
CgroupJail(probe(SandboxKind.NONE).cgroup, Limits(60.0, max_processes=10), instance=instance)
print(instance.tag, flush=True)
time.sleep(600)
"""


def _make(instance: Instance, results: Path, private: Path) -> None:
    """What a run of ``instance`` makes: scratch, staging, cgroup folders."""
    workspace = Workspace(results, instance)
    os.close(workspace.open_scratch())
    (workspace.scratch / "unit").mkdir()
    stage_command(["bwrap", "--ro-bind", str(private), "/code", "--", "true"], uid=RUN_UID, gid=RUN_GID,
                  instance=instance)
    CgroupJail(probe(SandboxKind.NONE).cgroup, Limits(60.0, max_processes=10), instance=instance)


def _remove(things: list[str]) -> None:
    for thing in things:
        if thing.startswith("/sys/fs/cgroup/"):
            os.rmdir(thing)
        else:
            assert remove_tree(Path(thing)) == ""


def test_the_sweep_removes_a_killed_harness_things_and_no_live_ones(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    results = tmp_path / "results"
    private = tmp_path / "private" / "code"
    private.mkdir(parents=True)
    (tmp_path / "private").chmod(0o700)  # the run uid cannot reach it: stage_command stages it
    staging = Path(tempfile.mkdtemp(prefix="staging-", dir="/tmp"))
    staging.chmod(0o755)
    monkeypatch.setattr("tempfile.tempdir", str(staging))
    protections = probe(SandboxKind.NONE)  # probed (and its own sweep done) before any harness below is killed
    child = subprocess.Popen([sys.executable, "-c", _MAKE_AND_WAIT, str(results), str(private)], cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(staging)},
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    killed = Instance.parse(child.stdout.readline().strip())
    child.send_signal(signal.SIGKILL)
    child.wait()
    live = Instance.create()
    reused = replace(live, start=live.start + 1)  # a dead harness whose pid is now this process's
    other = Instance.create()  # a second live harness in this process
    with monkeypatch.context() as setup:  # stage_command sweeps before it stages: not while the scene is set
        setup.setattr("harness.privilege.sweep_stale_staging", lambda _parent: [])
        for instance in (live, reused, other):
            _make(instance, results, private)
    made = {instance: things_of(instance, results) for instance in (killed, live, reused, other)}
    for instance, found in made.items():
        assert len([p for p in found if Path(p).name.startswith(f"{SCRATCH_PREFIX}{instance.tag}-")]) == 1, found
        assert len([p for p in found if p.startswith(str(staging / STAGING_PREFIX))]) == 1, found
        assert len([p for p in found if p.startswith("/sys/fs/cgroup/")]) == len(set(protections.cgroup.values()))
    try:
        swept = sweep_dead(Workspace(results, live), protections)

        assert things_of(killed, results) == [] and things_of(reused, results) == []
        assert set(made[killed] + made[reused]) <= set(swept)  # with whatever else dead harnesses left here
        assert not set(made[live] + made[other]) & set(swept)
        assert things_of(live, results) == made[live] and things_of(other, results) == made[other]
    finally:
        _remove(things_of(live, results) + things_of(other, results))
        staging.rmdir()


@needs_bwrap
def test_scratch_of_a_killed_harness_is_swept_by_the_next_one(world: dict[str, Path]) -> None:
    """A harness SIGKILLed mid-run leaves its scratch folder; the next competition, into another results folder,
    removes it (and the killed one's other things), not only when the same results folder is used again."""
    nonce = new_nonce()
    write_submission(world["attacks"], "gated", "attack", gated_attack(nonce))
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    sandbox = SandboxKind.BWRAP
    killed = kill_a_harness_mid_run(data=world["data"], attacks=world["attacks"], defenses=world["defenses"],
                                    results=world["results"], sandbox=sandbox.value, nonce=nonce)
    left = things_of(killed, world["results"])
    assert any("adv-harness-scratch-" in p for p in left), left

    others = world["root"] / "other_attacks"
    write_submission(others, "plus", "attack", PLUS)
    result = run_competition(config_for(world, attacks_dirs=(others,), output_dir=world["root"] / "next",
                                        sandbox=sandbox), echo=lambda _: None)

    assert not [r for r in result.runs if r.problem]
    assert things_of(killed, world["results"]) == []
    assert things_of(result.instance, world["root"] / "next") == []


@needs_bwrap
def test_two_competitions_at_once_under_bubblewrap(world: dict[str, Path]) -> None:
    two_competitions_at_once(world, SandboxKind.BWRAP, write_submission)


def two_competitions_at_once(world: dict[str, Path], sandbox: SandboxKind, write: Callable[..., Path]) -> None:
    """Two competitions on one machine at once (threads of this process, each its own harness instance) give
    the leaderboard one alone gives; each one's leftover check, made while the other still runs, sees only its
    own things. Shared with tests/test_sandbox_containers.py (docker, gVisor)."""
    from harness.limits import LimitPolicy
    nonce = new_nonce()
    write(world["attacks"], "gated", "attack", gated_attack(nonce))
    write(world["attacks"], "plus", "attack", PLUS)
    write(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    policy = LimitPolicy(seconds_per_image=5.0, minimum_seconds=300.0)  # gated runs wait for the test
    outputs = {name: world["root"] / name for name in ("alone", "first", "second")}

    alone = Competition(config_for(world, output_dir=outputs["alone"], sandbox=sandbox, policy=policy))
    alone.start()
    (gate,) = wait_for_gates(outputs["alone"], nonce, 1, running=alone.is_alive).values()
    open_gate(gate)
    reference = alone.outcome()
    assert not [r for r in reference.runs if r.problem], [(r.name, r.problem) for r in reference.runs]
    assert things_of(reference.instance, outputs["alone"]) == []

    first = Competition(config_for(world, output_dir=outputs["first"], sandbox=sandbox, policy=policy))
    second = Competition(config_for(world, output_dir=outputs["second"], sandbox=sandbox, policy=policy))
    first.start()
    second.start()
    gates = wait_for_gates(outputs["first"], nonce, 2, running=lambda: first.is_alive() and second.is_alive())
    released, held = sorted(gates)
    open_gate(gates[released])
    done = _first_to_end(first, second)
    running = second if done is first else first
    finished = done.outcome()
    assert finished.instance.tag == released
    assert running.is_alive()  # held at its gate: its things are on the machine now
    assert things_of(Instance.parse(held), running.config.output_dir) != []
    assert things_of(finished.instance, done.config.output_dir) == []  # sees only its own

    open_gate(gates[held])
    other = running.outcome()
    assert other.instance.tag == held
    assert things_of(other.instance, running.config.output_dir) == []
    for result in (finished, other):
        assert not [r for r in result.runs if r.problem], [(r.name, r.problem) for r in result.runs]
    for name in ("leaderboard.csv", "per_image.csv", "attack_images.csv", "accuracy_matrix.csv"):
        expected = (outputs["alone"] / name).read_text()
        assert (outputs["first"] / name).read_text() == expected == (outputs["second"] / name).read_text(), name


def _first_to_end(*competitions: Competition) -> Competition:
    """The competition that ends first (the others are held at their gates)."""
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        for competition in competitions:
            if not competition.is_alive():
                return competition
        time.sleep(0.05)
    raise AssertionError(f"no competition ended within {PATIENCE} s")
