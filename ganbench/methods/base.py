"""What a Lipschitz method is to the trainer: rewrite D once, turn raw outputs into logits, maybe add a penalty.

A method is one class, and the class is its registry entry: besides the three hooks it declares its label, the name
the papers' tables give it, the tag of its paper recipe files (recipes/<data>_<net>_<tag>.toml), a description, and
the loss family it is defined with.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from ganbench.config import MethodConfig
from ganbench.registry import Registry


class Method:
    """The plain GAN: D's raw output is the logit, no penalty."""

    name: ClassVar[str] = "none"
    label: ClassVar[str] = "GAN"  # in lists and plots
    paper: ClassVar[str] = "GAN (no constraint)"  # as the papers' tables name it
    tag: ClassVar[str] = "none"  # in paper recipe file names, which spell methods without dashes
    description: ClassVar[str] = "no Lipschitz constraint: D's raw output is the logit"
    # The loss family (a loss entry's `family`) the method is defined with, and the loss of that family a controlled
    # comparison switches to; "" = any loss. With `loss_enforced`, a recipe naming a loss of another family is refused.
    loss_family: ClassVar[str] = ""
    default_loss: ClassVar[str] = ""
    loss_enforced: ClassVar[bool] = False
    # The penalty is a max over samples (LGAN's max-GP), not a mean: a batch run in pieces adds it in one piece only.
    penalty_is_max: ClassVar[bool] = False

    def __init__(self, cfg: MethodConfig) -> None:
        self.cfg = cfg

    def prepare(self, d: nn.Module) -> nn.Module:
        return d

    def logits(self, d: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return d(x).flatten()

    def penalty_draws(self, real: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The penalty's random numbers for a batch like `real` (drawn once for the whole batch, then sliced)."""
        return ()

    def penalty(
        self, d: nn.Module, real: torch.Tensor, fake: torch.Tensor, draws: tuple[torch.Tensor, ...] = ()
    ) -> torch.Tensor | None:
        """The penalty on a batch, with `draws` from `penalty_draws` (drawn here when empty)."""
        return None

    def penalty_peak(
        self, d: nn.Module, real: torch.Tensor, fake: torch.Tensor, draws: tuple[torch.Tensor, ...]
    ) -> torch.Tensor:
        """A penalty that is a max over samples: the batch's largest per-sample value, without a graph."""
        raise NotImplementedError(f"{self.name}'s penalty is not a max over samples")

    @classmethod
    def summary(cls) -> dict[str, str]:
        loss = cls.loss_family and f"{cls.loss_family} ({'required' if cls.loss_enforced else cls.default_loss})"
        return {
            "name": cls.name,
            "label": cls.label,
            "paper": cls.paper,
            "recipe tag": cls.tag,
            "loss family": loss or "any",
            "description": cls.description,
        }


METHODS: Registry[type[Method]] = Registry("method", "method.name")
METHODS.add("none", Method)


def output_and_gradient_norm(
    d: nn.Module, x: torch.Tensor, create_graph: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """f = D(x) (N,), g = ∇ₓf per sample (same shape as x) and ‖g‖ (N,), with the graph kept for double backprop.

    A leaf input without grad (reals, detached fakes) gets a grad-enabled view; an input carrying G's graph keeps it,
    so the G step's gradient reaches G through both f and ‖g‖.
    """
    if not x.requires_grad:
        x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        f = d(x).flatten()
        (g,) = torch.autograd.grad(f.sum(), x, create_graph=create_graph)
    return f, g, g.flatten(1).norm(dim=1)
