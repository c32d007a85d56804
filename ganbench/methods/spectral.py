"""Spectral normalization (Miyato et al. 2018): every conv/linear weight of D divided by its top singular value."""

from __future__ import annotations

from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ganbench.methods.base import METHODS, Method

LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


class SpectralNorm(Method):
    name = "sn"

    def prepare(self, d: nn.Module) -> nn.Module:
        # One power iteration per training-mode forward, as the SN-GAN code; eval mode reuses the last estimate.
        for layer in [m for m in d.modules() if isinstance(m, LAYERS)]:
            spectral_norm(layer, n_power_iterations=1, eps=self.cfg.sn_eps)
        return d


METHODS.add("sn", SpectralNorm)
