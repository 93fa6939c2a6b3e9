""".ci/run: the CI script leaves nothing behind (its venv is a ~6 GB CUDA build of torch), pass or fail.

The script runs in a throwaway repository whose ./test.sh and ./quickstart.sh are fakes that only make what the real
ones make (a venv folder, a results folder), so the test takes a second.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FAKE_TEST = """#!/usr/bin/env bash
set -e
mkdir -p "$VENV/bin" && echo "big" > "$VENV/bin/python"
[[ -z "${FAIL_TESTS:-}" ]]
"""
FAKE_QUICKSTART = """#!/usr/bin/env bash
set -e
cd "$(dirname "$0")"
mkdir -p results && echo "16,defense,1,base,1" > results/leaderboard.csv
"""


@pytest.fixture
def fake_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / ".ci").mkdir(parents=True)
    shutil.copy(ROOT / ".ci" / "run", repo / ".ci" / "run")
    for name, body in (("test.sh", FAKE_TEST), ("quickstart.sh", FAKE_QUICKSTART)):
        (repo / name).write_text(body)
        (repo / name).chmod(0o755)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "-C", str(repo), "add", "-A"], check=True)
    subprocess.run([*git, "-C", str(repo), "commit", "-qm", "fake"], check=True)
    return repo


@pytest.mark.parametrize("fail", [False, True], ids=["pass", "fail"])
def test_ci_run_removes_its_venv_and_clone(fake_repo: Path, tmp_path: Path, fail: bool) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in ("VENV", "CI_VENV")}
    env.update(TMPDIR=str(scratch), **({"FAIL_TESTS": "1"} if fail else {}))
    result = subprocess.run([str(fake_repo / ".ci" / "run")], env=env, capture_output=True, text=True)
    assert (result.returncode != 0) == fail, result.stderr
    if not fail:
        assert "quickstart ran on a clean clone" in result.stdout
    assert list(scratch.iterdir()) == []  # no venv, no clone left
