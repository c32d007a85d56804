"""SN as a method (Miyato et al. 2018): every conv/linear weight of D divided by its top singular value.

The parametrization itself (the SN-GAN paper's power-iteration order) is ganbench.nets.spectral, shared with nets
that normalise their own layers; it is re-exported here.
"""

from __future__ import annotations

from torch import nn

from ganbench.methods.base import METHODS, Method
from ganbench.nets.spectral import INITIAL_ITERATIONS, LAYERS, SpectralNormalization, spectral_norm

__all__ = ["INITIAL_ITERATIONS", "LAYERS", "SpectralNorm", "SpectralNormalization", "spectral_norm"]


class SpectralNorm(Method):
    name = "sn"
    label = "SN"
    paper = "SN-GAN"
    tag = "sn"
    description = "spectral normalization: every conv/linear weight of D divided by its top singular value"

    def prepare(self, d: nn.Module) -> nn.Module:
        # One power iteration per training-mode forward, as the SN-GAN code; eval mode reuses the last estimate.
        # A projection D's class embedding is normalised too, as the SN-GAN projection discriminator (Miyato and
        # Koyama 2018) and BigGAN do; the unconditional nets have none.
        for layer in [m for m in d.modules() if isinstance(m, (*LAYERS, nn.Embedding))]:
            spectral_norm(layer, n_power_iterations=1, eps=self.cfg.sn_eps)
        return d


METHODS.add("sn", SpectralNorm)
