"""Harness memory per prediction in a real competition of cheap submissions.

    python benchmarks/harness_memory.py                                  # 40 attacks × 30 defenses × 1,000 images
    python benchmarks/harness_memory.py --attacks 8 --defenses 6 --images 200     # a quick try

A real :func:`harness.competition.run_competition` (``--sandbox none`` by default: plain processes, the cheapest
launch; the harness's own memory does not depend on the sandbox), then the HTML report in the same process as
``python run_competition.py`` builds it (``--no_report``: not), on N synthetic 32×32 images at ε = 16, batches of
100, two runs at a time. Half the attacks are ``cp`` in bash (their outputs are the clean images), the other half
add ±8 to every pixel in numpy (two distinct outputs), so each image has three versions, as in issue 30's
measurement (1,270 runs at 40 × 30 × 1,000); the defenses are bash loops answering a label per file from one hex
digit of its opaque name. Predictions = defenses × images × (1 + attacks): 1.23 M at the default size.

Harness memory per prediction = (peak RSS − RSS after imports) / predictions, of the harness process alone (its
children are other processes). "After imports" is after every library the run and the report load, lazily or not
(the harness, numpy, pyarrow, jinja2, matplotlib with its SVG backend: ≈ 45 MB of them load only for the report,
37 bytes a prediction at 1.23 M predictions, and do not grow with the predictions). The peak is the process's
own high-water mark (``VmHWM`` of /proc/self/status, reset after the imports and the world's set-up through
/proc/self/clear_refs where the kernel allows it, else the set-up's small peak stays in). Target: ≤ 100 bytes.
Also printed: wall time, the peak before the report, and the time from the last stored unit record to the end
(tabulation, scoring, files, report).
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
if str(ROOT) not in sys.path:  # run as a script: the harness beside it (PYTHONPATH may name another checkout)
    sys.path.append(str(ROOT))
from harness.competition import CompetitionConfig, run_competition  # noqa: E402
from harness.html_report import build_report  # noqa: E402
from harness.limits import LimitPolicy  # noqa: E402
from harness.results_folder import ResultsFolder  # noqa: E402
from harness.sandboxes.base import SandboxKind  # noqa: E402
from tiny_world import write_submission  # noqa: E402

EPSILON = 16
COPY_ATTACK = '#!/bin/bash\ncp "$1"/*.png "$2"/\n'
#: argv = INPUT_DIR OUTPUT_DIR MAX_EPSILON; adds DELTA (substituted below) to every pixel.
SHIFT_ATTACK = """
inp, out = Path(sys.argv[1]), Path(sys.argv[2])
for p in sorted(inp.glob("*.png")):
    x = np.asarray(Image.open(p)).astype(int)
    Image.fromarray(np.clip(x + DELTA, 0, 255).astype(np.uint8)).save(out / p.name)
"""
#: argv = INPUT_DIR OUTPUT_FILE; a label 0..4 per file from one hex digit of its (opaque, hashed) name, the digit
#: at position POSITION (substituted below), in bash alone (no process per file).
HEX_DEFENSE = """#!/bin/bash
for f in "$1"/*.png; do
  name=${f##*/}
  echo "$name,$(( 16#${name:POSITION:1} % 5 ))"
done > "$2"
"""


def _status(field: str) -> int:
    """A /proc/self/status field in bytes (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _import_libraries() -> None:
    """Import what the run and the report load lazily (the report's jinja2 and matplotlib with its SVG backend,
    the table's pyarrow), so that "RSS after imports" holds every library and the rest is the harness's data."""
    import jinja2  # noqa: F401
    import matplotlib.backends.backend_svg  # noqa: F401
    import matplotlib.figure  # noqa: F401
    import pyarrow.parquet  # noqa: F401


def _reset_peak() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux ≥ 4.0); whether it worked."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _script(parent: Path, name: str, kind: str, text: str) -> None:
    folder = parent / name
    folder.mkdir(parents=True)
    (folder / "metadata.json").write_text(f'{{"type": "{kind}", "entry_point": "run.sh", "container": "python:3.11"}}')
    (folder / "run.sh").write_text(text)
    (folder / "run.sh").chmod(0o755)


