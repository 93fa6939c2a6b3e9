"""Finished (ε, attack) results of an evaluation on disk, so an interrupted run resumes where it stopped.

A result is the per-image correctness (bool (N,)) of every defense under one attack at one ε, plus the seconds it
took. Its key is a hash of the evaluation's options (images, seed, ε, attack, …) and of every file of the code it
ran (``sources``: the submission library, its weights, the attack folders, the research code), so any change of
code or options is a miss and is recomputed; nothing stale is ever reused.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ResultCache", "sources_hash"]


def sources_hash(folders: list[Path]) -> str:
    """SHA-256 over the relative paths and contents of every file below ``folders`` (``__pycache__`` skipped)."""
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            digest.update(f"{folder.name}/{path.relative_to(folder).as_posix()}\0".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


class ResultCache:
    """Results of one evaluation recipe in ``folder`` (None: no cache; every lookup misses, nothing is written).

    Args:
        folder: Where results are kept (created on the first write).
        recipe: The options the results depend on (JSON-serialisable).
        sources: Folders whose files the results depend on.
    """

    def __init__(self, folder: Path | None, *, recipe: dict[str, Any], sources: list[Path]) -> None:
        self.folder = folder
        self.base = "" if folder is None else hashlib.sha256(
            (json.dumps(recipe, sort_keys=True) + sources_hash(sources)).encode()).hexdigest()

    def _path(self, epsilon: int, name: str) -> Path:
        assert self.folder is not None
        key = hashlib.sha256(f"{self.base}\0{epsilon}\0{name}".encode()).hexdigest()[:32]
        return self.folder / f"{name}@{epsilon}-{key}.npz"

    def get(self, epsilon: int, name: str) -> tuple[dict[str, np.ndarray], float] | None:
        """(defense → correct (N,), seconds) of attack ``name`` at ``epsilon``, or None (not there, unreadable)."""
        if self.folder is None:
            return None
        try:
            with np.load(self._path(epsilon, name)) as stored:
                arrays = {key: stored[key] for key in stored.files}
        except (OSError, ValueError, KeyError):
            return None
        seconds = arrays.pop("__seconds__", None)
        if seconds is None:
            return None
        return {d: a.astype(bool) for d, a in arrays.items()}, float(seconds)

    def put(self, epsilon: int, name: str, results: dict[str, np.ndarray], seconds: float) -> None:
        """Store a result atomically (written to a temporary file, then renamed)."""
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(epsilon, name)
        temporary = path.with_name(path.name + ".tmp.npz")
        np.savez(temporary, __seconds__=np.float64(seconds), **results)
        os.replace(temporary, path)
