"""HGD (submission_kit.hgd): networks, losses, training, data recipe, registry and the defenses/hgd_* folders.

Offline and fast: tiny widths and tiny synthetic models; tests needing the CIFAR-10 archives or trained weights
skip when they are missing.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from harness.competition import CompetitionConfig, run_competition
from harness.limits import LimitPolicy
from research.hgd import data, make_data, train
from submission_kit import zoo
from submission_kit.hgd import losses, registry
from submission_kit.hgd.networks import DAE, DUNET, build_denoiser, widths_for

ROOT = Path(__file__).resolve().parents[2]
GUIDES = ("pgd", "fgd", "lgd", "cgd")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class TinyClassifier(nn.Module):
    """A zoo-like classifier: ``forward_features`` with ``last_conv`` and ``logits``; 10 classes."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.fc = nn.Linear(4, 10)
        with torch.no_grad():
            self.conv[1].running_mean.uniform_(-0.2, 0.2)

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        last = self.conv(x)
        return {"last_conv": last, "logits": self.fc(last.mean(dim=(2, 3)))}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)["logits"]


def frozen(model: nn.Module) -> nn.Module:
    return model.eval().requires_grad_(False)


def _randomize_head(denoiser: nn.Module) -> None:
    with torch.no_grad():
        denoiser.head.weight.normal_(0, 0.1)
        denoiser.head.bias.normal_(0, 0.1)


