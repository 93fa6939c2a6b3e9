"""PRN defense (submission_kit.prn, Akhtar, Liu & Mian 2018) on tiny synthetic models and data: splits, perturbing,
pools and their disjointness, Algorithm 1, the network, training, the DCT/SVM detector and the defense folders."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from research.prn import make_pool, splits
from research.prn.errors import run_command
from research.prn.make_pool import SGD_STEP_FRACTION, PoolSpec, grow_pool, method_params
from research.prn.perturb import (
    XI_INF,
    check_png_like,
    default_xi,
    fooling_rates,
    mean_l2_norm,
    norm_of,
    perturb,
    perturb_each,
    quantize,
)
from research.prn.pool import (
    PoolError,
    PoolNotFoundError,
    PoolOverlapError,
    check_against_test_pools,
    check_disjoint,
    keep_decision,
    load_pool,
    load_train_test,
    read_pool_files,
    reselect,
    seed_departures,
    write_pool_files,
)
from research.prn.synthetic import load_synthetic, reconstruct, synthesize, unit_normalize
from research.prn.train import TrainConfig, agreement, clean_labels, draw_weights, train_prn
from submission_kit import contract, sdk, zoo
from submission_kit.attack_methods.universal import apply_universal, sgd_universal_perturbation
from submission_kit.prn import defense, paths
from submission_kit.prn.detector import EPS, Detector, dct_features, grayscale, residual_features
from submission_kit.prn.network import PRN, load_prn, save_prn

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


class TinyClassifier(nn.Module):
    """Conv-ReLU-GAP-linear on any image size; seeded."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv((x - 0.5) / 0.25)).mean(dim=(2, 3)))


