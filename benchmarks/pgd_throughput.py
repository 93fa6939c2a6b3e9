"""Throughput of our PGD (submission_kit.attack_methods.gradient.pgd) against torchattacks' PGD on the same model
and batch.

Both run Madry et al.'s L∞ PGD with a random start (ε = 8/255, α = 2/255, 10 steps by default) on the zoo's
target model (its trained weights when present, else the same architecture with random weights -- throughput
depends on the architecture, not on the weights; the output says which). Our attack finds its labels itself
(the model's clean prediction), so the torchattacks timing includes that prediction too; ``--labels-given``
times both with precomputed labels instead. The two are run alternately, ``--repeats`` times each, and the
median images/s are compared (target: ours / torchattacks ≥ 0.95)::

    python benchmarks/pgd_throughput.py --batch-size 64 --repeats 7
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from submission_kit import sdk, zoo
from submission_kit.attack_methods import gradient


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=zoo.TARGET_MODEL)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--eps", type=float, default=8.0, help="0-255 units")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--labels-given", action="store_true", help="pass precomputed labels to both")
    args = parser.parse_args()
    import torchattacks  # test-only dependency

    device = sdk.device()
    try:
        model = zoo.load(args.model, device=device)
        which = f"{args.model} (trained weights)"
    except FileNotFoundError:
        model = zoo.build(args.model).eval().requires_grad_(False).to(device)
        which = f"{args.model} (random weights: trained weights not found)"
    eps, alpha = args.eps / 255, 2 / 255
    x = torch.rand(args.batch_size, 3, 32, 32, generator=torch.Generator().manual_seed(0)).to(device)
    with torch.no_grad():
        given = model(x).argmax(1)
    attack = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=args.steps, random_start=True)

    def ours() -> torch.Tensor:
        return gradient.pgd(model, x, eps=eps, alpha=alpha, steps=args.steps,
                            generator=torch.Generator().manual_seed(1), y=given if args.labels_given else None)

    def theirs() -> torch.Tensor:
        torch.manual_seed(1)
        if args.labels_given:
            return attack(x, given)
        with torch.no_grad():
            labels = model(x).argmax(1)
        return attack(x, labels)

    def timed(fn) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return args.batch_size / (time.perf_counter() - start)

    identical = torch.equal(ours(), theirs())  # also warms up both
    rates: dict[str, list[float]] = {"ours": [], "torchattacks": []}
    for _ in range(args.repeats):
        rates["ours"].append(timed(ours))
        rates["torchattacks"].append(timed(theirs))
    ours_rate, their_rate = statistics.median(rates["ours"]), statistics.median(rates["torchattacks"])
    print(f"model: {which}; device: {device}; threads: {torch.get_num_threads()}; batch {args.batch_size}; "
          f"PGD eps={args.eps:g}/255 alpha=2/255 steps={args.steps}; labels "
          f"{'given to both' if args.labels_given else 'predicted inside the timing for both'}; "
          f"{args.repeats} alternating repeats, median")
    print(f"ours:         {ours_rate:8.1f} images/s  (runs: {', '.join(f'{r:.1f}' for r in rates['ours'])})")
    print(f"torchattacks: {their_rate:8.1f} images/s  (runs: {', '.join(f'{r:.1f}' for r in rates['torchattacks'])})")
    print(f"ratio ours/torchattacks: {ours_rate / their_rate:.3f} (target >= 0.95); outputs identical: {identical}")


if __name__ == "__main__":
    main()
