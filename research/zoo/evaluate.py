"""Measure every registered zoo model and write the table of docs/zoo.md.

Usage::

    python -m research.zoo.evaluate [--out docs/zoo.md --data DIR --threads 2]

For each model: clean top-1 accuracy on the shared CIFAR-10 test images (5,000 JPEG copies, so numbers are close
to, not equal to, published CIFAR-10 figures), parameter count, weights-file size, CPU throughput (inference, and
forward + backward to the input as attacks need), and the command that trained the weights. With ``--out`` the
table replaces the text between ``<!-- zoo-table:start -->`` and ``<!-- zoo-table:end -->`` in that file (the file
is created, or the markers appended, when missing); without it the table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from research import cifar10, cli
from submission_kit.zoo.registry import TARGET_MODEL, WeightsNotFoundError, entry, load, names, weights_path

from .data import accuracy

__all__ = [
    "TABLE_END",
    "TABLE_START",
    "evaluate",
    "images_per_second",
    "main",
    "read_training_log",
    "render_table",
    "render_training_runs",
    "write_table",
]

_EPOCH_LINE = re.compile(r"epoch (\d+)/(\d+) done: .*test acc ([\d.]+) epoch time ([\d.]+) min")

TABLE_START = "<!-- zoo-table:start -->"
TABLE_END = "<!-- zoo-table:end -->"


def images_per_second(
    model: nn.Module, *, batch_size: int = 256, size: int = 32, gradient: bool = False, seconds: float = 2.0
) -> float:
    """Measure CPU throughput of ``model`` on random [0, 1] images of shape (batch_size, 3, size, size).

    Args:
        model: Model in eval mode, on the CPU.
        batch_size: Images per call.
        size: Image height and width.
        gradient: Also back-propagate the summed logits to the input (the cost of one attack step).
        seconds: Approximate time to measure for, after one warm-up call.

    Returns:
        Images per second (wall clock, current ``torch.get_num_threads()``).
    """
    x = torch.rand(batch_size, 3, size, size, generator=torch.Generator().manual_seed(0))
    x = x.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        if gradient:
            inputs = x.clone().requires_grad_(True)
            model(inputs).sum().backward()
        else:
            with torch.no_grad():
                model(x)

    step()
    calls, start = 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - start < seconds:
        step()
        calls += 1
    return calls * batch_size / (time.perf_counter() - start)


def evaluate(
    model_names: Sequence[str] | None = None, *, data_root: str | os.PathLike[str] | None = None
) -> list[dict[str, Any]]:
    """Measure the given models (default: all registered) on the CPU.

    Returns:
        One dict per model with keys ``name``, ``target``, ``description``, ``parameters``, ``weights_mb``,
        ``accuracy`` (fraction in [0, 1], or ``None`` when weights or data are missing), ``images_per_s``,
        ``grad_images_per_s``, ``epochs``, ``train_minutes``, ``epoch_minutes`` and ``command``.
    """
    test_x = test_y = None
    if cifar10.available(data_root, splits=("test",)):
        test_x, test_y = cifar10.load_split("test", data_root)
    rows = []
    for name in model_names or names():
        spec = entry(name)
        path = weights_path(name)
        record: dict[str, Any] = {}
        if path.with_suffix(".json").is_file():
            record = json.loads(path.with_suffix(".json").read_text())
        row: dict[str, Any] = {
            "name": name,
            "target": name == TARGET_MODEL,
            "description": spec.description,
            "parameters": sum(p.numel() for p in spec.factory().parameters()),
            "weights_mb": path.stat().st_size / 1e6 if path.is_file() else None,
            "accuracy": None,
            "images_per_s": None,
            "grad_images_per_s": None,
            "epochs": record.get("epochs"),
            "train_minutes": record.get("minutes"),
            "epoch_minutes": record.get("epoch_minutes"),
            "command": record.get("command", spec.command),
        }
        try:
            model = load(name)
        except WeightsNotFoundError:
            rows.append(row)
            continue
        model = model.to(memory_format=torch.channels_last)
        if test_x is not None:
            row["accuracy"] = accuracy(model, test_x, test_y)
        row["images_per_s"] = images_per_second(model)
        row["grad_images_per_s"] = images_per_second(model, gradient=True)
        rows.append(row)
    return rows


def read_training_log(path: str | os.PathLike[str]) -> list[tuple[int, float, float]]:
    """Read the per-epoch summary lines of a ``research.zoo.train`` log.

    Returns:
        ``(epoch, test_accuracy, epoch_minutes)`` per finished epoch; accuracy is a fraction in [0, 1].
    """
    epochs = []
    for line in Path(path).read_text().splitlines():
        match = _EPOCH_LINE.search(line)
        if match:
            epochs.append((int(match.group(1)), float(match.group(3)), float(match.group(4))))
    return epochs


def render_training_runs(model_names: Sequence[str] | None = None) -> str:
    """Summarize the committed training logs (``weights/<name>.log``) as Markdown bullet points."""
    lines = []
    for name in model_names or names():
        log = weights_path(name).with_suffix(".log")
        epochs = read_training_log(log) if log.is_file() else []
        if not epochs:
            lines.append(f"- `{name}`: no training log committed yet.")
            continue
        minutes = [m for _, _, m in epochs]
        curve = ", ".join(f"{100 * acc:.1f}" for _, acc, _ in epochs)
        lines.append(
            f"- `{name}` (`{log.name}`): {len(epochs)} epochs, {min(minutes):.2f}–{max(minutes):.2f} min per epoch "
            f"(mean {sum(minutes) / len(minutes):.2f}); test accuracy (%) after each epoch: {curve}."
        )
    return "\n".join(lines) + "\n"


def render_table(rows: Sequence[dict[str, Any]]) -> str:
    """Render :func:`evaluate` rows as a Markdown table (one line per model)."""

    def fmt(value: Any, pattern: str) -> str:
        return "—" if value is None else format(value, pattern)

    lines = [
        "| model | architecture | clean acc. (5,000 test JPEGs) | params | weights | CPU img/s (inference) "
        "| CPU img/s (input grad) | epochs | train min (min/epoch) | command |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        name = f"**{row['name']}** (target)" if row["target"] else row["name"]
        if row["weights_mb"] is None:
            accuracy_text, size = "weights missing", "—"
        else:
            accuracy_text = "—" if row["accuracy"] is None else f"{100 * row['accuracy']:.2f}%"
            size = f"{row['weights_mb']:.2f} MB"
        minutes = f"{fmt(row['train_minutes'], '.1f')} ({fmt(row['epoch_minutes'], '.2f')})"
        lines.append(
            f"| {name} | {row['description']} | {accuracy_text} | {row['parameters']:,} | {size} | "
            f"{fmt(row['images_per_s'], ',.0f')} | {fmt(row['grad_images_per_s'], ',.0f')} | "
            f"{fmt(row['epochs'], 'd')} | {minutes} | `{row['command']}` |"
        )
    threads = torch.get_num_threads()
    lines.append("")
    lines.append(
        f"Measured by `python -m research.zoo.evaluate` with torch {torch.__version__}, {threads} CPU thread(s), "
        f"batch 256 of 32×32 images."
    )
    return "\n".join(lines) + "\n"


def write_table(path: str | os.PathLike[str], table: str, *, start: str = TABLE_START, end: str = TABLE_END) -> None:
    """Put ``table`` between the markers ``start`` and ``end`` (default: the zoo table's) of the file at ``path``,
    creating the file or appending the markers if needed."""
    target = Path(path)
    block = f"{start}\n{table}{end}"
    text = target.read_text() if target.is_file() else ""
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1]
        text = before + block + after
    else:
        text = (text.rstrip("\n") + "\n\n" if text else "") + block + "\n"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    shared = cli.parent(
        out=cli.Option(help="Markdown file whose table to replace (default: print)"),
        threads=cli.Option(default=2, help="torch CPU threads"),
    )
    parser = argparse.ArgumentParser(prog="python -m research.zoo.evaluate", description=__doc__.split("\n")[0],
                                     parents=[shared])
    parser.add_argument("--data", help=f"folder with test.tar.gz (default: ${cifar10.ROOT_ENV} or ../shared/...)")
    parser.add_argument("--models", nargs="*", help="subset of model names (default: all)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not cifar10.available(args.data, splits=("test",)):
        print(f"note: test images not found under {cifar10.dataset_root(args.data)}; accuracy left blank")
    rows = evaluate(args.models, data_root=args.data)
    table = render_table(rows) + "\nTraining logs:\n\n" + render_training_runs([row["name"] for row in rows])
    if args.out is None:
        print(table, end="")
    else:
        write_table(args.out, table)
        print(f"wrote the model table to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
