"""Unit keys follow what a run can use: the submission library and the Python/torch versions, never the referee.

The project (referee, library, research code) is copied to a temporary folder and the command line is run from
there, so the tests can edit a referee module, a research module and a library module and count the units the
next run executes. Submissions are tiny Python scripts (no torch).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import library
from harness.competition import KEY_SCHEME_FILE, CompetitionError, run_competition
from harness.library import KEY_SCHEME, fingerprint
from harness.sandboxes.base import SandboxKind
from tiny_world import BUCKET_DEFENSE, PLUS, config_for, write_dataset, write_submission

ROOT = Path(__file__).resolve().parents[2]
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pt", "*.joblib", "*.npy")


def _copy_project(destination: Path) -> Path:
    """harness/, submission_kit/ (without weight files: the runs here do not load them), research/ and the CLI."""
    for package in ("harness", "submission_kit", "research"):
        shutil.copytree(ROOT / package, destination / package, ignore=_IGNORE)
    shutil.copy2(ROOT / "run_competition.py", destination / "run_competition.py")
    return destination


def _run(project: Path, world: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "run_competition.py", "--input_dir", str(world / "data"), "--attacks_dir",
         str(world / "attacks"), "--defenses_dir", str(world / "defenses"), "--output_dir", str(world / "results"),
         "--sandbox", "none", "--min_seconds", "60", "--quiet", *extra],
        cwd=project, capture_output=True, text=True, timeout=600, env={"PATH": "/usr/bin:/bin", "HOME": str(world)})


def _executed(world: Path) -> dict[str, int]:
    return json.loads((world / "results" / "manifest.json").read_text())["executed_units"]


@pytest.fixture
def project_world(tmp_path: Path) -> tuple[Path, Path]:
    project = _copy_project(tmp_path / "project")
    world = tmp_path / "world"
    write_dataset(world / "data", [10, 45, 90, 120])
    write_submission(world / "attacks", "plus", "attack", PLUS)
    write_submission(world / "defenses", "bucket", "defense", BUCKET_DEFENSE)
    return project, world


@pytest.mark.slow
def test_referee_and_research_edits_rerun_nothing_library_edits_rerun_everything(project_world):
    project, world = project_world
    first = _run(project, world)
    assert first.returncode == 0, first.stderr
    assert _executed(world) == {"attack": 1, "defense": 2}
    # A referee module and a research module change: nothing a run can import changed.
    with open(project / "harness" / "scoring.py", "a") as handle:
        handle.write("\n# an edit to the referee\n")
    with open(project / "research" / "analysis" / "amplification.py", "a") as handle:
        handle.write("\n# an edit to research code\n")
    second = _run(project, world)
    assert second.returncode == 0, second.stderr
    assert _executed(world) == {"attack": 0, "defense": 0}
    # The library changes: every run could import it, so every run is redone.
    with open(project / "submission_kit" / "sdk.py", "a") as handle:
        handle.write("\n# an edit to the submission library\n")
    third = _run(project, world)
    assert third.returncode == 0, third.stderr
    assert _executed(world) == {"attack": 1, "defense": 2}
    manifest = json.loads((world / "results" / "manifest.json").read_text())
    assert manifest["key_scheme"] == KEY_SCHEME
    assert manifest["environment"]["library"] == fingerprint(project / "submission_kit").library


def test_fingerprint_follows_library_content_and_versions(tmp_path):
    kit = tmp_path / "submission_kit"
    kit.mkdir()
    (kit / "__init__.py").write_text("")
    (kit / "weights.bin").write_bytes(b"\x00" * 8)
    before = fingerprint(kit)
    assert fingerprint(kit) == before
    (kit / "weights.bin").write_bytes(b"\x01" * 8)  # weights are part of the library's content
    after = fingerprint(kit)
    assert after.library != before.library and after.key != before.key
    assert dict(after.packages)["torch"] != ""  # read from package metadata, without importing torch
    assert after.python.count(".") == 2


def test_fingerprint_of_the_installed_library_is_the_kit_folder():
    assert library.library_dir() == (ROOT / "submission_kit").resolve()
    assert library.python_path(sandboxed=False) == str(ROOT)
    assert library.python_path(sandboxed=True) == library.SANDBOX_LIBRARY_PARENT


def test_old_key_scheme_folder_is_refused_with_force_and_output_dir_named(world):
    write_submission(world["attacks"], "plus", "attack", PLUS)
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    config = config_for(world, sandbox=SandboxKind.NONE)
    run_competition(config, echo=lambda _line: None)
    marker = world["results"] / "store" / KEY_SCHEME_FILE
    assert json.loads(marker.read_text()) == {"key_scheme": KEY_SCHEME}
    # A folder written by the harness before key schemes were recorded: no marker, a manifest without one.
    marker.unlink()
    manifest_path = world["results"] / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["key_scheme"]
    manifest["harness_content_hash"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(CompetitionError, match=r"key scheme 1.*--force.*--output_dir"):
        run_competition(config, echo=lambda _line: None)
    forced = run_competition(config_for(world, sandbox=SandboxKind.NONE, force=True), echo=lambda _line: None)
    assert forced.outcome.executed == {"attack": 1, "defense": 2}
    assert json.loads(marker.read_text()) == {"key_scheme": KEY_SCHEME}
