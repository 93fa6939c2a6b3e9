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
    decode_columns,
    decode_head,
    decode_record,
    encode_record,
)
from harness.sandboxes.base import SandboxKind
from harness.tracks import Track
from tiny_world import BUCKET_DEFENSE, PLUS, config_for, write_submission

RUN = RunRecord(exit_code=0, timed_out=False, seconds=1.5, problem="", log="logs/x.log")


ATTACK = AttackUnitRecord(key="k" * 32, attack="plus", attack_hash="h" * 64, attack_type="attack", epsilon=16,
                          run=RUN, images=(ImageVerdict("img0", "v" * 64, "", 3, 84, 16),
                                           ImageVerdict("img1", "c" * 64, "no output file", 0, 0, 0, "a note")))
DEFENSE = DefenseUnitRecord(key="k" * 32, defense="bucket", defense_hash="d" * 64, run=RUN,
                            csv_notes=("1 row names an unknown file",),
                            predictions={"a" * 64: DefenseAnswer(3, ""), "b" * 64: DefenseAnswer(None, "missing row")})


def _schema1(record):
    """The one JSON object a harness before issue 30 stored for ``record`` (schema 1)."""
    if isinstance(record, AttackUnitRecord):
        return {"schema": 1, "key": record.key, "attack": record.attack, "attack_hash": record.attack_hash,
                "attack_type": record.attack_type.value, "epsilon": record.epsilon, "run": record.run.to_json(),
                "images": [image.to_json() for image in record.images]}
    return {"schema": 1, "key": record.key, "defense": record.defense, "defense_hash": record.defense_hash,
            "run": record.run.to_json(), "csv_notes": list(record.csv_notes),
            "predictions": {version: answer.to_json() for version, answer in record.predictions.items()}}


@pytest.mark.parametrize("record", [ATTACK, DEFENSE], ids=["attack", "defense"])
def test_a_record_is_a_head_line_and_a_columnar_body_line(record):
    data = encode_record(record)
    head, body = data.decode().splitlines()
    assert data.endswith(b"\n") and data.count(b"\n") == 2
    assert json.loads(head)["schema"] == SCHEMA == 2 and json.loads(head)["key"] == record.key
    assert all(isinstance(column, list) for column in json.loads(body).values())  # columns, not a dict per image
    assert decode_record(data) == record
    assert decode_head(data) == decode_head(head.encode() + b"\n") == record.head  # the first line is enough
    assert decode_head(head.encode()) is None  # a prefix without the whole first line says nothing
    with pytest.raises(RecordError, match="body"):
        decode_record(head.encode() + b"\n{\"versions\": [\n")  # a torn body: the record is unreadable
    count = "images" if isinstance(record, AttackUnitRecord) else "predictions"
    with pytest.raises(RecordError, match="column"):  # a column of another length than the head says
        decode_record(json.dumps(dict(json.loads(head), **{count: 3})).encode() + b"\n" + body.encode() + b"\n")


@pytest.mark.parametrize("record", [ATTACK, DEFENSE], ids=["attack", "defense"])
def test_schema_1_records_are_still_read(record):
    value = _schema1(record)
    for data in (json.dumps(value, indent=1, sort_keys=True).encode() + b"\n", json.dumps(value).encode() + b"\n"):
        assert decode_head(data) is None  # no head line: the whole record is read
        assert decode_record(data) == record and type(record).from_json(value) == record
    with pytest.raises(RecordError, match="schema None"):
        type(record).from_json({k: v for k, v in value.items() if k != "schema"})


def test_a_malformed_schema_1_record_is_refused():
    value = _schema1(ATTACK)
    with pytest.raises(RecordError, match="attack record"):
        AttackUnitRecord.from_json(dict(value, images=[{"image_id": "img0"}]))
    value = _schema1(DEFENSE)
    value["predictions"]["a" * 64]["label"] = "3"  # a label must be an integer, never a string
    with pytest.raises(RecordError, match="defense record"):
        DefenseUnitRecord.from_json(value)
    with pytest.raises(RecordError, match="expected a JSON object"):
        DefenseUnitRecord.from_json([])  # type: ignore[arg-type]
    for data in (b"", b"[1]", b'{"schema": 3, "kind": "attack"}\n{}\n', b"\xff\n"):
        with pytest.raises(RecordError):
            decode_record(data)


def test_a_label_in_a_body_must_be_an_integer():
    head, body = encode_record(DEFENSE).decode().splitlines()
    value = json.loads(body)
    value["labels"][0] = "3"
    with pytest.raises(RecordError, match="defense record"):
        decode_record(f"{head}\n{json.dumps(value)}\n".encode())


@pytest.mark.parametrize("record", [ATTACK, DEFENSE], ids=["attack", "defense"])
def test_columns_are_read_without_an_object_per_image(record):
    for data in (encode_record(record), json.dumps(_schema1(record)).encode()):
        head, columns = decode_columns(data)
        assert head == record.head and columns == record.body_json()
    head, body = encode_record(record).decode().splitlines()
    value = json.loads(body)
    name = "linf" if isinstance(record, AttackUnitRecord) else "labels"
    for wrong in ("3", True, 2.5):  # an integer column holds integers only
        value[name][0] = wrong
        with pytest.raises(RecordError, match=name):
            decode_columns(f"{head}\n{json.dumps(value)}\n".encode())
    assert decode_columns(encode_record(DEFENSE))[1]["labels"] == [3, None]


def test_unreadable_schema_is_redone_not_misread(world):
    write_submission(world["attacks"], "plus", "attack", PLUS)
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    config = config_for(world, sandbox=SandboxKind.NONE)
    first = run_competition(config, echo=lambda _line: None)
    assert first.outcome.executed == {"attack": 1, "defense": 2}
    store = world["results"] / "store"
    (attack_path,) = sorted((store / "attack_runs").glob("*/*.json"))
    head, body = attack_path.read_text().splitlines()
    stored = json.loads(head)
    assert stored["schema"] == SCHEMA
    stored["schema"] = SCHEMA + 1
    attack_path.write_text(json.dumps(stored) + "\n" + body + "\n")
    second = run_competition(config, echo=lambda _line: None)
    assert second.outcome.executed == {"attack": 1, "defense": 0}
    assert [r.prediction for r in second.predictions] == [r.prediction for r in first.predictions]


def test_attack_type_is_the_track_enum_in_memory_and_its_string_on_disk():
    stored = {"schema": 1, "key": "k" * 32, "attack": "t", "attack_hash": "h" * 64,
              "attack_type": "targeted_attack", "epsilon": 8, "run": RUN.to_json(), "images": []}
    record = AttackUnitRecord.from_json(stored)
    assert record.attack_type is Track.TARGETED_ATTACK
    assert _schema1(record) == stored
    assert json.loads(encode_record(record).splitlines()[0])["attack_type"] == "targeted_attack"
    for other in ("defense", "clean", "Attack"):  # not an attack track: the record is redone, never misread
        with pytest.raises(RecordError, match="attack record"):
            AttackUnitRecord.from_json(dict(stored, attack_type=other))
