"""Modern and adaptive attacks (issue 21): against torchattacks where the algorithms coincide, BPDA's backward
pass, gradients through the real defense modules, eval mode kept, and the folders' declarations.

A tiny seeded CNN (no trained weights) for the algorithm checks; the committed HGD / PRN weights for the
end-to-end checks.
"""

from __future__ import annotations

import importlib.util
import json
from functools import partial
from pathlib import Path

import pytest
import torch
import torchattacks
from torch import nn

from submission_kit import zoo
from submission_kit.attack_methods import adaptive, autoattack, gradient, transfer
from submission_kit.defense_blocks import classify, denoise
from tiny_models import TinyNet, tiny_model

ROOT = Path(__file__).resolve().parents[2]
EPS = 8 / 255


def tiny(seed: int = 0) -> TinyNet:
    """:func:`tiny_models.tiny_model` in eval mode."""
    return tiny_model(seed).eval()


def images(n: int = 6, seed: int = 1) -> torch.Tensor:
    return torch.rand((n, 3, 32, 32), generator=torch.Generator().manual_seed(seed))


def own_labels(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x).argmax(1)


def test_ti_mi_fgsm_equals_torchattacks_tifgsm_without_diversity():
    model, x = tiny(), images()
    mine = transfer.ti_mi_fgsm(model, x, eps=EPS, steps=10, mu=1.0, len_kernel=5, nsig=3)
    reference = torchattacks.TIFGSM(model, eps=EPS, alpha=EPS / 10, steps=10, decay=1.0, len_kernel=5, nsig=3,
                                    diversity_prob=0.0, resize_rate=0.9)(x, own_labels(model, x))
    assert (mine - reference).abs().max() < 1e-6
    assert (mine - x).abs().max() <= EPS + 1e-6 and (mine - x).abs().max() > EPS / 2


def test_gaussian_kernel_matches_the_scipy_construction():
    reference = torch.from_numpy(torchattacks.TIFGSM(tiny(), len_kernel=7, nsig=3).kernel_generation()[0, 0])
    assert torch.allclose(transfer.gaussian_kernel(7, 3), reference, atol=1e-7)


@pytest.mark.parametrize("seed", [0, 3])
def test_di_mi_fgsm_equals_torchattacks_difgsm_with_the_same_draws(seed):
    model, x = tiny(), images()
    labels = own_labels(model, x)
    mine = transfer.di_mi_fgsm(model, x, eps=EPS, steps=10, mu=1.0, resize_rate=1.1, diversity_prob=0.5,
                               generator=torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)
    reference = torchattacks.DIFGSM(model, eps=EPS, alpha=EPS / 10, steps=10, decay=1.0, resize_rate=1.1,
                                    diversity_prob=0.5)(x, labels)
    assert (mine - reference).abs().max() < 1e-6
    # the diversity actually changes the attack (not a silent MI-FGSM)
    plain = transfer.di_mi_fgsm(model, x, eps=EPS, steps=10, diversity_prob=0.0)
    assert (mine - plain).abs().max() > 0


def test_input_diversity_shapes_and_padding():
    x = torch.ones(2, 3, 32, 32)
    out = transfer.input_diversity(x, resize_rate=1.1, diversity_prob=1.0, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 35, 35)
    assert (out == 0).any() and (out == 1).any()  # zero padding around a resized copy
    same = transfer.input_diversity(x, resize_rate=1.1, diversity_prob=0.0, generator=torch.Generator())
    assert same is x


def test_apgd_ce_stage_equals_torchattacks_apgd():
    model, x = tiny(), images()
    mine = autoattack.apgd(model, x, eps=EPS, n_iter=10, targeted_stage=False, seed=0)
    reference = torchattacks.APGD(model, eps=EPS, steps=10, seed=0, loss="ce")(x, own_labels(model, x))
    assert torch.equal(mine, reference)


