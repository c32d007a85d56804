"""Consistency regularization (Zhang et al. 2020), on whatever logits the method produces, as the GN-GAN code does."""

from __future__ import annotations

import torch
from torch import nn

from ganbench.config import MethodConfig
from ganbench.methods.base import Method


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] onto the uint8 grid {u / 127.5 − 1}, by rounding.

    The GN-GAN code augments through a uint8 PIL image; a real image read from uint8 comes back bit for bit (the
    inverse is the data pipeline's own u / 127.5 − 1). Values beyond [-1, 1] are clamped, as no uint8 holds them.
    """
    return torch.round((x + 1) * 127.5).clamp(0, 255) / 127.5 - 1


def shift(x: torch.Tensor, shift_x: torch.Tensor, shift_y: torch.Tensor, fill: float = -1.0) -> torch.Tensor:
    """Move sample i's content shift_x[i] pixels right and shift_y[i] down; uncovered pixels get `fill`.

    x is (n, c, h, w); the shifts are integer tensors of shape (n,). Output pixel (r, c) reads input (r − dy, c − dx).
    One gather on x's device and no host synchronisation, so a CUDA graph can capture it.
    """
    n, channels, h, w = x.shape
    rows = torch.arange(h, device=x.device) - shift_y.view(n, 1)  # (n, h)
    cols = torch.arange(w, device=x.device) - shift_x.view(n, 1)  # (n, w)
    inside = ((rows >= 0) & (rows < h)).view(n, h, 1) & ((cols >= 0) & (cols < w)).view(n, 1, w)
    source = rows.clamp(0, h - 1).view(n, h, 1) * w + cols.clamp(0, w - 1).view(n, 1, w)  # (n, h, w) flat index
    moved = x.flatten(2).gather(2, source.view(n, 1, h * w).expand(n, channels, h * w)).view(n, channels, h, w)
    return torch.where(inside.view(n, 1, h, w), moved, torch.full_like(moved, fill))


def augment_draws(x: torch.Tensor, flip: bool) -> tuple[torch.Tensor, ...]:
    """`augment`'s random numbers for the batch x, in its order: the flips' uniforms (only when `flip`), then u."""
    if x.ndim != 4:
        return ()
    n = len(x)
    flips = (torch.rand(n, device=x.device),) if flip else ()
    return (*flips, torch.rand(n, 2, device=x.device))


def augment(x: torch.Tensor, translate: float, flip: bool, draws: tuple[torch.Tensor, ...] = ()) -> torch.Tensor:
    """The GN-GAN code's CR transform, batched: uint8 grid, horizontal flip (p = ½), translation, black fill.

    That code runs each image through RandomHorizontalFlip then RandomAffine(0, translate=(t, t)), whose shift is
    round(U(−t·W, t·W)) pixels (round half to even, as torch.round) with black (−1) where nothing moved in. Draws,
    on x's device: flips = rand(n) < ½ (only when `flip`), then u = rand(n, 2); shift_x from u[:, 0] and W,
    shift_y from u[:, 1] and H (or `draws`, from `augment_draws`). Anything that is not an image batch (2-D points)
    is returned unchanged.
    """
    if x.ndim != 4:
        return x
    n, _, h, w = x.shape
    x = quantize(x)
    if not draws:
        draws = augment_draws(x, flip)
    if flip:
        flips = draws[0] < 0.5
        x = torch.where(flips.view(n, 1, 1, 1), x.flip(3), x)
    u = draws[-1]
    shift_x = torch.round((2 * u[:, 0] - 1) * (translate * w)).long()
    shift_y = torch.round((2 * u[:, 1] - 1) * (translate * h)).long()
    return shift(x, shift_x, shift_y)


def consistency_penalty(
    method: Method,
    d: nn.Module,
    real: torch.Tensor,
    real_logits: torch.Tensor,
    fake: torch.Tensor,
    fake_logits: torch.Tensor,
    cfg: MethodConfig,
    d_fake: nn.Module | None = None,
    draws: tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]] = ((), ()),
) -> torch.Tensor | None:
    """λ·mean((f̂(T(real)) − real_logits)²) [+ the same on fakes with bCR]; None when λ = 0.

    real_logits and fake_logits are the D step's own logits, graph kept: the GN-GAN code reuses the loss's
    `pred_real`, so CR costs one more D forward per branch and no more (a recomputation would also run another
    spectral-norm power iteration). Neither branch is detached, as in that code family (basiclab/Faster-GNGAN-PyTorch,
    utils/regularization.py): the squared difference is differentiated through both, pulling them together.
    bCR's fresh draws come after the real ones. A class-conditional D comes bound to the reals' labels (`d`) and
    to the fakes' (`d_fake`; None = `d`): each augmented image is scored under its own label, as the official code.
    `draws` are the two branches' `augment_draws` (empty: drawn here).
    """
    if cfg.cr_lambda == 0:
        return None
    term = _squared_difference(method, d, real, real_logits, cfg, draws[0])
    if cfg.bcr:
        d_fake = d if d_fake is None else d_fake
        term = term + _squared_difference(method, d_fake, fake.detach(), fake_logits, cfg, draws[1])
    return cfg.cr_lambda * term


def _squared_difference(
    method: Method,
    d: nn.Module,
    x: torch.Tensor,
    logits: torch.Tensor,
    cfg: MethodConfig,
    draws: tuple[torch.Tensor, ...] = (),
) -> torch.Tensor:
    augmented = augment(x, cfg.cr_translate, cfg.cr_flip, draws)
    return (method.logits(d, augmented) - logits).square().mean()
