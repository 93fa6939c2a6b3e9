"""Measure the training cost per epoch of every variant under clean, single-step and PGD adversarial training.

Usage::

    python -m research.feature_denoising.cost [--variants ...] [--batches 3] [--threads 1] \
        [--two-thread-reference 1.5] [--out docs/feature_denoising.md]

Each (variant, mode) runs one untimed warm-up step and ``--batches`` timed steps of batch 256 on random images
(the cost does not depend on the pixels): an attack (none, FGSM with random start, or K-step PGD) with the model in
eval mode, then a training forward/backward/SGD update. The table reports the process CPU time per step -- which,
with one thread, stays close to the compute time even when other jobs share the cores -- and extrapolates to one
epoch (196 steps of 256 images). A 2-thread estimate divides by the measured 1-to-2-thread speed-up when
``--two-thread-reference`` gives the 2-thread clean-epoch minutes of the baseline measured alone (the zoo's
ResNet-8 took 1.5 min, ``docs/zoo.md``); otherwise that column is left out.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence

import torch
from torch import nn

from research import cli
from research.zoo.evaluate import write_table
from submission_kit.feature_denoising import variants
from submission_kit.feature_denoising.networks import DenoisingResNet

from .adversarial import adversarial_step, training_examples

__all__ = ["main", "measure", "render"]

TABLE_START = "<!-- fd-cost:start -->"
TABLE_END = "<!-- fd-cost:end -->"
TRAIN_IMAGES = 50_000


def measure(model: nn.Module, mode: str, *, batches: int = 3, batch_size: int = 256, pgd_steps: int = 3,
            seed: int = 0) -> dict[str, float]:
    """Time training steps of ``model`` in ``mode`` ("clean", "fgsm_rs" or "pgd").

    Returns:
        ``cpu_s`` and ``wall_s``: median process-CPU and wall seconds per step.
    """
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(batch_size, 3, 32, 32, generator=generator).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch_size,), generator=generator)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    cpu, wall = [], []
    for index in range(batches + 1):
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        inputs = x if mode == "clean" else training_examples(model, x, y, attack=mode, eps=8 / 255,
                                                             pgd_steps=pgd_steps, generator=generator)
        adversarial_step(model, optimizer, inputs, y, loss_fn)
        if index:  # the first step warms up
            cpu.append(time.process_time() - cpu_start)
            wall.append(time.perf_counter() - wall_start)
    return {"cpu_s": sorted(cpu)[len(cpu) // 2], "wall_s": sorted(wall)[len(wall) // 2]}


def render(rows: Sequence[dict[str, object]], *, threads: int, batch_size: int, speedup: float | None,
           budget_minutes: float) -> str:
    """Markdown table of measured costs (rows from :func:`main`)."""
    steps = math.ceil(TRAIN_IMAGES / batch_size)
    head = ["network", "mode", f"CPU s/step ({threads} thread{'s' if threads > 1 else ''})",
            f"min/epoch ({threads} thr.)"]
    if speedup:
        head += ["est. min/epoch (2 threads)", f"est. epochs in {budget_minutes:g} min"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        epoch = float(row["cpu_s"]) * steps / 60
        cells = [str(row["network"]), str(row["mode"]), f"{float(row['cpu_s']):.2f}", f"{epoch:.1f}"]
        if speedup:
            cells += [f"{epoch / speedup:.1f}", f"{budget_minutes / (epoch / speedup):.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    note = (f"\nMeasured by `python -m research.feature_denoising.cost` with torch {torch.__version__}, "
            f"{threads} thread(s), batch {batch_size}, {steps} steps per epoch, on {time.strftime('%Y-%m-%d')}.")
    if speedup:
        note += f" 2-thread estimates divide by a 1-to-2-thread speed-up of {speedup:.2f}."
    return "\n".join(lines) + "\n" + note + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    shared = cli.parent(
        out=cli.Option(help="markdown file whose fd-cost table to replace (default: print)"),
        threads=cli.Option(default=1),
    )
    parser = argparse.ArgumentParser(parents=[shared], prog="python -m research.feature_denoising.cost",
                                     description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=variants.names(), help="variants to measure")
    parser.add_argument("--modes", nargs="+", default=["clean", "fgsm_rs", "pgd"], choices=["clean", "fgsm_rs", "pgd"])
    parser.add_argument("--pgd-steps", type=int, default=3)
    parser.add_argument("--batches", type=int, default=3, help="timed steps per (variant, mode)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--stage1", action="store_true",
                        help="also time the non-local Gaussian network with a block after stage 1 too")
    parser.add_argument("--two-thread-reference", type=float,
                        help="2-thread clean-epoch minutes of the baseline measured alone (docs/zoo.md: 1.5)")
    parser.add_argument("--budget-minutes", type=float, default=20.0)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    networks: list[tuple[str, nn.Module]] = []
    for name in args.variants:
        torch.manual_seed(0)
        networks.append((name, variants.build(name)))
    if args.stage1:
        networks.append(("nonlocal_gaussian, blocks after stages 1-3",
                         DenoisingResNet(op="nonlocal_gaussian", denoise_after=(1, 2, 3))))
    rows = []
    for label, model in networks:
        for mode in args.modes:
            result = measure(model, mode, batches=args.batches, batch_size=args.batch_size, pgd_steps=args.pgd_steps)
            shown = f"pgd K={args.pgd_steps}" if mode == "pgd" else mode
            rows.append({"network": label, "mode": shown, **result})
            print(f"{label:45s} {shown:10s} CPU {result['cpu_s']:.2f} s/step, wall {result['wall_s']:.2f} s/step",
                  flush=True)
    speedup = None
    if args.two_thread_reference:
        base = next((r for r in rows if r["network"] == "baseline" and r["mode"] == "clean"), None)
        if base is None:
            parser.error("--two-thread-reference needs the baseline's clean mode in the measurement")
        one_thread = float(base["cpu_s"]) * math.ceil(TRAIN_IMAGES / args.batch_size) / 60
        speedup = one_thread / args.two_thread_reference
    table = render(rows, threads=args.threads, batch_size=args.batch_size, speedup=speedup,
                   budget_minutes=args.budget_minutes)
    print(table)
    if args.out:
        write_table(args.out, table, start=TABLE_START, end=TABLE_END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
