"""Gradient attacks (submission_kit.attack_methods.gradient) against torchattacks, their invariants, and the sample
folders.

Everything runs on a tiny CNN built here with a fixed seed (no trained weights), on CPU, in a few seconds.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchattacks
from torch import nn

from harness.library import python_path
from submission_kit import contract, sdk, zoo
from submission_kit.attack_methods import gradient, submission
from tiny_models import TinyNet, tiny_model

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DATA = ROOT / "sample_data"
EPS = 8 / 255


class ConstantNet(nn.Module):
    """Logits that do not depend on the input: every input gradient is exactly zero."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.arange(10, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(x.shape[0], -1) + 0 * x.sum(dim=(1, 2, 3)).unsqueeze(1)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model() -> TinyNet:
    return tiny_model()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """8 uint8-quantized images: 2 sample_data PNGs + 6 random ones."""
    gen = torch.Generator().manual_seed(1)
    random = torch.randint(0, 256, (6, 32, 32, 3), generator=gen, dtype=torch.uint8).numpy()
    names = sorted(SAMPLE_DATA.glob("*.png"))[:2]
    real = [contract.read_png(p) for p in names]
    return sdk.to_tensor(np.stack(real + list(random)))


def labels_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(x).argmax(1)


def run_ours(name: str, model: nn.Module, x: torch.Tensor, eps: float, seed: int = 3) -> torch.Tensor:
    if name == "fgsm":
        return gradient.fgsm(model, x, eps=eps)
    if name == "i_fgsm":
        return gradient.i_fgsm(model, x, eps=eps, alpha=1 / 255)
    if name == "mi_fgsm":
        return gradient.mi_fgsm(model, x, eps=eps, steps=10, mu=1.0)
    if name == "pgd":
        return gradient.pgd(model, x, eps=eps, alpha=2 / 255, steps=10, generator=torch.Generator().manual_seed(seed))
    if name == "step_ll":
        return gradient.step_ll(model, x, eps=eps)
    if name == "iter_ll":
        return gradient.iter_ll(model, x, eps=eps, alpha=1 / 255)
    target = (torch.arange(x.shape[0]) * 3 + 1) % 10
    if name == "step_target":
        return gradient.step_target(model, x, target, eps=eps)
    if name == "iter_target":
        return gradient.iter_target(model, x, target, eps=eps, alpha=1 / 255)
    if name == "pgd_target":
        return gradient.pgd(model, x, eps=eps, alpha=2 / 255, steps=10, generator=torch.Generator().manual_seed(seed),
                            target=target)
    raise KeyError(name)


def run_torchattacks(name: str, model: nn.Module, x: torch.Tensor, eps: float, seed: int = 3) -> torch.Tensor:
    """torchattacks 3.5 with the same hyper-parameters, labels = the model's own clean prediction."""
    y = labels_of(model, x)
    steps = gradient.kurakin_steps(eps)
    if name == "fgsm":
        return torchattacks.FGSM(model, eps=eps)(x, y)
    if name == "i_fgsm":
        return torchattacks.BIM(model, eps=eps, alpha=1 / 255, steps=steps)(x, y)
    if name == "mi_fgsm":
        return torchattacks.MIFGSM(model, eps=eps, alpha=eps / 10, steps=10, decay=1.0)(x, y)
    if name in ("pgd", "pgd_target"):
        attack = torchattacks.PGD(model, eps=eps, alpha=2 / 255, steps=10, random_start=True)
        if name == "pgd_target":
            attack.set_mode_targeted_by_label(quiet=True)
            y = (torch.arange(x.shape[0]) * 3 + 1) % 10
        # torchattacks draws its random start from the global RNG: seed it identically, only here.
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            return attack(x, y)
        finally:
            torch.random.set_rng_state(state)
    if name in ("step_ll", "iter_ll"):
        attack = (torchattacks.FGSM(model, eps=eps) if name == "step_ll"
                  else torchattacks.BIM(model, eps=eps, alpha=1 / 255, steps=steps))
        attack.set_mode_targeted_least_likely(quiet=True)  # y_LL = argmin over classes other than y
        return attack(x, y)
    if name in ("step_target", "iter_target"):
        attack = (torchattacks.FGSM(model, eps=eps) if name == "step_target"
                  else torchattacks.BIM(model, eps=eps, alpha=1 / 255, steps=steps))
        attack.set_mode_targeted_by_label(quiet=True)
        return attack(x, (torch.arange(x.shape[0]) * 3 + 1) % 10)
    raise KeyError(name)


