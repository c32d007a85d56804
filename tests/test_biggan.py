"""Class-conditional BigGAN 32: the nets against hand re-derivations, labels through the trainer, the recipes.

What would fail if the code were wrong: a D or G that ignores its labels, a GN that scores under other labels, real
labels that do not travel with their images, fake labels that are not uniform or not from the seeded generator, a
resume that is not exact, a recipe that drifts from the official configuration.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from ganbench import evaluation, nets
from ganbench import recipe as recipes
from ganbench.config import ModelConfig
from ganbench.errors import RecipeError
from ganbench.methods.gradnorm import gradient_normalize, penalty_gradient_normalize
from ganbench.nets.biggan import SN_EPS, ClassConditionalBatchNorm
from ganbench.nets.spectral import SpectralNormalization
from ganbench.store import RunDir
from ganbench.train import checkpoint
from ganbench.train.loop import Trainer, train
from ganbench.train.runinfo import training_hash
from ganbench.train.samples import sheet_labels
from ganbench.train.stream import BatchStream, RealBatches
from tests.test_data import write_cifar10
from tests.test_train import TIMING_COLUMNS, StopAfter

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
BIGGAN_RECIPES = sorted(RECIPES.glob("cifar10_biggan_*.toml"))

TINY = """
name = "tiny-biggan"
seed = 5

[data]
name = "shapes"
num_samples = 48

[model]
arch = "biggan32"
num_classes = 3
z_dim = 8
g_channels = 8
d_channels = 8

[method]
name = "gn"
cr_lambda = 5.0

[loss]
name = "hinge"