class ColourModel(nn.Module):
    """Logits favour class (mean intensity · 10): a deterministic stand-in for the target model."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        level = (x.mean(dim=(1, 2, 3)) * 9.999).long().clamp(0, 9)
        return nn.functional.one_hot(level, 10).float()


def _uint8_images(n: int, size: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _signs(k: int, size: int = 8, seed: int = 0, xi: float = XI_INF) -> torch.Tensor:
    return torch.sign(torch.randn(k, 3, size, size, generator=torch.Generator().manual_seed(seed))) * xi


# --- splits ----------------------------------------------------------------------------------------------------

def test_slots_give_disjoint_subsets_per_role_and_norm() -> None:
    n_train, size = 400, 20
    seen: dict[int, tuple[str, str, int]] = {}
    validation = set(splits.validation_indices(n_train, 40).tolist())
    for role in paths.ROLES:
        for norm in paths.NORMS:
            for j in range(4):
                s = splits.slot(role, norm, j)
                assert s not in seen, (role, norm, j, seen.get(s))
                seen[s] = (role, norm, j)
                indices = splits.subset_for_slot(s, n_train=n_train, subset_size=size, validation_size=40).indices()
                assert len(indices) == size and not validation & set(indices.tolist())
    all_indices = [i for s in seen for i in splits.subset_for_slot(s, n_train=n_train, subset_size=size,
                                                                   validation_size=40).indices()]
    assert len(all_indices) == len(set(all_indices))
    with pytest.raises(ValueError, match="subset-size"):
        splits.subset_for_slot(100, n_train=n_train, subset_size=size, validation_size=40)


# --- perturbing ------------------------------------------------------------------------------------------------

def test_quantize_is_the_png_round_trip_of_the_contract() -> None:
    x = torch.rand(2, 3, 5, 5, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.1
    expected = contract.to_float(contract.to_uint8(x.permute(0, 2, 3, 1).numpy()))
    assert torch.equal(quantize(x), torch.from_numpy(expected).permute(0, 3, 1, 2))
    check_png_like(quantize(x))
    with pytest.raises(ValueError, match="grid"):
        check_png_like(torch.full((1, 3, 2, 2), 0.5))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        check_png_like(torch.full((1, 3, 2, 2), 2.0))


def test_perturb_each_equals_perturb_per_image() -> None:
    x = quantize(torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(1)))
    pool = _signs(3, seed=2)
    index = torch.tensor([2, -1, 0, 2])
    out = perturb_each(x, pool, index)
    check_png_like(out)
    assert torch.equal(out[1], x[1])
    for i in (0, 2, 3):
        assert torch.equal(out[i], perturb(x[i:i + 1], pool[index[i]])[0])
        assert torch.equal(out[i], quantize(apply_universal(x[i:i + 1], pool[index[i]]))[0])
    assert float((out - x).abs().max()) <= XI_INF + 0.5 / 255 + 1e-6


def test_budgets() -> None:
    assert default_xi("inf") == XI_INF == 10 / 255
    images = np.full((3, 4, 4, 3), 255, dtype=np.uint8)  # every image has norm sqrt(48)
    assert mean_l2_norm(images) == pytest.approx(math.sqrt(48))
    assert default_xi("2", images) == pytest.approx(0.04 * math.sqrt(48))
    with pytest.raises(ValueError):
        default_xi("2")
    v = torch.tensor([3.0, -4.0]).view(1, 1, 2)
    assert float(norm_of(v, "inf")) == 4.0 and float(norm_of(v, "2")) == 5.0


def test_fooling_rates_count_label_changes() -> None:
    model = ColourModel()
    images = torch.full((4, 3, 2, 2), 0.55)  # class 5
    up, none = torch.full((1, 3, 2, 2), 0.1), torch.zeros(1, 3, 2, 2)
    assert fooling_rates(model, images, torch.cat([up, none])) == [1.0, 0.0]


# --- pools -----------------------------------------------------------------------------------------------------

def test_keep_decision() -> None:
    kept = _signs(1, seed=0)
    fresh = _signs(1, seed=1)[0]
    keep, largest, reason = keep_decision(0.9, fresh, kept, min_fooling_rate=0.8, max_abs_cosine=0.5)
    assert keep and reason == "kept" and 0 <= largest < 0.5
    keep, _, reason = keep_decision(0.5, fresh, kept, min_fooling_rate=0.8, max_abs_cosine=0.5)
    assert not keep and "fooling rate 0.5000 < 0.8" in reason
    keep, largest, reason = keep_decision(0.9, -kept[0], kept, min_fooling_rate=0.8, max_abs_cosine=0.15)
    assert not keep and largest == pytest.approx(1.0) and "cosine" in reason  # |cos| counts opposite signs
    assert keep_decision(0.9, fresh, torch.zeros(0, 3, 8, 8), min_fooling_rate=0.8, max_abs_cosine=0.0)[0]


def _write_pool(path: Path, role: str, vectors: torch.Tensor, starts: list[int], *, model: str = "m",
                norm: str = "inf", kept: list[bool] | None = None, rates: list[float] | None = None) -> None:
    kept = kept or [True] * len(vectors)
    rates = rates or [0.9] * len(vectors)
    manifest = {"format": 1, "spec": {"model": model, "norm": norm, "role": role, "xi": XI_INF,
                                      "min_fooling_rate": 0.8, "max_abs_cosine": 0.15},
                "candidates": [{"row": i, "uap_seed": i, "subset": {"permutation_seed": 1, "n_train": 100,
                                                                     "start": s, "stop": s + 10},
                                "fooling_rate_validation": rates[i], "kept": kept[i], "reason": ""}
                               for i, s in enumerate(starts)], "runs": []}
    write_pool_files(path, vectors.numpy().astype(np.float16), manifest)


def test_pool_round_trip_keeps_only_kept_rows_within_the_ball(tmp_path: Path) -> None:
    vectors = _signs(3, seed=4) * 1.0001  # float16 rounding and this excess are projected away on loading
    _write_pool(tmp_path / "p.npy", "train", vectors, [10, 20, 30], kept=[True, False, True])
    pool = load_pool(tmp_path / "p.npy", model="m", norm="inf", role="train")
    assert len(pool) == 2 and [r["row"] for r in pool.records] == [0, 2]
    assert float(pool.vectors.abs().max()) <= XI_INF + 1e-7
    assert torch.allclose(pool.vectors, vectors[[0, 2]], atol=1e-4)
    assert len(pool.digest()) == 16
    with pytest.raises(PoolError, match="role"):
        load_pool(tmp_path / "p.npy", role="test")
    with pytest.raises(PoolNotFoundError, match="make_pool --model m --norm inf --role test"):
        load_pool(model="m", norm="inf", role="test", root=tmp_path)
    np.save(tmp_path / "p.npy", np.zeros((1, 3, 8, 8), dtype=np.float16))  # array and manifest disagree
    with pytest.raises(PoolError, match="does not match"):
        read_pool_files(tmp_path / "p.npy")


def test_disjointness_is_checked(tmp_path: Path) -> None:
    _write_pool(tmp_path / "train.npy", "train", _signs(2, seed=5), [0, 10])
    _write_pool(tmp_path / "test.npy", "test", _signs(1, seed=6), [20])
    _write_pool(tmp_path / "overlap.npy", "test", _signs(1, seed=7), [15])  # shares 5 images with train row 1
    _write_pool(tmp_path / "other.npy", "test", _signs(1, seed=8), [15], model="other")
    train = load_pool(tmp_path / "train.npy")
    assert 0 <= check_disjoint(train, load_pool(tmp_path / "test.npy")) < 0.5
    with pytest.raises(PoolOverlapError, match="share 5 training images"):
        check_disjoint(train, load_pool(tmp_path / "overlap.npy"))
    check_disjoint(train, load_pool(tmp_path / "other.npy"))  # another model's UAPs never trained this defense
    with pytest.raises(PoolOverlapError, match="roles"):
        check_disjoint(load_pool(tmp_path / "test.npy"), train)


def test_check_against_test_pools(tmp_path: Path) -> None:
    _write_pool(tmp_path / "m" / "uap_inf_train.npy", "train", _signs(1, seed=5), [0])
    train = load_pool(model="m", norm="inf", role="train", root=tmp_path)
    assert check_against_test_pools(train, tmp_path) == {}
    _write_pool(tmp_path / "m" / "uap_2_test.npy", "test", _signs(1, seed=6), [20], norm="2")
    assert list(check_against_test_pools(train, tmp_path)) == ["uap_2_test.npy"]
    _write_pool(tmp_path / "m" / "uap_inf_test.npy", "test", _signs(1, seed=7), [5])
    with pytest.raises(PoolOverlapError):
        check_against_test_pools(train, tmp_path)


def test_reselect_reapplies_thresholds_without_computing(tmp_path: Path) -> None:
    _write_pool(tmp_path / "p.npy", "train", _signs(3, seed=9), [0, 10, 20], kept=[False, False, False],
                rates=[0.3, 0.6, 0.2])
    array, manifest = read_pool_files(tmp_path / "p.npy")
    with pytest.raises(PoolError, match="none of its 3"):
        load_pool(tmp_path / "p.npy")
    new = reselect(array, manifest, min_fooling_rate=0.25, max_abs_cosine=0.5)
    assert [c["kept"] for c in new["candidates"]] == [True, True, False]
    assert new["spec"]["min_fooling_rate"] == 0.25 and new["spec"]["reselected_from"][0]["min_fooling_rate"] == 0.8
    assert [d.split()[0] for d in new["spec"]["departures_from_seed"]] == ["min_fooling_rate", "max_abs_cosine"]
    assert [c["kept"] for c in manifest["candidates"]] == [False, False, False]  # input untouched


def test_grow_pool_keeps_resumes_and_refuses_other_settings(tmp_path: Path) -> None:
    model = TinyClassifier().eval().requires_grad_(False)
    images = _uint8_images(60)
    spec = PoolSpec(model="tiny", norm="inf", role="train", xi=XI_INF, subset_size=4, validation_size=10,
                    min_fooling_rate=0.0, max_abs_cosine=1.0, method="deepfool",
                    uap={"max_iter_uni": 1, "num_classes": 3})
    path = tmp_path / "tiny" / "uap_inf_train.npy"
    manifest = grow_pool(model, images, spec, path=path, count=1, max_candidates=5)
    assert len(manifest["candidates"]) == 1 and manifest["candidates"][0]["kept"]
    first = manifest["candidates"][0]
    assert first["method"] == "deepfool" and "Moosavi-Dezfooli" in first["paper"]
    assert first["params"] == method_params("deepfool", spec.uap) and first["params"]["max_iter_uni"] == 1
    assert manifest["spec"]["method"] == "deepfool" and "step_size_255" not in first
    assert first["slot"] == 0 and first["subset"]["start"] == 10 and first["subset"]["stop"] == 14
    assert 0.0 <= first["fooling_rate_validation"] <= 1.0 and first["linf_255"] <= 10.0 + 1e-3
    manifest = grow_pool(model, images, spec, path=path, count=3, max_candidates=2)  # resumes, capped at 2
    assert [c["slot"] for c in manifest["candidates"]] == [0, 4] and len(manifest["runs"]) == 2
    assert manifest["runs"][-1]["stopped_by"] == "max_candidates"
    assert len(load_pool(path)) == 2
    with pytest.raises(PoolError, match="subset_size"):
        grow_pool(model, images, PoolSpec(**{**spec.__dict__, "subset_size": 5}), path=path, count=3,
                  max_candidates=3)
    with pytest.raises(PoolOverlapError, match="subset-size"):  # test slot 2 of 8 images meets train slot 4
        grow_pool(model, images, PoolSpec(**{**spec.__dict__, "role": "test", "subset_size": 8}),
                  path=tmp_path / "tiny" / "clash.npy", count=1, max_candidates=1, avoid=load_pool(path).subsets())
    strict = grow_pool(model, images, PoolSpec(**{**spec.__dict__, "role": "test", "min_fooling_rate": 1.01}),
                       path=tmp_path / "tiny" / "uap_inf_test.npy", count=1, max_candidates=1)
    assert not strict["candidates"][0]["kept"] and "fooling rate" in strict["candidates"][0]["reason"]
    assert strict["candidates"][0]["slot"] == 2


def test_method_params_fill_defaults_and_refuse_unknown_names() -> None:
    params = method_params("sgd", {"epochs": 2, "step_size": 0.01})
    assert params == {"epochs": 2, "step_size": 0.01, "beta": None, "batch_size": 100}  # signature order
    assert method_params("deepfool", {})["max_iter_uni"] == 10 and "deepfool_batch" in method_params("deepfool", {})
    with pytest.raises(ValueError, match="takes no argument"):
        method_params("sgd", {"max_iter_uni": 1})
    with pytest.raises(ValueError, match="set by the pool"):
        method_params("deepfool", {"xi": 0.1})
    with pytest.raises(ValueError, match="method must be one of"):
        method_params("pgd", {})


def test_seed_departures() -> None:
    seed_rule = {"min_fooling_rate": 0.8, "max_abs_cosine": 0.15}
    assert seed_departures(seed_rule) == [] and seed_departures({**seed_rule, "method": "deepfool"}) == []
    sgd = seed_departures({**seed_rule, "method": "sgd"})
    assert len(sgd) == 1 and "Shafahi" in sgd[0] and "Moosavi-Dezfooli" in sgd[0]
    relaxed = seed_departures({"min_fooling_rate": 0.3, "max_abs_cosine": 0.9, "method": "deepfool"})
    assert relaxed == ["min_fooling_rate 0.3 < the seed's 0.8", "max_abs_cosine 0.9 > the seed's 0.15"]


@pytest.mark.parametrize("norm", ["inf", "2"])
def test_grow_pool_sgd_records_the_method_per_candidate(norm: str, tmp_path: Path) -> None:
    model = TinyClassifier().eval().requires_grad_(False)
    images = _uint8_images(60)
    xi = XI_INF if norm == "inf" else default_xi("2", images)
    uap = method_params("sgd", {"epochs": 2, "batch_size": 2, "step_size": SGD_STEP_FRACTION[norm] * xi})
    spec = PoolSpec(model="tiny", norm=norm, role="train", xi=xi, subset_size=4, validation_size=10,
                    min_fooling_rate=0.0, max_abs_cosine=1.0, method="sgd", uap=uap)
    path = tmp_path / "tiny" / f"uap_{norm}_train.npy"
    manifest = grow_pool(model, images, spec, path=path, count=2, max_candidates=2)
    assert manifest["spec"]["method"] == "sgd" and "Shafahi" in manifest["spec"]["paper"]
    assert manifest["spec"]["step_size_255"] == pytest.approx(SGD_STEP_FRACTION[norm] * xi * 255, abs=1e-5)
    assert any("method sgd" in d for d in manifest["spec"]["departures_from_seed"])
    assert any("max_abs_cosine 1.0" in d for d in manifest["spec"]["departures_from_seed"])
    for j, record in enumerate(manifest["candidates"]):
        assert record["method"] == "sgd" and "AAAI 2020" in record["paper"] and record["params"] == uap
        assert record["step_size_255"] == manifest["spec"]["step_size_255"]
        assert record["passes"] == 2 and record["updates"] == 4 and record["deepfool_calls"] == 0
        assert record["stopped_by"] == "epochs" and record["slot"] == splits.slot("train", norm, j)
    pool = load_pool(path)
    assert len(pool) == 2 and float(norm_of(pool.vectors[0], norm)) <= xi + 1e-6
    # the pool's candidate is the function's result on the candidate's subset with the candidate's seed
    record = manifest["candidates"][0]
    subset = splits.Subset(**record["subset"])
    direct = sgd_universal_perturbation(model, sdk.to_tensor(images[subset.indices()], "cpu"), xi=xi,
                                        p=math.inf if norm == "inf" else 2,
                                        generator=torch.Generator().manual_seed(record["uap_seed"]), **uap)
    assert torch.allclose(pool.vectors[0], direct.v.half().float(), atol=1e-3)
    with pytest.raises(PoolError, match="method"):  # a pool is extended with its own method only
        grow_pool(model, images, PoolSpec(**{**spec.__dict__, "method": "deepfool", "uap": {}}), path=path,
                  count=3, max_candidates=3)
    with pytest.raises(PoolError, match="uap"):
        grow_pool(model, images, PoolSpec(**{**spec.__dict__, "uap": {**uap, "epochs": 3}}), path=path, count=3,
                  max_candidates=3)
    with pytest.raises(ValueError, match="takes no argument"):  # refused before anything is computed or written
        grow_pool(model, images, PoolSpec(**{**spec.__dict__, "uap": {"max_iter_uni": 1}}),
                  path=tmp_path / "new.npy", count=1, max_candidates=1)
    assert not (tmp_path / "new.npy").exists()


def test_grow_pool_cosine_rule_rejects_correlated_sgd_candidates(tmp_path: Path) -> None:
    """SGD UAPs of disjoint subsets on one model can be nearly parallel: the seed's rule then keeps only the first
    (recorded per candidate); a relaxed --max-cosine keeps them and is listed in departures_from_seed."""
    model = TinyClassifier().eval().requires_grad_(False)
    images = _uint8_images(120)
    spec = PoolSpec(model="tiny", norm="inf", role="train", xi=XI_INF, subset_size=8, validation_size=10,
                    min_fooling_rate=0.0, method="sgd", uap=method_params("sgd", {"epochs": 3, "batch_size": 4}))
    manifest = grow_pool(model, images, spec, path=tmp_path / "strict.npy", count=3, max_candidates=3)
    records = manifest["candidates"]
    assert manifest["spec"]["max_abs_cosine"] == 0.15 and manifest["runs"][-1]["stopped_by"] == "max_candidates"
    assert [r["kept"] for r in records] == [True, False, False]  # |cos| 0.76 and 0.82 with the first
    for record in records[1:]:
        assert record["max_abs_cosine"] > 0.5 and "|cosine|" in record["reason"]
    array, stored = read_pool_files(tmp_path / "strict.npy")
    relaxed = reselect(array, stored, min_fooling_rate=0.0, max_abs_cosine=1.0)
    assert all(r["kept"] for r in relaxed["candidates"])
    assert any(d.startswith("max_abs_cosine 1.0") for d in relaxed["spec"]["departures_from_seed"])


class _TinyZoo:
    """Stands in for submission_kit.zoo / research.cifar10 in make_pool.main (offline)."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images

    def load(self, name: str, device: object = None) -> nn.Module:
        return TinyClassifier().eval().requires_grad_(False)

    def load_split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        return self.images, np.zeros(len(self.images), dtype=np.int64)


