"""``compare``: two results folders' tables and score files; the committed 4fe88fa folder (CSV tables) re-scored into
Parquet holds the same results."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from harness.cli import main
from harness.compare import compare_folders
from harness.errors import CompetitionError
from harness.results_folder import LEADERBOARD, PER_IMAGE, PER_IMAGE_PARQUET

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "results_4fe88fa" / "results"


@pytest.fixture
def rescored(tmp_path: Path) -> Path:
    copy = tmp_path / "rescored"
    shutil.copytree(FIXTURE, copy)
    assert not (copy / PER_IMAGE_PARQUET).exists()
    assert main(["score", "--output_dir", str(copy)]) == 0
    assert (copy / PER_IMAGE_PARQUET).is_file()
    return copy


def test_the_committed_folder_rescored_into_parquet_holds_the_same_results(rescored: Path, capsys) -> None:
    comparison = compare_folders(FIXTURE, rescored)
    assert comparison.differences == ()
    assert comparison.compared[0] == "per-image tables" and LEADERBOARD in comparison.compared
    assert (rescored / PER_IMAGE).read_text() == (FIXTURE / PER_IMAGE).read_text()
    capsys.readouterr()
    assert main(["compare", str(FIXTURE), str(rescored)]) == 0
    assert capsys.readouterr().out.startswith("same results (per-image tables, leaderboard.csv")


def test_a_changed_prediction_is_found_and_named(rescored: Path, capsys) -> None:
    path = rescored / PER_IMAGE_PARQUET
    table = pq.read_table(path)
    prediction = table.column("prediction")
    changed = pc.if_else(pa.array([i == 0 for i in range(len(table))]), pa.scalar(99, pa.int16()), prediction)
    pq.write_table(table.set_column(table.schema.get_field_index("prediction"), "prediction", changed), path)
    first = table.slice(0, 1).to_pylist()[0]
    differences = compare_folders(FIXTURE, rescored).differences
    assert len(differences) == 1
    assert differences[0].startswith(f"{first['defense']} on (clean, {first['image_id']}): ") and " vs 99 " in \
        differences[0]
    capsys.readouterr()
    assert main(["compare", str(FIXTURE), str(rescored)]) == 1
    assert "DIFFERENT: " in capsys.readouterr().out


def test_score_files_alone_are_compared_and_a_changed_line_is_named(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    for folder in (first, second):
        folder.mkdir()
        shutil.copy(FIXTURE / LEADERBOARD, folder / LEADERBOARD)
    assert compare_folders(first, second).compared == (LEADERBOARD,)
    lines = (second / LEADERBOARD).read_text().splitlines()
    lines[2] = lines[2].replace(",", ";", 1)
    (second / LEADERBOARD).write_text("\n".join(lines) + "\n")
    assert compare_folders(first, second).differences == (f"{LEADERBOARD} differs from line 3",)


def test_folders_with_nothing_in_common_are_an_error(tmp_path: Path, capsys) -> None:
    with pytest.raises(CompetitionError, match="nothing to compare"):
        compare_folders(tmp_path, FIXTURE.parent)
    assert main(["compare", str(tmp_path), str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: nothing to compare")
