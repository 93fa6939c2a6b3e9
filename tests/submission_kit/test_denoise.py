"""Denoising defenses of Lee, Park & Lee 2018 (ROF, NL-means, v_def) and the JPEG baseline: filters, transforms,
v_def (Eq. 1), the make_vdef command and the five defense folders, on tiny stand-in models (fast, offline)."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.restoration import denoise_nl_means, denoise_tv_bregman
from torch import nn

from harness import submission
from research import cifar10
from research.lee2018 import make_vdef
from submission_kit import sdk, zoo
from submission_kit.defense_blocks import denoise, filters, vdef

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("tv_denoise", "nl_means", "tv_denoise_vdef", "nl_means_vdef", "jpeg")
VDEF_FOLDERS = ("tv_denoise_vdef", "nl_means_vdef")


def _colour_image(seed: int = 0, size: tuple[int, int] = (16, 20)) -> np.ndarray:
    """float64 (H, W, 3) in [0, 1]: red = vertical stripes + noise, green = constant 0.5, blue = noise."""
    rng = np.random.default_rng(seed)
    height, width = size
    image = np.empty((height, width, 3))
    image[..., 0] = np.clip((np.arange(width) % 4 < 2) * 0.6 + 0.2 + 0.1 * rng.standard_normal((height, width)), 0, 1)
    image[..., 1] = 0.5
    image[..., 2] = rng.random((height, width))
    return image


# --- the channel axis: the silent 3-D volume bug -----------------------------------------------------------------

def test_rof_denoises_each_colour_channel_on_its_own() -> None:
    image = _colour_image()
    expected = np.stack([denoise_tv_bregman(image[..., c], weight=10.0) for c in range(3)], axis=-1)
    out = filters.rof(image, weight=10.0)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(out[..., 1], 0.5)  # a constant plane stays constant
    # independent of the channel order (scikit-image 0.26's own channel loop is not: it reuses its output buffer)
    np.testing.assert_array_equal(filters.rof(image[..., ::-1], weight=10.0)[..., ::-1], out)
    # sensitivity: without channel_axis one stopping test runs over all planes together
    assert not np.allclose(denoise_tv_bregman(image, weight=10.0), expected, atol=1e-4)


def test_nl_means_treats_the_last_axis_as_colour_not_depth() -> None:
    image = _colour_image()
    out = filters.nl_means(image)
    # colour NL-means averages whole pixels with non-negative weights: a constant plane stays constant
    np.testing.assert_allclose(out[..., 1], 0.5, rtol=0, atol=1e-12)
    assert np.abs(out[..., 2] - image[..., 2]).mean() > 1e-3  # and it did denoise
    # sensitivity: as a 3-D volume the green plane is averaged with its red and blue "neighbour slices"
    volume = denoise_nl_means(image, patch_size=2, patch_distance=3, h=0.05, fast_mode=True)
    assert np.abs(volume[..., 1] - 0.5).max() > 1e-3


def test_every_scikit_image_call_names_the_channel_axis(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict] = []

    def recorder(image: np.ndarray, **kwargs: object) -> np.ndarray:
        calls.append(kwargs)
        return image

    import skimage.restoration  # filters imports it when called (a JPEG defense never needs it)

    monkeypatch.setattr(skimage.restoration, "denoise_tv_bregman", recorder)
    monkeypatch.setattr(skimage.restoration, "denoise_nl_means", recorder)
    filters.rof(_colour_image())
    filters.nl_means(_colour_image())
    assert len(calls) == 4 and all(call["channel_axis"] == -1 for call in calls)
    assert [call["weight"] for call in calls[:3]] == [10.0] * 3
    assert (calls[3]["patch_size"], calls[3]["patch_distance"], calls[3]["h"], calls[3]["fast_mode"]) == (2, 3, 0.05,
                                                                                                         True)


def test_even_patch_size_is_rounded_up_by_scikit_image() -> None:
    image = _colour_image(1)
    np.testing.assert_array_equal(filters.nl_means(image, patch_size=2), filters.nl_means(image, patch_size=3))
    assert not np.array_equal(filters.nl_means(image, patch_size=2), filters.nl_means(image, patch_size=5))


def test_rof_weight_convention_smaller_is_smoother() -> None:
    image = _colour_image(2)
    changes = [np.abs(filters.rof(image, weight=w) - image).mean() for w in (5.0, 10.0, 20.0)]
    assert changes[0] > changes[1] > changes[2] > 0


def test_nl_means_larger_h_is_blurrier() -> None:
    image = _colour_image(3)
    changes = [np.abs(filters.nl_means(image, h=h) - image).mean() for h in (0.02, 0.05, 0.1)]
    assert changes[0] < changes[1] < changes[2]


# --- JPEG ----------------------------------------------------------------------------------------------------------

def test_jpeg_error_shrinks_as_quality_grows() -> None:
    rng = np.random.default_rng(4)
    ramp = np.linspace(0, 1, 32)
    grey = np.clip(np.add.outer(ramp, ramp) / 2 + 0.05 * rng.standard_normal((32, 32)), 0, 1)
    image = np.stack([grey, 0.8 * grey, 1 - grey], axis=-1)
    errors = [np.abs(filters.jpeg(image, quality=q) - image).mean() for q in (5, 20, 50, 90)]
    assert errors[0] > errors[1] > errors[2] > errors[3] and errors[3] < errors[0] / 1.5
    out = filters.jpeg(image, quality=50)
    assert out.shape == image.shape and out.min() >= 0 and out.max() <= 1
    np.testing.assert_array_equal(np.rint(out * 255) / 255, out)


# --- batch transforms: shape, range, determinism, parallelism -----------------------------------------------------

TRANSFORMS = {"tv_denoise": denoise.tv_denoise, "nl_means": denoise.nl_means, "jpeg": denoise.jpeg}


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_transform_shape_range_dtype_and_determinism(name: str) -> None:
    images = torch.rand(5, 3, 20, 28, generator=torch.Generator().manual_seed(0))
    before = images.clone()
    first = TRANSFORMS[name](images, n_jobs=1)
    assert first.shape == images.shape and first.dtype == images.dtype and first.device == images.device
    assert float(first.min()) >= 0 and float(first.max()) <= 1
    assert not torch.equal(first, images)
    torch.testing.assert_close(images, before, rtol=0, atol=0)  # input untouched
    assert torch.equal(TRANSFORMS[name](images, n_jobs=1), first)


def test_results_do_not_depend_on_the_number_of_workers() -> None:
    images = torch.rand(9, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    for transform in TRANSFORMS.values():
        assert torch.equal(transform(images, n_jobs=1), transform(images, n_jobs=2))
    processes = filters.map_images(filters.rof, images.permute(0, 2, 3, 1).double().numpy(), n_jobs=2,
                                   backend="loky")
    np.testing.assert_array_equal(processes, denoise.tv_denoise(images.double(), n_jobs=1).permute(0, 2, 3, 1).numpy())


def test_transform_matches_the_per_image_filter() -> None:
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    out = denoise.tv_denoise(images, weight=5.0, n_jobs=1)
    expected = filters.rof(images[1].permute(1, 2, 0).numpy(), weight=5.0)
    np.testing.assert_allclose(out[1].permute(1, 2, 0).numpy(), np.clip(expected, 0, 1), rtol=0, atol=1e-12)


def test_all_cores_means_the_runs_share_when_the_harness_sets_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import joblib  # filters imports it when called

    monkeypatch.setattr(joblib, "cpu_count", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert (filters.workers(-1), filters.workers(-2), filters.workers(3)) == (8, 7, 3)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert (filters.workers(-1), filters.workers(-2), filters.workers(3)) == (2, 1, 3)
    monkeypatch.setenv("OMP_NUM_THREADS", "junk")
    assert filters.workers(-1) == 8


def test_map_images_rejects_bad_shapes_and_zero_jobs() -> None:
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        filters.map_images(filters.rof, np.zeros((2, 3, 8, 8)))
    with pytest.raises(ValueError, match="n_jobs"):
        filters.map_images(filters.rof, np.zeros((2, 8, 8, 3)), n_jobs=0)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        denoise.tv_denoise(torch.zeros(2, 8, 8, 3))
    assert filters.map_images(filters.rof, np.zeros((0, 8, 8, 3))).shape == (0, 8, 8, 3)


def test_with_offset_adds_clips_then_transforms() -> None:
    seen: list[torch.Tensor] = []
    offset = torch.full((3, 2, 2), 0.3)
    transform = denoise.with_offset(lambda x: seen.append(x) or x * 0, offset)
    images = torch.full((1, 3, 4, 4), 0.8)
    assert torch.equal(transform(images), torch.zeros_like(images))
    assert torch.equal(seen[0], torch.ones_like(images))  # 0.8 + 0.3 clipped to 1, offset tiled to 4x4


# --- v_def (Eq. 1) -------------------------------------------------------------------------------------------------

class LinearScore(nn.Module):
    """Logit of class 0 = k · Σ(x − 0.5); class 1 has the constant logit ``bias``; the other classes 0.

    For images at 0.5 (clean logit 0) and true label 0, a draw lowers the loss exactly when Σδ > 0.
    """

    def __init__(self, k: float = 10.0, bias: float = 0.0) -> None:
        super().__init__()
        self.k, self.bias = k, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(len(x), 10, dtype=x.dtype)
        logits[:, 0] = self.k * (x - 0.5).flatten(1).sum(1)
        logits[:, 1] = self.bias
        return logits


class Bowl(nn.Module):
    """Logit of class 0 = −‖x − 0.5‖²: at x = 0.5 every perturbation raises the loss of label 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(len(x), 10, dtype=x.dtype)
        logits[:, 0] = -100.0 * (x - 0.5).flatten(1).pow(2).sum(1)
        return logits


