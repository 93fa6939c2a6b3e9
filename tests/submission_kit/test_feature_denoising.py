"""Feature denoising (Xie et al. 2019): blocks against naive loops and hand-made tensors, the variants, one
adversarial training step, the defense folders through the harness, and the report helpers."""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.competition import CompetitionConfig, run_competition
from harness.limits import LimitPolicy
from harness.submission import SubmissionType, discover
from research.feature_denoising import blackbox, make_defense, train, whitebox
from research.feature_denoising.adversarial import adversarial_step, training_examples
from research.zoo.evaluate import write_table
from submission_kit import zoo
from submission_kit.attack_methods import gradient
from submission_kit.feature_denoising import blocks, defense, variants
from submission_kit.feature_denoising.networks import DenoisingResNet

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"fd_nonlocal": "nonlocal_gaussian", "adv_baseline": "baseline"}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# -- blocks ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("op", "conv1x1"), [(op, conv) for op in blocks.OPS for conv in (True, False)
                                             if conv or op != "null"])  # a null block needs its 1x1 convolution
def test_new_block_is_the_identity(op: str, conv1x1: bool) -> None:
    block = blocks.DenoisingBlock(6, op, conv1x1=conv1x1)
    x = _rand(3, 6, 5, 7).float()
    for mode in (block.train, block.eval):
        mode()
        with torch.no_grad():
            assert torch.equal(block(x), x), (op, mode.__name__)


def test_block_ablation_switches() -> None:
    no1x1 = blocks.DenoisingBlock(4, "nonlocal_gaussian", conv1x1=False)
    assert isinstance(no1x1.conv, torch.nn.Identity)
    nores = blocks.DenoisingBlock(4, "nonlocal_gaussian", residual=False)
    assert torch.all(nores.bn.weight == 1)  # with γ = 0 it would output zeros
    x = _rand(2, 4, 3, 3).float()
    assert not torch.allclose(nores.eval()(x), x)
    with pytest.raises(ValueError, match="null"):
        blocks.DenoisingBlock(4, "null", conv1x1=False)
    with pytest.raises(ValueError, match="unknown denoising operation"):
        blocks.DenoisingBlock(4, "gaussian")


def _positions(h: int, w: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(h) for j in range(w)]


def test_nonlocal_gaussian_equals_a_naive_loop() -> None:
    x, theta, phi = _rand(2, 3, 2, 3, seed=1), _rand(2, 2, 2, 3, seed=2), _rand(2, 2, 2, 3, seed=3)
    expected = torch.zeros_like(x)
    for n in range(2):
        for i in _positions(2, 3):
            f = {j: math.exp(float(theta[n, :, i[0], i[1]] @ phi[n, :, j[0], j[1]]) / math.sqrt(2))
                 for j in _positions(2, 3)}
            total = sum(f.values())
            for j, weight in f.items():
                expected[n, :, i[0], i[1]] += weight / total * x[n, :, j[0], j[1]]
    assert torch.allclose(blocks.nonlocal_gaussian(x, theta, phi), expected, atol=1e-12)


@pytest.mark.parametrize("shape", [(2, 5, 2, 2), (2, 2, 2, 3)])  # C > H·W (affinity) and C <= H·W (Gram)
def test_nonlocal_dot_equals_a_naive_loop(shape: tuple[int, int, int, int]) -> None:
    x = _rand(*shape, seed=4)
    n, _, h, w = shape
    expected = torch.zeros_like(x)
    for b in range(n):
        for i in _positions(h, w):
            for j in _positions(h, w):
                expected[b, :, i[0], i[1]] += float(x[b, :, i[0], i[1]] @ x[b, :, j[0], j[1]]) * x[b, :, j[0], j[1]]
    assert torch.allclose(blocks.nonlocal_dot(x), expected / (h * w), atol=1e-12)


def test_gaussian_op_embeds_to_half_the_channels() -> None:
    op = blocks.DenoisingOp(8, "nonlocal_gaussian")
    assert op.theta.out_channels == op.phi.out_channels == 4
    x = _rand(2, 8, 3, 3).float()
    with torch.no_grad():
        assert torch.allclose(op(x), blocks.nonlocal_gaussian(x, op.theta(x), op.phi(x)))
    assert sum(p.numel() for p in blocks.DenoisingOp(8, "nonlocal_dot").parameters()) == 0


