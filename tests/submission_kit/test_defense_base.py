"""The base defense (undefended target model) and the shared defense wrapper, on a tiny stand-in model."""

from __future__ import annotations

import csv
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from submission_kit import zoo
from submission_kit.defense_blocks import classify

ROOT = Path(__file__).resolve().parents[2]


class ColourModel(nn.Module):
    """Logits favour class (mean intensity · 10) — a deterministic stand-in for a trained classifier."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        level = (x.mean(dim=(1, 2, 3)) * 9.999).long()
        return nn.functional.one_hot(level, 10).float()


def _load_folder_module(folder: str):
    spec = importlib.util.spec_from_file_location(f"defense_{folder}", ROOT / "defenses" / folder / "defense.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_predict_applies_transform_then_model() -> None:
    images = torch.full((2, 3, 4, 4), 0.55)
    assert classify.predict(ColourModel(), images).tolist() == [5, 5]
    assert classify.predict(ColourModel(), images, transform=lambda x: x * 0.5).tolist() == [2, 2]
    # out-of-range transforms are clamped back to [0, 1] before the classifier
    assert classify.predict(ColourModel(), images, transform=lambda x: x + 5).tolist() == [9, 9]


def test_base_defense_writes_one_row_per_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = []
    monkeypatch.setattr(zoo, "load", lambda name, device="cpu": loaded.append(name) or ColourModel())
    inputs = tmp_path / "in"
    inputs.mkdir()
    for png in sorted((ROOT / "sample_data").glob("*.png"))[:5]:
        shutil.copyfile(png, inputs / png.name)
    _load_folder_module("base").main([str(inputs), str(tmp_path / "out.csv")])
    rows = list(csv.reader(open(tmp_path / "out.csv")))
    assert [r[0] for r in rows] == sorted(p.name for p in inputs.glob("*.png"))
    # The model's bucket of each raw image (`base` applies no transformation).
    expected = [int(np.asarray(Image.open(inputs / r[0]), dtype=np.float32).mean() / 255 * 9.999) for r in rows]
    assert [int(r[1]) for r in rows] == expected and len(set(expected)) > 1
    assert loaded == [zoo.TARGET_MODEL]
