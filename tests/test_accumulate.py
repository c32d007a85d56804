"""Gradient accumulation (train.accumulate): k micro-batches give the one-big-batch step, in float64 on the CPU.

Each case builds the trainer for k = 1, 2 and 4 from the same seed, runs one generator step (one D step, one G step)
and compares the gradients each optimizer step received, and the loss totals, with k = 1's. G's BatchNorms are put
in eval mode (running statistics: no coupling between samples), the one place where a micro-batch is meant to differ
from the batch; `test_batchnorm_in_g_normalises_each_micro_batch` pins that difference. Everything else (SN's power
iteration, GN's double backprop, the penalties' α, CR's flips and shifts, the fakes' labels, LGAN's max over
samples) must agree to RELATIVE_ERROR (see `largest_error` for the scale): rounding leaves at most 1e-13 on the
kernels measured, a wrong weight of a piece, draw or max moves the gradients by 1e-8 and more.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from ganbench.config import omit_later_defaults
from ganbench.errors import RecipeError
from ganbench.recipe import loads
from ganbench.store import RunDir
from ganbench.train.loop import Trainer
from ganbench.train.runinfo import training_hash
from ganbench.train.split import BatchSplit

# Gradients: an error relative to the tensor's largest entry, but never to less than SCALE_FLOOR of the net's largest
# gradient entry. Measured on one machine's kernels (ATEN_CPU_CAPABILITY default, avx2 and avx512; MKL's SSE4.2 code
# path), k = 2 and 4 against 1 and each kernel against the others: at most 9e-14 (LGAN's BigGAN D, whose exp loss
# reaches 1e97), 1e3 below RELATIVE_ERROR. The floor is for a gradient that cancels in exact arithmetic (D's last
# bias under hinge with CR: rounding of 4e-16 of D's largest entry, which a floor of 1e-3 put at 7e-13, 1e2 below).
# The wrong pieces tried (LGAN's max taken in every piece, one piece's CR draws or fake labels reused by all, SN
# iterating in every piece) move the gradients by 1e-8 (the max, BigGAN, 2 pieces) to 1: 1e2 RELATIVE_ERROR and more.
RELATIVE_ERROR = 1e-10
SCALE_FLOOR = 1e-2
D_GAIN = 6.0

BASE = """
name = "accumulate"
seed = 5

[data]
name = "shapes"
num_samples = 24

[model]
arch = "cnn32"
z_dim = 8
g_channels = 4
d_channels = 4

