"""Unit tests for harness.submission: metadata parsing, content hash, discovery."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.submission import (
    AttackRole,
    Discovery,
    Submission,
    SubmissionError,
    SubmissionType,
    content_hash,
    discover,
    iter_files,
    parse_submission,
    suggest,
)


def make_submission(parent: Path, name: str, metadata: dict | str | None, *,
                    files: dict[str, str] | None = None, executable: bool = True) -> Path:
    folder = parent / name
    folder.mkdir(parents=True, exist_ok=True)
    if metadata is not None:
        text = metadata if isinstance(metadata, str) else json.dumps(metadata)
        (folder / "metadata.json").write_text(text)
    if files is None:
        entry = metadata.get("entry_point", "run.sh") if isinstance(metadata, dict) else "run.sh"
        files = {entry: "#!/bin/sh\necho hi\n"} if isinstance(entry, str) and entry.strip() else {}
    for rel, content in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        path.chmod(0o755 if executable else 0o644)
    return folder


def attack_meta(kind: str = "attack", entry: str = "run.sh", **extra) -> dict:
    return {"type": kind, "entry_point": entry, **extra}


# -- parse_submission -------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, expected, is_attack", [
    ("attack", SubmissionType.ATTACK, True),
    ("targeted_attack", SubmissionType.TARGETED_ATTACK, True),
    ("defense", SubmissionType.DEFENSE, False),
])
def test_parse_valid_submissions(tmp_path, kind, expected, is_attack):
    folder = make_submission(tmp_path, "sub_1", attack_meta(kind))
    submission = parse_submission(folder)
    assert isinstance(submission, Submission)
    assert submission.name == "sub_1"
    assert submission.type is expected
    assert submission.type.is_attack is is_attack
    assert submission.entry_point == "run.sh"
    assert submission.path == folder.resolve()
    assert submission.container == "" and submission.container_gpu == ""
    assert submission.warnings == ()
    assert submission.content_hash == content_hash(folder)
    assert len(submission.content_hash) == 64


def test_containers_recorded_unknown_keys_ignored(tmp_path):
    folder = make_submission(tmp_path, "d", attack_meta("defense", container="gcr.io/x/cpu:1",
                                                        container_gpu="gcr.io/x/gpu:1", author="me"))
    submission = parse_submission(str(folder))
    assert submission.container == "gcr.io/x/cpu:1"
    assert submission.container_gpu == "gcr.io/x/gpu:1"


@pytest.mark.parametrize("entry, stored", [("./run.sh", "run.sh"), (" bin/run.sh ", "bin/run.sh"),
                                           ("bin/./run.sh", "bin/run.sh")])
def test_entry_point_is_normalised(tmp_path, entry, stored):
    folder = make_submission(tmp_path, "a", attack_meta(entry=entry), files={stored: "#!/bin/sh\n"})
    assert parse_submission(folder).entry_point == stored


@pytest.mark.parametrize("key", ["container", "container_gpu"])
def test_container_must_be_string(tmp_path, key):
    folder = make_submission(tmp_path, "a", attack_meta(**{key: 5}))
    with pytest.raises(SubmissionError, match=f'"{key}" must be a string'):
        parse_submission(folder)


@pytest.mark.parametrize("raw, hint", [
    ("atack", " — did you mean 'attack'?"),
    ("defence", " — did you mean 'defense'?"),
    ("targeted", " — did you mean 'targeted_attack'?"),
    ("Defense", " — did you mean 'defense'?"),
    ("classifier", ""),
])
def test_unknown_type_suggests(tmp_path, raw, hint):
    folder = make_submission(tmp_path, "a", attack_meta(raw))
    with pytest.raises(SubmissionError) as info:
        parse_submission(folder)
    assert str(info.value) == (f"{folder / 'metadata.json'}: unknown type {raw!r}; "
                               f"use one of attack, targeted_attack, defense{hint}")


def test_nips17_metadata_has_no_role_and_records_no_optional_key(tmp_path):
    submission = parse_submission(make_submission(tmp_path, "fgsm", attack_meta()))
    assert submission.role is None and submission.iterates == "" and submission.optional_keys() == {}


def test_role_and_iterates_are_read_and_recorded(tmp_path):
    folder = make_submission(tmp_path, "apgd", attack_meta(role="white_box", iterates="fgsm", targets_defense="jpeg"))
    submission = parse_submission(folder)
    assert submission.role is AttackRole.WHITE_BOX and submission.iterates == "fgsm"
    assert submission.optional_keys() == {"targets_defense": "jpeg", "role": "white_box", "iterates": "fgsm"}


@pytest.mark.parametrize("role, hint", [("whitebox", " — did you mean 'white_box'?"), (3, ""), (None, "")])
def test_unknown_role_names_the_roles(tmp_path, role, hint):
    folder = make_submission(tmp_path, "a", attack_meta(role=role))
    with pytest.raises(SubmissionError) as info:
        parse_submission(folder)
    assert str(info.value) == (f"{folder / 'metadata.json'}: \"role\" {role!r} is not one of white_box, transfer, "
                               f"score_based, random_noise, no_op{hint}; or leave it out")


@pytest.mark.parametrize("iterates", ["../fgsm", 3, "a b"])
def test_iterates_must_name_a_folder(tmp_path, iterates):
    folder = make_submission(tmp_path, "a", attack_meta(role="white_box", iterates=iterates))
    with pytest.raises(SubmissionError, match=r'"iterates" must be the folder name of one single-step attack .*'
                                              r'e\.g\. "iterates": "fgsm"'):
        parse_submission(folder)


def test_every_sample_attack_has_a_role_and_iterates_a_sample_attack():
    """The report's sanity checks compare every sample attack (none is listed as not checked)."""
    attacks = Path(__file__).resolve().parents[2] / "attacks"
    found = discover([attacks], expected={attacks: {SubmissionType.ATTACK, SubmissionType.TARGETED_ATTACK}})
    parsed = {s.name: s for s in found.submissions}
    assert not found.problems and len(parsed) >= 20 and all(s.role is not None for s in parsed.values())
    pairs = {name: s.iterates for name, s in parsed.items() if s.iterates}
    assert pairs == {"i_fgsm": "fgsm", "pgd": "fgsm", "mi_fgsm": "fgsm", "iter_ll": "step_ll",
                     "iter_target": "step_target"}
    assert {parsed[n].role for n in ("cw_linf", "apgd", "di_mi_fgsm", "square")} == {
        AttackRole.WHITE_BOX, AttackRole.TRANSFER, AttackRole.SCORE_BASED}