def test_make_pool_command_method_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = _TinyZoo(_uint8_images(60))
    monkeypatch.setattr(make_pool.zoo, "load", tiny.load)
    monkeypatch.setattr(make_pool.cifar10, "load_split", tiny.load_split)
    common = ["--model", "tiny", "--count", "1", "--subset-size", "4", "--validation-size", "10",
              "--min-fooling-rate", "0", "--max-cosine", "1", "--pools-dir", str(tmp_path)]
    manifest = make_pool.main(["--norm", "2", "--role", "train", "--epochs", "1", "--batch-size", "2",
                               "--beta", "5", *common])  # the default method is sgd
    spec = manifest["spec"]
    xi = default_xi("2", tiny.images)
    assert spec["method"] == "sgd" and spec["xi"] == pytest.approx(xi)
    assert spec["uap"] == {"epochs": 1, "step_size": pytest.approx(xi / 4), "beta": 5.0,
                           "batch_size": 2}
    assert manifest["candidates"][0]["params"] == spec["uap"] and manifest["candidates"][0]["updates"] == 2
    manifest = make_pool.main(["--norm", "inf", "--role", "train", "--epochs", "1", *common])
    assert manifest["spec"]["uap"]["step_size"] == pytest.approx(1.275 / 255)  # attacks/uap_sgd's step at 10/255
    manifest = make_pool.main(["--norm", "2", "--role", "test", "--step-size", "50", "--epochs", "1", *common])
    assert manifest["spec"]["uap"]["step_size"] == pytest.approx(50 / 255)
    assert manifest["candidates"][0]["step_size_255"] == pytest.approx(50)
    manifest = make_pool.main(["--norm", "inf", "--role", "test", "--method", "deepfool", "--max-iter-uni", "1",
                               "--num-classes", "3", "--uap-kwarg", "deepfool_batch=4", *common])
    record = manifest["candidates"][0]
    assert record["method"] == "deepfool" and record["params"]["deepfool_batch"] == 4
    assert record["params"]["max_iter_uni"] == 1 and record["params"]["delta"] == 0.2
    assert record["slot"] == 2  # disjoint from the train pools' slots 0 (inf) and 1 (l2)
    load_train_test("tiny", "inf", root=tmp_path)
    with pytest.raises(PoolError, match="method"):  # extending the sgd pool with deepfool
        make_pool.main(["--norm", "inf", "--role", "train", "--method", "deepfool", *common, "--count", "2"])
    for wrong in (["--method", "deepfool", "--epochs", "3"], ["--delta", "0.1"],
                  ["--uap-kwarg", "step_size=0.1"], ["--uap-kwarg", "max_iter_uni=1"]):
        with pytest.raises(SystemExit):
            make_pool.main(["--norm", "inf", "--role", "train", *wrong, *common])


