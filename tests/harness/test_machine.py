"""tests/machine.py: a test skips only through the machine's named fixtures, and a required run (``.ci/run``) fails
instead of skipping what it must have, or skipping or deselecting anything else."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from machine import REQUIRE_ENV

TESTS = Path(__file__).resolve().parents[1]
#: Ways to skip or not run a test; only tests/machine.py may use them.
SKIPPING = re.compile(r"pytest\.skip\(|skipif|importorskip|mark\.skip\b|pytest\.xfail\(|mark\.xfail|pytest\.exit\(")


def test_no_test_skips_outside_the_machine_fixtures() -> None:
    offenders = [f"{path.relative_to(TESTS)}:{number}: {line.strip()}"
                 for path in sorted(TESTS.rglob("*.py")) if path.name not in ("machine.py", "test_machine.py")
                 for number, line in enumerate(path.read_text().splitlines(), 1) if SKIPPING.search(line)]
    assert offenders == [], "skip through a fixture of tests/machine.py instead:\n" + "\n".join(offenders)


PROBE_TESTS = """
import pytest

def test_needs_bubblewrap(bubblewrap):
    assert bubblewrap

def test_needs_cifar10(cifar10):
    assert cifar10.is_dir()

def test_skips_by_hand():
    if {skip_by_hand}:
        pytest.skip("some reason")

def test_plain():
    assert True
"""


def _pytest(tmp_path: Path, *, required: bool, skip_by_hand: bool = False, args: tuple[str, ...] = ()) -> \
        subprocess.CompletedProcess[str]:
    """Run the fixtures and hooks of tests/conftest.py over PROBE_TESTS, with no bwrap on PATH and no CIFAR-10."""
    (tmp_path / "test_probe.py").write_text(PROBE_TESTS.format(skip_by_hand=skip_by_hand))
    env = {key: value for key, value in os.environ.items() if key != REQUIRE_ENV}
    env.update(PATH=str(tmp_path / "no-bin"), PYTHONPATH=os.pathsep.join([str(TESTS), str(TESTS.parent)]),
               CIFAR10_DIR=str(tmp_path / "no-data"), **({REQUIRE_ENV: "1"} if required else {}))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), *(args or (str(tmp_path / "test_probe.py"),))],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_a_missing_capability_skips_on_a_contributors_machine(tmp_path: Path) -> None:
    result = _pytest(tmp_path, required=False, skip_by_hand=True)
    assert result.returncode == 0, result.stdout
    assert re.search(r"1 passed, 3 skipped", result.stdout), result.stdout


def test_a_required_run_fails_on_a_missing_capability_but_not_on_the_optional_data_set(tmp_path: Path) -> None:
    result = _pytest(tmp_path, required=True)
    assert result.returncode == 1, result.stdout
    assert "bubblewrap is required (ADV_HARNESS_REQUIRE_MACHINE is set) but --sandbox bwrap: bubblewrap (bwrap) is " \
        "not installed" in result.stdout, result.stdout
    assert "During handling" not in result.stdout
    assert re.search(r"2 passed, 1 skipped, 1 error", result.stdout), result.stdout  # the data set may be absent


@pytest.mark.parametrize("how", ["skip by hand", "deselection"])
def test_a_required_run_fails_on_any_other_skip_or_deselection(tmp_path: Path, how: str) -> None:
    """Node ids leave the bubblewrap test out without deselecting it; ``-k`` deselects."""
    chosen = ("test_probe.py::test_skips_by_hand", "test_probe.py::test_plain", "test_probe.py::test_needs_cifar10")
    args = (*chosen, "-k", "not plain") if how == "deselection" else chosen
    result = _pytest(tmp_path, required=True, skip_by_hand=how == "skip by hand", args=args)
    assert result.returncode == 1, result.stdout
    assert "skips and deselections a required run does not allow" in result.stdout, result.stdout
    expected = "deselected test_probe.py::test_plain" if how == "deselection" else \
        "skipped test_probe.py::test_skips_by_hand: Skipped: some reason"
    assert expected in result.stdout, result.stdout
    assert "test_needs_cifar10" not in result.stdout.split("does not allow")[1]  # the optional skip is allowed
    # the same run without the requirement passes
    assert _pytest(tmp_path, required=False, skip_by_hand=how == "skip by hand", args=args).returncode == 0
