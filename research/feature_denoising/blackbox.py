"""Black-box all-or-nothing table (seed Table 2), computed by running the harness itself.

Usage::

    python -m research.feature_denoising.blackbox [--images 1000] [--epsilons 16 32] [--attacks A B C D E]
                                                 [--defenses ...] [--leaderboard results/leaderboard.csv]

Xie et al. 2019, Sec. 6.2: defenses against the five strongest attackers, scored by the CAAD 2018 "all-or-nothing"
criterion -- an image counts as correct only if the defense classifies every adversarial version of it correctly
-- at ε = 32 (and here also at ε = 16). Steps:

1. export ``--images`` shared CIFAR-10 test images (the seeded subset of :func:`.evaluation.test_subset`) as PNGs
   with a ``labels.csv`` to a cache folder outside the repository (``$HARNESS_CACHE/feature_denoising/``);
2. pick the five strongest non-targeted attacks: the top ranks of the ``attack`` track of a ``leaderboard.csv``
   (default: the embedded default run's ``results/leaderboard.csv``), or ``--attacks``;
3. run the competition (:func:`harness.competition.run_competition`, sandbox and referee included) on that folder
   with ``--only`` those attacks and the defenses: base, the Lee et al. denoisers (tv_denoise, nl_means), every
   ``hgd_*`` folder, ``adv_baseline`` and every ``fd_*`` folder present in ``defenses/`` (or ``--defenses``);
   results go to the cache folder too, so a rerun only computes what changed;
4. take the defense track of the harness's own scores (:mod:`harness.scoring`) and write a table between
   ``<!-- fd-blackbox:start/end -->`` of ``docs/feature_denoising.md``.

The sample white-box attacks attack the zoo's target model ``vgg6_w48``: against ``base`` and the input-denoising
defenses that protect it they are white-box (on the classifier, not on the denoiser); against ``adv_baseline`` and
the ``fd_*`` networks they are transfer (black-box) attacks, as in the seed's Table 2.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from harness.competition import CompetitionConfig, run_competition
from harness.scoring import DEFENSE, Matrix, ScoreRow
from harness.submission import SubmissionType, discover
from research import cifar10, cli
from research.zoo.evaluate import write_table
from submission_kit import sdk

from .evaluation import test_subset

__all__ = ["default_defenses", "export_images", "main", "render", "strongest_attacks"]

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "feature_denoising.md"
MARKERS = ("<!-- fd-blackbox:start -->", "<!-- fd-blackbox:end -->")
#: Defenses of the table in their order of appearance; ``hgd_*`` and ``fd_*`` stand for every such folder.
DEFENSE_ORDER = ("base", "tv_denoise", "nl_means", "hgd_*", "adv_baseline", "fd_*")


def strongest_attacks(leaderboard: Path, *, epsilon: int | None = None, count: int = 5) -> list[str]:
    """The ``count`` best-ranked non-targeted attacks of a ``leaderboard.csv``.

    Args:
        leaderboard: A harness leaderboard (columns epsilon, track, rank, name, ...).
        epsilon: Which ε's ranking to use (default: the smallest ε in the file).
        count: How many.

    Raises:
        ValueError: Missing file, no ``attack`` rows at that ε, or fewer than ``count`` attacks.
    """
    if not leaderboard.is_file():
        raise ValueError(f"{leaderboard} not found: run the competition first (python run_competition.py) or "
                         "name the attacks with --attacks")
    with open(leaderboard, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("track") == "attack"]
    epsilons = sorted({int(row["epsilon"]) for row in rows})
    if not epsilons:
        raise ValueError(f"{leaderboard}: no rows of the 'attack' track")
    eps = epsilons[0] if epsilon is None else epsilon
    ranked = sorted((row for row in rows if int(row["epsilon"]) == eps), key=lambda row: int(row["rank"]))
    if len(ranked) < count:
        raise ValueError(f"{leaderboard}: only {len(ranked)} non-targeted attacks at ε = {eps}, {count} wanted")
    return [row["name"] for row in ranked[:count]]


def default_defenses(defenses_dir: Path) -> list[str]:
    """The table's defenses present in ``defenses_dir``, in :data:`DEFENSE_ORDER`."""
    present = sorted(s.name for s in discover([defenses_dir]).submissions if s.type is SubmissionType.DEFENSE)
    chosen: list[str] = []
    for pattern in DEFENSE_ORDER:
        if pattern.endswith("*"):
            chosen += [name for name in present if name.startswith(pattern[:-1]) and name not in chosen]
        elif pattern in present:
            chosen.append(pattern)
    return chosen