def test_missing_type(tmp_path):
    folder = make_submission(tmp_path, "a", {"entry_point": "run.sh"})
    with pytest.raises(SubmissionError, match=r'metadata\.json: no "type"; set it to one of attack, '
                                              r'targeted_attack, defense'):
        parse_submission(folder)


def test_non_string_type(tmp_path):
    folder = make_submission(tmp_path, "a", {"type": ["attack"], "entry_point": "run.sh"})
    with pytest.raises(SubmissionError, match=r"unknown type \['attack'\]"):
        parse_submission(folder)


def test_invalid_json_reports_line_and_column(tmp_path):
    text = '{\n  "type": "attack",\n  "entry_point": run.sh\n}\n'
    folder = make_submission(tmp_path, "a", text)
    with pytest.raises(SubmissionError) as info:
        parse_submission(folder)
    assert str(info.value) == f"{folder / 'metadata.json'}:3:18: invalid JSON (Expecting value)"


def test_json_not_an_object(tmp_path):
    folder = make_submission(tmp_path, "a", '["attack", "run.sh"]')
    with pytest.raises(SubmissionError, match=r"must hold a JSON object, not list"):
        parse_submission(folder)


def test_metadata_not_utf8(tmp_path):
    folder = make_submission(tmp_path, "a", None, files={"run.sh": "#!/bin/sh\n"})
    (folder / "metadata.json").write_bytes(b'{"type": "\xff"}')
    with pytest.raises(SubmissionError, match=r"metadata\.json: cannot read"):
        parse_submission(folder)


