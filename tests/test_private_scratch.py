"""Scratch folders no other local user can reach or redirect (issue 28, item 1).

The harness keeps every run's files in a fresh folder of its own (mode 700, unpredictable name), never follows a
link there (clean-up included), and hands runs their folders through their own uid and bind mounts, never through
world-readable modes. These tests play the other local user.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, Iterator

import pytest

from harness.cleanup import remove_tree


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
