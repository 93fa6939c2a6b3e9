"""Unit tests for harness.table (CSV rows), harness.store (atomic writes, Store), harness.record_store and
harness.report (views)."""

from __future__ import annotations

import json

import pytest

from harness import store as store_module
from harness.record_store import RecordStore
from harness.records import AttackUnitRecord, DefenseAnswer, DefenseUnitRecord, ImageVerdict, RunRecord, encode_record
from harness.report import leaderboard_csv, leaderboard_tables, matrix_csv, matrix_table, timings_csv, write_matrix
from harness.scoring import Matrix, ScoreRow
from harness.store import LocalStore, Store, atomic_write_bytes, atomic_write_json, atomic_write_text, key_of
from harness.table import AttackImageRow, PredictionRow, RunRow, read_csv, to_csv, write_csv

# -- table ------------------------------------------------------------------------------------------

PREDICTIONS = [
    PredictionRow(epsilon=None, attack="", attack_type="clean", defense="d1", image_id="img0", true_label=3,
                  target_class=0, prediction=3, problem=""),
    PredictionRow(epsilon=16, attack="fgsm", attack_type="attack", defense="d1", image_id="img0", true_label=3,
                  target_class=0, prediction=None, problem='non-integer label "x", or \'y\''),
    PredictionRow(epsilon=4, attack="t", attack_type="targeted_attack", defense="d,2", image_id="img.1",
                  true_label=0, target_class=999, prediction=-1, problem="line one\nline two"),
]
ATTACK_IMAGES = [
    AttackImageRow(epsilon=16, attack="fgsm", attack_type="attack", image_id="img0", problem="",
                   clipped_values=12, max_violation=3, linf=16),
    AttackImageRow(epsilon=0, attack="a b", attack_type="targeted_attack", image_id="img1",
                   problem="mode L, expected RGB (8-bit, 3 channels)", clipped_values=0, max_violation=0, linf=0),
]
RUNS = [
    RunRow(kind="attack", name="fgsm", epsilon=16, batch="k1", images=100, exit_code=0, timed_out=False,
           seconds=1.5, problem="", log="logs/fgsm.log"),
    RunRow(kind="defense", name="d1", epsilon=None, batch="k2", images=3, exit_code=None, timed_out=True,
           seconds=500.125, problem="timed out after 500 s", log=""),
    RunRow(kind="defense", name="d1", epsilon=None, batch="k3", images=0, exit_code=-9, timed_out=False,
           seconds=0.1 + 0.2, problem="", log="ünïcode.log"),
]


@pytest.mark.parametrize("rows, row_type", [(PREDICTIONS, PredictionRow), (ATTACK_IMAGES, AttackImageRow),
                                            (RUNS, RunRow)])
def test_csv_round_trip(tmp_path, rows, row_type):
    path = tmp_path / "rows.csv"
    write_csv(path, rows, row_type)
    back = read_csv(path, row_type)
    assert back == rows
    for original, loaded in zip(rows, back):
        for name, value in vars(original).items():
            assert type(getattr(loaded, name)) is type(value), name


def test_csv_empty_round_trip(tmp_path):
    path = tmp_path / "rows.csv"
    write_csv(path, [], RunRow)
    assert path.read_text() == "kind,name,epsilon,batch,images,exit_code,timed_out,seconds,problem,log\n"
    assert read_csv(path, RunRow) == []


def test_to_csv_exact_text():
    text = to_csv(RUNS[:2], RunRow)
    assert text == ("kind,name,epsilon,batch,images,exit_code,timed_out,seconds,problem,log\n"
                    "attack,fgsm,16,k1,100,0,0,1.5,,logs/fgsm.log\n"
                    "defense,d1,,k2,3,,1,500.125,timed out after 500 s,\n")
    text = to_csv(PREDICTIONS[:1], PredictionRow)
    assert text == ("epsilon,attack,attack_type,defense,image_id,true_label,target_class,prediction,problem\n"
                    ",,clean,d1,img0,3,0,3,\n")


def test_read_csv_wrong_header_names_the_file(tmp_path):
    path = tmp_path / "per_image.csv"
    write_csv(path, RUNS, RunRow)
    with pytest.raises(ValueError) as info:
        read_csv(path, PredictionRow)
    message = str(info.value)
    assert str(path) in message
    assert "does not match the expected" in message
    assert "'epsilon', 'attack', 'attack_type'" in message


