"""Per-launch cost of each sandbox kind, measured side by side in one run.

    python benchmarks/sandbox_cost.py                  # none, bwrap, docker, gvisor; 15 repeats each
    python benchmarks/sandbox_cost.py --repeats 31 --kinds none bwrap

One launch = :meth:`harness.sandboxes.base.Sandbox.run` of a trivial attack (a ``python3`` entry point that writes one
file to its output folder), as the runner calls it: fresh copy of the folder, sandbox set-up, the process, and
tear-down (for docker/gVisor: ``docker run`` of the local image, then ``docker rm``). The kinds take turns within
every repeat (none, bwrap, docker, gvisor, none, …) so that machine load hits them alike; the table gives the
median and the ratio to ``none``. Under none/bwrap the entry point runs the host's Python; under docker/gVisor the
image's (adv-harness/python-numpy-pil:bookworm, from scripts/build_sandbox_images.sh). A kind that cannot run here
is listed with the reason.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from harness.cleanup import remove_tree  # noqa: E402
from harness.instance import Instance  # noqa: E402
from harness.limits import Limits  # noqa: E402
from harness.sandboxes.base import RunRequest, SandboxKind  # noqa: E402
from harness.sandboxes.factory import probe, sandbox_for  # noqa: E402
from harness.submission import parse_submission  # noqa: E402

IMAGE = "adv-harness/python-numpy-pil:bookworm"
ENTRY = """#!/usr/bin/env python3
import sys
open(sys.argv[2] + "/done.txt", "w").write("ok")
"""
KINDS = {"none": SandboxKind.NONE, "bwrap": SandboxKind.BWRAP, "docker": SandboxKind.DOCKER,
         "gvisor": SandboxKind.GVISOR}


def launch(kind: SandboxKind, folder: Path, scratch: Path) -> float:
    """Wall seconds of one sandboxed run; raises when the run did not succeed."""
    for sub in ("input", "output"):
        (scratch / sub).mkdir(parents=True)
    submission = parse_submission(folder)
    start = time.perf_counter()
    record = sandbox_for(kind).run(RunRequest(
        submission=submission, args=["{input}", "{output}", "16"], inputs=scratch / "input",
        outputs=scratch / "output", workdir=scratch / "work",
        limits=Limits(wall_seconds=120, memory_mb=1024, max_processes=64, output_mb=10),
        log_path=scratch / "log.txt", log_name="log.txt", gpu=None, instance=Instance.create(),
        protections=probe(kind)))
    seconds = time.perf_counter() - start
    if record.problem or (scratch / "output" / "done.txt").read_text() != "ok":
        raise RuntimeError(f"{kind.value}: {record.problem}: {(scratch / 'log.txt').read_text()}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15, help="launches per kind (default: 15)")
    parser.add_argument("--kinds", nargs="+", choices=list(KINDS), default=list(KINDS))
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="sandbox_cost-"))
    try:
        measure(args, root)
    finally:
        remove_tree(root)


def measure(args: argparse.Namespace, root: Path) -> None:
    """Launch the trivial submission under each kind, interleaved, and print the table."""
    folder = root / "trivial"
    folder.mkdir()
    (folder / "metadata.json").write_text(json.dumps({"type": "attack", "entry_point": "run.py",
                                                      "container": IMAGE}))
    (folder / "run.py").write_text(ENTRY)
    (folder / "run.py").chmod(0o755)
    kinds: dict[str, SandboxKind] = {}
    for name in args.kinds:
        try:
            probe(KINDS[name])
        except RuntimeError as exc:
            print(f"{name}: unavailable ({exc})")
            continue
        kinds[name] = KINDS[name]
        launch(KINDS[name], folder, root / f"warm-{name}")  # first launch: caches, image layers
    times: dict[str, list[float]] = {name: [] for name in kinds}
    for repeat in range(args.repeats):
        for name, kind in kinds.items():
            times[name].append(launch(kind, folder, root / f"{name}-{repeat}"))
    base = statistics.median(times["none"]) if "none" in times else None
    print(f"per-launch cost, median of {args.repeats} interleaved launches (trivial python3 entry point)")
    print("| sandbox | median s | min s | max s | × none |")
    print("|---|---|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        ratio = f"{median / base:.1f}×" if base else "—"
        print(f"| {name} | {median:.3f} | {min(values):.3f} | {max(values):.3f} | {ratio} |")


if __name__ == "__main__":
    main()
