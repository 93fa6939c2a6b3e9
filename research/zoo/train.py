"""Train one zoo model from scratch on the CIFAR-10 training images.

Usage::

    python -m research.zoo.train --model vgg6_w48 [--epochs 15 --seed 0 --data DIR --out PATH]

Recipe: SGD with Nesterov momentum under the one-cycle learning-rate policy (Smith, "A disciplined approach to
neural network hyper-parameters: Part 1", 2018; Smith & Topin, "Super-Convergence", 2019), label smoothing 0.1
(Szegedy et al., "Rethinking the Inception Architecture", CVPR 2016), random 4-pixel-padded crops and horizontal
flips done in torch on uint8 tensors, channels_last memory format. All randomness comes from the seed: it seeds
torch's global generator (used by weight initialization) and numpy's, and a separate ``torch.Generator`` drives
data order and augmentation. At the end the model is evaluated on the test split, and the state dict is written
to ``--out`` with a JSON record of the run next to it (same stem).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from research import cifar10, cli, provenance
from submission_kit.zoo.registry import build, entry, names, weights_path

from .data import accuracy, augment, to_input

__all__ = ["TrainConfig", "main", "save_atomically", "train"]


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """The recipe of one zoo training run (defaults: the recipe every registered model was trained with).

    Attributes:
        epochs: Passes over the 50,000 training images, ≥ 1.
        seed: Seeds torch's and numpy's global generators (initialization) and the generator of data order and
            augmentation.
        batch_size: Images per SGD step, ≥ 1.
        max_lr: Peak learning rate of the one-cycle schedule, > 0.
        weight_decay: L2 penalty (SGD weight decay) on all parameters, ≥ 0.
        label_smoothing: Label smoothing of the cross-entropy loss, in [0, 1).
        log_every: Log a progress line every this many batches, ≥ 1.
    """

    epochs: int
    seed: int
    batch_size: int = 256
    max_lr: float = 0.2
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    log_every: int = 50


def train(
    name: str,
    config: TrainConfig,
    *,
    data_root: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, dict[str, float]]:
    """Train zoo model ``name`` and return it (eval mode, on ``device``) with summary numbers.

    Args:
        name: Registered model name.
        config: The recipe (epochs, seed, optimizer settings).
        data_root: Folder with ``train.tar.gz`` / ``test.tar.gz`` (default: see :func:`research.cifar10.dataset_root`).
        device: Training device.

    Returns:
        ``(model, summary)``; summary keys: ``test_accuracy`` and ``train_accuracy`` (fractions in [0, 1], the
        latter measured on augmented batches during the last epoch), ``minutes`` (wall-clock training time),
        ``epoch_minutes`` (mean per epoch), ``test_images`` (how many test images).
    """
    epochs, seed, batch_size, max_lr = config.epochs, config.seed, config.batch_size, config.max_lr
    weight_decay, label_smoothing, log_every = config.weight_decay, config.label_smoothing, config.log_every
    torch.manual_seed(seed)
    np.random.seed(seed)
    generator = torch.Generator().manual_seed(seed)

    train_x, train_y = cifar10.load_split("train", data_root)
    test_x, test_y = cifar10.load_split("test", data_root)
    train_images = torch.from_numpy(train_x)
    train_labels = torch.from_numpy(train_y)
    _log(f"data: {len(train_images)} train / {len(test_x)} test images from {cifar10.dataset_root(data_root)}")

    model = build(name).to(device=device, memory_format=torch.channels_last)
    parameters = sum(p.numel() for p in model.parameters())
    _log(f"model {name}: {parameters:,} parameters; device {device}; threads {torch.get_num_threads()}")

    steps_per_epoch = math.ceil(len(train_images) / batch_size)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=max_lr, momentum=0.9, nesterov=True, weight_decay=weight_decay
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=max_lr, total_steps=epochs * steps_per_epoch, pct_start=0.25
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    started = time.perf_counter()
    epoch_seconds: list[float] = []
    train_acc = 0.0
    for epoch in range(1, epochs + 1):
        model.train()
        epoch_start = time.perf_counter()
        order = torch.randperm(len(train_images), generator=generator)
        seen = correct = 0
        loss_sum = 0.0
        for step in range(steps_per_epoch):
            index = order[step * batch_size : (step + 1) * batch_size]
            inputs = to_input(augment(train_images[index], generator=generator), device)
            targets = train_labels[index].to(device)
            logits = model(inputs)
            loss = loss_fn(logits, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            seen += len(index)
            loss_sum += float(loss.detach()) * len(index)
            correct += int((logits.argmax(1) == targets).sum())
            if (step + 1) % log_every == 0 or step + 1 == steps_per_epoch:
                rate = seen / (time.perf_counter() - epoch_start)
                _log(
                    f"epoch {epoch}/{epochs} batch {step + 1}/{steps_per_epoch} loss {loss_sum / seen:.4f} "
                    f"acc {correct / seen:.4f} lr {schedule.get_last_lr()[0]:.4f} {rate:.0f} img/s"
                )
        epoch_seconds.append(time.perf_counter() - epoch_start)
        train_acc = correct / seen
        model.eval()
        test_acc = accuracy(model, test_x, test_y, device=device)
        _log(
            f"epoch {epoch}/{epochs} done: train loss {loss_sum / seen:.4f} train acc {train_acc:.4f} "
            f"test acc {test_acc:.4f} epoch time {epoch_seconds[-1] / 60:.2f} min"
        )
    model.eval()
    test_acc = accuracy(model, test_x, test_y, device=device)
    minutes = (time.perf_counter() - started) / 60
    _log(f"finished {name}: test accuracy {test_acc:.4f} ({len(test_x)} images) in {minutes:.1f} min")
    summary = {
        "test_accuracy": test_acc,
        "train_accuracy": train_acc,
        "minutes": minutes,
        "epoch_minutes": sum(epoch_seconds) / len(epoch_seconds) / 60,
        "test_images": len(test_x),
    }
    return model, summary


def save_atomically(write: Callable[[str], object], path: Path) -> None:
    """Call ``write(tmp_path)`` and move the result to ``path`` so a crash never leaves a partial file.

    Args:
        write: Writes the whole file to the temporary path it is given (in ``path``'s folder, created if needed).
        path: Final location; replaced in one rename, mode 0644.

    Raises:
        Whatever ``write`` raises (the temporary file is removed first).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.stem, suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    shared = cli.parent(
        seed=cli.Option(help="random seed (default: the registered recipe)"),
        out=cli.Option(help="state-dict path (default: submission_kit/zoo/weights/<model>.pt)"),
        threads=cli.Option(default=2, help="torch CPU threads"),
    )
    parser = argparse.ArgumentParser(prog="python -m research.zoo.train", description=__doc__.split("\n")[0],
                                     parents=[shared])
    parser.add_argument("--model", required=True, choices=names(), help="registered model name")
    parser.add_argument("--epochs", type=int, help="epochs (default: the registered recipe)")
    parser.add_argument("--data", help=f"folder with train.tar.gz/test.tar.gz (default: ${cifar10.ROOT_ENV} or "
                        "../shared/datasets/cifar10)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, help="peak one-cycle learning rate (default: the registered recipe)")
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--device", default="auto", help="'auto' (CUDA if present, else CPU), 'cpu', 'cuda:0', ...")
    args = parser.parse_args(argv)

    spec = entry(args.model)
    epochs = spec.epochs if args.epochs is None else args.epochs
    seed = spec.seed if args.seed is None else args.seed
    max_lr = spec.max_lr if args.lr is None else args.lr
    out = args.out if args.out is not None else weights_path(args.model)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    torch.set_num_threads(args.threads)
    command = " ".join(["python -m research.zoo.train", *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    _log(f"command: {command}")

    config = TrainConfig(epochs=epochs, seed=seed, batch_size=args.batch_size, max_lr=max_lr,
                         weight_decay=args.weight_decay)
    model, summary = train(args.model, config, data_root=args.data, device=device)
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    save_atomically(lambda tmp: torch.save(state, tmp), out)
    record = {
        "model": args.model,
        "command": command,
        "seed": seed,
        "epochs": epochs,
        "batch_size": config.batch_size,
        "max_lr": config.max_lr,
        "weight_decay": config.weight_decay,
        "label_smoothing": config.label_smoothing,
        "test_accuracy": round(summary["test_accuracy"], 4),
        "test_images": int(summary["test_images"]),
        "last_epoch_train_accuracy": round(summary["train_accuracy"], 4),
        "minutes": round(summary["minutes"], 1),
        "epoch_minutes": round(summary["epoch_minutes"], 2),
        **provenance.environment(device),
    }
    text = json.dumps(record, indent=2) + "\n"
    save_atomically(lambda tmp: Path(tmp).write_text(text), out.with_suffix(".json"))
    _log(f"saved {out} ({out.stat().st_size / 1e6:.2f} MB) and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