[train]
device = "cpu"
steps = 6
n_dis = 2
batch_size_d = 8
batch_size_g = 8
lr_d = 2e-4
lr_g = 1e-4
beta2 = 0.999
ema_start = 2
log_every = 1
sample_every = 0
checkpoint_every = 3
"""


def tiny_nets(classes: int = 3, width: int = 8) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    return nets.build_nets(
        ModelConfig(arch="biggan32", z_dim=8, g_channels=width, d_channels=width, num_classes=classes), (3, 32, 32)
    )


# the nets


def test_parameter_counts_equal_the_official_models() -> None:
    generator, discriminator = nets.build_nets(ModelConfig(arch="biggan32", num_classes=10), (3, 32, 32))
    assert sum(p.numel() for p in generator.parameters()) == 4_304_387
    assert sum(p.numel() for p in discriminator.parameters()) == 4_207_361


def test_projection_discriminator_is_linear_plus_inner_product_with_the_class_embedding() -> None:
    _, d = tiny_nets()
    x, y = torch.randn(5, 3, 32, 32), torch.tensor([0, 1, 2, 1, 0])
    h = torch.relu(d.blocks[:-1](x)).sum(dim=(2, 3))  # sum pooling, not mean
    expected = h @ d.linear.weight.T + d.linear.bias + (d.embedding.weight[y] * h).sum(1, keepdim=True)
    torch.testing.assert_close(d(x, y), expected)
    # each sample is scored under its own label only: changing another's label leaves it alone
    other = y.clone()
    other[1:] = (other[1:] + 1) % 3
    out, moved = d(x, y), d(x, other)
    assert out[0] == moved[0] and (out[1:] != moved[1:]).all()


def test_generator_conditional_batchnorm_takes_gain_and_bias_from_the_label() -> None:
    g, _ = tiny_nets()
    bn = g.blocks[0].bn1
    assert isinstance(bn, ClassConditionalBatchNorm) and not bn.norm.affine
    x, y = torch.randn(6, 8, 4, 4), torch.tensor([0, 1, 2, 2, 1, 0])
    mean, var = x.mean(dim=(0, 2, 3), keepdim=True), x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    normed = (x - mean) / torch.sqrt(var + bn.norm.eps)
    expected = normed * (1 + bn.gain.weight[y][:, :, None, None]) + bn.bias.weight[y][:, :, None, None]
    torch.testing.assert_close(bn(x, y), expected)
    # the whole G: in eval mode (no batch coupling) sample i depends on label i alone, and on it
    g.eval()
    z = torch.randn(3, 8)
    a, b = g(z, torch.tensor([0, 1, 2])), g(z, torch.tensor([0, 2, 0]))
    torch.testing.assert_close(a[0], b[0])
    assert (a[1] - b[1]).abs().max() > 1e-4 and (a[2] - b[2]).abs().max() > 1e-4


def test_generator_layers_are_spectrally_normalised_with_the_official_eps_and_embeddings_are_not() -> None:
    g, d = tiny_nets()
    layers = [m for m in g.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(layers) == 1 + 3 * 3 + 1  # linear, 3 convs per block, output conv
    for layer in layers:
        (sn,) = layer.parametrizations.weight
        assert isinstance(sn, SpectralNormalization) and sn.eps == SN_EPS == 1e-6
    embeddings = [m for m in g.modules() if isinstance(m, nn.Embedding)]
    assert len(embeddings) == 2 * 2 * 3 and not any(hasattr(m, "parametrizations") for m in embeddings)
    assert not any(hasattr(m, "parametrizations") for m in d.modules())  # D: the method's business
    # after power iterations (one per train-mode forward), each normalised weight has top singular value 1
    g.train()
    for _ in range(100):
        g(torch.randn(4, 8), torch.tensor([0, 1, 2, 0]))
    g.eval()  # reading the weights in eval mode runs no further iteration
    for layer in layers:
        sigma = torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2)
        assert sigma.item() == pytest.approx(1.0, rel=0.02)


def test_every_layer_is_xavier_uniform_with_zero_biases() -> None:
    g, d = tiny_nets(classes=10, width=64)
    checked = 0
    for net in (g, d):
        for layer in net.modules():
            if not isinstance(layer, (nn.Conv2d, nn.Linear, nn.Embedding)):
                continue
            sn = getattr(layer, "parametrizations", None)
            w = (sn.weight.original if sn is not None else layer.weight).detach()
            receptive = w[0][0].numel() if w.ndim > 2 else 1
            fan_in, fan_out = w.shape[1] * receptive, w.shape[0] * receptive
            bound = math.sqrt(6 / (fan_in + fan_out))
            assert w.abs().max() <= bound
            if w.numel() >= 2000:  # uniform on ±bound: std bound/√3, and the extremes reached
                assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)
                assert w.abs().max() > 0.95 * bound
                checked += 1
            bias = getattr(layer, "bias", None)
            assert bias is None or isinstance(bias, nn.Embedding) or (bias == 0).all()
    assert checked >= 10


def test_gradient_normalisation_takes_the_label_through_with_the_gradient_in_x_only() -> None:
    _, d = tiny_nets()
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([2, 0, 1, 1])
    bound = nets.conditioned(d, y)
    xg = x.clone().requires_grad_(True)
    f = d(xg, y).flatten()
    (grad,) = torch.autograd.grad(f.sum(), xg)
    norm = grad.flatten(1).norm(dim=1)
    torch.testing.assert_close(gradient_normalize(bound, x), f.detach() / (norm + f.detach().abs()))
    shifted = (1 - grad).flatten(1).norm(dim=1)
    torch.testing.assert_close(
        penalty_gradient_normalize(bound, x), (1 - f.detach()) / (shifted + (1 - f.detach()).abs())
    )
    # under other labels the normalised logits differ: the label is not dropped on the way
    assert not torch.allclose(gradient_normalize(nets.conditioned(d, (y + 1) % 3), x), gradient_normalize(bound, x))
    with pytest.raises(ValueError, match="4 samples but 3 labels"):
        nets.conditioned(d, y[:3])(x)
    assert nets.conditioned(d, None) is d  # an unconditional D is called as it is


# labels through the trainer


def test_real_labels_travel_with_their_images_through_order_and_flips() -> None:
    n = 40
    images = torch.zeros(n, 3, 4, 4, dtype=torch.uint8)
    images[:, 0, :, 0] = torch.arange(n, dtype=torch.uint8)[:, None]  # the index in the left column
    labels = (torch.arange(n) * 7) % 5
    stream = BatchStream(n, 8, seed=3)
    batches = RealBatches(images, 3, stream, True, torch.device("cpu"), labels)
    flipped_some = False
    for _ in range(4):
        batches.gather()
        assert batches.label_buffer is not None
        for batch, label in zip(batches.buffer, batches.label_buffer, strict=True):
            left, right = batch[:, 0, :, 0].max(1).values, batch[:, 0, :, -1].max(1).values
            index = torch.maximum(left, right).long()  # where the column went: flipped or not
            flipped_some |= bool((right > 0).any())
            assert torch.equal(label, labels[index])
    assert flipped_some


class Recorder(nn.Module):
    """Wraps G or D, recording the labels of every call."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.seen = net, []

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.seen.append(y.clone())
        return self.net(x, y)


def _built(tmp_path: Path, overrides: tuple[str, ...] = ()) -> Trainer:
    trainer = Trainer(recipes.loads(TINY, list(overrides)), RunDir(tmp_path / "built"))
    trainer._build()
    return trainer


