"""Typed unit records: round trips, schema checks, and the runner redoing a unit whose record it cannot read."""

from __future__ import annotations

import json

import pytest

from harness.competition import run_competition
from harness.records import (
    SCHEMA,
    AttackUnitRecord,
    DefenseAnswer,
    DefenseUnitRecord,
    ImageVerdict,
    RecordError,
    RunRecord,
)
from harness.sandboxes.base import SandboxKind
from harness.tracks import Track
from tiny_world import BUCKET_DEFENSE, PLUS, config_for, write_submission

RUN = RunRecord(exit_code=0, timed_out=False, seconds=1.5, problem="", log="logs/x.log")


def test_attack_record_round_trip_and_schema():
    record = AttackUnitRecord(key="k" * 32, attack="plus", attack_hash="h" * 64, attack_type="attack", epsilon=16,
                              run=RUN, images=(ImageVerdict("img0", "v" * 64, "", 3, 84, 16),
                                               ImageVerdict("img1", "c" * 64, "no output file", 0, 0, 0)))
    value = json.loads(json.dumps(record.to_json()))
    assert value["schema"] == SCHEMA
    assert AttackUnitRecord.from_json(value) == record
    with pytest.raises(RecordError, match="schema None"):
        AttackUnitRecord.from_json({k: v for k, v in value.items() if k != "schema"})
    broken = dict(value, images=[{"image_id": "img0"}])
    with pytest.raises(RecordError, match="attack record"):
        AttackUnitRecord.from_json(broken)


def test_defense_record_round_trip_and_labels():
    record = DefenseUnitRecord(key="k" * 32, defense="bucket", defense_hash="d" * 64, run=RUN,
                               csv_notes=("1 row names an unknown file",),
                               predictions={"a" * 64: DefenseAnswer(3, ""),
                                            "b" * 64: DefenseAnswer(None, "missing row")})
    value = json.loads(json.dumps(record.to_json()))
    assert DefenseUnitRecord.from_json(value) == record
    value["predictions"]["a" * 64]["label"] = "3"  # a label must be an integer, never a string
    with pytest.raises(RecordError, match="defense record"):
        DefenseUnitRecord.from_json(value)
    with pytest.raises(RecordError, match="expected a JSON object"):
        DefenseUnitRecord.from_json([])  # type: ignore[arg-type]


def test_unreadable_schema_is_redone_not_misread(world):
    write_submission(world["attacks"], "plus", "attack", PLUS)
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    config = config_for(world, sandbox=SandboxKind.NONE)
    first = run_competition(config, echo=lambda _line: None)
    assert first.outcome.executed == {"attack": 1, "defense": 2}
    store = world["results"] / "store"
    (attack_path,) = sorted((store / "attack_runs").glob("*.json"))
    stored = json.loads(attack_path.read_text())
    assert stored["schema"] == SCHEMA
    stored["schema"] = SCHEMA + 1
    attack_path.write_text(json.dumps(stored))
    second = run_competition(config, echo=lambda _line: None)
    assert second.outcome.executed == {"attack": 1, "defense": 0}
    assert [r.prediction for r in second.predictions] == [r.prediction for r in first.predictions]


def test_attack_type_is_the_track_enum_in_memory_and_its_string_on_disk():
    stored = {"schema": SCHEMA, "key": "k" * 32, "attack": "t", "attack_hash": "h" * 64,
              "attack_type": "targeted_attack", "epsilon": 8, "run": RUN.to_json(), "images": []}
    record = AttackUnitRecord.from_json(stored)
    assert record.attack_type is Track.TARGETED_ATTACK
    assert json.dumps(record.to_json(), sort_keys=True) == json.dumps(stored, sort_keys=True)  # byte-compatible
    for other in ("defense", "clean", "Attack"):  # not an attack track: the record is redone, never misread
        with pytest.raises(RecordError, match="attack record"):
            AttackUnitRecord.from_json(dict(stored, attack_type=other))