# --- synthetic perturbations (Algorithm 1) ---------------------------------------------------------------------

def _mixed_pool(xi: float) -> torch.Tensor:
    """A saturated sign pattern and a one-pixel perturbation: walks that lean on the second are too short in ℓ2."""
    dense = _signs(1, seed=11, xi=xi)[0]
    sparse = torch.zeros(3, 8, 8)
    sparse[0, 0, 0] = xi
    return torch.stack([dense, sparse])


@pytest.mark.parametrize("rescale", [False, True])
def test_algorithm_1_invariants(rescale: bool) -> None:
    xi = XI_INF
    pool = _mixed_pool(xi)
    state = torch.random.get_rng_state()
    result = synthesize(pool, 20, xi=xi, norm="inf", generator=torch.Generator().manual_seed(0), rescale=rescale,
                        batch=32)
    assert torch.equal(torch.random.get_rng_state(), state)  # only the explicit generator is used
    assert len(result.perturbations) == 20 and result.coefficients.shape == (20, 2)
    threshold = float(norm_of(pool, "2").mean())
    assert result.l2_threshold == pytest.approx(threshold)
    linf, l2 = norm_of(result.perturbations.double(), "inf"), norm_of(result.perturbations.double(), "2")
    if rescale:
        assert torch.allclose(linf, torch.full_like(linf, xi), rtol=1e-6)
    else:  # the walk stops at the first step reaching ξ; one step adds at most ξ · max ‖𝒫_n‖∞
        step = xi * float(unit_normalize(pool).abs().amax())
        assert bool((linf >= xi * (1 - 1e-6)).all()) and bool((linf <= xi + step + 1e-6).all())
    assert bool((l2 >= threshold * (1 - 1e-6)).all())  # line 8: the keep test
    assert result.accepted < result.attempts  # the sparse direction makes some walks fail it
    assert bool((result.walk_l2 < threshold).any()) and len(result.walk_l2) == result.attempts
    assert bool((result.coefficients >= 0).all()) and bool((result.coefficients.sum(1) > 0).all())  # c1: Ψ⁺
    assert torch.allclose(reconstruct(pool, result.coefficients), result.perturbations, atol=1e-6)
    assert bool((result.steps >= 1).all())
    again = synthesize(pool, 20, xi=xi, norm="inf", generator=torch.Generator().manual_seed(0), rescale=rescale,
                       batch=32)
    assert torch.equal(again.perturbations, result.perturbations)