def world(root: Path, *, images: int, attacks: int, defenses: int, sandbox: SandboxKind, jobs: int
          ) -> CompetitionConfig:
    """The dataset and submissions in ``root``; the competition's config."""
    data = root / "data"
    data.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = ["ImageId,TrueLabel,TargetClass"]
    for index in range(images):
        value = int(rng.integers(20, 230))
        noise = rng.integers(-3, 4, size=(32, 32, 3))
        Image.fromarray(np.clip(value + noise, 0, 255).astype(np.uint8)).save(data / f"img{index:05d}.png")
        rows.append(f"img{index:05d},{value // 50},{(value // 50 + 1) % 5}")
    (data / "dev_dataset.csv").write_text("\n".join(rows) + "\n")
    attack_dir, defense_dir = root / "attacks", root / "defenses"
    for index in range(attacks):
        if index % 2 == 0:
            _script(attack_dir, f"copy_{index}", "attack", COPY_ATTACK)
        else:
            delta = 8 if index % 4 == 1 else -8
            write_submission(attack_dir, f"shift_{index}", "attack", SHIFT_ATTACK.replace("DELTA", str(delta)))
    for index in range(defenses):
        _script(defense_dir, f"hex_{index}", "defense", HEX_DEFENSE.replace("POSITION", str(index % 24)))
    return CompetitionConfig(input_dir=data, attacks_dirs=(attack_dir,), defenses_dirs=(defense_dir,),
                             output_dir=root / "results", epsilons=(EPSILON,), batch_size=100, jobs=jobs,
                             sandbox=sandbox, policy=LimitPolicy())


def last_record_time(results: Path) -> float:
    """Modification time of the newest stored unit record (JSON under the store)."""
    store = ResultsFolder(results).store_root
    return max((path.stat().st_mtime for path in store.rglob("*.json") if "runs" in str(path.parent)),
               default=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--attacks", type=int, default=40)
    parser.add_argument("--defenses", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (default 2)")
    parser.add_argument("--sandbox", default="none", choices=[kind.value for kind in SandboxKind],
                        help="how submissions are isolated (default none: the cheapest launch)")
    parser.add_argument("--no_report", action="store_true", help="do not build the HTML report after the run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = world(Path(tmp), images=args.images, attacks=args.attacks, defenses=args.defenses,
                       sandbox=SandboxKind(args.sandbox), jobs=args.jobs)
        _import_libraries()
        baseline = _status("VmRSS")
        reset = _reset_peak()
        start = time.time()
        result = run_competition(config, echo=lambda _: None)
        peak_run = _status("VmHWM")
        runs = sum(result.outcome.executed.values())
        table = result.table
        del result  # as ``python run_competition.py`` does: the report gets the run's table, not its records
        if not args.no_report:  # as ``python run_competition.py`` does after the run, in the same process
            build_report(config.output_dir, table=table)
        del table
        end = time.time()
        peak = _status("VmHWM")
        predictions = args.defenses * args.images * (1 + args.attacks)
        after_last = end - last_record_time(config.output_dir)
    mb = 1 << 20
    print(f"| attacks × defenses × images | predictions | runs | wall | after the last record | RSS after imports "
          f"| peak RSS before the report | peak RSS | harness bytes / prediction |\n"
          f"|---|---|---|---|---|---|---|---|---|\n"
          f"| {args.attacks} × {args.defenses} × {args.images:,} | {predictions:,} | {runs:,} | {end - start:.0f} s "
          f"| {after_last:.1f} s | {baseline / mb:.0f} MB | {peak_run / mb:.0f} MB | {peak / mb:.0f} MB | "
          f"{(peak - baseline) / predictions:.1f} |")
    print(f"target: ≤ 100 bytes per prediction — {'met' if (peak - baseline) / predictions <= 100 else 'NOT met'}"
          + ("" if reset else " (peak not reset after set-up: /proc/self/clear_refs refused)"))


if __name__ == "__main__":
    main()