def test_apgd_targeted_stage_only_touches_unfooled_images_and_never_helps_the_model():
    model, x = tiny(), images(12)
    labels = own_labels(model, x)
    ce_only = autoattack.apgd(model, x, eps=2 / 255, n_iter=5, targeted_stage=False)
    both = autoattack.apgd(model, x, eps=2 / 255, n_iter=5, targeted_stage=True)
    with torch.no_grad():
        fooled_ce = model(ce_only).argmax(1) != labels
        fooled_both = model(both).argmax(1) != labels
    assert torch.equal(both[fooled_ce], ce_only[fooled_ce])
    assert bool((fooled_both | ~fooled_ce).all())
    assert (both - x).abs().max() <= 2 / 255 + 1e-6


def test_square_equals_torchattacks_square_with_the_same_seed():
    model, x = tiny(), images()
    mine = autoattack.square(model, x, eps=EPS, n_queries=50, seed=5)
    reference = torchattacks.Square(model, eps=EPS, n_queries=50, seed=5, p_init=0.8)(x, own_labels(model, x))
    assert torch.equal(mine, reference)
    assert (mine - x).abs().max() <= EPS + 1e-6


def test_margin_loss_and_cw_linf():
    logits = torch.tensor([[3.0, 1.0, 2.5], [0.0, 4.0, 1.0]])
    assert torch.allclose(autoattack.margin_loss(logits, torch.tensor([0, 0])), torch.tensor([-0.5, 4.0]))
    model, x = tiny(), images()
    adv = autoattack.cw_linf(model, x, eps=EPS, steps=10)
    labels = own_labels(model, x)
    with torch.no_grad():
        before = autoattack.margin_loss(model(x), labels)
        after = autoattack.margin_loss(model(adv), labels)
    assert (adv - x).abs().max() <= EPS + 1e-6
    assert float(after.mean()) > float(before.mean())


def linear(seed: int = 0) -> nn.Module:
    """A seeded linear classifier on raw pixels: unlike :func:`tiny` (whose eval-mode predictions are one class
    here), small ε moves its predictions, targeted ones included."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10)).eval()


def _two_runs(model: nn.Module, x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The two runs of :func:`adaptive.label_free_pgd`, made independently: (away, toward, least-likely class)."""
    with torch.no_grad():
        target = model(x).argmin(1)
    away = adaptive.adaptive_pgd(model, x, eps=eps, steps=10, y=own_labels(model, x))
    toward = gradient.pgd(model, x, eps=eps, alpha=eps / 4, steps=10, target=target)
    return away, toward, target


@pytest.mark.parametrize("eps", [4 / 255, 8 / 255])
def test_label_free_pgd_keeps_the_targeted_image_exactly_where_the_defense_predicts_the_target(eps):
    model, x = linear(), images(12)
    before = x.clone()
    away, toward, target = _two_runs(model, x, eps)
    out = adaptive.label_free_pgd(model, x, eps=eps, steps=10)
    assert torch.equal(x, before)  # input untouched
    hit = own_labels(model, torch.round(toward * 255) / 255) == target
    assert 0 < int(hit.sum()) < len(x)  # both branches are exercised on these images
    for i in range(len(x)):
        assert torch.equal(out[i], toward[i] if hit[i] else away[i])
    assert (out - x).abs().max() <= eps + 1e-6 and out.min() >= 0 and out.max() <= 1
    # fooled (label-free: prediction ≠ own clean prediction) wherever the untargeted run alone fooled
    clean, fooled_away, fooled = own_labels(model, x), own_labels(model, away), own_labels(model, out)
    assert bool(((fooled_away != clean) <= (fooled != clean)).all())


@pytest.mark.parametrize(("answers", "expect"), [("target", "toward"), ("clean", "away")])
def test_label_free_pgd_chooses_by_the_real_defense_prediction(answers, expect):
    """A gated defense's prediction is not the attacked model's argmax: the choice asks ``defense_labels``."""
    model, x = linear(), images(6)
    away, toward, target = _two_runs(model, x, EPS)
    clean = own_labels(model, x)
    defense = (lambda _x: target) if answers == "target" else (lambda _x: clean)
    out = adaptive.label_free_pgd(model, x, eps=EPS, steps=10, defense_labels=defense)
    assert torch.equal(out, toward if expect == "toward" else away)


