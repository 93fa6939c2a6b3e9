"""DeepFool, UAP, projections and the fooling rate (submission_kit.attack_methods.universal) on tiny synthetic
models."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from submission_kit.attack_methods import universal
from submission_kit.attack_methods.universal import (
    apply_universal,
    deepfool,
    fooling_rate,
    project_l2,
    project_linf,
    sgd_universal_perturbation,
    universal_perturbation,
)


class TinyNet(nn.Module):
    """Conv-BN-ReLU-pool-conv-ReLU-GAP-linear on 16x16 images; seeded; left in training mode on purpose."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.fc = nn.Linear(16, 10)
        with torch.no_grad():
            self.features[1].running_mean.uniform_(-0.3, 0.3)
            self.features[1].running_var.uniform_(0.5, 2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features((x - 0.5) / 0.25))


class PerExampleNet(nn.Module):
    """Runs the wrapped model one image at a time (arithmetic independent of the batch size)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.model(x[i:i + 1]) for i in range(x.shape[0])])


class Linear(nn.Module):
    """Affine classifier f(x) = W · flatten(x) + b."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.weight.T + self.bias


class ConstantNet(nn.Module):
    """Logits independent of the input: every gradient difference is exactly zero."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.arange(10, dtype=x.dtype).expand(x.shape[0], -1) + 0 * x.sum(dim=(1, 2, 3)).unsqueeze(1)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model() -> TinyNet:
    return TinyNet()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    gen = torch.Generator().manual_seed(2)
    return torch.randint(0, 256, (6, 3, 16, 16), generator=gen).float() / 255


# --- projections and fooling rate ------------------------------------------------------------------------------

def test_project_linf() -> None:
    v = torch.tensor([[-0.5, -0.01], [0.02, 0.3]]).view(1, 2, 2)
    out = project_linf(v, 0.05)
    assert torch.equal(out, torch.tensor([[-0.05, -0.01], [0.02, 0.05]]).view(1, 2, 2))
    assert v[0, 0, 0] == -0.5  # not in place


def test_project_l2() -> None:
    v = torch.full((3, 4, 4), 0.5)  # ‖v‖₂ = 0.5 · √48
    out = project_l2(v, 1.0)
    assert out.norm().item() == pytest.approx(1.0, rel=1e-6) and out.norm() <= 1.0 + 1e-6
    assert torch.allclose(out / out.norm(), v / v.norm())
    inside = torch.full((3, 4, 4), 0.01)
    assert torch.equal(project_l2(inside, 1.0), inside)
    assert torch.equal(project_l2(torch.zeros(3, 4, 4), 1.0), torch.zeros(3, 4, 4))
    batch = torch.stack([v, inside])  # one norm per example
    projected = project_l2(batch, 1.0)
    assert torch.allclose(projected[0], out) and torch.equal(projected[1], inside)
    with pytest.raises(ValueError):
        universal.project_lp(v, 1.0, 1)


def test_fooling_rate_hand_computed() -> None:
    # Two classes on 1x1 images: f(x) = (2·x_r, 1), so class 0 iff x_r > 0.5.
    toy = Linear(torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]]), torch.tensor([0.0, 1.0]))
    red = torch.tensor([0.1, 0.45, 0.55, 0.6, 0.9])
    images = torch.zeros(5, 3, 1, 1)
    images[:, 0, 0, 0] = red
    v = torch.tensor([0.1, 0.0, 0.0]).view(3, 1, 1)
    # clean: 1, 1, 0, 0, 0; red + 0.1 = 0.2, 0.55, 0.65, 0.7, 1.0 (clipped): 1, 0, 0, 0, 0 → 1 of 5 flips
    assert fooling_rate(toy, images, v) == pytest.approx(1 / 5)
    # −0.2: 0.0 (clipped), 0.25, 0.35, 0.4, 0.7 → 1, 1, 1, 1, 0 → 2 of 5 flip
    assert fooling_rate(toy, images, -2 * v, batch_size=2) == pytest.approx(2 / 5)
    assert fooling_rate(toy, images, torch.zeros(3, 1, 1)) == 0.0
    assert fooling_rate(toy, images[:0], v) == 0.0


def test_apply_universal_projects_clips_and_tiles() -> None:
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    v = torch.empty(3, 4, 4).uniform_(-0.2, 0.2, generator=torch.Generator().manual_seed(1))
    out = apply_universal(x, v, eps=0.05)
    assert out.shape == x.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    assert float((out - x).abs().max()) <= 0.05 + 1e-6
    expected = torch.clamp(x + project_linf(v, 0.05).repeat(1, 2, 2), 0, 1)
    assert torch.equal(out, expected)
    assert torch.equal(apply_universal(x, v, eps=0.0), x)


# --- DeepFool --------------------------------------------------------------------------------------------------

def test_deepfool_linear_model_is_exact() -> None:
    # For an affine classifier DeepFool reaches the closest boundary in one step:
    # ‖r‖ = |f_k − f_l| / ‖w_k − w_l‖ for the closest class k.
    gen = torch.Generator().manual_seed(0)
    toy = Linear(torch.randn(4, 12, generator=gen) * 0.1, torch.randn(4, generator=gen) * 0.1)
    x = torch.full((1, 3, 2, 2), 0.5)
    with torch.no_grad():
        f = toy(x)[0]
    label = int(f.argmax())
    w = toy.weight.detach()
    dists = [abs(float(f[k] - f[label])) / float((w[k] - w[label]).norm()) for k in range(4) if k != label]
    found = deepfool(toy, x, num_classes=4, overshoot=0.02, max_iter=10)
    assert int(found.iterations[0]) == 1 and bool(found.converged[0])
    assert found.perturbation.norm().item() == pytest.approx(1.02 * min(dists), rel=1e-4)
    assert int(found.label[0]) == label


def test_deepfool_tiny_cnn(model: TinyNet, images: torch.Tensor) -> None:
    before = images.clone()
    model.train()
    found = deepfool(model, images, num_classes=10, overshoot=0.02, max_iter=10)
    assert model.training and torch.equal(images, before)
    assert found.perturbation.shape == images.shape
    assert float(found.adversarial.min()) >= 0 and float(found.adversarial.max()) <= 1
    assert torch.equal(found.adversarial, torch.clamp(images + found.perturbation, 0, 1))
    assert bool(found.converged.all())
    assert bool((found.iterations >= 1).all()) and bool((found.iterations <= 10).all())
    model.eval()
    with torch.no_grad():
        assert bool((model(images + found.perturbation).argmax(1) != found.label).all())
        assert torch.equal(found.label, model(images).argmax(1))
    # With clipped iterates every step stays a valid image (and may stall on the boundary instead).
    clipped = deepfool(model, images, clip=True, max_iter=3)
    with torch.no_grad():
        assert torch.equal(model(clipped.adversarial).argmax(1) != clipped.label, clipped.converged)


def test_deepfool_batch_equals_per_example(model: TinyNet, images: torch.Tensor) -> None:
    isolated, images = PerExampleNet(model), images[:3]
    batch = deepfool(isolated, images, num_classes=4)
    singles = [deepfool(isolated, images[i:i + 1], num_classes=4) for i in range(len(images))]
    assert torch.equal(batch.perturbation, torch.cat([s.perturbation for s in singles]))
    assert torch.equal(batch.iterations, torch.cat([s.iterations for s in singles]))
    # The batched model's kernels round differently per batch size: equal up to float32 rounding.
    batched = deepfool(model, images, num_classes=4)
    assert torch.allclose(batched.perturbation, batch.perturbation, atol=1e-5)


def test_deepfool_respects_max_iter(model: TinyNet, images: torch.Tensor) -> None:
    found = deepfool(model, images, max_iter=1, overshoot=0.0)
    assert bool((found.iterations <= 1).all())


def test_deepfool_zero_gradient_terminates() -> None:
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    found = deepfool(ConstantNet(), x, max_iter=10)
    assert not bool(found.converged.any())
    assert bool((found.iterations == 0).all())
    assert torch.equal(found.perturbation, torch.zeros_like(x))
    assert not torch.isnan(found.adversarial).any()


def test_deepfool_partial_zero_gradient_uses_the_other_classes() -> None:
    # Class 2 has the same weights as class 0 (zero gradient difference): it must be skipped, not divide by 0.
    weight = torch.zeros(3, 3)
    weight[1, 0] = 1.0
    toy = Linear(weight, torch.tensor([0.5, 0.0, 0.2]))
    x = torch.full((1, 3, 1, 1), 0.2)  # f = (0.5, 0.2, 0.2): label 0; boundary to class 1 at x_r = 0.5
    found = deepfool(toy, x, num_classes=3, overshoot=0.02)
    assert bool(found.converged[0]) and int(found.iterations[0]) == 1
    assert found.perturbation[0, 0, 0, 0].item() == pytest.approx(1.02 * 0.3, rel=1e-5)


# --- UAP -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("p", [math.inf, 2])
def test_uap_norm_and_pass_cap(p: float, model: TinyNet, images: torch.Tensor) -> None:
    xi = 10 / 255 if p == math.inf else 0.5
    before = images.clone()
    result = universal_perturbation(model, images, xi=xi, p=p, delta=0.0, max_iter_uni=2,
                                    generator=torch.Generator().manual_seed(0))
    assert torch.equal(images, before)
    assert result.v.shape == images.shape[1:]
    assert result.passes == 2 and len(result.fooling_rates) == 2 and result.stopped_by == "max_iter_uni"
    assert result.updates >= 1 and result.deepfool_calls >= result.updates
    if p == math.inf:  # ξ rounded to float32, the dtype of v
        assert float(result.v.abs().max()) <= float(torch.tensor(xi, dtype=torch.float32))
    else:
        assert float(result.v.norm()) <= xi * (1 + 1e-6)
    assert result.fooling_rates[-1] == pytest.approx(fooling_rate(model, images, result.v))


def test_uap_is_deterministic_and_uses_its_generator(model: TinyNet, images: torch.Tensor) -> None:
    state = torch.random.get_rng_state()
    a = universal_perturbation(model, images, xi=8 / 255, max_iter_uni=1, generator=torch.Generator().manual_seed(4))
    b = universal_perturbation(model, images, xi=8 / 255, max_iter_uni=1, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a.v, b.v)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_uap_stops_at_the_fooling_rate(model: TinyNet, images: torch.Tensor) -> None:
    result = universal_perturbation(model, images, xi=8 / 255, delta=1.0, max_iter_uni=5)
    assert result.passes == 1 and result.stopped_by == "fooling_rate"


def test_uap_time_budget(model: TinyNet, images: torch.Tensor) -> None:
    result = universal_perturbation(model, images, xi=8 / 255, delta=0.0, max_iter_uni=5, max_seconds=0.0)
    assert result.stopped_by == "max_seconds" and result.deepfool_calls == 0 and result.passes == 1


def test_uap_zero_gradient_terminates() -> None:
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    result = universal_perturbation(ConstantNet(), x, xi=0.1, delta=0.0, max_iter_uni=3)
    assert result.passes == 3 and result.updates == 0 and torch.equal(result.v, torch.zeros(3, 8, 8))


@pytest.mark.parametrize("cap", [0, math.inf, 2.5])
def test_uap_requires_a_finite_pass_cap(cap: float, model: TinyNet, images: torch.Tensor) -> None:
    with pytest.raises(ValueError):
        universal_perturbation(model, images, xi=0.1, max_iter_uni=cap)


def test_uap_deepfool_batch_updates_in_order_from_the_same_v(model: TinyNet, images: torch.Tensor) -> None:
    """deepfool_batch = N: one pass = DeepFool on every unfooled image at v = 0, then the projected sum in order."""
    net = PerExampleNet(model)
    xi = 6 / 255
    result = universal_perturbation(net, images, xi=xi, delta=0.0, max_iter_uni=1, deepfool_batch=len(images),
                                    generator=torch.Generator().manual_seed(3))
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(3))
    found = deepfool(net, images[order])
    v = torch.zeros(images.shape[1:])
    for j in found.converged.nonzero().squeeze(1).tolist():
        v = project_linf(v + found.perturbation[j], xi)
    assert result.updates == int(found.converged.sum()) and result.deepfool_calls == len(images)
    torch.testing.assert_close(result.v, v)


def test_uap_deepfool_batch_one_is_the_default(model: TinyNet, images: torch.Tensor) -> None:
    a = universal_perturbation(model, images, xi=8 / 255, max_iter_uni=1)
    b = universal_perturbation(model, images, xi=8 / 255, max_iter_uni=1, deepfool_batch=1)
    assert torch.equal(a.v, b.v)
    with pytest.raises(ValueError, match="deepfool_batch"):
        universal_perturbation(model, images, xi=8 / 255, max_iter_uni=1, deepfool_batch=0)


# --- SGD universal perturbation (Shafahi et al. 2020) ---------------------------------------------------------

@pytest.mark.parametrize("p", [math.inf, 2])
def test_sgd_uap_norm_input_and_rng_untouched(p: float, model: TinyNet, images: torch.Tensor) -> None:
    xi = 10 / 255 if p == math.inf else 0.5
    before, state = images.clone(), torch.random.get_rng_state()
    result = sgd_universal_perturbation(model, images, xi=xi, p=p, epochs=3, step_size=2 / 255, batch_size=8,
                                        generator=torch.Generator().manual_seed(1))
    assert torch.equal(images, before) and torch.equal(torch.random.get_rng_state(), state)
    assert result.v.shape == images.shape[1:] and result.passes == 3 and result.stopped_by == "epochs"
    assert result.updates == 3 * math.ceil(len(images) / 8) and result.deepfool_calls == 0
    if p == math.inf:
        assert float(result.v.abs().max()) <= float(torch.tensor(xi, dtype=torch.float32))
    else:
        assert float(result.v.norm()) <= xi * (1 + 1e-6)
    assert result.fooling_rates[-1] == pytest.approx(fooling_rate(model, images, result.v))
    again = sgd_universal_perturbation(model, images, xi=xi, p=p, epochs=3, step_size=2 / 255, batch_size=8,
                                       generator=torch.Generator().manual_seed(1))
    assert torch.equal(result.v, again.v)


def test_sgd_uap_one_full_batch_step_is_a_signed_gradient(model: TinyNet, images: torch.Tensor) -> None:
    xi, step = 3 / 255, 5 / 255
    result = sgd_universal_perturbation(model, images, xi=xi, epochs=1, step_size=step, batch_size=len(images))
    with universal.eval_mode(model):
        clean = model(images).argmax(1)
        v = torch.zeros(images.shape[1:], requires_grad=True)
        loss = nn.functional.cross_entropy(model(torch.clamp(images + v, 0, 1)), clean, reduction="sum")
        (gradient,) = torch.autograd.grad(loss, v)
    torch.testing.assert_close(result.v, torch.clamp(step * gradient.sign(), -xi, xi))


def test_sgd_uap_clamped_loss_below_every_loss_does_not_move(model: TinyNet, images: torch.Tensor) -> None:
    result = sgd_universal_perturbation(model, images, xi=8 / 255, epochs=2, beta=1e-9, batch_size=8)
    assert torch.equal(result.v, torch.zeros(images.shape[1:]))
    with pytest.raises(ValueError, match="beta"):
        sgd_universal_perturbation(model, images, xi=8 / 255, beta=0.0)
    with pytest.raises(ValueError, match="epochs"):
        sgd_universal_perturbation(model, images, xi=8 / 255, epochs=0)
