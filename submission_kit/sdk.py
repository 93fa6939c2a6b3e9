"""What a Python submission needs: its NIPS 2017 arguments, input images in batches, targets, outputs.

Images cross this boundary as uint8 arrays (N, H, W, 3) or, via :func:`to_tensor`/:func:`from_tensor`, as
float tensors in [0, 1] of shape (N, 3, H, W); every conversion is delegated to :mod:`submission_kit.contract`.

Example attack (``attack.py``, run by ``run_attack.sh`` as ``python3 attack.py "$@"``)::

    args = sdk.attack_args()
    for batch in sdk.iter_batches(args.input_dir, batch_size=64):
        adversarial = my_attack(batch.images, args.max_epsilon)
        sdk.save_images(args.output_dir, batch.names, adversarial)
"""

from __future__ import annotations

import argparse
import csv
import gc
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from submission_kit import contract


@dataclass(frozen=True)
class AttackArgs:
    """``./ENTRY INPUT_DIR OUTPUT_DIR MAX_EPSILON``; ε is an integer in 0–255 units."""

    input_dir: Path
    output_dir: Path
    max_epsilon: int


@dataclass(frozen=True)
class DefenseArgs:
    """``./ENTRY INPUT_DIR OUTPUT_FILE``."""

    input_dir: Path
    output_file: Path


def attack_args(argv: Sequence[str] | None = None) -> AttackArgs:
    """Parse an attack's command line (NIPS 2017 order), exiting with a usage message when it is wrong."""
    parser = argparse.ArgumentParser(description="Attack: INPUT_DIR OUTPUT_DIR MAX_EPSILON")
    parser.add_argument("input_dir", type=Path)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("max_epsilon")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        eps = contract.parse_epsilon(args.max_epsilon)
    except contract.EpsilonError as exc:
        parser.error(str(exc))
    args.output_dir.mkdir(parents=True, exist_ok=True)
    return AttackArgs(args.input_dir, args.output_dir, eps)


def defense_args(argv: Sequence[str] | None = None) -> DefenseArgs:
    """Parse a defense's command line (NIPS 2017 order)."""
    parser = argparse.ArgumentParser(description="Defense: INPUT_DIR OUTPUT_FILE")
    parser.add_argument("input_dir", type=Path)
    parser.add_argument("output_file", type=Path)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    return DefenseArgs(args.input_dir, args.output_file)


@dataclass(frozen=True)
class Batch:
    """Images of one size read from the input folder.

    Attributes:
        names: File names (``<ImageId>.png``).
        images: uint8 array (N, H, W, 3).
    """

    names: tuple[str, ...]
    images: np.ndarray


def image_names(input_dir: Path) -> list[str]:
    """PNG file names in ``input_dir``, sorted."""
    return sorted(p.name for p in Path(input_dir).glob("*.png") if p.is_file())


def iter_batches(input_dir: Path, *, batch_size: int = 64) -> Iterator[Batch]:
    """Read the input folder's PNGs in batches of at most ``batch_size`` images of equal size.

    Images of different sizes never share a batch, so a batch is always one array.
    """
    names = image_names(input_dir)
    pending: dict[tuple[int, ...], tuple[list[str], list[np.ndarray]]] = {}
    for name in names:
        image = contract.read_png(Path(input_dir) / name)
        group = pending.setdefault(image.shape, ([], []))
        group[0].append(name)
        group[1].append(image)
        if len(group[0]) >= batch_size:
            yield Batch(tuple(group[0]), np.stack(group[1]))
            del pending[image.shape]
    for group_names, group_images in pending.values():
        yield Batch(tuple(group_names), np.stack(group_images))


def read_targets(input_dir: Path) -> dict[str, int]:
    """``target_class.csv`` of a targeted attack's input folder: file name → target class."""
    path = Path(input_dir) / "target_class.csv"
    targets = {}
    with open(path, newline="") as handle:
        for row in csv.reader(handle):
            if len(row) >= 2:
                targets[row[0].strip()] = int(row[1])
    return targets


def save_images(output_dir: Path, names: Sequence[str], images: np.ndarray) -> None:
    """Write uint8 images (N, H, W, 3) as ``output_dir/<name>``."""
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    for name, image in zip(names, images):
        contract.write_png(Path(output_dir) / name, np.ascontiguousarray(image))


def write_predictions(output_file: Path, names: Sequence[str], labels: Sequence[int]) -> None:
    """Write the defense CSV: ``<name>,<label>`` rows, no header."""
    Path(output_file).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(output_file).with_name(f".{Path(output_file).name}.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        for name, label in zip(names, labels):
            writer.writerow([name, int(label)])
    os.replace(tmp, output_file)


def freeze_startup_objects() -> None:
    """Exempt every object that exists now (the imported modules, torch's included) from garbage collection.

    Call once the imports and weights are loaded. A process that has imported torch holds ~180,000 objects,
    and every full collection walks all of them: the collection when Python exits alone costs about 0.5 s of
    CPU per process (a quarter of ``python3 -c "import torch"``), and a competition launches hundreds of
    processes. ``gc.freeze`` moves them to the permanent generation, so later collections only look at objects
    made afterwards; reference counting still frees everything as usual. ``benchmarks/launch_cost.py`` measures
    the launches.
    """
    gc.freeze()


def device() -> Any:
    """``torch.device("cuda")`` when a GPU is visible, else the CPU (imports torch lazily)."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def to_tensor(images: np.ndarray, device: Any = None) -> Any:
    """uint8 (N, H, W, 3) → float32 tensor in [0, 1], (N, 3, H, W), on ``device``."""
    import torch

    return torch.from_numpy(contract.to_float(images)).permute(0, 3, 1, 2).contiguous().to(device or "cpu")


def from_tensor(images: Any) -> np.ndarray:
    """float tensor in [0, 1], (N, 3, H, W) → uint8 (N, H, W, 3), rounded to nearest."""
    return contract.to_uint8(images.detach().permute(0, 2, 3, 1).cpu().numpy())