@pytest.mark.parametrize("kernel_size", [3, 5])
def test_bilateral_equals_a_naive_loop(kernel_size: int) -> None:
    x, theta, phi = _rand(2, 3, 4, 5, seed=5), _rand(2, 2, 4, 5, seed=6), _rand(2, 2, 4, 5, seed=7)
    r = kernel_size // 2
    expected = torch.zeros_like(x)
    for n in range(2):
        for i in _positions(4, 5):
            window = [j for j in _positions(4, 5) if abs(j[0] - i[0]) <= r and abs(j[1] - i[1]) <= r]
            f = {j: math.exp(float(theta[n, :, i[0], i[1]] @ phi[n, :, j[0], j[1]]) / math.sqrt(2)) for j in window}
            total = sum(f.values())
            for j, weight in f.items():
                expected[n, :, i[0], i[1]] += weight / total * x[n, :, j[0], j[1]]
    got = blocks.bilateral_filter(x, theta, phi, kernel_size=kernel_size)
    assert torch.allclose(got, expected, atol=1e-12)


def test_mean_filter_by_hand() -> None:
    x = torch.arange(12, dtype=torch.float64).view(1, 1, 3, 4)
    # Windows are cut at the border: a corner averages its 4 in-map neighbours, an edge its 6.
    expected = torch.tensor([[2.5, 3.0, 4.0, 4.5], [4.5, 5.0, 6.0, 6.5], [6.5, 7.0, 8.0, 8.5]], dtype=torch.float64)
    assert torch.allclose(blocks.mean_filter(x)[0, 0], expected)


def test_median_filter_by_hand() -> None:
    grid = torch.tensor([[1.0, 9.0, 2.0], [8.0, 3.0, 7.0], [4.0, 6.0, 5.0]])
    x = torch.stack([grid, 10 * grid]).unsqueeze(0)  # two channels, filtered separately
    # Centre: median of 1..9 = 5. Corner (0, 0): {1, 9, 8, 3} -> lower middle value 3; edge (1, 0):
    # {1, 9, 8, 3, 4, 6} -> 4; and so on (even counts at the border give the lower middle value).
    expected = torch.tensor([[3.0, 3.0, 3.0], [4.0, 5.0, 5.0], [4.0, 5.0, 5.0]])
    got = blocks.median_filter(x)[0]
    assert torch.equal(got[0], expected) and torch.equal(got[1], 10 * expected)
    salt = torch.zeros(1, 1, 5, 5)
    salt[0, 0, 2, 2] = 100.0  # an isolated outlier disappears
    assert torch.equal(blocks.median_filter(salt), torch.zeros_like(salt))


