"""Tests of the model zoo: registry, every architecture's contract, saved weights, torchvision wrapper."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from research import cifar10
from research.zoo import data, evaluate
from submission_kit import zoo
from submission_kit.zoo import imagenet, registry


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(1)


@pytest.fixture(params=zoo.names())
def name(request: pytest.FixtureRequest) -> str:
    return request.param


def test_registry_lists_at_least_three_models_of_two_architectures() -> None:
    models = {name: zoo.build(name) for name in zoo.names()}
    assert len(models) >= 3
    assert len({type(model) for model in models.values()}) >= 2
    assert zoo.TARGET_MODEL in models and zoo.names()[0] == zoo.TARGET_MODEL


def test_unknown_name_suggests_close_match() -> None:
    with pytest.raises(zoo.UnknownModelError, match="Did you mean 'vgg6_w48'") as info:
        zoo.load("vgg6_w84")
    assert all(name in str(info.value) for name in zoo.names())
    with pytest.raises(KeyError):  # also catchable as a KeyError
        zoo.build("nope")


def test_missing_weights_error_names_training_command(name: str, tmp_path: Path) -> None:
    with pytest.raises(zoo.WeightsNotFoundError, match=f"python -m research.zoo.train --model {name}"):
        zoo.load(name, weights=tmp_path / "absent.pt")


@pytest.mark.parametrize("size", [(32, 32), (37, 45), (64, 64)])
def test_output_shape_and_features(name: str, size: tuple[int, int]) -> None:
    model = zoo.build(name).eval()
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        logits = model(x)
        features = model.forward_features(x)
    assert logits.shape == (2, 10)
    assert tuple(features) == model.feature_names
    assert list(features)[-2:] == ["last_conv", "logits"]
    assert features["last_conv"].ndim == 4 and features["last_conv"].shape[0] == 2
    assert all(value.ndim == 4 for key, value in features.items() if key != "logits")
    torch.testing.assert_close(features["logits"], logits)


def test_normalization_happens_inside_forward(name: str) -> None:
    model = zoo.build(name).eval()
    x = torch.rand(3, 3, 32, 32)
    mean = torch.tensor(zoo.CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(zoo.CIFAR10_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.forward_normalized((x - mean) / std))
    assert {"mean", "std"} <= set(dict(model.named_buffers()))


def test_input_gradient_flows_through_frozen_model(name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.pt"
    torch.save(zoo.build(name).state_dict(), path)
    model = zoo.load(name, weights=path)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    model(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_committed_weights_load(name: str) -> None:
    model_name = name
    path = zoo.weights_path(model_name)
    assert path.is_file(), f"{path} missing from the checkout (committed; made by {zoo.entry(model_name).command})"
    assert path.stat().st_size <= 5_000_000
    model = zoo.load(model_name)
    assert isinstance(model, zoo.ZooModel) and not model.training
    with torch.no_grad():
        assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    record = json.loads(path.with_suffix(".json").read_text())
    assert {"command", "seed", "epochs", "test_accuracy", "minutes", "torch"} <= set(record)
    # Issue 3's targets: 85 % for the model defenses protect, 80 % for the others.
    assert record["test_accuracy"] >= (0.85 if model_name == zoo.TARGET_MODEL else 0.80)


@pytest.mark.usefixtures("cifar10")
@pytest.mark.parametrize("model_name", sorted(zoo.names()))
def test_committed_model_accuracy_is_measured_as_recorded(model_name: str) -> None:
    """Each committed model's recorded test accuracy is re-measured on the same test images (all of the shared
    test split), to the 4 recorded digits."""
    images, labels = cifar10.load_split("test")
    record = json.loads(zoo.weights_path(model_name).with_suffix(".json").read_text())
    assert record["test_images"] == len(images)
    measured = data.accuracy(zoo.load(model_name), images, labels)
    assert round(measured, 4) == record["test_accuracy"], (model_name, measured)


def test_augment_is_seeded_crop_and_flip() -> None:
    images = torch.randint(0, 256, (5, 32, 32, 3), dtype=torch.uint8)
    first = data.augment(images, generator=torch.Generator().manual_seed(3))
    second = data.augment(images, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, second) and first.shape == images.shape and first.dtype == torch.uint8
    padded = torch.nn.functional.pad(images, (0, 0, 4, 4, 4, 4))
    for i in range(len(images)):
        crops = [padded[i, t : t + 32, s : s + 32] for t in range(9) for s in range(9)]
        assert any(torch.equal(first[i], c) or torch.equal(first[i], c.flip(1)) for c in crops)


def test_to_input_range_layout_and_accuracy() -> None:
    images = torch.tensor([[[[0, 255, 128]]]], dtype=torch.uint8).expand(4, 32, 32, 3)
    x = data.to_input(images)
    assert x.shape == (4, 3, 32, 32) and x.is_contiguous(memory_format=torch.channels_last)
    assert x.min() == 0.0 and x.max() == 1.0

    class Constant(torch.nn.Module):
        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.one_hot(torch.full((len(inputs),), 2), 10).float()

    assert data.accuracy(Constant(), images, torch.tensor([2, 2, 1, 0]), batch_size=3) == 0.5


def test_train_runs_one_tiny_epoch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The training command end to end on a 40-image synthetic data set (seconds, no real data)."""
    from research.zoo import train

    (tmp_path / "data").mkdir()
    for split in cifar10.SPLITS:
        with tarfile.open(tmp_path / "data" / f"{split}.tar.gz", "w:gz") as tar:
            for k, cls in enumerate(cifar10.CLASSES):
                for i in range(4):
                    buffer = io.BytesIO()
                    Image.fromarray(np.full((32, 32, 3), 25 * k, dtype=np.uint8)).save(buffer, format="JPEG")
                    info = tarfile.TarInfo(f"{split}/{cls}/{i:04d}.jpg")
                    info.size = buffer.tell()
                    buffer.seek(0)
                    tar.addfile(info, buffer)
    monkeypatch.setenv(cifar10.CACHE_ENV, str(tmp_path / "cache"))
    out = tmp_path / "w" / "vgg6_w32.pt"
    argv = ["--model", "vgg6_w32", "--epochs", "1", "--data", str(tmp_path / "data"), "--out", str(out),
            "--batch-size", "16", "--threads", "1", "--device", "cpu"]
    assert train.main(argv) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["epochs"] == 1 and record["seed"] == 1 and 0.0 <= record["test_accuracy"] <= 1.0
    assert "--epochs 1" in record["command"]
    zoo.load("vgg6_w32", weights=out)