def test_fake_labels_are_uniform_draws_of_the_global_generator_after_each_z(tmp_path: Path) -> None:
    trainer = _built(tmp_path, ("method.cr_lambda=0.0",))
    trainer.G = Recorder(trainer.G)
    trainer.D = Recorder(trainer.D)
    rng = torch.get_rng_state()
    trainer.batches.gather()
    trainer._step()
    # expected: per D step z (8 x 8) then 8 labels; the G step's z then its labels
    torch.set_rng_state(rng)
    expected = []
    for _ in range(2):
        torch.randn(8, 8)
        expected.append(torch.randint(3, (8,)))
    torch.randn(8, 8)
    expected.append(torch.randint(3, (8,)))
    g_seen = trainer.G.seen
    assert len(g_seen) == 3 and all(torch.equal(a, b) for a, b in zip(g_seen, expected, strict=True))
    # D scores the reals under their own labels and each fake under the label G drew it with
    assert trainer.real_labels is not None
    d_seen = trainer.D.seen
    for i in range(2):
        assert torch.equal(d_seen[i], torch.cat([trainer.real_labels[i], expected[i]]))
    assert torch.equal(d_seen[2], expected[2])
    # uniform: many draws of the step's label source cover the classes evenly (chi-square, 2 degrees of freedom)
    draws = torch.cat([trainer._fake_labels(1000) for _ in range(6)])
    counts = torch.bincount(draws, minlength=3).double()
    chi2 = ((counts - len(draws) / 3) ** 2 / (len(draws) / 3)).sum().item()
    assert chi2 < 13.8  # p = 0.001


def test_a_conditional_resume_is_exact(tmp_path: Path) -> None:
    recipe = recipes.loads(TINY)
    straight = RunDir(tmp_path / "straight")
    train(recipe, straight)
    resumed = RunDir(tmp_path / "resumed")
    with pytest.raises(KeyboardInterrupt):
        train(recipe, resumed, StopAfter(5))
    assert checkpoint.load(resumed.checkpoint_path("last"))["step"] == 3
    assert train(recipe, resumed)["status"] == "finished"
    a, b = (checkpoint.load(run.checkpoint_path("last")) for run in (straight, resumed))
    for net in ("G", "D", "G_ema"):
        assert a[net].keys() == b[net].keys()
        for key in a[net]:
            assert torch.equal(a[net][key], b[net][key]), f"{net}.{key}"
    history = [run.read_history().drop(columns=TIMING_COLUMNS) for run in (straight, resumed)]
    pd.testing.assert_frame_equal(history[0], history[1])


def test_sample_sheets_show_one_row_per_class_with_fixed_z(tmp_path: Path) -> None:
    assert torch.equal(sheet_labels(3), torch.tensor([0] * 8 + [1] * 8 + [2] * 8))
    assert sheet_labels(0) is None and len(sheet_labels(100)) == 16 * 8
    trainer = _built(tmp_path)
    assert trainer.fixed_labels is not None and torch.equal(trainer.fixed_labels, sheet_labels(3))
    assert trainer.fixed_z.shape == (24, 8)


def test_evaluation_samples_have_uniform_labels_from_the_sample_seed() -> None:
    g, _ = tiny_nets()
    recorder = Recorder(g)
    images = torch.cat(list(evaluation.generate_images(recorder, 20, 8, 6, "cpu", seed=9, num_classes=3)))
    assert images.shape == (20, 3, 32, 32)
    seen = torch.cat(recorder.seen)
    # running mode: 20 codes, then 20 labels, uniform, from the same seeded generator
    codes = torch.Generator().manual_seed(9)
    torch.randn(20, 8, generator=codes)
    assert torch.equal(seen, torch.randint(3, (20,), generator=codes))
    assert set(seen.tolist()) == {0, 1, 2}
    # batch mode fills the last batch: 24 codes, 24 labels, the first 20 samples kept
    batch = Recorder(g)
    kept = torch.cat(list(evaluation.generate_images(batch, 20, 8, 6, "cpu", seed=9, bn_mode="batch", num_classes=3)))
    assert len(kept) == 20 and len(torch.cat(batch.seen)) == 24
    codes = torch.Generator().manual_seed(9)
    torch.randn(24, 8, generator=codes)
    assert torch.equal(torch.cat(batch.seen), torch.randint(3, (24,), generator=codes))


# recipes


