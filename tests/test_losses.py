"""Losses against hand-computed values on small tensors."""

from __future__ import annotations

import math

import pytest
import torch

from ganbench.losses import LOSSES

R = torch.tensor([2.0, -0.5])
F = torch.tensor([-3.0, 0.5])


def softplus(t: float) -> float:
    return math.log1p(math.exp(t))


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def test_names() -> None:
    assert LOSSES.names() == sorted(
        [
            "bce",
            "hinge",
            "wasserstein",
            "lgan-x",
            "lgan-exp",
            "lgan-log_sigmoid",
            "lgan-sqrt",
            "lgan-lsgan",
            "lgan-hinge",
        ]
    )


CASES = {
    "bce": (
        mean([softplus(-2.0), softplus(0.5)]),
        mean([softplus(-3.0), softplus(0.5)]),
        mean([softplus(3.0), softplus(-0.5)]),
    ),
    "hinge": (mean([0.0, 1.5]), mean([0.0, 1.5]), mean([3.0, -0.5])),
    "wasserstein": (-0.75, -1.25, 1.25),
    "lgan-x": (-0.75, -1.25, 1.25),
    "lgan-exp": (
        mean([math.exp(-2.0), math.exp(0.5)]),
        mean([math.exp(-3.0), math.exp(0.5)]),
        mean([math.exp(3.0), math.exp(-0.5)]),
    ),
    "lgan-log_sigmoid": (
        mean([softplus(-2.0), softplus(0.5)]),
        mean([softplus(-3.0), softplus(0.5)]),
        mean([softplus(3.0), softplus(-0.5)]),
    ),
    "lgan-sqrt": (
        mean([math.sqrt(5) - 2, math.sqrt(1.25) + 0.5]),
        mean([math.sqrt(10) - 3, math.sqrt(1.25) + 0.5]),
        mean([math.sqrt(10) + 3, math.sqrt(1.25) - 0.5]),
    ),
    "lgan-lsgan": (mean([1.0, 2.25]), mean([4.0, 2.25]), mean([16.0, 0.25])),
    "lgan-hinge": (mean([0.0, 1.5]), mean([0.0, 1.5]), mean([4.0, 0.5])),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_values(name: str) -> None:
    loss = LOSSES.get(name)
    expected_real, expected_fake, expected_g = CASES[name]
    real, fake = loss.d_loss(R, F)
    assert real.item() == pytest.approx(expected_real, rel=1e-6)
    assert fake.item() == pytest.approx(expected_fake, rel=1e-6)
    assert loss.g_loss(F).item() == pytest.approx(expected_g, rel=1e-6)


def test_hinge_is_zero_beyond_the_margins() -> None:
    real, fake = LOSSES.get("hinge").d_loss(torch.tensor([1.0, 3.0]), torch.tensor([-1.0, -2.0]))
    assert real.item() == 0.0 and fake.item() == 0.0


@pytest.mark.parametrize("name", sorted(CASES))
def test_d_prefers_high_real_and_low_fake(name: str) -> None:
    loss = LOSSES.get(name)
    good = sum(loss.d_loss(torch.tensor([0.9]), torch.tensor([-0.9])))
    bad = sum(loss.d_loss(torch.tensor([-0.9]), torch.tensor([0.9])))
    assert good < bad
    assert loss.g_loss(torch.tensor([0.9])) < loss.g_loss(torch.tensor([-0.9]))
