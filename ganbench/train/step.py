"""The training step on one screen: n_dis D steps, one G step and the EMA update, and the objective they optimise.

The objective is one object: the method (which turns D's raw outputs into the logits the loss sees), the loss, and
a list of regularisers, each adding its term to D's loss and to one loss total of the history. Methods are named
nowhere here.

Rules the CUDA-graph path needs (train/fast.py captures `_step` once and replays it; the eager path runs the same
code, so these hold on every device):
- the step reads and writes device tensors only: the real batches (`reals`, refilled in place before each step),
  the loss totals (added to in place), the optimizers' learning rates and the EMA weight (0-d device tensors that
  train/schedule.py fills in place: never rebound, a graph reads them by address);
- no host synchronisation: no `.item()`, no Python branch on a tensor's value, no tensor printed or logged;
- tensor shapes are the same at every step;
- random numbers come from the device's global generator (checkpointed), in a fixed order: per D step z, then (a
  class-conditional net) the fakes' labels, then each regulariser's draws in list order (the penalty's α, then CR's
  flips and shifts of the reals, then bCR's of the fakes), and the G step's z and labels last.

Class-conditional nets (model.num_classes > 0), as the official code: the reals keep their own labels (gathered with
them, `real_labels`), the fakes' labels are uniform over the classes, and D scores every sample under its label with
the labels bound (nets.conditioned), so the methods differentiate with respect to the images only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn

from ganbench import losses, methods, nets
from ganbench.data import output_shape, to_model_range
from ganbench.methods.consistency import consistency_penalty
from ganbench.recipe import LossConfig, MethodConfig, Recipe
from ganbench.store import LOSS_COLUMNS
from ganbench.train.ema import make_ema, update_ema
from ganbench.train.fast import make_adam
from ganbench.train.schedule import Schedules

Tensor = torch.Tensor


class Regularizer(Protocol):
    """A term added to D's loss; `name` is the loss total (history column) it is summed into. `d_real` and `d_fake`
    are D scoring under the reals' and the fakes' labels (both D itself for an unconditional net)."""

    name: str

    def penalty(
        self, d_real: nn.Module, real: Tensor, real_logits: Tensor, d_fake: nn.Module, fake: Tensor, fake_logits: Tensor
    ) -> Tensor | None: ...


@dataclass
class MethodPenalty:
    """The method's own penalty (WGAN-GP's GP, LGAN's max-GP on interpolates; None for the other methods). A
    class-conditional D scores the interpolates under the reals' labels."""

    method: methods.Method
    name: str = "penalty"

    def penalty(
        self, d_real: nn.Module, real: Tensor, real_logits: Tensor, d_fake: nn.Module, fake: Tensor, fake_logits: Tensor
    ) -> Tensor | None:
        return self.method.penalty(d_real, real, fake)


@dataclass
class Consistency:
    """CR on the reals and, with method.bcr, bCR on the fakes: λ·(term_real [+ term_fake]) under one λ and one
    total, compared with the D step's own logits (graph kept: no second forward of the untransformed batch)."""

    method: methods.Method
    cfg: MethodConfig
    name: str = "cr"

    def penalty(
        self, d_real: nn.Module, real: Tensor, real_logits: Tensor, d_fake: nn.Module, fake: Tensor, fake_logits: Tensor
    ) -> Tensor | None:
        return consistency_penalty(self.method, d_real, real, real_logits, fake, fake_logits, self.cfg, d_fake=d_fake)


@dataclass
class Objective:
    """What D and G optimise: loss(method(D, ·)) plus D's regularisers, in the order they draw random numbers."""

    method: methods.Method
    loss: losses.Loss
    regularizers: list[Regularizer] = field(default_factory=list)


def build_objective(method_cfg: MethodConfig, loss_cfg: LossConfig) -> Objective:
    method = methods.build_method(method_cfg)
    regularizers: list[Regularizer] = [MethodPenalty(method)]
    if method_cfg.cr_lambda > 0:
        regularizers.append(Consistency(method, method_cfg))
    return Objective(method, losses.build_loss(loss_cfg), regularizers)


