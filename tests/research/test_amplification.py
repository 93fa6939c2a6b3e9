"""Error amplification (research.analysis.amplification, Liao et al. 2018 Eq. 6) on tiny hand-made models."""

from __future__ import annotations

import csv
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from research.analysis import amplification as amp
from research.hgd import data
from submission_kit import zoo
from submission_kit.hgd import registry
from submission_kit.hgd.networks import DUNET

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Doubler(nn.Module):
    """Two "layers": f_1(x) = 2x and f_2(x) = 2x + 1 (a constant offset changes ‖f_2(x)‖ only)."""

    def forward_features(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        return OrderedDict(double=2 * x, shifted=2 * x + 1)


def test_layer_errors_by_hand() -> None:
    clean = torch.full((1, 1, 2, 2), 0.5)
    perturbed = clean + torch.tensor([0.1, -0.1, 0.0, 0.2]).view(1, 1, 2, 2)
    errors = amp.layer_errors(Doubler(), clean, perturbed)
    assert list(errors) == [amp.PIXELS, "double", "shifted"]
    # L1: ‖x_p − x‖ = 0.4, ‖x‖ = 2.0; the doubled layer has the same ratio; the shifted one 0.8 / 8.0
    assert errors[amp.PIXELS].item() == pytest.approx(0.2)
    assert errors["double"].item() == pytest.approx(0.2)
    assert errors["shifted"].item() == pytest.approx(0.1)
    l2 = amp.layer_errors(Doubler(), clean, perturbed, p=2)
    assert l2[amp.PIXELS].item() == pytest.approx(np.sqrt(0.06) / 1.0)
    assert amp.layer_errors(Doubler(), clean, clean)["shifted"].item() == 0.0


def test_gaussian_like_matches_the_l2_norm() -> None:
    clean = torch.full((3, 3, 8, 8), 0.5)
    adversarial = clean + 0.03 * torch.sign(torch.randn(clean.shape, generator=torch.Generator().manual_seed(1)))
    noisy = amp.gaussian_like(clean, adversarial, generator=torch.Generator().manual_seed(0))
    want = (adversarial - clean).flatten(1).norm(dim=1)
    assert torch.allclose((noisy - clean).flatten(1).norm(dim=1), want, rtol=1e-4)
    again = amp.gaussian_like(clean, adversarial, generator=torch.Generator().manual_seed(0))
    assert torch.equal(noisy, again)


def test_amplification_writes_csv_and_png(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = zoo.build("vgg6_w32").eval()
    clean = torch.rand(4, 3, 32, 32)
    adversarial = (clean + 8 / 255 * torch.randn(clean.shape).sign()).clamp(0, 1)
    variants = {"adversarial": adversarial, "blur": nn.functional.avg_pool2d(adversarial, 3, 1, 1)}
    results = amp.amplification(model, clean, variants, batch_size=3)
    assert list(results["blur"]) == [amp.PIXELS, *model.feature_names]
    assert all(values.shape == (4,) for values in results["adversarial"].values())
    amp.write_csv(tmp_path / "e.csv", results)
    rows = list(csv.DictReader(open(tmp_path / "e.csv")))
    assert len(rows) == 2 * (1 + len(model.feature_names)) and rows[0]["layer"] == amp.PIXELS
    amp.plot_png(tmp_path / "e.png", results, title="test")
    with Image.open(tmp_path / "e.png") as image:
        assert image.format == "PNG" and image.width > 100


def test_transform_spec() -> None:
    label, function = amp.load_transform("ROF=submission_kit.defense_blocks.denoise:tv_denoise")
    assert label == "ROF" and callable(function)
    with pytest.raises(ValueError, match="LABEL=package.module:function"):
        amp.load_transform("submission_kit.defense_blocks.denoise")


def test_command_on_a_tiny_test_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 256, size=(5, 32, 32, 3), dtype=np.uint8)
    images = np.clip(clean.astype(int) + rng.choice([-16, 16], size=clean.shape), 0, 255).astype(np.uint8)
    white = data.HGDSet(clean, np.arange(5), images, np.arange(5), np.zeros(5, dtype=np.int64), np.full(5, 16),
                        ("ifgsm4:vgg6_w48+vgg6_w32",))
    white.save(tmp_path / "data" / "white.npz")
    monkeypatch.setattr(zoo, "load", lambda name, device="cpu", **_: zoo.build(name).eval().to(device))
    for name in ("dunet_pgd", "dunet_lgd"):
        registry.save_denoiser(tmp_path / "w" / f"{name}.pt", DUNET(width=2), registry.parse_name(name), 2)
    out = tmp_path / "fig5"
    assert amp.main(["--data-dir", str(tmp_path / "data"), "--weights-dir", str(tmp_path / "w"), "--images", "3",
                     "--out", str(out), "--threads", "1", "--device", "cpu"]) == 0
    rows = list(csv.DictReader(open(out.with_suffix(".csv"))))
    assert {r["variant"] for r in rows} == {"adversarial", "random noise (same L2)", "dunet_pgd", "dunet_lgd"}
    assert all(r["images"] == "3" for r in rows)
    # untrained DUNETs are the identity: their curves equal the adversarial one
    by = {(r["variant"], r["layer"]): r["mean"] for r in rows}
    assert by[("dunet_lgd", "logits")] == by[("adversarial", "logits")]
    assert out.with_suffix(".png").is_file()
