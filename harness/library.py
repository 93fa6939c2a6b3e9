"""The submission library as the referee sees it: where it is, how a sandbox sees it, and what a run can use.

Submissions may import one package of this project at run time, :mod:`submission_kit` (SDK, zoo, attack methods,
defense blocks, run-time parts of the seed methods, weights). The referee never imports it beyond its torch-free
:mod:`submission_kit.contract`; it only locates the folder (:func:`library_dir`), mounts it read-only into every
sandbox at :data:`SANDBOX_LIBRARY_PARENT` and puts only that folder on the run's ``PYTHONPATH``
(:func:`python_path`). Neither the referee (``harness``) nor the research code is visible to a run.

A run's result depends on its submission folder, its inputs, ε and the environment it runs in: the library's
content (code and weights) and the Python and torch versions the runs see. :func:`fingerprint` is that environment,
read without importing torch (``importlib.metadata``), so that the referee stays torch-free.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.store import key_of
from harness.submission import content_hash

__all__ = ["LIBRARY_PACKAGE", "SANDBOX_LIBRARY_PARENT", "KEY_SCHEME", "Fingerprint", "fingerprint", "library_dir",
           "library_link", "python_path"]

#: The importable name of the submission library.
LIBRARY_PACKAGE = "submission_kit"
#: Folder that holds the library inside a bubblewrap or docker sandbox (``<this>/submission_kit``).
SANDBOX_LIBRARY_PARENT = "/submission_library"
#: Version of the unit-key scheme; stored with every record and in ``store/key_scheme.json``. Scheme 1 hashed the
#: whole ``harness`` package (referee and library together); scheme 2 hashes the environment fingerprint.
KEY_SCHEME = 2
#: Distributions whose versions a run can see (the runs import them through the library).
_DISTRIBUTIONS = ("torch", "torchvision", "numpy", "pillow", "scikit-image", "scikit-learn")


def library_dir() -> Path:
    """The folder of the installed :mod:`submission_kit` package, found without importing it.

    Raises:
        RuntimeError: The package is not importable (install the project: ``pip install -e ".[kit]"``).
    """
    spec = importlib.util.find_spec(LIBRARY_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the submission library {LIBRARY_PACKAGE!r} is not importable: install the project "
                           "(pip install -e \".[kit]\") or run from the repository root")
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def python_path(*, sandboxed: bool) -> str:
    """The ``PYTHONPATH`` of a run: the folder holding the library as the run sees it.

    Args:
        sandboxed: True under bubblewrap or docker (the library is mounted at :data:`SANDBOX_LIBRARY_PARENT`);
            False for plain processes (the library's parent folder on this machine).
    """
    return SANDBOX_LIBRARY_PARENT if sandboxed else str(library_dir().parent)


def library_link(folder: Path) -> Path:
    """Make ``folder`` hold only a symlink ``submission_kit`` → :func:`library_dir` and return it: the
    ``PYTHONPATH`` of a plain (unsandboxed) process, so that the library is importable through it and nothing
    else of the project is (the repository root would expose ``harness`` and ``research``).

    Raises:
        FileExistsError: ``folder`` already holds a ``submission_kit`` entry.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LIBRARY_PACKAGE).symlink_to(library_dir(), target_is_directory=True)
    return folder


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


@dataclass(frozen=True)
class Fingerprint:
    """What a run can use besides its own folder and inputs.

    Attributes:
        library: SHA-256 of the library folder (relative paths, executable bits and bytes; weights included).
        python: The Python version the runs use (the harness's interpreter), e.g. ``"3.12.3"``.
        packages: Distribution → installed version (``"absent"`` when not installed), as the runs see them.
    """

    library: str
    python: str
    packages: tuple[tuple[str, str], ...]

    @property
    def key(self) -> str:
        """32 hex digits over every field and :data:`KEY_SCHEME`."""
        return key_of(f"key-scheme-{KEY_SCHEME}", self.library, self.python, *(f"{n}={v}" for n, v in self.packages))

    def describe(self) -> dict[str, object]:
        """JSON-ready form for the manifest."""
        return {**asdict(self), "packages": dict(self.packages), "key": self.key, "key_scheme": KEY_SCHEME}


@functools.lru_cache(maxsize=None)
def _fingerprint(folder: Path) -> Fingerprint:
    return Fingerprint(library=content_hash(folder), python=platform.python_version(),
                       packages=tuple((name, _version(name)) for name in _DISTRIBUTIONS))


def fingerprint(folder: Path | None = None, *, cached: bool = False) -> Fingerprint:
    """The environment fingerprint of the runs (never imports torch).

    Args:
        folder: The library folder (default :func:`library_dir`).
        cached: Reuse the value computed earlier in this process for the same folder (the library does not change
            during one competition); False hashes the folder again.
    """
    folder = (folder or library_dir()).resolve()
    if not cached:
        _fingerprint.cache_clear()
    return _fingerprint(folder)
