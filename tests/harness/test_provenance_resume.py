"""Provenance-aware resume: a stored record is reused only when it was made under conditions at least as strict as
those asked now (:mod:`harness.provenance`); otherwise its unit reruns and a one-line note says why."""

from __future__ import annotations

import json
import subprocess
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from harness.competition import CompetitionResult, rerun_lines, run_competition
from harness.limits import LimitPolicy
from harness.parallelism import CpuShare
from harness.provenance import AppliedLimits, ManifestConditions, Provenance, applied_limits
from harness.records import RunRecord, decode_record
from harness.sandboxes.base import Protections, SandboxKind
from harness.sandboxes.docker import image_id
from machine import CONTAINER_IMAGE, needs_bwrap
from tiny_world import BUCKET_DEFENSE, NOOP, config_for, write_submission

FIXTURE_MANIFEST = Path(__file__).resolve().parents[1] / "fixtures" / "results_4fe88fa" / "results" / "manifest.json"

LIMITS = AppliedLimits(wall_seconds=60.0, cpu_seconds=240.0, cpu_seconds_alone=240.0, memory_mb=8192,
                       max_processes=256, output_mb=1024, output_files=10_000, log_mb=64, cpu_share=None,
                       enforced=("max_processes", "memory_mb"))
BASE = Provenance(sandbox="bwrap", limits=LIMITS)


def made(**changes: object) -> Provenance:
    """:data:`BASE` with some fields changed (limit fields go to its limits)."""
    limit_fields = {k: v for k, v in changes.items() if k in AppliedLimits.__dataclass_fields__}
    own = {k: v for k, v in changes.items() if k not in limit_fields}
    return replace(BASE, limits=replace(LIMITS, **limit_fields), **own)  # type: ignore[arg-type]


# (record, asked, the record's run failed, expected reason: "" = reused)
RULES = [
    pytest.param(BASE, BASE, False, "", id="same-conditions"),
    pytest.param(BASE, BASE, True, "", id="failed-same-conditions"),
    pytest.param(made(sandbox="none"), BASE, False, "made without a sandbox", id="none-then-bwrap"),
    pytest.param(BASE, made(sandbox="none"), False, "", id="bwrap-then-none"),
    pytest.param(BASE, made(sandbox="none"), True, "failed under bwrap, no sandbox asked (it may pass now)",
                 id="failed-bwrap-then-none"),
    pytest.param(made(sandbox="docker"), made(sandbox="gvisor"), False, "made under docker, gvisor asked",
                 id="docker-then-gvisor"),
    pytest.param(made(sandbox="gvisor"), made(sandbox="docker"), False, "", id="gvisor-then-docker"),
    pytest.param(BASE, made(sandbox="docker"), False, "made under bwrap, docker asked", id="bwrap-vs-docker"),
    pytest.param(made(sandbox="gvisor"), BASE, False, "made under gvisor, bwrap asked", id="gvisor-vs-bwrap"),
    pytest.param(made(sandbox="none"), made(sandbox="gvisor"), False, "made without a sandbox", id="none-then-gvisor"),
    pytest.param(made(wall_seconds=120.0), BASE, False, "made with a 120 s limit, 60 s asked", id="looser-wall"),
    pytest.param(BASE, made(wall_seconds=120.0), False, "", id="stricter-wall"),
    pytest.param(BASE, made(wall_seconds=120.0), True, "failed with a 60 s limit, 120 s asked (it may pass now)",
                 id="failed-stricter-wall"),
    pytest.param(made(wall_seconds=120.0), BASE, True, "made with a 120 s limit, 60 s asked",
                 id="failed-looser-wall"),
    pytest.param(made(cpu_seconds_alone=480.0), BASE, False, "made with a CPU-time limit of 480 s, 240 s asked",
                 id="looser-cpu-time"),
    pytest.param(made(memory_mb=None), BASE, False, "made with memory_mb no limit, 8192 asked",
                 id="unlimited-memory"),
    pytest.param(BASE, made(memory_mb=None), False, "", id="memory-unlimited-asked"),
    pytest.param(made(memory_mb=4096, enforced=("max_processes",)), BASE, False,
                 "made with memory_mb unenforced, enforced asked", id="unenforced-memory"),
    pytest.param(BASE, made(enforced=("max_processes",)), False, "", id="enforced-memory-unenforced-asked"),
    pytest.param(BASE, made(enforced=("max_processes",)), True,
                 "failed with memory_mb enforced, unenforced asked (it may pass now)", id="failed-enforced-memory"),
    pytest.param(made(max_processes=512), BASE, False, "made with max_processes 512, 256 asked",
                 id="looser-processes"),
    pytest.param(made(output_mb=None), BASE, False, "made with output_mb no limit, 1024 asked", id="looser-output"),
    pytest.param(made(output_files=20_000), BASE, False, "made with output_files 20000, 10000 asked",
                 id="looser-files"),
    pytest.param(made(log_mb=128), BASE, False, "made with log_mb 128, 64 asked", id="looser-log"),
    pytest.param(made(device="cpu"), made(device="NVIDIA A100"), False, "made on cpu, now on NVIDIA A100",
                 id="cpu-then-gpu"),
    pytest.param(made(device="NVIDIA A100"), made(device="cpu"), False, "made on NVIDIA A100, now on cpu",
                 id="gpu-then-cpu"),
    pytest.param(made(sandbox="docker", image="sha256:ab"), made(sandbox="docker", image="sha256:cd"), False,
                 "made with image sha256:ab, now sha256:cd", id="image-changed"),
    pytest.param(made(sandbox="docker", image=""), made(sandbox="docker", image="sha256:cd"), False,
                 "made with image (digest not recorded), now sha256:cd", id="image-not-recorded"),
    pytest.param(made(modes=("lenient",)), BASE, False, "made with referee modes (lenient), now ()", id="modes"),
    # the CPU share is not part of strictness for a run that succeeded (nor the cap it puts on cpu_seconds)
    pytest.param(BASE, made(cpu_share=1.0, cpu_seconds=60.0, enforced=("cpu_share", "max_processes", "memory_mb")),
                 False, "", id="no-share-then-share"),
    pytest.param(made(cpu_share=1.0, cpu_seconds=60.0), BASE, False, "", id="share-then-alone"),
    pytest.param(made(cpu_share=1.0, cpu_seconds=60.0), BASE, True,
                 "failed with a CPU share of 1 CPUs, no limit asked (it may pass now)", id="failed-share-then-alone"),
    pytest.param(BASE, made(cpu_share=1.0, cpu_seconds=60.0), True, "", id="failed-alone-then-share"),
]