def export_images(folder: Path, *, images: int, seed: int) -> Path:
    """Write the shared test subset as ``test_<index>.png`` plus ``labels.csv`` (ImageId,TrueLabel) into
    ``folder``, unless a complete export is already there.

    Raises:
        ValueError: ``folder`` lies inside the repository (CIFAR-10 images must never be committed).
    """
    folder = folder.resolve()
    if folder == ROOT or ROOT in folder.parents:
        raise ValueError(f"{folder} is inside the repository; export the CIFAR-10 images elsewhere (--cache)")
    labels_file = folder / "labels.csv"
    x, y, index = test_subset(images, seed=seed)
    ids = [f"test_{i:04d}" for i in index]
    if labels_file.is_file() and len(labels_file.read_text().splitlines()) == len(ids) + 1 and \
            all((folder / f"{image_id}.png").is_file() for image_id in ids):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    sdk.save_images(folder, [f"{image_id}.png" for image_id in ids], x)
    rows = "".join(f"{image_id},{label}\n" for image_id, label in zip(ids, y.tolist()))
    labels_file.write_text("ImageId,TrueLabel\n" + rows)  # written last: its presence marks a complete export
    return folder


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def render(scores: Sequence[ScoreRow], matrices: Sequence[Matrix], *, defenses: Sequence[str],
           attacks: Sequence[str], epsilons: Sequence[int], meta: dict[str, str]) -> str:
    """Markdown: per defense, clean accuracy and all-or-nothing / mean accuracy at each ε, then the per-attack
    accuracies (all numbers from the harness's scoring)."""
    by_key = {(row.epsilon, row.name): row for row in scores if row.track == DEFENSE}
    head = ["defense", "clean"]
    for eps in epsilons:
        head += [f"all-or-nothing ε={eps}", f"mean acc. ε={eps}"]
    head.append("failures")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in defenses:
        rows = [by_key.get((eps, name)) for eps in epsilons]
        first = next((row for row in rows if row is not None), None)
        cells = [f"`{name}`", _pct(first.clean_accuracy if first else None)]
        for row in rows:
            cells += [_pct(row.all_or_nothing if row else None), _pct(row.normalized if row else None)]
        cells.append("; ".join(sorted({row.failures for row in rows if row and row.failures})) or "")
        lines.append("| " + " | ".join(cells) + " |")
    detail = ["", "Accuracy (%) under each attack:", ""]
    for matrix in matrices:
        columns = [c for c in matrix.columns if c in attacks]
        detail += [f"| ε = {matrix.epsilon} | " + " | ".join(f"`{c}`" for c in columns) + " |",
                   "|---|" + "---|" * len(columns)]
        by_defense = dict(matrix.rows)
        for name in defenses:
            rate = dict(zip(matrix.columns, by_defense.get(name, ())))
            detail.append(f"| `{name}` | " + " | ".join(_pct(rate.get(c)) for c in columns) + " |")
        detail.append("")
    note = (f"\nAll-or-nothing = fraction of images classified correctly under every one of the attacks "
            f"{', '.join(f'`{a}`' for a in attacks)} ({meta['attack_source']}); mean acc. = the harness's "
            f"normalized defense score. {meta['images']} shared CIFAR-10 test images, computed by "
            f"`python -m research.feature_denoising.blackbox {meta['arguments']}` through the harness "
            f"({meta['date']}, {meta['wall']}).\n")
    return "\n".join(lines) + "\n" + "\n".join(detail) + note


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    shared = cli.parent(
        seed=cli.Option(default=0, help="seeds the image subset"),
        out=cli.Option(default=DOC, help="markdown file with the fd-blackbox markers"),
        images=cli.Option(default=1000, help="shared test images"),
    )
    parser = argparse.ArgumentParser(parents=[shared], prog="python -m research.feature_denoising.blackbox",
                                     description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--epsilons", type=int, nargs="+", default=[16, 32], help="ε in 0-255 units")
    parser.add_argument("--attacks", nargs="+", help="non-targeted attacks (default: top 5 of --leaderboard)")
    parser.add_argument("--leaderboard", type=Path, default=ROOT / "results" / "leaderboard.csv")
    parser.add_argument("--count", type=int, default=5, help="how many attacks to take from the leaderboard")
    parser.add_argument("--defenses", nargs="+", help="defense folders (default: base, tv_denoise, nl_means, "
                        "hgd_*, adv_baseline, fd_*)")
    parser.add_argument("--attacks-dir", type=Path, default=ROOT / "attacks")
    parser.add_argument("--defenses-dir", type=Path, default=ROOT / "defenses")
    parser.add_argument("--cache", type=Path, default=cifar10.cache_dir() / "feature_denoising",
                        help="folder for the exported images and the results (outside the repository)")
    parser.add_argument("--jobs", type=int, default=1, help="harness runs in parallel")
    parser.add_argument("--batch-size", type=int, default=500,
                        help="images per attack and defense run (fewer runs = less process start-up per defense)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    try:
        if args.attacks:
            attacks, source = list(args.attacks), "named with --attacks"
        else:
            attacks = strongest_attacks(args.leaderboard, count=args.count)
            source = f"the top {args.count} non-targeted attacks of `{_shown(args.leaderboard)}`"
        defenses = list(args.defenses) if args.defenses else default_defenses(args.defenses_dir)
        images = export_images(args.cache / f"cifar10_test_{args.images}_seed{args.seed}", images=args.images,
                               seed=args.seed)
    except ValueError as exc:
        parser.error(str(exc))
    print(f"attacks: {', '.join(attacks)} ({source})\ndefenses: {', '.join(defenses)}\nimages: {images}")
    started = time.perf_counter()
    config = CompetitionConfig(input_dir=images, attacks_dirs=(args.attacks_dir,), defenses_dirs=(args.defenses_dir,),
                               output_dir=args.cache / f"results_{args.images}_seed{args.seed}",
                               epsilons=tuple(args.epsilons), batch_size=args.batch_size, jobs=args.jobs,
                               only=tuple(attacks + defenses))
    result = run_competition(config)
    wall = time.perf_counter() - started
    meta = {"images": str(len(result.dataset)), "attack_source": source, "date": time.strftime("%Y-%m-%d"),
            "wall": f"{wall / 60:.0f} min wall", "arguments": " ".join(sys.argv[1:] if argv is None else argv)}
    table = render(result.scores, result.matrices, defenses=defenses, attacks=attacks,
                   epsilons=sorted(set(args.epsilons)), meta=meta)
    write_table(args.out, table, start=MARKERS[0], end=MARKERS[1])
    print(table)
    print(f"harness results: {config.output_dir}")
    return 0


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    raise SystemExit(main())
