"""Every sample input-transformation defense against oblivious, modern and adaptive attacks; writes a Markdown report.

    python -m research.adaptive.evaluate --images 1000 --epsilons 4 8 16 --sweep 32 64

For each ε of ``--epsilons``: clean accuracy; random sign noise (±ε); FGSM; the oblivious PGD (attacks/pgd: 20
steps of 2/255 on the target model); the modern non-adaptive attacks (APGD-CE + APGD-T, Square, CW-L∞ on the
target model; DI- and TI-MI-FGSM transferred from the non-target zoo models); and the adaptive attack aimed at
the defense (the ``build`` function of its attack folder, ``attacks/<name>/attack.py``, so the figures are the
folders' recipes). For each ε of ``--sweep``: oblivious PGD and the adaptive attack only. Adversarial images are
rounded to 8 bits and clipped to the ε-ball as the referee does (``submission.to_uint8_within``). Labels: attacks
use the model's (or defense's) own prediction on the clean image, the adaptive ones also the least-likely class
(:func:`submission_kit.attack_methods.adaptive.label_free_pgd`); accuracy is against the true label.
``--cache DIR`` keeps each finished (ε, attack) result, so an interrupted evaluation resumes where it stopped.

The checklist of Carlini et al. 2019 ("On evaluating adversarial robustness", Sec. 5) is answered per defense:
iterative ≤ single-step accuracy, white-box ≤ transfer ≤ noise, accuracy → 0 as ε grows.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from research import cifar10, cli
from research.adaptive.result_cache import ResultCache
from submission_kit import sdk, zoo
from submission_kit.attack_methods import autoattack, gradient, submission, transfer
from submission_kit.defense_blocks import sample_defenses

ROOT = Path(__file__).resolve().parents[2]
DEFENSES = ["base", "tv_denoise", "tv_denoise_vdef", "nl_means", "nl_means_vdef", "jpeg", "hgd_pgd", "hgd_fgd",
            "hgd_lgd", "hgd_cgd", "prn", "prn_always"]
AIMED = {"tv_denoise": "bpda_tv_denoise", "tv_denoise_vdef": "bpda_tv_denoise_vdef", "nl_means": "bpda_nl_means",
         "nl_means_vdef": "bpda_nl_means_vdef", "jpeg": "bpda_jpeg", "hgd_pgd": "e2e_hgd_pgd",
         "hgd_fgd": "e2e_hgd_fgd", "hgd_lgd": "e2e_hgd_lgd", "hgd_cgd": "e2e_hgd_cgd", "prn": "e2e_prn",
         "prn_always": "e2e_prn_always"}
WHITE_BOX = ["pgd", "apgd", "cw_linf", "square"]
TRANSFER = ["di_mi_fgsm", "ti_mi_fgsm"]

Transform = Callable[[torch.Tensor], torch.Tensor] | None

#: --adaptive-labels choice → what the report's legend adds about the adaptive column.
LABEL_NOTES = {
    "prediction+least-likely": "",  # the attack folders' recipe (adaptive.label_free_pgd)
    "prediction": (" — the adaptive attacks here run the untargeted PGD alone, away from the defense's clean "
                   "prediction (research only: the attack folders add a run toward the least-likely class)"),
    "true": (" — except the adaptive attacks here, which are given the TRUE labels (research only: attack folders "
             "never see labels)"),
}

#: --adaptive-labels choice → what the legend of the adaptive column says about its runs.
ADAPTIVE_RUNS = {
    "prediction+least-likely": ("; two label-free runs: away from the defense's clean prediction and toward the "
                                "target model's least-likely class, kept where the defense predicts it"),
    "prediction": "",
    "true": "",
}


def defense_transforms(device: torch.device) -> dict[str, Transform]:
    """The sample defense folders' pipelines (the same sources of options as ``defenses/<name>/defense.py``)."""
    from submission_kit.hgd.defense import denoise_transform
    from submission_kit.hgd.registry import load_denoiser
    from submission_kit.prn.defense import load_defense

    result: dict[str, Transform] = {"base": None}
    for name in ("tv_denoise", "nl_means", "jpeg"):
        result[name] = sample_defenses.transform(name)
    for name in ("tv_denoise_vdef", "nl_means_vdef"):
        result[name] = sample_defenses.transform(name, v_def=ROOT / "defenses" / name / "v_def.npy")
    for guide in ("pgd", "fgd", "lgd", "cgd"):
        result[f"hgd_{guide}"] = denoise_transform(load_denoiser(f"dunet_{guide}", device))
    result["prn"] = load_defense(zoo.TARGET_MODEL, always=False, device=device)
    result["prn_always"] = load_defense(zoo.TARGET_MODEL, always=True, device=device)
    return result


