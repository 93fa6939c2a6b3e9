"""Scratch folders no other local user can reach or redirect (issue 28, item 1).

The harness keeps every run's files in a fresh folder of its own (mode 700, unpredictable name), never follows a
link there (clean-up included), and hands runs their folders through their own uid and bind mounts, never through
world-readable modes. These tests play the other local user.
"""

from __future__ import annotations

import os
import signal
import stat
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from harness.cleanup import owner_of, remove_tree
from harness.competition import run_competition
from harness.privilege import RUN_GID, RUN_UID, staging_parent
from harness.sandboxes.base import SandboxKind
from harness.workspace import SCRATCH_PREFIX, legacy_scratch, scratch_folders, scratch_parent
from tiny_world import BUCKET_DEFENSE, NOOP, PLUS, config_for, write_submission
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


#: Folders the racing user plants in the legacy scratch folder and swaps for links once the harness removes them.
_PLANTED = 2000


def _race(uid: int, *, legacy: Path, parents: list[Path], victims: list[Path]) -> int:
    """Fork a child that drops to ``uid`` and, until killed, races the harness on every path it can guess or see.

    It plants the predictable legacy scratch folder full of folders and, as soon as the harness starts removing
    them (one is gone: the harness has listed them all), swaps every remaining one for a link to one of
    ``victims``. In every ``adv-harness-*`` folder of ``parents`` (scratch, staging) it can enter, it swaps each
    unit's ``input``, ``output``, ``work`` and code copy for links to ``victims``, and it plants links under the
    names the harness used before (``...-TAG`` without the random part). Returns the child's pid once the legacy
    folder is planted."""
    ready_read, ready_write = os.pipe()
    pid = os.fork()
    if pid:
        os.close(ready_write)
        os.read(ready_read, 1)
        os.close(ready_read)
        return pid
    try:  # pragma: no cover - child
        os.close(ready_read)
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        os.umask(0)
        os.mkdir(legacy, 0o777)
        names = [f"d{index}" for index in range(_PLANTED)]
        for name in names:
            os.mkdir(legacy / name, 0o777)
        os.write(ready_write, b"!")
        swapped = False
        turn = 0
        while True:
            turn += 1
            time.sleep(0.001)
            for parent in parents:
                try:  # each sub-folder's ".." links the folder: fewer links, the harness is removing them
                    if not swapped and os.lstat(legacy).st_nlink < _PLANTED + 2:
                        swapped = _swap(legacy, names, victims)
                except OSError:
                    swapped = True
                try:
                    found = [n for n in os.listdir(parent) if n.startswith(("adv-harness-scratch-",
                                                                            "adv-harness-stage-"))]
                except OSError:
                    continue
                for name in found:
                    folder = parent / name
                    owner = owner_of(name, SCRATCH_PREFIX)
                    if owner is not None:  # the name harnesses used before the random part
                        try:
                            os.symlink(victims[turn % len(victims)], parent / f"{SCRATCH_PREFIX}{owner.tag}")
                        except OSError:
                            pass
                    try:
                        units = os.listdir(folder)
                    except OSError:
                        continue
                    for unit in units:
                        for sub in ("input", "output", "work", "work/submission"):
                            where = folder / unit / sub
                            try:
                                os.rename(where, folder / unit / f"{sub.replace('/', '-')}.{turn}")
                            except OSError:
                                pass
                            try:
                                os.symlink(victims[turn % len(victims)], where)
                            except OSError:
                                pass
    finally:
        os._exit(0)


def _swap(legacy: Path, names: list[str], victims: list[Path]) -> bool:
    """Replace the folders ``names`` of ``legacy`` by links to ``victims``; True."""
    for index, name in enumerate(names):
        try:
            os.rmdir(legacy / name)
            os.symlink(victims[index % len(victims)], legacy / name)
        except OSError:
            pass
    return True


def _mounts_of(root: Path) -> list[str]:
    """The mounts of this mount namespace on anything below ``root`` or on a harness folder."""
    with open("/proc/self/mountinfo") as handle:
        return [line for line in handle if str(root) in line or "adv-harness" in line]


def _state(path: Path) -> tuple[object, ...]:
    info = os.lstat(path)
    content = sorted(os.listdir(path)) if stat.S_ISDIR(info.st_mode) else path.read_bytes()
    return info.st_mode, info.st_uid, info.st_gid, content


def test_an_unprivileged_user_racing_every_scratch_path_changes_nothing(world: dict[str, Path], bubblewrap: Any,
                                                                        unprivileged_uid: int) -> None:
    """Another local user races folder and link swaps on every path the harness touches for a whole competition
    (the legacy scratch folder its start-up removes, every scratch and staging folder it can see): no file outside
    its own is chmodded, chowned, written or mounted, and the leaderboard equals a quiet run's."""
    write_submission(world["attacks"], "plus", "attack", PLUS)
    write_submission(world["attacks"], "noop", "attack", NOOP)
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    quiet = run_competition(config_for(world, sandbox=SandboxKind.BWRAP), echo=lambda _: None)

    victim_file = world["root"] / "root-only"
    victim_file.write_text("root only\n")
    victim_file.chmod(0o600)
    victim_folder = world["root"] / "root-folder"
    victim_folder.mkdir()
    (victim_folder / "inside").write_text("kept\n")
    victim_folder.chmod(0o750)
    victims = [victim_file, victim_folder]
    before = {victim: _state(victim) for victim in [*victims, victim_folder / "inside"]}
    mounts = _mounts_of(world["root"])
    raced_results = world["root"] / "raced"
    legacy = legacy_scratch(raced_results)
    racer = _race(unprivileged_uid, legacy=legacy, victims=victims,
                  parents=[scratch_parent(raced_results), staging_parent(uid=RUN_UID, gid=RUN_GID)])
    try:
        raced = run_competition(config_for(world, sandbox=SandboxKind.BWRAP, output_dir=raced_results),
                                echo=lambda _: None)
    finally:
        os.kill(racer, signal.SIGKILL)
        os.waitpid(racer, 0)
        remove_tree(legacy)
        for parent in (scratch_parent(raced_results), staging_parent(uid=RUN_UID, gid=RUN_GID)):
            for planted in parent.glob("adv-harness-*"):
                if planted.is_symlink():
                    planted.unlink()

    assert {victim: _state(victim) for victim in before} == before
    assert _mounts_of(world["root"]) == mounts
    assert [replace(row, seconds=0.0) for row in raced.scores] == [replace(row, seconds=0.0) for row in quiet.scores]
    assert raced.predictions == quiet.predictions
    assert all(not run.problem for run in raced.runs), [run.problem for run in raced.runs]