@pytest.mark.parametrize("gated", [False, True])
def test_adaptive_folders_run_label_free_pgd(monkeypatch, gated):
    """What an aimed folder's ``main`` runs per batch is :func:`adaptive.label_free_pgd` on its defended model,
    with the target model's least-likely class and (for a gated defense) the real defense's predictions."""
    captured = {}
    monkeypatch.setattr(adaptive.submission, "run_attack", lambda attack, argv=None: captured.update(attack=attack))
    constant = (lambda model, device: (lambda x: torch.zeros(len(x), dtype=torch.long))) if gated else None
    adaptive.run_adaptive_attack(lambda model, device: adaptive.Defended(model, nn.Identity()), steps=5,
                                 labels=constant, argv=[])
    model, x = linear(), images(6)
    defended = adaptive.Defended(model, nn.Identity())
    expected = adaptive.label_free_pgd(defended, x, eps=EPS, steps=5, least_likely_of=model,
                                       defense_labels=constant(model, None) if gated else None)
    assert torch.equal(captured["attack"](model, x, EPS), expected)


def test_pgd_takes_labels_or_a_target_not_both():
    model, x = tiny(), images(2)
    with pytest.raises(ValueError, match=r"labels to move away from \(y\) or a target to move toward"):
        gradient.pgd(model, x, eps=EPS, y=own_labels(model, x), target=own_labels(model, x))


def test_bpda_forward_is_the_transform_and_backward_is_the_identity():
    x = images(3).requires_grad_(True)
    transform = partial(denoise.jpeg, quality=75, n_jobs=1)
    y = adaptive.bpda(transform)(x)
    assert torch.equal(y.detach(), transform(x.detach()))
    upstream = torch.randn_like(y)
    y.backward(upstream)
    assert torch.equal(x.grad, upstream)


def _hooked(module: nn.Module) -> list[int]:
    calls: list[int] = []
    module.register_full_backward_hook(lambda *_: calls.append(1))
    return calls