def test_a_class_conditional_recipe_needs_labels_of_the_declared_count() -> None:
    base = ["model.arch=biggan32", "data.name=shapes"]
    with pytest.raises(RecipeError, match=r"^model.num_classes: biggan32 is class-conditional"):
        recipes.loads("", base)
    with pytest.raises(RecipeError, match=r"^model.num_classes: shapes split train has 3 classes, not 10; set"):
        recipes.loads("", [*base, "model.num_classes=10"])
    stl = ["model.arch=biggan32", "model.num_classes=10", "data.name=stl10", "data.size=32"]
    with pytest.raises(RecipeError, match=r"^model.num_classes: stl10 split unlabeled has no class labels"):
        recipes.loads("", [*stl, "data.split=unlabeled"])
    assert recipes.loads("", [*stl, "data.split=train"]).model.num_classes == 10
    with pytest.raises(RecipeError, match=r"^model.num_classes: cnn32 is unconditional"):
        recipes.loads("", ["model.arch=cnn32", "data.name=shapes", "model.num_classes=3"])


def test_unconditional_recipes_keep_the_hashes_they_had_before_model_num_classes() -> None:
    # model.num_classes at its default is left out of both hashes, so run directories made before the key resume:
    # these are the hashes of the shipped recipe under the previous release
    recipe = recipes.load(RECIPES / "cifar10_resnet_gn.toml")
    assert (recipe.hash(), training_hash(recipe)) == ("eb907df35d263917", "ed3588a2e892c322")
    conditional = recipes.load(RECIPES / "cifar10_biggan_gn.toml")
    assert "num_classes" in conditional.to_toml()
    other = recipes.load(RECIPES / "cifar10_biggan_gn.toml", ["model.num_classes=0", "model.arch=resnet32"])
    assert training_hash(other) != training_hash(conditional)


def test_there_are_the_eight_biggan_recipes() -> None:
    names = {path.stem for path in BIGGAN_RECIPES}
    assert names == {f"cifar10_biggan_{m}{cr}" for m in ("sn", "gn", "pgn", "gran") for cr in ("", "_cr")}


@pytest.mark.parametrize("path", BIGGAN_RECIPES, ids=lambda p: p.stem)
def test_biggan_recipes_carry_the_official_configuration(path: Path) -> None:
    r = recipes.load(path)
    t, m = r.train, r.model
    assert (r.data.name, r.data.split, r.data.hflip) == ("cifar10", "train", True)
    assert (m.arch, m.z_dim, m.num_classes, m.g_channels, m.d_channels) == ("biggan32", 128, 10, 0, 0)
    assert r.loss.name == "hinge"
    assert (t.steps, t.n_dis, t.batch_size_d, t.batch_size_g) == (125_000, 4, 50, 50)
    assert (t.lr_d, t.lr_g, t.beta1, t.beta2, t.lr_decay) == (2e-4, 1e-4, 0.0, 0.999, "none")
    assert (t.ema_decay, t.ema_start) == (0.9999, 1000)
    assert (r.eval.every, r.eval.num_samples, r.eval.metrics) == (5000, 50_000, ["fid", "is"])
    assert (r.eval.select, r.eval.bn_mode) == ("raw", "batch")
    method = path.stem.removeprefix("cifar10_biggan_").removesuffix("_cr")
    assert r.method.name == method
    assert r.method.cr_lambda == (5.0 if path.stem.endswith("_cr") else 0.0)


REDUCED = [
    "train.steps=2",
    "train.n_dis=2",
    "train.batch_size_d=6",
    "train.batch_size_g=6",
    "train.ema_start=1",
    "train.checkpoint_every=2",
    "train.sample_every=0",
    "train.device='cpu'",
    "model.g_channels=8",
    "model.d_channels=8",
    "model.z_dim=16",
    "eval.every=0",
]


@pytest.mark.parametrize("path", BIGGAN_RECIPES, ids=lambda p: p.stem)
def test_each_biggan_recipe_trains_a_few_steps_at_reduced_size(path: Path, tmp_path: Path) -> None:
    write_cifar10(tmp_path / "data")  # 15 train images, labels 0-9
    recipe = recipes.load(path, [f"data.root='{tmp_path / 'data'}'", *REDUCED])
    run = RunDir(tmp_path / "run")
    info = train(recipe, run)
    assert info["status"] == "finished" and info["step"] == 2
    state = checkpoint.load(run.checkpoint_path("last"))
    start = Trainer(recipe, RunDir(tmp_path / "fresh"))
    start._build()
    # the class embeddings of D's projection head trained: the labels reached D
    key = next(k for k in state["D"] if k.startswith("embedding.") and "_u" not in k and "_v" not in k)
    assert not torch.equal(state["D"][key], start.D.state_dict()[key])
