"""The trainer against an independent re-derivation of its training run (official_step.py), in float64 on the CPU.

Each case builds the trainer's initial state, runs the reference from it and the real trainer from the same seed,
and compares G, D (with SN's u, v), EMA-G and G's BatchNorm buffers after a few steps to 1e-10 (RTOL). A wrong
weight anywhere in the step (an EMA weight, a learning rate, a real batch, a flip, a penalty's sign, a CR term, GraN's
K or ε, the power iteration) moves the weights by far more than that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from ganbench.recipe import Recipe, loads
from ganbench.store import RunDir
from ganbench.train import checkpoint
from ganbench.train.loop import Trainer, train
from tests.reference import official_step

RTOL = 1e-10
# Errors are relative to a tensor's largest entry, but never to less than 1 (the nets' weight scale: BN weights start
# at 1), i.e. at most 1e-10 absolute: Adam divides by √v + eps, so a weight whose gradient nearly cancels moves by
# lr·g/(|g| + eps) and its rounding errors are magnified by up to lr/eps.
SCALE_FLOOR = 1.0
# A tensor the reference leaves wholly below this is a zero-initialised bias the loss does not reach in exact
# arithmetic (a conv bias ahead of a BatchNorm): its Adam steps are rounding noise times lr/eps (seen up to ~1e-10),
# where a real Adam step is ~lr (1e-3). Noise against noise is no comparison: the trainer's copy must merely stay
# below it too.
NOISE_LEVEL = 1e-8

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
    "pgn-cr": ["method.name=pgn", "loss.name=hinge", "method.cr_lambda=5.0"],
    "pgn-bcr-no-cr-flip": [
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
    "lgan-exp": ["method.name=lgan", "loss.name=lgan-exp", "method.lgan_lambda=0.3", "train.n_dis=2"],
    "lgan-sqrt-psi-max": [
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


def reference_and_trainer(recipe: Recipe, tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any], official_step.Start]:
    """(reference's final states, the trainer's final checkpoint, the shared start)."""
    built = Trainer(recipe, RunDir(tmp_path / "built"))
    built._build()
    start = official_step.Start(
        g=_clone(built.G.state_dict()),
        d=_clone(built.D.state_dict()),
        g_ema=_clone(built.G_ema.state_dict()) if built.G_ema is not None else None,
        rng=torch.get_rng_state(),
    )
    data = built.dataset.tensor.clone()
    labels = built.dataset.labels.clone() if recipe.model.num_classes and built.dataset.labels is not None else None
    expected = official_step.run(recipe, data, start, labels)  # reads `start`, never writes it
    run = RunDir(tmp_path / "run")
    train(recipe, run)
    saved = checkpoint.load(run.checkpoint_path("last"))
    assert saved["step"] == recipe.train.steps
    return expected, saved, start


def mismatches(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], what: str) -> list[str]:
    """One line per tensor that differs by more than RTOL of max(the expected tensor's largest entry, SCALE_FLOOR),
    or, where the reference holds only rounding noise (below NOISE_LEVEL), that the trainer lets grow past it."""
    assert actual.keys() == expected.keys(), f"{what}: keys differ: {set(actual) ^ set(expected)}"
    lines = []
    for key, want in expected.items():
        got = actual[key]
        assert got.dtype == want.dtype, f"{what}.{key}: dtype {got.dtype}, expected {want.dtype}"
        if not want.is_floating_point():
            if not torch.equal(got, want):
                lines.append(f"{what}.{key}: {got.tolist()} != {want.tolist()}")
            continue
        if want.abs().max() < NOISE_LEVEL:
            if not got.abs().max() < NOISE_LEVEL:
                lines.append(f"{what}.{key}: {got.abs().max():.3e} where the reference leaves rounding noise only")
            continue
        error = ((got - want).abs().max() / want.abs().max().clamp_min(SCALE_FLOOR)).item()
        if not error <= RTOL:
            lines.append(f"{what}.{key}: relative error {error:.3e}")
    return lines


def moved(final: dict[str, torch.Tensor], start: dict[str, torch.Tensor]) -> bool:
    """Whether training changed the floating-point state at all (so that matching it means something)."""
    return any(
        value.is_floating_point() and not torch.allclose(value, start[key], rtol=1e-6, atol=0)
        for key, value in final.items()
    )


def check(overrides: list[str], tmp_path: Path) -> None:
    recipe = loads(BASE, overrides)
    expected, saved, start = reference_and_trainer(recipe, tmp_path)
    assert moved(expected["G"], start.g) and moved(expected["D"], start.d)
    problems = mismatches(saved["G"], expected["G"], "G") + mismatches(saved["D"], expected["D"], "D")
    if start.g_ema is not None:
        assert moved(expected["G_ema"], start.g_ema)
        problems += mismatches(saved["G_ema"], expected["G_ema"], "G_ema")
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