@pytest.mark.parametrize(("record", "asked", "failed", "reason"), RULES)
def test_weaker_than_rules(record: Provenance, asked: Provenance, failed: bool, reason: str) -> None:
    assert record.weaker_than(asked, failed=failed) == reason


def test_provenance_round_trips_in_a_run_record_and_older_records_still_read() -> None:
    run = RunRecord(exit_code=0, timed_out=False, seconds=1.0, problem="", log="logs/x.log", provenance=made(
        sandbox="docker", image="sha256:ab", device="NVIDIA A100", cpu_share=0.5))
    value = json.loads(json.dumps(run.to_json()))
    assert RunRecord.from_json(value) == run
    del value["provenance"]
    assert RunRecord.from_json(value).provenance is None
    assert "provenance" not in replace(run, provenance=None).to_json()  # an older record's shape, unchanged


def test_a_cluster_asks_for_the_records_own_device_and_cpu_share() -> None:
    record = made(device="NVIDIA A100", cpu_share=0.5, enforced=("cpu_share", "max_processes", "memory_mb"))
    driver = made(cpu_share=1.0)
    assert record.weaker_than(driver) == "made on NVIDIA A100, now on cpu"
    asked = driver.placed_as(record)
    assert (asked.device, asked.limits.cpu_share, asked.limits.enforced) == (
        "NVIDIA A100", 0.5, ("cpu_share", "max_processes", "memory_mb"))
    assert record.weaker_than(asked, failed=True) == ""
    looser = replace(record, limits=replace(record.limits, wall_seconds=120.0))
    assert looser.weaker_than(driver.placed_as(looser)) == "made with a 120 s limit, 60 s asked"


def test_applied_limits_mark_what_the_sandbox_cannot_enforce() -> None:
    share = CpuShare(cpus=1.0, cores=(0,))
    limits = applied_limits(LimitPolicy(), 4, share=share, unenforced=["cpu_share"])
    assert (limits.wall_seconds, limits.cpu_seconds, limits.cpu_seconds_alone) == (60.0, 60.0, 240.0)
    assert limits.enforced == ("max_processes", "memory_mb") and limits.cpu_share == 1.0
    alone = applied_limits(LimitPolicy(memory_mb=None), 4, share=None, unenforced=[])
    assert alone.enforced == ("max_processes",) and alone.cpu_share is None


def test_the_4fe88fa_manifest_says_what_its_records_were_made_under() -> None:
    conditions = ManifestConditions.from_manifest(json.loads(FIXTURE_MANIFEST.read_text()))
    assert conditions is not None
    then = conditions.provenance(2)
    assert (then.sandbox, then.device, then.image) == ("bwrap", "cpu", "")
    assert then.limits.enforced == ("max_processes", "memory_mb") and then.limits.cpu_share is None
    now = Provenance(sandbox="bwrap", limits=applied_limits(LimitPolicy(), 2, share=CpuShare(1.0, (0,)),
                                                            unenforced=[]))
    assert then.weaker_than(now) == "" and then.weaker_than(now, failed=True) == ""
    stricter = Provenance(sandbox="bwrap", limits=applied_limits(LimitPolicy(minimum_seconds=30.0), 2, share=None,
                                                                 unenforced=[]))
    assert then.weaker_than(stricter) == "made with a 60 s limit, 30 s asked"
    assert ManifestConditions.from_manifest({"protections": {}}) is None


