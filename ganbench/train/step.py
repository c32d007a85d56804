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
from ganbench.methods.consistency import augment_draws, consistency_penalty
from ganbench.nets.spectral import once_per_batch
from ganbench.recipe import LossConfig, MethodConfig, Recipe
from ganbench.store import LOSS_COLUMNS
from ganbench.train.ema import make_ema, update_ema
from ganbench.train.fast import make_adam
from ganbench.train.schedule import Schedules
from ganbench.train.split import BatchSplit

Tensor = torch.Tensor


class Regularizer(Protocol):
    """A term added to D's loss; `name` is the loss total (history column) it is summed into. `d_real` and `d_fake`
    are D scoring under the reals' and the fakes' labels (both D itself for an unconditional net). `draws` returns
    the term's random numbers for a whole batch of reals (and as many fakes) like `real`, each with the batch as
    its first dimension; `penalty` takes them sliced to its samples. `is_max`: the term is a max over samples, and
    `peak` is its largest per-sample value (no graph), which decides the piece a batch run in pieces adds it in."""

    name: str

    @property
    def is_max(self) -> bool: ...

    def draws(self, real: Tensor) -> tuple[Tensor, ...]: ...

    def penalty(
        self,
        d_real: nn.Module,
        real: Tensor,
        real_logits: Tensor,
        d_fake: nn.Module,
        fake: Tensor,
        fake_logits: Tensor,
        draws: tuple[Tensor, ...] = (),
    ) -> Tensor | None: ...

    def peak(self, d_real: nn.Module, real: Tensor, fake: Tensor, draws: tuple[Tensor, ...]) -> Tensor: ...


@dataclass
class MethodPenalty:
    """The method's own penalty (WGAN-GP's GP, LGAN's max-GP on interpolates; None for the other methods). A
    class-conditional D scores the interpolates under the reals' labels."""

    method: methods.Method
    name: str = "penalty"

    @property
    def is_max(self) -> bool:
        return self.method.penalty_is_max

    def draws(self, real: Tensor) -> tuple[Tensor, ...]:
        return self.method.penalty_draws(real)

    def penalty(
        self,
        d_real: nn.Module,
        real: Tensor,
        real_logits: Tensor,
        d_fake: nn.Module,
        fake: Tensor,
        fake_logits: Tensor,
        draws: tuple[Tensor, ...] = (),
    ) -> Tensor | None:
        return self.method.penalty(d_real, real, fake, draws)

    def peak(self, d_real: nn.Module, real: Tensor, fake: Tensor, draws: tuple[Tensor, ...]) -> Tensor:
        return self.method.penalty_peak(d_real, real, fake, draws)


