"""research.adaptive.result_cache: finished (ε, attack) results are reused only for the same options and code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from research.adaptive.result_cache import ResultCache

RESULTS = {"tv_denoise": np.array([True, False, True]), "jpeg": np.array([False, False, True])}


@pytest.fixture
def code(tmp_path: Path) -> Path:
    folder = tmp_path / "code"
    (folder / "attacks").mkdir(parents=True)
    (folder / "attacks" / "attack.py").write_text("STEPS = 20\n")
    return folder


def test_a_stored_result_comes_back_for_the_same_options_and_code(tmp_path: Path, code: Path) -> None:
    ResultCache(tmp_path / "cache", recipe={"images": 3}, sources=[code]).put(8, "pgd", RESULTS, 12.5)
    hit = ResultCache(tmp_path / "cache", recipe={"images": 3}, sources=[code]).get(8, "pgd")
    assert hit is not None
    results, seconds = hit
    assert seconds == 12.5 and sorted(results) == sorted(RESULTS)
    assert all(np.array_equal(results[d], RESULTS[d]) and results[d].dtype == bool for d in RESULTS)
    assert [p.name for p in (tmp_path / "cache").iterdir() if ".tmp" in p.name] == []


def test_other_options_code_epsilon_or_attack_miss(tmp_path: Path, code: Path) -> None:
    cache = ResultCache(tmp_path / "cache", recipe={"images": 3}, sources=[code])
    cache.put(8, "pgd", RESULTS, 1.0)
    assert cache.get(16, "pgd") is None and cache.get(8, "fgsm") is None
    assert ResultCache(tmp_path / "cache", recipe={"images": 4}, sources=[code]).get(8, "pgd") is None
    (code / "attacks" / "attack.py").write_text("STEPS = 40\n")
    assert ResultCache(tmp_path / "cache", recipe={"images": 3}, sources=[code]).get(8, "pgd") is None


def test_an_unreadable_result_is_a_miss_not_an_error(tmp_path: Path, code: Path) -> None:
    cache = ResultCache(tmp_path / "cache", recipe={}, sources=[code])
    cache.put(8, "pgd", RESULTS, 1.0)
    (stored,) = (tmp_path / "cache").iterdir()
    stored.write_bytes(b"not a numpy file")
    assert cache.get(8, "pgd") is None


def test_without_a_folder_nothing_is_kept(tmp_path: Path, code: Path) -> None:
    cache = ResultCache(None, recipe={}, sources=[code])
    cache.put(8, "pgd", RESULTS, 1.0)
    assert cache.get(8, "pgd") is None
