"""One unit runs in one place (Runner.run_unit); the local and the Dask executor map it over a stage's units
through one interface; the log-path formula and the stored-record check exist once."""

from __future__ import annotations

import inspect
from pathlib import Path

from harness.dataset import load_dataset
from harness.devices import DevicePool
from harness.execution import Executor, LocalExecutor, Runner, failed_record
from harness.instance import Instance
from harness.limits import LimitPolicy
from harness.planning import DefenseUnit, log_name
from harness.records import AttackUnitRecord, DefenseUnitRecord, RunRecord
from harness.sandboxes.base import SandboxKind
from harness.sandboxes.factory import probe
from harness.submission import parse_submission
from harness.workspace import Workspace
from tiny_world import BUCKET_DEFENSE, PLUS, write_dataset, write_submission


def _runner(tmp_path: Path, *, jobs: int = 1, ticks: list[tuple[str, int, bool]] | None = None) -> Runner:
    dataset = load_dataset(write_dataset(tmp_path / "data", [10, 60, 110]), seed=0)
    seen = [] if ticks is None else ticks

    def progress(label: str, total: int):
        return lambda failed=False: seen.append((label, total, failed))

    return Runner(dataset, Workspace(tmp_path / "results", Instance.create()), seed=0, batch_size=2, jobs=jobs,
                  policy=LimitPolicy(seconds_per_image=5.0, minimum_seconds=20.0), devices=DevicePool([], jobs),
                  protections=probe(SandboxKind.NONE), progress=progress)


def test_log_names_follow_one_formula(tmp_path: Path) -> None:
    runner = _runner(tmp_path)
    attack = parse_submission(write_submission(tmp_path / "subs", "plus", "attack", PLUS))
    defense = parse_submission(write_submission(tmp_path / "subs", "bucket", "defense", BUCKET_DEFENSE))
    unit = runner.attack_units([attack], [8])[0]
    assert log_name(unit) == f"logs/attacks/plus/eps8/{unit.key[:2]}/{unit.key[:12]}.log"
    defense_unit = DefenseUnit(defense, ("a" * 64,), runner.version_of(defense))
    assert log_name(defense_unit) == f"logs/defenses/bucket/{defense_unit.key[:2]}/{defense_unit.key[:12]}.log"


def test_a_unit_runs_once_then_its_stored_record_comes_back(tmp_path: Path) -> None:
    runner = _runner(tmp_path)
    attack = parse_submission(write_submission(tmp_path / "subs", "plus", "attack", PLUS))
    clean = runner.clean_versions()
    unit = runner.attack_units([attack], [8])[0]
    assert runner.stored_record(unit) is None
    record = runner.run_unit(unit, clean)
    assert isinstance(record, AttackUnitRecord) and not record.run.problem and record.run.log == log_name(unit)
    log = runner.workspace.root / log_name(unit)
    log.unlink()
    assert runner.stored_record(unit) == record
    assert runner.run_unit(unit, clean) == record
    assert not log.exists()  # nothing ran the second time
    # a refereed image the record points to is lost: the unit is redone
    changed = next(i for i in record.images if i.version != clean[i.image_id])
    (runner.workspace.folder.store_root / runner.store.image_key(changed.version)).unlink()
    assert runner.stored_record(unit) is None
    redone = runner.run_unit(unit, clean)
    assert redone.images == record.images and log.exists()


def test_the_local_executor_keeps_the_order_of_the_units_and_ticks_each(tmp_path: Path) -> None:
    ticks: list[tuple[str, int, bool]] = []
    runner = _runner(tmp_path, jobs=2, ticks=ticks)
    defense = parse_submission(write_submission(tmp_path / "subs", "bucket", "defense", BUCKET_DEFENSE))
    clean = runner.clean_versions()
    versions = [clean[image_id] for image_id in ("img2", "img0", "img1")]
    units = [DefenseUnit(defense, (version,), runner.version_of(defense)) for version in versions]
    records = LocalExecutor(2).map(runner, "defenses", units, clean)
    assert [r.key for r in records] == [u.key for u in units]
    assert all(isinstance(r, DefenseUnitRecord) and not r.run.problem for r in records)
    # the answers stay in the store (a stage's records travel without them) and are read back from there
    assert all(isinstance(r, DefenseUnitRecord) and r.predictions == {} for r in records)
    stored = [runner.store.defense_record(u.version, u.key) for u in units]
    assert [s.predictions[v].label for s, v in zip(stored, versions)] == [2, 0, 1]
    assert ticks == [("defenses", 3, False)] * 3


def test_failed_records_keep_the_clean_images_and_name_the_problem(tmp_path: Path) -> None:
    runner = _runner(tmp_path)
    attack = parse_submission(write_submission(tmp_path / "subs", "plus", "attack", PLUS))
    clean = runner.clean_versions()
    unit = runner.attack_units([attack], [8])[0]
    run = RunRecord(exit_code=None, timed_out=False, seconds=0.0, problem="worker died 3 times", log=log_name(unit))
    record = failed_record(unit, run, clean, "missing output image")
    assert [(i.image_id, i.version, i.problem) for i in record.images] == [
        (r.image_id, clean[r.image_id], "missing output image") for r in unit.images]
    defense = parse_submission(write_submission(tmp_path / "subs", "bucket", "defense", BUCKET_DEFENSE))
    defense_record = failed_record(DefenseUnit(defense, ("v1", "v2"), "x"), run, clean, "did not run")
    assert {v: (a.label, a.problem) for v, a in defense_record.predictions.items()} == {
        "v1": (None, "did not run"), "v2": (None, "did not run")}


def test_both_executors_have_the_one_interface() -> None:
    from harness.dask_executor import DaskExecutor

    wanted = inspect.signature(Executor.map)
    for executor in (LocalExecutor, DaskExecutor):
        assert inspect.signature(executor.map).parameters.keys() == wanted.parameters.keys(), executor