def test_evaluate_table_marks_missing_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setenv(cifar10.ROOT_ENV, str(tmp_path / "no-data"))
    rows = evaluate.evaluate()
    assert [row["name"] for row in rows] == zoo.names()
    table = evaluate.render_table(rows)
    assert table.count("weights missing") == len(rows) and zoo.entry(zoo.TARGET_MODEL).command in table
    log = tmp_path / f"{zoo.TARGET_MODEL}.log"
    log.write_text(
        "[10:00:00] epoch 1/2 batch 50/196 loss 2.0 acc 0.25 lr 0.01 300 img/s\n"
        "[10:01:00] epoch 1/2 done: train loss 1.8 train acc 0.40 test acc 0.4510 epoch time 3.72 min\n"
        "[10:05:00] epoch 2/2 done: train loss 1.4 train acc 0.59 test acc 0.6000 epoch time 4.00 min\n"
    )
    assert evaluate.read_training_log(log) == [(1, 0.451, 3.72), (2, 0.6, 4.0)]
    runs = evaluate.render_training_runs()
    assert "2 epochs, 3.72–4.00 min per epoch" in runs and "45.1, 60.0" in runs and "no training log" in runs
    doc = tmp_path / "zoo.md"
    doc.write_text(f"# Zoo\n\n{evaluate.TABLE_START}\nold\n{evaluate.TABLE_END}\n\nmore text\n")
    evaluate.write_table(doc, table)
    text = doc.read_text()
    assert "old" not in text and "more text" in text and "weights missing" in text


def test_torchvision_wrapper_with_random_weights(tmp_path: Path) -> None:
    path = tmp_path / "resnet18.pt"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    model = zoo.load_torchvision("resnet18", path)
    assert isinstance(model, zoo.ImageNetClassifier) and not model.training
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        mean = torch.tensor(zoo.IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(zoo.IMAGENET_STD).view(1, 3, 1, 1)
        logits = model(x)
        torch.testing.assert_close(logits, model.model((x - mean) / std))
    assert logits.shape == (1, 1000)


def test_torchvision_hub_cache_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError, match="resnet18-"):
        zoo.load_torchvision("resnet18")
    expected = imagenet.hub_weight_files("resnet18")[0]
    assert expected.parent == tmp_path / "checkpoints"
    expected.parent.mkdir()
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), expected)
    assert zoo.load_torchvision("resnet18").model.fc.out_features == 1000


def test_torchvision_errors() -> None:
    with pytest.raises(zoo.UnknownArchitectureError, match="Did you mean 'resnet50'"):
        zoo.load_torchvision("resnet05", "x.pt")
    with pytest.raises(FileNotFoundError, match="not found"):
        zoo.load_torchvision("resnet18", "/nonexistent/weights.pt")
