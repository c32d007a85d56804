"""How G samples for metrics and sheets (BatchNorm on batch or running statistics) and how its EMA treats buffers.

The expected values are computed here by the BatchNorm formula itself, not by running G a second way.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ganbench.evaluation import generate_images
from ganbench.nets import sampling_mode
from ganbench.train.ema import update_ema

EPS = 1e-5  # BatchNorm1d's default


def bn_generator() -> nn.Sequential:
    """z (N, 3) -> linear -> BatchNorm1d with running statistics far from any batch's."""
    torch.manual_seed(0)
    g = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    with torch.no_grad():
        g[1].running_mean.copy_(torch.tensor([5.0, -5.0, 2.0, 0.0]))
        g[1].running_var.copy_(torch.tensor([4.0, 0.25, 1.0, 9.0]))
        g[1].weight.copy_(torch.tensor([1.0, 2.0, -1.0, 0.5]))
        g[1].bias.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4]))
    return g


def by_batch_statistics(g: nn.Sequential, z: torch.Tensor) -> torch.Tensor:
    h = g[0](z)
    mean, var = h.mean(0), h.var(0, unbiased=False)
    return (h - mean) / torch.sqrt(var + EPS) * g[1].weight + g[1].bias


def by_running_statistics(g: nn.Sequential, z: torch.Tensor) -> torch.Tensor:
    h = g[0](z)
    return (h - g[1].running_mean) / torch.sqrt(g[1].running_var + EPS) * g[1].weight + g[1].bias


def test_batch_mode_normalises_by_the_batch_and_leaves_g_as_it_was() -> None:
    g = bn_generator().eval()
    z = torch.randn(6, 3)
    before = {name: value.clone() for name, value in g.state_dict().items()}
    with torch.no_grad(), sampling_mode(g, "batch"):
        batch = g(z)
    with torch.no_grad(), sampling_mode(g, "running"):
        running = g(z)
    with torch.no_grad():
        assert torch.allclose(batch, by_batch_statistics(g, z), atol=1e-6)
        assert torch.allclose(running, by_running_statistics(g, z), atol=1e-6)
    assert not torch.allclose(batch, running, atol=1e-2)
    assert all(torch.equal(value, before[name]) for name, value in g.state_dict().items())  # buffers restored
    assert not g.training  # its own mode back


def test_batch_mode_sampling_uses_full_batches_of_the_given_size() -> None:
    """10 samples in batches of 4: three full batches of codes 0-3, 4-7, 8-11, the last two samples dropped, as the
    official code samples in whole G batches and cuts the list at n; the 10 kept codes are running mode's."""
    g = bn_generator()
    samples = torch.cat(list(generate_images(g, 10, 3, 4, "cpu", seed=7, bn_mode="batch")))
    codes = torch.Generator().manual_seed(7)
    z = torch.randn(10, 3, generator=codes)  # the 10 kept codes are those of running mode, then two fillers
    z = torch.cat([z, torch.randn(2, 3, generator=codes)])
    with torch.no_grad():
        expected = torch.cat([by_batch_statistics(g, chunk) for chunk in z.split(4)])[:10]
    assert samples.shape == (10, 4)
    assert torch.allclose(samples, expected, atol=1e-6)
    running = torch.cat(list(generate_images(g, 10, 3, 4, "cpu", seed=7, bn_mode="running")))
    with torch.no_grad():
        assert torch.allclose(running, by_running_statistics(g, z[:10]), atol=1e-6)


def test_ema_averages_bn_statistics_and_copies_the_batch_counter() -> None:
    g, ema = bn_generator(), bn_generator()
    with torch.no_grad():
        for module, value in ((g, 1.0), (ema, 0.0)):
            for tensor in (*module.parameters(), module[1].running_mean, module[1].running_var):
                tensor.fill_(value)
        g[1].num_batches_tracked.fill_(7)
    update_ema(ema, g, 0.25)
    for tensor in (*ema.parameters(), ema[1].running_mean, ema[1].running_var):
        assert torch.allclose(tensor, torch.full_like(tensor, 0.25))
    assert int(ema[1].num_batches_tracked) == 7


@pytest.mark.parametrize("weight", [0.25, torch.tensor(0.25)])
def test_ema_weight_as_float_or_tensor(weight: float | torch.Tensor) -> None:
    g, ema = bn_generator(), bn_generator()
    with torch.no_grad():
        ema[0].weight.zero_()
        g[0].weight.fill_(2.0)
    update_ema(ema, g, weight)
    assert torch.allclose(ema[0].weight, torch.full_like(ema[0].weight, 0.5))
