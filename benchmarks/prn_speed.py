"""Speed of the PRN (submission_kit.prn.network) on 32×32 images for several widths: inference, forward+backward alone,
and one full training step (PRN forward+backward through the frozen target classifier), in images per second.

    python benchmarks/prn_speed.py [--widths 16 24 32 48 64] [--threads 1] [--batch 64] [--seconds 5]

Prints a markdown table. The training-step column uses the zoo's target model when its weights exist (random
weights otherwise: same cost). Used to pick the PRN width in docs/prn.md.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.nn import functional as F

from submission_kit import zoo
from submission_kit.prn.network import PRN


def rate(step, batch: int, seconds: float) -> float:
    """Images per second of ``step`` (called repeatedly for about ``seconds`` after one warm-up call)."""
    step()
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        step()
        count += 1
    return count * batch / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 24, 32, 48, 64])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    try:
        classifier = zoo.load(zoo.TARGET_MODEL)
    except zoo.WeightsNotFoundError:
        classifier = zoo.build(zoo.TARGET_MODEL).eval().requires_grad_(False)
    x = torch.rand(args.batch, 3, 32, 32)
    labels = torch.randint(0, 10, (args.batch,))
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}, 32x32, "
          f"{args.seconds:.0f} s per figure\n")
    print("| width | parameters | PRN inference img/s | PRN fwd+bwd img/s | training step img/s (PRN + classifier "
          "fwd+bwd, Adam) | training minutes per 49,000 images |")
    print("|---|---|---|---|---|---|")
    for width in args.widths:
        prn = PRN(width=width)
        optimizer = torch.optim.Adam(prn.parameters(), lr=1e-3)

        @torch.no_grad()
        def inference(prn: PRN = prn) -> None:  # bound now: the loop variable changes
            prn(x)

        def prn_only(prn: PRN = prn) -> None:
            prn(x).square().mean().backward()

        def train_step(prn: PRN = prn, optimizer: torch.optim.Optimizer = optimizer) -> None:
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(classifier(prn(x)), labels).backward()
            optimizer.step()

        forward = rate(inference, args.batch, args.seconds)
        alone = rate(prn_only, args.batch, args.seconds)
        full = rate(train_step, args.batch, args.seconds)
        params = sum(p.numel() for p in prn.parameters())
        print(f"| {width} | {params:,} | {forward:,.0f} | {alone:,.0f} | {full:,.0f} | {49000 / full / 60:.1f} |",
              flush=True)


if __name__ == "__main__":
    main()