def test_many_reruns_are_summed_up_per_reason() -> None:
    few = [f"rerunning a eps16 batch {i}: made without a sandbox" for i in range(3)]
    assert rerun_lines(few) == few
    many = few * 3 + ["rerunning d batch 9: made with a 60 s limit, 30 s asked"]
    assert rerun_lines(many) == ["rerunning 9 stored unit(s): made without a sandbox",
                                 "rerunning 1 stored unit(s): made with a 60 s limit, 30 s asked"]


# -- competitions ------------------------------------------------------------------------------------------------
SLOW_ONCE = """
inp, out, eps = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
import time
time.sleep(3)
for p in sorted(inp.glob("*.png")):
    Image.open(p).save(out / p.name)
"""


@pytest.fixture
def small_world(world: dict[str, Path]) -> dict[str, Path]:
    write_submission(world["attacks"], "noop", "attack", NOOP)
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    return world


def compete(world: dict[str, Path], **overrides: object) -> tuple[CompetitionResult, list[str]]:
    said: list[str] = []
    result = run_competition(config_for(world, **overrides), echo=said.append)
    return result, [line for line in said if line.startswith("rerunning")]


def stored_provenance(world: dict[str, Path]) -> list[Provenance | None]:
    return [decode_record(path.read_bytes()).run.provenance
            for path in sorted((world["results"] / "store" / "attack_runs").rglob("*.json"))]


@needs_bwrap
def test_a_record_made_without_a_sandbox_reruns_under_bwrap_and_bwrap_twice_reuses(
        small_world: dict[str, Path]) -> None:
    first, notes = compete(small_world, sandbox=SandboxKind.NONE)
    assert first.outcome.executed == {"attack": 1, "defense": 1} and not notes
    assert [p.sandbox if p else None for p in stored_provenance(small_world)] == ["none"]
    second, notes = compete(small_world, sandbox=SandboxKind.BWRAP)
    assert second.outcome.executed == {"attack": 1, "defense": 1}
    assert second.outcome.reused == {"attack": 0, "defense": 0}
    assert len(notes) == 2 and all(line.endswith(": made without a sandbox") for line in notes)
    assert any(line.startswith("rerunning noop eps16 batch ") for line in notes)
    assert any(line.startswith("rerunning defense bucket batch ") for line in notes)
    [stamp] = stored_provenance(small_world)
    assert stamp is not None and (stamp.sandbox, stamp.device, stamp.image, stamp.modes) == ("bwrap", "cpu", "", ())
    # what the run's cgroup enforced: every cgroup limit whose controller this machine gives the harness
    unenforced = second.manifest.to_json()["unenforced_limits"]
    assert stamp.limits.enforced == tuple(sorted({"memory_mb", "max_processes"} - set(unenforced)))
    third, notes = compete(small_world, sandbox=SandboxKind.BWRAP)
    assert third.outcome.executed == {"attack": 0, "defense": 0} and not notes
    fourth, notes = compete(small_world, sandbox=SandboxKind.NONE)  # bwrap is stricter than none: reused
    assert fourth.outcome.executed == {"attack": 0, "defense": 0} and not notes


@needs_bwrap
def test_looser_limits_asked_later_reuse_and_stricter_ones_rerun(small_world: dict[str, Path]) -> None:
    compete(small_world, policy=LimitPolicy(seconds_per_image=5.0, minimum_seconds=20.0))
    looser, notes = compete(small_world, policy=LimitPolicy(seconds_per_image=5.0, minimum_seconds=40.0,
                                                            memory_mb=None))
    assert looser.outcome.executed == {"attack": 0, "defense": 0} and not notes
    stricter, notes = compete(small_world, policy=LimitPolicy(seconds_per_image=1.0, minimum_seconds=10.0))
    assert stricter.outcome.executed == {"attack": 1, "defense": 1}
    assert notes and all(line.endswith("made with a 30 s limit, 10 s asked") for line in notes)
    assert stored_provenance(small_world)[0].limits.wall_seconds == 10.0  # type: ignore[union-attr]


