"""Networks: shapes, the official models' parameter counts, initialisation, D pooling, no batch statistics in D."""

from __future__ import annotations

import math
from typing import Any

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


CLASSES = 3  # the class count the shape tests give a class-conditional net


def model_of(arch: str, **fields: Any) -> ModelConfig:
    """ModelConfig for `arch`, with CLASSES classes when the net is class-conditional (unless `fields` say)."""
    classes = CLASSES if NETS.get(arch).conditional else 0
    return ModelConfig(arch=arch, **{"num_classes": classes, **fields})


def labels_for(arch: str, n: int) -> tuple[torch.Tensor, ...]:
    """The extra arguments G and D of `arch` take: (labels,) for a class-conditional net, () otherwise."""
    return (torch.arange(n) % CLASSES,) if NETS.get(arch).conditional else ()


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
    # The CelebA-HQ nets (ResGenerator128/256, ResDiscriminator128/256), with the blocks above and
    # GenBlock(1024, 1024) 2,048 + 9,438,208 + 2,048 + 9,438,208 + 1,049,600 = 19,930,112; GenBlock(1024, 512)
    # 2,048 + 4,719,104 + 1,024 + 2,359,808 + 524,800 = 7,606,784; GenBlock(512, 512) 1,024 + 2 × 2,359,808
    # + 262,656 = 4,984,320; DisBlock(512, 512, down) 2 × 2,359,808 + 262,656 = 4,982,272; DisBlock(1024, 1024)
    # 2 × 9,438,208 = 18,876,416 (no shortcut conv).
    # G 128: linear 128·16,384 + 16,384 = 2,113,536 + 19,930,112 + 7,606,784 + the 48 px G's three blocks
    #    2,498,496 + BN 128 + conv(64, 3, 3) 1,731 = 32,150,787.  G 256 adds GenBlock(512, 512): 37,135,107.
    # D 128: the 48 px D's blocks 4,858,560 + DisBlock(512, 1024, down) 14,683,136 + 18,876,416 + linear 1,025
    #    = 38,419,137.  D 256 adds DisBlock(512, 512, down): 43,401,409.  (The 32.15M / 38.42M / 37.14M /
    #    43.40M; the official classes instantiated give these integers.)
    "resnet128": (32_150_787, 38_419_137),
    "resnet256": (37_135_107, 43_401_409),
    # models/biggan.py (Generator32, Discriminator32 with 10 classes, ch = 64, widths 4·ch = 256):
    # G: SN linear 128·4,096 + 4,096 = 528,384; 3 × GenBlock(256, 256) = 3 × (class-conditional BN: gain and bias
    #    embeddings 2·10·256 = 5,120, twice; conv(256, 256, 3) 590,080 twice; 1x1 shortcut 65,792) = 3 × 1,256,192
    #    = 3,768,576; BN 512; conv(256, 3, 3) 6,915.  Total 4,304,387.
    # D: optimized(3, 256) 7,168 + 590,080 + 1x1 1,024 = 598,272; DisBlock(256, 256, down) 2 × 590,080 + 65,792
    #    = 1,245,952; 2 × DisBlock(256, 256) 2 × 1,180,160 = 2,360,320; linear 256 + 1; embedding 10·256 = 2,560.
    #    Total 4,207,361.
    "biggan32": (4_304_387, 4_207_361),
}


@pytest.mark.parametrize("arch", NETS.names())
def test_shapes_and_ranges(arch: str) -> None:
    torch.manual_seed(0)
    shape = shape_of(arch)
    model = model_of(arch, z_dim=8, g_channels=8, d_channels=8)
    generator, discriminator = build_nets(model, shape)
    out = generator(torch.randn(3, 8), *labels_for(arch, 3))
    assert out.shape == (3, *shape)
    if len(shape) == 3:
        assert out.abs().max() <= 1.0  # tanh: images live in [-1, 1]
    assert discriminator(out, *labels_for(arch, 3)).shape == (3, 1)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in discriminator.modules())
    weighted = {type(m) for m in discriminator.modules() if any(True for _ in m.parameters(recurse=False))}
    # the layers spectral normalization wraps (a projection D's class embedding too)
    assert weighted <= ({nn.Conv2d, nn.Linear, nn.Embedding} if model.num_classes else {nn.Conv2d, nn.Linear})


@pytest.mark.parametrize("arch", sorted(OFFICIAL_COUNTS))
def test_parameter_counts_equal_the_official_models(arch: str) -> None:
    generator, discriminator = build_nets(model_of(arch, num_classes=10 if arch == "biggan32" else 0), shape_of(arch))
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


@pytest.mark.parametrize("arch", ["resnet32", "resnet48", "resnet128"])
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
    if arch != "resnet32":
        assert discriminator.linear in checked  # 512 or 1,024 weights


@pytest.mark.parametrize("arch", ["resnet32", "resnet48", "resnet48-sngan", "resnet128", "resnet256"])
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
    # two and four halvings of 32 and 48 px; five and six of 128 and 256 px
    side = {"resnet32": 8, "resnet128": 4, "resnet256": 4}.get(arch, 3)
    assert h.shape[2:] == (side, side) and h.abs().sum() > 0  # the map's area, so sum and mean differ
    area = side * side
    pooled = h.sum(dim=(2, 3)) / (area if pool == "mean" else 1)
    expected = pooled @ discriminator.linear.weight.T + discriminator.linear.bias
    torch.testing.assert_close(discriminator(x), expected)


@pytest.mark.parametrize("arch", ["resnet128", "resnet256"])
def test_celebahq_nets_scale_from_the_base_widths_as_the_official_ones(arch: str) -> None:
    model = ModelConfig(arch=arch, g_channels=4, d_channels=2)
    generator, discriminator = build_nets(model, shape_of(arch))

    def widths(blocks: nn.Module) -> list[int]:  # each block's output channels: its last conv's
        return [[m for m in block.modules() if isinstance(m, nn.Conv2d)][-1].out_channels for block in blocks]

    g_widths = [generator.top, *widths(generator.main[:-4])]  # the blocks before BN, ReLU, conv, tanh
    d_widths = widths(discriminator.blocks)
    if arch == "resnet128":  # the official 1024,1024,512,256,128,64 and 64,128,256,512,1024,1024 over 64
        assert g_widths == [4 * k for k in (16, 16, 8, 4, 2, 1)]
        assert d_widths == [2 * k for k in (1, 2, 4, 8, 16, 16)]
    else:
        assert g_widths == [4 * k for k in (16, 16, 8, 8, 4, 2, 1)]
        assert d_widths == [2 * k for k in (1, 2, 4, 8, 8, 16, 16)]
    assert generator.linear.out_features == 4 * 4 * generator.top  # a 4x4 map, as the official G
    downs = [isinstance(block.residual[-1], nn.AvgPool2d) for block in discriminator.blocks]
    assert downs == [True] * (len(downs) - 1) + [False]  # every block halves the side but the last
    x = generator(torch.randn(2, 128))
    assert x.shape == (2, *shape_of(arch)) and discriminator(x).shape == (2, 1)


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
    _, discriminator = build_nets(model_of(arch, g_channels=8, d_channels=8), shape_of(arch))
    x, y = torch.randn(4, *shape_of(arch)), labels_for(arch, 4)
    torch.testing.assert_close(discriminator.train()(x, *y), discriminator.eval()(x, *y))
    first = [label[:1] for label in y]
    torch.testing.assert_close(discriminator(x[:1], *first), discriminator(x, *y)[:1])  # no batch statistics
