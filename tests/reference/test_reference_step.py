"""The trainer against an independent re-derivation of its training run (official_step.py), in float64 on the CPU.

Each case builds the trainer's initial state, runs the reference from it and the real trainer from the same seed,
and compares G, D (with SN's u, v), EMA-G and G's BatchNorm buffers after a few steps: each tensor to RTOL of its
scale, G's gradient-free biases and the BatchNorm running means they shift against NOISE_LEVEL (see the bounds below
for what rounding reaches on any CPU and what a wrong formula moves). A wrong weight anywhere in the step (an EMA
weight, a learning rate, a real batch, a flip, a penalty's sign, a CR term, GraN's K or ε, the power iteration)
moves the weights by far more than that.
"""

from __future__ import annotations

import copy
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from ganbench.recipe import Recipe, loads
from ganbench.store import RunDir
from ganbench.train import checkpoint
from ganbench.train.loop import Trainer, train
from tests.reference import official_step

# The bounds hold on any CPU: they sit far above what another summation order does to these runs, measured between
# kernels of one machine (ATEN_CPU_CAPABILITY default, avx2 and avx512; 1 and 2 threads; MKL's SSE4.2 code path)
# and from start weights moved by one ulp. The runs then differ by as much as the trainer does from the reference
# (which differs in summation order itself), and the bounds leave 1e4 (RTOL), 45 (NOISE_LEVEL) and 400 times
# (RUNNING_MEAN_FLOOR) of room. The wrong formulas tried against them (an EMA decay, a BN momentum, Adam's β₂ or ε, a
# learning-rate schedule, GN's, PGN's or GraN's denominators, a CR, WGAN-GP or LGAN weight, the data flips, each off
# by a little) move some weight or BN statistic by 2e-6 to 0.4 in the cases that exercise them: 2e4 RTOL and more.
#
# Every tensor: an error relative to its largest entry, but never to less than SCALE_FLOOR = 1 (the nets' weight
# scale: BN weights start at 1, SN's u and v are unit vectors), i.e. at most RTOL absolute. Measured: at most 8e-15
# (weights, SN's u and v, BN running variances, the EMA copies), also where Adam magnifies rounding by up to lr/eps
# (a weight whose gradient nearly cancels moves by lr·g/(|g| + eps)). A wrong formula changes Adam's steps, ~lr =
# 2e-4 per weight (~1e-6 for PGN's G, whose gradients sit below eps), by a fraction of a step.
RTOL = 1e-10
SCALE_FLOOR = 1.0
# G's biases that no loss reaches in exact arithmetic (a conv bias ahead of a BatchNorm, which removes the batch's
# mean): found by a probe gradient (`gradient_free`), not by their size, since their Adam steps are rounding noise
# times lr/eps, whose size depends on the CPU's summation order. Measured: at most 2.2e-9 (1e-20 for the 32 px CNN,
# 2e-9 for BigGAN), where a real Adam step is ~lr = 2e-4. Noise against noise is no comparison: both runs' copies
# must merely stay below NOISE_LEVEL, 45 times that noise and 2000 times below a real step.
NOISE_LEVEL = 1e-7
# What the probe calls gradient-free: a gradient below this fraction of G's largest gradient entry; measured at
# most 3e-15 for the biases ahead of a BatchNorm and at least 1e-2 for every other parameter of these nets.
GRADIENT_FREE = 1e-8
# A BatchNorm's running mean is a mean of its input, so it holds the noise of the biases ahead of it (a block's conv
# and shortcut biases, each below NOISE_LEVEL; the momentum weights sum to less than 1): an absolute floor of twice
# NOISE_LEVEL. Measured: at most 5e-10 (BigGAN's last two BatchNorms: 1.8e-10 and 4.6e-10 on the AVX2 and AVX-512
# kernels, 5e-11 and 8e-11 on the generic ones). A BN momentum of 0.11 for 0.1, or an EMA that copies G's statistics,
# moves the running means by 3e-3 and more; the running variances, which no bias shifts, keep RTOL.
RUNNING_MEAN_FLOOR = 2 * NOISE_LEVEL

BASE = """
name = "reference"
seed = 11

[data]
name = "shapes"
num_samples = 20

[model]
arch = "cnn32"
z_dim = 8
g_channels = 4
d_channels = 4

[train]
steps = 3
n_dis = 1
batch_size_d = 8
batch_size_g = 12
lr_d = 2e-4
lr_g = 2e-4
beta1 = 0.5
beta2 = 0.9
ema_decay = 0.9
device = "cpu"
log_every = 1000
sample_every = 0
checkpoint_every = 1000
keep_checkpoints = false
"""

