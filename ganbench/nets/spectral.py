"""Spectral normalization (Miyato et al. 2018) as a weight parametrization: W ↦ W / σ(W), σ by power iteration.

The power iteration runs in the SN-GAN paper's order (its Algorithm 1, as the SN-GAN code and torch's older
`torch.nn.utils.spectral_norm` do): v ← Wᵀu/‖Wᵀu‖, then u ← Wv/‖Wv‖, and σ = uᵀWv. torch's parametrization
(`torch.nn.utils.parametrizations.spectral_norm`) updates u first, which gives another σ during the first steps; so
the parametrization is written here, with the same state-dict layout (`parametrizations.weight.original`, `_u`, `_v`).
It lives with the nets because a net may normalise its own layers (BigGAN's generator); the SN method
(methods/spectral.py) applies it to every layer of D.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
INITIAL_ITERATIONS = 15  # power iterations at registration, so σ is already close when training starts


class SpectralNormalization(nn.Module):
    """W ↦ W / σ(W); in training mode one power iteration per forward (updating u and v in place), in eval mode the
    stored u and v as they are. `dim` is the output dimension (1 for transposed convolutions)."""

    _u: torch.Tensor  # buffers, registered in __init__ (declared for the type checker)
    _v: torch.Tensor
    replay: PowerIterationReplay | None = None  # set by `once_per_batch` while a batch runs in pieces

    def __init__(self, weight: torch.Tensor, n_power_iterations: int = 1, dim: int = 0, eps: float = 1e-12) -> None:
        super().__init__()
        self.dim, self.eps, self.n_power_iterations = dim, eps, n_power_iterations
        matrix = self._matrix(weight)
        h, w = matrix.shape
        u = matrix.new_empty(h).normal_(0, 1)
        v = matrix.new_empty(w).normal_(0, 1)
        self.register_buffer("_u", F.normalize(u, dim=0, eps=eps))
        self.register_buffer("_v", F.normalize(v, dim=0, eps=eps))
        self._power_method(matrix, INITIAL_ITERATIONS)

    def _matrix(self, weight: torch.Tensor) -> torch.Tensor:
        if self.dim != 0:
            weight = weight.movedim(self.dim, 0)
        return weight.flatten(1)

    @torch.no_grad()
    def _power_method(self, matrix: torch.Tensor, iterations: int) -> None:
        for _ in range(iterations):  # in place: the buffers are what the next forward starts from
            F.normalize(torch.mv(matrix.t(), self._u), dim=0, eps=self.eps, out=self._v)
            F.normalize(torch.mv(matrix, self._v), dim=0, eps=self.eps, out=self._u)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        matrix = self._matrix(weight)
        replay = self.replay
        if self.training and replay is not None and not replay.recording:
            u, v = replay.states[replay.position]  # the u and v this forward had in the batch's first piece
            replay.position += 1
            return weight / torch.dot(u, torch.mv(matrix, v))
        if self.training:
            self._power_method(matrix, self.n_power_iterations)
        # clones: autograd must see the u and v of this forward even if a later forward updates the buffers
        u = self._u.clone(memory_format=torch.contiguous_format)
        v = self._v.clone(memory_format=torch.contiguous_format)
        if self.training and replay is not None:
            replay.states.append((u, v))
        sigma = torch.dot(u, torch.mv(matrix, v))
        return weight / sigma


class PowerIterationReplay:
    """The (u, v) of each training-mode forward of one layer in a batch's first piece, replayed in the others."""

    def __init__(self) -> None:
        self.states: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.position, self.recording = 0, True


@contextmanager
def once_per_batch(*modules: nn.Module) -> Iterator[Callable[[], None]]:
    """Run a batch in pieces with the power iterations of one pass over the whole batch.

    Yields `next_piece`, to be called before each piece: in the first piece every forward iterates as usual (and
    its u and v are kept), in the others the n-th forward of a layer uses the u and v of its n-th forward in the
    first piece, without iterating. So every piece sees the weights W / σ the whole batch would have seen, and the
    buffers end as one pass leaves them. Nothing changes for modules without spectral normalization.
    """
    layers = [m for module in modules for m in module.modules() if isinstance(m, SpectralNormalization)]
    replays = [PowerIterationReplay() for _ in layers]
    pieces = 0

    def next_piece() -> None:
        nonlocal pieces
        for replay in replays:
            replay.recording, replay.position = pieces == 0, 0
        pieces += 1

    for layer, replay in zip(layers, replays, strict=True):
        layer.replay = replay
    try:
        yield next_piece
    finally:
        for layer in layers:
            layer.replay = None


def spectral_norm(layer: nn.Module, n_power_iterations: int = 1, eps: float = 1e-12) -> nn.Module:
    """Register SpectralNormalization on `layer.weight` (output dimension 1 for transposed convolutions)."""
    dim = 1 if isinstance(layer, nn.ConvTranspose2d) else 0
    weight = typing.cast(torch.Tensor, layer.weight)  # nn.Module's attribute lookup is typed Tensor | Module
    parametrize.register_parametrization(layer, "weight", SpectralNormalization(weight, n_power_iterations, dim, eps))
    return layer
