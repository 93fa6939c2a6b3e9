"""Training and inference speed of the HGD denoisers (submission_kit.hgd) on the CPU, to choose their width.

For each base width, times one training step on a batch of 32×32 images — the denoiser alone (PGD: pixel L1)
and the denoiser followed by the frozen target model (LGD: L1 on logits, gradients through the classifier) —
and the denoiser's inference (no grad, eval mode). Prints images per second::

    python benchmarks/hgd_speed.py --threads 1 --widths 8 16 32

The target model is the zoo's architecture with random weights (speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence

import torch

from submission_kit import zoo
from submission_kit.hgd import losses
from submission_kit.hgd.networks import build_denoiser


def _rate(step: Callable[[], None], images: int, *, seconds: float) -> tuple[float, float]:
    """Images per wall-clock second and per CPU second of ``step`` (one warm-up call, then ≥ ``seconds``).

    Images per CPU second (process time, all threads) does not drop when other processes share the cores,
    so it is the figure to compare across busy and idle machines; with 1 thread on an idle core both agree.
    """
    step()
    done = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    while time.perf_counter() - started < seconds or done == 0:
        step()
        done += images
    return done / (time.perf_counter() - started), done / (time.process_time() - cpu_started)


def measure(arch: str, width: int, *, batch: int, seconds: float, seed: int = 0) -> dict[str, object]:
    """(wall, CPU) img/s of a PGD training step, an LGD training step and inference for one denoiser size."""
    torch.manual_seed(seed)
    denoiser = build_denoiser(arch, width)
    target = zoo.build(zoo.TARGET_MODEL).eval().requires_grad_(False)
    optimizer = torch.optim.Adam(denoiser.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    clean = torch.rand(batch, 3, 32, 32, generator=generator)
    adversarial = (clean + 0.03 * torch.randn(clean.shape, generator=generator)).clamp(0, 1)
    with torch.no_grad():
        clean_logits = target(clean)

    def step(guided: bool) -> None:
        denoiser.train()
        denoised = denoiser(adversarial)
        if guided:
            loss = losses.logits_loss(target(denoised), clean_logits)
        else:
            loss = losses.pixel_loss(denoised, clean)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    @torch.no_grad()
    def infer() -> None:
        denoiser.eval()
        denoiser(adversarial)

    return {
        "params": sum(p.numel() for p in denoiser.parameters()),
        "pgd_step": _rate(lambda: step(False), batch, seconds=seconds),
        "lgd_step": _rate(lambda: step(True), batch, seconds=seconds),
        "inference": _rate(infer, batch, seconds=seconds),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--archs", nargs="+", default=["dunet"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5.0, help="minimum timing per measurement")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), batch {args.batch} of 32x32 images")
    print("img/s: per wall-clock second (per CPU second)")
    print("| arch | width | encoder widths | params | PGD step img/s | LGD step img/s | inference img/s |")
    print("|---|---|---|---|---|---|---|")
    for arch in args.archs:
        for width in args.widths:
            r = measure(arch, width, batch=args.batch, seconds=args.seconds)
            enc = "-".join(str(w) for w in build_denoiser(arch, width).widths)
            cells = " | ".join(f"{r[k][0]:,.0f} ({r[k][1]:,.0f})" for k in ("pgd_step", "lgd_step", "inference"))
            print(f"| {arch} | {width} | {enc} | {r['params']:,} | {cells} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