[train]
steps = 1
batch_size_d = 8
batch_size_g = 12
beta1 = 0.5
device = "cpu"
"""

CASES: dict[str, list[str]] = {
    "sn": ["method.name=sn", "loss.name=hinge"],
    "sn-cr": ["method.name=sn", "loss.name=hinge", "method.cr_lambda=5.0"],
    "gn": ["method.name=gn"],
    "pgn": ["method.name=pgn", "loss.name=hinge"],
    "gran": ["method.name=gran", "method.gran_k=2.5", "method.gran_eps=0.01"],
    "wgan-gp": ["method.name=wgan-gp", "loss.name=wasserstein"],
    "lgan": ["method.name=lgan", "loss.name=lgan-exp", "method.lgan_lambda=0.3"],
    "gn-cr": ["method.name=gn", "method.cr_lambda=5.0"],
    "gn-bcr": ["method.name=gn", "method.cr_lambda=5.0", "method.bcr=true"],
    # SN on every layer of G as well, class-conditional BatchNorm, labels of reals and fakes, GN under each label
    "biggan-gn-bcr-conditional": [
        "model.arch=biggan32",
        "model.num_classes=3",
        "method.name=gn",
        "loss.name=hinge",
        "method.cr_lambda=5.0",
        "method.bcr=true",
    ],
    "biggan-lgan-conditional": [
        "model.arch=biggan32",
        "model.num_classes=3",
        "method.name=lgan",
        "loss.name=lgan-exp",
    ],
}

Gradients = dict[str, dict[str, torch.Tensor]]


def one_step(
    overrides: list[str], k: int, tmp_path: Path, bn_batch: bool = False, split: BatchSplit | None = None
) -> tuple[Gradients, Trainer]:
    """The gradients D's and G's optimizers step on in one generator step with train.accumulate = k, and the
    trainer after it. `bn_batch` keeps G's BatchNorms on batch statistics (train mode). The 32 px CNN D's weights
    are scaled by D_GAIN: at its initialisation this tiny D has input gradients of ~1e-6, under which LGAN's
    λ·max‖∇D‖² would reach the gradients by ~1e-13 only, too little for a wrong max to show. `split`: the
    pieces of another process layout (tests/test_distributed.py)."""
    recipe = loads(BASE, [*overrides, f"train.accumulate={k}"])
    trainer = Trainer(recipe, RunDir(tmp_path / f"k{k}"))
    trainer._build()
    if split is not None:
        trainer.split = split
    trainer.G.train()
    trainer.D.train()
    with torch.no_grad():
        for parameter in trainer.D.parameters():
            parameter.mul_(D_GAIN if recipe.model.arch == "cnn32" else 1.0)
    if not bn_batch:
        for module in trainer.G.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
    gradients: Gradients = {}
    for name, optimizer, net in (("D", trainer.opt_d, trainer.D), ("G", trainer.opt_g, trainer.G)):

        def record(step=optimizer.step, name=name, net=net) -> None:  # type: ignore[no-untyped-def]
            gradients[name] = {key: p.grad.clone() for key, p in net.named_parameters() if p.grad is not None}
            step()

        optimizer.step = record  # type: ignore[method-assign]
    trainer.batches.gather()
    trainer._step()
    return gradients, trainer


def largest_error(got: Gradients, want: Gradients) -> float:
    """The largest difference of any gradient tensor, relative to that tensor's largest entry in `want`, but never
    to less than SCALE_FLOOR of the net's largest gradient entry: a bias whose gradient cancels (D's last bias under
    a loss with E[f(real)] − E[f(fake)] terms, 0 to 1e-16 of the net's largest) holds rounding noise only, which is
    no scale of its own."""
    assert got.keys() == want.keys()
    errors = [0.0]
    for net in want:
        assert got[net].keys() == want[net].keys(), net
        floor = SCALE_FLOOR * max(w.abs().max() for w in want[net].values())
        for key, w in want[net].items():
            assert torch.isfinite(w).all() and torch.isfinite(got[net][key]).all(), f"{net}.{key}: not finite"
            errors.append(((got[net][key] - w).abs().max() / w.abs().max().clamp_min(floor)).item())
    return max(errors)


def totals(trainer: Trainer) -> dict[str, float]:
    return {name: value.item() for name, value in trainer.totals.items()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_micro_batches_give_the_whole_batch_gradient(case: str, tmp_path: Path, float64: None) -> None:
    whole, trainer = one_step(CASES[case], 1, tmp_path)
    assert set(whole) == {"D", "G"} and all(whole[net] for net in whole)
    for k in (2, 4):
        pieces, accumulated = one_step(CASES[case], k, tmp_path)
        error = largest_error(pieces, whole)
        assert error <= RELATIVE_ERROR, f"{case}, accumulate={k}: gradient relative error {error:.3e}"
        want, got = totals(trainer), totals(accumulated)
        # loss_g is taken after D's Adam step, which magnifies rounding by up to lr/eps where a gradient cancels: D's
        # last bias, whose gradient cancels under these losses, steps by lr·(rounding)/eps and shifts every D(fake);
        # measured at most 1e-12 (sn-cr, loss_g 1e-4), 1e3 below the absolute floor
        g_loss = pytest.approx(want.pop("loss_g"), rel=1e-8, abs=1e-9)
        assert got.pop("loss_g") == g_loss, f"{case}, accumulate={k}: loss_g"
        # the other totals: measured at most 2e-14 relative (BigGAN's LGAN loss_d, 1e97) and 1e-20 absolute near 0
        assert got == pytest.approx(want, rel=1e-10, abs=1e-12), f"{case}, accumulate={k}: loss totals"
        # SN's u and v end as one pass over the batch leaves them: unit vectors, so an error relative to their norm
        # (1); measured at most 7e-17 (SN iterating in every piece moves them by 8e-2 and more)
        for key, value in trainer.D.state_dict().items():
            if key.endswith(("_u", "_v")):
                assert torch.allclose(accumulated.D.state_dict()[key], value, rtol=0, atol=1e-12), key


def test_lgan_max_is_over_the_whole_batch(tmp_path: Path, float64: None) -> None:
    """A max per micro-batch (λ·mean of the pieces' max²) is a different penalty: its value differs from the
    batch's λ·max² whenever the pieces' maxima differ, as they do here."""
    _, trainer = one_step(CASES["lgan"], 1, tmp_path)
    _, accumulated = one_step(CASES["lgan"], 4, tmp_path)
    assert accumulated.totals["penalty"].item() == pytest.approx(trainer.totals["penalty"].item(), rel=1e-12)
    assert trainer.totals["penalty"].item() > 0


def test_batchnorm_in_g_normalises_each_micro_batch(tmp_path: Path, float64: None) -> None:
    """With G's BatchNorm on batch statistics, a micro-batch's fakes are normalised by its own statistics (as
    per-GPU BatchNorm): the gradients differ from the whole batch's by far more than rounding, and the running
    statistics are updated once per micro-batch (k times per D step and per G step)."""
    whole, trainer = one_step(CASES["gn"], 1, tmp_path, bn_batch=True)
    pieces, accumulated = one_step(CASES["gn"], 2, tmp_path, bn_batch=True)
    assert largest_error(pieces, whole) > 1e-4
    tracked = [m.num_batches_tracked.item() for m in accumulated.G.modules() if isinstance(m, nn.BatchNorm2d)]
    once = [m.num_batches_tracked.item() for m in trainer.G.modules() if isinstance(m, nn.BatchNorm2d)]
    assert once and set(once) == {2} and set(tracked) == {4}


@pytest.mark.parametrize(("key", "size"), [("batch_size_d", 6), ("batch_size_g", 10)])
def test_accumulate_must_divide_both_batch_sizes(key: str, size: int) -> None:
    with pytest.raises(RecipeError, match=rf"^train\.accumulate: 4 does not divide train\.{key} = {size};"):
        loads(BASE, ["train.accumulate=4", f"train.{key}={size}"])


def test_accumulate_at_its_default_leaves_the_hashes_alone() -> None:
    """Run directories of earlier versions resume: at 1 the key is in neither hash, otherwise in both."""
    plain, two = loads(BASE), loads(BASE, ["train.accumulate=2"])
    tree = plain.to_dict()
    omit_later_defaults(tree)
    assert "accumulate" not in tree["train"]
    assert plain.hash() != two.hash()
    assert training_hash(plain) != training_hash(two)
