"""Command line: ``run`` (default), ``validate PATH``, ``score`` and ``report``. Wiring and messages only."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from harness import __version__, progress
from harness.cgroups import CGROUP_LIMITS
from harness.compare import compare_folders
from harness.competition import CompetitionConfig, rescore, run_competition
from harness.errors import CompetitionError, HarnessError, ReportError
from harness.limits import LimitPolicy
from harness.names import one_line
from harness.parallelism import default_jobs
from harness.per_image import PerImageTable
from harness.report import leaderboard_tables, matrix_table
from harness.results_folder import PER_IMAGE_PARQUET, ResultsFolder
from harness.sandboxes.base import SandboxKind
from harness.submission import suggest
from harness.table_files import PER_IMAGE_CSV_LIMIT
from harness.validate import validate_submission
from submission_kit.contract import EpsilonError, parse_epsilon

COMMANDS = ("run", "validate", "score", "report", "compare")


def _epsilon(text: str) -> int:
    try:
        return parse_epsilon(text)
    except EpsilonError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _limit_names(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in CGROUP_LIMITS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"{','.join(unknown) or repr(text)}: not a limit that may go unenforced; "
                                         f"choose from {','.join(CGROUP_LIMITS)}")
    return names


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


#: The defaults of every option come from the dataclasses the options fill (one source of settings).
_RUN = CompetitionConfig(input_dir=Path(), attacks_dirs=(), defenses_dirs=(), output_dir=Path())
_LIMITS = LimitPolicy()


def _add_run_options(parser: argparse.ArgumentParser, root: Path) -> None:
    """The options ``run`` and ``validate`` share: dataset, seed, sandbox and per-run limits."""
    parser.add_argument("--input_dir", "--dataset_dir", type=Path, default=root / "sample_data",
                        help="folder of <ImageId>.png files plus dev_dataset.csv or labels.csv (default: %(default)s)")
    parser.add_argument("--dataset_metadata", type=Path, default=None,
                        help="the label file (dev_dataset.csv) when it is not inside --input_dir (NIPS 2017 toolkit)")
    parser.add_argument("--only_present_images", action="store_true",
                        help="run on the labelled images that have a PNG and report how many were left out "
                             "(the NIPS 2017 download script skips failed downloads)")
    parser.add_argument("--seed", type=int, default=_RUN.seed,
                        help="seed of the defense batch order (drawn targets and opaque names come from the results "
                             "folder's secret, not from this seed; default: %(default)s)")
    parser.add_argument("--sandbox", choices=[k.value for k in SandboxKind], default=_RUN.sandbox.value,
                        help="isolation of submission processes: auto (bubblewrap when it works here, else refuse "
                             "to run), bwrap, none (plain processes, no isolation: only when asked for), docker, "
                             "gvisor (docker with gVisor's runsc; see docs/sandboxes.md) (default: %(default)s)")
    parser.add_argument("--seconds_per_image", type=_positive_float, default=_LIMITS.seconds_per_image,
                        help="time limit per image of a run (default: %(default)s, as NIPS 2017's 500 s per 100)")
    parser.add_argument("--min_seconds", type=_positive_float, default=_LIMITS.minimum_seconds,
                        help="smallest time limit of a run (default: %(default)s)")
    parser.add_argument("--cpu_factor", type=_positive_float, default=_LIMITS.cpu_factor,
                        help="CPU seconds allowed per second of the time limit (default: %(default)s)")
    parser.add_argument("--memory_mb", type=int, default=_LIMITS.memory_mb or 0,
                        help="memory per run, 0 = unlimited (default: %(default)s)")
    parser.add_argument("--max_processes", type=int, default=_LIMITS.max_processes or 0,
                        help="processes and threads per run, 0 = unlimited (default: %(default)s; needs a writable "
                             "cgroup)")
    parser.add_argument("--output_mb", type=int, default=_LIMITS.output_mb or 0,
                        help="output folder size per run, 0 = unlimited (default: %(default)s)")
    parser.add_argument("--output_files", type=int, default=_LIMITS.output_files or 0,
                        help="files in the output folder per run, 0 = unlimited (default: %(default)s)")
    parser.add_argument("--log_mb", type=int, default=_LIMITS.log_mb or 0,
                        help="log (stdout + stderr) size per run; the run is stopped there, 0 = unlimited "
                             "(default: %(default)s)")


def _policy(args: argparse.Namespace) -> LimitPolicy:
    return LimitPolicy(seconds_per_image=args.seconds_per_image, minimum_seconds=args.min_seconds,
                       cpu_factor=args.cpu_factor, memory_mb=args.memory_mb or None,
                       max_processes=args.max_processes or None, output_mb=args.output_mb or None,
                       output_files=args.output_files or None, log_mb=args.log_mb or None)


def build_parser(root: Path) -> argparse.ArgumentParser:
    """The argument parser; default folders are relative to ``root``."""
    parser = argparse.ArgumentParser(
        prog="run_competition.py",
        description="Run every attack against every defense (NIPS 2017 / CAAD 2018 format) and score them.",
        epilog="With no command, run is assumed; see run --help for its options.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="{run,validate,score,report}")

    run = commands.add_parser("run", help="run the competition (the default command)")
    _add_run_options(run, root)
    run.add_argument("--attacks_dir", type=Path, action="append",
                     help=f"attack submissions; repeatable (default: {root / 'attacks'})")
    run.add_argument("--targeted_attacks_dir", type=Path, action="append", default=[],
                     help="more attack folders (NIPS 2017 toolkit compatibility); repeatable")
    run.add_argument("--defenses_dir", type=Path, action="append",
                     help=f"defense submissions; repeatable (default: {root / 'defenses'})")
    run.add_argument("--output_dir", type=Path, default=root / "results",
                     help="results folder (default: %(default)s)")
    run.add_argument("--max_epsilon", "--epsilon", type=_epsilon, nargs="+", default=list(_RUN.epsilons),
                     help=f"one or more integer ε in 0..255 (default: {' '.join(map(str, _RUN.epsilons))})")
    _add_per_image_csv(run)
    run.add_argument("--batch_size", type=_positive_int, default=_RUN.batch_size,
                     help="images per run (default: %(default)s)")
    run.add_argument("--jobs", type=_positive_int, default=_RUN.jobs,
                     help=f"runs in parallel, each with its share of the cores' threads (default: one per usable "
                          f"core, {default_jobs()} here)")
    cluster = run.add_mutually_exclusive_group()
    cluster.add_argument("--scheduler", metavar="ADDRESS", default=None,
                         help="run every unit on the Dask cluster of this scheduler (e.g. tls://host:8786, with "
                              "the --tls_ options); see docs/cluster.md")
    cluster.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                         help="run every unit on a local Dask cluster of N worker processes")
    tls = run.add_argument_group("TLS credentials of a --scheduler tls://... cluster (docs/cluster.md, 'Securing a "
                                 "cluster'); without them dask's own config (distributed.comm.tls.*) is used")
    tls.add_argument("--tls_ca_file", type=Path, default=None, metavar="PEM",
                     help="the CA certificate that signed the scheduler's and workers' certificates")
    tls.add_argument("--tls_cert", type=Path, default=None, metavar="PEM",
                     help="this driver's certificate, signed by that CA (the file may hold the key too)")
    tls.add_argument("--tls_key", type=Path, default=None, metavar="PEM", help="this driver's private key")
    run.add_argument("--num_classes", type=_positive_int, default=_RUN.num_classes,
                     help="classes to draw missing target classes from (default: largest label + 1)")
    run.add_argument("--only", nargs="+", default=list(_RUN.only), metavar="NAME",
                     help="run only these submissions")
    run.add_argument("--force", action="store_true", help="discard stored results and recompute everything")
    run.add_argument("--allow_unenforced", type=_limit_names, default=_RUN.allow_unenforced, metavar="LIMITS",
                     help=f"comma-separated limits ({','.join(CGROUP_LIMITS)}) that a non-root harness may run "
                          "without when it cannot enforce them here (no cgroup it may create); without this it "
                          "refuses to start. The manifest lists the limits that went unenforced")
    run.add_argument("--quiet", action="store_true", help="no progress bars or tables")
    toolkit = run.add_argument_group("NIPS 2017 development toolkit flags (accepted; what they map to)")
    toolkit.add_argument("--intermediate_results_dir", type=Path, default=None,
                         help="accepted and not needed: intermediate results are kept in OUTPUT_DIR/store")
    toolkit.add_argument("--save_all_classification", action="store_true",
                         help="accepted and always on: every classification is in OUTPUT_DIR/per_image.csv")
    toolkit.add_argument("--gpu", action="store_true",
                         help="accepted: GPUs are used whenever nvidia-smi lists them or CUDA_VISIBLE_DEVICES is set")

    validate = commands.add_parser("validate", help="check one submission folder on a few sample images")
    validate.add_argument("path", type=Path, help="the submission folder")
    _add_run_options(validate, root)
    validate.add_argument("--images", type=_positive_int, default=4, help="images to run on (default: 4)")
    validate.add_argument("--max_epsilon", type=_epsilon, default=_RUN.epsilons[0],
                          help="ε in 0..255 for attacks (default: %(default)s)")
    validate.add_argument("--image_size", type=_positive_int, default=None, metavar="PIXELS",
                          help="run on generated random PIXELS×PIXELS images instead of --input_dir (whose sample "
                               "images are 32×32); NIPS 2017 submissions take 299")

    score = commands.add_parser("score", help="re-score a results folder without running anything")
    score.add_argument("--output_dir", type=Path, default=root / "results")
    _add_per_image_csv(score)

    report = commands.add_parser("report", help="rebuild the HTML report of a results folder, running nothing")
    report.add_argument("--output_dir", type=Path, default=root / "results")

    compare = commands.add_parser("compare", help="whether two results folders hold the same results (per-image "
                                                  "rows, referee rows, runs, score files); exit status 1 if not")
    compare.add_argument("first", type=Path)
    compare.add_argument("second", type=Path)
    return parser


def _add_per_image_csv(parser: argparse.ArgumentParser) -> None:
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--per_image_csv", dest="per_image_csv", action="store_true", default=None,
                        help="also write per_image.csv beside per_image.parquet, whatever its size (default: when "
                             f"at most {PER_IMAGE_CSV_LIMIT:,} predictions)")
    choice.add_argument("--no_per_image_csv", dest="per_image_csv", action="store_false",
                        help="write per_image.parquet only")


def _compare(args: argparse.Namespace) -> int:
    """The ``compare`` command: print what was compared and each difference; 0 when none, 1 otherwise."""
    comparison = compare_folders(args.first, args.second)
    for line in comparison.differences:
        print(one_line(f"DIFFERENT: {line}"))
    what = ", ".join(comparison.compared)
    print(f"same results ({what})" if not comparison.differences else
          f"{len(comparison.differences)} difference(s) ({what} compared)")
    return 0 if not comparison.differences else 1


def _write_report(output_dir: Path, table: PerImageTable | None = None) -> str:
    """Build ``output_dir/report/`` (from ``table`` when the caller holds it); return the line to print.
    jinja2/matplotlib load only here."""
    from harness.html_report import build_report

    return f"report: {build_report(output_dir, table=table)}"


def _validate(args: argparse.Namespace) -> int:
    """The ``validate`` command: run one submission on a few images and print what it did. Returns the exit status."""
    report = validate_submission(args.path, input_dir=args.input_dir, images=args.images,
                                 epsilon=args.max_epsilon, seed=args.seed, policy=_policy(args),
                                 sandbox=SandboxKind(args.sandbox), image_size=args.image_size,
                                 metadata=args.dataset_metadata, only_present=args.only_present_images)
    for line in report.lines:
        print(one_line(line))
    for problem in report.problems:
        print(one_line(f"PROBLEM: {problem}"))
    print("OK: the submission ran cleanly" if report.ok else f"{len(report.problems)} problem(s) to fix")
    return 0 if report.ok else 1


def _check_run_options(args: argparse.Namespace) -> None:
    """Notes on the NIPS 2017 options ``run`` does not need; CompetitionError for ``--jobs`` with a cluster."""
    if args.intermediate_results_dir is not None:
        print(f"note: --intermediate_results_dir is not needed; intermediate results are kept in "
              f"{ResultsFolder(args.output_dir).store_root} (use --output_dir to move them)", file=sys.stderr)
    if args.save_all_classification:
        print(f"note: --save_all_classification is always on; every classification is in "
              f"{ResultsFolder(args.output_dir).file(PER_IMAGE_PARQUET)}", file=sys.stderr)
    if args.gpu:
        print("note: --gpu is not needed; each run gets a GPU whenever nvidia-smi lists them or "
              "CUDA_VISIBLE_DEVICES is set", file=sys.stderr)
    if args.jobs is not None and (args.scheduler is not None or args.workers is not None):
        raise CompetitionError("--jobs sets the runs at once on this machine; with --scheduler or --workers "
                               "each worker's threads and RUNS resource decide: drop --jobs")


def main(argv: Sequence[str] | None = None, *, root: Path | None = None) -> int:
    """Entry point. Returns the process exit status.

    Args:
        argv: Arguments (default ``sys.argv[1:]``); with no command, ``run`` is assumed.
        root: Folder that default paths are relative to (default: the current directory).
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    root = Path.cwd() if root is None else root
    if args_list and not args_list[0].startswith("-") and args_list[0] not in COMMANDS:
        print(f"error: unknown command {args_list[0]!r}{suggest(args_list[0], COMMANDS)}; "
              f"commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    if not args_list or (args_list[0].startswith("-") and args_list[0] not in ("-h", "--help", "--version")):
        args_list.insert(0, "run")
    args = build_parser(root).parse_args(args_list)
    try:
        if args.command == "validate":
            return _validate(args)
        if args.command == "compare":
            return _compare(args)
        if args.command == "score":
            scores = rescore(args.output_dir, per_image_csv=args.per_image_csv)
            print(leaderboard_tables(scores))
            return 0
        if args.command == "report":
            print(_write_report(args.output_dir))
            return 0
        _check_run_options(args)
        config = CompetitionConfig(
            input_dir=args.input_dir,
            attacks_dirs=tuple(args.attacks_dir or [root / "attacks"]) + tuple(args.targeted_attacks_dir),
            defenses_dirs=tuple(args.defenses_dir or [root / "defenses"]),
            output_dir=args.output_dir, epsilons=tuple(args.max_epsilon), batch_size=args.batch_size,
            jobs=args.jobs, seed=args.seed, force=args.force, policy=_policy(args),
            sandbox=SandboxKind(args.sandbox),
            only=tuple(args.only), num_classes=args.num_classes, dataset_metadata=args.dataset_metadata,
            only_present_images=args.only_present_images, scheduler=args.scheduler, workers=args.workers,
            allow_unenforced=args.allow_unenforced, tls_ca_file=args.tls_ca_file, tls_cert=args.tls_cert,
            tls_key=args.tls_key, per_image_csv=args.per_image_csv)
        result = run_competition(config, echo=lambda line: print(one_line(line), file=sys.stderr),
                                 progress=None if args.quiet else progress.reporter(sys.stderr))
        if not args.quiet:
            print(leaderboard_tables(result.scores))
            for matrix in result.matrices:
                print("\n" + matrix_table(matrix, f"defense accuracy per attack, epsilon = {matrix.epsilon}"))
            executed, reused = result.outcome.executed, result.outcome.reused
            print(f"\nran {executed['attack']} attack and {executed['defense']} defense batches "
                  f"(reused {reused['attack']} + {reused['defense']}); results in {args.output_dir}")
        table = result.table
        del result  # the report draws the table; the run's records need not stay in memory meanwhile
        try:
            print(_write_report(args.output_dir, table), file=sys.stderr)
        except (ReportError, OSError, ImportError) as exc:  # the results are written; only their view is missing
            print(one_line(f"warning: report not written ({exc}); rebuild it with: "
                           f"report --output_dir {args.output_dir}"), file=sys.stderr)
        return 0
    # what the referee raises on purpose, and a bad ε of the contract it shares with the library: one line each
    except (HarnessError, EpsilonError) as exc:
        print(one_line(f"error: {exc}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; finished units are kept in the results folder: rerun the same command to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
