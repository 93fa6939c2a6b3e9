"""Do a defense's predictions depend on the CPU thread count or on how images are batched?

Runs the zoo's target model behind each named HGD denoiser on the 20 ``sample_data`` images and four adversarial
versions of each (FGSM, PGD-10 from the clean image and from a random start, all white-box on the target model at
ε = 16/255, and a random ±16 sign pattern; rounded to 8 bits as the competition's PNGs are), with 1 and 2 torch
threads and batches of 100, 64 and 7 images, and prints the largest logit difference from the 1-thread,
one-batch reference, the number of changed labels, and the smallest top-2 logit margins (how close a label is to
flipping)::

    python benchmarks/defense_determinism.py --denoisers dunet_fgd dunet_pgd

Differences of about 1e-6 against margins of 1e-2 or more mean the defense's answers do not depend on threads or
batching on this machine; another CPU (other vector instructions, other library kernels) can still round
differently, which changes a label only when its top-2 margin is that small.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch

from submission_kit import sdk, zoo
from submission_kit.attack_methods import gradient
from submission_kit.hgd.registry import load_denoiser

ROOT = Path(__file__).resolve().parent.parent


def versions(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Clean images and four 8-bit adversarial versions of each, (5N, 3, H, W) in [0, 1]."""
    out = [x]
    for steps, random_start in ((1, False), (10, False), (10, True)):
        out.append(gradient.pgd(model, x, eps=16 / 255, alpha=16 / 255 if steps == 1 else 2 / 255, steps=steps,
                                random_start=random_start, generator=torch.Generator().manual_seed(0)))
    out.append(x + 16 / 255 * torch.sign(torch.randn(x.shape, generator=torch.Generator().manual_seed(1))))
    return torch.round(torch.cat(out).clamp(0, 1) * 255) / 255


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """Print one line per (denoiser, threads, batch) and return {denoiser: {"max_logit_diff", "flips",
    "min_margin"}}."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--denoisers", nargs="+", default=["dunet_fgd", "dunet_pgd"])
    args = parser.parse_args(argv)
    model = zoo.load(zoo.TARGET_MODEL)
    x = torch.cat([sdk.to_tensor(b.images) for b in sdk.iter_batches(ROOT / "sample_data")])
    images = versions(model, x)
    threads_before = torch.get_num_threads()
    summary = {}
    for name in args.denoisers:
        denoiser = load_denoiser(name, "cpu")
        logits = {}
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for size in (len(images), 64, 7):
                with torch.no_grad():
                    logits[(threads, size)] = torch.cat([model(denoiser(images[i:i + size]).clamp(0, 1))
                                                         for i in range(0, len(images), size)])
        reference = logits[(1, len(images))]
        top2 = reference.topk(2, dim=1).values
        worst, flips = 0.0, 0
        for (threads, size), value in logits.items():
            diff = float((value - reference).abs().max())
            changed = int((value.argmax(1) != reference.argmax(1)).sum())
            worst, flips = max(worst, diff), max(flips, changed)
            print(f"{name}: {threads} thread(s), batches of {size}: max |logit difference| {diff:.2e}, "
                  f"{changed} label(s) changed")
        margins = (top2[:, 0] - top2[:, 1]).sort().values
        print(f"{name}: {len(images)} images; smallest top-2 logit margins "
              f"{', '.join(f'{m:.3g}' for m in margins[:3].tolist())}")
        summary[name] = {"max_logit_diff": worst, "flips": flips, "min_margin": float(margins[0])}
    torch.set_num_threads(threads_before)
    return summary


if __name__ == "__main__":
    main()