def _folder_module(name: str):
    spec = importlib.util.spec_from_file_location(f"attack_{name}", ROOT / "attacks" / name / "attack.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _noise(model, x, eps, generator):
    signs = torch.randint(0, 2, x.shape, generator=generator).to(x.device) * 2 - 1
    return torch.clamp(x + eps * signs, 0, 1)


def attack_functions(args) -> dict[str, Callable]:
    """name → (target model, ensemble of the others) → attack(x, eps)."""
    return {
        "noise": lambda t, e, g: lambda x, eps: _noise(t, x, eps, g),
        "fgsm": lambda t, e, g: lambda x, eps: gradient.fgsm(t, x, eps=eps),
        "pgd": lambda t, e, g: lambda x, eps: gradient.pgd(t, x, eps=eps, alpha=2 / 255, steps=20, generator=g),
        "apgd": lambda t, e, g: lambda x, eps: autoattack.apgd(t, x, eps=eps, n_iter=args.apgd_iter),
        "cw_linf": lambda t, e, g: lambda x, eps: autoattack.cw_linf(t, x, eps=eps, steps=30, generator=g),
        "square": lambda t, e, g: lambda x, eps: autoattack.square(t, x, eps=eps, n_queries=args.square_queries),
        "di_mi_fgsm": lambda t, e, g: lambda x, eps: transfer.di_mi_fgsm(e, x, eps=eps, steps=10, generator=g),
        "ti_mi_fgsm": lambda t, e, g: lambda x, eps: transfer.ti_mi_fgsm(e, x, eps=eps, steps=10, len_kernel=5),
    }


def _batches(n: int, size: int):
    return [slice(s, min(s + size, n)) for s in range(0, n, size)]


@torch.no_grad()
def _correct(model, transform: Transform, images: np.ndarray, labels: np.ndarray, device, batch: int) -> np.ndarray:
    out = []
    for part in _batches(len(images), batch):
        x = sdk.to_tensor(images[part], device)
        x = transform(x) if transform is not None else x
        out.append(model(x.clamp(0, 1)).argmax(1).cpu().numpy())
    return np.concatenate(out) == labels


def _attack(function, images: np.ndarray, epsilon: int, device, batch: int,
            labels: np.ndarray | None = None) -> np.ndarray:
    """Adversarial uint8 images of ``function(x, eps)`` (or ``function(x, eps, y)`` when ``labels`` are given)."""
    out = []
    for part in _batches(len(images), batch):
        x = sdk.to_tensor(images[part], device)
        if labels is None:
            adv = function(x, epsilon / 255)
        else:
            adv = function(x, epsilon / 255, torch.as_tensor(labels[part], device=device))
        out.append(submission.to_uint8_within(adv, images[part], epsilon))
    return np.concatenate(out)


def cache_recipe(args: argparse.Namespace, device: torch.device) -> dict:
    """What a ``--cache`` result depends on besides the code: every option that changes figures (not where the
    report or the cache goes, nor which ε are asked for: each result is per ε), the torch version and the device
    (a GPU's kernels round differently from the CPU's, so results of one are not reused for the other)."""
    options = {k: v for k, v in vars(args).items() if k not in ("out", "note", "cache", "epsilons", "sweep")}
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return {**options, "torch": torch.__version__, "device": where}


def evaluate(args) -> tuple[dict, dict]:
    """Return ({(ε, defense, attack): bool (N,)}, metadata)."""
    device = sdk.device()
    target = zoo.load(zoo.TARGET_MODEL, device=device)
    ensemble = submission.load_models(submission.non_target_models(), device)
    images, labels = cifar10.load_split("test")
    subset = np.sort(np.random.default_rng(args.seed).choice(len(images), size=args.images, replace=False))
    images, labels = images[subset], labels[subset]
    transforms = {d: t for d, t in defense_transforms(device).items() if d in args.defenses}
    functions = attack_functions(args)
    correct: dict[tuple, np.ndarray] = {}
    seconds: dict[str, float] = {}
    cache = ResultCache(args.cache, recipe=cache_recipe(args, device),
                        sources=[ROOT / "submission_kit", ROOT / "attacks", ROOT / "research"])

    reused: list[str] = []

    def reuse(epsilon: int, name: str) -> bool:
        hit = cache.get(epsilon, name)
        if hit is None:
            return False
        reused.append(f"{name}@{epsilon}")
        for d, result in hit[0].items():
            correct[(epsilon, d, "adaptive" if name in AIMED.values() else name)] = result
        seconds[f"{name}@{epsilon}"] = hit[1]
        print(f"eps {epsilon} {name}: reused from {args.cache}", file=sys.stderr, flush=True)
        return True

    for d, t in transforms.items():
        correct[(0, d, "clean")] = _correct(target, t, images, labels, device, args.batch_size)
    for epsilon in sorted(set(args.epsilons) | set(args.sweep)):
        names = list(functions) if epsilon in args.epsilons else ["pgd"]
        for name in names:
            if reuse(epsilon, name):
                continue
            started = time.monotonic()
            adv = _attack(functions[name](target, ensemble, torch.Generator().manual_seed(args.seed)), images,
                          epsilon, device, args.batch_size)
            for d, t in transforms.items():
                correct[(epsilon, d, name)] = _correct(target, t, adv, labels, device, args.batch_size)
            seconds[f"{name}@{epsilon}"] = round(time.monotonic() - started, 1)
            cache.put(epsilon, name, {d: correct[(epsilon, d, name)] for d in transforms}, seconds[f"{name}@{epsilon}"])
            print(f"eps {epsilon} {name}: {seconds[f'{name}@{epsilon}']} s", file=sys.stderr, flush=True)
        for d, t in transforms.items():
            if d not in AIMED or reuse(epsilon, AIMED[d]):
                continue
            started = time.monotonic()
            module = _folder_module(AIMED[d])
            defended = module.build(target, device)
            predictor = module.labels(target, device) if hasattr(module, "labels") else None
            from submission_kit.attack_methods import adaptive

            def run(x, eps, y=None, defended=defended, predictor=predictor, steps=module.STEPS):
                if args.adaptive_labels == "prediction+least-likely":
                    return adaptive.label_free_pgd(defended, x, eps=eps, steps=steps, defense_labels=predictor,
                                                   least_likely_of=target)
                if y is None and predictor is not None:
                    y = predictor(x)
                return adaptive.adaptive_pgd(defended, x, eps=eps, steps=steps, y=y)

            adv = _attack(run, images, epsilon, device, args.batch_size,
                          labels=labels if args.adaptive_labels == "true" else None)
            correct[(epsilon, d, "adaptive")] = _correct(target, t, adv, labels, device, args.batch_size)
            seconds[f"{AIMED[d]}@{epsilon}"] = round(time.monotonic() - started, 1)
            cache.put(epsilon, AIMED[d], {d: correct[(epsilon, d, "adaptive")]}, seconds[f"{AIMED[d]}@{epsilon}"])
            print(f"eps {epsilon} {AIMED[d]}: {seconds[f'{AIMED[d]}@{epsilon}']} s", file=sys.stderr, flush=True)
    return correct, {"seconds": seconds, "subset": subset, "reused": reused}


def _pct(values: np.ndarray | None) -> str:
    return "" if values is None else f"{100 * float(np.mean(values)):.1f}"


def _wall(wall: float, meta: dict) -> str:
    """The run's duration; with results reused from ``--cache``, also the attack time of the whole evaluation."""
    reused = meta.get("reused") or []
    if not reused:
        return f"{wall:.0f} s"
    total = sum(meta["seconds"].values())
    return (f"{wall:.0f} s in the last run, {len(reused)} results of earlier runs reused, {total:.0f} s of attacks "
            "in all")


def render(correct: dict, args, meta: dict, command: str, wall: float) -> str:
    n = args.images
    lines = [
        "# Adaptive evaluation of the sample defenses",
        "",
        f"Generated by `{command}` ({time.strftime('%Y-%m-%d')}, {_wall(wall, meta)}, {torch.get_num_threads()} "
        "threads, "
        f"torch {torch.__version__}). **{n} CIFAR-10 test images** (numpy `default_rng({args.seed}).choice` of the "
        f"10,000, sorted), the same images for every defense and attack. One standard error of an accuracy p is "
        f"√(p(1−p)/{n}) ≤ {50 / np.sqrt(n):.1f} points.",
        "",
        "Accuracy (%) against the true label. Attacks use the model's (adaptive: the defense's) own clean "
        "prediction" + LABEL_NOTES[args.adaptive_labels] +
        ". Columns: `oblivious PGD` = attacks/pgd on the bare target model; `strongest non-adaptive` = "
        "the lowest accuracy over noise, FGSM, PGD, APGD (CE then T, "
        f"{args.apgd_iter} iterations), Square ({args.square_queries} queries), CW-L∞ and the DI/TI transfer "
        "attacks; `adaptive` = the attack folder aimed at the defense (BPDA or end-to-end PGD, 20 steps of ε/4"
        f"{ADAPTIVE_RUNS[args.adaptive_labels]}); "
        "`worst case` = images right under every attack (all-or-nothing, adaptive included).",
        "",
    ]
    for epsilon in args.epsilons:
        lines += [f"## ε = {epsilon}", "",
                  "| defense | clean | noise | FGSM | oblivious PGD | APGD | Square | CW-L∞ | DI | TI | "
                  "strongest non-adaptive | adaptive | worst case |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for d in args.defenses:
            row = {a: correct.get((epsilon, d, a)) for a in
                   ["noise", "fgsm", "pgd", "apgd", "square", "cw_linf", "di_mi_fgsm", "ti_mi_fgsm", "adaptive"]}
            non_adaptive = [a for a in row if a != "adaptive" and row[a] is not None]
            strongest = min(non_adaptive, key=lambda a: float(np.mean(row[a])))
            every = np.logical_and.reduce([v for v in row.values() if v is not None])
            adaptive = (f"{_pct(row['adaptive'])} (`{AIMED[d]}`)" if row["adaptive"] is not None else "—")
            lines.append(f"| {d} | {_pct(correct[(0, d, 'clean')])} | " + " | ".join(
                _pct(row[a]) for a in ["noise", "fgsm", "pgd", "apgd", "square", "cw_linf", "di_mi_fgsm",
                                       "ti_mi_fgsm"]) + f" | {_pct(row[strongest])} ({strongest}) | {adaptive} | "
                f"{_pct(every)} |")
        lines.append("")
    sweep = sorted(set(args.epsilons) | set(args.sweep))
    lines += ["## ε sweep (oblivious PGD / adaptive)", "",
              "| defense | " + " | ".join(f"ε = {e}" for e in sweep) + " |",
              "|---|" + "---|" * len(sweep)]
    for d in args.defenses:
        cells = []
        for e in sweep:
            adaptive = correct.get((e, d, "adaptive"))
            cells.append(f"{_pct(correct[(e, d, 'pgd')])} / {_pct(adaptive) if adaptive is not None else '—'}")
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    lines += ["", "## Checklist (Carlini et al. 2019, Sec. 5), per defense", "",
              "Answered on the largest ε of the main table; \"yes\" = the expected order holds (accuracies within "
              "one standard error count as equal).", "",
              "| defense | iterative ≤ single-step | white-box ≤ transfer ≤ noise | → 0 as ε grows (adaptive, or PGD "
              "for base) |", "|---|---|---|---|"]
    e = max(args.epsilons)
    se = 100 * 0.5 / np.sqrt(args.images)
    for d in args.defenses:
        acc = {a: 100 * float(np.mean(correct[(e, d, a)])) for a in
               ["noise", "fgsm", "pgd", "apgd", "cw_linf", "di_mi_fgsm", "ti_mi_fgsm"] if (e, d, a) in correct}
        adaptive = correct.get((e, d, "adaptive"))
        white = min(acc["pgd"], acc["apgd"], acc["cw_linf"],
                    100 * float(np.mean(adaptive)) if adaptive is not None else 100.0)
        trans = min(acc["di_mi_fgsm"], acc["ti_mi_fgsm"])
        iterative = min(acc["pgd"], acc["apgd"]) <= acc["fgsm"] + se
        order = white <= trans + se and trans <= acc["noise"] + se
        top = max(sweep)
        last = correct.get((top, d, "adaptive"), correct[(top, d, "pgd")])
        to_zero = 100 * float(np.mean(last))
        lines.append(f"| {d} | {'yes' if iterative else 'NO'} | {'yes' if order else 'NO'} "
                     f"({white:.1f} ≤ {trans:.1f} ≤ {acc['noise']:.1f}) | "
                     f"{'yes' if to_zero <= 5 else 'NO'} ({to_zero:.1f} % at ε = {top}) |")
    lines += ["", "Seconds per attack (all images, all defenses' classifications included): " + ", ".join(
        f"{k} {v}" for k, v in meta["seconds"].items()) + "."]
    return "\n".join(lines) + "\n"


#: Heading of the hand-written reading at the end of the report; a rerun keeps everything from it on.
READING = "## Reading (hand-written; kept by reruns)"


def kept_reading(path: Path) -> str:
    """The hand-written section of an existing report (from :data:`READING` on), or ""."""
    if not path.is_file():
        return ""
    text = path.read_text()
    return text[text.index(READING):] if READING in text else ""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    shared = cli.parent(
        seed=cli.Option(default=0),
        out=cli.Option(default=ROOT / "docs" / "adaptive_evaluation.md", help="markdown report to write"),
        images=cli.Option(default=1000, help="CIFAR-10 test images (seeded subset)"),
    )
    parser = argparse.ArgumentParser(parents=[shared], description=__doc__.splitlines()[0])
    parser.add_argument("--epsilons", type=int, nargs="+", default=[4, 8, 16], help="main table ε (0-255)")
    parser.add_argument("--sweep", type=int, nargs="*", default=[32, 64], help="extra ε: oblivious PGD and adaptive")
    parser.add_argument("--defenses", nargs="+", default=DEFENSES, choices=DEFENSES)
    parser.add_argument("--apgd-iter", type=int, default=100)
    parser.add_argument("--square-queries", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--adaptive-labels", choices=list(LABEL_NOTES), default="prediction+least-likely",
                        help="what the adaptive attacks aim by: away from the defense's own clean prediction and "
                             "toward the least-likely class (adaptive.label_free_pgd, as the attack folders do; they "
                             "never see labels), the first run alone, or away from the true labels (the last two: "
                             "research only)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="folder of finished (ε, attack) results: a rerun with the same options and code reuses "
                             "them, so an interrupted evaluation resumes (default: none)")
    parser.add_argument("--note", default="", help="a paragraph added under the title (e.g. why this size)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> str:
    args = parse_args(argv)
    started = time.monotonic()
    correct, meta = evaluate(args)
    shown = list(sys.argv[1:] if argv is None else argv)
    for option in ("--note", "--cache"):  # prose for the report / where results are kept: not the figures' recipe
        if option in shown:
            at = shown.index(option)
            del shown[at:at + 2]
    command = "python -m research.adaptive.evaluate " + " ".join(shown)
    report = render(correct, args, meta, command.strip(), time.monotonic() - started)
    if args.note:
        head, rest = report.split("\n\n", 1)
        report = f"{head}\n\n{args.note}\n\n{rest}"
    reading = kept_reading(args.out)
    if reading:
        report = f"{report}\n{reading}"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(report)
    return report


if __name__ == "__main__":
    main()
