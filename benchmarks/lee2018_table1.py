"""Table 1 of Lee, Park & Lee 2018 ("Defensive denoising methods against adversarial attack") at CIFAR-10 scale.

Accuracy of the zoo's target model on the shared CIFAR-10 test images: clean (v0), with a universal adversarial
perturbation (v0 + δ_UAP), and after ROF / NL-means denoising with and without the defensive perturbation v_def,
for a UAP computed on the target model (white-box column) and UAPs computed on the two other zoo models
(black-box columns); plus the appendix sweeps (ROF weight 5/10/20, NL-means h 0.02/0.05/0.1) with clean accuracy,
the JPEG baseline, and the effect of v_def image by image. Writes a markdown report (default
``docs/lee2018_table1.md``)::

    python benchmarks/lee2018_table1.py --images 5000

is the command behind the committed report (its default inputs are the ones the report lists).

Inputs (each made by its own command; the error message names it when a file is missing):

* UAPs (SGD, Shafahi et al. 2020): ``attacks/uap_sgd/uap.npy`` for the target model (committed);
  ``<HARNESS_CACHE>/uap/<model>_sgd.npy`` for the others (``python -m research.uap.make_uap --method sgd --model M
  --xi 10 --n-train 5000 --epochs 10 --seed 0 --out ...``, about 2 min each), or ``--uap MODEL=PATH`` (e.g. the
  DeepFool UAP ``attacks/uap/uap.npy``);
* v_def: ``defenses/tv_denoise_vdef/v_def.npy`` (``python -m research.lee2018.make_vdef ...``) or ``--vdef``;
* the zoo's trained weights.

The report's hand-written findings are kept across reruns only while the inputs are the ones they were written
for (:func:`inputs_key`: the commands that made the UAPs and v_def, or the files' hashes, and the image subset);
a rerun with other inputs replaces them with a note saying so.

Perturbed images are rounded to 8 bits (``round(255 · clip(x + δ, 0, 1))``) as the competition's PNGs are;
v_def is added in floating point, then clipped to [0, 1], then the image is denoised.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

from research import cifar10
from submission_kit import sdk, zoo
from submission_kit.attack_methods import universal
from submission_kit.defense_blocks import denoise, vdef

ROOT = Path(__file__).resolve().parent.parent
TARGET_UAP = ROOT / "attacks" / "uap_sgd" / "uap.npy"
#: The command that makes a zoo model's UAP as the committed report's (Shafahi et al.'s SGD, 10 epochs).
MAKE_UAP = "python -m research.uap.make_uap --method sgd --model {model} --xi 10 --n-train 5000 --epochs 10 --seed 0"
DEFAULT_VDEF = ROOT / "defenses" / "tv_denoise_vdef" / "v_def.npy"
CLEAN = "clean"

#: The seed's Table 1 (ImageNet, 10K validation images; target Inception V1, black-box UAPs of VGG-16 / VGG-19).
PAPER_TABLE = {
    "v0": ("69.4", "", ""),
    "v0 + δ_UAP": ("12.5", "28.7", "31.7"),
    "D_ROF(v0 + δ_UAP)": ("56.3", "47.2", "49.1"),
    "D_ROF(v0 + δ_UAP + v_def)": ("57.1", "51.2", "51.3"),
    "D_nlm(v0 + δ_UAP)": ("57.7", "45.0", "46.9"),
    "D_nlm(v0 + δ_UAP + v_def)": ("58.0", "47.7", "49.4"),
}

Transform = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Defense:
    """One input transformation of the report.

    Attributes:
        label: Row label with ``x`` for the input, e.g. ``"D_ROF(x + v_def)"``.
        transform: float (N, 3, H, W) in [0, 1] → same; None for no defense.
    """

    label: str
    transform: Transform | None


def defenses(v_def: torch.Tensor, *, n_jobs: int) -> dict[str, Defense]:
    """Every defense the report evaluates, keyed by a short name (paper parameters unless the key says)."""
    rof = {w: partial(denoise.tv_denoise, weight=w, n_jobs=n_jobs) for w in (5.0, 10.0, 20.0)}
    nlm = {h: partial(denoise.nl_means, patch_size=2, patch_distance=3, h=h, fast_mode=True, n_jobs=n_jobs)
           for h in (0.02, 0.05, 0.1)}
    table = {
        "none": Defense("x", None),
        "vdef_only": Defense("x + v_def", partial(universal.apply_universal, v=v_def)),
        "rof": Defense("D_ROF(x)", rof[10.0]),
        "rof_vdef": Defense("D_ROF(x + v_def)", denoise.with_offset(rof[10.0], v_def)),
        "nlm": Defense("D_nlm(x)", nlm[0.05]),
        "nlm_vdef": Defense("D_nlm(x + v_def)", denoise.with_offset(nlm[0.05], v_def)),
        "jpeg75": Defense("JPEG_75(x)", partial(denoise.jpeg, quality=75, n_jobs=n_jobs)),
    }
    table |= {f"rof_w{w:g}": Defense(f"D_ROF(x), weight {w:g}", f) for w, f in rof.items() if w != 10.0}
    table |= {f"nlm_h{h:g}": Defense(f"D_nlm(x), h {h:g}", f) for h, f in nlm.items() if h != 0.05}
    return table


def perturb(images: np.ndarray, v: torch.Tensor) -> np.ndarray:
    """uint8 (N, H, W, 3) images plus a UAP v (3, h, w), rounded to uint8: ``round(255 · clip(x + v, 0, 1))``."""
    return sdk.from_tensor(universal.apply_universal(sdk.to_tensor(images), v))


@torch.no_grad()
def predictions(model: nn.Module, images: np.ndarray, transform: Transform | None, *, device: torch.device,
                batch_size: int) -> np.ndarray:
    """Labels (N,) the model gives ``transform(images)`` (uint8 (N, H, W, 3) → float in [0, 1] first)."""
    x = sdk.to_tensor(images)
    if transform is not None:
        x = transform(x)
    out = [model(x[s:s + batch_size].to(device).clamp(0, 1)).argmax(1).cpu() for s in range(0, len(x), batch_size)]
    return torch.cat(out).numpy()


def evaluate(model: nn.Module, images: np.ndarray, labels: np.ndarray, uaps: dict[str, torch.Tensor],
             table: dict[str, Defense], *, device: torch.device, batch_size: int = 500,
             log: Callable[[str], None] = print) -> tuple[dict[tuple[str, str], np.ndarray], dict[str, float]]:
    """Predictions of every defense on every column (``"clean"`` and one per UAP) and denoising seconds.

    Returns:
        ``(correct, seconds)``: correct[(defense key, column)] is a bool array (N,); seconds[defense key] is the
        time spent in its transformation and the model over all columns.
    """
    columns = {CLEAN: images} | {name: perturb(images, v) for name, v in uaps.items()}
    correct: dict[tuple[str, str], np.ndarray] = {}
    seconds: dict[str, float] = {}
    for key, defense in table.items():
        started = time.perf_counter()
        for column, inputs in columns.items():
            correct[(key, column)] = predictions(model, inputs, defense.transform, device=device,
                                                 batch_size=batch_size) == labels
        seconds[key] = time.perf_counter() - started
        log(f"{defense.label:28s} " + "  ".join(f"{c}={correct[(key, c)].mean() * 100:5.1f}" for c in columns)
            + f"  ({seconds[key]:.1f} s)")
    return correct, seconds


def _pct(values: np.ndarray) -> str:
    return f"{values.mean() * 100:.1f}"


NOTES_START, NOTES_END = "<!-- findings:start", "<!-- findings:end -->"
_NOTES_HEAD = re.compile(r"<!-- findings:start(?: inputs=([0-9a-f]+))? -->")


def input_identity(path: Path) -> str:
    """What an input array is, independent of where it lies: the command in its JSON record without ``--out``,
    else the SHA-256 of the file."""
    record_path = path.with_suffix(".json")
    if record_path.is_file():
        command = json.loads(record_path.read_text()).get("command")
        if command:
            return re.sub(r"(\s--out\s+\S+)+", "", command)
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def inputs_key(identities: dict[str, str], *, images: int, seed: int) -> str:
    """Short key (16 hex digits) of a report's inputs: ``identities`` maps each input (``"UAP of MODEL"``,
    ``"v_def"``) to :func:`input_identity`; ``images`` and ``seed`` give the test-image subset."""
    text = json.dumps({"inputs": identities, "images": images, "seed": seed}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def kept_notes(path: Path, key: str) -> str:
    """The hand-written findings block of an existing report if it was written for the inputs ``key``;
    otherwise a placeholder (saying when findings for other inputs were dropped)."""
    text = path.read_text() if path.is_file() else ""
    head = _NOTES_HEAD.search(text)
    start = f"<!-- findings:start inputs={key} -->"
    if head is not None and NOTES_END in text:
        if head.group(1) == key:
            return text[head.start():text.index(NOTES_END) + len(NOTES_END)]
        return (f"{start}\n(Findings: none yet for these inputs. The hand-written findings of the previous report "
                f"were written for other inputs (key {head.group(1) or 'not recorded'}) and were dropped; they are "
                f"in the file's git history.)\n{NOTES_END}")
    return f"{start}\n(Findings: written by hand after a run; kept when the tables are regenerated from the same " \
           f"inputs.)\n{NOTES_END}"


def render(correct: dict[tuple[str, str], np.ndarray], table: dict[str, Defense], *, target: str,
           columns: Sequence[str], meta: dict, notes: str = "") -> str:
    """The markdown report: Table 1 (ours beside the paper's), the sweeps, extras and the v_def effect."""
    n = len(correct[("none", CLEAN)])
    uap_heads = [f"UAP of {c} ({'white-box' if c == target else 'black-box'})" for c in columns]
    lines = [
        "# Lee, Park & Lee 2018, Table 1 at CIFAR-10 scale",
        "",
        notes,
        "",
        f"Generated by `{meta['command']}` ({meta['date']}, {meta['seconds']:.0f} s). Accuracy (%) of the zoo's "
        f"target model **{target}** on {n} shared CIFAR-10 test images ({meta['images_note']}); "
        f"one standard error of an accuracy p is √(p(1−p)/{n}) ≤ {50 / np.sqrt(n):.1f} points. Every column "
        "is classified by the target model; the black-box UAPs were computed on other zoo models and transferred.",
        "",
        "## Table 1",
        "",
        "| | clean | " + " | ".join(uap_heads) + " | paper: IncV1 (white-box) | paper: VGG16 | paper: VGG19 |",
        "|---|---|" + "---|" * len(columns) + "---|---|---|",
    ]
    rows = [
        ("v0", [_pct(correct[("none", CLEAN)])] + [""] * len(columns)),
        ("v0 + δ_UAP", ["="] + [_pct(correct[("none", c)]) for c in columns]),
    ]
    for name, key in (("D_ROF", "rof"), ("D_nlm", "nlm")):
        for suffix, k in (("", key), (" + v_def", f"{key}_vdef")):
            rows.append((f"{name}(v0 + δ_UAP{suffix})",
                         [_pct(correct[(k, CLEAN)])] + [_pct(correct[(k, c)]) for c in columns]))
    for label, cells in rows:
        lines.append(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(PAPER_TABLE[label]) + " |")
    lines += [
        "",
        "The *clean* column of a denoising row is that defense on the clean images (D(v0) or D(v0 + v_def)); the "
        "paper reports clean accuracy only for the undefended model. ROF: `denoise_tv_bregman(weight=10)` on "
        "[0, 1] images, per channel; NL-means: `denoise_nl_means(patch_size=2 (→3), patch_distance=3, h=0.05, "
        "fast_mode=True)`; both with `channel_axis=-1`.",
        "",
        "## Appendix sweeps and extra rows",
        "",
        "| defense | clean | " + " | ".join(uap_heads) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    sweep = ["rof_w5", "rof", "rof_w20", "nlm_h0.02", "nlm", "nlm_h0.1", "none", "vdef_only", "jpeg75"]
    for key in [k for k in sweep if k in table]:
        label = {"rof": "D_ROF(x), weight 10 (paper)", "nlm": "D_nlm(x), h 0.05 (paper)",
                 "none": "x (no defense)", "vdef_only": "x + v_def (no denoising; not in the paper)",
                 "jpeg75": "JPEG quality 75 (baseline; not in the paper)"}.get(key, table[key].label)
        lines.append(f"| {label} | " + " | ".join(_pct(correct[(key, c)]) for c in (CLEAN, *columns)) + " |")
    lines += [
        "",
        "## Effect of v_def, image by image",
        "",
        "Accuracy change from adding v_def before the denoiser, with the images it fixes (wrong → right) and breaks "
        "(right → wrong); the same images and perturbations, so this is a paired comparison.",
        "",
        "| denoiser | " + " | ".join(["clean", *columns]) + " |",
        "|---|" + "---|" * (len(columns) + 1),
    ]
    for name, key in (("ROF", "rof"), ("NL-means", "nlm")):
        cells = []
        for column in (CLEAN, *columns):
            plain, with_v = correct[(key, column)], correct[(f"{key}_vdef", column)]
            change = f"{(with_v.mean() - plain.mean()) * 100:+.2f}".replace("-", "−")
            cells.append(f"{change} (+{int((with_v & ~plain).sum())} / "
                         f"−{int((plain & ~with_v).sum())})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## Inputs", ""]
    lines += [f"* {item}" for item in meta["inputs"]]
    lines += ["", "## Time", "", "| defense | seconds (all columns, transformation + model) |", "|---|---|"]
    lines += [f"| {table[k].label} | {s:.1f} |" for k, s in meta["defense_seconds"].items()]
    lines.append("")
    return "\n".join(lines)


def _shown(path: Path) -> str:
    """``path`` relative to the project root when inside it, else with ``~`` for the home folder."""
    path = Path(path).resolve()
    if path.is_relative_to(ROOT):
        return str(path.relative_to(ROOT))
    home = Path.home().resolve()
    return f"~/{path.relative_to(home)}" if path.is_relative_to(home) else str(path)


def _describe(path: Path) -> str:
    """One line on a stored array and the command in its JSON record."""
    record_path = path.with_suffix(".json")
    if not record_path.is_file():
        return f"`{_shown(path)}` (no JSON record)"
    record = json.loads(record_path.read_text())
    keys = ("passes", "stopped_by", "seconds_uap", "fooling_rate_test", "linf_255", "l2_255", "draws_tried",
            "draws_kept", "l2_255_if_kept_at_random", "empty", "epsilon_255")
    facts = ", ".join(f"{k} {record[k]}" for k in keys if k in record)
    return f"`{_shown(path)}`: `{record.get('command', '?')}` ({facts})"


def _parse_uaps(items: Sequence[str], target: str, others: Sequence[str]) -> dict[str, Path]:
    paths = {target: TARGET_UAP} | {name: cifar10.cache_dir() / "uap" / f"{name}_sgd.npy" for name in others}
    for item in items:
        name, _, path = item.partition("=")
        if name not in paths or not path:
            raise SystemExit(f"--uap expects MODEL=PATH with MODEL in {sorted(paths)}, got {item!r}")
        paths[name] = Path(path)
    missing = [f"{MAKE_UAP.format(model=name)} --out {path}"
               for name, path in paths.items() if not path.is_file()]
    if missing:
        raise SystemExit("UAP file(s) missing; make them with:\n    " + "\n    ".join(missing))
    return paths


def main(argv: Sequence[str] | None = None) -> str:
    """Run the evaluation, write the markdown report and return it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--images", type=int, default=5000, help="shared test images (seeded subset if fewer)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the subset of test images")
    parser.add_argument("--uap", action="append", default=[], metavar="MODEL=PATH", help="UAP file of a zoo model")
    parser.add_argument("--vdef", type=Path, default=DEFAULT_VDEF, help="v_def array (make_vdef)")
    parser.add_argument("--n-jobs", type=int, default=-1, help="denoising workers (-1 = all cores)")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "lee2018_table1.md")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    started = time.monotonic()
    target = zoo.TARGET_MODEL
    others = [name for name in zoo.names() if name != target]
    uap_paths = _parse_uaps(args.uap, target, others)
    v_def = vdef.load(args.vdef)
    device = sdk.device()
    model = zoo.load(target, device=device)
    images, labels = cifar10.load_split("test")
    if args.images < len(images):
        subset = np.sort(np.random.default_rng(args.seed).choice(len(images), size=args.images, replace=False))
        images, labels = images[subset], labels[subset]
        note = f"seeded subset: numpy default_rng({args.seed}).choice, sorted"
    else:
        note = "all of them"
    uaps = {name: torch.from_numpy(np.load(path)).float() for name, path in uap_paths.items()}
    table = defenses(v_def, n_jobs=args.n_jobs)
    correct, seconds = evaluate(model, images, labels, uaps, table, device=device, batch_size=args.batch_size)
    command = "python benchmarks/lee2018_table1.py " + " ".join(sys.argv[1:] if argv is None else argv)
    meta = {
        "command": command.strip(),
        "date": time.strftime("%Y-%m-%d"),
        "seconds": time.monotonic() - started,
        "images_note": note,
        "defense_seconds": seconds,
        "inputs": [f"UAP of {name}: {_describe(path)}" for name, path in uap_paths.items()]
                  + [f"v_def: {_describe(args.vdef)}",
                     f"model {target}: `{_shown(zoo.weights_path(target))}`; torch {torch.__version__}, python "
                     f"{platform.python_version()}, device {device}, {torch.get_num_threads()} threads"],
    }
    key = inputs_key({f"UAP of {name}": input_identity(path) for name, path in uap_paths.items()}
                     | {"v_def": input_identity(args.vdef)}, images=len(images), seed=args.seed)
    report = render(correct, table, target=target, columns=list(uaps), meta=meta, notes=kept_notes(args.out, key))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(report)
    return report


if __name__ == "__main__":
    main()
