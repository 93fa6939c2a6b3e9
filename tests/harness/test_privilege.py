"""harness.privilege: staging folders of a root harness, and the sweep of those a killed harness left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from harness.cli import main
from harness.instance import Instance
from harness.privilege import (
    RUN_GID,
    RUN_UID,
    STAGING_PREFIX,
    reachable,
    stage_command,
    staging_parent,
    sweep_stale_staging,
)
from machine import needs_bwrap, needs_root
from tiny_world import BUCKET_DEFENSE, PLUS, write_submission

# A child that stages a folder the run uid cannot reach, prints the staging folder and dies without cleaning up
# (as a SIGKILLed harness does).
_STAGE_AND_DIE = """
import os, sys, tempfile
tempfile.tempdir = sys.argv[1]
from harness.instance import Instance
from harness.privilege import RUN_GID, RUN_UID, stage_command
command, dropper = stage_command(["bwrap", "--ro-bind", sys.argv[2], "/code", "--", "true"], uid=RUN_UID,
                                 gid=RUN_GID, instance=Instance.create())
print(dropper.placeholders, flush=True)
os._exit(0)
"""


@pytest.fixture
def private(tmp_path: Path) -> Path:
    """A folder the run uid cannot traverse into."""
    folder = tmp_path / "private" / "code"
    folder.mkdir(parents=True)
    (tmp_path / "private").chmod(0o700)
    return folder


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _own_start_time() -> str:
    return Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()[19]


def test_a_killed_harness_leaves_staging_the_next_one_removes(open_tmp: Path, private: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = open_tmp
    out = subprocess.run([sys.executable, "-c", _STAGE_AND_DIE, str(scratch), str(private)], check=True,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()}).stdout
    left = Path(out.strip())
    assert left.parent == scratch and left.is_dir()  # the killed harness could not clean up

    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    instance = Instance.create()
    command, dropper = stage_command(["bwrap", "--ro-bind", str(private), "/code", "--", "true"], uid=RUN_UID,
                                     gid=RUN_GID, instance=instance)
    assert not left.exists()
    assert dropper.placeholders is not None and dropper.placeholders.is_dir()
    assert dropper.placeholders.name.startswith(f"{STAGING_PREFIX}{instance.tag}-")
    assert instance.tag.startswith(f"{instance.host}-{os.getpid()}-{_own_start_time()}-")
    assert command[2] != str(private) and command[2].startswith(str(dropper.placeholders))
    dropper.cleanup()
    assert list(scratch.iterdir()) == []


def test_sweep_removes_only_stale_folders_of_its_own_naming(tmp_path: Path) -> None:
    own = Instance.create()
    dead = tmp_path / f"{STAGING_PREFIX}{replace(own, pid=_dead_pid()).tag}-abc"
    reused = tmp_path / f"{STAGING_PREFIX}{replace(own, start=own.start + 1).tag}-abc"  # the pid was reused
    alive = tmp_path / f"{STAGING_PREFIX}{own.tag}-abc"
    elsewhere = tmp_path / f"{STAGING_PREFIX}{replace(own, host='other.host', pid=_dead_pid()).tag}-abc"
    legacy_dead = tmp_path / f"{STAGING_PREFIX}{_dead_pid()}-12345-abc"  # named by harnesses before instances
    legacy_reused = tmp_path / f"{STAGING_PREFIX}{os.getpid()}-1-abc"
    legacy_alive = tmp_path / f"{STAGING_PREFIX}{os.getpid()}-{_own_start_time()}-abc"
    other_naming = tmp_path / f"{STAGING_PREFIX}abc"
    unrelated = tmp_path / f"adv-harness-other-{replace(own, pid=_dead_pid()).tag}"
    for folder in (dead, reused, alive, elsewhere, legacy_dead, legacy_reused, legacy_alive, other_naming,
                   unrelated):
        (folder / "placeholder").mkdir(parents=True)
    not_a_folder = tmp_path / f"{STAGING_PREFIX}{replace(own, pid=_dead_pid()).tag}-file"
    not_a_folder.write_text("")

    removed = sweep_stale_staging(tmp_path)

    assert sorted(removed) == sorted([dead, reused, legacy_dead, legacy_reused])
    assert not any(f.exists() for f in (dead, reused, legacy_dead, legacy_reused))
    assert all(f.is_dir() for f in (alive, elsewhere, legacy_alive, other_naming, unrelated))
    assert not_a_folder.is_file()


@needs_root  # to make a folder owned by another user
def test_sweep_leaves_other_users_folders_alone(tmp_path: Path) -> None:
    foreign = tmp_path / f"{STAGING_PREFIX}{replace(Instance.create(), pid=_dead_pid()).tag}-abc"
    legacy_foreign = tmp_path / f"{STAGING_PREFIX}{_dead_pid()}-1-abc"
    for folder in (foreign, legacy_foreign):
        folder.mkdir()
        os.chown(folder, 65534, 65534)
    assert sweep_stale_staging(tmp_path) == []
    assert foreign.is_dir() and legacy_foreign.is_dir()


def test_sweep_of_a_missing_folder_is_empty(tmp_path: Path) -> None:
    assert sweep_stale_staging(tmp_path / "nowhere") == []


def test_staging_goes_where_the_run_uid_can_traverse(private: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(private.parent))  # a TMPDIR below a mode-700 folder (as /root)
    command, dropper = stage_command(["bwrap", "--bind", str(private), "/out", "--", "true"], uid=RUN_UID,
                                     gid=RUN_GID, instance=Instance.create())
    try:
        assert dropper.placeholders is not None
        assert staging_parent(uid=RUN_UID, gid=RUN_GID) == dropper.placeholders.parent != private.parent
        assert reachable(Path(command[2]), uid=RUN_UID, gid=RUN_GID)
    finally:
        dropper.cleanup()


def test_no_traversable_temporary_folder_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("harness.privilege.reachable", lambda *_args, **_kwargs: False)
    with pytest.raises(OSError, match=r"traversable by uid 65533 .*set TMPDIR to a folder every user may traverse"):
        staging_parent(uid=RUN_UID, gid=RUN_GID)


@needs_bwrap
@needs_root  # only a root harness stages folders
def test_root_harness_with_a_private_tmpdir_runs_submissions(world: dict[str, Path], private: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    write_submission(world["attacks"], "plus", "attack", PLUS)
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    monkeypatch.setattr("tempfile.tempdir", str(private.parent))
    output = world["root"] / "out"
    assert main(["--input_dir", str(world["data"]), "--attacks_dir", str(world["attacks"]), "--defenses_dir",
                 str(world["defenses"]), "--output_dir", str(output), "--quiet", "--max_epsilon", "8"]) == 0
    runs = (output / "runs.csv").read_text()
    assert "exit code" not in runs and runs.count("\n") >= 3, runs


def test_without_proc_nothing_is_swept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When start times cannot be read, a live harness's folder cannot be told from a dead one's: keep all."""
    folder = tmp_path / f"{STAGING_PREFIX}{replace(Instance.create(), pid=_dead_pid()).tag}-abc"
    legacy = tmp_path / f"{STAGING_PREFIX}{_dead_pid()}-12345-abc"
    folder.mkdir()
    legacy.mkdir()
    monkeypatch.setattr("harness.instance.process_start_time", lambda _pid: None)
    monkeypatch.setattr("harness.privilege.process_start_time", lambda _pid: None)
    assert sweep_stale_staging(tmp_path) == [] and folder.is_dir() and legacy.is_dir()