def test_missing_metadata(tmp_path):
    folder = make_submission(tmp_path, "a", None, files={"run.sh": "#!/bin/sh\n"})
    with pytest.raises(SubmissionError) as info:
        parse_submission(folder)
    assert str(info.value).startswith(f"{folder / 'metadata.json'}: missing; add a metadata.json")


@pytest.mark.parametrize("name", ["my sub", "-dash", ".hidden", "a$b"])
def test_bad_folder_name(tmp_path, name):
    folder = make_submission(tmp_path, name, attack_meta())
    with pytest.raises(SubmissionError, match=r"must use letters, digits"):
        parse_submission(folder)


@pytest.mark.parametrize("metadata", [{"type": "attack"}, {"type": "attack", "entry_point": ""},
                                      {"type": "attack", "entry_point": "  "},
                                      {"type": "attack", "entry_point": 5}])
def test_missing_entry_point_key(tmp_path, metadata):
    folder = make_submission(tmp_path, "a", metadata, files={"run.sh": "#!/bin/sh\n"})
    with pytest.raises(SubmissionError, match=r'no "entry_point"; name the script to run'):
        parse_submission(folder)


def test_missing_entry_point_file_suggests_near_name(tmp_path):
    folder = make_submission(tmp_path, "a", attack_meta(entry="run_atack.sh"),
                             files={"run_attack.sh": "#!/bin/sh\n", "README.md": "x"})
    with pytest.raises(SubmissionError) as info:
        parse_submission(folder)
    assert str(info.value) == (f"{folder / 'metadata.json'}: entry_point 'run_atack.sh' does not exist in "
                               f"{folder} — did you mean 'run_attack.sh'?")


def test_missing_entry_point_file_without_near_name(tmp_path):
    folder = make_submission(tmp_path, "a", attack_meta(entry="main.py"), files={"zzz.txt": "x"})
    with pytest.raises(SubmissionError) as info:
        parse_submission(folder)
    assert str(info.value).endswith(f"does not exist in {folder}")


def test_entry_point_that_is_a_directory(tmp_path):
    folder = make_submission(tmp_path, "a", attack_meta(entry="bin"), files={"bin/x": "x"})
    with pytest.raises(SubmissionError, match=r"entry_point 'bin' does not exist"):
        parse_submission(folder)


@pytest.mark.parametrize("entry", ["../x.sh", "/bin/sh", "sub/../../x.sh", ".."])
def test_entry_point_outside_folder_rejected(tmp_path, entry):
    (tmp_path / "x.sh").write_text("#!/bin/sh\n")
    folder = make_submission(tmp_path, "a", attack_meta(entry=entry), files={"sub/y": "y"})
    with pytest.raises(SubmissionError) as info:
        parse_submission(folder)
    assert f"entry_point {entry!r} must be a path inside the folder" in str(info.value)


def test_non_executable_entry_point_is_a_warning(tmp_path):
    folder = make_submission(tmp_path, "a", attack_meta(), executable=False)
    submission = parse_submission(folder)
    assert len(submission.warnings) == 1
    warning = submission.warnings[0]
    assert "run.sh: not executable" in warning
    assert f"chmod +x {folder / 'run.sh'}" in warning


def test_symlinked_entry_point_rejected(tmp_path):
    outside = tmp_path / "outside.sh"
    outside.write_text("#!/bin/sh\n")
    folder = make_submission(tmp_path, "a", attack_meta(), files={})
    (folder / "run.sh").symlink_to(outside)
    with pytest.raises(SubmissionError, match="symbolic link"):
        parse_submission(folder)


