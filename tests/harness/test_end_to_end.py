"""End-to-end competitions with tiny synthetic submissions (hand-computed expectations).

World (conftest, tiny_world): uniform images of value v ∈ {10, 45, 90, 120, 180, 240}, class v // 50 → labels
[0, 0, 1, 2, 3, 4], targets [1, 1, 2, 3, 4, 0]. The ``bucket`` defense predicts mean // 50; ``constant``
predicts 0. At ε = 16 the referee turns ``greedy`` (+100) into ``plus`` (+16).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from harness.competition import CompetitionError, rescore, run_competition
from harness.limits import LimitPolicy
from tiny_world import BUCKET_DEFENSE, CONSTANT_DEFENSE, GREEDY, NOOP, PLUS, TOWARD_TARGET, config_for, write_submission


def leaderboard(results: Path) -> dict[tuple[str, str, str], dict[str, str]]:
    with open(results / "leaderboard.csv") as handle:
        return {(row["epsilon"], row["track"], row["name"]): row for row in csv.DictReader(handle)}


@pytest.fixture
def full_world(world: dict[str, Path]) -> dict[str, Path]:
    write_submission(world["attacks"], "noop", "attack", NOOP)
    write_submission(world["attacks"], "plus", "attack", PLUS)
    write_submission(world["attacks"], "greedy", "attack", GREEDY)
    write_submission(world["attacks"], "toward_target", "targeted_attack", TOWARD_TARGET)
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    write_submission(world["defenses"], "constant", "defense", CONSTANT_DEFENSE)
    return world


def test_scores_match_hand_computation(full_world: dict[str, Path]) -> None:
    result = run_competition(config_for(full_world), echo=lambda _: None)
    board = leaderboard(full_world["results"])

    bucket = board[("16", "defense", "bucket")]
    assert (bucket["rank"], bucket["raw"], bucket["normalized"], bucket["all_or_nothing"],
            bucket["clean_accuracy"]) == ("1", "16", "0.6667", "0.5000", "1.0000")
    constant = board[("16", "defense", "constant")]
    assert (constant["rank"], constant["raw"], constant["normalized"], constant["all_or_nothing"],
            constant["clean_accuracy"]) == ("2", "8", "0.3333", "0.3333", "0.3333")

    # greedy and plus tie exactly (the referee clips greedy to plus); the tie is broken by name.
    for name, rank in (("greedy", "1"), ("plus", "2")):
        row = board[("16", "attack", name)]
        assert (row["rank"], row["raw"], row["normalized"], row["all_or_nothing"]) == (rank, "7", "0.5833", "0.3333")
    noop = board[("16", "attack", "noop")]
    assert (noop["rank"], noop["raw"], noop["normalized"], noop["all_or_nothing"]) == ("3", "4", "0.3333", "0.0000")
    target = board[("16", "targeted_attack", "toward_target")]
    assert (target["raw"], target["normalized"], target["all_or_nothing"]) == ("3", "0.2500", "0.0000")

    # The referee recorded greedy's violations: 192 values (8×8×3) per image, 84 = 100 − 16 at most.
    greedy = [r for r in result.attack_images if r.attack == "greedy"]
    assert [r.clipped_values for r in greedy] == [192, 192, 192, 192, 192, 0]
    assert [r.max_violation for r in greedy] == [84, 84, 84, 84, 59, 0]
    assert all(r.linf <= 16 for r in result.attack_images)
    assert not any(r.problem for r in result.attack_images)


def test_outputs_written(full_world: dict[str, Path]) -> None:
    run_competition(config_for(full_world, epsilons=(4, 16)), echo=lambda _: None)
    results = full_world["results"]
    for name in ("leaderboard.csv", "timings.csv", "per_image.csv", "attack_images.csv", "runs.csv",
                 "accuracy_matrix.csv", "worst_case.csv",
                 "targeted_hit_matrix.csv", "manifest.json"):
        assert (results / name).is_file(), name
    assert not (results / "tmp").exists()
    manifest = json.loads((results / "manifest.json").read_text())
    assert manifest["epsilons"] == [4, 16]
    assert manifest["seed"] == 0
    assert {s["name"] for s in manifest["submissions"]} == {"noop", "plus", "greedy", "toward_target", "bucket",
                                                           "constant"}
    assert all(len(s["content_hash"]) == 64 for s in manifest["submissions"])
    with open(results / "accuracy_matrix.csv") as handle:
        rows = list(csv.DictReader(handle))
    bucket16 = next(r for r in rows if r["epsilon"] == "16" and r["defense"] == "bucket")
    assert (bucket16["clean"], bucket16["noop"], bucket16["plus"], bucket16["toward_target"]) == (
        "1.0000", "1.0000", "0.5000", "0.6667")
    with open(results / "targeted_hit_matrix.csv") as handle:
        hits = {(r["epsilon"], r["defense"]): r["toward_target"] for r in csv.DictReader(handle)}
    assert hits[("16", "bucket")] == "0.3333" and hits[("16", "constant")] == "0.1667"
    runs = list(csv.DictReader(open(results / "runs.csv")))
    assert all(r["problem"] == "" and r["exit_code"] == "0" for r in runs)
    for run in runs:
        assert (results / run["log"]).is_file()
    per_image = list(csv.DictReader(open(results / "per_image.csv")))
    # 2 defenses × (6 clean + 6 images × 4 attacks × 2 ε)
    assert len(per_image) == 2 * (6 + 6 * 4 * 2)


def test_rescore_reproduces_leaderboard(full_world: dict[str, Path]) -> None:
    run_competition(config_for(full_world, epsilons=(4, 16)), echo=lambda _: None)
    before = (full_world["results"] / "leaderboard.csv").read_text()
    (full_world["results"] / "leaderboard.csv").unlink()
    rescore(full_world["results"])
    assert (full_world["results"] / "leaderboard.csv").read_text() == before


def test_incremental_reruns_execute_only_new_work(full_world: dict[str, Path]) -> None:
    config = config_for(full_world, batch_size=4)  # 6 images → attack batches of 4 + 2
    first = run_competition(config, echo=lambda _: None)
    assert first.outcome.executed["attack"] == 4 * 2
    board = (full_world["results"] / "leaderboard.csv").read_text()

    again = run_competition(config, echo=lambda _: None)
    assert again.outcome.executed == {"attack": 0, "defense": 0}
    assert (full_world["results"] / "leaderboard.csv").read_text() == board

    # A new attack: only it runs, and the defenses classify only its new images.
    write_submission(full_world["attacks"], "minus", "attack", PLUS.replace("x + eps", "x - eps"))
    third = run_competition(config, echo=lambda _: None)
    assert third.outcome.executed["attack"] == 2
    new_versions = {r.image_id for r in third.attack_images if r.attack == "minus"}
    assert len(new_versions) == 6
    defense_images = sum(run.images for run in third.runs
                         if run.kind == "defense" and run.batch in third.outcome.fresh_keys)
    # minus's images (v − 16) are new pixel contents except img5: 240 − 16 = 224 is exactly what
    # toward_target already produced, so each defense classifies 5 new images.
    assert defense_images == 2 * 5

    # A changed defense runs alone, over every version.
    script = full_world["defenses"] / "constant" / "run.py"
    script.write_text(script.read_text().replace(",0\\n", ",1\\n"))
    fourth = run_competition(config, echo=lambda _: None)
    assert fourth.outcome.executed["attack"] == 0
    assert {rec.defense for recs in fourth.outcome.defense_records.values() for rec in recs
            if rec.key in fourth.outcome.fresh_keys} == {"constant"}

    # --force recomputes everything.
    forced = run_competition(config_for(full_world, batch_size=4, force=True), echo=lambda _: None)
    assert forced.outcome.executed["attack"] == 5 * 2


def test_resume_after_lost_records(full_world: dict[str, Path]) -> None:
    config = config_for(full_world, batch_size=3)
    run_competition(config, echo=lambda _: None)
    board = (full_world["results"] / "leaderboard.csv").read_text()
    store = full_world["results"] / "store"
    attack_records = sorted((store / "attack_runs").glob("*/*.json"))
    attack_records[0].unlink()
    defense_records = sorted((store / "defense_runs").glob("*/*/*.json"))
    defense_records[-1].unlink()
    (store / "defense_runs" / "garbage.json").parent.mkdir(exist_ok=True)
    resumed = run_competition(config, echo=lambda _: None)
    assert resumed.outcome.executed["attack"] == 1
    assert resumed.outcome.executed["defense"] >= 1
    assert (full_world["results"] / "leaderboard.csv").read_text() == board


def test_attacks_see_only_images_and_defenses_see_opaque_names(world: dict[str, Path]) -> None:
    spy_attack = """
    inp, out = Path(sys.argv[1]), Path(sys.argv[2])
    print("LISTING", sorted(os.listdir(inp)))
    print("ENVKEYS", sorted(os.environ))
    for p in sorted(inp.glob("*.png")):
        Image.open(p).save(out / p.name)
    """
    spy_defense = """
    inp, out = Path(sys.argv[1]), Path(sys.argv[2])
    print("NAMES", sorted(os.listdir(inp)))
    print("LEVELS", [int(np.asarray(Image.open(p))[0, 0, 0]) for p in sorted(inp.glob("*.png"))])
    with open(out, "w") as f:
        for p in sorted(inp.glob("*.png")):
            f.write(f"{p.name},{int(np.asarray(Image.open(p)).mean()) // 50}\\n")
    """
    write_submission(world["attacks"], "spy", "attack", spy_attack)
    write_submission(world["attacks"], "spy_targeted", "targeted_attack", spy_attack)
    write_submission(world["attacks"], "plus", "attack", PLUS)
    write_submission(world["defenses"], "spy_defense", "defense", spy_defense)
    result = run_competition(config_for(world), echo=lambda _: None)
    results = world["results"]
    logs = {r.name: (results / r.log).read_text() for r in result.runs if r.kind != "defense"}
    image_files = sorted(f"img{i}.png" for i in range(6))
    assert f"LISTING {image_files}" in logs["spy"]
    assert f"LISTING {sorted(image_files + ['target_class.csv'])}" in logs["spy_targeted"]
    assert "dev_dataset.csv" not in logs["spy"]
    env_line = next(line for line in logs["spy"].splitlines() if line.startswith("ENVKEYS"))
    assert "PATH" in env_line and "HOME" in env_line

    defense_logs = [(results / r.log).read_text() for r in result.runs if r.kind == "defense"]
    names = [name for log in defense_logs for line in log.splitlines() if line.startswith("NAMES")
             for name in eval(line[len("NAMES "):])]  # noqa: S307 - our own test output
    # clean (= spy outputs, identical pixels) + plus: 12 distinct versions; names are opaque hex.
    assert len(names) == len(set(names)) == 12
    for name in names:
        stem = name.removesuffix(".png")
        assert len(stem) == 24 and all(c in "0123456789abcdef" for c in stem)
    # No batch holds two versions of the same original image: each defense run is one batch, and every grey level
    # it sees (clean v, or v + 16 from `plus`, clipped at 255) names its original, the largest v not above it.
    values = (10, 45, 90, 120, 180, 240)
    assert len(defense_logs) == 2  # 12 versions of 6 originals need two batches, and get no more
    seen = []
    for log in defense_logs:
        levels = eval(next(line for line in log.splitlines() if line.startswith("LEVELS"))[len("LEVELS "):])  # noqa: S307
        originals = [max(v for v in values if v <= level) for level in levels]
        assert len(originals) == len(set(originals)), levels
        seen += levels
    assert sorted(seen) == sorted([*values, *(min(v + 16, 255) for v in values)])


def test_bad_submissions_are_recorded_and_others_unaffected(world: dict[str, Path], tmp_path: Path) -> None:
    write_submission(world["attacks"], "plus", "attack", PLUS)
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    baseline = run_competition(config_for(world), echo=lambda _: None)
    base_board = leaderboard(world["results"])

    crash_half = """
    inp, out = Path(sys.argv[1]), Path(sys.argv[2])
    for p in sorted(inp.glob("*.png"))[:2]:
        Image.open(p).save(out / p.name)
    sys.exit(3)
    """
    hang = """
    import time
    time.sleep(600)
    """
    garbage_defense = """
    inp, out = Path(sys.argv[1]), Path(sys.argv[2])
    names = sorted(p.name for p in inp.glob("*.png"))
    with open(out, "w") as f:
        f.write("ImageId,Label\\n")
        f.write(f"{names[0]},cat\\n{names[1]},1\\n{names[1]},2\\n")
    """
    write_submission(world["attacks"], "crash_half", "attack", crash_half)
    write_submission(world["attacks"], "hang", "attack", hang)
    write_submission(world["defenses"], "garbage", "defense", garbage_defense)
    broken = world["defenses"] / "broken"
    broken.mkdir()
    (broken / "metadata.json").write_text('{"type": "defence", "entry_point": "run.sh"}')
    messages: list[str] = []
    # 20 s per run: the well-behaved submissions need ~1 s even on a loaded 2-core machine, and `hang` costs 20 s.
    result = run_competition(config_for(world, policy=LimitPolicy(seconds_per_image=0.2, minimum_seconds=20.0),
                                        output_dir=tmp_path / "bad"), echo=messages.append)
    board = leaderboard(tmp_path / "bad")

    assert any("broken" in m and "did you mean 'defense'" in m for m in messages)
    crash = board[("16", "attack", "crash_half")]
    assert crash["failed_runs"] == "1" and crash["failed_images"] == "4"
    assert crash["failures"] == "1 run: exit code 3; 4 images: missing output image"
    hung = board[("16", "attack", "hang")]
    assert hung["failures"].startswith("1 run: timed out after 20 s; 6 images: missing output image")
    garbage = board[("16", "defense", "garbage")]
    assert garbage["normalized"] == "0.0000"
    assert "missing row" in garbage["failures"] and "duplicate rows" in garbage["failures"]
    assert "non-integer label 'cat'" in garbage["failures"]

    # The well-behaved submissions: plus is scored as before against bucket (garbage answered nothing
    # usable, so it is as if absent), and bucket's accuracy under plus is unchanged.
    assert board[("16", "attack", "plus")]["normalized"] == base_board[("16", "attack", "plus")]["normalized"]
    bucket_plus = [r for r in result.predictions if r.defense == "bucket" and r.attack == "plus"]
    assert bucket_plus == [r for r in baseline.predictions if r.defense == "bucket" and r.attack == "plus"]
    assert board[("16", "defense", "bucket")]["clean_accuracy"] == "1.0000"


def test_output_dir_of_another_dataset_is_refused(full_world: dict[str, Path], tmp_path: Path) -> None:
    run_competition(config_for(full_world), echo=lambda _: None)
    from tiny_world import write_dataset
    other = write_dataset(tmp_path / "other", [1, 2, 3])
    with pytest.raises(CompetitionError, match="another dataset"):
        run_competition(config_for(full_world, input_dir=other), echo=lambda _: None)


def test_same_seed_gives_byte_identical_leaderboard(full_world: dict[str, Path], tmp_path: Path) -> None:
    for name in ("one", "two"):
        run_competition(config_for(full_world, output_dir=tmp_path / name, epsilons=(4, 16)), echo=lambda _: None)
    for table in ("leaderboard.csv", "per_image.csv", "attack_images.csv", "accuracy_matrix.csv"):
        assert (tmp_path / "one" / table).read_bytes() == (tmp_path / "two" / table).read_bytes(), table


def test_parallel_jobs_give_the_same_results(full_world: dict[str, Path], tmp_path: Path) -> None:
    run_competition(config_for(full_world, output_dir=tmp_path / "serial", batch_size=4), echo=lambda _: None)
    parallel = run_competition(config_for(full_world, output_dir=tmp_path / "parallel", batch_size=4, jobs=2),
                               echo=lambda _: None)
    assert parallel.outcome.executed["attack"] == 8
    for table in ("leaderboard.csv", "per_image.csv"):
        assert (tmp_path / "serial" / table).read_bytes() == (tmp_path / "parallel" / table).read_bytes()


def test_a_change_to_the_submission_library_reruns_everything(full_world: dict[str, Path],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Submissions can import the submission library (and its zoo weights), so its content is part of every key
    (the referee's own code is not: tests/test_keys.py)."""
    import harness.library as library_module
    run_competition(config_for(full_world), echo=lambda _: None)
    real = library_module.content_hash
    monkeypatch.setattr(library_module, "content_hash", lambda folder: real(folder) + "-changed")
    again = run_competition(config_for(full_world), echo=lambda _: None)
    assert again.outcome.executed["attack"] == 4 and again.outcome.reused == {"attack": 0, "defense": 0}
