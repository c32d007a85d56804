"""Networks: shapes, the official models' parameter counts, initialisation, D pooling, no batch statistics in D."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ganbench.errors import RecipeError
from ganbench.nets import NETS, build_nets, check_compatible
from ganbench.recipe import ModelConfig


def shape_of(arch: str) -> tuple[int, ...]:
    return NETS.get(arch).shapes[0]


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# (generator, discriminator) parameters at the default widths and z_dim 128, counted by hand from the layer lists of
# the official GN-GAN code (models/resnet.py, models/dcgan.py). conv(i, o, k) = i·o·k² + o (a transposed conv has
# the same count); a BatchNorm has 2·channels parameters (its running statistics are buffers).
OFFICIAL_COUNTS = {
    # G: linear 128·4,096 + 4,096 = 528,384; 3 × GenBlock(256, 256) = 3 × (BN 512 + conv(256, 256, 3) 590,080
    #    + BN 512 + 590,080 + 1x1 shortcut 65,792) = 3,740,928; BN 512; conv(256, 3, 3) 6,915.  Total 4,276,739.
    # D: optimized(3, 128) 3,584 + 147,584 + 1x1 512 = 151,680; DisBlock(128, 128, down) 2 × 147,584 + 16,512
    #    = 311,680; 2 × DisBlock(128, 128) 2 × 295,168 = 590,336; linear 128 + 1.  Total 1,053,825.
    "resnet32": (4_276_739, 1_053_825),
    # G: linear 128·18,432 + 18,432 = 2,377,728; GenBlock(512, 256) 1,024 + 1,179,904 + 512 + 590,080 + 131,328
    #    = 1,902,848; GenBlock(256, 128) 512 + 295,040 + 256 + 147,584 + 32,896 = 476,288; GenBlock(128, 64)
    #    256 + 73,792 + 128 + 36,928 + 8,256 = 119,360; BN 128; conv(64, 3, 3) 1,731.  Total 4,878,083.
    # D: optimized(3, 64) 1,792 + 36,928 + 256 = 38,976; DisBlock(64, 128, down) 73,856 + 147,584 + 8,320
    #    = 229,760; DisBlock(128, 256, down) 295,168 + 590,080 + 33,024 = 918,272; DisBlock(256, 512, down)
    #    1,180,160 + 2,359,808 + 131,584 = 3,671,552; linear 512 + 1.  Total 4,859,073.
    "resnet48": (4_878_083, 4_859_073),
    # The SN-GAN paper's STL-10 D (not in the official GN-GAN code) adds DisBlock(512, 1024) 4,719,616 + 9,438,208
    # + 525,312 = 14,683,136, and its head takes 1,024 features: 4,859,073 − 513 + 14,683,136 + 1,025 = 19,542,721.
    "resnet48-sngan": (4_878_083, 19_542_721),
    # G: linear 128·M²·512 + M²·512 (M = 4: 1,056,768; M = 6: 2,377,728); ConvT(512, 256, 4) 2,097,408
    #    + ConvT(256, 128, 4) 524,416 + ConvT(128, 64, 4) 131,136 + last 3x3 layer 64·3·9 + 3 = 1,731 → 2,754,691;
    #    4 BN 2·(512 + 256 + 128 + 64) = 1,920.  The official G's last layer is ConvTranspose2d(64, 3, 3, 1, 1) where
    #    ganbench has Conv2d(64, 3, 3, 1, 1): the same count, and a stride-1 transposed conv is a conv with the kernel
    #    flipped and transposed, so the same function class.
    # D: conv(3, 64, 3) 1,792 + conv(64, 128, 4) 131,200 + conv(128, 128, 3) 147,584 + conv(128, 256, 4) 524,544
    #    + conv(256, 256, 3) 590,080 + conv(256, 512, 4) 2,097,664 + conv(512, 512, 3) 2,359,808 = 5,852,672;
    #    linear M²·512 + 1 (M = 4: 8,193; M = 6: 18,433).
    "cnn32": (3_813_379, 5_860_865),
    "cnn48": (5_134_339, 5_871_105),
}


@pytest.mark.parametrize("arch", NETS.names())
def test_shapes_and_ranges(arch: str) -> None:
    torch.manual_seed(0)
    shape = shape_of(arch)
    model = ModelConfig(arch=arch, z_dim=8, g_channels=8, d_channels=8)
    generator, discriminator = build_nets(model, shape)
    out = generator(torch.randn(3, 8))
    assert out.shape == (3, *shape)
    if len(shape) == 3:
        assert out.abs().max() <= 1.0  # tanh: images live in [-1, 1]
    assert discriminator(out).shape == (3, 1)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in discriminator.modules())
    weighted = {type(m) for m in discriminator.modules() if any(True for _ in m.parameters(recurse=False))}
    assert weighted <= {nn.Conv2d, nn.Linear}  # the layers spectral normalization wraps


@pytest.mark.parametrize("arch", sorted(OFFICIAL_COUNTS))
def test_parameter_counts_equal_the_official_models(arch: str) -> None:
    generator, discriminator = build_nets(ModelConfig(arch=arch), shape_of(arch))
    assert (count(generator), count(discriminator)) == OFFICIAL_COUNTS[arch]


def test_resnet48_widths_scale_with_the_base_channels() -> None:
    model = ModelConfig(arch="resnet48", g_channels=64, d_channels=16)
    generator, discriminator = build_nets(model, (3, 48, 48))
    assert [block.residual[-2].out_channels for block in discriminator.blocks] == [16, 32, 64, 128]  # d, 2d, 4d, 8d
    assert discriminator.linear.in_features == 128
    assert generator.linear.out_features == 64 * 6 * 6
    assert [block.shortcut[1].out_channels for block in generator.main[:3]] == [32, 16, 8]
    _, sngan = build_nets(ModelConfig(arch="resnet48-sngan", d_channels=16), (3, 48, 48))
    assert sngan.linear.in_features == 256  # the fifth block's 16d


@pytest.mark.parametrize("arch", ["resnet32", "resnet48"])
def test_resnet_layers_are_kaiming_normal_with_zero_biases(arch: str) -> None:
    torch.manual_seed(0)
    generator, discriminator = build_nets(ModelConfig(arch=arch), shape_of(arch))
    checked: list[nn.Module] = []
    for net in (generator, discriminator):
        for layer in net.modules():
            if not isinstance(layer, (nn.Conv2d, nn.Linear)):
                continue
            assert (layer.bias == 0).all()
            w = layer.weight.detach().flatten()
            n = w.numel()
            if n < 512:  # the 3 -> d shortcut and resnet32's head: too few draws for a tight check
                continue
            sigma = math.sqrt(2 / layer.weight[0].numel())  # fan_in = input channels × kernel area
            # The sample std of n normal draws has a relative standard error of 1/sqrt(2n): allow 5 of them.
            assert w.std().item() == pytest.approx(sigma, rel=5 / math.sqrt(2 * n))
            # Normal, not uniform: a normal puts erfc(sqrt(3/2)) = 8.3 % of its mass beyond sqrt(3) sigma, a uniform of
            # the same std none (a 3x3 c -> c conv has the same std under Xavier with gain sqrt(2) as under Kaiming).
            p = math.erfc(math.sqrt(1.5))
            tail = (w.abs() > math.sqrt(3) * sigma).double().mean().item()
            assert tail == pytest.approx(p, abs=5 * math.sqrt(p * (1 - p) / n))
            checked.append(layer)
    # Every kind of layer is among the checked: G's linear and output conv, 1x1 shortcuts, residual convs.
    assert generator.linear in checked and generator.main[-2] in checked
    assert generator.main[0].shortcut[1] in checked and discriminator.blocks[1].shortcut[0] in checked
    assert discriminator.blocks[2].residual[1] in checked
    if arch == "resnet48":
        assert discriminator.linear in checked  # 512 weights


@pytest.mark.parametrize("arch", ["resnet32", "resnet48", "resnet48-sngan"])
@pytest.mark.parametrize("pool", ["mean", "sum"])
def test_resnet_discriminator_pools_the_last_relu_map_into_the_head(arch: str, pool: str) -> None:
    torch.manual_seed(0)
    model = ModelConfig(arch=arch, g_channels=8, d_channels=8, d_pool=pool)
    _, discriminator = build_nets(model, shape_of(arch))
    with torch.no_grad():
        discriminator.linear.bias.fill_(0.25)
    x = torch.randn(2, *shape_of(arch))
    h = x
    for block in discriminator.blocks:
        h = block(h)
    h = torch.relu(h)
    side = 8 if arch == "resnet32" else 3  # two and four halvings of 32 and 48 px
    assert h.shape[2:] == (side, side) and h.abs().sum() > 0  # the map's area, so sum and mean differ
    area = side * side
    pooled = h.sum(dim=(2, 3)) / (area if pool == "mean" else 1)
    expected = pooled @ discriminator.linear.weight.T + discriminator.linear.bias
    torch.testing.assert_close(discriminator(x), expected)


def test_cnn_initialisation_is_normal_002_with_zero_biases() -> None:
    torch.manual_seed(0)
    generator, discriminator = build_nets(ModelConfig(arch="cnn32"), (3, 32, 32))
    layers = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
    for net in (generator, discriminator):
        weights = torch.cat([m.weight.flatten() for m in net.modules() if isinstance(m, layers)])
        assert weights.std().item() == pytest.approx(0.02, rel=0.02)
        assert weights.mean().abs().item() < 1e-3
        assert all((m.bias == 0).all() for m in net.modules() if isinstance(m, layers))


def test_cnn_base_width_scales_channels_as_c_2c_4c_8c() -> None:
    generator, discriminator = build_nets(ModelConfig(arch="cnn48", g_channels=32, d_channels=16), (3, 48, 48))
    d_convs = [m.out_channels for m in discriminator.modules() if isinstance(m, nn.Conv2d)]
    assert d_convs == [16, 32, 32, 64, 64, 128, 128]
    assert discriminator.linear.in_features == 128 * 6 * 6
    g_convs = [m.out_channels for m in generator.modules() if isinstance(m, (nn.ConvTranspose2d, nn.Conv2d))]
    assert g_convs == [128, 64, 32, 3]
    assert generator.linear.out_features == 256 * 6 * 6


def test_incompatible_shape_names_the_key_and_suggests_the_same_family_and_a_data_size() -> None:
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


@pytest.mark.parametrize("arch", ["resnet48", "resnet48-sngan"])
def test_resnet48_rejects_a_generator_too_narrow_to_halve(arch: str) -> None:
    with pytest.raises(RecipeError, match="^model.g_channels"):
        build_nets(ModelConfig(arch=arch, g_channels=4), (3, 48, 48))


def test_mlp_is_linear_output_and_piecewise_linear_discriminator() -> None:
    generator, discriminator = build_nets(ModelConfig(arch="mlp", z_dim=4), (2,))
    assert [m.out_features for m in generator if isinstance(m, nn.Linear)] == [512, 512, 512, 2]
    assert [m.out_features for m in discriminator if isinstance(m, nn.Linear)] == [512, 512, 512, 1]
    assert {type(m) for m in generator} == {nn.Linear, nn.ReLU}  # no tanh: 2-D points are not in [-1, 1]
    assert {type(m) for m in discriminator} == {nn.Linear, nn.ReLU}
    assert isinstance(generator[-1], nn.Linear) and isinstance(discriminator[-1], nn.Linear)
    narrow, _ = build_nets(ModelConfig(arch="mlp", g_channels=16), (2,))
    assert narrow[0].out_features == 16


@pytest.mark.parametrize("arch", NETS.names())
def test_discriminator_is_the_same_function_in_train_and_eval_mode(arch: str) -> None:
    torch.manual_seed(0)
    _, discriminator = build_nets(ModelConfig(arch=arch, g_channels=8, d_channels=8), shape_of(arch))
    x = torch.randn(4, *shape_of(arch))
    torch.testing.assert_close(discriminator.train()(x), discriminator.eval()(x))
    torch.testing.assert_close(discriminator(x[:1]), discriminator(x)[:1])  # no batch statistics