class TrainingStep:
    """One generator step on the modules and device buffers below; the trainer inherits it and fills `reals`.

    `_d_step` and `_g_step` are separate methods so that tests can stop a run inside a given phase.
    """

    G: nn.Module
    D: nn.Module
    G_ema: nn.Module | None
    objective: Objective
    opt_d: torch.optim.Optimizer
    opt_g: torch.optim.Optimizer
    reals: Tensor  # (n_dis, batch_size_d, ...): this step's real batches as stored (uint8 images or points)
    real_labels: Tensor | None  # (n_dis, batch_size_d) int64: their class labels (class-conditional nets only)
    num_classes: int  # 0 = unconditional nets: no labels drawn or passed
    totals: dict[str, Tensor]  # loss totals since the last log line, 0-d device tensors (store.LOSS_COLUMNS)
    schedules: Schedules  # learning rates and the EMA weight of the step
    z_dim: int
    batch_size_d: int
    batch_size_g: int
    device: torch.device

    def _build_step(self, recipe: Recipe, device: torch.device) -> None:
        """G, D (as the method rewrites it), EMA-G, the objective, one Adam each, the schedules and the totals."""
        t, self.device = recipe.train, device
        generator, discriminator = nets.build_nets(recipe.model, output_shape(recipe.data))
        self.objective = build_objective(recipe.method, recipe.loss)
        self.G = generator.to(device)
        self.D = self.objective.method.prepare(discriminator).to(device)
        betas, fused = (t.beta1, t.beta2), device.type == "cuda" and t.fused_adam
        self.opt_g = make_adam(self.G.parameters(), t.lr_g, betas, device, fused)
        self.opt_d = make_adam(self.D.parameters(), t.lr_d, betas, device, fused)
        self.G_ema = make_ema(self.G) if t.ema_decay > 0 else None
        self.schedules = Schedules(t, self.opt_d, self.opt_g, device)
        self.z_dim, self.batch_size_d, self.batch_size_g = recipe.model.z_dim, t.batch_size_d, t.batch_size_g
        self.num_classes = recipe.model.num_classes
        self.totals = {name: torch.zeros((), device=device) for name in LOSS_COLUMNS}

    def _step(self) -> None:
        """n_dis D steps, each on its own real batch, then the G step and the EMA update."""
        labels = self.real_labels if self.real_labels is not None else [None] * len(self.reals)
        for real, real_labels in zip(self.reals, labels, strict=True):
            self._d_step(self.totals, to_model_range(real), real_labels)
        self._g_step(self.totals)
        if self.G_ema is not None:
            update_ema(self.G_ema, self.G, self.schedules.ema_weight)

    def _fake_labels(self, n: int) -> Tensor | None:
        """Labels for n fakes, uniform over the classes (None for an unconditional net: nothing drawn)."""
        return torch.randint(self.num_classes, (n,), device=self.device) if self.num_classes else None

    def _d_step(self, totals: dict[str, Tensor], real: Tensor, real_labels: Tensor | None = None) -> None:
        objective, d = self.objective, self.D
        with torch.no_grad():  # G in train mode: batch statistics, BN buffers update
            z = torch.randn(self.batch_size_d, self.z_dim, device=self.device)
            fake_labels = self._fake_labels(self.batch_size_d)
            fake = nets.generate(self.G, z, fake_labels)
        both = None if real_labels is None or fake_labels is None else torch.cat([real_labels, fake_labels])
        # one call: SN iterates once per D step
        logits = objective.method.logits(nets.conditioned(d, both), torch.cat([real, fake]))
        real_logits, fake_logits = logits[: len(real)], logits[len(real) :]
        loss_real, loss_fake = objective.loss.d_loss(real_logits, fake_logits)
        loss = loss_real + loss_fake
        d_real, d_fake = nets.conditioned(d, real_labels), nets.conditioned(d, fake_labels)
        for regularizer in objective.regularizers:
            term = regularizer.penalty(d_real, real, real_logits, d_fake, fake, fake_logits)
            if term is not None:
                loss = loss + term
                totals[regularizer.name] += term.detach()
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        totals["loss_d"] += loss.detach()
        totals["loss_d_real"] += loss_real.detach()
        totals["loss_d_fake"] += loss_fake.detach()
        totals["d_real"] += real_logits.detach().mean()
        totals["d_fake"] += fake_logits.detach().mean()

    def _g_step(self, totals: dict[str, Tensor]) -> None:
        self.D.requires_grad_(False)  # G's step needs gradients through D's input, not into D's weights
        try:
            z = torch.randn(self.batch_size_g, self.z_dim, device=self.device)
            labels = self._fake_labels(self.batch_size_g)
            fake = nets.generate(self.G, z, labels)
            loss = self.objective.loss.g_loss(self.objective.method.logits(nets.conditioned(self.D, labels), fake))
            self.opt_g.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_g.step()
        finally:  # a failed step (e.g. a graph capture that raised) must not leave D frozen
            self.D.requires_grad_(True)
        totals["loss_g"] += loss.detach()
