"""What a Lipschitz method is to the trainer: rewrite D once, turn raw outputs into logits, maybe add a penalty."""

from __future__ import annotations

import torch
from torch import nn

from ganbench.config import MethodConfig
from ganbench.registry import Registry


class Method:
    """The plain GAN: D's raw output is the logit, no penalty."""

    name = "none"

    def __init__(self, cfg: MethodConfig) -> None:
        self.cfg = cfg

    def prepare(self, d: nn.Module) -> nn.Module:
        return d

    def logits(self, d: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return d(x).flatten()

    def penalty(self, d: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor | None:
        return None


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