# --- networks ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(32, 32), (33, 37), (17, 9)])
def test_dunet_is_residual_at_any_size(size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    net = DUNET(width=2).eval()
    x = torch.rand(2, 3, *size)
    assert torch.equal(net(x), x)  # the 1×1 head starts at zero: an untrained DUNET is the identity
    _randomize_head(net)
    out = net(x)
    assert out.shape == x.shape
    assert torch.allclose(out - x, net.head_output(x), atol=1e-6)  # x̂ = x* + (−dx̂), Eq. 4
    assert not torch.allclose(out, x)


def test_dae_reconstructs_without_laterals_or_shortcut() -> None:
    torch.manual_seed(0)
    net = DAE(width=2).eval()
    x = torch.rand(2, 3, 33, 37)
    assert net(x).shape == x.shape
    assert torch.allclose(net(x), net.head_output(x))
    dunet = DUNET(width=2)
    # DUNET's decoder blocks see feedback + lateral channels, DAE's only the feedback.
    assert dunet.decoder[0][0].in_channels == 8 + 8 and net.decoder[0][0].in_channels == 8
    assert dunet.decoder[3][0].in_channels == 4 + 2 and net.decoder[3][0].in_channels == 4


def test_architecture_follows_figure_3() -> None:
    net = DUNET(width=64)  # the paper's size
    assert [block[0].out_channels for block in net.encoder] == [64, 128, 256, 256, 256]
    assert [len(block) // 3 for block in net.encoder] == [2, 3, 3, 3, 3]  # C2, then four C3
    assert [block[0].stride for block in net.encoder] == [(1, 1)] + [(2, 2)] * 4
    assert [block[0].out_channels for block in net.decoder] == [256, 256, 128, 64]
    assert [len(block) // 3 for block in net.decoder] == [3, 3, 3, 2]
    assert all(conv.bias is None for conv in net.modules() if isinstance(conv, nn.Conv2d) and conv is not net.head)
    assert net.head.kernel_size == (1, 1) and net.head.out_channels == 3
    assert widths_for(16) == (16, 32, 64, 64, 64)
    with pytest.raises(ValueError, match="unknown denoiser architecture"):
        build_denoiser("unet")


# --- losses -----------------------------------------------------------------------------------------------


def test_losses_by_hand() -> None:
    denoised = torch.tensor([[[[0.0, 0.5]]]])
    clean = torch.tensor([[[[1.0, 0.0]]]])
    assert losses.pixel_loss(denoised, clean).item() == pytest.approx((1.0 + 0.5) / 2)
    features = torch.tensor([[[[1.0, -2.0], [0.0, 3.0]]]])
    assert losses.feature_loss(features, torch.zeros_like(features)).item() == pytest.approx(6.0 / 4)
    logits = torch.tensor([[0.0, math.log(3.0)], [2.0, 2.0]])
    assert losses.logits_loss(logits, torch.tensor([[1.0, 0.0], [2.0, 4.0]])).item() == pytest.approx(
        (1.0 + math.log(3.0) + 0.0 + 2.0) / 4)
    # softmax([0, ln 3]) = (1/4, 3/4); softmax([2, 2]) = (1/2, 1/2)
    expected = (-math.log(3 / 4) - math.log(1 / 2)) / 2
    assert losses.class_loss(logits, torch.tensor([1, 0])).item() == pytest.approx(expected)


def test_guided_losses_use_the_model_and_a_constant_clean_side() -> None:
    model = frozen(TinyClassifier())
    clean = torch.rand(3, 3, 8, 8)
    denoised = (clean + 0.1 * torch.randn(3, 3, 8, 8)).requires_grad_(True)
    labels = torch.tensor([1, 2, 3])
    for guide in GUIDES:
        target = losses.clean_target(model, clean, labels, guide)
        assert not target.requires_grad
        value = losses.guided_loss(guide, denoised, target, model)
        expected = {
            "pgd": losses.pixel_loss(denoised, clean),
            "fgd": losses.feature_loss(model.forward_features(denoised)["last_conv"],
                                       model.forward_features(clean)["last_conv"]),
            "lgd": losses.logits_loss(model(denoised), model(clean)),
            "cgd": losses.class_loss(model(denoised), labels),
        }[guide]
        assert value.item() == pytest.approx(expected.item(), rel=1e-6)
        (grad,) = torch.autograd.grad(value, denoised)
        assert grad.abs().sum() > 0
    assert losses.guided_loss("lgd", clean, model(clean), model).item() == 0.0
    with pytest.raises(ValueError, match="unknown guide"):
        losses.guided_loss("xgd", denoised, clean, model)


# --- training ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("guide", GUIDES)
def test_a_training_step_lowers_the_loss_and_leaves_the_classifier_alone(guide: str) -> None:
    torch.manual_seed(0)
    model = frozen(TinyClassifier())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    denoiser = DUNET(width=2)
    _randomize_head(denoiser)
    clean = torch.rand(4, 3, 12, 12)
    adversarial = (clean + 0.05 * torch.randn(clean.shape)).clamp(0, 1)
    labels = torch.tensor([0, 1, 2, 3])
    target = losses.clean_target(model, clean, labels, guide)
    optimizer = torch.optim.Adam(denoiser.parameters(), lr=1e-3)
    denoiser.train()
    # train_step returns the batch loss before its update: the second value is the loss after one step
    first, second = (train.train_step(denoiser, optimizer, model, adversarial, target, guide) for _ in range(2))
    assert second < first
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def _tiny_set(count: int, seed: int, size: int = 32) -> data.HGDSet:
    rng = np.random.default_rng(seed)
    clean = rng.integers(0, 256, size=(count, size, size, 3), dtype=np.uint8)
    noise = rng.integers(-8, 9, size=(2 * count, size, size, 3))
    source = np.tile(np.arange(count), 2)
    images = np.clip(clean[source].astype(int) + noise, 0, 255).astype(np.uint8)
    return data.HGDSet(clean, rng.integers(0, 10, count), images, source, np.zeros(2 * count, dtype=np.int64),
                       np.full(2 * count, 8), ("noise",))


def test_train_denoiser_keeps_the_best_epoch_and_checks_the_classifier(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = frozen(TinyClassifier())
    denoiser = DUNET(width=2)
    # Validation losses 0.5, 0.1, 0.9: the middle epoch is the best, neither the first nor the last.
    val_losses = iter([0.5, 0.1, 0.9])
    states: list[dict[str, torch.Tensor]] = []

    def evaluate(net: nn.Module, *args: object, **kwargs: object) -> tuple[float, float]:
        states.append({k: v.detach().clone() for k, v in net.state_dict().items()})
        return next(val_losses), 0.5

    monkeypatch.setattr(train, "evaluate", evaluate)
    config = train.DenoiserTrainConfig(guide="lgd", epochs=3, batch_size=4)
    state, summary = train.train_denoiser(denoiser, model, _tiny_set(6, 0, 12), _tiny_set(3, 1, 12), config,
                                          log=lambda _: None)
    assert summary["best_epoch"] == 2 and summary["epochs_run"] == 3 and summary["val_loss"] == 0.1
    assert not denoiser.training
    assert all(torch.equal(state[k], v) for k, v in states[1].items())  # epoch 2's weights, returned
    assert all(torch.equal(state[k], v) for k, v in denoiser.state_dict().items())  # and loaded
    assert not all(torch.equal(state[k], v) for k, v in states[2].items() if v.is_floating_point())
    monkeypatch.undo()
    # a classifier left in training mode updates its BatchNorm statistics: caught
    with pytest.raises(RuntimeError, match="guide model changed"):
        train.train_denoiser(DUNET(width=2), TinyClassifier().requires_grad_(False), _tiny_set(4, 0, 12),
                             _tiny_set(2, 1, 12), train.DenoiserTrainConfig(guide="lgd", epochs=1, batch_size=4),
                             log=lambda _: None)


def _fake_zoo_load(name: str, device: str = "cpu", **_: object) -> nn.Module:
    """The zoo architecture with random weights (no trained weights needed)."""
    torch.manual_seed(len(name))
    return frozen(zoo.build(name)).to(device)


def test_train_command_writes_a_loadable_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "data"
    _tiny_set(4, 0).save(folder / "train.npz")
    _tiny_set(2, 1).save(folder / "val.npz")
    monkeypatch.setattr(zoo, "load", _fake_zoo_load)
    out = tmp_path / "weights" / "dunet_fgd.pt"
    assert train.main(["--guide", "fgd", "--width", "2", "--epochs", "1", "--batch-size", "4", "--data-dir",
                       str(folder), "--out", str(out), "--threads", "1", "--device", "cpu"]) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["name"] == "dunet_fgd" and record["guide"] == "fgd" and record["epochs_run"] == 1
    assert record["train_versions"] == 8 and "--guide fgd" in record["command"] and record["torch"]
    denoiser = registry.load_denoiser("dunet_fgd", weights_dir=out.parent)
    assert isinstance(denoiser, DUNET) and not denoiser.training
    assert denoiser.widths == (2, 4, 8, 8, 8)
    assert not any(p.requires_grad for p in denoiser.parameters())


def test_tables_command_writes_its_blocks_to_out_and_only_prints_for_a_dash(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--out`` (a path from the shared research parser) gets the table's marked block; ``--out -`` writes nothing."""
    from research.hgd import tables

    folder = tmp_path / "data"
    for split, seed in (("white", 3), ("black", 4)):
        tiny = _tiny_set(3, seed)
        data.HGDSet(tiny.clean, tiny.labels, tiny.images, tiny.source, tiny.attack, np.tile([4, 16], 3),
                    tiny.attack_names).save(folder / f"{split}.npz")
    monkeypatch.setattr(zoo, "load", _fake_zoo_load)
    monkeypatch.chdir(tmp_path)
    common = ["table2", "--data-dir", str(folder), "--weights-dir", str(tmp_path / "no-weights"), "--skip-missing",
              "--threads", "1", "--device", "cpu"]
    out = tmp_path / "docs" / "hgd.md"
    assert tables.main([*common, "--out", str(out)]) == 0
    text = out.read_text()
    assert "<!-- hgd-table2:start -->" in text and "<!-- hgd-table2:end -->" in text
    assert tables.main([*common, "--out", "-"]) == 0
    assert out.read_text() == text and not (tmp_path / "-").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "docs"]


# --- data -------------------------------------------------------------------------------------------------


def _tiny_models() -> dict[str, nn.Module]:
    return {name: frozen(TinyClassifier(seed)) for seed, name in enumerate(zoo.names())}


def test_make_split_follows_the_recipe() -> None:
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 256, size=(6, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(6)
    made = data.make_split(clean, labels, data.TRAIN_ATTACKS, _tiny_models(), seed=3, batch_size=4,
                           log=lambda _: None)
    assert len(made) == 6 * len(data.TRAIN_ATTACKS)
    assert made.attack_names[made.attack_names.index("noop")] == "noop"
    for index, name in enumerate(made.attack_names):
        part = made.select(made.attack == index)
        assert sorted(part.source.tolist()) == list(range(6))
        linf = np.abs(part.images.astype(int) - clean[part.source].astype(int)).max(axis=(1, 2, 3))
        if name == "noop":
            assert (linf == 0).all() and (part.eps == 0).all()
        else:
            assert ((part.eps >= 1) & (part.eps <= 16)).all()
            assert (linf <= part.eps).all()
            assert (linf > 0).any()
    again = data.make_split(clean, labels, data.TRAIN_ATTACKS, _tiny_models(), seed=3, batch_size=4,
                            log=lambda _: None)
    assert np.array_equal(made.images, again.images) and np.array_equal(made.eps, again.eps)
    test = data.make_split(clean, labels, data.BLACK_ATTACKS, _tiny_models(), epsilons=(4, 16),
                           log=lambda _: None)
    assert len(test) == 6 * 2 * 2 and sorted(set(test.eps.tolist())) == [4, 16]
    assert data.AttackSpec("ifgsm", ("a", "b"), 4).name == "ifgsm4:a+b"


def test_set_round_trip_and_missing_data_message(tmp_path: Path) -> None:
    dataset = _tiny_set(3, 0, 8)
    dataset.save(tmp_path / "train.npz")
    loaded = data.load_split(tmp_path, "train")
    assert np.array_equal(loaded.images, dataset.images) and loaded.attack_names == dataset.attack_names
    assert len(loaded.head(1)) == 2
    with pytest.raises(data.DataNotFoundError, match="python -m research.hgd.make_data"):
        data.load_split(tmp_path, "val")


def test_recipe_keeps_train_val_and_test_apart() -> None:
    recipe = data.Recipe(train_images=5, val_images=3, test_images=4)
    train_split = (np.arange(20 * 3).reshape(20, 1, 1, 3).astype(np.uint8), np.arange(20) % 10)
    test_split = (np.arange(10 * 3).reshape(10, 1, 1, 3).astype(np.uint8) + 100, np.arange(10))
    chosen = data.select_images(recipe, train_split, test_split)
    train_ids = set(chosen["train"][0][:, 0, 0, 0].tolist())
    val_ids = set(chosen["val"][0][:, 0, 0, 0].tolist())
    assert len(train_ids) == 5 and len(val_ids) == 3 and not train_ids & val_ids
    assert len(chosen["test"][0]) == 4
    assert recipe.models == ("resnet8_w32", "vgg6_w32", "vgg6_w48")
    assert "resnet8_w32" not in {m for spec in recipe.train_attacks for m in spec.models}  # black-box hold-out
    key = data.recipe_key(recipe, chosen, {})
    assert key == data.recipe_key(recipe, chosen, {}) != data.recipe_key(data.Recipe(seed=1), chosen, {})


@pytest.mark.usefixtures("cifar10")
def test_make_data_command_on_tiny_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = _tiny_models()
    monkeypatch.setattr(zoo, "load", lambda name, device="cpu", **_: models[name])
    out = tmp_path / "sets"
    assert make_data.main(["--train-images", "3", "--val-images", "2", "--test-images", "2", "--out", str(out),
                           "--threads", "1", "--device", "cpu"]) == 0
    counts = json.loads((out / "recipe.json").read_text())["counts"]
    assert counts == {"train": {"clean": 3, "images": 24}, "val": {"clean": 2, "images": 16},
                      "white": {"clean": 2, "images": 8}, "black": {"clean": 2, "images": 8}}
    white = data.load_split(out, "white")
    assert white.clean.shape == (2, 32, 32, 3) and white.images.dtype == np.uint8


# --- registry ---------------------------------------------------------------------------------------------


def test_names_and_errors(tmp_path: Path) -> None:
    assert registry.parse_name("dunet_lgd") == registry.DenoiserSpec("dunet", "lgd", zoo.TARGET_MODEL)
    assert registry.parse_name("dunet_lgd_vgg6_w32").model == "vgg6_w32"
    assert registry.DenoiserSpec("dae", "pgd").name == "dae_pgd"
    with pytest.raises(registry.UnknownDenoiserError, match="Did you mean 'dunet_lgd'"):
        registry.parse_name("dunet_lgdd")
    with pytest.raises(registry.DenoiserWeightsNotFoundError,
                       match="python -m research.hgd.train --arch dunet --guide cgd"):
        registry.load_denoiser("dunet_cgd", weights_dir=tmp_path)
    assert set(registry.names()) >= {"dunet_pgd", "dunet_fgd", "dunet_lgd", "dunet_cgd", "dae_pgd"}


# --- defense folders --------------------------------------------------------------------------------------

FOLDERS = [f"hgd_{guide}" for guide in ("lgd", "fgd", "cgd", "pgd")]


def _folder_module(folder: str):
    spec = importlib.util.spec_from_file_location(f"defense_{folder}", ROOT / "defenses" / folder / "defense.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def _sample_inputs(tmp_path: Path, count: int) -> Path:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for png in sorted((ROOT / "sample_data").glob("*.png"))[:count]:
        shutil.copyfile(png, inputs / png.name)
    return inputs


def test_folder_without_weights_names_the_training_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty" / "hgd").mkdir(parents=True)  # an HGD weights folder without the denoisers
    monkeypatch.setenv(registry.WEIGHTS_ENV, str(tmp_path / "empty"))
    inputs = _sample_inputs(tmp_path, 2)
    for folder in FOLDERS:
        guide = folder.split("_")[1]
        with pytest.raises(registry.DenoiserWeightsNotFoundError, match=f"--guide {guide}"):
            _folder_module(folder).main([str(inputs), str(tmp_path / "out.csv")])


@pytest.mark.parametrize("folder", FOLDERS)
def test_folder_runs_with_a_fresh_denoiser(folder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The folder's wiring before any training: an untrained DUNET is the identity, so it answers as `base`."""
    name = "dunet_" + folder.split("_")[1]
    weights = tmp_path / "weights"
    registry.save_denoiser(weights / "hgd" / f"{name}.pt", DUNET(width=2), registry.parse_name(name), 2)
    monkeypatch.setenv(registry.WEIGHTS_ENV, str(weights))
    inputs = _sample_inputs(tmp_path, 6)
    _folder_module(folder).main([str(inputs), str(tmp_path / "hgd.csv")])
    _folder_module("base").main([str(inputs), str(tmp_path / "base.csv")])
    rows = list(csv.reader(open(tmp_path / "hgd.csv")))
    assert [r[0] for r in rows] == sorted(p.name for p in inputs.glob("*.png"))
    assert rows == list(csv.reader(open(tmp_path / "base.csv")))


# The denoisers and the target model are committed: a missing file is a packaging loss and fails here.
TRAINED_FOLDERS = FOLDERS


def test_trained_hgd_folders_run_through_the_harness(tmp_path: Path) -> None:
    config = CompetitionConfig(input_dir=ROOT / "sample_data", attacks_dirs=(ROOT / "attacks",),
                               defenses_dirs=(ROOT / "defenses",), output_dir=tmp_path / "results",
                               epsilons=(16,), only=("noop", "fgsm", *TRAINED_FOLDERS),
                               policy=LimitPolicy(minimum_seconds=300))
    result = run_competition(config, echo=lambda _: None)
    assert not any(r.problem for r in result.runs), [r.problem for r in result.runs]
    rows = {(r["track"], r["name"]): r for r in csv.DictReader(open(tmp_path / "results" / "leaderboard.csv"))}
    for folder in TRAINED_FOLDERS:
        assert rows[("defense", folder)]["failures"] in ("", "0")
        assert float(rows[("defense", folder)]["clean_accuracy"]) >= 0.6  # 20 images; NA scores 100 % here