def test_median_filter_5x5_equals_a_naive_loop() -> None:
    x = _rand(1, 2, 4, 6, seed=8)
    expected = torch.zeros_like(x)
    for c in range(2):
        for i in _positions(4, 6):
            values = sorted(float(x[0, c, j[0], j[1]]) for j in _positions(4, 6)
                            if abs(j[0] - i[0]) <= 2 and abs(j[1] - i[1]) <= 2)
            expected[0, c, i[0], i[1]] = values[(len(values) - 1) // 2]
    assert torch.equal(blocks.median_filter(x, kernel_size=5), expected)


def test_median_filter_passes_gradients_to_the_median_only() -> None:
    x = torch.tensor([[1.0, 9.0, 2.0], [8.0, 3.0, 7.0], [4.0, 6.0, 5.0]]).view(1, 1, 3, 3).requires_grad_(True)
    blocks.median_filter(x)[0, 0, 1, 1].backward()
    assert x.grad.sum() == 1 and x.grad[0, 0, 2, 2] == 1  # the value 5


# -- networks and variants -------------------------------------------------------------------------------------


def test_network_feature_names_and_shapes() -> None:
    model = variants.build("nonlocal_gaussian").eval()
    with torch.no_grad():
        features = model.forward_features(torch.rand(2, 3, 32, 32))
    shapes = {name: tuple(value.shape[1:]) for name, value in features.items()}
    assert shapes == {"stem": (32, 32, 32), "block1": (32, 32, 32), "block2": (64, 16, 16),
                      "denoise2": (64, 16, 16), "block3": (128, 8, 8), "last_conv": (128, 8, 8), "logits": (10,)}
    assert isinstance(model.blocks["last_conv"], blocks.DenoisingBlock)
    assert isinstance(model, zoo.ZooModel)


def test_baseline_is_the_zoo_resnet8() -> None:
    assert variants.build("baseline").state_dict().keys() == zoo.build("resnet8_w32").state_dict().keys()


@pytest.mark.parametrize("name", [n for n in variants.names() if n != "baseline"])
def test_every_variant_starts_as_the_baseline(name: str) -> None:
    torch.manual_seed(3)
    base = variants.build("baseline").eval()
    torch.manual_seed(3)
    model = variants.build(name).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        same = torch.allclose(model(x), base(x), atol=1e-5)
    assert same == variants.get(name).residual  # blocks without a skip connection are not the identity


def test_denoise_after_stage_names() -> None:
    model = DenoisingResNet(op="mean", denoise_after=(1,))
    assert model.feature_names == ("stem", "block1", "denoise1", "block2", "last_conv", "logits")
    with pytest.raises(ValueError, match="stages 1..3"):
        DenoisingResNet(op="mean", denoise_after=(4,))


def test_unknown_variant_suggests_close_names() -> None:
    with pytest.raises(variants.UnknownModelError, match="Did you mean 'nonlocal_gaussian'"):
        variants.get("nonlocal_gausian")
    with pytest.raises(KeyError):
        variants.build("nope")


def test_missing_weights_error_names_the_training_command(tmp_path: Path) -> None:
    with pytest.raises(variants.WeightsNotFoundError,
                       match="python -m research.feature_denoising.train --variant mean --attack fgsm_rs"):
        variants.load("mean", weights=tmp_path / "absent.pt")


def test_load_reads_a_state_dict(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = variants.build("null")
    torch.save(model.state_dict(), tmp_path / "null.pt")
    loaded = variants.load("null", weights=tmp_path / "null.pt")
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model.eval()(x))


# -- adversarial training ---------------------------------------------------------------------------------------


def _batch(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, 32, 32, generator=generator), torch.randint(0, 10, (n,), generator=generator)


def test_one_training_step_lowers_the_loss() -> None:
    torch.manual_seed(0)
    model = variants.build("nonlocal_gaussian")
    x, y = _batch()
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    x_adv = training_examples(model, x, y, attack="fgsm_rs", eps=8 / 255, generator=torch.Generator().manual_seed(1))
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6 and 0 <= x_adv.min() and x_adv.max() <= 1
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    before, _ = adversarial_step(model, optimizer, x_adv, y, loss_fn)
    with torch.no_grad():
        after = float(loss_fn(model(x_adv), y))
    assert after < before


def test_attack_freezes_batchnorm_statistics() -> None:
    torch.manual_seed(0)
    model = variants.build("mean").train()
    x, y = _batch(8)
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    for attack in ("fgsm_rs", "pgd"):
        training_examples(model, x, y, attack=attack, eps=8 / 255, pgd_steps=2, generator=torch.Generator())
    assert all(torch.equal(model.state_dict()[k], v) for k, v in stats.items())
    assert model.training  # restored for the update


def test_pgd_training_attack_mixes_clean_and_random_starts() -> None:
    torch.manual_seed(0)
    model = variants.build("baseline")
    x, y = _batch(6)
    all_clean = training_examples(model, x, y, attack="pgd", eps=8 / 255, pgd_steps=2, clean_start_prob=1.0,
                                  generator=torch.Generator().manual_seed(0))
    expected = gradient.pgd(model, x, eps=8 / 255, alpha=4 / 255, steps=2, random_start=False, y=y)
    assert torch.allclose(all_clean, expected)
    # Per image: a clean start ends where clean-start PGD ends; a random start elsewhere. The share of clean starts
    # follows clean_start_prob (0, the recipe's 0.2, 0.5 and 1 on 64 images; bounds at > 4 binomial SDs).
    x, y = _batch(64)
    reference = gradient.pgd(model, x, eps=8 / 255, alpha=4 / 255, steps=2, random_start=False, y=y)
    for prob, low, high in ((0.0, 0, 0), (0.2, 1, 26), (0.5, 16, 48), (1.0, 64, 64)):
        mixed = training_examples(model, x, y, attack="pgd", eps=8 / 255, pgd_steps=2, clean_start_prob=prob,
                                  generator=torch.Generator().manual_seed(1))
        from_clean = torch.isclose(mixed, reference, atol=1e-6).flatten(1).all(dim=1)
        assert low <= int(from_clean.sum()) <= high, (prob, int(from_clean.sum()))
    with pytest.raises(ValueError, match="unknown training attack"):
        training_examples(model, x, y, attack="cw", eps=8 / 255, generator=torch.Generator())


def test_plan_steps_fits_the_budget() -> None:
    assert train.plan_steps(1000, None, 10.0) == 1000
    assert train.plan_steps(1000, 1.0, None) == 1000
    assert train.plan_steps(1000, 2.0, 10.0, overhead_seconds=60, safety=1.0) == 270  # (600 - 60) / 2
    assert train.plan_steps(100, 2.0, 10.0) == 100  # never more than planned
    assert train.plan_steps(100, 1e6, 1.0) == 1  # at least one step


@pytest.mark.usefixtures("cifar10")
def test_train_command_writes_weights_record_and_log(tmp_path: Path) -> None:
    out = tmp_path / "mean.pt"
    assert train.main(["--variant", "mean", "--train-images", "64", "--batch-size", "32", "--steps", "2",
                       "--monitor-images", "0", "--test-images", "100", "--eval-images", "20", "--threads", "1",
                       "--out", str(out)]) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["steps"] == 2 and record["attack"] == "fgsm_rs" and record["pgd10_images"] == 20
    assert "--steps 2" in record["reproduce"] and 0 <= record["test_accuracy"] <= 1
    assert "finished mean" in out.with_suffix(".log").read_text()
    variants.load("mean", weights=out)


class _Clock:
    """Stands in for ``time`` in the training module: every reading advances one second, so a wall-clock budget
    stops a run at the same step on every machine."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        self.now += 1.0
        return self.now

    def strftime(self, fmt: str) -> str:
        return "00:00:00"


def _fake_cifar(monkeypatch: pytest.MonkeyPatch) -> None:
    generator = np.random.default_rng(0)
    images = generator.integers(0, 256, size=(48, 32, 32, 3), dtype=np.uint8)
    labels = generator.integers(0, 10, size=48).astype(np.int64)
    monkeypatch.setattr(train.cifar10, "load_split", lambda split, root=None: (images, labels))
    monkeypatch.setattr(train, "test_subset", lambda n, root=None: (images[:8], labels[:8], np.arange(8)))
    monkeypatch.setattr(train, "pgd_accuracy", lambda *args, **kwargs: 0.0)


def _train_args(out: Path) -> list[str]:
    return ["--train-images", "48", "--batch-size", "8", "--monitor-images", "0", "--test-images", "8",
            "--eval-images", "8", "--threads", "1", "--out", str(out)]


def test_budget_stopped_run_is_repeated_exactly_by_its_record(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_cifar(monkeypatch)
    monkeypatch.setattr(train, "time", _Clock())
    # The machine slows down after calibration: the whole 2-epoch plan (12 steps) is scheduled, and the budget
    # (0.35 min = 21 clock readings, about 10 of them for calibration) stops the run part-way.
    monkeypatch.setattr(train, "plan_steps", lambda planned, *args, **kwargs: planned)
    out = tmp_path / "budget" / "baseline.pt"
    out.parent.mkdir()
    assert train.main(["--variant", "baseline", "--epochs", "2", "--max-minutes", "0.35", *_train_args(out)]) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["stopped_by_budget"] and 2 <= record["steps"] < record["scheduled_steps"], record
    assert f"--steps {record['scheduled_steps']} --stop-after {record['steps']}" in record["reproduce"]
    monkeypatch.undo()
    _fake_cifar(monkeypatch)

    def rerun(command: str, name: str) -> dict[str, torch.Tensor]:
        argv = command.split()[3:]  # after "python -m research.feature_denoising.train"
        path = tmp_path / name / "baseline.pt"
        path.parent.mkdir()
        assert train.main([*argv, *_train_args(path)]) == 0
        rerun_record = json.loads(path.with_suffix(".json").read_text())
        assert rerun_record["reproduce"] == record["reproduce"]
        return torch.load(path)

    original = torch.load(out)
    repeated = rerun(record["reproduce"], "repeated")
    assert original.keys() == repeated.keys()
    assert all(torch.equal(original[key], repeated[key]) for key in original)
    # The schedule length matters: the same steps under a schedule of their own length give other weights.
    record["reproduce"] = record["reproduce"].replace(f"--steps {record['scheduled_steps']} --stop-after ", "--steps ")
    shorter = rerun(record["reproduce"], "shorter")
    assert not all(torch.equal(original[key], shorter[key]) for key in original)


def test_reproduce_command_states_schedule_and_stop() -> None:
    config = train.TrainConfig(epochs=15, seed=0, attack="fgsm_rs", pgd_steps=3)
    command = train.reproduce_command("baseline", config, scheduled_steps=992, steps=977)
    assert command == ("python -m research.feature_denoising.train --variant baseline --attack fgsm_rs "
                       "--steps 992 --stop-after 977 --max-minutes 0 --seed 0")
    assert "--stop-after" not in train.reproduce_command("mean", config, scheduled_steps=675, steps=675)
    with pytest.raises(ValueError, match="steps done"):
        train.reproduce_command("mean", config, scheduled_steps=5, steps=6)
    with pytest.raises(SystemExit):
        train.main(["--variant", "mean", "--stop-after", "3"])


def test_committed_records_reproduce_their_schedules() -> None:
    """Each committed record's reproduce command states the schedule its log says the run used."""
    for record_path in sorted((ROOT / "submission_kit" / "feature_denoising" / "weights").glob("*.json")):
        record = json.loads(record_path.read_text())
        log = record_path.with_suffix(".log").read_text()
        match = re.search(r"-> (\d+) of \d+ planned steps", log)
        scheduled = int(match.group(1)) if match else int(re.search(r"--steps (\d+)", record["command"]).group(1))
        assert record["scheduled_steps"] == scheduled, record_path.name
        assert f"--steps {scheduled}" in record["reproduce"], record_path.name
        assert ("--stop-after" in record["reproduce"]) == (record["steps"] < scheduled), record_path.name
        assert record["stopped_by_budget"] == (record["steps"] < scheduled), record_path.name


# -- defense folders -------------------------------------------------------------------------------------------


def test_committed_folders_are_what_make_defense_writes(tmp_path: Path) -> None:
    committed = sorted(p.name for p in (ROOT / "defenses").glob("*")
                       if p.name in FOLDERS or p.name.startswith("fd_"))
    assert set(FOLDERS) <= set(committed)
    for name in committed:
        variant = json.loads((ROOT / "defenses" / name / "variant.json").read_text())["variant"]
        assert make_defense.default_name(variant) == name
        made = make_defense.write_folder(variant, tmp_path)
        assert made.name == name
        for path in made.iterdir():
            assert (ROOT / "defenses" / name / path.name).read_bytes() == path.read_bytes(), path.name
    found = discover([tmp_path])
    assert found.problems == () and {s.type for s in found.submissions} == {SubmissionType.DEFENSE}


def test_read_spec_errors(tmp_path: Path) -> None:
    (tmp_path / "variant.json").write_text(json.dumps({"variant": "nonlocal_gausian"}))
    with pytest.raises(ValueError, match="Did you mean 'nonlocal_gaussian'"):
        defense.read_spec(tmp_path)
    (tmp_path / "variant.json").write_text(json.dumps({"variant": "mean", "weights": "../elsewhere.pt"}))
    with pytest.raises(ValueError, match="inside the folder"):
        defense.read_spec(tmp_path)
    (tmp_path / "variant.json").write_text("{}")
    with pytest.raises(ValueError, match="'variant' key"):
        defense.read_spec(tmp_path)


def _run_folders(tmp_path: Path, defenses_dir: Path) -> dict[str, list]:
    config = CompetitionConfig(input_dir=ROOT / "sample_data", attacks_dirs=(ROOT / "attacks",),
                               defenses_dirs=(defenses_dir,), output_dir=tmp_path / "results", epsilons=(8,),
                               only=("noop", *FOLDERS), policy=LimitPolicy(minimum_seconds=300))
    result = run_competition(config, echo=lambda _: None)
    assert not any(r.problem for r in result.runs), [(r.name, r.problem) for r in result.runs]
    rows: dict[str, list] = {name: [] for name in FOLDERS}
    for row in result.predictions:
        rows[row.defense].append(row)
    return rows


def test_folders_run_through_the_harness_with_fresh_weights(tmp_path: Path) -> None:
    defenses_dir = tmp_path / "defenses"
    for name, variant in FOLDERS.items():
        folder = shutil.copytree(ROOT / "defenses" / name, defenses_dir / name)
        torch.manual_seed(0)
        torch.save(variants.build(variant).state_dict(), folder / "model.pt")
        (folder / "variant.json").write_text(json.dumps({"variant": variant, "weights": "model.pt"}))
    rows = _run_folders(tmp_path, defenses_dir)
    for name, predictions in rows.items():
        assert len({r.image_id for r in predictions}) == 20, name
        assert all(r.prediction is not None and 0 <= r.prediction < 10 for r in predictions), name


def test_folder_without_weights_names_the_training_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = shutil.copytree(ROOT / "defenses" / "fd_nonlocal", tmp_path / "fd_nonlocal")
    (folder / "variant.json").write_text(json.dumps({"variant": "nonlocal_gaussian", "weights": "absent.pt"}))
    with pytest.raises(SystemExit, match="python -m research.feature_denoising.train --variant nonlocal_gaussian"):
        defense.run_folder(folder, [str(ROOT / "sample_data"), str(tmp_path / "out.csv")])


def test_trained_folders_classify_sample_data(tmp_path: Path) -> None:
    rows = _run_folders(tmp_path, ROOT / "defenses")
    for name, predictions in rows.items():
        clean = [r for r in predictions if r.attack_type == "clean"]
        assert len(clean) == 20 and sum(r.prediction == r.true_label for r in clean) >= 8, name  # >= 40 %


# -- reports ---------------------------------------------------------------------------------------------------


def test_strongest_attacks_from_a_leaderboard(tmp_path: Path) -> None:
    path = tmp_path / "leaderboard.csv"
    rows = [("16", "defense", "1", "base"), ("16", "attack", "2", "b"), ("16", "attack", "1", "a"),
            ("16", "attack", "3", "c"), ("32", "attack", "1", "z"), ("16", "targeted_attack", "1", "t")]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epsilon", "track", "rank", "name"])
        writer.writerows(rows)
    assert blackbox.strongest_attacks(path, count=2) == ["a", "b"]
    assert blackbox.strongest_attacks(path, epsilon=32, count=1) == ["z"]
    with pytest.raises(ValueError, match="only 3 non-targeted attacks"):
        blackbox.strongest_attacks(path, count=5)
    with pytest.raises(ValueError, match="--attacks"):
        blackbox.strongest_attacks(tmp_path / "absent.csv")


def test_default_defenses_order(tmp_path: Path) -> None:
    for name in ("jpeg", "fd_mean", "adv_baseline", "base", "hgd_lgd", "fd_nonlocal", "tv_denoise"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "metadata.json").write_text(json.dumps({"type": "defense", "entry_point": "run.sh"}))
        (folder / "run.sh").write_text("#!/bin/sh\n")
        (folder / "run.sh").chmod(0o755)
    assert blackbox.default_defenses(tmp_path) == ["base", "tv_denoise", "hgd_lgd", "adv_baseline", "fd_mean",
                                                   "fd_nonlocal"]


def test_export_refuses_the_repository() -> None:
    with pytest.raises(ValueError, match="inside the repository"):
        blackbox.export_images(ROOT / "results" / "images", images=2, seed=0)


@pytest.mark.usefixtures("cifar10")
def test_export_writes_a_harness_dataset(tmp_path: Path) -> None:
    from harness.dataset import load_dataset

    folder = blackbox.export_images(tmp_path / "images", images=5, seed=0)
    assert len(load_dataset(folder, seed=0)) == 5
    assert blackbox.export_images(folder, images=5, seed=0) == folder  # complete: reused


def test_whitebox_tables_and_plot(tmp_path: Path) -> None:
    results = {"baseline": {"clean": 0.7, "pgd": {"10": 0.4, "100": 0.35}},
               "nonlocal_gaussian": {"clean": 0.72, "pgd": {"10": 0.45, "100": 0.4}}}
    meta = {"images": 1000, "seed": 0, "eps": 8 / 255, "alpha": None, "date": "today", "device": "cpu",
            "arguments": ""}
    curves = whitebox.render_curves(results, [10, 100], meta=meta)
    assert "| `nonlocal_gaussian` |" in curves and "| 45.0 | 40.0 |" in curves and "10: 0.8/255" in curves
    ablation = whitebox.render_ablation(results, [10, 100])
    assert "| non-local, Gaussian (`nonlocal_gaussian`) | 45.0 | 40.0 | 55.7 | 45.5 |" in ablation
    assert "removing 1x1 (`nonlocal_gaussian_no1x1`) | not trained" in ablation
    whitebox.plot(results, [10, 100], tmp_path / "curves.png", eps=8 / 255)
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_write_table_between_custom_markers(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("intro\n<!-- a:start -->\nold\n<!-- a:end -->\noutro\n")
    write_table(doc, "new\n", start="<!-- a:start -->", end="<!-- a:end -->")
    assert doc.read_text() == "intro\n<!-- a:start -->\nnew\n<!-- a:end -->\noutro\n"