COMPARED = ["fgsm", "i_fgsm", "mi_fgsm", "pgd", "pgd_target", "step_ll", "iter_ll", "step_target", "iter_target"]
ALL = COMPARED


# --- identical to torchattacks -------------------------------------------------------------------------------

@pytest.mark.parametrize("eps", [4 / 255, 12 / 255])
@pytest.mark.parametrize("name", COMPARED)
def test_identical_to_torchattacks(name: str, eps: float, model: TinyNet, images: torch.Tensor) -> None:
    # Bit-identical floats, hence identical pixels. The batch has 8 images on purpose: torchattacks averages
    # the loss over the batch (gradient × 1/N), we sum it (per-example gradients). For N a power of two the
    # scaling is exact in floating point; for other N the rounded 1/N can flip the sign of a gradient value
    # that cancels to float32 rounding level (observed: 1 of 7 × 3072 values for FGSM, N = 7, ε = 4/255).
    ours = run_ours(name, model, images, eps)
    theirs = run_torchattacks(name, model, images, eps)
    assert np.array_equal(sdk.from_tensor(ours), sdk.from_tensor(theirs)), "uint8 pixels differ"
    assert torch.equal(ours, theirs), "float tensors differ before quantization"
    assert not torch.equal(ours, images)


def test_kurakin_steps() -> None:
    assert [gradient.kurakin_steps(e / 255) for e in (0, 1, 2, 4, 8, 12, 16, 32)] == [0, 1, 2, 5, 10, 15, 20, 36]


# --- invariants ------------------------------------------------------------------------------------------------

