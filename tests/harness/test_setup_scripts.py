""".ci/run and scripts/install.sh: CI leaves nothing behind (its venv is a ~6 GB CUDA build of torch), pass or fail;
install refuses a disk too small for torch before pip fails half-way.

.ci/run runs in a throwaway repository whose ./test.sh and ./quickstart.sh are fakes that only make what the real
ones make (a venv folder, a results folder), so the test takes a second.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from machine import needs_root

ROOT = Path(__file__).resolve().parents[2]

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


@needs_root  # to mount a small tmpfs
def test_install_refuses_a_venv_on_a_disk_too_small_for_torch_in_one_line(tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200m", "tmpfs", str(small)], check=True)
    try:
        result = subprocess.run([str(ROOT / "scripts" / "install.sh")], env={**os.environ, "VENV": str(small / "venv")},
                                capture_output=True, text=True, timeout=600)
    finally:
        subprocess.run(["umount", "-l", str(small)], check=True)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"install: torch needs about 6 GB in .*/small/venv and its disk has \d+ MB free: free some "
                        r"space or set VENV to a folder on a larger disk", last), result.stderr


FAKE_DOCKER_CLIENT = """#!/bin/sh
# A docker client with no engine behind it (as a machine image may ship), or one whose engine answers.
[ "$1" = info ] && exit {info_status}
exit 1
"""
FAKE_APT = """#!/bin/sh
echo "$*" >> "{log}"
[ "$1" = install ] && exit 1   # stop the script here: the test reads what it asked for
exit 0
"""


@needs_root  # the script refuses to run otherwise
@pytest.mark.parametrize("engine", [False, True], ids=["client only", "engine answers"])
def test_sandbox_setup_installs_the_engine_when_only_a_docker_client_is_present(tmp_path: Path, engine: bool) -> None:
    """The engine is what the container sandboxes need: a docker client on PATH (e.g. /usr/local/bin/docker with no
    dockerd) must not stop the set-up from installing Debian's docker.io; an engine that answers needs nothing."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "id"):
        (bin_dir / tool).symlink_to(shutil.which(tool) or tool)
    log = tmp_path / "apt.log"
    for name, body in (("docker", FAKE_DOCKER_CLIENT.format(info_status=0 if engine else 1)),
                       ("apt-get", FAKE_APT.format(log=log))):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    result = subprocess.run([str(ROOT / "scripts" / "build_sandbox_images.sh")], env={"PATH": str(bin_dir)},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0  # the fake apt-get stops it at the install
    installed = [[word for word in line.split()[1:] if re.fullmatch(r"[a-z0-9][a-z0-9.+-]+", word)]
                 for line in log.read_text().splitlines() if line.startswith("install")]  # package names only
    assert installed and set(installed[0]) - {"docker.io"} == {"runsc", "debootstrap"}, (installed, result.stderr)
    assert ("docker.io" in installed[0]) != engine, installed
