"""Competition wall time on a local Dask cluster of 1 and 2 workers, beside the machine's own ceiling.

    python benchmarks/dask_scaling.py                     # 1,000 synthetic 32×32 images, batches of 100
    python benchmarks/dask_scaling.py --images 200 --repeats 3

The competition is the synthetic one of ``benchmarks/harness_overhead.py`` (no-op and +ε attacks, a mean-colour
defense: 20 attack and ≥ 20 defense units of ~0.3 s each, the lightest possible, so scheduling costs show). Each
measurement is a fresh process and an empty results folder, cluster start included:

* ``local``: today's single-process path (``--jobs 1``);
* ``1 worker`` and ``2 workers``: ``--workers 1`` and ``--workers 2``;
* ``ceiling``: two independent ``--workers 1`` competitions started together (nothing shared); 2 × (1-worker
  wall) / (their wall) is the best speed-up this machine gives two workers at that moment.

Speed-up = 1-worker wall / 2-worker wall, also given as a fraction of the ceiling (target ≥ 90 %). Per-unit
scheduling overhead = (1-worker wall − local wall − cluster start) / units, where cluster start is the time to
start the local cluster and check its workers (target ≤ 5 % of wall). With ``--repeats`` > 1 the measurements
alternate and medians are reported. Run it on an otherwise idle machine: the figures are wall-clock times.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))


def one(root: Path, workers: int, output: Path) -> None:
    """Child mode: run the competition over ``root``'s synthetic data once and print JSON figures."""
    import contextlib

    import harness.dask_executor as dask_executor
    from harness.competition import CompetitionConfig, run_competition

    startup = [0.0]
    connect = dask_executor.connect

    @contextlib.contextmanager
    def timed_connect(**kwargs):  # type: ignore[no-untyped-def]
        began = time.perf_counter()
        with connect(**kwargs) as executor:
            startup[0] = time.perf_counter() - began
            yield executor

    dask_executor.connect = timed_connect  # type: ignore[assignment]

    config = CompetitionConfig(input_dir=root / "data", attacks_dirs=(root / "attacks",),
                               defenses_dirs=(root / "defenses",), output_dir=output, epsilons=(16,),
                               batch_size=100, workers=workers or None, jobs=1)
    start = time.perf_counter()
    result = run_competition(config, echo=lambda _: None)
    wall = time.perf_counter() - start
    units = sum(result.outcome.executed.values())
    print(json.dumps({"wall": wall, "units": units, "startup": startup[0]}))


def spawn(root: Path, workers: int, output: Path) -> subprocess.Popen[str]:
    shutil.rmtree(output, ignore_errors=True)
    return subprocess.Popen([sys.executable, __file__, "--_child", str(root), str(workers), str(output)],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen[str]) -> dict[str, float]:
    out, _ = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"a measurement failed (exit code {process.returncode})")
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--_child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        one(Path(args._child[0]), int(args._child[1]), Path(args._child[2]))
        return
    from harness_overhead import synthetic
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        synthetic(root, args.images)
        walls: dict[str, list[float]] = {"local": [], "1 worker": [], "2 workers": [], "ceiling pair": []}
        units = 0
        startups: list[float] = []
        for _ in range(args.repeats):
            local = finish(spawn(root, 0, root / "out-local"))
            walls["local"].append(local["wall"])
            single = finish(spawn(root, 1, root / "out-1"))
            walls["1 worker"].append(single["wall"])
            units = int(single["units"])
            startups.append(single["startup"])
            walls["2 workers"].append(finish(spawn(root, 2, root / "out-2"))["wall"])
            start = time.perf_counter()
            pair = [spawn(root, 1, root / f"out-pair{i}") for i in range(2)]
            for process in pair:
                finish(process)
            walls["ceiling pair"].append(time.perf_counter() - start)
        median = {name: statistics.median(values) for name, values in walls.items()}
    speedup = median["1 worker"] / median["2 workers"]
    ceiling = 2 * median["1 worker"] / median["ceiling pair"]
    overhead = median["1 worker"] - median["local"]
    startup = statistics.median(startups)
    per_unit = overhead - startup
    print(f"{args.images} images, {units} units, median of {args.repeats}; wall (cluster start included):")
    for name, value in median.items():
        print(f"  {name:<13} {value:7.2f} s")
    print(f"speed-up 2 vs 1 worker: {speedup:.2f}x; ceiling (2 independent 1-worker runs): {ceiling:.2f}x; "
          f"{100 * speedup / ceiling:.0f} % of the ceiling")
    print(f"Dask overhead vs the local path: {overhead:.2f} s = {100 * overhead / median['1 worker']:.1f} % of the "
          f"1-worker wall; of which cluster start and worker checks {startup:.2f} s, and per unit "
          f"{1000 * per_unit / units:.0f} ms ({100 * per_unit / median['1 worker']:.1f} % of the wall)")


if __name__ == "__main__":
    main()
