"""What launching a sample submission costs, beside the floor of a process that only imports torch.

    python benchmarks/launch_cost.py                      # every sample folder, then the embedded default
    python benchmarks/launch_cost.py --skip_default       # launches only (about 2 minutes on 2 cores)
    python benchmarks/launch_cost.py --only base fgsm --repeats 3

1. **Launches.** Every folder of ``attacks/`` and ``defenses/`` runs once (``--repeats``: the median of several)
   on the embedded default's 20 images (``sample_data/``; a defense classifies the clean images), through the
   same sandbox, environment and thread count a competition run gives it (``--jobs``, default one run per usable
   core, so each run gets its share of the threads). The time is the run's wall time, from process start to its
   exit after writing its output (:class:`harness.records.RunRecord` ``seconds``).
2. **Floor.** The same kind of run of a submission whose entry point is ``python3 -c "import torch"``, measured
   before every folder (so a busy machine inflates both alike); the table compares each folder with the median
   floor. Issue 14's target: every sample ≤ 1.3 × the floor.
3. **Embedded default.** ``run_competition`` with its defaults into a temporary folder (nothing cached), its
   wall time beside ``launches × floor / cores``: what the runs would cost if each were only its start-up.

The load average before and after is printed, because a shared machine inflates every figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness import progress  # noqa: E402
from harness.competition import CompetitionConfig, run_competition  # noqa: E402
from harness.dataset import load_dataset  # noqa: E402
from harness.instance import Instance  # noqa: E402
from harness.limits import LimitPolicy  # noqa: E402
from harness.parallelism import default_jobs, threads_per_run, usable_cores  # noqa: E402
from harness.records import RunRecord  # noqa: E402
from harness.sandboxes.base import RunRequest, SandboxKind  # noqa: E402
from harness.sandboxes.factory import probe, sandbox_for  # noqa: E402
from harness.sandboxes.staging import precompile_library  # noqa: E402
from harness.submission import Submission, SubmissionType, discover, parse_submission  # noqa: E402

FLOOR_ENTRY = '#!/bin/sh\n# The floor: a Python process that imports torch and exits.\nexec python3 -c "import torch"\n'


def floor_submission(folder: Path) -> Submission:
    """A defense folder whose entry point only imports torch."""
    folder.mkdir(parents=True)
    (folder / "metadata.json").write_text('{"type": "defense", "entry_point": "run.sh"}\n')
    (folder / "run.sh").write_text(FLOOR_ENTRY)
    (folder / "run.sh").chmod(0o755)
    return parse_submission(folder)


def launch(submission: Submission, work: Path, images: Path, *, threads: int | None, sandbox: SandboxKind,
           epsilon: int, index: int) -> RunRecord:
    """One run of ``submission`` on ``images`` in a fresh scratch folder, as the runner would start it."""
    scratch = work / f"run{index:04d}"
    outputs, workdir = scratch / "output", scratch / "work"
    for folder in (outputs, workdir):
        folder.mkdir(parents=True)
    if submission.type.is_attack:
        args = ["{input}", "{output}", str(epsilon)]
    else:
        args = ["{input}", "{output}/result.csv"]
    limits = LimitPolicy(minimum_seconds=600).limits(20)
    return sandbox_for(sandbox).run(RunRequest(
        submission=submission, args=args, inputs=images, outputs=outputs, workdir=workdir, limits=limits,
        log_path=scratch / "log.txt", log_name="log.txt", gpu=None, instance=Instance.create(),
        protections=probe(sandbox), threads=threads))


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", default=[], metavar="NAME", help="sample folders to launch")
    parser.add_argument("--repeats", type=int, default=1, help="launches per folder (median; default 1)")
    parser.add_argument("--jobs", type=int, default=default_jobs(),
                        help="the competition's --jobs whose thread share each run gets (default: %(default)s)")
    parser.add_argument("--sandbox", choices=[k.value for k in SandboxKind if k is not SandboxKind.DOCKER],
                        default="auto")
    parser.add_argument("--epsilon", type=int, default=16)
    parser.add_argument("--skip_default", action="store_true", help="skip the embedded-default run")
    args = parser.parse_args(argv)

    sandbox = SandboxKind(args.sandbox)
    threads = threads_per_run(args.jobs)
    cores = usable_cores()
    protections = probe(sandbox)
    precompile_library()
    print(f"sandbox {protections.kind.value}, {cores} usable cores, --jobs {args.jobs} → "
          f"{threads or 'default'} thread(s) per run; load average {load()}")
    found = discover([ROOT / "attacks", ROOT / "defenses"])
    samples = [s for s in found.submissions if not args.only or s.name in args.only]
    dataset = load_dataset(ROOT / "sample_data")

    rows: list[tuple[Submission, float, str]] = []
    floors: list[float] = []
    with tempfile.TemporaryDirectory(prefix="launch-cost-") as tmp:
        work = Path(tmp)
        images = work / "images"
        images.mkdir()
        for record in dataset.images:
            (images / record.file_name).write_bytes(dataset.path(record).read_bytes())
        (images / "target_class.csv").write_text(
            "".join(f"{r.file_name},{r.target_class}\n" for r in dataset.images))
        floor = floor_submission(work / "floor")
        index = 0
        for submission in samples:
            seconds = []
            problem = ""
            for _ in range(max(1, args.repeats)):
                index += 1
                floor_run = launch(floor, work, images, threads=threads, sandbox=sandbox, epsilon=args.epsilon,
                                   index=index)
                if floor_run.problem:
                    raise SystemExit(f"error: the floor process failed ({floor_run.problem}): is torch installed?")
                floors.append(floor_run.seconds)
                index += 1
                run = launch(submission, work, images, threads=threads, sandbox=sandbox, epsilon=args.epsilon,
                             index=index)
                seconds.append(run.seconds)
                problem = problem or run.problem
            rows.append((submission, statistics.median(seconds), problem))
            print(f"  {submission.name}: {rows[-1][1]:.2f} s (floor run {floors[-1]:.2f} s)", file=sys.stderr,
                  flush=True)

        floor_seconds = statistics.median(floors)
        print(f"\nfloor (python3 -c 'import torch', {len(floors)} runs): median {floor_seconds:.2f} s, "
              f"min {min(floors):.2f} s, max {max(floors):.2f} s")
        print("\n| submission | kind | seconds (20 images) | × floor | problem |")
        print("|---|---|---|---|---|")
        for submission, seconds, problem in sorted(rows, key=lambda r: (r[0].type is SubmissionType.DEFENSE,
                                                                       r[0].name)):
            print(f"| {submission.name} | {submission.type.value} | {seconds:.2f} | {seconds / floor_seconds:.2f} | "
                  f"{problem} |")
        ratios = [seconds / floor_seconds for _, seconds, _ in rows]
        if ratios:
            over = [s.name for s, seconds, _ in rows if seconds / floor_seconds > 1.3]
            print(f"\nmedian {statistics.median(ratios):.2f} × floor, largest {max(ratios):.2f} × "
                  f"({len(over)} above 1.3 ×{': ' + ', '.join(over) if over else ''}); load average {load()}")

        if not args.skip_default:
            print(f"\nembedded default (python run_competition.py defaults, nothing cached); load average {load()}")
            start = time.perf_counter()
            result = run_competition(
                CompetitionConfig(input_dir=ROOT / "sample_data", attacks_dirs=(ROOT / "attacks",),
                                  defenses_dirs=(ROOT / "defenses",), output_dir=work / "results",
                                  jobs=args.jobs, sandbox=sandbox),
                echo=lambda line: print(line, file=sys.stderr), progress=progress.reporter(sys.stderr))
            wall = time.perf_counter() - start
            launches = result.outcome.executed["attack"] + result.outcome.executed["defense"]
            bound = launches * floor_seconds / cores
            failed = sum(1 for r in result.runs if r.problem)
            print(f"wall {wall:.1f} s for {launches} launches ({result.outcome.executed['attack']} attack + "
                  f"{result.outcome.executed['defense']} defense runs, {failed} failed) with --jobs {args.jobs}; "
                  f"launches × floor / cores = {launches} × {floor_seconds:.2f} s / {cores} = {bound:.1f} s; "
                  f"ratio {wall / bound:.2f}; load average {load()}")
            leaderboard = (work / "results" / "leaderboard.csv").read_text()
            (Path(tempfile.gettempdir()) / "launch_cost_leaderboard.csv").write_text(leaderboard)
            print(f"leaderboard copied to {Path(tempfile.gettempdir()) / 'launch_cost_leaderboard.csv'}")


if __name__ == "__main__":
    main()
