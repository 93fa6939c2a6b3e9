"""Scratch folders no other local user can reach or redirect (issue 28, item 1).

The harness keeps every run's files in a fresh folder of its own (mode 700, unpredictable name), never follows a
link there (clean-up included), and hands runs their folders through their own uid and bind mounts, never through
world-readable modes. These tests play the other local user.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from conftest import BUCKET_DEFENSE, config_for, write_submission
from harness.cleanup import remove_tree
from harness.isolation import SandboxKind
from harness.workspace import scratch_folders
from two_harnesses import Competition, gated_attack, new_nonce, open_gate, wait_for_gates


class _Listing:
    """What ``os.scandir`` returns, from a listing already taken."""

    def __init__(self, entries: list[os.DirEntry[str]]) -> None:
        self.entries = entries

    def __enter__(self) -> Iterator[os.DirEntry[str]]:
        return iter(self.entries)

    def __exit__(self, *_: object) -> None:
        return None


def test_cleanup_never_follows_a_link_swapped_in_after_its_scan(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder (below the top, and deeper) replaced by a link to someone's folder or file after remove_tree listed
    it: the link is removed, its target keeps its mode and content."""
    victim_folder = tmp_path / "victim"
    victim_folder.mkdir()
    (victim_folder / "keep").write_text("kept")
    victim_folder.chmod(0o750)
    victim_file = tmp_path / "secret"
    victim_file.write_text("secret")
    victim_file.chmod(0o640)
    top = tmp_path / "top"
    (top / "a").mkdir(parents=True)
    (top / "b" / "inner").mkdir(parents=True)
    swaps = {"a": victim_folder, "inner": victim_file}  # entry name -> what a link put in its place points to
    real_scandir = os.scandir

    def scan_then_swap(where: Any) -> _Listing:
        with real_scandir(where) as entries:
            listed = list(entries)
        for entry in listed:
            target = swaps.pop(entry.name, None)
            if target is not None:
                os.rmdir(entry.name, dir_fd=where)
                os.symlink(target, entry.name, dir_fd=where)
        return _Listing(listed)

    monkeypatch.setattr(os, "scandir", scan_then_swap)
    outcome = remove_tree(top)
    monkeypatch.undo()

    assert swaps == {}, "the swaps were not made: the test no longer plays the race"
    assert stat.S_IMODE(victim_folder.stat().st_mode) == 0o750
    assert (victim_folder / "keep").read_text() == "kept"
    assert stat.S_IMODE(victim_file.stat().st_mode) == 0o640 and victim_file.read_text() == "secret"
    assert outcome == "" and not os.path.lexists(top)


def _as_uid(uid: int, work: Callable[[], str]) -> str:
    """``work()`` in a forked child that dropped every id to ``uid``; its result, or ``error: ...``."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.close(read_end)
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            try:
                answer = work()
            except OSError as exc:
                answer = f"error: {exc.strerror}"
            os.write(write_end, answer.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        answer = pipe.read().decode()
    os.waitpid(pid, 0)
    return answer


def _read(path: Path) -> Callable[[], str]:
    return lambda: "read: " + path.read_bytes()[:20].decode(errors="replace")


def test_scratch_and_a_running_unit_are_private_to_the_harness_and_its_run(world: dict[str, Path], bubblewrap: Any,
                                                                          unprivileged_uid: int) -> None:
    """While an attack runs (held at a gate): its scratch folder and unit folder are mode 700 and the harness's;
    another local user can read neither the team's code copy (mode 600 in the submission) nor the inputs; the copy
    was given to the run by ownership, not by opening its mode."""
    nonce = new_nonce()
    attack = write_submission(world["attacks"], "gated", "attack", gated_attack(nonce))
    (attack / "run.py").chmod(0o600)
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    competition = Competition(config_for(world, sandbox=SandboxKind.BWRAP))
    competition.start()
    gates = wait_for_gates(world["results"], nonce, 1, running=competition.is_alive)
    try:
        (output,) = gates.values()
        unit = output.parent
        scratch = unit.parent
        for folder in (scratch, unit):
            info = os.lstat(folder)
            assert stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid(), folder
            assert stat.S_IMODE(info.st_mode) == 0o700, f"{folder} is mode {stat.S_IMODE(info.st_mode):o}"
        copy = unit / "work" / "submission" / "run.py"
        assert copy.read_bytes() == (attack / "run.py").read_bytes()
        assert stat.S_IMODE(copy.stat().st_mode) & 0o077 == 0, "the code copy was opened to other users"
        inputs = sorted((unit / "input").glob("*.png"))
        assert inputs
        for secret in (copy, inputs[0]):
            assert _as_uid(unprivileged_uid, _read(secret)) == "error: Permission denied", secret
        assert _as_uid(unprivileged_uid, lambda: str(os.listdir(scratch))) == "error: Permission denied"
    finally:
        open_gate(output)
    result = competition.outcome()
    assert all(not run.problem for run in result.runs), [run.problem for run in result.runs]
    assert scratch_folders(world["results"], result.instance) == []