def test_read_csv_empty_file(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("")
    with pytest.raises(ValueError, match=r"x\.csv: header None does not match"):
        read_csv(path, RunRow)


def test_write_csv_is_atomic_and_replaces(tmp_path):
    path = tmp_path / "sub" / "rows.csv"
    write_csv(path, RUNS, RunRow)
    write_csv(path, RUNS[:1], RunRow)
    assert read_csv(path, RunRow) == RUNS[:1]
    assert [p.name for p in path.parent.iterdir()] == ["rows.csv"]


# -- atomic writes ----------------------------------------------------------------------------------

def test_atomic_write_bytes_creates_parents_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "a" / "b" / "f.bin"
    atomic_write_bytes(path, b"one")
    assert path.read_bytes() == b"one"
    atomic_write_bytes(path, b"two!")
    assert path.read_bytes() == b"two!"
    assert list(tmp_path.rglob("*")) == [tmp_path / "a", tmp_path / "a" / "b", path]


def test_atomic_write_failure_keeps_old_content_and_removes_temp(tmp_path, monkeypatch):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "old")

    def broken_replace(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(store_module.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        atomic_write_text(path, "new")
    monkeypatch.undo()
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_atomic_write_text_is_utf8(tmp_path):
    path = tmp_path / "t.txt"
    atomic_write_text(path, "ε = 16 ✓")
    assert path.read_bytes() == "ε = 16 ✓".encode("utf-8")


def test_atomic_write_json_exact_format(tmp_path):
    path = tmp_path / "r.json"
    atomic_write_json(path, {"b": [1, 2], "a": {"z": None, "y": True}})
    assert path.read_text() == '{\n "a": {\n  "y": true,\n  "z": null\n },\n "b": [\n  1,\n  2\n ]\n}\n'


# -- key_of -----------------------------------------------------------------------------------------

def test_key_of_stable_values():
    # pinned: changing the key derivation silently invalidates every stored record
    assert key_of("a", "b") == "023b8059a924f728a2155e4cc8b90738"
    assert key_of(16) == "30b874835d221ed8a36931912d3fb2f0"


def test_key_of_properties():
    assert len(key_of()) == 32
    assert key_of("a", "b") == key_of("a", "b")
    assert key_of("a", "b") != key_of("b", "a")
    assert key_of("ab") != key_of("a", "b")
    assert key_of("a", "") != key_of("a")
    assert key_of(16) == key_of("16")  # string forms
    assert key_of(None) == key_of("None")
    assert all(c in "0123456789abcdef" for c in key_of("x"))


# -- Store ------------------------------------------------------------------------------------------

SHA = "ab" + "0" * 62


def _records(tmp_path):
    return RecordStore(LocalStore(tmp_path / "store"))


def _attack(key, versions=()):
    run = RunRecord(exit_code=0, timed_out=False, seconds=1.5, problem="", log="logs/x.log")
    return AttackUnitRecord(key=key, attack="a", attack_hash="h" * 64, attack_type="attack", epsilon=16, run=run,
                            images=tuple(ImageVerdict(f"img{i}", v, "", 0, 0, 16) for i, v in enumerate(versions)))


def _defense(key, n):
    run = RunRecord(exit_code=0, timed_out=False, seconds=1.5, problem="", log="logs/x.log")
    return DefenseUnitRecord(key=key, defense="d", defense_hash="h" * 64, run=run,
                             predictions={"v" * 64: DefenseAnswer(n, "")})


def test_store_image_layout_and_put(tmp_path):
    s = _records(tmp_path)
    expected = tmp_path / "store" / "images" / "ab" / "00" / f"{SHA}.png"
    assert s.image_key(SHA) == f"images/ab/00/{SHA}.png"
    assert not s.has_image(SHA) and s.image(SHA) is None
    s.put_image(b"png-bytes", SHA)
    assert expected.read_bytes() == b"png-bytes" and s.image(SHA) == b"png-bytes" and s.has_image(SHA)
    # content-addressed: a second put of the same hash is a no-op
    s.put_image(b"other", SHA)
    assert expected.read_bytes() == b"png-bytes"
    assert [p.name for p in expected.parent.iterdir()] == [f"{SHA}.png"]


def test_store_record_paths(tmp_path):
    s = _records(tmp_path)
    defense_hash = "f" * 64
    assert s.attack_key("k" * 32) == f"attack_runs/kk/{'k' * 32}.json"
    assert s.defense_key(defense_hash, "key1") == f"defense_runs/{'f' * 32}/ke/key1.json"
    s.put_attack_record(_attack("k" * 32))
    s.put_defense_record(defense_hash, _defense("key1", 1))
    assert (tmp_path / "store" / "attack_runs" / "kk" / f"{'k' * 32}.json").is_file()
    assert (tmp_path / "store" / "defense_runs" / ("f" * 32) / "ke" / "key1.json").is_file()


def test_store_write_read_round_trip(tmp_path):
    local = LocalStore(tmp_path)
    assert isinstance(local, Store)  # the interface every store operation goes through
    local.put("attack_runs/k1.json", b'{"key": "k1"}')
    assert local.get("attack_runs/k1.json") == b'{"key": "k1"}' and local.exists("attack_runs/k1.json")
    assert [p.name for p in (tmp_path / "attack_runs").iterdir()] == ["k1.json"]
    s = RecordStore(local)
    record = _attack("k2", [SHA])
    s.put_image(b"png", SHA)
    s.put_attack_record(record)
    assert s.attack_record("k2") == record
    stored = (tmp_path / "attack_runs" / "k2" / "k2.json").read_bytes()
    assert stored == encode_record(record)  # schema 2: a head line and a body line
    head, body = stored.decode().splitlines()
    assert json.loads(head)["schema"] == 2 and json.loads(body)["version"] == [SHA]


def test_an_attack_record_whose_image_is_missing_reads_as_absent(tmp_path):
    """Images are put first and the record last, in one write: no rename, and a lost image redoes the unit."""
    s = _records(tmp_path)
    s.put_attack_record(_attack("k1", [SHA]))
    assert s.attack_record("k1") is None
    s.put_image(b"png", SHA)
    assert s.attack_record("k1") is not None
    s.put_clean_versions("d" * 64, {"img0": SHA, "img1": "cd" + "0" * 62})
    assert s.clean_versions("d" * 64) is None  # one of its images is missing
    s.put_clean_versions("d" * 64, {"img0": SHA})
    assert s.clean_versions("d" * 64) == {"img0": SHA}


@pytest.mark.parametrize("content", [b"", b"{", b'{"a": 1', b"\xff\xfe", b"[1, 2]", b"null", b'"text"'])
def test_store_read_returns_none_for_unusable_records(tmp_path, content):
    s = _records(tmp_path)
    path = tmp_path / "store" / "attack_runs" / "r" / "r.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    assert s.attack_record("r") is None
    (tmp_path / "store" / "key_scheme.json").write_bytes(content)
    assert s.key_scheme() == 0


def test_store_read_missing_and_directory(tmp_path):
    s = _records(tmp_path)
    assert s.attack_record("missing") is None and s.key_scheme() is None
    (tmp_path / "store" / "attack_runs" / "di" / "dir.json").mkdir(parents=True)
    assert s.attack_record("dir") is None
    assert s.objects.get("attack_runs/di/dir.json") is None and not s.objects.exists("attack_runs/di/dir.json")


def test_local_store_lists_by_prefix_and_refuses_keys_outside_it(tmp_path):
    local = LocalStore(tmp_path)
    for key in ("defense_runs/a/k2.json", "defense_runs/a/k1.json", "defense_runs/b/k0.json", "attack_runs/x.json"):
        local.put(key, b"{}")
    (tmp_path / "defense_runs" / "a" / ".k3.json.abc.tmp").write_text("{")  # leftover temp file
    assert local.list("defense_runs/a/") == ["defense_runs/a/k1.json", "defense_runs/a/k2.json"]
    assert local.list("defense_runs/") == ["defense_runs/a/k1.json", "defense_runs/a/k2.json",
                                           "defense_runs/b/k0.json"]
    assert local.list("nothing/") == []
    for bad in ("", "../x.json", "a//b", "/abs", "a/./b"):
        with pytest.raises(ValueError, match="store key"):
            local.put(bad, b"x")


def test_defense_records_sorted_by_file_name(tmp_path):
    s = _records(tmp_path)
    h = "c" * 64
    assert s.defense_records(h) == []
    s.put_defense_record(h, _defense("k2", 2))
    s.put_defense_record(h, _defense("k1", 1))
    s.put_defense_record("d" * 64, _defense("k0", 0))  # another defense version
    folder = tmp_path / "store" / "defense_runs" / ("c" * 32) / "k3"
    folder.mkdir()
    (folder / ".k3.json.abc.tmp").write_text("{")  # leftover temp file
    assert s.defense_records(h) == [_defense("k1", 1), _defense("k2", 2)]


def test_defense_records_skip_corrupt_record(tmp_path):
    s = _records(tmp_path)
    h = "c" * 64
    s.put_defense_record(h, _defense("k1", 1))
    corrupt = tmp_path / "store" / "defense_runs" / ("c" * 32) / "k2" / "k2.json"
    corrupt.parent.mkdir()
    corrupt.write_text('{"n": ')
    assert s.defense_records(h) == [_defense("k1", 1)]


# -- report -----------------------------------------------------------------------------------------

SCORES = [
    ScoreRow(epsilon=16, track="defense", rank=1, name="dA", raw=7, normalized=7 / 9, all_or_nothing=1 / 3,
             clean_accuracy=1.0, images=3, failed_runs=0, failed_images=0, failures="", seconds=10.5),
    ScoreRow(epsilon=16, track="attack", rank=1, name="a1", raw=3, normalized=None, all_or_nothing=None,
             clean_accuracy=None, images=3, failed_runs=1, failed_images=2,
             failures="1 run: exit code 1, killed; 2 images: missing output image", seconds=3.0),
    ScoreRow(epsilon=4, track="targeted_attack", rank=1, name="t1", raw=0, normalized=0.0, all_or_nothing=0.0,
             clean_accuracy=None, images=3, failed_runs=0, failed_images=0, failures="", seconds=0.04),
]


def test_leaderboard_csv_exact():
    assert leaderboard_csv(SCORES) == (
        "epsilon,track,rank,name,raw,normalized,all_or_nothing,clean_accuracy,images,failed_runs,"
        "failed_images,failures\n"
        "16,defense,1,dA,7,0.7778,0.3333,1.0000,3,0,0,\n"
        '16,attack,1,a1,3,,,,3,1,2,"1 run: exit code 1, killed; 2 images: missing output image"\n'
        "4,targeted_attack,1,t1,0,0.0000,0.0000,,3,0,0,\n")


def test_timings_csv_exact():
    assert timings_csv(SCORES) == ("epsilon,track,name,seconds\n16,defense,dA,10.5\n16,attack,a1,3.0\n"
                                   "4,targeted_attack,t1,0.0\n")


def test_leaderboard_csv_empty():
    assert leaderboard_csv([]) == ("epsilon,track,rank,name,raw,normalized,all_or_nothing,clean_accuracy,images,"
                                   "failed_runs,failed_images,failures\n")


def test_leaderboard_tables_one_table_per_epsilon_and_track():
    long_failure = "x" * 80
    scores = SCORES + [
        ScoreRow(epsilon=4, track="defense", rank=1, name="dZ", raw=1, normalized=0.5, all_or_nothing=0.25,
                 clean_accuracy=0.75, images=2, failed_runs=0, failed_images=0, failures=long_failure, seconds=1.0),
    ]
    text = leaderboard_tables(scores)
    titles = [line for line in text.splitlines() if ", epsilon = " in line]
    assert titles == ["defenses, epsilon = 4", "targeted attacks, epsilon = 4",
                      "defenses, epsilon = 16", "attacks, epsilon = 16"]
    blocks = text.split("\n\n")
    assert len(blocks) == 4
    defense_block, targeted_block = blocks[0], blocks[1]
    assert "clean acc." in defense_block and "clean acc." not in targeted_block
    assert "all-or-nothing" in targeted_block
    assert "x" * 57 + "..." in defense_block and "x" * 58 not in defense_block
    assert "| dZ " in defense_block
    assert "0.7778" in blocks[2] and "10.5" in blocks[2]
    assert "exit code 1, killed" in blocks[3]


def test_terminal_tables_keep_preformatted_cells():
    row = ScoreRow(epsilon=4, track="defense", rank=1, name="1e3", raw=1, normalized=0.5, all_or_nothing=0.25,
                   clean_accuracy=0.75, images=2, failed_runs=0, failed_images=0, failures="", seconds=1.0)
    cells = [c.strip() for c in leaderboard_tables([row]).splitlines()[-1].strip("|").split("|")]
    assert cells == ["1", "1e3", "1", "0.5000", "0.2500", "0.7500", "", "1.0"]
    table = matrix_table(Matrix(epsilon=4, columns=("clean",), rows=(("1e3", (0.5,)),)), "t")
    assert [c.strip() for c in table.splitlines()[-1].strip("|").split("|")] == ["1e3", "0.5000"]


def test_leaderboard_tables_empty():
    assert leaderboard_tables([]) == ""


def test_matrix_csv_and_table(tmp_path):
    matrices = [Matrix(epsilon=4, columns=("clean", "a1"), rows=(("dA", (1.0, None)), ("dB", (0.5, 1 / 3)))),
                Matrix(epsilon=16, columns=("clean", "a1"), rows=(("dA", (1.0, 0.0)),))]
    assert matrix_csv(matrices) == ("epsilon,defense,clean,a1\n"
                                    "4,dA,1.0000,\n"
                                    "4,dB,0.5000,0.3333\n"
                                    "16,dA,1.0000,0.0000\n")
    path = tmp_path / "m.csv"
    write_matrix(path, matrices)
    assert path.read_text() == matrix_csv(matrices)
    write_matrix(path, [])
    assert path.read_text() == ""
    table = matrix_table(matrices[0], "accuracy, epsilon = 4")
    lines = table.splitlines()
    assert lines[0] == "accuracy, epsilon = 4"
    assert "defense" in lines[1] and "clean" in lines[1] and "a1" in lines[1]
    assert "0.3333" in table
