"""What a run and other users can see of the harness: one owner-only rule for the whole results folder, and no
host path in the command lines a sandboxed run can read (``/proc/1/cmdline`` is the sandbox's PID 1)."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
from test_sandbox_containers import write_container_submission

from harness.competition import rescore, run_competition
from harness.html_report import build_report
from harness.sandboxes.base import SandboxKind
from harness.store import FILE_MODE, FOLDER_MODE
from harness.workspace import SCRATCH_PREFIX
from machine import CONTAINER_IMAGE, needs_bwrap
from tiny_world import BUCKET_DEFENSE, PLUS, config_for, write_submission


def _modes(root: Path) -> dict[str, str]:
    """Relative path → octal mode of ``root`` and everything below it."""
    modes = {}
    for path in [root, *root.rglob("*")]:
        modes[str(path.relative_to(root))] = oct(stat.S_IMODE(os.lstat(path).st_mode))
    return modes


@needs_bwrap
def test_every_file_of_a_results_folder_is_owner_only(world: dict[str, Path]) -> None:
    """Tables, logs, store, manifest and the report with its figures: folders 700, files 600, whatever the
    umask (022 here: the harness does not rely on it)."""
    write_submission(world["attacks"], "plus", "attack", PLUS)
    write_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE)
    previous = os.umask(0o022)
    try:
        run_competition(config_for(world), echo=lambda _: None)
        build_report(world["results"])
        rescore(world["results"])
    finally:
        os.umask(previous)
    modes = _modes(world["results"])
    for part in ("logs", "store", "report", "report/index.html", "leaderboard.csv", "manifest.json"):
        assert part in modes, sorted(modes)
    assert any(name.startswith("logs/") and name.endswith(".log") for name in modes)
    assert any(name.startswith("report/") and name.endswith(".png") for name in modes)
    wrong = {name: mode for name, mode in modes.items()
             if mode != oct(FOLDER_MODE if (world["results"] / name).is_dir() else FILE_MODE)}
    assert wrong == {}


#: Attack that prints the command line of every process it can see, then copies its input.
CMDLINES = """
for entry in sorted(Path("/proc").iterdir(), key=lambda p: p.name):
    if entry.name.isdigit():
        try:
            words = (entry / "cmdline").read_bytes().split(b"\\0")
        except OSError:
            continue
        print("PROC", entry.name, " ".join(w.decode(errors="replace") for w in words if w), flush=True)
inp, out = Path(sys.argv[1]), Path(sys.argv[2])
for p in sorted(inp.glob("*.png")):
    Image.open(p).save(out / p.name)
"""


@pytest.fixture(params=[SandboxKind.BWRAP, SandboxKind.DOCKER, SandboxKind.GVISOR], ids=lambda k: k.value)
def sandbox(request: pytest.FixtureRequest) -> SandboxKind:
    request.getfixturevalue({SandboxKind.BWRAP: "bubblewrap", SandboxKind.DOCKER: "container_engine",
                             SandboxKind.GVISOR: "gvisor"}[request.param])
    return request.param


def test_no_host_path_in_the_command_lines_a_run_sees(sandbox: SandboxKind, world: dict[str, Path]) -> None:
    """PID 1 of a bubblewrap sandbox is a copy of bwrap: its options (bind sources: the scratch folder, the venv)
    come through ``--args FD``, not argv. A container's PID 1 is docker's init with the entry point."""
    write_container_submission(world["attacks"], "looker", "attack", CMDLINES, image=CONTAINER_IMAGE)
    write_container_submission(world["defenses"], "bucket", "defense", BUCKET_DEFENSE, image=CONTAINER_IMAGE)
    result = run_competition(config_for(world, sandbox=sandbox), echo=lambda _: None)
    (looker,) = [r for r in result.runs if r.name == "looker"]
    assert looker.problem == ""
    lines = [line for line in (world["results"] / looker.log).read_text().splitlines() if line.startswith("PROC ")]
    assert lines and lines[0].startswith("PROC 1 "), lines
    project = Path(__file__).resolve().parents[2]
    host_paths = [str(world["root"]), SCRATCH_PREFIX, "/dev/shm", sys.prefix, str(Path(sys.executable).resolve()),
                  str(project), "/work"]
    leaks = [(line, path) for line in lines for path in host_paths if path in line]
    assert leaks == [], lines
    if sandbox is SandboxKind.BWRAP:
        assert lines[0].startswith("PROC 1 bwrap --args "), lines
