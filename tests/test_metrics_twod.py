"""2-D mode measures on hand-placed points: which samples count as high quality, and when a mode counts as covered.

The definitions checked: a sample is high quality when its Euclidean distance to the nearest mixture centre is at
most 3 standard deviations (VEEGAN's rule, and PacGAN's released metric code, which measures the distance in units
of the mode's std); a mode is covered when at least a fifth of N/M high-quality samples (N samples, M modes) are
nearest to it: 20 of 2500 samples on the 25-mode grid. That coverage rule is stricter than VEEGAN's text and
PacGAN's released code, which count a mode as soon as one high-quality sample is nearest to it.
"""

from __future__ import annotations

import math

import pytest
import torch

from ganbench import data
from ganbench.metrics.twod import mode_quality
from ganbench.recipe import DataConfig

STD = 0.05


def ring() -> torch.Tensor:
    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    return 2.0 * torch.stack([angles.cos(), angles.sin()], dim=1)


def grid() -> torch.Tensor:
    axis = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0], dtype=torch.float64)
    return torch.cartesian_prod(axis, axis)


def at(modes: torch.Tensor, counts: dict[int, int]) -> torch.Tensor:
    """`counts[i]` points exactly on mode i."""
    return torch.cat([modes[i].repeat(n, 1) for i, n in counts.items()])


def test_points_on_three_of_eight_modes_cover_three() -> None:
    modes = ring()
    samples = at(modes, {0: 100, 3: 100, 5: 100})
    assert mode_quality(samples, modes, STD) == {"modes_covered": 3.0, "hq_percent": 100.0}


def test_points_on_every_mode_cover_all_of_them() -> None:
    modes = grid()
    samples = at(modes, dict.fromkeys(range(25), 100))
    assert mode_quality(samples, modes, STD) == {"modes_covered": 25.0, "hq_percent": 100.0}


def test_inside_at_2_9_and_outside_at_3_1_standard_deviations() -> None:
    modes = ring()
    outward = modes[0] / modes[0].norm()  # away from the ring, so mode 0 stays the nearest centre
    inside = modes[0] + 2.9 * STD * outward
    outside = modes[0] + 3.1 * STD * outward
    assert mode_quality(inside[None].repeat(10, 1), modes, STD)["hq_percent"] == 100.0
    assert mode_quality(outside[None].repeat(10, 1), modes, STD)["hq_percent"] == 0.0
    # The radius is Euclidean in the plane, not per coordinate: (2.2, 2.2) std along both axes is 3.11 std away.
    diagonal = modes[0] + torch.tensor([2.2 * STD, 2.2 * STD], dtype=torch.float64)
    assert mode_quality(diagonal[None], modes, STD)["hq_percent"] == 0.0
    mixed = torch.stack([inside, outside, inside, inside])
    assert mode_quality(mixed, modes, STD)["hq_percent"] == pytest.approx(75.0)


def test_the_radius_scales_with_the_given_std() -> None:
    modes = ring()
    point = (modes[2] + torch.tensor([0.0, 0.4], dtype=torch.float64))[None]  # 0.4 from mode 2: 8 std of 0.05
    assert mode_quality(point, modes, 0.05)["hq_percent"] == 0.0
    assert mode_quality(point, modes, 0.2)["hq_percent"] == 100.0  # 2 std of 0.2


def test_a_mode_needs_a_fifth_of_its_fair_share_20_of_2500_on_the_grid() -> None:
    modes = grid()
    # 2500 samples over 25 modes: a perfect generator puts 100 on each; 20 cover a mode, 19 do not (a count of
    # modes with any high-quality sample, as in VEEGAN, would say 3 here).
    samples = at(modes, {0: 20, 1: 19, 2: 2461})
    assert len(samples) == 2500
    assert mode_quality(samples, modes, STD) == {"modes_covered": 2.0, "hq_percent": 100.0}
    # On the ring with 400 samples the share is 400 / 8 / 5 = 10.
    samples = at(ring(), {0: 10, 1: 9, 2: 381})
    assert mode_quality(samples, ring(), STD)["modes_covered"] == 2.0


def test_only_high_quality_samples_count_towards_coverage() -> None:
    modes = ring()
    outward = modes[4] / modes[4].norm()
    near_miss = (modes[4] + 3.1 * STD * outward).repeat(200, 1)  # nearest to mode 4 but not high quality
    on_mode = at(modes, {1: 200})
    result = mode_quality(torch.cat([near_miss, on_mode]), modes, STD)
    assert result == {"modes_covered": 1.0, "hq_percent": 50.0}


def test_a_sample_counts_for_its_nearest_mode_only() -> None:
    modes = ring()
    # Every sample sits 1 std from mode 6, on the side towards mode 7: mode 6 is nearest; mode 7 gets nothing.
    towards = (modes[7] - modes[6]) / (modes[7] - modes[6]).norm()
    samples = (modes[6] + STD * towards).repeat(100, 1)
    assert mode_quality(samples, modes, STD) == {"modes_covered": 1.0, "hq_percent": 100.0}


def test_float32_samples_and_float32_modes() -> None:
    modes = ring().float()
    samples = at(modes, {0: 50, 1: 50}).float()
    assert mode_quality(samples, modes, STD) == {"modes_covered": 2.0, "hq_percent": 100.0}


def test_real_ring8_data_scores_as_a_2d_gaussian_predicts() -> None:
    """The data themselves: every mode covered, and P(‖x − μ‖ ≤ 3σ) = 1 − exp(−9/2) ≈ 98.89 % for a 2-D Gaussian."""
    dataset = data.load_dataset(DataConfig(name="ring8", num_samples=40_000, seed=11))
    assert dataset.modes is not None
    result = mode_quality(dataset.tensor, dataset.modes, dataset.mode_std)
    expected = 100.0 * (1.0 - math.exp(-4.5))
    standard_error = 100.0 * math.sqrt(expected / 100 * (1 - expected / 100) / 40_000)
    assert result["modes_covered"] == 8.0
    assert abs(result["hq_percent"] - expected) < 4 * standard_error


def test_wrong_sample_shape_is_refused() -> None:
    with pytest.raises(ValueError, match=r"samples must be \(N, 2\)"):
        mode_quality(torch.zeros(5, 3), ring(), STD)
    with pytest.raises(ValueError, match=r"samples must be \(N, 2\)"):
        mode_quality(torch.zeros(5), ring(), STD)
