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
        if self.training:
            self._power_method(matrix, self.n_power_iterations)
        # clones: autograd must see the u and v of this forward even if a later forward updates the buffers
        u = self._u.clone(memory_format=torch.contiguous_format)
        v = self._v.clone(memory_format=torch.contiguous_format)
        sigma = torch.dot(u, torch.mv(matrix, v))
        return weight / sigma


def spectral_norm(layer: nn.Module, n_power_iterations: int = 1, eps: float = 1e-12) -> nn.Module:
    """Register SpectralNormalization on `layer.weight` (output dimension 1 for transposed convolutions)."""
    dim = 1 if isinstance(layer, nn.ConvTranspose2d) else 0
    weight = typing.cast(torch.Tensor, layer.weight)  # nn.Module's attribute lookup is typed Tensor | Module
    parametrize.register_parametrization(layer, "weight", SpectralNormalization(weight, n_power_iterations, dim, eps))
    return layer
