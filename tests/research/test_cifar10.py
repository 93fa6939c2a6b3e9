"""Tests of research.cifar10 on a tiny synthetic archive written here, plus a skip-if-absent check of the real data."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from research import cifar10


def _jpeg(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), value, dtype=np.uint8)).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _write_archive(folder: Path, split: str, files: dict[str, int]) -> Path:
    """Write ``<split>.tar.gz`` holding ``<split>/<class>/<name>`` -> uniform grey images, in the given order."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{split}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for member, value in files.items():
            data = _jpeg(value)
            info = tarfile.TarInfo(f"{split}/{member}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


# Deliberately unsorted: loading must order by label index, then file name.
SYNTHETIC = {"truck/0001.jpg": 200, "airplane/0002.jpg": 20, "cat/0000.jpg": 120, "airplane/0001.jpg": 10}


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(cifar10.CACHE_ENV, str(folder))
    return folder


def test_classes_are_in_label_order() -> None:
    assert cifar10.CLASSES[0] == "airplane" and cifar10.CLASSES[3] == "cat" and cifar10.CLASSES[9] == "truck"
    assert len(cifar10.CLASSES) == 10


def test_loads_sorted_arrays_and_reuses_cache(tmp_path: Path, cache: Path) -> None:
    root = tmp_path / "data"
    _write_archive(root, "test", SYNTHETIC)
    images, labels = cifar10.load_split("test", root)
    assert images.shape == (4, 32, 32, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int64
    assert labels.tolist() == [0, 0, 3, 9]
    # airplane/0001 (10) before airplane/0002 (20); JPEG is lossy, so compare loosely
    assert np.allclose(images.reshape(4, -1).mean(1), [10, 20, 120, 200], atol=3)

    cached = list(cache.glob("cifar10-test-*.npz"))
    assert len(cached) == 1
    # A second load must come from the cache: poison the cached arrays and see them returned.
    np.savez(cached[0], images=np.zeros_like(images), labels=labels)
    again, _ = cifar10.load_split("test", root)
    assert not again.any()
    # ... unless the cache is bypassed.
    fresh, _ = cifar10.load_split("test", root, use_cache=False)
    assert np.array_equal(fresh, images)


def test_changed_archive_is_decoded_again(tmp_path: Path, cache: Path) -> None:
    root = tmp_path / "data"
    _write_archive(root, "train", {"dog/0000.jpg": 50})
    assert cifar10.load_split("train", root)[1].tolist() == [5]
    _write_archive(root, "train", {"dog/0000.jpg": 50, "frog/0000.jpg": 60})
    assert cifar10.load_split("train", root)[1].tolist() == [5, 6]


def test_env_var_names_the_folder(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "elsewhere"
    _write_archive(root, "test", {"ship/0000.jpg": 90})
    monkeypatch.setenv(cifar10.ROOT_ENV, str(root))
    assert cifar10.dataset_root() == root
    assert cifar10.available(splits=("test",)) and not cifar10.available()
    assert cifar10.load_split("test")[1].tolist() == [8]


def test_missing_data_error_names_path_and_env_var(tmp_path: Path) -> None:
    assert not cifar10.available(tmp_path)
    with pytest.raises(cifar10.DatasetNotFoundError, match=cifar10.ROOT_ENV) as info:
        cifar10.load_split("train", tmp_path)
    assert str(tmp_path / "train.tar.gz") in str(info.value)


def test_rejects_unknown_split_and_unknown_class(tmp_path: Path, cache: Path) -> None:
    with pytest.raises(ValueError, match="split"):
        cifar10.load_split("valid", tmp_path)
    _write_archive(tmp_path, "test", {"unicorn/0000.jpg": 1})
    with pytest.raises(ValueError, match="unicorn"):
        cifar10.load_split("test", tmp_path)


@pytest.mark.usefixtures("cifar10")
def test_real_test_split() -> None:
    images, labels = cifar10.load_split("test")
    assert images.shape == (5000, 32, 32, 3) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [500] * 10
    assert np.all(np.diff(labels) >= 0)
