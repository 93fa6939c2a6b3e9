"""Train one HGD denoiser on the cached adversarial sets (Liao et al. 2018, Sec. 4.2).

Usage::

    python -m research.hgd.train --arch dunet --guide lgd [--model vgg6_w48 --epochs 6 --seed 0
                                --minutes-budget 20 --data-dir DIR --out PATH]

Recipe (the paper's, scaled): Adam, learning rate 1e-3, then 1e-4 from epoch ``--decay-epoch`` on (the paper
decays "when the training loss converges"; here at a fixed epoch, default two thirds of the run, so runs are
repeatable); batches of 64 (paper: 60); the guide model — a zoo model, the target by default — is frozen in eval
mode and its parameters and buffers are checked unchanged at the end; the clean-side representation of every
clean image is computed once without gradients (the model is frozen, so this equals computing it per batch);
after every epoch the loss on the validation set is measured and the epoch with the lowest validation loss is
kept ("the model with the lowest validation loss is used for testing"). ``--minutes-budget`` stops a run that is
too slow (checked after every batch; the stop and the epoch reached are logged and recorded).

Progress goes to stdout (tee it into ``submission_kit/hgd/weights/<name>.log``); the kept weights go to
``submission_kit/hgd/weights/<name>.pt`` (:func:`submission_kit.hgd.registry.save_denoiser`) with a JSON record of the
run.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from research import cli, provenance
from research.hgd import data
from submission_kit import contract, zoo
from submission_kit.hgd import losses
from submission_kit.hgd.networks import ARCHS, Denoiser, build_denoiser
from submission_kit.hgd.registry import DEFAULT_WIDTH, DenoiserSpec, save_denoiser, weights_path

__all__ = ["DenoiserTrainConfig", "clean_targets", "evaluate", "main", "to_float", "train_denoiser", "train_step"]


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def to_float(images: torch.Tensor, device: str | torch.device) -> torch.Tensor:
    """uint8 (N, H, W, 3) → float (N, 3, H, W) in [0, 1] on ``device``."""
    return contract.pixels_to_unit(images.to(device).permute(0, 3, 1, 2).float()).contiguous()


@torch.no_grad()
def clean_targets(model: nn.Module | None, clean: torch.Tensor, labels: torch.Tensor, guide: str, *,
                  device: str | torch.device = "cpu", batch_size: int = 500) -> torch.Tensor:
    """The clean-side target of every clean image (:func:`submission_kit.hgd.losses.clean_target`), computed once.

    Args:
        model: Frozen guide model in eval mode (unused for ``"pgd"`` and ``"cgd"``).
        clean: uint8 (M, H, W, 3) clean images.
        labels: int64 (M,) true classes.
        guide: One of :data:`submission_kit.hgd.losses.GUIDES`.
        device: Where the model runs; the result stays there.
        batch_size: Images per forward pass.

    Returns:
        (M, 3, H, W) images in [0, 1] (PGD), (M, C, h, w) last conv maps (FGD), (M, K) logits (LGD) or the
        labels (M,) (CGD).
    """
    if guide == "cgd":
        return labels.to(device)
    parts = [losses.clean_target(model, to_float(clean[s:s + batch_size], device), labels[s:s + batch_size], guide)
             for s in range(0, len(clean), batch_size)]
    return torch.cat(parts)


def train_step(denoiser: Denoiser, optimizer: torch.optim.Optimizer, model: nn.Module | None,
               adversarial: torch.Tensor, target: torch.Tensor, guide: str) -> float:
    """One Adam step of the denoiser on one batch; returns the batch loss before the step.

    Args:
        denoiser: In training mode.
        optimizer: Over the denoiser's parameters only.
        model: Frozen guide model in eval mode (unused for ``"pgd"``).
        adversarial: x*, float (N, 3, H, W) in [0, 1].
        target: :func:`clean_targets` rows of the batch's clean images.
        guide: One of :data:`submission_kit.hgd.losses.GUIDES`.
    """
    loss = losses.guided_loss(guide, denoiser(adversarial), target, model)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def evaluate(denoiser: Denoiser, model: nn.Module | None, images: torch.Tensor, source: torch.Tensor,
             targets: torch.Tensor, labels: torch.Tensor, guide: str, *, device: str | torch.device = "cpu",
             batch_size: int = 250) -> tuple[float, float]:
    """Mean guide loss and the guide model's accuracy on the denoised versions (denoiser in eval mode).

    Args:
        denoiser: The denoiser (put in eval mode here; restored to its previous mode after).
        model: Frozen guide model; accuracy is NaN without it.
        images: uint8 (K, H, W, 3) adversarial versions.
        source: int64 (K,) index of each version's clean image.
        targets: :func:`clean_targets` of the clean images.
        labels: int64 (M,) true classes of the clean images.
        guide: One of :data:`submission_kit.hgd.losses.GUIDES`.
        device: Where the networks live.
        batch_size: Images per pass.

    Returns:
        ``(loss, accuracy)``: the loss averaged over versions; accuracy in [0, 1] of ``model`` on the
        denoised versions clamped to [0, 1].
    """
    was_training = denoiser.training
    denoiser.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(images), batch_size):
        index = source[start:start + batch_size]
        denoised = denoiser(to_float(images[start:start + batch_size], device))
        loss_sum += float(losses.guided_loss(guide, denoised, targets[index.to(targets.device)], model)) * len(index)
        if model is not None:
            predicted = model(denoised.clamp(0, 1)).argmax(1).cpu()
            correct += int((predicted == labels[index]).sum())
    denoiser.train(was_training)
    count = max(len(images), 1)
    return loss_sum / count, (correct / count if model is not None else float("nan"))


def _parameters_snapshot(model: nn.Module | None) -> dict[str, torch.Tensor]:
    return {} if model is None else {k: v.detach().clone() for k, v in model.state_dict().items()}


@dataclass(frozen=True, kw_only=True)
class DenoiserTrainConfig:
    """The recipe of one HGD denoiser training run (defaults: the paper's, as the committed denoisers used).

    Attributes:
        guide: Training loss, one of :data:`submission_kit.hgd.losses.GUIDES`.
        epochs: Passes over the training set, ≥ 1.
        decay_epoch: Last epoch at learning rate ``lr``; later epochs use ``lr_final``. None: ⌈2·epochs / 3⌉.
        lr: Initial Adam learning rate, > 0 (paper: 1e-3).
        lr_final: Learning rate after the decay, > 0 (paper: 1e-4).
        batch_size: Versions per step, ≥ 1.
        seed: Seed of the data order (an explicit ``torch.Generator``; initialization is the caller's).
        minutes_budget: Stop after this many minutes of training (checked after each batch); None for no limit.
        log_every: Log a progress line every this many batches, ≥ 1.

    Raises:
        ValueError: Unknown ``guide``, or ``epochs`` below 1.
    """

    guide: str
    epochs: int
    decay_epoch: int | None = None
    lr: float = 1e-3
    lr_final: float = 1e-4
    batch_size: int = 64
    seed: int = 0
    minutes_budget: float | None = None
    log_every: int = 50

    def __post_init__(self) -> None:
        if self.guide not in losses.GUIDES:
            raise ValueError(f"unknown guide {self.guide!r}; choose one of {', '.join(losses.GUIDES)}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")


def train_denoiser(
    denoiser: Denoiser,
    model: nn.Module | None,
    train_set: data.HGDSet,
    val_set: data.HGDSet,
    config: DenoiserTrainConfig,
    *,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] = _log,
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Train ``denoiser`` with the ``config.guide`` loss and return the best epoch's state dict and a summary.

    Args:
        denoiser: Untrained denoiser on ``device`` (left in eval mode holding the best weights on return).
        model: Frozen guide model in eval mode on ``device`` (``zoo.load(..., frozen=True)``); may be None only
            for ``"pgd"`` (then no accuracy is reported).
        train_set: Training versions and their clean images.
        val_set: Validation versions (model selection).
        config: The recipe (guide, schedule, batch size, seed, budget).
        device: Training device.
        log: Progress printer.

    Returns:
        ``(state_dict, summary)``: the best epoch's weights (CPU tensors) and ``best_epoch``, ``val_loss``,
        ``val_accuracy``, ``epochs_run``, ``stopped_by_budget`` (0/1), ``minutes``, ``images_per_s``.

    Raises:
        ValueError: ``model`` is None for a guide other than ``"pgd"``.
        RuntimeError: The guide model's parameters or buffers changed during training.
    """
    guide, epochs, lr, lr_final = config.guide, config.epochs, config.lr, config.lr_final
    batch_size, minutes_budget, log_every = config.batch_size, config.minutes_budget, config.log_every
    if model is None and guide != "pgd":
        raise ValueError(f"guide {guide!r} needs the guide model")
    decay_epoch = math.ceil(2 * epochs / 3) if config.decay_epoch is None else config.decay_epoch
    snapshot = _parameters_snapshot(model)
    generator = torch.Generator().manual_seed(config.seed)
    sets = {}
    for split, dataset in (("train", train_set), ("val", val_set)):
        labels = torch.from_numpy(dataset.labels)
        sets[split] = {
            "images": torch.from_numpy(dataset.images),
            "source": torch.from_numpy(dataset.source),
            "labels": labels,
            "targets": clean_targets(model, torch.from_numpy(dataset.clean), labels, guide, device=device),
        }
    train, val = sets["train"], sets["val"]
    optimizer = torch.optim.Adam(denoiser.parameters(), lr=lr)
    steps = math.ceil(len(train["images"]) / batch_size)
    log(f"guide {guide}: {len(train['images'])} training versions of {len(train_set.clean)} clean images, "
        f"{len(val['images'])} validation versions; {epochs} epochs x {steps} steps of {batch_size}; "
        f"lr {lr:g} to epoch {decay_epoch}, then {lr_final:g}")
    best_state: dict[str, torch.Tensor] = {}
    best = {"val_loss": math.inf, "val_accuracy": math.nan, "best_epoch": 0}
    started = time.perf_counter()
    trained_images = 0
    stopped = False
    epoch = 0
    for epoch in range(1, epochs + 1):
        for group in optimizer.param_groups:
            group["lr"] = lr if epoch <= decay_epoch else lr_final
        denoiser.train()
        order = torch.randperm(len(train["images"]), generator=generator)
        epoch_start = time.perf_counter()
        loss_sum, seen = 0.0, 0
        for step in range(steps):
            index = order[step * batch_size:(step + 1) * batch_size]
            adversarial = to_float(train["images"][index], device)
            target = train["targets"][train["source"][index].to(train["targets"].device)]
            loss_sum += train_step(denoiser, optimizer, model, adversarial, target, guide) * len(index)
            seen += len(index)
            over = minutes_budget is not None and time.perf_counter() - started > minutes_budget * 60
            if (step + 1) % log_every == 0 or step + 1 == steps or over:
                rate = seen / (time.perf_counter() - epoch_start)
                log(f"epoch {epoch}/{epochs} batch {step + 1}/{steps} train loss {loss_sum / seen:.5f} "
                    f"lr {optimizer.param_groups[0]['lr']:g} {rate:.0f} img/s")
            if over:
                stopped = True
                break
        trained_images += seen
        val_loss, val_acc = evaluate(denoiser, model, val["images"], val["source"], val["targets"], val["labels"],
                                     guide, device=device)
        improved = val_loss < best["val_loss"]
        if improved:
            best = {"val_loss": val_loss, "val_accuracy": val_acc, "best_epoch": epoch}
            best_state = {k: v.detach().cpu().clone() for k, v in denoiser.state_dict().items()}
        log(f"epoch {epoch}/{epochs} done: train loss {loss_sum / max(seen, 1):.5f} val loss {val_loss:.5f} "
            f"val acc {val_acc:.4f}{' (best)' if improved else ''} epoch time "
            f"{(time.perf_counter() - epoch_start) / 60:.2f} min")
        if stopped:
            log(f"stopped by the {minutes_budget:g}-minute budget during epoch {epoch}")
            break
    changed = [k for k, v in _parameters_snapshot(model).items() if not torch.equal(v, snapshot[k])]
    if changed:
        raise RuntimeError(f"the guide model changed during training: {changed[:5]}")
    denoiser.load_state_dict(best_state)
    denoiser.eval()
    minutes = (time.perf_counter() - started) / 60
    summary = {**best, "epochs_run": epoch, "stopped_by_budget": int(stopped), "minutes": minutes,
               "images_per_s": trained_images / max(minutes * 60, 1e-9)}
    log(f"best epoch {best['best_epoch']}: val loss {best['val_loss']:.5f} val acc {best['val_accuracy']:.4f}; "
        f"{minutes:.1f} min; guide model unchanged")
    return best_state, summary


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    shared = cli.parent(
        seed=cli.Option(default=0, help="initialization and data order"),
        out=cli.Option(help="checkpoint path (default: submission_kit/hgd/weights/<name>.pt)"),
        threads=cli.Option(default=2, help="torch CPU threads"),
    )
    parser = argparse.ArgumentParser(prog="python -m research.hgd.train", description=__doc__.split("\n")[0],
                                     parents=[shared])
    parser.add_argument("--guide", required=True, choices=losses.GUIDES, help="training loss (Fig. 4)")
    parser.add_argument("--arch", default="dunet", choices=ARCHS)
    parser.add_argument("--model", default=zoo.TARGET_MODEL, choices=zoo.names(), help="guide model (frozen)")
    parser.add_argument("--width", type=int, default=DEFAULT_WIDTH, help="base width (paper: 64)")
    parser.add_argument("--epochs", type=int, help="epochs (default: the registered recipe)")
    parser.add_argument("--decay-epoch", type=int, help="last epoch at --lr (default: 2/3 of the epochs)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lr-final", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--minutes-budget", type=float, help="stop after this many minutes")
    parser.add_argument("--data-dir", type=Path, help="folder of the sets (default: the default recipe's)")
    parser.add_argument("--data", help="folder with the CIFAR-10 archives, to find the default data folder")
    parser.add_argument("--max-train-images", type=int, help="use only the versions of this many clean images")
    parser.add_argument("--max-val-images", type=int, help="same for the validation set")
    parser.add_argument("--device", default="auto", help="'auto' (CUDA if present, else CPU), 'cpu', 'cuda:0', ...")
    args = parser.parse_args(argv)

    spec = DenoiserSpec(args.arch, args.guide, args.model)
    epochs = spec.epochs if args.epochs is None else args.epochs
    out = args.out if args.out is not None else weights_path(spec.name)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    torch.set_num_threads(args.threads)
    command = " ".join(["python -m research.hgd.train", *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    _log(f"command: {command}")
    folder = args.data_dir if args.data_dir is not None else data.data_dir(data_root=args.data)
    try:
        train_set, val_set = data.load_split(folder, "train"), data.load_split(folder, "val")
    except data.DataNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.max_train_images is not None:
        train_set = train_set.head(args.max_train_images)
    if args.max_val_images is not None:
        val_set = val_set.head(args.max_val_images)
    _log(f"data: {folder}")

    torch.manual_seed(args.seed)
    denoiser = build_denoiser(args.arch, args.width).to(device)
    model = zoo.load(args.model, device=device, frozen=True)
    parameters = sum(p.numel() for p in denoiser.parameters())
    _log(f"denoiser {spec.name}: {args.arch}, encoder widths {'-'.join(map(str, denoiser.widths))}, "
         f"{parameters:,} parameters; guide model {args.model}; device {device}; threads {torch.get_num_threads()}")
    config = DenoiserTrainConfig(guide=args.guide, epochs=epochs, decay_epoch=args.decay_epoch, lr=args.lr,
                                 lr_final=args.lr_final, batch_size=args.batch_size, seed=args.seed,
                                 minutes_budget=args.minutes_budget)
    _, summary = train_denoiser(denoiser, model, train_set, val_set, config, device=device)
    save_denoiser(out, denoiser, spec, args.width)
    record = {
        "name": spec.name,
        "command": command,
        "arch": args.arch,
        "width": args.width,
        "guide": args.guide,
        "model": args.model,
        "seed": args.seed,
        "epochs": epochs,
        "epochs_run": int(summary["epochs_run"]),
        "best_epoch": int(summary["best_epoch"]),
        "stopped_by_budget": bool(summary["stopped_by_budget"]),
        "val_loss": round(summary["val_loss"], 6),
        "val_accuracy": round(summary["val_accuracy"], 4),
        "train_versions": len(train_set),
        "val_versions": len(val_set),
        "data_key": Path(folder).name,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "lr_final": args.lr_final,
        "minutes": round(summary["minutes"], 1),
        "train_images_per_s": round(summary["images_per_s"], 1),
        "parameters": parameters,
        **provenance.environment(device),
    }
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    _log(f"saved {out} ({out.stat().st_size / 1e6:.2f} MB) and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
