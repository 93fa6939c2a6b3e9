"""The command line: run, validate, score, and its error messages."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from harness.cli import main
from tiny_world import BUCKET_DEFENSE, PLUS, write_dataset, write_submission


def _run_args(world: dict[str, Path], *extra: str) -> list[str]:
    return ["--input_dir", str(world["data"]), "--attacks_dir", str(world["attacks"]), "--defenses_dir",
            str(world["defenses"]), "--output_dir", str(world["results"]), "--min_seconds", "20", *extra]


def test_run_then_score(world: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    write_submission(world["attacks"], "plus", "attack", PLUS)
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    assert main(_run_args(world, "--max_epsilon", "8", "16", "--quiet")) == 0
    board = list(csv.DictReader(open(world["results"] / "leaderboard.csv")))
    assert {(r["epsilon"], r["track"], r["name"]) for r in board} == {
        ("8", "defense", "bucket"), ("8", "attack", "plus"), ("16", "defense", "bucket"), ("16", "attack", "plus")}
    capsys.readouterr()
    assert main(["score", "--output_dir", str(world["results"])]) == 0
    out = capsys.readouterr().out
    assert "defenses, epsilon = 8" in out and "attacks, epsilon = 16" in out and "bucket" in out


def test_run_is_the_default_command(world: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    assert main(_run_args(world)) == 0
    out = capsys.readouterr().out
    assert "defenses, epsilon = 16" in out and "ran 0 attack and 1 defense batches" in out


@pytest.mark.parametrize("args, message", [
    (["lederboard"], "unknown command 'lederboard'"),
    (["scor"], "did you mean 'score'"),
])
def test_unknown_command(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_bad_inputs_give_one_line_errors(world: dict[str, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    with pytest.raises(SystemExit):
        main(_run_args(world, "--max_epsilon", "300"))
    assert "0..255" in capsys.readouterr().err
    assert main(_run_args(world, "--only", "buckt")) == 2
    assert "did you mean 'bucket'" in capsys.readouterr().err
    missing = ["--input_dir", str(tmp_path / "nowhere")] + _run_args(world)[2:]
    assert main(missing) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "does not exist" in err
    assert not world["results"].exists()
    assert main(["score", "--output_dir", str(tmp_path / "empty")]) == 2
    assert "run the competition into this folder first" in capsys.readouterr().err


def test_jobs_with_a_cluster_is_refused(world: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    assert main(_run_args(world, "--jobs", "2", "--workers", "2")) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: --jobs sets the runs at once on this machine; with --scheduler or --workers each "
                   "worker's threads and RUNS resource decide: drop --jobs")
    assert not world["results"].exists()


def test_ctrl_c_is_one_message_and_exit_status_130(world: dict[str, Path], capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.cli

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(harness.cli, "run_competition", interrupted)
    assert main(_run_args(world)) == 130
    assert capsys.readouterr().err.strip() == ("interrupted; finished units are kept in the results folder: rerun "
                                               "the same command to resume")


@pytest.mark.parametrize("error", ["RecordError", "SecretError", "ScratchError", "TreeError", "InstanceError"])
def test_every_referee_error_is_one_line_and_exit_status_2(world: dict[str, Path], error: str,
                                                           capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.cli
    import harness.errors

    def failing(*args: object, **kwargs: object) -> None:
        raise getattr(harness.errors, error)("results/store: what went wrong\nand the fix")

    monkeypatch.setattr(harness.cli, "run_competition", failing)
    assert main(_run_args(world)) == 2
    assert capsys.readouterr().err == "error: results/store: what went wrong\\nand the fix\n"


def test_validate_reports_problems(world: dict[str, Path], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    good = write_submission(tmp_path / "subs", "plus", "attack", PLUS)
    assert main(["validate", str(good), "--input_dir", str(world["data"]), "--images", "3"]) == 0
    out = capsys.readouterr().out
    assert "attack outputs: 3/3 usable, 3 differ from the clean image, largest L∞ distance 16" in out
    assert "OK" in out

    greedy = write_submission(tmp_path / "subs", "greedy", "attack", PLUS.replace("x + eps", "x + 3 * eps"))
    assert main(["validate", str(greedy), "--input_dir", str(world["data"]), "--max_epsilon", "4"]) == 1
    out = capsys.readouterr().out
    assert "values outside the ε=4 ball (largest violation 8)" in out

    defense = write_submission(tmp_path / "subs", "bucket", "defense", BUCKET_DEFENSE)
    assert main(["validate", str(defense), "--input_dir", str(world["data"])]) == 0
    assert "predictions: 4/4 images labelled, 4 correct on clean images" in capsys.readouterr().out

    crash = write_submission(tmp_path / "subs", "crash", "defense", "raise SystemExit('boom')\n")
    assert main(["validate", str(crash), "--input_dir", str(world["data"])]) == 1
    out = capsys.readouterr().out
    assert "the run failed: exit code 1" in out and "boom" in out and "no output file" in out

    broken = tmp_path / "subs" / "broken"
    broken.mkdir()
    (broken / "metadata.json").write_text("{not json")
    assert main(["validate", str(broken), "--input_dir", str(world["data"])]) == 1
    assert "invalid JSON" in capsys.readouterr().out


def test_labels_csv_dataset_with_drawn_targets(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "d", [10, 60, 110], label_file="labels.csv")
    text = (data / "labels.csv").read_text().splitlines()
    (data / "labels.csv").write_text("\n".join(["ImageId,TrueLabel"] + [",".join(r.split(",")[:2])
                                                                         for r in text[1:]]) + "\n")
    (tmp_path / "a").mkdir()
    (tmp_path / "d2").mkdir()
    write_submission(tmp_path / "defs", "bucket", "defense", BUCKET_DEFENSE)
    args = ["--input_dir", str(data), "--attacks_dir", str(tmp_path / "a"), "--defenses_dir",
            str(tmp_path / "defs"), "--output_dir", str(tmp_path / "r"), "--quiet", "--num_classes", "5"]
    assert main(args) == 0
    rows = list(csv.DictReader(open(tmp_path / "r" / "per_image.csv")))
    assert [int(r["target_class"]) != int(r["true_label"]) for r in rows] == [True] * 3
    assert all(0 <= int(r["target_class"]) < 5 for r in rows)


def test_validate_shares_the_run_options(world: dict[str, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """validate takes run's sandbox, seed and limit options (``--sandbox none`` used to be refused)."""
    good = write_submission(tmp_path / "subs", "plus", "attack", PLUS)
    assert main(["validate", str(good), "--input_dir", str(world["data"]), "--images", "2", "--sandbox", "none",
                 "--seconds_per_image", "10", "--min_seconds", "30", "--seed", "3"]) == 0
    assert "attack outputs: 2/2 usable" in capsys.readouterr().out
    slow = write_submission(tmp_path / "subs", "slow", "defense", "import time\ntime.sleep(30)\n")
    assert main(["validate", str(slow), "--input_dir", str(world["data"]), "--images", "1", "--sandbox", "none",
                 "--min_seconds", "1", "--seconds_per_image", "1"]) == 1
    assert "timed out" in capsys.readouterr().out  # the limit options reach the run


