"""per_image.parquet and the CSV tables: written streamed from the columnar table, read back into the same table."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.compare import compare_tables
from harness.per_image import PerImageTable
from harness.results_folder import ATTACK_IMAGES, PER_IMAGE, PER_IMAGE_PARQUET, RUNS, ResultsFolder
from harness.table import AttackImageRow, PredictionRow, RunRow, to_csv
from harness.table_files import (
    PER_IMAGE_SCHEMA,
    read_per_image,
    write_attack_images,
    write_per_image_csv,
    write_per_image_parquet,
    write_runs,
)
from harness.tabulation import table_from_rows
from harness.tracks import Track
from random_tables import random_table, sorted_predictions


def _table(seed: int, dense: bool = True) -> tuple[PerImageTable, object]:
    world = random_table(seed, dense=dense)
    return table_from_rows(world.predictions, world.attack_images, world.runs, defenses=world.defenses,
                           attacks=world.attacks, epsilons=world.epsilons), world


def _write(folder: Path, table: PerImageTable) -> ResultsFolder:
    results = ResultsFolder(folder)
    write_per_image_parquet(results.file(PER_IMAGE_PARQUET), table)
    write_per_image_csv(results.file(PER_IMAGE), table)
    write_attack_images(results.file(ATTACK_IMAGES), table)
    write_runs(results.file(RUNS), table)
    return results


def _read(results: ResultsFolder, table: PerImageTable) -> PerImageTable:
    return read_per_image(parquet=results.file(PER_IMAGE_PARQUET), csv_file=results.file(PER_IMAGE),
                          attack_images=results.file(ATTACK_IMAGES), runs=results.file(RUNS),
                          defenses=list(table.defenses), attacks=list(zip(table.attacks, table.attack_tracks)),
                          epsilons=list(table.epsilons))


@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize("seed", range(10))
def test_parquet_and_csv_read_back_into_the_same_table(tmp_path: Path, seed: int, dense: bool) -> None:
    table, world = _table(seed, dense)
    results = _write(tmp_path, table)
    from_parquet = _read(results, table)
    assert compare_tables(table, from_parquet) == []
    assert list(from_parquet.prediction_rows()) == sorted_predictions(world.predictions)
    results.file(PER_IMAGE_PARQUET).unlink()  # a folder written before Parquet: its CSV
    assert compare_tables(table, _read(results, table)) == []


@pytest.mark.parametrize("seed", range(6))
def test_the_csv_files_are_the_row_writer_s_text(tmp_path: Path, seed: int) -> None:
    table, world = _table(seed, dense=seed % 2 == 0)
    results = _write(tmp_path, table)
    assert results.file(PER_IMAGE).read_text() == to_csv(sorted_predictions(world.predictions), PredictionRow)
    assert results.file(ATTACK_IMAGES).read_text() == to_csv(table.attack_image_rows(), AttackImageRow)
    assert results.file(RUNS).read_text() == to_csv(table.run_rows(), RunRow)


def test_parquet_has_the_documented_schema_and_one_row_group_per_block(tmp_path: Path) -> None:
    table, world = _table(5)
    path = tmp_path / PER_IMAGE_PARQUET
    assert write_per_image_parquet(path, table) == len(world.predictions)
    source = pq.ParquetFile(path)
    assert source.schema_arrow.equals(PER_IMAGE_SCHEMA)
    assert source.num_row_groups == 1 + len(world.attacks) * len(world.epsilons)  # clean + (ε, attack) blocks
    rows = pq.read_table(path).to_pylist()
    assert [(r["epsilon"], r["attack"], r["defense"], r["image_id"]) for r in rows] == [
        (p.epsilon, p.attack, p.defense, p.image_id) for p in sorted_predictions(world.predictions)]
    assert all(r["draw"] == 0 for r in rows)
    assert {r["attack_type"] for r in rows} <= {"clean", Track.ATTACK.value, Track.TARGETED_ATTACK.value}


def test_a_parquet_file_of_other_columns_is_refused_in_one_line(tmp_path: Path) -> None:
    table, _ = _table(2)
    results = _write(tmp_path, table)
    pq.write_table(pa.table({"image_id": ["x"], "prediction": [1]}), results.file(PER_IMAGE_PARQUET))
    with pytest.raises(ValueError, match="are not those of this harness's per_image.parquet") as error:
        _read(results, table)
    assert "\n" not in str(error.value)


def test_a_failed_write_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table, _ = _table(1)
    path = tmp_path / PER_IMAGE_PARQUET
    write_per_image_parquet(path, table)
    before = path.read_bytes()

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("harness.table_files._batch", broken)
    with pytest.raises(OSError, match="disk full"):
        write_per_image_parquet(path, table)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [PER_IMAGE_PARQUET]