def _draws(seed: int, count: int, shape: tuple[int, ...], batch_size: int, rounds: int) -> list[torch.Tensor]:
    """The draws compute_vdef makes (its documented order), one (C, H, W) tensor per (round, image)."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(rounds):
        for start in range(0, count, batch_size):
            out += list(torch.randn((min(batch_size, count - start), *shape), generator=generator))
    return out


def test_vdef_averages_only_the_draws_that_lower_the_loss() -> None:
    images = torch.full((7, 3, 4, 4), 0.5)
    labels = torch.zeros(7, dtype=torch.long)
    eps = 0.01
    result = vdef.compute_vdef(LinearScore(), images, labels, epsilon=eps, generator=torch.Generator().manual_seed(3),
                               draws_per_image=3, batch_size=4)
    draws = _draws(3, 7, (3, 4, 4), 4, 3)
    lowering = [d for d in draws if float(d.sum()) > 0]
    assert 0 < len(lowering) < len(draws)
    assert (result.tried, result.kept, result.kept_loss, result.images) == (21, len(lowering), len(lowering), 7)
    torch.testing.assert_close(result.v, eps * torch.stack(lowering).double().mean(0).float(), rtol=1e-6, atol=1e-9)
    assert not result.empty and result.v.dtype == torch.float32 and result.v.shape == (3, 4, 4)
    assert float(result.v.sum()) > 0  # points where the loss falls
    assert result.null_l2 == pytest.approx(eps * (48 / len(lowering)) ** 0.5)


def test_vdef_corrected_criterion_keeps_only_draws_that_fix_a_wrong_label() -> None:
    # images 0-3 sit at 0.5 (class 1 wins by the bias: wrong); images 4-5 at 0.51 (class 0 wins: right)
    images = torch.cat([torch.full((4, 3, 4, 4), 0.5), torch.full((2, 3, 4, 4), 0.51)])
    labels = torch.zeros(6, dtype=torch.long)
    model = LinearScore(k=10.0, bias=0.05)
    eps = 0.01
    result = vdef.compute_vdef(model, images, labels, epsilon=eps, generator=torch.Generator().manual_seed(5),
                               draws_per_image=4, batch_size=6, criterion="corrected")
    draws = _draws(5, 6, (3, 4, 4), 6, 4)
    fixed = [d for i, d in enumerate(draws) if i % 6 < 4 and 10.0 * eps * float(d.sum()) > 0.05]
    assert result.clean_correct == 2 and result.kept == result.kept_corrected == len(fixed) > 0
    assert result.kept_loss > result.kept_corrected
    torch.testing.assert_close(result.v, eps * torch.stack(fixed).double().mean(0).float(), rtol=1e-6, atol=1e-9)


def test_vdef_is_zero_and_flagged_when_no_draw_lowers_the_loss() -> None:
    images = torch.full((5, 3, 4, 4), 0.5)
    result = vdef.compute_vdef(Bowl(), images, torch.zeros(5, dtype=torch.long), epsilon=0.01,
                               generator=torch.Generator().manual_seed(0), draws_per_image=2)
    assert result.empty and result.kept == 0 and result.tried == 10
    assert torch.equal(result.v, torch.zeros(3, 4, 4))
    stats = result.stats()
    assert stats["empty"] is True and stats["draws_kept"] == 0 and stats["linf_255"] == 0


def test_vdef_is_deterministic_given_the_seed() -> None:
    images = torch.rand(6, 3, 4, 4, generator=torch.Generator().manual_seed(9))
    labels = torch.arange(6) % 10
    run = lambda seed: vdef.compute_vdef(LinearScore(), images, labels, epsilon=0.02,  # noqa: E731
                                         generator=torch.Generator().manual_seed(seed))
    assert torch.equal(run(1).v, run(1).v) and not torch.equal(run(1).v, run(2).v)


def test_vdef_rejects_bad_arguments() -> None:
    images, labels = torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match="criterion"):
        vdef.compute_vdef(Bowl(), images, labels, epsilon=0.1, generator=torch.Generator(), criterion="mean")
    with pytest.raises(ValueError, match="epsilon"):
        vdef.compute_vdef(Bowl(), images, labels, epsilon=0.0, generator=torch.Generator())
    with pytest.raises(ValueError, match="labels"):
        vdef.compute_vdef(Bowl(), images, labels[:1], epsilon=0.1, generator=torch.Generator())


def test_vdef_save_load_and_errors(tmp_path: Path) -> None:
    v = torch.linspace(-0.01, 0.01, 48).reshape(3, 4, 4)
    vdef.save(tmp_path / "v_def.npy", v, {"seed": 0})
    assert torch.equal(vdef.load(tmp_path / "v_def.npy"), v)
    assert json.loads((tmp_path / "v_def.json").read_text()) == {"seed": 0}
    with pytest.raises(vdef.VDefNotFoundError, match="python -m research.lee2018.make_vdef"):
        vdef.load(tmp_path / "missing.npy")
    np.save(tmp_path / "bad.npy", np.zeros((4, 4, 3), np.float32))
    with pytest.raises(vdef.VDefError, match=r"\(3, H, W\)"):
        vdef.load(tmp_path / "bad.npy")


def test_make_vdef_writes_both_folders_from_training_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    train = (rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 40))
    splits: list[str] = []
    monkeypatch.setattr(cifar10, "load_split", lambda split, *a, **k: splits.append(split) or train)
    monkeypatch.setattr(zoo, "load", lambda name, device="cpu", weights=None: LinearScore(k=0.01))
    outs = [tmp_path / "a" / "v_def.npy", tmp_path / "b" / "v_def.npy"]
    record = make_vdef.main(["--images", "30", "--draws", "2", "--epsilon", "8", "--seed", "1", "--batch-size", "16",
                             "--out", str(outs[0]), "--out", str(outs[1])])
    assert splits == ["train"]  # never the test split
    assert np.array_equal(np.load(outs[0]), np.load(outs[1])) and np.load(outs[0]).shape == (3, 32, 32)
    assert np.load(outs[0]).dtype == np.float32
    stored = json.loads(outs[1].with_suffix(".json").read_text())
    assert stored == record
    assert stored["draws_tried"] == 60 and 0 < stored["draws_kept"] < 60 and stored["seed"] == 1
    assert stored["epsilon_255"] == 8 and stored["model"] == zoo.TARGET_MODEL and "--images 30" in stored["command"]


# --- the defense folders -------------------------------------------------------------------------------------------

class RecordingModel(nn.Module):
    """Class = mean intensity bucket; remembers every batch it classified."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.clone())
        return nn.functional.one_hot((x.mean(dim=(1, 2, 3)) * 9.999).long(), 10).float()


