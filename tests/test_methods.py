"""Lipschitz methods: GN laws, PGN by hand, GraN slope K, SN unit spectral norm, penalties (CR: test_consistency)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ganbench.methods import build_method
from ganbench.methods.base import output_and_gradient_norm
from ganbench.methods.gradnorm import (
    gradient_normalize,
    penalty_gradient_normalize,
    piecewise_gradient_normalize,
)
from ganbench.methods.penalties import gradient_penalty, max_gradient_penalty
from ganbench.recipe import MethodConfig


def piecewise_linear_d(seed: int = 0, dim: int = 6) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(dim, 32), nn.LeakyReLU(0.1), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1)).double()


def input_gradient_norm(fn, x: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(x).sum(), x)
    return g.flatten(1).norm(dim=1)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(st.integers(min_value=0, max_value=10_000))
def test_gn_is_bounded_and_one_lipschitz(seed: int) -> None:
    d = piecewise_linear_d(seed % 7)
    x = torch.randn(16, 6, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 3
    f_hat = gradient_normalize(d, x)
    assert (f_hat.abs() <= 1 + 1e-12).all()
    assert (input_gradient_norm(lambda v: gradient_normalize(d, v), x) <= 1 + 1e-5).all()


@pytest.mark.parametrize("c", [1e-3, 0.5, 37.5])
def test_gn_is_invariant_to_scaling_f(c: float) -> None:
    d = piecewise_linear_d()
    x = torch.randn(8, 6, dtype=torch.float64)
    scaled = nn.Sequential(d, nn.Linear(1, 1, bias=False)).double()
    nn.init.constant_(scaled[1].weight, c)
    torch.testing.assert_close(gradient_normalize(d, x), gradient_normalize(scaled, x))


def test_gn_differentiates_through_the_gradient_norm() -> None:
    d = piecewise_linear_d()
    x = torch.randn(8, 6, dtype=torch.float64)
    with_graph = torch.autograd.grad(gradient_normalize(d, x).sum(), list(d.parameters()))
    f, _, grad_norm = output_and_gradient_norm(d, x)
    detached = torch.autograd.grad((f / (grad_norm.detach() + f.abs())).sum(), list(d.parameters()))
    assert any(not torch.allclose(a, b) for a, b in zip(with_graph, detached, strict=True))


def test_pgn_against_a_hand_computation() -> None:
    d = nn.Linear(3, 1).double()
    with torch.no_grad():
        d.weight.copy_(torch.tensor([[0.5, -2.0, 1.0]]))
        d.bias.fill_(0.25)
    x = torch.tensor([[1.0, 0.0, 2.0], [-1.0, 1.0, 0.5]], dtype=torch.float64)
    w = d.weight[0].detach()
    expected = []
    for row in x:
        f = float(w @ row + 0.25)
        denominator = float((1 - w).norm()) + abs(1 - f)  # ∇f = w for a linear D
        expected.append((1 - f) / denominator)
    torch.testing.assert_close(penalty_gradient_normalize(d, x), torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("variant", ["ratio", "additive"])
@pytest.mark.parametrize("k", [1.0, 3.0])
def test_gran_has_slope_k_on_a_piecewise_linear_d(variant: str, k: float) -> None:
    d = piecewise_linear_d(3)
    # GraN is K·f/‖∇f‖ on each linear piece, whose gradient has norm K when f's zero set is affine there: check at
    # points whose whole neighbourhood shares one linear piece by comparing with that piece's own formula.
    x = torch.randn(32, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    norms = input_gradient_norm(lambda v: piecewise_gradient_normalize(d, v, k, 1e-12, variant), x)
    f, _, grad_norm = output_and_gradient_norm(d, x, create_graph=False)
    # d(K f/‖g‖) = K g/‖g‖ within a piece (‖g‖ is constant there): exactly K.
    torch.testing.assert_close(norms, torch.full_like(norms, k), rtol=1e-6, atol=1e-6)
    assert (grad_norm > 1e-3).all() and f.abs().max() > 0


def test_gran_epsilon_regime_shrinks_the_output() -> None:
    d = piecewise_linear_d(3)
    x = torch.randn(8, 6, dtype=torch.float64)
    small = piecewise_gradient_normalize(d, x, 1.0, 1e-12, "ratio")
    huge = piecewise_gradient_normalize(d, x, 1.0, 1e6, "ratio")
    assert (huge.abs() < small.abs()).all()


def test_sn_normalizes_every_weight_to_unit_spectral_norm() -> None:
    torch.manual_seed(0)
    d = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.LeakyReLU(0.1), nn.Flatten(), nn.Linear(8 * 8 * 8, 1))
    d = build_method(MethodConfig(name="sn")).prepare(d)
    x = torch.randn(4, 3, 8, 8)
    for _ in range(60):
        d(x)
    d.eval()
    for layer in (d[0], d[3]):
        weight = layer.weight.detach().flatten(1)
        assert torch.linalg.matrix_norm(weight, 2).item() == pytest.approx(1.0, abs=1e-3)


def test_sn_power_iteration_runs_in_the_sngan_order() -> None:
    """One training-mode forward from u = (1, 1)/√2 on W = diag(2, 1): v = Wᵀu/‖Wᵀu‖ = (2, 1)/√5, then
    u = Wv/‖Wv‖ = (4, 1)/√17, σ = uᵀWv = 17/√85 (torch's parametrization, u first, would give another σ)."""
    layer = nn.Linear(2, 2, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(torch.diag(torch.tensor([2.0, 1.0], dtype=torch.float64)))
    build_method(MethodConfig(name="sn")).prepare(nn.Sequential(layer))
    sn = layer.parametrizations.weight[0]
    with torch.no_grad():
        sn._u.copy_(torch.tensor([1.0, 1.0], dtype=torch.float64) / 2**0.5)
        sn._v.copy_(torch.tensor([0.0, 1.0], dtype=torch.float64))
    weight = layer.weight  # a training-mode access: one power iteration
    sigma = 17 / 85**0.5
    assert torch.allclose(weight, torch.diag(torch.tensor([2.0, 1.0], dtype=torch.float64)) / sigma, atol=1e-12)
    assert torch.allclose(sn._v, torch.tensor([2.0, 1.0], dtype=torch.float64) / 5**0.5, atol=1e-12)
    assert torch.allclose(sn._u, torch.tensor([4.0, 1.0], dtype=torch.float64) / 17**0.5, atol=1e-12)
    layer.eval()
    again = layer.weight  # eval mode: no iteration, the same σ
    assert torch.allclose(again, weight, atol=1e-12)


def test_wgan_gp_and_max_gp_on_a_linear_d() -> None:
    d = nn.Linear(4, 1).double()
    w_norm = d.weight.detach().norm().item()
    real, fake = torch.randn(5, 4, dtype=torch.float64), torch.randn(7, 4, dtype=torch.float64)
    assert gradient_penalty(d, real, fake).item() == pytest.approx((w_norm - 1) ** 2)
    assert max_gradient_penalty(d, real, fake).item() == pytest.approx(w_norm**2)
    gp = build_method(MethodConfig(name="wgan-gp", gp_lambda=10.0)).penalty(d, real, fake)
    lgan = build_method(MethodConfig(name="lgan", lgan_lambda=0.1)).penalty(d, real, fake)
    assert gp.item() == pytest.approx(10 * (w_norm - 1) ** 2)
    assert lgan.item() == pytest.approx(0.1 * w_norm**2)


@pytest.mark.parametrize("name", ["none", "sn", "gn", "pgn", "gran", "wgan-gp", "lgan"])
def test_g_step_gradients_reach_the_generator(name: str) -> None:
    torch.manual_seed(0)
    generator = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 6))
    method = build_method(MethodConfig(name=name))
    d = method.prepare(nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 1)))
    d.requires_grad_(False)  # as the trainer does in the G step
    method.logits(d, generator(torch.randn(8, 3))).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in generator.parameters())
