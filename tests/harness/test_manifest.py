"""manifest.json as a typed, schema-versioned record (harness.manifest) read and written by harness.results_folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.competition import rescore, run_competition
from harness.manifest import SCHEMA, DatasetEntry, Manifest, ManifestError, SkippedEntry, SubmissionEntry
from harness.results_folder import ResultsFolder
from harness.tracks import AttackRole, Track
from tiny_world import BUCKET_DEFENSE, NOOP, config_for, write_submission

#: A manifest as harnesses before the schema field wrote it (no schema, key scheme, CPU shares, unenforced limits,
#: GPUs nor roles).
OLD = {
    "harness_version": "0.9.0", "harness_content_hash": "0" * 64, "environment": {"python": "3.10.12"},
    "seed": 3, "secret_sha256": "a" * 64, "epsilons": [4, 16], "batch_size": 100, "jobs": 2,
    "limits": {"seconds": 60}, "protections": {"sandbox": "none"},
    "dataset": {"root": "/data", "content_hash": "d" * 64, "images": 6, "label_file": "labels.csv",
                "targets_drawn": True, "num_classes": 5, "left_out": []},
    "submissions": [{"name": "bpda", "type": "attack", "entry_point": "run.sh", "content_hash": "b" * 64,
                     "container": "", "container_gpu": "", "path": "/attacks/bpda", "targets_defense": "jpeg"},
                    {"name": "jpeg", "type": "defense", "entry_point": "run.sh", "content_hash": "c" * 64,
                     "container": "", "container_gpu": "", "path": "/defenses/jpeg"}],
    "skipped": [{"path": "/attacks/broken", "problem": "no metadata.json"}],
    "executed_units": {"attack": 2, "defense": 1}, "reused_units": {"attack": 0, "defense": 0},
    "platform": {"python": "3.10.12", "system": "Linux"}, "started": "2026-01-01T00:00:00Z",
    "wall_seconds": 12.5, "submission_seconds": 0}


def _full() -> Manifest:
    return Manifest(
        harness_version="1.0", key_scheme=2, environment={"key": "e"}, seed=0, secret_sha256="f" * 64,
        epsilons=(8, 16), batch_size=10, jobs=None, limits={"seconds": 60}, cpu_shares=None,
        protections={"sandbox": "bwrap"}, unenforced_limits=("pids",),
        dataset=DatasetEntry(root="/d", content_hash="d" * 64, images=3, label_file="labels.csv",
                             targets_drawn=False, targets_from_secret=True, num_classes=10, left_out=("x.png",)),
        submissions=(SubmissionEntry(name="pgd", track=Track.ATTACK, entry_point="run.sh", content_hash="1" * 64,
                                     path="/a/pgd", role=AttackRole.WHITE_BOX, iterates="fgsm"),
                     SubmissionEntry(name="jpeg", track=Track.DEFENSE, entry_point="run.sh", content_hash="2" * 64,
                                     container="python:3.11", path="/d/jpeg")),
        skipped=(SkippedEntry(path="/a/bad", problem="no metadata.json"),),
        executed_units={"attack": 1, "defense": 1}, reused_units={"attack": 0, "defense": 0}, gpus=("0",),
        workers={"tcp://w:1": {"cores": 2}}, worker_events=[{"event": "joined", "worker": "tcp://w:1"}],
        scheduling_seconds={"attacks": 0.5}, platform={"python": "3.11"}, started="2026-01-01T00:00:00Z",
        wall_seconds=3.25, submission_seconds=1.5)


def test_round_trip_through_json() -> None:
    manifest = _full()
    value = json.loads(json.dumps(manifest.to_json()))
    assert value["schema"] == SCHEMA and value["submissions"][0]["type"] == "attack"
    assert value["submissions"][0]["role"] == "white_box" and "role" not in value["submissions"][1]
    assert Manifest.from_json(value) == manifest
    local = Manifest(cpu_shares=[])  # not on a cluster: no cluster keys at all
    assert not {"workers", "worker_events", "scheduling_seconds"} & set(local.to_json())
    assert Manifest.from_json(local.to_json()) == local


def test_a_manifest_written_before_the_schema_reads_with_defaults() -> None:
    manifest = Manifest.from_json(OLD)
    assert manifest.schema == 0 and manifest.key_scheme == 1
    assert manifest.epsilons == (4, 16) and manifest.seed == 3 and manifest.dataset.content_hash == "d" * 64
    assert manifest.dataset.targets_from_secret is False and manifest.cpu_shares is None and manifest.gpus == ()
    assert manifest.defenses == ["jpeg"] and manifest.attacks == [("bpda", Track.ATTACK)]
    assert manifest.aims() == {"bpda": "jpeg"} and manifest.submissions[0].role is None
    assert manifest.skipped == (SkippedEntry(path="/attacks/broken", problem="no metadata.json"),)
    assert manifest.workers is None and manifest.submission_seconds == 0


@pytest.mark.parametrize("change, word", [
    ({"schema": SCHEMA + 1}, "schema"), ({"epsilons": ["16"]}, "epsilons"), ({"seed": "0"}, "seed"),
    ({"submissions": [{"name": "x", "type": "attacker"}]}, "submissions"),
    ({"submissions": [{"name": "x", "type": "attack", "role": "oracle"}]}, "submissions"),
    ({"dataset": {"images": "6"}}, "dataset.images"), ({"protections": []}, "protections")])
def test_refuses_a_newer_schema_or_a_mistyped_field(change: dict[str, object], word: str) -> None:
    with pytest.raises(ManifestError, match=word):
        Manifest.from_json({**OLD, **change})
    with pytest.raises(ManifestError):
        Manifest.from_json([OLD])


def test_the_file_of_a_run_is_what_its_manifest_writes(world: dict[str, Path]) -> None:
    write_submission(world["attacks"], "noop", "attack", NOOP)
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    result = run_competition(config_for(world), echo=lambda _: None)
    folder = ResultsFolder(world["results"])
    text = folder.manifest.read_text()
    read = folder.read_manifest()
    assert read == result.manifest and read is not None and read.schema == SCHEMA
    assert text == json.dumps(read.to_json(), indent=1, sort_keys=True) + "\n"  # every key and value kept
    assert set(json.loads(text)) == {
        "schema", "harness_version", "key_scheme", "environment", "seed", "secret_sha256", "epsilons", "batch_size",
        "jobs", "limits", "cpu_shares", "protections", "unenforced_limits", "dataset", "submissions", "skipped",
        "executed_units", "reused_units", "gpus", "platform", "started", "wall_seconds", "submission_seconds"}
    assert sorted((s.name, s.track) for s in read.submissions) == [("bucket", Track.DEFENSE), ("noop", Track.ATTACK)]
    before = (world["results"] / "leaderboard.csv").read_bytes()
    folder.write_manifest(Manifest.from_json(OLD | {"dataset": json.loads(text)["dataset"],
                                                    "submissions": json.loads(text)["submissions"],
                                                    "epsilons": [16]}))
    rescore(world["results"])  # a folder whose manifest predates the schema rescores the same
    assert (world["results"] / "leaderboard.csv").read_bytes() == before
