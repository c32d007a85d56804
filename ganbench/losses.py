"""GAN losses on the logits the method produces: (real, fake) -> D's two terms; fake -> G's loss."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ganbench.registry import Registry

Tensor = torch.Tensor


@dataclass(frozen=True)
class Loss:
    name: str
    d_loss: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
    g_loss: Callable[[Tensor], Tensor]


LOSSES: Registry[Loss] = Registry("loss", "loss.name")

LOSSES.add(
    "bce",
    Loss(  # non-saturating, as the GN-GAN code
        "bce", lambda r, f: (F.softplus(-r).mean(), F.softplus(f).mean()), lambda f: F.softplus(-f).mean()
    ),
)
LOSSES.add("hinge", Loss("hinge", lambda r, f: (F.relu(1 - r).mean(), F.relu(1 + f).mean()), lambda f: -f.mean()))
LOSSES.add("wasserstein", Loss("wasserstein", lambda r, f: (-r.mean(), f.mean()), lambda f: -f.mean()))


def _lgan(name: str, phi: Callable[[Tensor], Tensor], psi: Callable[[Tensor], Tensor]) -> Loss:
    """LGAN (Zhou et al. 2019): D minimizes E[φ(f(fake))] + E[ψ(f(real))]; G minimizes E[ψ(f(fake))]."""
    return Loss(f"lgan-{name}", lambda r, f: (psi(r).mean(), phi(f).mean()), lambda f: psi(f).mean())


for _name, _phi, _psi in (
    ("x", lambda t: t, lambda t: -t),
    ("exp", torch.exp, lambda t: torch.exp(-t)),
    ("log_sigmoid", F.softplus, lambda t: F.softplus(-t)),
    ("sqrt", lambda t: torch.sqrt(t**2 + 1) + t, lambda t: torch.sqrt(t**2 + 1) - t),
    ("lsgan", lambda t: (t + 1) ** 2, lambda t: (t - 1) ** 2),
    ("hinge", lambda t: F.relu(1 + t), lambda t: F.relu(1 - t)),
):
    LOSSES.add(f"lgan-{_name}", _lgan(_name, _phi, _psi))