def _load_defense(folder: Path):
    spec = importlib.util.spec_from_file_location(f"defense_{folder.name}", folder / "defense.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def sample_inputs(tmp_path: Path) -> Path:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for png in sorted((ROOT / "sample_data").glob("*.png"))[:4]:
        shutil.copyfile(png, inputs / png.name)
    return inputs


def _run_folder(folder: Path, inputs: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list, list, list]:
    model = RecordingModel()
    loaded: list[str] = []
    monkeypatch.setattr(zoo, "load", lambda name, device="cpu": loaded.append(name) or model)
    _load_defense(folder).main([str(inputs), str(out)])
    return list(csv.reader(open(out))), model.seen, loaded


@pytest.mark.parametrize("name", FOLDERS)
def test_defense_folder_classifies_denoised_sample_images(name: str, tmp_path: Path, sample_inputs: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / name
    shutil.copytree(ROOT / "defenses" / name, folder, ignore=shutil.ignore_patterns("__pycache__", "v_def.*"))
    if name in VDEF_FOLDERS:
        vdef.save(folder / "v_def.npy", torch.full((3, 32, 32), 0.02), {"test": True})
    rows, seen, loaded = _run_folder(folder, sample_inputs, tmp_path / "out.csv", monkeypatch)
    assert [r[0] for r in rows] == sdk.image_names(sample_inputs)
    assert loaded == [zoo.TARGET_MODEL]
    raw = torch.cat([sdk.to_tensor(b.images) for b in sdk.iter_batches(sample_inputs)])
    classified = torch.cat(seen)
    assert classified.shape == raw.shape and float(classified.min()) >= 0 and float(classified.max()) <= 1
    assert (classified - raw).abs().mean() > 1e-4  # the model saw transformed images, not the raw ones
    # Each row's label is the model's answer for that image, in row order (the model's bucket of what it saw).
    assert [int(r[1]) for r in rows] == (classified.mean(dim=(1, 2, 3)) * 9.999).long().tolist()


@pytest.mark.parametrize("name", VDEF_FOLDERS)
def test_vdef_folder_without_its_file_names_the_command(name: str, tmp_path: Path, sample_inputs: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / name
    shutil.copytree(ROOT / "defenses" / name, folder, ignore=shutil.ignore_patterns("__pycache__", "v_def.*"))
    with pytest.raises(vdef.VDefNotFoundError, match="python -m research.lee2018.make_vdef .*" + name):
        _run_folder(folder, sample_inputs, tmp_path / "out.csv", monkeypatch)


@pytest.mark.parametrize("name", VDEF_FOLDERS)
def test_vdef_folder_with_a_zero_vdef_equals_its_plain_denoiser(name: str, tmp_path: Path, sample_inputs: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / name
    shutil.copytree(ROOT / "defenses" / name, folder, ignore=shutil.ignore_patterns("__pycache__", "v_def.*"))
    vdef.save(folder / "v_def.npy", torch.zeros(3, 32, 32), {"test": True})
    _, with_zero, _ = _run_folder(folder, sample_inputs, tmp_path / "a.csv", monkeypatch)
    _, plain, _ = _run_folder(ROOT / "defenses" / name.removesuffix("_vdef"), sample_inputs, tmp_path / "b.csv",
                              monkeypatch)
    assert torch.equal(torch.cat(with_zero), torch.cat(plain))


@pytest.mark.parametrize("name", FOLDERS)
def test_defense_folder_shape(name: str) -> None:
    folder = ROOT / "defenses" / name
    parsed = submission.parse_submission(folder)
    assert parsed.type == submission.SubmissionType.DEFENSE
    metadata = json.loads((folder / "metadata.json").read_text())
    assert {"type", "entry_point", "container", "container_gpu"} <= set(metadata)
    assert os.access(folder / metadata["entry_point"], os.X_OK)
    doc = _load_defense(folder).__doc__
    assert ("Lee" in doc) if name != "jpeg" else ("Dziugaite" in doc and "Guo" in doc)
    assert zoo.TARGET_MODEL in (folder / "README.md").read_text()


# --- benchmarks/lee2018_table1.py on a tiny configuration ---------------------------------------------------------

def test_table1_script_runs_end_to_end_on_a_tiny_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("lee2018_table1", ROOT / "benchmarks" / "lee2018_table1.py")
    table1 = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    monkeypatch.setitem(sys.modules, "lee2018_table1", table1)  # dataclasses look their module up
    spec.loader.exec_module(table1)
    rng = np.random.default_rng(0)
    test = (rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 12))
    splits: list[str] = []
    monkeypatch.setattr(cifar10, "load_split", lambda split, *a, **k: splits.append(split) or test)
    monkeypatch.setattr(zoo, "load", lambda name, device="cpu": RecordingModel())
    uap_args = []
    for name in zoo.names():
        path = tmp_path / f"{name}.npy"
        np.save(path, rng.uniform(-10 / 255, 10 / 255, (3, 32, 32)).astype(np.float32))
        uap_args += ["--uap", f"{name}={path}"]
    vdef.save(tmp_path / "v_def.npy", torch.full((3, 32, 32), 0.01), {"command": "test", "draws_kept": 3})
    out = tmp_path / "table.md"
    report = table1.main(["--images", "10", "--n-jobs", "1", "--vdef", str(tmp_path / "v_def.npy"),
                          "--out", str(out), *uap_args])
    assert out.read_text() == report and splits == ["test"]
    out.write_text(report.replace("(Findings: written by hand", "(Hand-written findings"))
    assert "Hand-written findings" in table1.main(["--images", "10", "--n-jobs", "1", "--vdef",
                                                   str(tmp_path / "v_def.npy"), "--out", str(out), *uap_args])
    # Findings written for other inputs are not kept: another UAP for one model drops them, with a note.
    np.save(tmp_path / "other.npy", np.zeros((3, 32, 32), dtype=np.float32))
    other = uap_args[:-1] + [f"{uap_args[-1].split('=')[0]}={tmp_path / 'other.npy'}"]
    rerun = table1.main(["--images", "10", "--n-jobs", "1", "--vdef", str(tmp_path / "v_def.npy"), "--out", str(out),
                         *other])
    assert "Hand-written findings" not in rerun and "were written for other inputs" in rerun
    for row in table1.PAPER_TABLE:
        assert f"| {row} |" in report
    assert "white-box" in report and report.count("black-box") >= 2 and "weight 20" in report and "h 0.1" in report
    with pytest.raises(SystemExit, match="make_uap --method sgd --model"):
        table1.main(["--uap", f"{zoo.TARGET_MODEL}={tmp_path / 'missing.npy'}", "--out", str(out)])