def test_option_defaults_come_from_the_dataclasses(tmp_path: Path) -> None:
    from harness.cli import build_parser
    from harness.competition import CompetitionConfig
    from harness.limits import LimitPolicy

    parser = build_parser(tmp_path)
    config = CompetitionConfig(input_dir=tmp_path, attacks_dirs=(), defenses_dirs=(), output_dir=tmp_path)
    limits = LimitPolicy()
    for command in (["run"], ["validate", "x"]):
        args = parser.parse_args(command)
        assert (args.seed, args.sandbox) == (config.seed, config.sandbox.value)
        assert (args.seconds_per_image, args.min_seconds, args.cpu_factor) == (
            limits.seconds_per_image, limits.minimum_seconds, limits.cpu_factor)
        assert (args.memory_mb, args.max_processes, args.output_mb) == (
            limits.memory_mb, limits.max_processes, limits.output_mb)
    run = parser.parse_args(["run"])
    assert (tuple(run.max_epsilon), run.batch_size, run.jobs) == (config.epsilons, config.batch_size, config.jobs)


def test_validate_with_a_sandbox_this_machine_lacks_is_a_plain_problem(world: dict[str, Path], tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str],
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.validate

    def unavailable(kind: object) -> None:
        raise RuntimeError("--sandbox bwrap: bubblewrap cannot create namespaces here")

    monkeypatch.setattr(harness.validate, "probe", unavailable)
    good = write_submission(tmp_path / "subs", "plus", "attack", PLUS)
    assert main(["validate", str(good), "--input_dir", str(world["data"]), "--sandbox", "bwrap"]) == 1
    out = capsys.readouterr().out
    assert "PROBLEM: --sandbox bwrap: bubblewrap cannot create namespaces here (choose another --sandbox)" in out


def test_allow_unenforced_names_limits_and_refuses_others(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import build_parser

    parser = build_parser(tmp_path)
    assert parser.parse_args(["run", "--allow_unenforced", "memory_mb, max_processes"]).allow_unenforced == (
        "memory_mb", "max_processes")
    assert parser.parse_args(["run"]).allow_unenforced == ()
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--allow_unenforced", "memory_mb,output_mb"])
    error = capsys.readouterr().err
    assert "output_mb: not a limit that may go unenforced; choose from memory_mb,max_processes" in error