@needs_bwrap
def test_a_run_that_failed_under_stricter_limits_reruns_when_looser_ones_are_asked(world: dict[str, Path]) -> None:
    write_submission(world["attacks"], "slow", "attack", SLOW_ONCE)
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    tight = LimitPolicy(seconds_per_image=0.1, minimum_seconds=1.0)
    failed, _ = compete(world, policy=tight)
    assert any(r.run.problem.startswith("timed out") for r in failed.outcome.attack_records)
    same, notes = compete(world, policy=tight)  # a failure under the asked conditions is reused
    assert same.outcome.executed["attack"] == 0 and not notes
    passed, notes = compete(world, policy=LimitPolicy(seconds_per_image=5.0, minimum_seconds=20.0))
    assert passed.outcome.executed["attack"] == 1
    assert [line.split(": ", 1)[1] for line in notes if "slow" in line] == [
        "failed with a 1 s limit, 30 s asked (it may pass now)"]
    assert not any(r.run.problem for r in passed.outcome.attack_records)


def _docker(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(["docker", *args], input=stdin, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_new_image_under_the_same_tag_reruns_every_unit(container_engine: Protections,
                                                           world: dict[str, Path]) -> None:
    """A team re-pushing its tag gets its units rerun: the record names the image id that ran."""
    nonce = uuid.uuid4().hex[:8]
    tag = f"adv-harness/provenance-test:{nonce}"
    rebuilt = _docker("build", "-q", "-", stdin=f"FROM {CONTAINER_IMAGE}\nLABEL adv-harness.provenance-test={nonce}\n")
    for parent, name, kind, body in ((world["attacks"], "noop", "attack", NOOP),
                                     (world["defenses"], "bucket", "defense", BUCKET_DEFENSE)):
        folder = write_submission(parent, name, kind, body)
        metadata = json.loads((folder / "metadata.json").read_text())
        (folder / "metadata.json").write_text(json.dumps({**metadata, "container": tag}))
    try:
        _docker("tag", CONTAINER_IMAGE, tag)
        before = image_id(tag)
        assert before == image_id(CONTAINER_IMAGE) and before.startswith("sha256:")
        first, notes = compete(world, sandbox=SandboxKind.DOCKER)
        assert first.outcome.executed == {"attack": 1, "defense": 1} and not notes
        assert [p.image if p else None for p in stored_provenance(world)] == [before]
        again, notes = compete(world, sandbox=SandboxKind.DOCKER)
        assert again.outcome.executed == {"attack": 0, "defense": 0} and not notes
        _docker("tag", rebuilt, tag)  # the same tag, another image
        after = image_id(tag)
        assert after == rebuilt != before
        moved, notes = compete(world, sandbox=SandboxKind.DOCKER)
        assert moved.outcome.executed == {"attack": 1, "defense": 1}
        assert len(notes) == 2 and all(line.endswith(f"made with image {before}, now {after}") for line in notes)
        assert [p.image if p else None for p in stored_provenance(world)] == [after]
    finally:
        subprocess.run(["docker", "rmi", tag, rebuilt], capture_output=True, check=False)
    assert image_id("adv-harness/no-such-image:never") == ""


@needs_bwrap
def test_resume_decides_on_heads_and_reads_only_the_bodies_it_reuses(small_world: dict[str, Path],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.record_store import RecordStore

    bodies: list[str] = []
    attack_record, defense_columns = RecordStore.attack_record, RecordStore.defense_columns

    def counted_attack(self: RecordStore, key: str, *args: object, **kwargs: object) -> object:
        found = attack_record(self, key, *args, **kwargs)  # type: ignore[arg-type]
        if found is not None:
            bodies.append(f"attack {key}")
        return found

    def counted_defense(self: RecordStore, version: str, key: str) -> object:
        bodies.append(f"defense {key}")
        return defense_columns(self, version, key)

    compete(small_world, policy=LimitPolicy(seconds_per_image=5.0, minimum_seconds=20.0))
    monkeypatch.setattr(RecordStore, "attack_record", counted_attack)
    monkeypatch.setattr(RecordStore, "defense_columns", counted_defense)
    defense_record = RecordStore.defense_record

    def whole_defense(self: RecordStore, version: str, key: str) -> object:
        found = defense_record(self, version, key)
        if found is not None:  # looking for a unit about to run finds nothing: not a read
            bodies.append(f"whole-defense {key}")
        return found

    monkeypatch.setattr(RecordStore, "defense_record", whole_defense)
    again, _ = compete(small_world, policy=LimitPolicy(seconds_per_image=5.0, minimum_seconds=20.0))
    assert again.outcome.executed == {"attack": 0, "defense": 0}
    # reused: each stored body read once to plan (attack, defense) and the defense's once more for the table
    assert sorted(b.split()[0] for b in bodies) == ["attack", "defense", "defense"]
    bodies.clear()
    stricter, notes = compete(small_world, policy=LimitPolicy(seconds_per_image=1.0, minimum_seconds=10.0))
    assert stricter.outcome.executed == {"attack": 1, "defense": 1} and len(notes) == 2
    assert not [b for b in bodies if b.split()[1] not in stricter.outcome.fresh_keys]  # no weaker body was read
