"""Images per second of the denoising defenses (ROF / total variation and NL-means) with 1 and 2 workers.

Times :func:`submission_kit.defense_blocks.filters.map_images` -- the per-image work behind ``defenses/tv_denoise`` and
``defenses/nl_means`` -- on ``--images`` 32×32 images: the shared CIFAR-10 test images when available (first
images of a seeded subset; nothing is written), synthetic ones otherwise. Each (filter, workers) pair is timed
``--repeats`` times in alternation after one warm-up call (which starts the worker processes), and the median is
reported; the speed-up is median images/s with N workers over 1 worker (target ≥ 1.8× with 2 workers on 2 cores).
The results of every worker count are checked to be identical::

    python benchmarks/denoise_speed.py --images 1000 --workers 1 2 --repeats 5

The *ceiling* line measures what the machine itself allows: N independent processes, started together, each
filtering the whole batch serially (no sharing, no GIL, no dispatch); its throughput over one worker's is the
best speed-up any parallel implementation could reach here, and the workers' throughput is also given as a fraction
of the ceiling's. Run it on an otherwise idle machine: the figures are wall-clock throughputs.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time
from multiprocessing.synchronize import Barrier

import numpy as np

from research import cifar10
from submission_kit.defense_blocks import filters

#: The two defenses' per-image filters with the paper's parameters.
FILTERS: dict[str, tuple[filters.Filter, dict]] = {
    "tv_denoise": (filters.rof, {"weight": 10.0}),
    "nl_means": (filters.nl_means, {"patch_size": 2, "patch_distance": 3, "h": 0.05, "fast_mode": True}),
}


def load_images(count: int, *, seed: int) -> tuple[np.ndarray, str]:
    """float64 (count, 32, 32, 3) in [0, 1] and a description of where they came from."""
    if cifar10.available():
        images, _ = cifar10.load_split("test")
        pick = np.random.default_rng(seed).permutation(len(images))[:count]
        if len(pick) == count:
            return images[pick].astype(np.float64) / 255.0, f"{count} shared CIFAR-10 test images (seed {seed})"
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.0, 1.0, 32)
    smooth = rng.random((count, 1, 1, 3)) * np.add.outer(ramp, ramp)[None, :, :, None] / 2
    images = np.clip(smooth + 0.1 * rng.standard_normal((count, 32, 32, 3)), 0.0, 1.0)
    return images, f"{count} synthetic images (seed {seed}; CIFAR-10 not found)"


_copy_state: dict = {}


def _start_copy(barrier: Barrier, name: str, images: np.ndarray) -> None:
    _copy_state.update(barrier=barrier, name=name, images=images)
    function, options = FILTERS[name]
    filters.map_images(function, images[:8], n_jobs=1, **options)  # warm-up: imports, first-call costs


def _timed_copy(_: int) -> float:
    function, options = FILTERS[_copy_state["name"]]
    _copy_state["barrier"].wait()
    started = time.perf_counter()
    filters.map_images(function, _copy_state["images"], n_jobs=1, **options)
    return time.perf_counter() - started


class IndependentCopies:
    """``processes`` worker processes that each filter the whole batch serially, released together by a barrier.

    Each call of :meth:`run` returns the seconds until the last copy finished, so ``processes × len(images) /
    run()`` is the machine's aggregate throughput with no sharing between the copies.
    """

    def __init__(self, processes: int, name: str, images: np.ndarray) -> None:
        context = multiprocessing.get_context("spawn")
        self.processes = processes
        barrier = context.Barrier(processes)
        self._pool = context.Pool(processes, initializer=_start_copy, initargs=(barrier, name, images))

    def run(self) -> float:
        # One task per process: a process that took a task waits at the barrier until every process has one.
        return max(self._pool.map(_timed_copy, range(self.processes), chunksize=1))

    def close(self) -> None:
        self._pool.close()
        self._pool.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backend", default=filters.BACKEND, help="joblib backend: loky or threading")
    parser.add_argument("--only", nargs="+", choices=sorted(FILTERS), default=sorted(FILTERS, reverse=True))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-ceiling", action="store_true", help="skip the independent-processes ceiling")
    args = parser.parse_args()

    images, source = load_images(args.images, seed=args.seed)
    print(f"{source}; backend {args.backend}; {os.cpu_count()} CPUs; load average before start "
          f"{os.getloadavg()[0]:.2f}; median of {args.repeats} runs")
    for name in args.only:
        function, options = FILTERS[name]
        times: dict[int, list[float]] = {w: [] for w in args.workers}
        outputs: dict[int, np.ndarray] = {}
        for workers in args.workers:  # warm-up: start the workers, import scikit-image in them
            filters.map_images(function, images[:8 * workers], n_jobs=workers, backend=args.backend, **options)
        copies = None if args.no_ceiling else IndependentCopies(max(args.workers), name, images)
        ceiling: list[float] = []
        for _ in range(args.repeats):
            for workers in args.workers:
                started = time.perf_counter()
                outputs[workers] = filters.map_images(function, images, n_jobs=workers, backend=args.backend,
                                                      **options)
                times[workers].append(time.perf_counter() - started)
            if copies is not None:
                ceiling.append(copies.run())
        if copies is not None:
            copies.close()
        reference = outputs[args.workers[0]]
        identical = all(np.array_equal(reference, out) for out in outputs.values())
        base = len(images) / statistics.median(times[args.workers[0]])
        best = max(args.workers) * len(images) / statistics.median(ceiling) if ceiling else None
        for workers in args.workers:
            rate = len(images) / statistics.median(times[workers])
            of_ceiling = f" = {rate / best:4.0%} of the ceiling" if best is not None and workers > 1 else ""
            print(f"{name:10s} workers={workers}: {rate:8.1f} images/s  speed-up {rate / base:4.2f}x{of_ceiling} "
                  f"(runs: {', '.join(f'{t:.2f}' for t in times[workers])} s)")
        if best is not None:
            print(f"{name:10s} ceiling: {max(args.workers)} independent serial processes {best:8.1f} images/s  "
                  f"speed-up {best / base:4.2f}x (runs: {', '.join(f'{t:.2f}' for t in ceiling)} s)")
        print(f"{name:10s} identical results across worker counts: {identical}")


if __name__ == "__main__":
    main()