def _input_gradient(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    nn.functional.cross_entropy(model(x), own_labels(model, x.detach())).backward()
    return x.grad


@pytest.fixture(scope="module")
def target():
    return zoo.load(zoo.TARGET_MODEL, device="cpu").eval()


def test_end_to_end_hgd_takes_gradients_through_the_real_denoiser(target):
    from submission_kit.hgd.defense import denoise_transform
    from submission_kit.hgd.registry import load_denoiser

    denoiser = load_denoiser("dunet_lgd")
    defended = adaptive.Defended(target, denoiser)
    assert defended.preprocess is denoiser  # the loaded module itself, not a copy
    calls = _hooked(denoiser)
    x = images(4)
    through = _input_gradient(defended, x)
    assert calls and through.abs().sum() > 0
    assert not torch.allclose(through, _input_gradient(target, x))
    # same predictions as the defense folder's pipeline
    with torch.no_grad():
        assert torch.equal(defended(x).argmax(1), classify.predict(target, x, transform=denoise_transform(denoiser)))


def test_prn_both_branches_takes_gradients_through_the_real_rectifier(target):
    from submission_kit.prn.defense import load_defense

    defense = load_defense(zoo.TARGET_MODEL, always=False)
    both = adaptive.BothBranches(target, defense.prn)
    calls = _hooked(defense.prn)
    x = images(4)
    grad = _input_gradient(both, x)
    assert calls and grad.abs().sum() > 0
    # each branch contributes: the gradient is not the plain classifier's alone
    plain = adaptive.Defended(target, lambda v: v)
    assert not torch.allclose(grad, _input_gradient(plain, x))


def _bn_state(model: nn.Module) -> list[torch.Tensor]:
    return [b.clone() for name, b in model.named_buffers()]


ATTACKS = {
    "apgd": lambda m, x: autoattack.apgd(m, x, eps=EPS, n_iter=3),
    "square": lambda m, x: autoattack.square(m, x, eps=EPS, n_queries=10),
    "cw_linf": lambda m, x: autoattack.cw_linf(m, x, eps=EPS, steps=2),
    "di": lambda m, x: transfer.di_mi_fgsm(m, x, eps=EPS, steps=2),
    "ti": lambda m, x: transfer.ti_mi_fgsm(m, x, eps=EPS, steps=2, len_kernel=3),
    "adaptive_pgd": lambda m, x: adaptive.adaptive_pgd(m, x, eps=EPS, steps=2),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
@pytest.mark.parametrize("wrap", ["bare", "defended", "both_branches"])
def test_every_attack_and_wrapper_keeps_eval_mode(name, wrap):
    classifier = tiny()
    x = images(4)
    clean_before = own_labels(classifier, x)
    if wrap == "bare":
        model: nn.Module = classifier.train()  # left in training mode: the attack must use eval mode and restore it
    elif wrap == "defended":
        model = adaptive.Defended(classifier, adaptive.bpda(partial(denoise.jpeg, n_jobs=1)))
        model.train()
        assert not classifier.training  # the wrapper refuses training mode
    else:
        model = adaptive.BothBranches(classifier, nn.Conv2d(3, 3, 1))
        model.train()
        assert not classifier.training
    stats = _bn_state(classifier)
    ATTACKS[name](model, x)
    assert all(torch.equal(a, b) for a, b in zip(stats, _bn_state(classifier)))
    assert classifier.training == (wrap == "bare")
    assert torch.equal(own_labels(classifier, x), clean_before)


ADAPTIVE = sorted(p.parent.name for p in (ROOT / "attacks").glob("*/metadata.json")
                  if "targets_defense" in json.loads(p.read_text()))


def test_adaptive_folders_name_existing_defenses_and_cover_the_sample_transform_defenses():
    targets = {json.loads((ROOT / "attacks" / a / "metadata.json").read_text())["targets_defense"] for a in ADAPTIVE}
    assert all((ROOT / "defenses" / t / "metadata.json").is_file() for t in targets)
    assert {"tv_denoise", "tv_denoise_vdef", "nl_means", "nl_means_vdef", "jpeg", "hgd_pgd", "hgd_fgd", "hgd_lgd",
            "hgd_cgd", "prn", "prn_always"} <= targets


@pytest.mark.parametrize("name", ["tv_denoise_vdef", "nl_means_vdef"])
def test_vdef_copies_are_the_defenses_files(name):
    assert (ROOT / "attacks" / f"bpda_{name}" / "v_def.npy").read_bytes() == \
        (ROOT / "defenses" / name / "v_def.npy").read_bytes()


def test_committed_aimed_folders_are_what_make_attacks_writes(tmp_path: Path) -> None:
    """The e2e_hgd_* and bpda_* folders are generated by one command, never edited by hand."""
    from research.adaptive import make_attacks

    make_attacks.main(["--dir", str(tmp_path)])
    names = [make_attacks.folder_name(g) for g in ("pgd", "fgd", "lgd", "cgd")]
    names += [f"bpda_{d}" for d in make_attacks.BPDA_DEFENSES]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    for name in names:
        generated = {p.name: p.read_bytes() for p in sorted((tmp_path / name).iterdir())}
        committed = {p.name: p.read_bytes() for p in sorted((ROOT / "attacks" / name).iterdir())
                     if p.name != "__pycache__"}
        assert committed == generated, name
        target = json.loads(generated["metadata.json"])["targets_defense"]
        assert name in (f"bpda_{target}", f"e2e_{target}")


@pytest.mark.parametrize("name", ["tv_denoise", "nl_means", "jpeg", "tv_denoise_vdef", "nl_means_vdef"])
def test_bpda_folder_runs_its_defenses_exact_forward_pass(name):
    """The attack's defended model sees what the defense folder's classifier sees (same options, same v_def)."""
    from submission_kit.defense_blocks import sample_defenses

    spec = importlib.util.spec_from_file_location(f"bpda_{name}", ROOT / "attacks" / f"bpda_{name}" / "attack.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    defended = module.build(nn.Identity(), torch.device("cpu"))
    v_def = {"v_def": ROOT / "defenses" / name / "v_def.npy"} if name.endswith("_vdef") else {}
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    expected = sample_defenses.transform(name, **v_def)(x).clamp(0, 1)
    assert torch.equal(defended(x), expected)
    defense_source = (ROOT / "defenses" / name / "defense.py").read_text()
    assert f'sample_defenses.transform("{name}"' in defense_source  # the defense takes the same transformation