def test_suggest():
    assert suggest("atack", ["attack", "defense"]) == " — did you mean 'attack'?"
    assert suggest("xyz", ["attack", "defense"]) == ""
    assert suggest("x", []) == ""


# -- content hash -----------------------------------------------------------------------------------

def test_content_hash_stable_and_location_independent(tmp_path):
    folder = make_submission(tmp_path / "p1", "a", attack_meta(), files={"run.sh": "#!/bin/sh\n",
                                                                        "lib/m.py": "x = 1\n"})
    first = content_hash(folder)
    assert content_hash(folder) == first
    copy = tmp_path / "p2" / "b"
    shutil.copytree(folder, copy)
    assert content_hash(copy) == first


def test_content_hash_ignores_caches(tmp_path):
    folder = make_submission(tmp_path, "a", attack_meta(), files={"run.sh": "#!/bin/sh\n", "m.py": "x=1\n"})
    before = content_hash(folder)
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\0\1")
    (folder / "m.pyc").write_bytes(b"\0")
    (folder / "lib" / "__pycache__").mkdir(parents=True)
    (folder / "lib" / "__pycache__" / "z.pyc").write_bytes(b"\0")
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref")
    (folder / ".DS_Store").write_bytes(b"x")
    (folder / ".ipynb_checkpoints").mkdir()
    (folder / ".ipynb_checkpoints" / "n.ipynb").write_text("{}")
    assert content_hash(folder) == before
    assert [p.as_posix() for p in iter_files(folder)] == ["m.py", "metadata.json", "run.sh"]


def test_content_hash_changes_with_bytes_exec_bit_names_and_new_files(tmp_path):
    folder = make_submission(tmp_path, "a", attack_meta(), files={"run.sh": "#!/bin/sh\n", "m.py": "x=1\n"})
    seen = {content_hash(folder)}

    (folder / "m.py").write_text("x=2\n")
    seen.add(content_hash(folder))
    assert len(seen) == 2

    assert (folder / "m.py").stat().st_mode & 0o777 == 0o755
    (folder / "m.py").chmod(0o644)
    seen.add(content_hash(folder))
    assert len(seen) == 3

    (folder / "m.py").rename(folder / "n.py")
    seen.add(content_hash(folder))
    assert len(seen) == 4

    (folder / "empty.txt").write_text("")
    seen.add(content_hash(folder))
    assert len(seen) == 5

    (folder / "sub").mkdir()
    (folder / "n.py").rename(folder / "sub" / "n.py")
    seen.add(content_hash(folder))
    assert len(seen) == 6


def test_content_hash_file_boundaries_matter(tmp_path):
    one = make_submission(tmp_path / "x", "a", attack_meta(), files={"run.sh": "ab", "z": "c"})
    two = make_submission(tmp_path / "y", "a", attack_meta(), files={"run.sh": "a", "z": "bc"})
    assert content_hash(one) != content_hash(two)


def test_iter_files_skips_symlinks(tmp_path):
    folder = make_submission(tmp_path, "a", attack_meta())
    (folder / "link.sh").symlink_to(folder / "run.sh")
    (folder / "linkdir").symlink_to(tmp_path)
    assert [p.as_posix() for p in iter_files(folder)] == ["metadata.json", "run.sh"]


# -- discover ---------------------------------------------------------------------------------------