# 20 samples in batches of 8: two batches an epoch, the last four samples dropped, so every case wraps epochs.
CASES: dict[str, list[str]] = {
    "gn-bce": ["method.name=gn", "loss.name=bce"],
    "pgn-hinge-resnet-ndis5-linear-decay": [
        "model.arch=resnet32",
        "method.name=pgn",
        "loss.name=hinge",
        "train.n_dis=5",
        "train.steps=4",
        'train.lr_decay="linear"',
    ],
    "gn-cr": ["method.name=gn", "method.cr_lambda=5.0"],
    "gn-bcr": ["method.name=gn", "method.cr_lambda=5.0", "method.bcr=true", "method.cr_translate=0.125"],
    # PGN's CR and LGAN's penalty on resnet32: the tiny cnn32 D leaves these terms so little weight in the steps that
    # a CR weight 10 % off moved its weights by 5e-12 (PGN) and an LGAN λ 10 % off by 2e-10; here by 4e-4 and 2e-6
    "pgn-cr": ["model.arch=resnet32", "method.name=pgn", "loss.name=hinge", "method.cr_lambda=5.0"],
    "pgn-bcr-no-cr-flip": [
        "model.arch=resnet32",
        "method.name=pgn",
        "method.cr_lambda=5.0",
        "method.bcr=true",
        "method.cr_flip=false",
        "train.n_dis=2",
    ],
    "ema-start-3": ["method.name=gn", "train.steps=5", "train.ema_start=3", "train.ema_decay=0.9"],
    "wgan-gp": ["method.name=wgan-gp", "loss.name=wasserstein", "method.gp_lambda=5.0", "train.n_dis=2"],
    "gran-ratio": [
        "model.arch=resnet32",
        "method.name=gran",
        "method.gran_k=2.5",
        "method.gran_eps=0.01",
        'method.gran_variant="ratio"',
    ],
    "gran-additive": [
        "model.arch=resnet32",
        "method.name=gran",
        "method.gran_k=0.7",
        "method.gran_eps=0.05",
        'method.gran_variant="additive"',
        "loss.name=hinge",
    ],
    "lgan-exp": [
        "model.arch=resnet32",
        "method.name=lgan",
        "loss.name=lgan-exp",
        "method.lgan_lambda=0.3",
        "train.n_dis=2",
    ],
    "lgan-sqrt-psi-max": [
        "model.arch=resnet32",
        "method.name=lgan",
        "loss.name=lgan-sqrt",
        "loss.lgan_psi_max=true",
        "method.lgan_lambda=0.3",
    ],
    "gn-no-hflip": ["method.name=gn", "data.hflip=false", "train.steps=4"],
    # class-conditional: labels of the reals, uniform fake labels, GN (and CR) under each sample's label
    "biggan-gn-cr-conditional": [
        "model.arch=biggan32",
        "model.num_classes=3",
        "method.name=gn",
        "loss.name=hinge",
        "method.cr_lambda=5.0",
        "method.bcr=true",
        "train.n_dis=2",
        "train.ema_start=2",
    ],
    "biggan-pgn-conditional": ["model.arch=biggan32", "model.num_classes=3", "method.name=pgn", "loss.name=hinge"],
    "biggan-sn-conditional": ["model.arch=biggan32", "model.num_classes=3", "method.name=sn", "loss.name=hinge"],
    "biggan-wgan-gp-conditional": [
        "model.arch=biggan32",
        "model.num_classes=3",
        "method.name=wgan-gp",
        "loss.name=wasserstein",
    ],
}
SN_CASE = ["method.name=sn", "loss.name=hinge", "train.n_dis=2"]


def _clone(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in state.items()}


def gradient_free(generator: nn.Module, num_classes: int, z_dim: int) -> set[str]:
    """G's parameters whose gradient is zero in exact arithmetic under any loss of its train-mode output: those whose
    gradient under a random linear function of a batch of G (its own generator: the global RNG is left alone) is
    below GRADIENT_FREE of G's largest gradient entry. Runs on a copy (a train-mode forward moves BN's statistics)."""
    probe = copy.deepcopy(generator).train()
    draws = torch.Generator().manual_seed(0)
    z = torch.randn(16, z_dim, generator=draws)
    out = probe(z, torch.arange(16) % num_classes) if num_classes else probe(z)
    names, params = zip(*probe.named_parameters(), strict=True)
    grads = torch.autograd.grad((out * torch.randn(out.shape, generator=draws)).sum(), params)
    largest = max(grad.abs().max() for grad in grads)
    return {name for name, grad in zip(names, grads, strict=True) if grad.abs().max() <= GRADIENT_FREE * largest}