@dataclass
class Consistency:
    """CR on the reals and, with method.bcr, bCR on the fakes: λ·(term_real [+ term_fake]) under one λ and one
    total, compared with the D step's own logits (graph kept: no second forward of the untransformed batch)."""

    method: methods.Method
    cfg: MethodConfig
    name: str = "cr"
    is_max: bool = False

    def draws(self, real: Tensor) -> tuple[Tensor, ...]:
        one = augment_draws(real, self.cfg.cr_flip)
        return (*one, *augment_draws(real, self.cfg.cr_flip)) if self.cfg.bcr else one

    def penalty(
        self,
        d_real: nn.Module,
        real: Tensor,
        real_logits: Tensor,
        d_fake: nn.Module,
        fake: Tensor,
        fake_logits: Tensor,
        draws: tuple[Tensor, ...] = (),
    ) -> Tensor | None:
        half = len(draws) // 2 if self.cfg.bcr else len(draws)
        return consistency_penalty(
            self.method, d_real, real, real_logits, fake, fake_logits, self.cfg, d_fake, (draws[:half], draws[half:])
        )

    def peak(self, d_real: nn.Module, real: Tensor, fake: Tensor, draws: tuple[Tensor, ...]) -> Tensor:
        raise NotImplementedError("CR is a mean over samples")


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
    split: BatchSplit  # the pieces a batch runs in: train.accumulate here (and the processes, under DDP)
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
        self.split = BatchSplit(t.accumulate)
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
        """One D step on the global batch `real`, in this process's pieces (train/split.py); one piece = one batch."""
        objective, d, split, n = self.objective, self.D, self.split, len(real)
        z = torch.randn(n, self.z_dim, device=self.device)
        fake_labels = self._fake_labels(n)
        draws = [regularizer.draws(real) for regularizer in objective.regularizers]
        pieces, whole = split.pieces(n), split.count == 1
        with torch.no_grad(), once_per_batch(self.G) as next_piece:  # G in train mode: batch statistics per piece
            fakes = [(next_piece(), nets.generate(self.G, z[s], _part(fake_labels, s)))[1] for s in pieces]
        owners = None if whole else self._max_owners(real, real_labels, fakes, draws)
        self.opt_d.zero_grad(set_to_none=True)
        with once_per_batch(d) as next_piece:  # SN: one power iteration per forward site, as for one batch
            for j, (s, fake) in enumerate(zip(pieces, fakes, strict=True)):
                next_piece()
                part, labels, fake_part_labels = real[s], _part(real_labels, s), _part(fake_labels, s)
                both = None if labels is None or fake_part_labels is None else torch.cat([labels, fake_part_labels])
                # one call: SN iterates once per D step
                logits = objective.method.logits(nets.conditioned(d, both), torch.cat([part, fake]))
                real_logits, fake_logits = logits[: len(part)], logits[len(part) :]
                loss_real, loss_fake = objective.loss.d_loss(real_logits, fake_logits)
                loss, peak = loss_real + loss_fake, torch.zeros((), device=self.device)
                d_real, d_fake = nets.conditioned(d, labels), nets.conditioned(d, fake_part_labels)
                for regularizer, regularizer_draws in zip(objective.regularizers, draws, strict=True):
                    part_draws = tuple(t[s] for t in regularizer_draws)
                    term = regularizer.penalty(d_real, part, real_logits, d_fake, fake, fake_logits, part_draws)
                    if term is None:
                        continue
                    if whole:
                        loss = loss + term
                        totals[regularizer.name] += term.detach()
                    elif regularizer.is_max and owners is not None:  # in the piece holding the batch's max only
                        peak = peak + term * owners[j]
                        totals[regularizer.name] += (term * owners[j]).detach()
                    else:
                        loss = loss + term
                        totals[regularizer.name] += term.detach() / split.count
                share = 1.0 / split.count  # means over a piece, summed over P pieces: the mean over the batch
                if not whole:
                    loss, loss_real, loss_fake = loss * share + peak, loss_real * share, loss_fake * share
                loss.backward()
                totals["loss_d"] += loss.detach()
                totals["loss_d_real"] += loss_real.detach()
                totals["loss_d_fake"] += loss_fake.detach()
                totals["d_real"] += real_logits.detach().mean() if whole else real_logits.detach().mean() * share
                totals["d_fake"] += fake_logits.detach().mean() if whole else fake_logits.detach().mean() * share
        split.reduce_gradients(d.parameters())
        self.opt_d.step()

    def _max_owners(
        self, real: Tensor, real_labels: Tensor | None, fakes: list[Tensor], draws: list[tuple[Tensor, ...]]
    ) -> Tensor | None:
        """For a max-over-samples term: 1 for the piece (of all processes) holding the batch's largest per-sample
        value, 0 for the others. A first pass over the pieces without a graph; D in eval mode, so that it does not
        move SN's power iteration (an SN D would score it with the step's starting u and v)."""
        regularizers = [(r, dr) for r, dr in zip(self.objective.regularizers, draws, strict=True) if r.is_max]
        if not regularizers:
            return None
        (regularizer, regularizer_draws), d = regularizers[0], self.D
        d.train(False)
        try:
            peaks = [
                regularizer.peak(
                    nets.conditioned(d, _part(real_labels, s)), real[s], fake, tuple(t[s] for t in regularizer_draws)
                )
                for s, fake in zip(self.split.pieces(len(real)), fakes, strict=True)
            ]
        finally:
            d.train(True)
        return self.split.max_owner(torch.stack(peaks))

    def _g_step(self, totals: dict[str, Tensor]) -> None:
        """The G step on batch_size_g fakes, in this process's pieces."""
        split, n = self.split, self.batch_size_g
        self.D.requires_grad_(False)  # G's step needs gradients through D's input, not into D's weights
        try:
            z = torch.randn(n, self.z_dim, device=self.device)
            labels = self._fake_labels(n)
            self.opt_g.zero_grad(set_to_none=True)
            with once_per_batch(self.G, self.D) as next_piece:
                for s in split.pieces(n):
                    next_piece()
                    fake = nets.generate(self.G, z[s], _part(labels, s))
                    logits = self.objective.method.logits(nets.conditioned(self.D, _part(labels, s)), fake)
                    loss = self.objective.loss.g_loss(logits)
                    if split.count > 1:
                        loss = loss / split.count
                    loss.backward()
                    totals["loss_g"] += loss.detach()
            split.reduce_gradients(self.G.parameters())
            self.opt_g.step()
        finally:  # a failed step (e.g. a graph capture that raised) must not leave D frozen
            self.D.requires_grad_(True)


def _part(labels: Tensor | None, s: slice) -> Tensor | None:
    return None if labels is None else labels[s]
