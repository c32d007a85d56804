"""Networks: shapes, paper parameter counts computed by hand, no BN in D, SN-compatible D, initialisation."""

from __future__ import annotations

import math

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
    weighted = {type(m) for m in discriminator.modules() if any(True for _ in m.parameters(recurse=False))}
    assert weighted <= {nn.Conv2d, nn.Linear}  # the layers spectral normalization wraps


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


def test_incompatible_shape_suggests_the_same_family_and_a_data_size() -> None:
    with pytest.raises(RecipeError) as err:
        check_compatible(ModelConfig(arch="cnn32"), (3, 48, 48))
    assert str(err.value) == (
        "model.arch: cnn32 takes 3x32x32 images but the data gives 3x48x48 images; use cnn48 or set data.size=32"
    )
    with pytest.raises(RecipeError, match=r"^model.arch: mlp takes 2-d points .*use cnn32 or resnet32$"):
        check_compatible(ModelConfig(arch="mlp"), (3, 32, 32))
    with pytest.raises(RecipeError, match=r"^model.arch: resnet48 .*; use mlp$"):
        check_compatible(ModelConfig(arch="resnet48"), (2,))
    with pytest.raises(RecipeError, match=r"^model.arch: unknown architecture 'dcgan'"):
        check_compatible(ModelConfig(arch="dcgan"), (3, 32, 32))
    with pytest.raises(RecipeError, match="^model.arch"):
        build_nets(ModelConfig(arch="resnet32"), (3, 48, 48))


def test_cnn_generator_initialisation_is_normal_002_with_zero_biases() -> None:
    torch.manual_seed(0)
    generator, discriminator = build_nets(ModelConfig(arch="cnn32"), (3, 32, 32))
    layers = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
    weights = torch.cat([m.weight.flatten() for m in generator.modules() if isinstance(m, layers)])
    assert weights.std().item() == pytest.approx(0.02, rel=0.02)
    assert weights.mean().abs().item() < 1e-3
    for net in (generator, discriminator):
        assert all((m.bias == 0).all() for m in net.modules() if isinstance(m, layers))


def test_cnn_base_width_scales_channels_as_c_2c_4c_8c() -> None:
    generator, discriminator = build_nets(ModelConfig(arch="cnn48", g_channels=32, d_channels=16), (3, 48, 48))
    d_convs = [m.out_channels for m in discriminator.modules() if isinstance(m, nn.Conv2d)]
    assert d_convs == [16, 32, 32, 64, 64, 128, 128]
    assert discriminator.linear.in_features == 128 * 6 * 6
    g_convs = [m.out_channels for m in generator.modules() if isinstance(m, (nn.ConvTranspose2d, nn.Conv2d))]
    assert g_convs == [128, 64, 32, 3]
    assert generator.linear.out_features == 256 * 6 * 6


def test_resnet32_generator_parameter_count() -> None:
    generator, _ = build_nets(ModelConfig(arch="resnet32"), (3, 32, 32))
    bn = 2 * 256  # weight and bias; running statistics are buffers
    block = bn + conv(256, 256, 3) + bn + conv(256, 256, 3) + conv(256, 256, 1)
    assert count(generator) == (128 * 4 * 4 * 256 + 4 * 4 * 256) + 3 * block + bn + conv(256, 3, 3)


def test_resnet48_discriminator_parameter_count() -> None:
    _, discriminator = build_nets(ModelConfig(arch="resnet48"), (3, 48, 48))
    expected = conv(3, 64, 3) + conv(64, 64, 3) + conv(3, 64, 1)
    for cin, cout in [(64, 128), (128, 256), (256, 512), (512, 1024)]:  # every later block changes width
        expected += conv(cin, cout, 3) + conv(cout, cout, 3) + conv(cin, cout, 1)
    assert count(discriminator) == expected + (1024 + 1)


def test_resnet_initialisation_is_xavier_with_the_stated_gains() -> None:
    torch.manual_seed(0)
    _, discriminator = build_nets(ModelConfig(arch="resnet32"), (3, 32, 32))
    block = discriminator.main[2]  # a 128 -> 128 block without downsampling: identity shortcut
    assert len(block.shortcut) == 0
    # xavier_uniform: std = gain * sqrt(2 / (fan_in + fan_out)); a 3x3 128 -> 128 conv has fan_in = fan_out = 1152
    conv3 = block.residual[1].weight
    assert conv3.std().item() == pytest.approx(math.sqrt(2) * math.sqrt(2 / (2 * 1152)), rel=0.02)
    assert conv3.abs().max().item() <= math.sqrt(2) * math.sqrt(6 / (2 * 1152))
    shortcut = discriminator.main[1].shortcut[0].weight  # 1x1 128 -> 128, gain 1
    assert shortcut.std().item() == pytest.approx(math.sqrt(2 / 256), rel=0.03)
    assert discriminator.linear.weight.abs().max().item() <= math.sqrt(6 / 129)
    assert all((m.bias == 0).all() for m in discriminator.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


def test_resnet48_rejects_a_generator_too_narrow_to_halve() -> None:
    with pytest.raises(RecipeError, match="^model.g_channels"):
        build_nets(ModelConfig(arch="resnet48", g_channels=4), (3, 48, 48))


def test_mlp_is_linear_output_and_piecewise_linear_discriminator() -> None:
    generator, discriminator = build_nets(ModelConfig(arch="mlp", z_dim=4), (2,))
    assert [m.out_features for m in generator if isinstance(m, nn.Linear)] == [512, 512, 512, 2]
    assert [m.out_features for m in discriminator if isinstance(m, nn.Linear)] == [512, 512, 512, 1]
    assert {type(m) for m in generator} == {nn.Linear, nn.ReLU}  # no tanh: 2-D points are not in [-1, 1]
    assert {type(m) for m in discriminator} == {nn.Linear, nn.ReLU}
    assert isinstance(generator[-1], nn.Linear) and isinstance(discriminator[-1], nn.Linear)
    narrow, _ = build_nets(ModelConfig(arch="mlp", g_channels=16), (2,))
    assert narrow[0].out_features == 16


@pytest.mark.parametrize("arch", sorted(SHAPES))
def test_discriminator_is_the_same_function_in_train_and_eval_mode(arch: str) -> None:
    torch.manual_seed(0)
    model = ModelConfig(arch=arch, g_channels=SMALL[arch], d_channels=SMALL[arch])
    _, discriminator = build_nets(model, SHAPES[arch])
    x = torch.randn(4, *SHAPES[arch])
    torch.testing.assert_close(discriminator.train()(x), discriminator.eval()(x))
    torch.testing.assert_close(discriminator(x[:1]), discriminator(x)[:1])  # no batch statistics


@pytest.mark.parametrize("arch", sorted(SHAPES))
def test_spectral_norm_bounds_every_discriminator_layer(arch: str) -> None:
    torch.manual_seed(0)
    model = ModelConfig(arch=arch, g_channels=SMALL[arch], d_channels=SMALL[arch])
    _, discriminator = build_nets(model, SHAPES[arch])
    layers = [m for m in discriminator.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for layer in layers:
        spectral_norm(layer, n_power_iterations=20)
    x = torch.randn(2, *SHAPES[arch])
    for _ in range(5):  # power iterations run in train-mode forwards
        out = discriminator(x)
    out.sum().backward()
    for layer in layers:
        # The reshaped weight's largest singular value, computed exactly, is 1 after normalization.
        sigma = torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2).item()
        assert sigma == pytest.approx(1.0, abs=1e-2)
        assert layer.parametrizations.weight.original.grad is not None
