"""Crash safety and bad input to the harness itself.

Killing the harness with SIGKILL at any point and rerunning gives a leaderboard byte-identical to an
uninterrupted run, without redoing finished work; bad harness input is a one-line error with no partial output.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cli import main
from tiny_world import BUCKET_DEFENSE, CONSTANT_DEFENSE, NOOP, PLUS, TOWARD_TARGET, write_dataset, write_submission

SLOW = "import time\ntime.sleep(0.4)\n"


def _args(world: dict[str, Path], output: Path) -> list[str]:
    return ["--input_dir", str(world["data"]), "--attacks_dir", str(world["attacks"]), "--defenses_dir",
            str(world["defenses"]), "--output_dir", str(output), "--batch_size", "2", "--quiet",
            "--max_epsilon", "8", "16"]


def _records(output: Path) -> dict[str, bytes]:
    store = output / "store"
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*.json"))}


def test_sigkill_at_several_points_then_rerun(world: dict[str, Path], open_tmp: Path) -> None:
    write_submission(world["attacks"], "noop", "attack", SLOW + NOOP)
    write_submission(world["attacks"], "plus", "attack", SLOW + PLUS)
    write_submission(world["attacks"], "toward_target", "targeted_attack", SLOW + TOWARD_TARGET)
    write_submission(world["defenses"], "bucket", "defense", SLOW + BUCKET_DEFENSE)
    write_submission(world["defenses"], "constant", "defense", SLOW + CONSTANT_DEFENSE)
    reference = world["root"] / "reference"
    assert main(_args(world, reference)) == 0

    interrupted = world["root"] / "interrupted"
    code = "import sys; from harness.cli import main; sys.exit(main(sys.argv[1:]))"
    scratch = open_tmp  # the harnesses' temporary folder (a root harness stages folders there)
    env = {**os.environ, "TMPDIR": str(scratch)}
    kills = 0
    for delay in (0.8, 2.0, 3.5, 5.0, 7.0):
        process = subprocess.Popen([sys.executable, "-c", code, *_args(world, interrupted)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        time.sleep(delay)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            kills += 1
        process.wait()
    assert kills >= 2, "the run finished too fast to be interrupted; make the submissions slower"
    finished_before = _records(interrupted)
    subprocess.run([sys.executable, "-c", code, *_args(world, interrupted)], check=True, env=env)
    # What the killed harnesses could not delete (staging folders of a root harness) the next one did.
    assert sorted(p.name for p in scratch.iterdir()) == []
    finished_after = _records(interrupted)
    # Work finished before the last rerun was not redone: every record is byte-identical.
    assert {k: v for k, v in finished_after.items() if k in finished_before} == finished_before
    assert (interrupted / "leaderboard.csv").read_bytes() == (reference / "leaderboard.csv").read_bytes()
    assert (interrupted / "per_image.csv").read_bytes() == (reference / "per_image.csv").read_bytes()
    leftovers = [p for p in interrupted.rglob("*") if p.name.endswith(".tmp") or ".tmp" in p.name]
    assert leftovers == []


@pytest.fixture
def runnable(world: dict[str, Path]) -> dict[str, Path]:
    write_submission(world["attacks"], "plus", "attack", PLUS)
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    return world


def _bad_input_cases(world: dict[str, Path], tmp: Path) -> list[tuple[str, list[str], str]]:
    base = _args(world, tmp / "out")
    empty = tmp / "empty"
    empty.mkdir()
    (empty / "labels.csv").write_text("ImageId,TrueLabel\n")
    corrupt = write_dataset(tmp / "corrupt", [10, 60])
    (corrupt / "img1.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    malformed = write_dataset(tmp / "malformed", [10, 60])
    (malformed / "dev_dataset.csv").write_text("ImageId,TrueLabel,TargetClass\nimg0,zero,1\nimg1,1,2\n")

    def replace(flag: str, value: str) -> list[str]:
        args = list(base)
        args[args.index(flag) + 1] = value
        return args

    return [
        ("missing input", replace("--input_dir", str(tmp / "nowhere")), "does not exist"),
        ("missing attacks dir", replace("--attacks_dir", str(tmp / "no_attacks")), "no_attacks does not exist"),
        ("empty dataset", replace("--input_dir", str(empty)), "the dataset is empty"),
        ("corrupt png", replace("--input_dir", str(corrupt)), "img1.png"),
        ("malformed labels", replace("--input_dir", str(malformed)), "dev_dataset.csv:2: TrueLabel 'zero'"),
    ]


def test_bad_harness_input_is_a_one_line_error(runnable: dict[str, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    for label, args, message in _bad_input_cases(runnable, tmp_path):
        assert main(args) == 2, label
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err, (label, err)
        assert len(err.splitlines()) == 1, (label, err)
        assert not (tmp_path / "out").exists(), label


def test_epsilon_outside_range_and_foreign_output_dir(runnable: dict[str, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    args = _args(runnable, tmp_path / "out")
    for bad in ("-1", "256", "4.5"):
        bad_args = list(args)
        bad_args[bad_args.index("--max_epsilon") + 1] = bad
        with pytest.raises(SystemExit) as stop:
            main(bad_args)
        assert stop.value.code == 2
        assert "0..255" in capsys.readouterr().err
    assert main(args) == 0
    before = sorted(p.name for p in (tmp_path / "out").iterdir())
    other = write_dataset(tmp_path / "other", [5, 55, 105])
    foreign = list(args)
    foreign[foreign.index("--input_dir") + 1] = str(other)
    assert main(foreign) == 2
    assert "holds results for another dataset" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == before
