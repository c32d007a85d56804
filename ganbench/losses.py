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
    """One loss: D's two terms and G's loss, with its registry description."""

    name: str
    d_loss: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
    g_loss: Logits
    # LGAN only: G's loss under loss.lgan_psi_max (G minimises ψ(f), the LGAN code's bPsiMax=True); None elsewhere
    g_loss_psi_max: Logits | None = None
    label: str = ""
    family: str = ""  # what a method's `loss_family` names: "LGAN" for every lgan-* loss, else the loss's own label
    description: str = ""

    def summary(self) -> dict[str, str]:
        return {"name": self.name, "label": self.label, "family": self.family, "description": self.description}


LOSSES: Registry[Loss] = Registry("loss", "loss.name")

LOSSES.add(
    "bce",
    Loss(  # non-saturating, as the GN-GAN code
        "bce",
        lambda r, f: (F.softplus(-r).mean(), F.softplus(f).mean()),
        lambda f: F.softplus(-f).mean(),
        label="BCE",
        family="BCE",
        description="binary cross-entropy on the logits; G non-saturating: softplus(-f(fake))",
    ),
)
LOSSES.add(
    "hinge",
    Loss(
        "hinge",
        lambda r, f: (F.relu(1 - r).mean(), F.relu(1 + f).mean()),
        lambda f: -f.mean(),
        label="hinge",
        family="hinge",
        description="D: relu(1 - f(real)) + relu(1 + f(fake)); G: -f(fake)",
    ),
)
LOSSES.add(
    "wasserstein",
    Loss(
        "wasserstein",
        lambda r, f: (-r.mean(), f.mean()),
        lambda f: -f.mean(),
        label="Wasserstein",
        family="Wasserstein",
        description="D: f(fake) - f(real); G: -f(fake)",
    ),
)


def _lgan(name: str, phi: Logits, psi: Logits, g: Logits, formula: str) -> Loss:
    """LGAN (Zhou et al. 2019): D minimises E[ψ(f(real))] + E[φ(f(fake))]; G minimises E[g(f(fake))] (E[ψ(f(fake))]
    under loss.lgan_psi_max)."""
    return Loss(
        f"lgan-{name}",
        lambda r, f: (psi(r).mean(), phi(f).mean()),
        lambda f: g(f).mean(),
        lambda f: psi(f).mean(),
        label=f"LGAN {name}",
        family="LGAN",
        description=f"LGAN objective for the lgan method: D minimises psi(f(real)) + phi(f(fake)), {formula}",
    )


def _minus(t: Tensor) -> Tensor:
    return -t


# (name, φ, ψ, G's loss without lgan_psi_max), with the LGAN code's alpha = 1 for lsgan and hinge. Its default
# (bPsiMax false) gives G −f for sqrt, log_sigmoid, exp and hinge; lgan-x's ψ is −f already, and lgan-lsgan's G
# loss is (f − 1)² whatever bPsiMax says.
for _name, _phi, _psi, _g, _formula in (
    ("x", lambda t: t, _minus, _minus, "phi(t) = t, psi(t) = -t"),
    ("exp", torch.exp, lambda t: torch.exp(-t), _minus, "phi(t) = exp(t), psi(t) = exp(-t)"),
    ("log_sigmoid", F.softplus, lambda t: F.softplus(-t), _minus, "phi(t) = softplus(t), psi(t) = softplus(-t)"),
    (
        "sqrt",
        lambda t: torch.sqrt(t**2 + 1) + t,
        lambda t: torch.sqrt(t**2 + 1) - t,
        _minus,
        "phi(t) = sqrt(t^2 + 1) + t, psi(t) = sqrt(t^2 + 1) - t",
    ),
    (
        "lsgan",
        lambda t: (t + 1) ** 2,
        lambda t: (t - 1) ** 2,
        lambda t: (t - 1) ** 2,
        "phi(t) = (t + 1)^2, psi(t) = (t - 1)^2",
    ),
    ("hinge", lambda t: F.relu(1 + t), lambda t: F.relu(1 - t), _minus, "phi(t) = relu(1 + t), psi(t) = relu(1 - t)"),
):
    LOSSES.add(f"lgan-{_name}", _lgan(_name, _phi, _psi, _g, _formula))


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
