"""What the machine gives the tests: one named fixture per outside capability, and the only place a test may skip.

| fixture             | gives                                                        | absent under ``REQUIRE_ENV`` |
|---------------------|--------------------------------------------------------------|------------------------------|
| ``bubblewrap``      | :class:`Protections` of ``--sandbox bwrap``                  | fails                        |
| ``container_engine``| :class:`Protections` of ``--sandbox docker`` (engine + image)| fails                        |
| ``gvisor``          | :class:`Protections` of ``--sandbox gvisor`` (runsc runtime) | fails                        |
| ``chromium``        | (browser, driver) executables                                | fails                        |
| ``unprivileged_uid``| a uid the suite (root) may switch to, chown to and mount for | fails                        |
| ``gpu``             | a CUDA device name                                           | skips                        |
| ``cifar10``         | the shared CIFAR-10 folder (both splits)                     | skips                        |

Without ``REQUIRE_ENV`` every fixture skips when its capability is missing (a contributor's laptop). With it set
(``.ci/run`` sets it), the first five fail instead: a green CI then means every sandbox, the browser and the
privilege tests really ran. Only a GPU and the shared data set may be absent. :mod:`tests.test_machine` checks that
no test skips any other way (no ``pytest.skip``/``skipif``/``importorskip`` outside this module), and the
``conftest`` hooks fail a required run that skipped or deselected anything else.

Tests use a fixture by naming it as an argument, or by a marker from here (``needs_bwrap``) when they do not need
its value.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest

from harness.sandboxes.base import Protections, SandboxKind
from harness.sandboxes.factory import probe

#: Set (to anything but "" or "0") to make missing required capabilities fail instead of skip.
REQUIRE_ENV = "ADV_HARNESS_REQUIRE_MACHINE"
#: Every skip reason this module gives starts with this; optional ones with :data:`OPTIONAL_PREFIX`.
SKIP_PREFIX = "machine lacks "
OPTIONAL_PREFIX = "machine lacks (optional) "
#: The image scripts/build_sandbox_images.sh builds (debootstrap bookworm minbase + python3-numpy + python3-pil).
CONTAINER_IMAGE = "adv-harness/python-numpy-pil:bookworm"
#: The uid privilege tests switch to (nobody).
UNPRIVILEGED_UID = 65534


def required() -> bool:
    """True when missing required capabilities must fail the tests (``REQUIRE_ENV`` set)."""
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


def missing(what: str, why: str, *, optional: bool = False) -> NoReturn:
    """Skip the test for want of ``what`` (or fail it, when required and not ``optional``)."""
    if required() and not optional:
        pytest.fail(f"{what} is required ({REQUIRE_ENV} is set) but {why}", pytrace=False)
    pytest.skip(f"{OPTIONAL_PREFIX if optional else SKIP_PREFIX}{what}: {why}")


def _sandbox(kind: SandboxKind, what: str) -> Protections:
    try:
        return probe(kind)
    except RuntimeError as exc:
        problem = str(exc)
    missing(what, problem)  # outside the except block: one message, not a chain of two


@pytest.fixture(scope="session")
def bubblewrap() -> Protections:
    """bubblewrap creating namespaces as runs use it (``--sandbox bwrap``)."""
    return _sandbox(SandboxKind.BWRAP, "bubblewrap")


@pytest.fixture(scope="session")
def container_engine() -> Protections:
    """A docker engine that answers, with the local image of the container tests (``--sandbox docker``).

    A missing image is a failure naming the script that builds it, required or not."""
    from harness.sandboxes import docker as sandbox_docker

    protections = _sandbox(SandboxKind.DOCKER, "a docker engine")
    assert not sandbox_docker.image_problem(CONTAINER_IMAGE), \
        f"{CONTAINER_IMAGE} is missing: run scripts/build_sandbox_images.sh (as root) before the tests"
    return protections


@pytest.fixture(scope="session")
def gvisor(container_engine: Protections) -> Protections:
    """docker's runsc runtime (``--sandbox gvisor``)."""
    return _sandbox(SandboxKind.GVISOR, "gVisor (docker's runsc runtime)")


@pytest.fixture(scope="session")
def chromium() -> tuple[str, str]:
    """(browser, driver) executables of a headless Chromium and its ChromeDriver."""
    from research.browser import find_browser

    found = find_browser()
    if found is None:
        missing("Chromium", "no chromium and chromedriver on PATH (apt-get install chromium chromium-driver)")
    return found


@pytest.fixture(scope="session")
def unprivileged_uid() -> int:
    """A uid the test process may switch to (fork + setresuid), chown files to and mount for: needs root."""
    if os.geteuid() != 0:
        missing("an unprivileged uid to switch to", "the tests do not run as root")
    return UNPRIVILEGED_UID


@pytest.fixture(scope="session")
def gpu() -> str:
    """The name of CUDA device 0 (optional: CPU-only machines skip)."""
    import torch

    if not torch.cuda.is_available():
        missing("a CUDA GPU", "torch sees none", optional=True)
    return str(torch.cuda.get_device_name(0))


@pytest.fixture(scope="session")
def cifar10() -> Path:
    """The shared CIFAR-10 folder with both splits (optional: it lives beside the project, never in it)."""
    from research import cifar10 as dataset

    if not dataset.available():
        missing("the shared CIFAR-10 data set", f"no archives in {dataset.dataset_root()} (set {dataset.ROOT_ENV})",
                optional=True)
    return dataset.dataset_root()


#: Markers for tests that need a capability but not its value.
needs_bwrap = pytest.mark.usefixtures("bubblewrap")
needs_root = pytest.mark.usefixtures("unprivileged_uid")
needs_browser = pytest.mark.usefixtures("chromium")
needs_cifar10 = pytest.mark.usefixtures("cifar10")

FIXTURES = ("bubblewrap", "container_engine", "gvisor", "chromium", "unprivileged_uid", "gpu", "cifar10")


def is_allowed_skip(reason: str) -> bool:
    """Whether a skip with this reason may happen in a required run (a GPU or the shared data set missing)."""
    return OPTIONAL_PREFIX in reason


__all__ = ["CONTAINER_IMAGE", "FIXTURES", "REQUIRE_ENV", "UNPRIVILEGED_UID", "bubblewrap", "chromium", "cifar10",
           "container_engine", "gpu", "gvisor", "is_allowed_skip", "missing", "needs_browser", "needs_bwrap",
           "needs_cifar10", "needs_root", "required", "unprivileged_uid"]