def per_example_results(name: str, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The attack run on one image at a time (PGD: one generator consumed example by example; targeted attacks:
    each example with its own target of the batch)."""
    if name in ("pgd", "pgd_target"):
        generator = torch.Generator().manual_seed(3)
        target = (torch.arange(images.shape[0]) * 3 + 1) % 10  # the batch's targets, one per example
        singles = [gradient.pgd(model, images[i:i + 1], eps=EPS, alpha=2 / 255, steps=10, generator=generator,
                                target=target[i:i + 1] if name == "pgd_target" else None)
                   for i in range(len(images))]
    elif name in ("step_target", "iter_target"):
        target = (torch.arange(images.shape[0]) * 3 + 1) % 10
        fn = gradient.step_target if name == "step_target" else gradient.iter_target
        singles = [fn(model, images[i:i + 1], target[i:i + 1], eps=EPS) for i in range(len(images))]
    else:
        singles = [run_ours(name, model, images[i:i + 1], EPS) for i in range(len(images))]
    return torch.cat(singles)


@pytest.mark.parametrize("name", ALL)
def test_invariants(name: str, model: TinyNet, images: torch.Tensor) -> None:
    before = images.clone()
    model.train()
    adv = run_ours(name, model, images, EPS)
    assert model.training, "training mode must be restored"
    assert torch.equal(images, before), "input modified"
    assert adv.shape == images.shape and adv.dtype == images.dtype and not adv.requires_grad
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1
    assert float((adv - images).abs().max()) <= EPS + 1e-6
    quantized = sdk.from_tensor(adv).astype(int) - sdk.from_tensor(images).astype(int)
    assert np.abs(quantized).max() <= 8
    assert torch.equal(run_ours(name, model, images, EPS), adv), "not deterministic"


class PerExampleNet(nn.Module):
    """Runs the wrapped model on one image at a time, so its arithmetic cannot depend on the batch size."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.model(x[i:i + 1]) for i in range(x.shape[0])])


@pytest.mark.parametrize("name", ALL)
def test_batch_equals_per_example(name: str, model: TinyNet, images: torch.Tensor) -> None:
    images = images[:4]
    # Exact: with a model whose arithmetic is the same for any batch size, any difference would come from the
    # attack mixing examples (a batch-wide norm, a 1/N loss scaling, BatchNorm in training mode, shared noise).
    isolated = PerExampleNet(model)
    assert torch.equal(run_ours(name, isolated, images, EPS), per_example_results(name, isolated, images))
    # With the batched model, convolution kernels round differently for different batch sizes: a gradient
    # value that cancels to float32 rounding level (~1e-10 against ~1e-3) can change sign, which moves one
    # value by one step. Allow at most 0.1% of the uint8 values to differ.
    batched = sdk.from_tensor(run_ours(name, model, images, EPS))
    single = sdk.from_tensor(per_example_results(name, model, images))
    assert (batched != single).mean() <= 1e-3


@pytest.mark.parametrize("name", ALL)
def test_zero_epsilon_returns_input(name: str, model: TinyNet, images: torch.Tensor) -> None:
    assert torch.equal(run_ours(name, model, images, 0.0), images)


def test_pgd_generator_controls_randomness(model: TinyNet, images: torch.Tensor) -> None:
    state = torch.random.get_rng_state()
    a = gradient.pgd(model, images, eps=EPS, generator=torch.Generator().manual_seed(5))
    b = gradient.pgd(model, images, eps=EPS, generator=torch.Generator().manual_seed(6))
    assert torch.equal(torch.random.get_rng_state(), state), "the global RNG must not be used"
    assert not torch.equal(a, b)
    assert torch.equal(gradient.pgd(model, images, eps=EPS), gradient.pgd(model, images, eps=EPS))


def test_untargeted_attacks_raise_the_loss(model: TinyNet, images: torch.Tensor) -> None:
    y = labels_of(model, images)
    loss = nn.CrossEntropyLoss()
    with torch.no_grad():
        clean = loss(model(images), y)
        for name in ("fgsm", "i_fgsm", "mi_fgsm", "pgd"):
            assert loss(model(run_ours(name, model, images, EPS)), y) > clean, name


@pytest.mark.parametrize("name", ["step_target", "iter_target", "step_ll", "iter_ll"])
def test_targeted_attacks_raise_target_probability(name: str, model: TinyNet, images: torch.Tensor) -> None:
    model.eval()
    with torch.no_grad():
        logits = model(images)
    target = logits.argmin(1) if name.endswith("_ll") else (torch.arange(images.shape[0]) * 3 + 1) % 10
    adv = run_ours(name, model, images, EPS)
    with torch.no_grad():
        before = logits.softmax(1).gather(1, target[:, None])
        after = model(adv).softmax(1).gather(1, target[:, None])
    assert bool((after > before).all())


def test_explicit_labels_and_shape_checks(model: TinyNet, images: torch.Tensor) -> None:
    y = labels_of(model, images)
    assert torch.equal(gradient.fgsm(model, images, eps=EPS, y=y), gradient.fgsm(model, images, eps=EPS))
    with pytest.raises(ValueError):
        gradient.fgsm(model, images[0], eps=EPS)
    with pytest.raises(ValueError):
        gradient.fgsm(model, images, eps=-1.0)
    with pytest.raises(ValueError):
        gradient.step_target(model, images, torch.zeros(2, dtype=torch.long), eps=EPS)


def test_zero_gradient_gives_no_step_and_no_nan(images: torch.Tensor) -> None:
    constant = ConstantNet()
    for name in ("fgsm", "i_fgsm", "mi_fgsm", "pgd"):
        adv = run_ours(name, constant, images, EPS)
        assert not torch.isnan(adv).any(), name
        if name != "pgd":  # PGD keeps its random start
            assert torch.equal(adv, images), name


def test_uint8_rounding_never_leaves_the_ball() -> None:
    clean = np.array([[[[0, 100, 255]]]], dtype=np.uint8).repeat(2, axis=0)  # (2, 1, 1, 3)
    x = sdk.to_tensor(clean)
    step = torch.tensor([8.6, -8.6]).view(2, 1, 1, 1) / 255  # rounds to 9 levels away from the input
    out = submission.to_uint8_within(torch.clamp(x + step, 0, 1), clean, 8)
    assert out.dtype == np.uint8 and out.shape == clean.shape
    assert out[0, 0, 0].tolist() == [8, 108, 255] and out[1, 0, 0].tolist() == [0, 92, 247]


# --- sample attack folders (smoke tests, no weights needed) ----------------------------------------------------

FOLDERS = ["fgsm", "i_fgsm", "mi_fgsm", "pgd", "step_ll", "iter_ll", "uap", "uap_sgd", "transfer", "step_target",
           "iter_target"]


@pytest.fixture
def fake_zoo(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    loaded: list[str] = []

    def load(name: str, device: str | torch.device = "cpu", **kwargs: object) -> nn.Module:
        loaded.append(name)
        return tiny_model(seed=len(loaded)).eval().to(device)

    monkeypatch.setattr(zoo, "load", load)
    return loaded


def _load_folder_main(folder: Path):
    spec = importlib.util.spec_from_file_location(f"attack_{folder.name}", folder / "attack.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.mark.parametrize("name", FOLDERS)
def test_sample_attack_folder(name: str, tmp_path: Path, fake_zoo: list[str]) -> None:
    source = ROOT / "attacks" / name
    metadata = json.loads((source / "metadata.json").read_text())
    assert metadata["entry_point"] == "run_attack.sh" and (source / "run_attack.sh").stat().st_mode & 0o100
    assert "exec python3 attack.py" in (source / "run_attack.sh").read_text()
    assert (source / "README.md").is_file()
    folder = tmp_path / name  # run a fresh copy, as the harness does
    shutil.copytree(source, folder)
    if name in ("uap", "uap_sgd"):
        v = torch.empty(3, 32, 32).uniform_(-10 / 255, 10 / 255, generator=torch.Generator().manual_seed(0))
        np.save(folder / "uap.npy", v.numpy().astype(np.float32))
    input_dir, output_dir = tmp_path / "in", tmp_path / "out"
    input_dir.mkdir()
    pngs = sorted(SAMPLE_DATA.glob("*.png"))[:2]
    for png in pngs:
        shutil.copy(png, input_dir / png.name)
    if metadata["type"] == "targeted_attack":
        (input_dir / "target_class.csv").write_text("".join(f"{p.name},{i + 3}\n" for i, p in enumerate(pngs)))
    epsilon = 8
    _load_folder_main(folder)([str(input_dir), str(output_dir), str(epsilon)])
    changed = 0
    for png in pngs:
        clean = contract.read_png(png)
        adv = contract.read_png(output_dir / png.name)
        assert adv.shape == clean.shape and adv.dtype == np.uint8
        diff = np.abs(adv.astype(int) - clean.astype(int))
        assert diff.max() <= epsilon
        changed += int(diff.max() > 0)
    assert changed == len(pngs)
    if name in ("uap", "uap_sgd"):
        assert fake_zoo == []
    elif name == "transfer":
        assert zoo.TARGET_MODEL not in fake_zoo and len(fake_zoo) == len(zoo.names()) - 1
    else:
        assert fake_zoo == [zoo.TARGET_MODEL]


def test_uap_folder_through_its_entry_point(tmp_path: Path) -> None:
    """run_attack.sh as the harness runs it (./ENTRY with the folder as working directory); no model needed."""
    folder = tmp_path / "uap"
    shutil.copytree(ROOT / "attacks" / "uap", folder)
    (folder / "uap.npy").unlink(missing_ok=True)  # first as a fresh checkout without the computed perturbation
    input_dir, output_dir = tmp_path / "in", tmp_path / "out"
    input_dir.mkdir()
    png = sorted(SAMPLE_DATA.glob("*.png"))[0]
    shutil.copy(png, input_dir / png.name)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": python_path(sandboxed=False)}  # as the harness runs it: the submission library importable
    missing = subprocess.run(["./run_attack.sh", str(input_dir), str(output_dir), "4"], cwd=folder, env=env,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0 and "make_uap" in missing.stderr  # explains how to make uap.npy
    np.save(folder / "uap.npy", np.full((3, 32, 32), -10 / 255, dtype=np.float32))
    done = subprocess.run(["./run_attack.sh", str(input_dir), str(output_dir), "4"], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    clean = contract.read_png(png).astype(int)
    assert np.array_equal(contract.read_png(output_dir / png.name).astype(int), np.clip(clean - 4, 0, 255))
