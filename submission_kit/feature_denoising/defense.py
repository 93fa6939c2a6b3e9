"""What a feature-denoising defense folder runs: read its ``variant.json``, load the network, classify.

A folder (``defenses/fd_nonlocal``, ``defenses/adv_baseline``, or one made by
``python -m research.feature_denoising.make_defense``) holds the usual ``metadata.json``, ``run_defense.sh`` and
``README.md``, a three-line ``defense.py`` that calls :func:`run_folder`, and ``variant.json``::

    {"variant": "nonlocal_gaussian"}                          # weights: submission_kit/feature_denoising/weights/
    {"variant": "nonlocal_gaussian", "weights": "model.pt"}   # or a state dict shipped inside the folder

The network sees the images as they are (no input transformation), on CUDA when present.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from submission_kit.defense_blocks import classify

from . import variants

__all__ = ["SPEC_FILE", "FolderSpec", "read_spec", "run_folder"]

#: The file naming a folder's variant.
SPEC_FILE = "variant.json"


@dataclass(frozen=True)
class FolderSpec:
    """What ``variant.json`` says.

    Attributes:
        variant: A registered variant name.
        weights: A state-dict file inside the folder, or None for the committed weights of the variant.
    """

    variant: str
    weights: Path | None = None


def read_spec(folder: str | Path) -> FolderSpec:
    """Read and check ``folder/variant.json``.

    Raises:
        ValueError: Missing or malformed file, unknown variant (with a suggestion), or a weights path that leaves
            the folder.
    """
    folder = Path(folder)
    path = folder / SPEC_FILE
    try:
        data = json.loads(path.read_text())
        name = data["variant"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: expected a JSON object with a 'variant' key ({exc})") from None
    try:
        variants.get(name)
    except variants.UnknownModelError as exc:
        raise ValueError(f"{path}: {exc}") from None
    weights = data.get("weights")
    if weights is None:
        return FolderSpec(name)
    resolved = (folder / weights).resolve()
    if folder.resolve() not in resolved.parents:
        raise ValueError(f"{path}: 'weights' must be a file inside the folder, got {weights!r}")
    return FolderSpec(name, resolved)


def run_folder(folder: str | Path, argv: Sequence[str] | None = None) -> None:
    """Run the defense of ``folder`` on the NIPS 2017 arguments ``INPUT_DIR OUTPUT_FILE``.

    Exits with status 1 and a one-line message (naming the training command) when the weights are missing.
    """
    spec = read_spec(folder)
    try:
        classify.run_defense(loader=partial(variants.load, spec.variant, weights=spec.weights), argv=argv)
    except variants.WeightsNotFoundError as exc:
        raise SystemExit(f"error: {exc}") from None
