"""Tables 2, 3 and 4 of Liao et al. 2018 at CIFAR-10 scale, beside the paper's numbers.

Usage::

    python -m research.hgd.tables [table2 table3 table4] [--out docs/hgd.md] [--data-dir DIR]

Each table is printed and written into ``--out`` between ``<!-- hgd-tableN:start -->`` and
``<!-- hgd-tableN:end -->`` (``--out -`` only prints). Columns: the clean test images, and the white-box and
black-box test sets (:mod:`research.hgd.data`) at ε = 4 and 16, each pooling its two attacks as the paper does.
A defense classifies ``clamp(D(x*), 0, 1)``; "denoising loss" is the mean |clamp(D(x*), 0, 1) − x| on the
[0, 1] scale (NA: the input's own distance to the clean image).

* Table 2: NA, DAE and DUNET trained with the pixel loss (``dae_pgd``, ``dunet_pgd``): loss and accuracy.
* Table 3: NA, PGD, FGD, LGD, CGD (``dunet_*``) protecting the target model; plus accuracy per attack.
* Table 4: protecting ``vgg6_w32`` (in the training ensemble, as the paper's ResNet was) with the LGD guided by
  the target model (``dunet_lgd``) and with an LGD guided by ``vgg6_w32`` itself (``dunet_lgd_vgg6_w32``).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from research import cli
from research.hgd import data
from submission_kit import contract, zoo
from submission_kit.hgd.defense import denoise_transform
from submission_kit.hgd.registry import load_denoiser, parse_name, weights_path

__all__ = ["COLUMNS", "PAPER", "Column", "evaluate", "main", "render", "test_columns", "write_block"]

ROOT = Path(__file__).resolve().parent.parent.parent
#: Column keys and headers, in the paper's order.
COLUMNS: dict[str, str] = {
    "clean": "clean",
    "white4": "white ε=4",
    "white16": "white ε=16",
    "black4": "black ε=4",
    "black16": "black ε=16",
}
#: The seed paper's values (ImageNet, Inception V3 target; Table 4: ResNet target), same column order.
PAPER: dict[str, dict[str, tuple[str, ...]]] = {
    "table2_loss": {
        "NA": ("0.0000", "0.0177", "0.0437", "0.0176", "0.0451"),
        "DAE": ("0.0360", "0.0359", "0.0360", "0.0360", "0.0369"),
        "DUNET": ("0.0150", "0.0140", "0.0164", "0.0140", "0.0181"),
    },
    "table2_acc": {
        "NA": ("76.7", "14.5", "14.4", "61.2", "41.0"),
        "DAE": ("58.3", "51.4", "36.7", "55.9", "48.8"),
        "DUNET": ("75.3", "20.0", "13.8", "67.5", "55.7"),
    },
    "table3": {
        "NA": ("76.7", "14.5", "14.4", "61.2", "41.0"),
        "PGD": ("75.3", "20.0", "13.8", "67.5", "55.7"),
        "ensV3": ("76.9", "69.8", "58.0", "72.4", "62.0"),
        "FGD": ("76.1", "73.7", "67.4", "74.3", "71.8"),
        "LGD": ("76.2", "75.2", "69.2", "75.1", "72.2"),
        "CGD": ("74.9", "75.8", "73.2", "74.5", "71.1"),
    },
    "table4": {
        "NA": ("78.5", "63.3", "38.4", "67.8", "48.6"),
        "IncV3 guided LGD": ("77.4", "75.8", "71.7", "76.1", "72.7"),
        "Resnet guided LGD": ("78.4", "76.1", "72.9", "76.5", "74.6"),
    },
}
#: Zoo model protected in Table 4.
TABLE4_MODEL = "vgg6_w32"
TABLES = ("table2", "table3", "table4")


@dataclass(frozen=True)
class Column:
    """The images of one column.

    Attributes:
        images: Inputs x*, uint8 (K, H, W, 3).
        clean: The clean image of each input, uint8 (K, H, W, 3).
        labels: True classes (K,).
        attacks: Attack label of each input (K,) (``"clean"`` for the clean column).
    """

    images: np.ndarray
    clean: np.ndarray
    labels: np.ndarray
    attacks: np.ndarray


def test_columns(white: data.HGDSet, black: data.HGDSet) -> dict[str, Column]:
    """The five columns: clean test images, white/black sets at ε = 4 and 16 (both attacks pooled)."""
    columns = {"clean": Column(white.clean, white.clean, white.labels, np.array(["clean"] * len(white.clean)))}
    for name, dataset in (("white", white), ("black", black)):
        for eps in (4, 16):
            part = dataset.select(dataset.eps == eps)
            columns[f"{name}{eps}"] = Column(part.images, part.clean[part.source], part.labels[part.source],
                                             np.array(part.attack_names)[part.attack])
    return columns


Transform = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def evaluate(model: nn.Module, transform: Transform | None, columns: dict[str, Column], *,
             device: str | torch.device = "cpu", batch_size: int = 500) -> dict[str, dict[str, np.ndarray]]:
    """Correctness and denoising loss of ``model ∘ clamp(transform)`` on every image of every column.

    Returns:
        ``{column: {"correct": bool (K,), "l1": float (K,)}}``; l1 is the mean |clamp(D(x*)) − x| per image.
    """
    results = {}
    for key, column in columns.items():
        correct, l1 = [], []
        for start in range(0, len(column.images), batch_size):
            x = _to_float(column.images[start:start + batch_size], device)
            clean = _to_float(column.clean[start:start + batch_size], device)
            out = (transform(x) if transform is not None else x).clamp(0, 1)
            correct.append((model(out).argmax(1).cpu().numpy() == column.labels[start:start + batch_size]))
            l1.append((out - clean).abs().mean(dim=(1, 2, 3)).cpu().numpy())
        results[key] = {"correct": np.concatenate(correct), "l1": np.concatenate(l1)}
    return results


def _to_float(images: np.ndarray, device: str | torch.device) -> torch.Tensor:
    return contract.pixels_to_unit(torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float()).contiguous()


def _acc(values: np.ndarray) -> str:
    return f"{values.mean() * 100:.1f}"


def _rows(results: dict[str, dict[str, dict[str, np.ndarray]]], labels: dict[str, str], metric: str,
          paper: dict[str, tuple[str, ...]], paper_labels: dict[str, str]) -> list[str]:
    lines = ["| defense | " + " | ".join(COLUMNS.values()) + " |", "|---|" + "---|" * len(COLUMNS)]
    for key, label in labels.items():
        if key in results:
            cells = [(_acc(results[key][c]["correct"]) if metric == "acc" else f"{results[key][c]['l1'].mean():.4f}")
                     for c in COLUMNS]
        else:
            cells = ["not trained"] * len(COLUMNS)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
        if key in paper_labels:
            lines.append(f"| *paper: {paper_labels[key]}* | " + " | ".join(f"*{v}*" for v in paper[paper_labels[key]])
                         + " |")
    return lines


def render(table: str, results: dict[str, dict[str, dict[str, np.ndarray]]], meta: dict,
           attacks: dict[str, np.ndarray]) -> str:
    """Markdown of one table (ours with the paper's row under each of our rows).

    Args:
        table: ``"table2"``, ``"table3"`` or ``"table4"``.
        results: :func:`evaluate` output per row key (``"none"`` or a denoiser name).
        meta: ``command``, ``date``, ``data_key``, ``clean_images``, ``white_images``, ``black_images``.
        attacks: Column key → attack label of each image (:attr:`Column.attacks`), for the per-attack table.
    """
    n = meta["clean_images"]
    head = [
        f"Generated by `{meta['command']}` ({meta['date']}); data `{meta['data_key']}`: {n} shared CIFAR-10 test "
        f"images, {meta['white_images']} white-box and {meta['black_images']} black-box adversarial images. "
        f"Accuracy in %; one standard error ≤ {50 / np.sqrt(n):.1f} points on the clean column and "
        f"≤ {50 / np.sqrt(2 * n):.1f} on the others. Italic rows: the paper (ImageNet, 10,000 images per column).",
        "",
    ]
    if table == "table2":
        labels = {"none": "NA", "dae_pgd": "DAE (`dae_pgd`)", "dunet_pgd": "DUNET (`dunet_pgd`)"}
        paper_labels = {"none": "NA", "dae_pgd": "DAE", "dunet_pgd": "DUNET"}
        body = (["Denoising loss (mean |x̂ − x|, [0, 1] scale):", ""]
                + _rows(results, labels, "l1", PAPER["table2_loss"], paper_labels)
                + ["", f"Accuracy of the target model `{zoo.TARGET_MODEL}`:", ""]
                + _rows(results, labels, "acc", PAPER["table2_acc"], paper_labels))
    elif table == "table3":
        labels = {"none": "NA", "dunet_pgd": "PGD (`dunet_pgd`)", "dunet_fgd": "FGD (`dunet_fgd`)",
                  "dunet_lgd": "LGD (`dunet_lgd`)", "dunet_cgd": "CGD (`dunet_cgd`)"}
        paper_labels = {"none": "NA", "dunet_pgd": "PGD", "dunet_fgd": "FGD", "dunet_lgd": "LGD", "dunet_cgd": "CGD"}
        body = ([f"Accuracy of the target model `{zoo.TARGET_MODEL}` behind each denoiser (the paper's ensV3 row, "
                 f"ensemble adversarial training, has no counterpart here: *{', '.join(PAPER['table3']['ensV3'])}*):",
                 ""]
                + _rows(results, labels, "acc", PAPER["table3"], paper_labels)
                + ["", "Accuracy per attack (the paper's supplementary material):", ""]
                + _per_attack(results, labels, attacks))
    else:
        labels = {"none": f"NA (`{TABLE4_MODEL}` alone)",
                  "dunet_lgd": f"`{zoo.TARGET_MODEL}`-guided LGD (`dunet_lgd`)",
                  f"dunet_lgd_{TABLE4_MODEL}": f"`{TABLE4_MODEL}`-guided LGD (`dunet_lgd_{TABLE4_MODEL}`)"}
        paper_labels = {"none": "NA", "dunet_lgd": "IncV3 guided LGD",
                        f"dunet_lgd_{TABLE4_MODEL}": "Resnet guided LGD"}
        body = ([f"Accuracy of `{TABLE4_MODEL}` (the protected model; one of the two models of the training "
                 "ensemble, as the paper's ResNet was) alone, behind the LGD guided by the target model, and behind "
                 f"an LGD guided by `{TABLE4_MODEL}` itself. Paper: ResNet behind the IncV3-guided and the "
                 "ResNet-guided LGD.", ""]
                + _rows(results, labels, "acc", PAPER["table4"], paper_labels))
    return "\n".join(head + body) + "\n"


def _per_attack(results: dict[str, dict[str, dict[str, np.ndarray]]], labels: dict[str, str],
                attacks_of: dict[str, np.ndarray]) -> list[str]:
    keys = [k for k in labels if k in results]
    attacks = [(c, a) for c in COLUMNS if c != "clean" for a in np.unique(attacks_of[c])]
    lines = ["| column | attack | " + " | ".join(labels[k].split(" (")[0] for k in keys) + " |",
             "|---|---|" + "---|" * len(keys)]
    for column, attack in attacks:
        mask = attacks_of[column] == attack
        lines.append(f"| {COLUMNS[column]} | {attack} | "
                     + " | ".join(_acc(results[k][column]["correct"][mask]) for k in keys) + " |")
    return lines


def write_block(path: Path, name: str, block: str) -> None:
    """Replace the text between ``<!-- name:start -->`` and ``<!-- name:end -->`` in ``path`` (append if absent)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.is_file() else ""
    content = f"{start}\n{block}{end}"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + content + rest.split(end, 1)[1]
    else:
        text = (text.rstrip("\n") + "\n\n" if text else "") + content + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


#: Rows each table needs: (denoiser name or "none", protected zoo model).
NEEDS: dict[str, list[tuple[str, str]]] = {
    "table2": [("none", zoo.TARGET_MODEL), ("dae_pgd", zoo.TARGET_MODEL), ("dunet_pgd", zoo.TARGET_MODEL)],
    "table3": [("none", zoo.TARGET_MODEL)] + [(f"dunet_{g}", zoo.TARGET_MODEL) for g in ("pgd", "fgd", "lgd", "cgd")],
    "table4": [("none", TABLE4_MODEL), ("dunet_lgd", TABLE4_MODEL), (f"dunet_lgd_{TABLE4_MODEL}", TABLE4_MODEL)],
}


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    shared = cli.parent(
        out=cli.Option(default=ROOT / "docs" / "hgd.md", help="markdown file to update; '-' prints only"),
        threads=cli.Option(default=2, help="torch CPU threads"),
    )
    parser = argparse.ArgumentParser(prog="python -m research.hgd.tables", description=__doc__.split("\n")[0],
                                     parents=[shared])
    parser.add_argument("tables", nargs="*", metavar="TABLE", help=f"which tables ({', '.join(TABLES)}; default all)")
    parser.add_argument("--data-dir", type=Path, help="folder of the sets (default: the default recipe's)")
    parser.add_argument("--data", help="folder with the CIFAR-10 archives, to find the default data folder")
    parser.add_argument("--weights-dir", type=Path, help="denoiser weights folder (default submission_kit/hgd/weights)")
    parser.add_argument("--skip-missing", action="store_true", help="write 'not trained' rows for missing weights")
    parser.add_argument("--device", default="auto", help="'auto' (CUDA if present, else CPU), 'cpu', 'cuda:0', ...")
    args = parser.parse_args(argv)
    tables = args.tables or list(TABLES)
    unknown = [t for t in tables if t not in TABLES]
    if unknown:
        parser.error(f"unknown table(s) {', '.join(unknown)}; choose from {', '.join(TABLES)}")
    torch.set_num_threads(args.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    command = " ".join(["python -m research.hgd.tables", *map(shlex.quote, sys.argv[1:] if argv is None else argv)])

    needed = {row for table in tables for row in NEEDS[table]}
    missing = sorted({name for name, _ in needed
                      if name != "none" and not weights_path(name, args.weights_dir).is_file()})
    if missing and not args.skip_missing:
        commands = "\n".join(f"    {parse_name(name).command}" for name in missing)
        print(f"missing denoiser weights: {', '.join(missing)}. Train them with:\n{commands}\n"
              "(or pass --skip-missing)", file=sys.stderr)
        return 2
    folder = args.data_dir if args.data_dir is not None else data.data_dir(data_root=args.data)
    try:
        white, black = data.load_split(folder, "white"), data.load_split(folder, "black")
    except data.DataNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    columns = test_columns(white, black)
    meta = {"command": command, "date": time.strftime("%Y-%m-%d"), "data_key": folder.name,
            "clean_images": len(white.clean), "white_images": len(white), "black_images": len(black)}
    cache: dict[tuple[str, str], dict[str, dict[str, np.ndarray]]] = {}
    for name, protected in sorted(needed):
        if name in missing:
            continue
        started = time.perf_counter()
        model = zoo.load(protected, device=device)
        transform = (None if name == "none"
                     else denoise_transform(load_denoiser(name, device, weights_dir=args.weights_dir)))
        cache[(name, protected)] = evaluate(model, transform, columns, device=device)
        accs = " ".join(f"{c}={_acc(r['correct'])}" for c, r in cache[(name, protected)].items())
        print(f"[{name} -> {protected}] {accs} ({time.perf_counter() - started:.1f} s)", flush=True)
    for table in tables:
        results = {name: cache[(name, protected)] for name, protected in NEEDS[table] if (name, protected) in cache}
        block = render(table, results, meta, {key: column.attacks for key, column in columns.items()})
        print(f"\n## {table}\n\n{block}")
        if str(args.out) != "-":
            write_block(args.out, f"hgd-{table}", block)
    if str(args.out) != "-":
        print(f"wrote {', '.join(tables)} to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
