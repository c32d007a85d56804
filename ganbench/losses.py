"""GAN losses on the logits the method produces: (real, fake) -> D's two terms; fake -> G's loss."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ganbench.config import LossConfig
from ganbench.errors import RecipeError
from ganbench.registry import Registry

Tensor = torch.Tensor
Logits = Callable[[Tensor], Tensor]  # an elementwise function of the logits


@dataclass(frozen=True)
class Loss:
    name: str
    d_loss: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
    g_loss: Logits
    # LGAN only: G's loss under loss.lgan_psi_max (G minimises ψ(f), the LGAN code's bPsiMax=True); None elsewhere
    g_loss_psi_max: Logits | None = None


LOSSES: Registry[Loss] = Registry("loss", "loss.name")

LOSSES.add(
    "bce",
    Loss(  # non-saturating, as the GN-GAN code
        "bce", lambda r, f: (F.softplus(-r).mean(), F.softplus(f).mean()), lambda f: F.softplus(-f).mean()
    ),
)
LOSSES.add("hinge", Loss("hinge", lambda r, f: (F.relu(1 - r).mean(), F.relu(1 + f).mean()), lambda f: -f.mean()))
LOSSES.add("wasserstein", Loss("wasserstein", lambda r, f: (-r.mean(), f.mean()), lambda f: -f.mean()))


def _lgan(name: str, phi: Logits, psi: Logits, g: Logits) -> Loss:
    """LGAN (Zhou et al. 2019): D minimises E[ψ(f(real))] + E[φ(f(fake))]; G minimises E[g(f(fake))] (E[ψ(f(fake))]
    under loss.lgan_psi_max)."""
    return Loss(
        f"lgan-{name}",
        lambda r, f: (psi(r).mean(), phi(f).mean()),
        lambda f: g(f).mean(),
        lambda f: psi(f).mean(),
    )


def _minus(t: Tensor) -> Tensor:
    return -t


# (name, φ, ψ, G's loss without lgan_psi_max), with the LGAN code's alpha = 1 for lsgan and hinge. Its default
# (bPsiMax false) gives G −f for sqrt, log_sigmoid, exp and hinge; lgan-x's ψ is −f already, and lgan-lsgan's G
# loss is (f − 1)² whatever bPsiMax says.
for _name, _phi, _psi, _g in (
    ("x", lambda t: t, _minus, _minus),
    ("exp", torch.exp, lambda t: torch.exp(-t), _minus),
    ("log_sigmoid", F.softplus, lambda t: F.softplus(-t), _minus),
    ("sqrt", lambda t: torch.sqrt(t**2 + 1) + t, lambda t: torch.sqrt(t**2 + 1) - t, _minus),
    ("lsgan", lambda t: (t + 1) ** 2, lambda t: (t - 1) ** 2, lambda t: (t - 1) ** 2),
    ("hinge", lambda t: F.relu(1 + t), lambda t: F.relu(1 - t), _minus),
):
    LOSSES.add(f"lgan-{_name}", _lgan(_name, _phi, _psi, _g))


def build_loss(cfg: LossConfig) -> Loss:
    """The loss a recipe's [loss] section names, with G's LGAN loss chosen by loss.lgan_psi_max."""
    loss = LOSSES.get(cfg.name)
    if not cfg.lgan_psi_max:
        return loss
    if loss.g_loss_psi_max is None:
        raise RecipeError(
            f"loss.lgan_psi_max: applies to the LGAN losses only, not {cfg.name!r}; set it to false or pick an "
            "lgan-* loss.name"
        )
    return dataclasses.replace(loss, g_loss=loss.g_loss_psi_max)