def reference_and_trainer(
    recipe: Recipe, tmp_path: Path
) -> tuple[dict[str, Any], dict[str, Any], official_step.Start, set[str]]:
    """(reference's final states, the trainer's final checkpoint, the shared start, G's gradient-free parameters)."""
    built = Trainer(recipe, RunDir(tmp_path / "built"))
    built._build()
    start = official_step.Start(
        g=_clone(built.G.state_dict()),
        d=_clone(built.D.state_dict()),
        g_ema=_clone(built.G_ema.state_dict()) if built.G_ema is not None else None,
        rng=torch.get_rng_state(),
    )
    noise_only = gradient_free(built.G, recipe.model.num_classes, recipe.model.z_dim)
    data = built.dataset.tensor.clone()
    labels = built.dataset.labels.clone() if recipe.model.num_classes and built.dataset.labels is not None else None
    expected = official_step.run(recipe, data, start, labels)  # reads `start`, never writes it
    run = RunDir(tmp_path / "run")
    train(recipe, run)
    saved = checkpoint.load(run.checkpoint_path("last"))
    assert saved["step"] == recipe.train.steps
    return expected, saved, start, noise_only


def mismatches(
    actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], what: str, noise_only: Collection[str] = ()
) -> list[str]:
    """One line per tensor that differs by more than RTOL of max(the expected tensor's largest entry, SCALE_FLOOR)
    (a BN running mean: by more than that or RUNNING_MEAN_FLOOR), or, for a `noise_only` key (rounding noise in
    both runs), that either run lets grow past NOISE_LEVEL."""
    assert actual.keys() == expected.keys(), f"{what}: keys differ: {set(actual) ^ set(expected)}"
    lines = []
    for key, want in expected.items():
        got = actual[key]
        assert got.dtype == want.dtype, f"{what}.{key}: dtype {got.dtype}, expected {want.dtype}"
        if not want.is_floating_point():
            if not torch.equal(got, want):
                lines.append(f"{what}.{key}: {got.tolist()} != {want.tolist()}")
            continue
        if key in noise_only:
            largest = max(got.abs().max().item(), want.abs().max().item())
            if not largest <= NOISE_LEVEL:
                lines.append(f"{what}.{key}: {largest:.3e} where both runs hold rounding noise only")
            continue
        bound = RTOL * max(want.abs().max().item(), SCALE_FLOOR)
        if key.endswith("running_mean"):
            bound = max(bound, RUNNING_MEAN_FLOOR)
        error = (got - want).abs().max().item()
        if not error <= bound:
            lines.append(f"{what}.{key}: error {error:.3e} > {bound:.1e}")
    return lines


def moved(final: dict[str, torch.Tensor], start: dict[str, torch.Tensor]) -> bool:
    """Whether training changed the floating-point state by more than rounding noise (so that matching it means
    something): a gradient-free bias that leaves 0 for NOISE_LEVEL or less does not count."""
    return any(
        value.is_floating_point() and not torch.allclose(value, start[key], rtol=1e-6, atol=NOISE_LEVEL)
        for key, value in final.items()
    )


def check(overrides: list[str], tmp_path: Path) -> None:
    recipe = loads(BASE, overrides)
    expected, saved, start, noise_only = reference_and_trainer(recipe, tmp_path)
    assert moved(expected["G"], start.g) and moved(expected["D"], start.d)
    problems = mismatches(saved["G"], expected["G"], "G", noise_only) + mismatches(saved["D"], expected["D"], "D")
    if start.g_ema is not None:
        assert moved(expected["G_ema"], start.g_ema)
        problems += mismatches(saved["G_ema"], expected["G_ema"], "G_ema", noise_only)
    assert not problems, "trainer differs from the reference:\n" + "\n".join(problems)


@pytest.mark.parametrize("overrides", list(CASES.values()), ids=list(CASES))
def test_trainer_matches_reference(overrides: list[str], tmp_path: Path, float64: None) -> None:
    check(overrides, tmp_path)


def test_spectral_norm_power_iteration_in_sngan_order(tmp_path: Path, float64: None) -> None:
    """SN as SN-GAN's Algorithm 1 (and torch.nn.utils.spectral_norm, which the GN-GAN code uses): from the stored u,
    v = normalize(Wᵀu) then u = normalize(Wv), σ = uᵀWv, one iteration per train-mode forward of D.

    torch.nn.utils.parametrizations.spectral_norm iterates the other way round (u = normalize(Wv) from the stored v,
    then v = normalize(Wᵀu)): a different σ after the first step, so a trainer built on it fails here.
    """
    check(SN_CASE, tmp_path)
