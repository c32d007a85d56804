"""Losses against hand-computed values on small tensors: D's two terms and G's loss, with and without psi-max."""

from __future__ import annotations

import math

import pytest
import torch

from ganbench.errors import RecipeError
from ganbench.losses import build_loss
from ganbench.recipe import LossConfig

R = torch.tensor([2.0, -0.5])  # real logits
F = torch.tensor([-3.0, 0.5])  # fake logits


def neg_log_sigmoid(t: float) -> float:
    return -math.log(1 / (1 + math.exp(-t)))


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


MINUS_F = 1.25  # −mean(F): G's loss for hinge, wasserstein and the LGAN code's default (bPsiMax false)

# name: (D real term, D fake term, G loss, G loss under lgan_psi_max or None where the key does not apply).
# The LGAN entries follow the LGAN code's expressions (alpha = 1): dis_real_loss, dis_fake_loss, gen_fake_loss.
CASES: dict[str, tuple[float, float, float, float | None]] = {
    "bce": (
        mean([neg_log_sigmoid(2.0), neg_log_sigmoid(-0.5)]),
        mean([neg_log_sigmoid(3.0), neg_log_sigmoid(-0.5)]),  # −log(1 − σ(f)) = −log σ(−f)
        mean([neg_log_sigmoid(-3.0), neg_log_sigmoid(0.5)]),  # non-saturating: −log σ(f)
        None,
    ),
    "hinge": (mean([0.0, 1.5]), mean([0.0, 1.5]), MINUS_F, None),
    "wasserstein": (-0.75, -1.25, MINUS_F, None),
    "lgan-x": (-0.75, -1.25, MINUS_F, MINUS_F),
    "lgan-exp": (
        mean([math.exp(-2.0), math.exp(0.5)]),
        mean([math.exp(-3.0), math.exp(0.5)]),
        MINUS_F,
        mean([math.exp(3.0), math.exp(-0.5)]),
    ),
    "lgan-log_sigmoid": (
        mean([neg_log_sigmoid(2.0), neg_log_sigmoid(-0.5)]),
        mean([neg_log_sigmoid(3.0), neg_log_sigmoid(-0.5)]),
        MINUS_F,
        mean([neg_log_sigmoid(-3.0), neg_log_sigmoid(0.5)]),
    ),
    "lgan-sqrt": (
        mean([math.sqrt(5) - 2, math.sqrt(1.25) + 0.5]),
        mean([math.sqrt(10) - 3, math.sqrt(1.25) + 0.5]),
        MINUS_F,
        mean([math.sqrt(10) + 3, math.sqrt(1.25) - 0.5]),
    ),
    "lgan-lsgan": (mean([1.0, 2.25]), mean([4.0, 2.25]), mean([16.0, 0.25]), mean([16.0, 0.25])),
    "lgan-hinge": (mean([0.0, 1.5]), mean([0.0, 1.5]), MINUS_F, mean([4.0, 0.5])),
}


@pytest.mark.parametrize("psi_max", [False, True])
@pytest.mark.parametrize("name", sorted(CASES))
def test_values(name: str, psi_max: bool) -> None:
    expected_real, expected_fake, expected_g, expected_g_psi = CASES[name]
    if psi_max and expected_g_psi is None:
        with pytest.raises(RecipeError, match="loss.lgan_psi_max"):
            build_loss(LossConfig(name=name, lgan_psi_max=True))
        return
    loss = build_loss(LossConfig(name=name, lgan_psi_max=psi_max))
    real, fake = loss.d_loss(R, F)
    assert real.item() == pytest.approx(expected_real, rel=1e-6)
    assert fake.item() == pytest.approx(expected_fake, rel=1e-6)
    assert loss.g_loss(F).item() == pytest.approx(expected_g_psi if psi_max else expected_g, rel=1e-6)


def test_hinge_is_zero_beyond_the_margins() -> None:
    for name in ("hinge", "lgan-hinge"):
        real, fake = build_loss(LossConfig(name=name)).d_loss(torch.tensor([1.0, 3.0]), torch.tensor([-1.0, -2.0]))
        assert real.item() == 0.0 and fake.item() == 0.0


def test_unknown_loss_names_the_key() -> None:
    with pytest.raises(RecipeError, match="loss.name: unknown loss 'lgan-foo'"):
        build_loss(LossConfig(name="lgan-foo"))


@pytest.mark.parametrize("psi_max", [False, True])
@pytest.mark.parametrize("name", sorted(CASES))
def test_d_prefers_high_real_and_low_fake_and_g_high_fake(name: str, psi_max: bool) -> None:
    if psi_max and CASES[name][3] is None:
        return
    loss = build_loss(LossConfig(name=name, lgan_psi_max=psi_max))
    good = sum(loss.d_loss(torch.tensor([0.9]), torch.tensor([-0.9])))
    bad = sum(loss.d_loss(torch.tensor([-0.9]), torch.tensor([0.9])))
    assert good < bad
    assert loss.g_loss(torch.tensor([0.9])) < loss.g_loss(torch.tensor([-0.9]))