def test_discover_collects_good_and_reports_broken(tmp_path):
    attacks, defenses = tmp_path / "attacks", tmp_path / "defenses"
    make_submission(attacks, "zeta", attack_meta())
    make_submission(attacks, "alpha", attack_meta("targeted_attack"))
    make_submission(attacks, "broken", None, files={"run.sh": "x"})
    make_submission(attacks, "badjson", "{")
    make_submission(defenses, "mid", attack_meta("defense"))
    (attacks / "README.md").write_text("not a folder")
    result = discover([attacks, defenses])
    assert isinstance(result, Discovery)
    assert [s.name for s in result.submissions] == ["alpha", "mid", "zeta"]
    assert [p.path for p in result.problems] == [attacks / "badjson", attacks / "broken"]
    assert result.problems[1].message.startswith(f"{attacks / 'broken' / 'metadata.json'}: missing; add a "
                                                 "metadata.json")
    assert result.problems[0].message == (f"{attacks / 'badjson' / 'metadata.json'}:1:2: invalid JSON "
                                          "(Expecting property name enclosed in double quotes)")
    assert [s.name for s in result.of_type(SubmissionType.ATTACK, SubmissionType.TARGETED_ATTACK)] == ["alpha",
                                                                                                       "zeta"]
    assert [s.name for s in result.of_type(SubmissionType.DEFENSE)] == ["mid"]
    assert result.of_type() == []


def test_discover_duplicate_names_case_insensitive(tmp_path):
    attacks, defenses = tmp_path / "attacks", tmp_path / "defenses"
    make_submission(attacks, "Foo", attack_meta())
    make_submission(defenses, "foo", attack_meta("defense"))
    make_submission(attacks, "other", attack_meta())
    result = discover([attacks, defenses])
    assert [s.name for s in result.submissions] == ["other"]
    first, second = (str((attacks / "Foo").resolve()), str((defenses / "foo").resolve()))
    assert [str(p.path) for p in result.problems] == [first, second]
    for problem in result.problems:
        assert first in problem.message and second in problem.message
        assert "rename one folder" in problem.message


def test_discover_one_folder_given_twice_is_listed_once(tmp_path):
    attacks = tmp_path / "attacks"
    make_submission(attacks, "foo", attack_meta())
    assert [s.name for s in discover([attacks, tmp_path / "." / "attacks"]).submissions] == ["foo"]


def test_discover_wrong_track_reported_and_skipped(tmp_path):
    attacks, defenses = tmp_path / "attacks", tmp_path / "defenses"
    make_submission(attacks, "good", attack_meta())
    make_submission(attacks, "lost_defense", attack_meta("defense"))
    make_submission(defenses, "d", attack_meta("defense"))
    expected = {attacks: {SubmissionType.ATTACK, SubmissionType.TARGETED_ATTACK},
                defenses: {SubmissionType.DEFENSE}}
    result = discover([attacks, defenses], expected=expected)
    assert [s.name for s in result.submissions] == ["d", "good"]
    assert len(result.problems) == 1
    problem = result.problems[0]
    assert problem.path == attacks / "lost_defense"
    assert problem.message == (f"{attacks / 'lost_defense' / 'metadata.json'}: type 'defense' does not belong "
                               f"in {attacks}; move the folder or fix its type")
    # without `expected` the same folder is accepted
    assert [s.name for s in discover([attacks, defenses]).submissions] == ["d", "good", "lost_defense"]


def test_discover_ignores_hidden_and_underscore_folders(tmp_path):
    attacks = tmp_path / "attacks"
    make_submission(attacks, "ok", attack_meta())
    make_submission(attacks, ".hidden", None, files={"x": "x"})
    make_submission(attacks, "_template", "{not json")
    make_submission(attacks, "__pycache__", None, files={"y": "y"})
    result = discover([attacks])
    assert [s.name for s in result.submissions] == ["ok"]
    assert result.problems == ()


def test_discover_problem_for_bad_folder_name(tmp_path):
    attacks = tmp_path / "attacks"
    make_submission(attacks, "has space", attack_meta())
    result = discover([attacks])
    assert result.submissions == ()
    assert len(result.problems) == 1 and "must use letters, digits" in result.problems[0].message


def test_discover_missing_parent_raises(tmp_path):
    with pytest.raises(SubmissionError, match=r"submission folder .*nowhere does not exist"):
        discover([tmp_path / "nowhere"])


def test_discover_empty_parent(tmp_path):
    (tmp_path / "attacks").mkdir()
    assert discover([tmp_path / "attacks"]) == Discovery(submissions=(), problems=())