@pytest.mark.parametrize("rescale", [False, True])
def test_l2_variant_stops_on_the_l2_norm_and_keeps_every_walk(rescale: bool) -> None:
    xi = 0.5
    pool = _signs(4, seed=12)
    result = synthesize(pool, 10, xi=xi, norm="2", generator=torch.Generator().manual_seed(1), rescale=rescale,
                        batch=10)
    l2 = norm_of(result.perturbations.double(), "2")
    if rescale:
        assert torch.allclose(l2, torch.full_like(l2, xi), rtol=1e-6)
    else:  # last step has ℓ2 length ≤ ξ
        assert bool((l2 >= xi * (1 - 1e-6)).all()) and bool((l2 < 2 * xi).all())
    assert result.accepted == result.attempts == 10 and result.l2_threshold == 0.0
    assert bool((result.coefficients >= 0).all())
    assert torch.allclose(reconstruct(pool, result.coefficients), result.perturbations, atol=1e-6)


def test_algorithm_1_gives_up_after_max_attempts() -> None:
    xi = XI_INF
    pool = torch.stack([_signs(1, seed=s, xi=xi)[0] for s in range(6)])  # nearly orthogonal: tests fail
    result = synthesize(pool, 5, xi=xi, norm="inf", generator=torch.Generator().manual_seed(0), max_attempts=64,
                        batch=32)
    assert result.attempts == 64 and len(result.perturbations) == result.accepted == 0
    relaxed = synthesize(pool, 5, xi=xi, norm="inf", generator=torch.Generator().manual_seed(0), l2_fraction=0.1,
                         batch=32)
    assert len(relaxed.perturbations) == 5


