"""Networks: shapes, paper parameter counts computed by hand, no BN in D, SN-compatible D, initialisation."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ganbench.errors import RecipeError
from ganbench.nets import NETS, build_nets, check_compatible
from ganbench.recipe import ModelConfig

SHAPES = {"cnn32": (3, 32, 32), "cnn48": (3, 48, 48), "resnet32": (3, 32, 32), "resnet48": (3, 48, 48), "mlp": (2,)}
SMALL = {"cnn32": 8, "cnn48": 8, "resnet32": 16, "resnet48": 8, "mlp": 16}


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + cout


def test_registry_lists_every_architecture() -> None:
    assert NETS.names() == sorted(SHAPES)


@pytest.mark.parametrize("arch", sorted(SHAPES))
def test_shapes_and_ranges(arch: str) -> None:
    torch.manual_seed(0)
    model = ModelConfig(arch=arch, z_dim=8, g_channels=SMALL[arch], d_channels=SMALL[arch], d_pool="mean")
    generator, discriminator = build_nets(model, SHAPES[arch])
    out = generator(torch.randn(3, 8))
    assert out.shape == (3, *SHAPES[arch])
    if len(SHAPES[arch]) == 3:
        assert out.abs().max() <= 1.0
    assert discriminator(out).shape == (3, 1)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in discriminator.modules())
    for layer in [m for m in discriminator.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]:
        spectral_norm(layer)
    assert discriminator(out).shape == (3, 1)


def test_cnn32_parameter_counts_match_the_layer_list() -> None:
    generator, discriminator = build_nets(ModelConfig(arch="cnn32"), (3, 32, 32))
    d_expected = (
        conv(3, 64, 3)
        + conv(64, 128, 4)
        + conv(128, 128, 3)
        + conv(128, 256, 4)
        + conv(256, 256, 3)
        + conv(256, 512, 4)
        + conv(512, 512, 3)
        + (512 * 4 * 4 + 1)
    )
    g_expected = (
        (128 * 512 * 16 + 512 * 16)
        + 2 * 512
        + (512 * 256 * 16 + 256)
        + 2 * 256
        + (256 * 128 * 16 + 128)
        + 2 * 128
        + (128 * 64 * 16 + 64)
        + 2 * 64
        + conv(64, 3, 3)
    )
    assert count(discriminator) == d_expected
    assert count(generator) == g_expected


def test_resnet32_discriminator_parameter_count() -> None:
    _, discriminator = build_nets(ModelConfig(arch="resnet32"), (3, 32, 32))
    optimized = conv(3, 128, 3) + conv(128, 128, 3) + conv(3, 128, 1)
    down = 2 * conv(128, 128, 3) + conv(128, 128, 1)
    plain = 2 * conv(128, 128, 3)
    assert count(discriminator) == optimized + down + 2 * plain + (128 + 1)


def test_sum_and_mean_pooling_differ_by_the_area() -> None:
    torch.manual_seed(0)
    model = ModelConfig(arch="resnet32", g_channels=16, d_channels=16, d_pool="sum")
    _, d_sum = build_nets(model, (3, 32, 32))
    _, d_mean = build_nets(ModelConfig(arch="resnet32", g_channels=16, d_channels=16, d_pool="mean"), (3, 32, 32))
    d_mean.load_state_dict(d_sum.state_dict())
    x = torch.randn(2, 3, 32, 32)
    bias = d_sum.linear.bias
    torch.testing.assert_close(d_sum(x) - bias, (d_mean(x) - bias) * 64)  # 8x8 final feature map


def test_cnn_initialisation_is_normal_002() -> None:
    torch.manual_seed(0)
    _, discriminator = build_nets(ModelConfig(arch="cnn32"), (3, 32, 32))
    weights = torch.cat([m.weight.flatten() for m in discriminator.modules() if isinstance(m, nn.Conv2d)])
    assert weights.std().item() == pytest.approx(0.02, rel=0.02)
    assert all((m.bias == 0).all() for m in discriminator.modules() if isinstance(m, nn.Conv2d))


def test_incompatible_shape_names_the_key() -> None:
    with pytest.raises(RecipeError, match=r"^model.arch: cnn32 takes 3x32x32 images but the data gives 3x48x48"):
        check_compatible(ModelConfig(arch="cnn32"), (3, 48, 48))
    with pytest.raises(RecipeError, match="model.arch"):
        check_compatible(ModelConfig(arch="mlp"), (3, 32, 32))
