"""Fixtures and hooks shared by tests/harness, tests/submission_kit and tests/research; nothing else.

Helpers live in modules beside this file, imported by name (tests/ is on ``sys.path`` because this file is there):
``tiny_world`` (synthetic datasets and submissions), ``machine`` (the machine's capabilities, the only place a test
may skip), ``tiny_models``, ``report_world`` and ``two_harnesses``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from harness.cleanup import remove_tree

# The machine's capabilities, as fixtures (tests/machine.py is the only place a test may skip).
from machine import (  # noqa: F401
    bubblewrap,
    chromium,
    cifar10,
    container_engine,
    gpu,
    gvisor,
    is_allowed_skip,
    required,
    unprivileged_uid,
)
from tiny_world import write_dataset


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A folder an unprivileged uid can reach (pytest's tmp_path lies below a mode-700 folder when root)."""
    folder = Path(tempfile.mkdtemp(prefix="adv-harness-test-"))
    folder.chmod(0o755)
    yield folder
    remove_tree(folder)


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Path]:
    """A dataset of 6 images plus empty attacks/ and defenses/ folders and a results folder path."""
    dataset = write_dataset(tmp_path / "data", [10, 45, 90, 120, 180, 240])
    attacks = tmp_path / "attacks"
    defenses = tmp_path / "defenses"
    attacks.mkdir()
    defenses.mkdir()
    return {"data": dataset, "attacks": attacks, "defenses": defenses, "results": tmp_path / "results",
            "root": tmp_path}


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from threads, and OpenMP spin-waits make them ~20x slower on a busy CPU."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- a required run (machine.REQUIRE_ENV, set by .ci/run) fails on any skip or deselection it does not allow ------
_UNEXPECTED: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if not is_allowed_skip(reason):
            _UNEXPECTED.append(f"skipped {report.nodeid}: {reason}")


def pytest_deselected(items: list[pytest.Item]) -> None:
    _UNEXPECTED.extend(f"deselected {item.nodeid}" for item in items)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if required() and _UNEXPECTED and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if required() and _UNEXPECTED:
        terminalreporter.section("skips and deselections a required run does not allow")
        for line in _UNEXPECTED:
            terminalreporter.line(line)
