"""Harness overhead = wall time of a competition minus the time spent inside submission processes.

    python benchmarks/harness_overhead.py                 # both runs below
    python benchmarks/harness_overhead.py --images 1000 --skip_default

1. The embedded default: sample_data/ with the repository's attacks/ and defenses/ at ε = 16.
2. A synthetic run of N images (default 1,000, 32×32) with three light submissions (no-op and +ε attacks, a
   mean-colour defense) in batches of 100, so the harness's own work (copying, refereeing, hashing, storing,
   scoring) is a visible share of the wall time. Target: overhead ≤ 10 % of wall at 1,000 images.

Each run starts from an empty results folder; a second, fully cached run is timed too. Runs are serial
(``jobs=1``): with parallel runs the time inside submissions adds up to more than the wall time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from harness.competition import CompetitionConfig, run_competition  # noqa: E402
from harness.limits import LimitPolicy  # noqa: E402
from tiny_world import BUCKET_DEFENSE, NOOP, PLUS, write_submission  # noqa: E402


def measure(config: CompetitionConfig, label: str) -> None:
    start = time.perf_counter()
    result = run_competition(config, echo=lambda _: None)
    wall = time.perf_counter() - start
    inside = sum(r.seconds for r in result.runs if r.batch in result.outcome.fresh_keys)
    overhead = wall - inside
    print(f"{label}: {len(result.dataset)} images, {result.outcome.executed['attack']} attack + "
          f"{result.outcome.executed['defense']} defense runs; wall {wall:.1f} s, inside submissions "
          f"{inside:.1f} s, harness overhead {overhead:.1f} s = {100 * overhead / wall:.1f} % of wall")
    start = time.perf_counter()
    run_competition(config, echo=lambda _: None)
    print(f"{label}: rerun with everything cached: {time.perf_counter() - start:.2f} s")


def synthetic(root: Path, images: int) -> CompetitionConfig:
    data = root / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    rows = ["ImageId,TrueLabel,TargetClass"]
    for index in range(images):
        value = int(rng.integers(0, 250))
        noise = rng.integers(-3, 4, size=(32, 32, 3))
        Image.fromarray(np.clip(value + noise, 0, 255).astype(np.uint8)).save(data / f"img{index:05d}.png")
        rows.append(f"img{index:05d},{value // 50},{(value // 50 + 1) % 5}")
    (data / "dev_dataset.csv").write_text("\n".join(rows) + "\n")
    attacks, defenses = root / "attacks", root / "defenses"
    write_submission(attacks, "noop", "attack", NOOP)
    write_submission(attacks, "plus", "attack", PLUS)
    write_submission(defenses, "bucket", "defense", BUCKET_DEFENSE)
    return CompetitionConfig(input_dir=data, attacks_dirs=(attacks,), defenses_dirs=(defenses,),
                             output_dir=root / "results", epsilons=(16,), batch_size=100, jobs=1,
                             policy=LimitPolicy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--skip_default", action="store_true", help="skip the embedded-default run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_default:
            measure(CompetitionConfig(input_dir=ROOT / "sample_data", attacks_dirs=(ROOT / "attacks",),
                                      defenses_dirs=(ROOT / "defenses",), output_dir=Path(tmp) / "default",
                                      jobs=1),
                    "embedded default")
        (Path(tmp) / "synthetic").mkdir()
        measure(synthetic(Path(tmp) / "synthetic", args.images), "synthetic")


if __name__ == "__main__":
    main()
