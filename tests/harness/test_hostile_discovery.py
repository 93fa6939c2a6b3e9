"""Hostile neighbours (issue 28, items 3 and 7): one submission folder must not stop the competition.

A folder holding a named pipe, a unix socket, a device node or 1,100 nested folders, two folders of one name, and
container fields that are not docker image references are each refused by name, in one line, at discovery; the
other submissions run, and ``validate``, ``score`` and ``report`` keep answering. Everything that could block runs
in a child process with a timeout, so a regression fails instead of hanging the suite.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from harness.cleanup import remove_tree
from harness.cli import main
from harness.names import image_reference_problem
from harness.report import leaderboard_tables
from harness.sandboxes.docker import image_problem
from harness.scoring import ScoreRow
from harness.submission import SubmissionError, content_hash, discover, list_folder, parse_submission
from harness.table import RunRow, read_csv, write_csv
from harness.tree import MAX_DEPTH, walk
from tiny_world import BUCKET_DEFENSE, PLUS, write_submission

ROOT = Path(__file__).resolve().parents[2]
#: Seconds a child process may take before the test calls it hung (the machine may be busy).
TIMEOUT = 240


def _cli(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / "run_competition.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _unix_socket(path: Path) -> socket.socket:
    """A unix socket bound at ``path`` (bound by a relative name: ``path`` may exceed the 108-byte limit)."""
    here = os.getcwd()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        os.chdir(path.parent)
        server.bind(path.name)
    finally:
        os.chdir(here)
    return server


def _nest(folder: Path, depth: int) -> None:
    """``depth`` folders nested below ``folder`` (by relative names: the full path may exceed PATH_MAX)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        with open(os.open("x.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as handle:
            handle.write("deep")
            fd = -1
    finally:
        if fd >= 0:
            os.close(fd)


@pytest.fixture
def nested() -> Iterator[list[Path]]:
    """Folders the test nests deeply, removed afterwards without recursion (pytest's own clean-up recurses)."""
    folders: list[Path] = []
    yield folders
    for folder in folders:
        remove_tree(folder)


def _hostile_attacks(attacks: Path) -> tuple[dict[str, str], list[socket.socket]]:
    """Attack folders each holding one kind of hostile entry; returns {name: words its refusal must hold}."""
    expect = {"fifo": "named pipe", "socket": "unix socket", "deep": f"more than {MAX_DEPTH} levels",
              "everything": ""}
    for name in expect:
        write_submission(attacks, name, "attack", PLUS)
    os.mkfifo(attacks / "fifo" / "model.ckpt")
    sockets = [_unix_socket(attacks / "socket" / "agent.sock")]
    _nest(attacks / "deep", 1100)
    (attacks / "everything" / "sub").mkdir()
    os.mkfifo(attacks / "everything" / "sub" / "pipe")
    sockets.append(_unix_socket(attacks / "everything" / "sock"))
    _nest(attacks / "everything", 1100)
    if os.geteuid() == 0:  # only root may make a device node
        write_submission(attacks, "device", "attack", PLUS)
        os.mknod(attacks / "device" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        os.mknod(attacks / "everything" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        expect["device"] = "character device"
    return expect, sockets


def test_special_files_and_deep_folders_are_refused_by_name_and_the_rest_runs(world: dict[str, Path],
                                                                             nested: list[Path]) -> None:
    nested += [world["attacks"] / "deep", world["attacks"] / "everything"]
    write_submission(world["attacks"], "plus", "attack", PLUS)
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    expect, sockets = _hostile_attacks(world["attacks"])
    try:
        done = _cli("run", "--input_dir", str(world["data"]), "--attacks_dir", str(world["attacks"]),
                    "--defenses_dir", str(world["defenses"]), "--output_dir", str(world["results"]),
                    "--sandbox", "none", "--jobs", "1", "--quiet")
        assert done.returncode == 0, done.stderr[-3000:]
        skipped = [line for line in done.stderr.splitlines() if line.startswith("skipped ")]
        assert len(skipped) == len(expect), done.stderr[-3000:]
        for name, words in expect.items():
            line = next(line for line in skipped if line.startswith(f"skipped {world['attacks'] / name}: "))
            assert words in line and len(line) < 500, line
        manifest = json.loads((world["results"] / "manifest.json").read_text())
        assert sorted(s["name"] for s in manifest["submissions"]) == ["bucket", "plus"]
        assert sorted(Path(s["path"]).name for s in manifest["skipped"]) == sorted(expect)
        leaderboard = (world["results"] / "leaderboard.csv").read_text()
        assert "plus" in leaderboard and "bucket" in leaderboard

        for name, words in expect.items():  # validate answers at once, in one line, naming the file
            checked = _cli("validate", str(world["attacks"] / name), "--input_dir", str(world["data"]),
                           "--sandbox", "none", timeout=120)
            assert checked.returncode == 1, checked.stdout + checked.stderr[-2000:]
            problems = [line for line in checked.stdout.splitlines() if line.startswith("PROBLEM: ")]
            assert len(problems) == 1 and words in problems[0] and str(world["attacks"] / name) in problems[0], \
                checked.stdout
    finally:
        for server in sockets:
            server.close()


def test_walks_never_recurse_nor_open_special_files(tmp_path: Path, nested: list[Path]) -> None:
    folder = write_submission(tmp_path, "deep", "attack", PLUS)
    nested.append(folder)
    _nest(folder, 1100)
    with pytest.raises(SubmissionError, match=f"more than {MAX_DEPTH} levels deep; flatten the folder"):
        content_hash(folder)
    with pytest.raises(OSError, match="nested more than"):
        walk(folder, max_entries=None)
    wide = write_submission(tmp_path, "wide", "attack", PLUS)
    for index in range(50):
        (wide / f"f{index}").write_text("x")
    with pytest.raises(OSError, match="more than 40 files and folders"):
        walk(wide, max_entries=40)
    # the special file of a listing that changed after the walk: opening never blocks, the hash refuses it
    late = write_submission(tmp_path, "late", "attack", PLUS)
    (late / "data.bin").write_text("x")
    listing = list_folder(late)
    (late / "data.bin").unlink()
    os.mkfifo(late / "data.bin")
    with pytest.raises(SubmissionError, match="is a named pipe \\(FIFO\\), not a regular file"):
        content_hash(late, listing)


def test_two_submissions_of_one_name_are_both_refused_and_the_rest_runs(world: dict[str, Path]) -> None:
    other = world["root"] / "more_attacks"
    write_submission(world["attacks"], "twin", "attack", PLUS)
    write_submission(other, "TWIN", "targeted_attack", PLUS)
    write_submission(world["attacks"], "plus", "attack", PLUS)
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    found = discover([world["attacks"], other, world["defenses"]])
    assert [s.name for s in found.submissions] == ["bucket", "plus"]
    assert sorted(p.path.name for p in found.problems) == ["TWIN", "twin"]
    for problem in found.problems:
        assert "same name" in problem.message and "rename one folder" in problem.message
        assert "\n" not in problem.message
    done = _cli("run", "--input_dir", str(world["data"]), "--attacks_dir", str(world["attacks"]),
                "--targeted_attacks_dir", str(other), "--defenses_dir", str(world["defenses"]),
                "--output_dir", str(world["results"]), "--sandbox", "none", "--jobs", "1", "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    assert sum(line.startswith("skipped ") and "same name" in line for line in done.stderr.splitlines()) == 2
    assert "plus" in (world["results"] / "leaderboard.csv").read_text()


NIPS17_IMAGES = ["gcr.io/tensorflow/tensorflow:1.1.0", "goodfeli/tf_nips17:gpu", "goodfeli/tf_nips17",
                 "gcr.io/tensorflow/tensorflow:1.1.0-gpu", "python:3.11", "localhost:5000/team/attack:v1.2_b",
                 "registry.example.com:443/a__b/c-d.e", "ubuntu@sha256:" + "0" * 64, "Registry.IO/lower/name"]
BAD_IMAGES = {"huge": "x" * (2 << 20), "escapes": "evil\x1b[2J\x1b]0;owned\x07:latest", "help": "--help",
              "upper": "Goodfeli/TF_nips17:gpu", "spaces": "python 3.11", "tag": "python:-bad",
              "digest": "python@sha256:abc", "newline": "python:3.11\nrm -rf /"}


def test_image_references_follow_dockers_grammar() -> None:
    for reference in NIPS17_IMAGES:
        assert image_reference_problem(reference) == "", reference
    assert image_reference_problem("") == ""
    for reference in BAD_IMAGES.values():
        problem = image_reference_problem(reference)
        assert "not a docker image reference" in problem and len(problem) < 500, problem
        assert "\x1b" not in problem and "\n" not in problem
    assert "lowercase" in image_reference_problem(BAD_IMAGES["upper"])
    assert "longer than 255" in image_reference_problem("a" * 256 + ":tag")
    assert "not a docker image reference" in image_problem("--help")  # never handed to docker


def test_container_fields_are_checked_at_discovery_and_score_and_report_keep_working(
        world: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    write_submission(world["attacks"], "plus", "attack", PLUS)
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    for index, reference in enumerate(NIPS17_IMAGES):
        folder = write_submission(world["attacks"], f"nips{index}", "attack", PLUS)
        meta = json.loads((folder / "metadata.json").read_text())
        (folder / "metadata.json").write_text(json.dumps({**meta, "container": reference,
                                                          "container_gpu": reference}))
    for label, reference in BAD_IMAGES.items():
        for key in ("container", "container_gpu"):
            folder = write_submission(world["attacks"], f"bad_{key}_{label}", "attack", PLUS)
            meta = json.loads((folder / "metadata.json").read_text())
            (folder / "metadata.json").write_text(json.dumps({**meta, key: reference}))
    found = discover([world["attacks"], world["defenses"]])
    assert sorted(s.name for s in found.submissions) == sorted(
        ["plus", "bucket", *(f"nips{i}" for i in range(len(NIPS17_IMAGES)))])
    assert parse_submission(world["attacks"] / "nips0").container == "gcr.io/tensorflow/tensorflow:1.1.0"
    assert len(found.problems) == 2 * len(BAD_IMAGES)
    for problem in found.problems:
        key = "container_gpu" if "container_gpu" in problem.path.name else "container"
        assert problem.message.startswith(f"{problem.path / 'metadata.json'}: \"{key}\" "), problem.message
        assert "docker image reference" in problem.message and len(problem.message) < 700
        assert "\x1b" not in problem.message and "\n" not in problem.message

    assert main(["run", "--input_dir", str(world["data"]), "--attacks_dir", str(world["attacks"]),
                 "--defenses_dir", str(world["defenses"]), "--output_dir", str(world["results"]),
                 "--sandbox", "none", "--jobs", "1", "--quiet", "--only", "plus", "bucket"]) == 0
    err = capsys.readouterr().err
    assert "\x1b" not in err and sum(line.startswith("skipped ") for line in err.splitlines()) == len(found.problems)
    assert (world["results"] / "runs.csv").stat().st_size < 100_000
    assert main(["score", "--output_dir", str(world["results"])]) == 0
    assert "plus" in capsys.readouterr().out
    assert main(["report", "--output_dir", str(world["results"])]) == 0


def test_participant_text_is_bounded_in_tables_and_the_terminal(tmp_path: Path) -> None:
    row = ScoreRow(epsilon=16, track="attack", rank=1, name="a", raw=0, normalized=0.0, all_or_nothing=0.0,
                   clean_accuracy=None, images=1, failed_runs=1, failed_images=0,
                   failures="1 run: image '\x1b[31mred\x1b[0m' missing", seconds=0.0)
    table = leaderboard_tables([row])
    assert "\x1b" not in table and "\\x1b[31mred" in table
    huge = tmp_path / "runs.csv"
    write_csv(huge, [RunRow(kind="attack", name="a", epsilon=16, batch="k", images=1, exit_code=None,
                            timed_out=False, seconds=0.0, problem="x" * 300_000, log="l")], RunRow)
    with pytest.raises(ValueError, match="runs.csv: not a results table of this harness"):
        read_csv(huge, RunRow)
