"""CIFAR-10 (JPEG copies) reader with an on-disk cache of decoded arrays.

The data set is CIFAR-10 (Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009) as kept in
the shared folder: ``train.tar.gz`` holds ``train/<class>/<NNNN>.jpg`` (50,000 images) and ``test.tar.gz`` holds
``test/<class>/<NNNN>.jpg`` (5,000 images, a subset of the official test split). The images are JPEG copies, so
pixels -- and accuracies measured on them -- are close to, not equal to, the original binary release.

Where the archives are looked for, first match wins:

1. the ``root`` argument of :func:`load_split` / :func:`available`;
2. the environment variable ``CIFAR10_DIR``;
3. ``<project root>/../shared/datasets/cifar10``.

Decoded arrays are cached as ``.npz`` files under ``HARNESS_CACHE`` (default ``~/.cache/adv-harness``), keyed by
the SHA-256 of the archive, so a changed archive is decoded again. Neither the archives nor anything derived from
them may be committed to the repository.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "CLASSES",
    "CACHE_ENV",
    "ROOT_ENV",
    "SPLITS",
    "DatasetNotFoundError",
    "available",
    "cache_dir",
    "dataset_root",
    "load_split",
]

#: Class names in label order (label ``i`` is ``CLASSES[i]``).
CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
#: The two splits the shared folder holds.
SPLITS: tuple[str, ...] = ("train", "test")
#: Environment variable naming the folder that holds ``train.tar.gz`` and ``test.tar.gz``.
ROOT_ENV = "CIFAR10_DIR"
#: Environment variable naming the cache folder for decoded arrays.
CACHE_ENV = "HARNESS_CACHE"

_PROJECT_ROOT = Path(__file__).resolve().parent.parent
_CACHE_FORMAT = 1  # bump when the cached array layout changes
_IMAGE_SHAPE = (32, 32, 3)


class DatasetNotFoundError(FileNotFoundError):
    """Raised when a CIFAR-10 archive is not where the harness looks for it."""


def dataset_root(root: str | os.PathLike[str] | None = None) -> Path:
    """Return the folder expected to hold the CIFAR-10 archives.

    Args:
        root: Explicit folder. When ``None``, ``$CIFAR10_DIR`` is used if set, else
            ``<project root>/../shared/datasets/cifar10``.

    Returns:
        The folder path (it is not checked for existence).
    """
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ROOT_ENV)
    if env:
        return Path(env).expanduser()
    return (_PROJECT_ROOT.parent / "shared" / "datasets" / "cifar10").resolve()


def cache_dir() -> Path:
    """Return the cache folder for decoded arrays: ``$HARNESS_CACHE`` or ``~/.cache/adv-harness``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "adv-harness"


def available(root: str | os.PathLike[str] | None = None, *, splits: tuple[str, ...] = SPLITS) -> bool:
    """Tell whether the archives of ``splits`` exist, so tests can skip cleanly.

    Args:
        root: Folder holding the archives; see :func:`dataset_root` for the default.
        splits: Which splits must be present.

    Returns:
        ``True`` if every ``<split>.tar.gz`` is a file.
    """
    folder = dataset_root(root)
    return all((folder / f"{split}.tar.gz").is_file() for split in splits)


def load_split(
    split: str, root: str | os.PathLike[str] | None = None, *, use_cache: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Load one split as decoded arrays.

    Images are ordered by label, then by file name, so the order is the same on every machine.

    Args:
        split: ``"train"`` or ``"test"``.
        root: Folder holding ``<split>.tar.gz``; see :func:`dataset_root` for the default.
        use_cache: Read and write the ``.npz`` cache under :func:`cache_dir`.

    Returns:
        ``(images, labels)``: ``images`` is uint8 of shape ``(N, 32, 32, 3)`` (RGB, values 0-255), ``labels`` is
        int64 of shape ``(N,)`` with values in ``0..9`` indexing :data:`CLASSES`.

    Raises:
        ValueError: ``split`` is not one of :data:`SPLITS`, or the archive holds an unexpected entry.
        DatasetNotFoundError: The archive is missing; the message names the path and ``CIFAR10_DIR``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    archive = dataset_root(root) / f"{split}.tar.gz"
    if not archive.is_file():
        raise DatasetNotFoundError(
            f"CIFAR-10 {split} archive not found at {archive}. Set the environment variable {ROOT_ENV} "
            f"(or pass root=...) to the folder holding train.tar.gz and test.tar.gz."
        )
    if not use_cache:
        return _decode_archive(archive, split)
    digest = _sha256(archive)
    cached = cache_dir() / f"cifar10-{split}-{digest[:16]}-v{_CACHE_FORMAT}.npz"
    if cached.is_file():
        try:
            with np.load(cached, allow_pickle=False) as data:
                return data["images"], data["labels"]
        except (OSError, ValueError, KeyError):
            pass  # unreadable cache: decode again and overwrite it
    images, labels = _decode_archive(archive, split)
    _write_npz_atomically(cached, images=images, labels=labels)
    return images, labels


def _sha256(path: Path) -> str:
    """Return the hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _decode_archive(archive: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode every ``<split>/<class>/<name>.jpg`` in ``archive`` into sorted arrays."""
    class_index = {name: i for i, name in enumerate(CLASSES)}
    entries: list[tuple[int, str, np.ndarray]] = []
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            if not member.isfile():
                continue
            parts = Path(member.name).parts
            if len(parts) != 3 or parts[0] != split or not parts[2].lower().endswith((".jpg", ".jpeg", ".png")):
                raise ValueError(f"{archive}: unexpected entry {member.name!r} (want {split}/<class>/<file>.jpg)")
            if parts[1] not in class_index:
                raise ValueError(f"{archive}: unknown class folder {parts[1]!r} in {member.name!r}")
            handle = tar.extractfile(member)
            assert handle is not None  # regular file
            with Image.open(io.BytesIO(handle.read())) as image:
                pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
            if pixels.shape != _IMAGE_SHAPE:
                raise ValueError(f"{archive}: {member.name} has shape {pixels.shape}, expected {_IMAGE_SHAPE}")
            entries.append((class_index[parts[1]], parts[2], pixels))
    if not entries:
        raise ValueError(f"{archive}: no images under {split}/<class>/")
    entries.sort(key=lambda entry: (entry[0], entry[1]))
    images = np.stack([entry[2] for entry in entries])
    labels = np.array([entry[0] for entry in entries], dtype=np.int64)
    return images, labels


def _write_npz_atomically(path: Path, **arrays: np.ndarray) -> None:
    """Write ``arrays`` to ``path`` via a temporary file so readers never see a partial cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.stem, suffix=".tmp.npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