def test_load_synthetic_checks_the_pool(tmp_path: Path) -> None:
    _write_pool(tmp_path / "m" / "uap_inf_train.npy", "train", _signs(2, seed=13), [0, 10])
    pool = load_pool(model="m", norm="inf", role="train", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="research.prn.synthetic --model m --norm inf"):
        load_synthetic("m", "inf", pool, root=tmp_path)
    coefficients = torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=torch.float64)
    np.save(paths.synthetic_path("m", "inf", tmp_path), coefficients.numpy())
    record = paths.synthetic_path("m", "inf", tmp_path).with_suffix(".json")
    record.write_text(json.dumps({"pool_digest": pool.digest()}))
    assert torch.allclose(load_synthetic("m", "inf", pool, root=tmp_path), reconstruct(pool.vectors, coefficients))
    record.write_text(json.dumps({"pool_digest": "another"}))
    with pytest.raises(FileNotFoundError, match="another train pool"):
        load_synthetic("m", "inf", pool, root=tmp_path)


# --- network and training --------------------------------------------------------------------------------------

def test_prn_architecture_and_save_load(tmp_path: Path) -> None:
    prn = PRN(width=4)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in prn.modules())
    convs = [m for m in prn.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 2 * 5 + 2 and all(c.stride == (1, 1) for c in convs)
    assert [c.kernel_size for c in convs[-2:]] == [(1, 1), (1, 1)] and convs[-2].out_channels == 16
    x = torch.rand(2, 3, 32, 32)
    assert prn(x).shape == x.shape and prn(torch.rand(1, 3, 9, 13)).shape == (1, 3, 9, 13)
    save_prn(tmp_path / "prn.pt", prn, {"note": "test"})
    loaded = load_prn(tmp_path / "prn.pt")
    assert loaded.config() == {"width": 4, "blocks": 5, "bottleneck": 16, "channels": 3}
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    assert torch.equal(loaded(x), prn.eval()(x))


def test_train_prn_keeps_the_classifier_frozen() -> None:
    classifier = TinyClassifier().eval().requires_grad_(False)
    images = _uint8_images(24)
    labels = clean_labels(classifier, images, "cpu", batch_size=7)
    assert labels.shape == (24,)
    before = {k: v.clone() for k, v in classifier.state_dict().items()}
    config = TrainConfig(width=4, epochs=1.0, batch_size=8, log_every=1, decay_every=2, decay=0.5)
    result = train_prn(classifier, images, labels, _signs(2, seed=14), config)
    assert result.iterations == 3 and result.images == 24 and result.stopped_by == "epochs"
    assert [round(h["lr"], 6) for h in result.history] == [0.001, 0.0005, 0.0005]
    assert all(math.isfinite(h["loss"]) for h in result.history)
    assert all(torch.equal(v, classifier.state_dict()[k]) for k, v in before.items())
    again = train_prn(classifier, images, labels, _signs(2, seed=14), config)
    assert all(torch.equal(a, b) for a, b in zip(result.prn.state_dict().values(), again.prn.state_dict().values()))
    fractions = agreement(classifier, result.prn, quantize(torch.rand(5, 3, 8, 8)), labels[:5], _signs(2),
                          torch.Generator().manual_seed(0))
    assert set(fractions) == {"clean_rectified", "perturbed", "perturbed_rectified"}
    with pytest.raises(ValueError, match="freeze"):
        train_prn(TinyClassifier(), images, labels, _signs(2), config)


def test_draw_weights_give_the_real_rows_their_share() -> None:
    assert draw_weights(5, 5, 0.5) is None and draw_weights(5, 2, None) is None
    weights = draw_weights(5, 2, 0.5)
    assert weights is not None and torch.allclose(weights, torch.tensor([0.25, 0.25, 1 / 6, 1 / 6, 1 / 6],
                                                                         dtype=torch.float64))
    assert torch.equal(draw_weights(3, 1, 1.0), torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="real_share"):
        draw_weights(3, 1, 1.5)
    with pytest.raises(ValueError, match="real_count"):
        draw_weights(3, 0, 0.5)


def test_train_prn_real_share_one_never_draws_a_synthetic_row() -> None:
    """With real_share = 1 a synthetic row is never drawn: replacing every synthetic row changes nothing."""
    classifier = TinyClassifier().eval().requires_grad_(False)
    images = _uint8_images(24)
    labels = clean_labels(classifier, images, "cpu")
    config = TrainConfig(width=4, epochs=1.0, batch_size=8, p_perturb=1.0, real_share=1.0)
    real = _signs(2, seed=14)
    runs = [train_prn(classifier, images, labels, torch.cat([real, synthetic]), config, real_count=2)
            for synthetic in (_signs(3, seed=1), -_signs(3, seed=2))]
    assert all(torch.equal(a, b) for a, b in zip(*(r.prn.state_dict().values() for r in runs)))
    uniform = train_prn(classifier, images, labels, torch.cat([real, -_signs(3, seed=2)]),
                        TrainConfig(width=4, epochs=1.0, batch_size=8, p_perturb=1.0), real_count=2)
    assert not all(torch.equal(a, b) for a, b in zip(runs[0].prn.state_dict().values(),
                                                     uniform.prn.state_dict().values()))


def test_commands_turn_user_errors_into_an_error_message_and_exit_2(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    def missing() -> None:
        raise PoolNotFoundError("no pool at x: run make_pool first")

    assert run_command(missing) == 2
    assert capsys.readouterr().err == "error: no pool at x: run make_pool first\n"
    assert run_command(lambda: None) == 0

    def bug() -> None:
        raise RuntimeError("a bug, not a user error")

    with pytest.raises(RuntimeError):
        run_command(bug)
    done = subprocess.run([sys.executable, "-m", "research.prn.train", "--norm", "inf", "--pools-dir",
                           str(tmp_path)], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: UAP pool ") and "python -m research.prn.make_pool" in done.stderr
    assert "Traceback" not in done.stderr


# --- detector --------------------------------------------------------------------------------------------------

def test_dct_features_of_a_zero_difference_are_finite_and_constant() -> None:
    features = dct_features(torch.zeros(3, 3, 8, 8))
    assert features.shape == (3, 64) and np.isfinite(features).all()
    assert np.all(features == math.log(EPS))
    prn = PRN(width=2)
    identity = lambda x: x  # noqa: E731 - a rectifier that changes nothing
    assert np.all(residual_features(identity, torch.rand(2, 3, 8, 8)) == math.log(EPS))
    assert residual_features(prn, torch.rand(2, 3, 8, 8)).shape == (2, 64)


def test_dct_features_are_the_log_abs_orthonormal_dct_of_the_luma() -> None:
    diff = torch.zeros(1, 3, 4, 4)
    diff[0, :, :, :] = 0.5  # a constant gray image of luma 0.5: only the DC coefficient, 0.5 · 4 = 2
    expected = np.full(16, math.log(EPS))
    expected[0] = math.log(2.0 + EPS)
    assert np.allclose(dct_features(diff)[0], expected)
    rgb = torch.rand(2, 3, 4, 4)
    assert torch.allclose(grayscale(rgb), 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2])
    gray = grayscale(rgb.double())  # orthonormal: Parseval
    energy = (np.exp(dct_features(rgb)) - EPS) ** 2
    assert np.allclose(energy.sum(axis=1), (gray ** 2).sum(dim=(1, 2)).numpy())


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_detector_fit_predict_save_load(kernel: str, tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    clean = dct_features(torch.randn(20, 3, 8, 8, generator=gen) * 0.001)
    perturbed = dct_features(torch.randn(20, 3, 8, 8, generator=gen) * 0.05)
    features = np.concatenate([clean, perturbed])
    labels = np.array([False] * 20 + [True] * 20)
    detector = Detector.fit(features, labels, kernel=kernel, record={"note": "toy"})
    assert (detector.predict(features) == labels).mean() == 1.0
    detector.save(tmp_path / "d.joblib")
    loaded = Detector.load(tmp_path / "d.joblib")
    assert np.array_equal(loaded.predict(features), detector.predict(features))
    assert json.loads((tmp_path / "d.json").read_text())["kernel"] == kernel
    with pytest.raises(ValueError):
        Detector.fit(features, labels, kernel="poly")


# --- the defense and its folders -------------------------------------------------------------------------------

def _tiny_weights(root: Path, norm: str = "inf") -> Path:
    """A freshly initialised width-2 PRN and a detector trained on its residuals of random images."""
    torch.manual_seed(0)
    prn = PRN(width=2).eval()
    save_prn(paths.prn_path(zoo.TARGET_MODEL, norm, root), prn, {"note": "untrained, for tests"})
    gen = torch.Generator().manual_seed(1)
    x = quantize(torch.rand(16, 3, 32, 32, generator=gen))
    xp = perturb_each(x, _signs(1, size=32), torch.tensor([0] * 8 + [-1] * 8))
    detector = Detector.fit(residual_features(prn, xp), np.array([True] * 8 + [False] * 8))
    detector.save(paths.detector_path(zoo.TARGET_MODEL, norm, root))
    return root


def test_defense_rectifies_only_detected_images(tmp_path: Path) -> None:
    _tiny_weights(tmp_path)
    with_detector = defense.load_defense(weights_dir=tmp_path)
    always = defense.load_defense(weights_dir=tmp_path, always=True)
    assert always.detector is None
    x = quantize(torch.rand(6, 3, 32, 32))
    rectified = always.prn(x)
    assert torch.equal(always(x), rectified)
    detected = with_detector.detect(x)
    out = with_detector(x)
    for i in range(len(x)):
        assert torch.equal(out[i], rectified[i] if bool(detected[i]) else x[i])


def test_missing_weights_name_the_command(tmp_path: Path) -> None:
    with pytest.raises(defense.PRNWeightsNotFoundError, match="python -m research.prn.train --model vgg6_w48"):
        defense.load_defense(weights_dir=tmp_path)
    torch.manual_seed(0)
    save_prn(paths.prn_path(zoo.TARGET_MODEL, "inf", tmp_path), PRN(width=2))
    assert defense.load_defense(weights_dir=tmp_path, always=True).detector is None
    with pytest.raises(defense.PRNWeightsNotFoundError, match="research.prn.train_detector --model vgg6_w48"):
        defense.load_defense(weights_dir=tmp_path)


def _load_folder_module(folder: str):
    spec = importlib.util.spec_from_file_location(f"defense_{folder}", ROOT / "defenses" / folder / "defense.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("folder", ["prn", "prn_always"])
def test_defense_folders_with_tiny_fresh_weights(folder: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    weights = _tiny_weights(tmp_path / "weights")
    loaded = []
    monkeypatch.setattr(zoo, "load", lambda name, device="cpu": loaded.append(name) or ColourModel())
    inputs = tmp_path / "in"
    inputs.mkdir()
    for png in sorted((ROOT / "sample_data").glob("*.png"))[:6]:
        shutil.copyfile(png, inputs / png.name)
    _load_folder_module(folder).main([str(inputs), str(tmp_path / "out.csv")], weights_dir=weights)
    rows = list(csv.reader(open(tmp_path / "out.csv")))
    assert [r[0] for r in rows] == sorted(p.name for p in inputs.glob("*.png"))
    assert all(0 <= int(r[1]) <= 9 for r in rows) and loaded == [zoo.TARGET_MODEL]
    for name in ("metadata.json", "run_defense.sh", "README.md"):
        assert (ROOT / "defenses" / folder / name).is_file()


_COMMITTED = all(p.is_file() for p in (paths.prn_path(zoo.TARGET_MODEL, "inf"),
                                       paths.detector_path(zoo.TARGET_MODEL, "inf"),
                                       zoo.weights_path(zoo.TARGET_MODEL)))


@pytest.mark.slow
def test_committed_prn_defenses_run_through_the_harness(tmp_path: Path) -> None:
    assert _COMMITTED, "PRN, detector or target weights missing from the checkout (they are committed)"
    from harness.competition import CompetitionConfig, run_competition
    from harness.limits import LimitPolicy

    config = CompetitionConfig(input_dir=ROOT / "sample_data", attacks_dirs=(ROOT / "attacks",),
                               defenses_dirs=(ROOT / "defenses",), output_dir=tmp_path / "results",
                               epsilons=(10,), only=("noop", "uap", "prn", "prn_always", "base"),
                               policy=LimitPolicy(minimum_seconds=300))
    result = run_competition(config, echo=lambda _: None)
    assert not any(r.problem for r in result.runs), [r.problem for r in result.runs]
    rows = {(r["track"], r["name"]): r for r in csv.DictReader(open(tmp_path / "results" / "leaderboard.csv"))}
    assert float(rows[("defense", "prn_always")]["clean_accuracy"]) >= 0.5
    assert float(rows[("defense", "prn")]["clean_accuracy"]) >= 0.5
