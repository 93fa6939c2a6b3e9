"""Parallel by default: one run per usable core, each with its share of the threads."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness import parallelism
from harness.cli import build_parser
from harness.competition import run_competition
from tiny_world import BUCKET_DEFENSE, PLUS, config_for, write_submission


def test_usable_cores_follow_the_affinity_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parallelism.usable_cores() == len(os.sched_getaffinity(0))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5})
    assert parallelism.usable_cores() == parallelism.default_jobs() == 3


@pytest.mark.parametrize("cores, jobs, threads", [(2, 1, None), (2, 2, 1), (8, 3, 2), (2, 5, 1)])
def test_each_run_gets_its_share_of_the_cores(monkeypatch: pytest.MonkeyPatch, cores: int, jobs: int,
                                              threads: int | None) -> None:
    monkeypatch.setattr(parallelism, "usable_cores", lambda: cores)
    assert parallelism.threads_per_run(jobs) == threads


def test_zero_jobs_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        parallelism.threads_per_run(0)


def test_without_jobs_a_competition_runs_one_unit_per_usable_core(world: dict[str, Path],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    assert build_parser(Path(".")).parse_args(["run"]).jobs is None  # the CLI leaves the choice to the harness
    import harness.competition as competition_module
    monkeypatch.setattr(competition_module, "default_jobs", lambda: 3)
    write_submission(world["attacks"], "plus", "attack", PLUS)
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    result = run_competition(config_for(world, jobs=None, batch_size=2), echo=lambda _: None)
    assert result.manifest.to_json()["jobs"] == 3
    assert json.loads((world["results"] / "manifest.json").read_text())["jobs"] == 3
    assert result.outcome.executed["attack"] == 3 and not any(r.problem for r in result.runs)
