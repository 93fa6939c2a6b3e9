"""Adversarially train one feature-denoising variant on CIFAR-10.

Usage::

    python -m research.feature_denoising.train --variant nonlocal_gaussian \
        [--attack fgsm_rs|pgd --pgd-steps K --epochs E --max-minutes M --seed S --steps N --stop-after D]

Recipe (Xie et al., "Feature Denoising for Improving Adversarial Robustness", CVPR 2019, Sec. 5, scaled to
CIFAR-10 on a CPU): every update uses adversarial images only, ε = 8/255, made on the current weights with
BatchNorm frozen (``research.feature_denoising.adversarial``); cross-entropy with label smoothing 0.1 (Szegedy et
al. 2016); SGD with Nesterov momentum and weight decay 5e-4 under the one-cycle policy (Smith 2018), as the zoo
trains its models; the zoo's augmentation (4-pixel-padded random crops and flips, ``research.zoo.data``).

Budget: ``--max-minutes`` is a wall-clock budget for the training loop. Before training, a few steps are timed on
a throw-away copy of the model, and the one-cycle schedule is shortened to the number of steps that fits (never
more than ``--epochs`` epochs), so the learning rate still warms up and anneals completely; if the machine slows
down during the run and the budget runs out anyway, training stops there and the record says so. ``--steps N``
fixes the schedule length instead, and ``--stop-after D`` stops after D of those N steps: the JSON record keeps
the scheduled length (``scheduled_steps``) beside the steps done (``steps``), and its ``reproduce`` command gives
both, so a run the budget stopped is repeated exactly (same one-cycle learning rates, same data order, same
weights on the same machine and torch version).

At the end the model is evaluated (clean accuracy on the 5,000 test images, PGD-10 accuracy on a shared subset)
and saved: ``weights/<variant>.pt`` (state dict), ``.json`` (run record) and ``.log`` (this log).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from research import cifar10, cli, provenance
from research.zoo.data import accuracy, augment, to_input
from research.zoo.train import save_atomically
from submission_kit.feature_denoising import variants

from .adversarial import ATTACKS, FGSM_RS_STEP, adversarial_step, pgd_step_size, training_examples
from .evaluation import pgd_accuracy, test_subset

__all__ = ["TrainConfig", "main", "plan_steps", "reproduce_command", "train"]

#: Training and evaluation budget ε (the usual CIFAR-10 L∞ budget; the seed trains with 16/255 on ImageNet).
EPS = 8 / 255
#: PGD used for the record's robust accuracy (Madry et al.'s CIFAR-10 step).
EVAL_PGD_STEPS = 10
EVAL_PGD_ALPHA = 2 / 255


def plan_steps(planned: int, seconds_per_step: float | None, max_minutes: float | None, *,
               overhead_seconds: float = 0.0, safety: float = 0.9) -> int:
    """Number of SGD steps to schedule: ``planned``, or fewer if they would not fit the budget.

    Args:
        planned: Steps of the full schedule (epochs x steps per epoch).
        seconds_per_step: Measured wall time of one training step (attack + update); None: not measured.
        max_minutes: Budget of the whole training loop; None: no budget.
        overhead_seconds: Time the loop spends besides steps (calibration, per-epoch monitoring).
        safety: Fraction of the budget to plan with (the rest absorbs timing noise).

    Returns:
        At least 1 and at most ``planned``.
    """
    if max_minutes is None or seconds_per_step is None:
        return planned
    usable = max_minutes * 60.0 * safety - overhead_seconds
    return max(1, min(planned, int(usable // max(seconds_per_step, 1e-9))))


class _Logger:
    """Timestamped lines to stdout and to a log file (started afresh, written line by line)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        path.write_text("")

    def __call__(self, message: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {message}"
        print(line, flush=True)
        with open(self.path, "a") as handle:
            handle.write(line + "\n")


def _monitor(model: nn.Module, images: np.ndarray, labels: np.ndarray, *, pgd_images: int,
             device: str | torch.device) -> tuple[float, float]:
    """(clean accuracy on ``images``, PGD-10 accuracy on the first ``pgd_images`` of them), model in eval mode."""
    model.eval()
    clean = accuracy(model, images, labels, device=device)
    robust = pgd_accuracy(model, images[:pgd_images], labels[:pgd_images], eps=EPS, steps=EVAL_PGD_STEPS,
                          alpha=EVAL_PGD_ALPHA, device=device) if pgd_images else float("nan")
    return clean, robust


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """The recipe of one adversarial training run (defaults: those of the committed weights' runs).

    Attributes:
        epochs: Epochs of the full one-cycle schedule, ≥ 1.
        seed: Seeds initialisation (torch's global generator), data order and augmentation (one generator) and
            the attack's random starts (another generator).
        attack: ``"fgsm_rs"`` or ``"pgd"`` (see :mod:`research.feature_denoising.adversarial`).
        pgd_steps: K of ``"pgd"``, ≥ 1.
        max_minutes: Wall-clock budget of the training loop in minutes (see the module docstring); None for none.
        steps: Fixed number of SGD steps (overrides ``epochs`` and the budget's shortening); None: from epochs.
        stop_after: Stop after this many of the scheduled steps, in [1, ``steps``] (the schedule keeps its length;
            how a run stopped by its budget is repeated); None: run the whole schedule.
        eps: L∞ budget on the [0, 1] scale.
        batch_size: Images per step, ≥ 1.
        max_lr: Peak learning rate, > 0.
        weight_decay: SGD weight decay, ≥ 0.
        label_smoothing: Of the training cross-entropy, in [0, 1).
        clean_start_prob: Share of PGD attacks that start from the clean image, in [0, 1].
        train_images: Use only the first this many (shuffled once with the seed) training images (smoke tests);
            None: all 50,000.
        monitor_images: Shared test images for the per-epoch clean accuracy (0: none).
        monitor_pgd_images: How many of those also get a per-epoch PGD-10 accuracy (catches catastrophic
            overfitting of single-step training, Wong et al. 2020).
        calibration_steps: Timed steps on a copy of the model before planning a budgeted schedule, ≥ 1.
        log_every: Progress line every this many steps, ≥ 1.

    Raises:
        ValueError: ``attack`` is unknown, or ``stop_after`` is given without ``steps`` or outside [1, steps].
    """

    epochs: int
    seed: int
    attack: str = "fgsm_rs"
    pgd_steps: int = 3
    max_minutes: float | None = None
    steps: int | None = None
    stop_after: int | None = None
    eps: float = EPS
    batch_size: int = 256
    max_lr: float = 0.2
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    clean_start_prob: float = 0.2
    train_images: int | None = None
    monitor_images: int = 1000
    monitor_pgd_images: int = 200
    calibration_steps: int = 3
    log_every: int = 50

    def __post_init__(self) -> None:
        if self.attack not in ATTACKS:
            raise ValueError(f"unknown training attack {self.attack!r}; choices: {', '.join(ATTACKS)}")
        if self.stop_after is not None and (self.stop_after < 1 or self.steps is None
                                            or self.stop_after > self.steps):
            raise ValueError(f"stop_after={self.stop_after} needs steps (the schedule length) with 1 <= stop_after "
                             f"<= steps; got steps={self.steps}")


def train(name: str, config: TrainConfig, *, device: str | torch.device = "cpu",
          data_root: str | os.PathLike[str] | None = None,
          log: Callable[[str], None] = print) -> tuple[nn.Module, dict[str, float | int | bool]]:
    """Adversarially train variant ``name``; return the model (eval mode, on ``device``) and a summary.

    Args:
        name: Registered variant.
        config: The recipe (schedule, attack, optimizer, monitoring).
        device: Training device.
        data_root: Folder with the CIFAR-10 archives.
        log: Receives progress lines.

    Returns:
        ``(model, summary)`` with keys ``steps`` (done), ``scheduled_steps`` (length of the one-cycle schedule),
        ``planned_steps`` (``epochs`` x steps per epoch, or ``steps``), ``steps_per_epoch``, ``epochs_run``,
        ``seconds_per_step`` (calibrated, or measured when not budgeted), ``minutes`` (training loop),
        ``epoch_minutes``, ``stopped_by_budget``, ``nonfinite_loss_steps``, ``last_epoch_train_accuracy`` (on
        adversarial batches).
    """
    epochs, seed, attack, pgd_steps, eps = config.epochs, config.seed, config.attack, config.pgd_steps, config.eps
    max_minutes, steps, stop_after = config.max_minutes, config.steps, config.stop_after
    batch_size, max_lr, weight_decay = config.batch_size, config.max_lr, config.weight_decay
    clean_start_prob, train_images = config.clean_start_prob, config.train_images
    monitor_images, monitor_pgd_images = config.monitor_images, config.monitor_pgd_images
    calibration_steps, log_every = config.calibration_steps, config.log_every
    torch.manual_seed(seed)
    np.random.seed(seed)
    data_generator = torch.Generator().manual_seed(seed)
    attack_generator = torch.Generator().manual_seed(seed + 1)

    train_x, train_y = cifar10.load_split("train", data_root)
    if train_images is not None and train_images < len(train_x):
        keep = np.sort(np.random.default_rng(seed).choice(len(train_x), size=train_images, replace=False))
        train_x, train_y = train_x[keep], train_y[keep]
    images, labels = torch.from_numpy(train_x), torch.from_numpy(train_y)
    monitor_x, monitor_y, _ = test_subset(monitor_images, root=data_root) if monitor_images else (None, None, None)

    model = variants.build(name).to(device=device, memory_format=torch.channels_last)
    log(f"variant {name}: {variants.get(name).description}; {sum(p.numel() for p in model.parameters()):,} "
        f"parameters; {len(images):,} training images; device {device}; threads {torch.get_num_threads()}")
    alpha = FGSM_RS_STEP * eps if attack == "fgsm_rs" else pgd_step_size(eps, pgd_steps)
    log(f"attack {attack}" + (f" K={pgd_steps}" if attack == "pgd" else "") +
        f": eps {eps * 255:g}/255, step {alpha * 255:.3g}/255" +
        (f", {clean_start_prob:.0%} clean starts" if attack == "pgd" else ", random start"))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    def new_optimizer(net: nn.Module) -> torch.optim.SGD:
        return torch.optim.SGD(net.parameters(), lr=max_lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)

    def batch(index: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return to_input(augment(images[index], generator=generator), device), labels[index].to(device)

    steps_per_epoch = math.ceil(len(images) / batch_size)
    planned = steps if steps is not None else epochs * steps_per_epoch
    started = time.perf_counter()
    seconds_per_step = None
    if steps is None and max_minutes is not None:
        probe_model, probe_generator = copy.deepcopy(model), torch.Generator().manual_seed(seed + 2)
        probe_optimizer = new_optimizer(probe_model)
        timings = []
        for index in range(calibration_steps + 1):  # the first step warms up and is not timed
            x, y = batch(torch.randperm(len(images), generator=probe_generator)[:batch_size], probe_generator)
            tick = time.perf_counter()
            adversarial_step(probe_model, probe_optimizer, training_examples(
                probe_model, x, y, attack=attack, eps=eps, pgd_steps=pgd_steps, clean_start_prob=clean_start_prob,
                generator=probe_generator), y, loss_fn)
            if index:
                timings.append(time.perf_counter() - tick)
        tick = time.perf_counter()
        if monitor_x is not None:
            _monitor(probe_model, monitor_x, monitor_y, pgd_images=monitor_pgd_images, device=device)
        monitor_seconds = time.perf_counter() - tick
        del probe_model, probe_optimizer
        seconds_per_step = float(np.median(timings))
        overhead = time.perf_counter() - started + epochs * monitor_seconds
        total = plan_steps(planned, seconds_per_step, max_minutes, overhead_seconds=overhead)
        log(f"calibration: {seconds_per_step:.2f} s per step ({steps_per_epoch * seconds_per_step / 60:.2f} min "
            f"per epoch), monitoring {monitor_seconds:.1f} s per epoch; budget {max_minutes:g} min -> "
            f"{total} of {planned} planned steps ({total / steps_per_epoch:.2f} epochs)")
    else:
        total = planned
    optimizer = new_optimizer(model)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total, pct_start=0.25)

    done = nonfinite = 0
    stopped = False
    epoch_seconds: list[float] = []
    full_epoch_seconds: list[float] = []
    train_acc = 0.0
    epoch = 0
    last = total if stop_after is None else stop_after
    if last < total:
        log(f"stopping after {last} of the {total} scheduled steps (--stop-after)")
    while done < last and not stopped:
        epoch += 1
        epoch_start = time.perf_counter()
        order = torch.randperm(len(images), generator=data_generator)
        seen = correct = 0
        loss_sum = 0.0
        for position in range(steps_per_epoch):
            if done >= last:
                break
            x, y = batch(order[position * batch_size:(position + 1) * batch_size], data_generator)
            x_adv = training_examples(model, x, y, attack=attack, eps=eps, pgd_steps=pgd_steps,
                                      clean_start_prob=clean_start_prob, generator=attack_generator)
            loss, hits = adversarial_step(model, optimizer, x_adv, y, loss_fn)
            schedule.step()
            done += 1
            if not math.isfinite(loss):
                nonfinite += 1
                if nonfinite == 1:
                    log(f"step {done}: the training loss is not finite (the seed could not train the block "
                        "without its residual connection either); training goes on and the record counts such steps")
            seen += len(y)
            correct += hits
            loss_sum += loss * len(y)
            if done % log_every == 0 or done == total:
                rate = seen / (time.perf_counter() - epoch_start)
                log(f"epoch {epoch} step {done}/{total} adv loss {loss_sum / seen:.4f} adv acc {correct / seen:.4f} "
                    f"lr {schedule.get_last_lr()[0]:.4f} {rate:.0f} img/s")
            if max_minutes is not None and time.perf_counter() - started > max_minutes * 60:
                stopped = True
                log(f"budget of {max_minutes:g} min used up after {done}/{total} steps: stopping early")
                break
        epoch_seconds.append(time.perf_counter() - epoch_start)
        if position == steps_per_epoch - 1 and seen == len(images):
            full_epoch_seconds.append(epoch_seconds[-1])
        train_acc = correct / max(seen, 1)
        message = (f"epoch {epoch} done: adv train loss {loss_sum / max(seen, 1):.4f} adv train acc {train_acc:.4f} "
                   f"epoch time {epoch_seconds[-1] / 60:.2f} min")
        if monitor_x is not None:
            clean, robust = _monitor(model, monitor_x, monitor_y, pgd_images=monitor_pgd_images, device=device)
            message += f"; monitor: clean acc {clean:.4f} ({len(monitor_x)}), PGD-10 acc {robust:.4f} " \
                       f"({min(monitor_pgd_images, len(monitor_x))})"
        log(message)
    minutes = (time.perf_counter() - started) / 60
    model.eval()
    summary: dict[str, float | int | bool] = {
        "steps": done,
        "scheduled_steps": total,
        "planned_steps": planned,
        "steps_per_epoch": steps_per_epoch,
        "epochs_run": round(done / steps_per_epoch, 3),
        "seconds_per_step": seconds_per_step if seconds_per_step is not None
        else sum(epoch_seconds) / max(done, 1),
        "minutes": minutes,
        "epoch_minutes": (sum(full_epoch_seconds) / len(full_epoch_seconds) if full_epoch_seconds
                          else sum(epoch_seconds)) / 60,
        "stopped_by_budget": stopped,
        "nonfinite_loss_steps": nonfinite,
        "last_epoch_train_accuracy": train_acc,
    }
    return model, summary


def reproduce_command(variant: str, config: TrainConfig, *, scheduled_steps: int, steps: int) -> str:
    """The command that repeats a run without its wall-clock budget: same schedule length, same steps done.

    Args:
        variant: Variant name.
        config: The run's recipe; its attack, K, seed and training-image subset are stated, its batch size,
            learning rate and weight decay only when they differ from the command-line defaults (its epochs,
            budget and steps are replaced by the two counts below).
        scheduled_steps: Length of the one-cycle schedule the run used (``summary["scheduled_steps"]``).
        steps: Steps done (fewer than ``scheduled_steps`` when the budget stopped the run).

    Returns:
        A shell command line (``python -m research.feature_denoising.train ...``).
    """
    attack, pgd_steps, seed, train_images = config.attack, config.pgd_steps, config.seed, config.train_images
    batch_size, max_lr, weight_decay = config.batch_size, config.max_lr, config.weight_decay
    if not 1 <= steps <= scheduled_steps:
        raise ValueError(f"steps done ({steps}) must lie in 1..scheduled_steps ({scheduled_steps})")
    return (f"python -m research.feature_denoising.train --variant {variant} --attack {attack}"
            + (f" --pgd-steps {pgd_steps}" if attack == "pgd" else "")
            + f" --steps {scheduled_steps}" + (f" --stop-after {steps}" if steps < scheduled_steps else "")
            + f" --max-minutes 0 --seed {seed}"
            + (f" --batch-size {batch_size}" if batch_size != 256 else "")
            + (f" --lr {max_lr:g}" if max_lr != 0.2 else "")
            + (f" --weight-decay {weight_decay:g}" if weight_decay != 5e-4 else "")
            + (f" --train-images {train_images}" if train_images else ""))


def _variant_name(text: str) -> str:
    try:
        return variants.get(text).name
    except variants.UnknownModelError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    recipe = variants.RECIPE
    shared = cli.parent(
        seed=cli.Option(default=recipe.seed),
        out=cli.Option(help="state-dict path (default: submission_kit/feature_denoising/weights/<variant>.pt; .json "
                            "and .log go next to it)"),
        threads=cli.Option(default=2, help="torch CPU threads"),
    )
    parser = argparse.ArgumentParser(prog="python -m research.feature_denoising.train",
                                     description=__doc__.split("\n")[0], parents=[shared],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--variant", required=True, type=_variant_name, help=f"one of {', '.join(variants.names())}")
    parser.add_argument("--attack", choices=ATTACKS, default=recipe.attack, help="training attack")
    parser.add_argument("--pgd-steps", type=int, default=3, help="K of --attack pgd")
    parser.add_argument("--epochs", type=int, default=recipe.epochs, help="epochs of the full schedule")
    parser.add_argument("--max-minutes", type=float, default=recipe.max_minutes,
                        help="wall-clock budget of the training loop; the schedule is shortened to fit (0: none)")
    parser.add_argument("--steps", type=int, help="fixed number of SGD steps (overrides --epochs and the budget)")
    parser.add_argument("--stop-after", type=int, help="stop after this many of the --steps scheduled steps (the "
                        "learning-rate schedule keeps its --steps length; repeats a run its budget stopped)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=0.2, help="peak one-cycle learning rate")
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--train-images", type=int, help="use only this many training images (smoke tests)")
    parser.add_argument("--monitor-images", type=int, default=1000, help="test images for per-epoch clean accuracy")
    parser.add_argument("--monitor-pgd-images", type=int, default=200, help="of those, per-epoch PGD-10 accuracy")
    parser.add_argument("--test-images", type=int, default=5000, help="test images for the final clean accuracy")
    parser.add_argument("--eval-images", type=int, default=1000, help="shared test images for the final PGD-10")
    parser.add_argument("--data", help="folder with train.tar.gz/test.tar.gz (default: $CIFAR10_DIR or "
                        "../shared/datasets/cifar10)")
    parser.add_argument("--device", default="auto", help="'auto' (CUDA if present, else CPU), 'cpu', 'cuda:0', ...")
    args = parser.parse_args(argv)
    if args.stop_after is not None and (args.steps is None or not 1 <= args.stop_after <= args.steps):
        parser.error("--stop-after D needs --steps N (the schedule length) with 1 <= D <= N")

    max_minutes = args.max_minutes if args.max_minutes and args.max_minutes > 0 else None
    out = args.out if args.out is not None else variants.weights_path(args.variant)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    torch.set_num_threads(args.threads)
    command = " ".join(["python -m research.feature_denoising.train",
                        *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    log = _Logger(out.with_suffix(".log"))
    log(f"command: {command}")
    config = TrainConfig(epochs=args.epochs, seed=args.seed, attack=args.attack, pgd_steps=args.pgd_steps,
                         max_minutes=max_minutes, steps=args.steps, stop_after=args.stop_after,
                         batch_size=args.batch_size, max_lr=args.lr, weight_decay=args.weight_decay,
                         train_images=args.train_images, monitor_images=args.monitor_images,
                         monitor_pgd_images=args.monitor_pgd_images)
    model, summary = train(args.variant, config, device=device, data_root=args.data, log=log)
    tick = time.perf_counter()
    test_x, test_y, _ = test_subset(args.test_images, root=args.data)
    clean = accuracy(model, test_x, test_y, device=device)
    eval_x, eval_y, _ = test_subset(args.eval_images, root=args.data)
    robust = pgd_accuracy(model, eval_x, eval_y, eps=EPS, steps=EVAL_PGD_STEPS, alpha=EVAL_PGD_ALPHA, device=device)
    log(f"finished {args.variant}: clean accuracy {clean:.4f} ({len(test_x)} test images), PGD-{EVAL_PGD_STEPS} "
        f"accuracy {robust:.4f} ({len(eval_x)} shared test images, eps 8/255, step 2/255) in "
        f"{summary['minutes']:.1f} min of training + {(time.perf_counter() - tick) / 60:.1f} min of evaluation")

    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    save_atomically(lambda tmp: torch.save(state, tmp), out)
    reproduce = reproduce_command(args.variant, config, scheduled_steps=int(summary["scheduled_steps"]),
                                  steps=int(summary["steps"]))
    record = {
        "variant": args.variant,
        "description": variants.get(args.variant).description,
        "command": command,
        "reproduce": reproduce,
        "seed": args.seed,
        "attack": args.attack,
        "pgd_steps": args.pgd_steps if args.attack == "pgd" else None,
        "eps": "8/255",
        "epochs_planned": args.epochs,
        "max_minutes": max_minutes,
        **{key: (round(value, 4) if isinstance(value, float) else value) for key, value in summary.items()},
        "batch_size": args.batch_size,
        "max_lr": args.lr,
        "weight_decay": args.weight_decay,
        "label_smoothing": config.label_smoothing,
        "train_images": args.train_images or 50000,
        "test_accuracy": round(clean, 4),
        "test_images": len(test_x),
        "pgd10_accuracy": round(robust, 4),
        "pgd10_images": len(eval_x),
        "pgd10": "untargeted, random start, eps 8/255, step 2/255, true labels",
        **provenance.environment(device),
    }
    text = json.dumps(record, indent=2) + "\n"
    save_atomically(lambda tmp: Path(tmp).write_text(text), out.with_suffix(".json"))
    log(f"saved {out} ({out.stat().st_size / 1e6:.2f} MB), {out.with_suffix('.json')} and {log.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
