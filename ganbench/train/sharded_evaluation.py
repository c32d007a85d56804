"""In-training evaluation of a distributed run, sharded: every process generates its share of the samples and
extracts their features; rank 0 gathers them in the single-process order, scores them and writes the rows.

The samples are one process's: the same seeded codes and labels in the same batches of `sample_batch` (with
BatchNorm in batch mode, the same samples are normalised together). Of the B batches, process r of W takes the
contiguous batches ⌈r·B/W⌉ … ⌈(r+1)·B/W⌉ − 1, so rank 0 always has one; the shares, concatenated in rank order,
are the single-process sequence, and the scores are the single-process scores up to rounding. Only rank 0 loads the
reference statistics; every process makes the same collective calls, generator by generator.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ganbench.evaluation import Evaluation
from ganbench.recipe import Recipe
from ganbench.store import IN_TRAINING, RunDir


def share(batches: int, rank: int, world: int) -> slice:
    """The contiguous batches of process `rank` among `batches` (the first processes take the larger shares)."""
    return slice(-(-rank * batches // world), -(-(rank + 1) * batches // world))


def gather_shares(features: dict[str, torch.Tensor], rank: int, world: int) -> dict[str, torch.Tensor]:
    """Every process's `features` by name, concatenated in rank order, on rank 0 (on the device of its own); {} on
    the others. Shares may differ in length or be empty: they travel padded to the longest."""
    shapes: list[dict[str, tuple[tuple[int, ...], torch.dtype]]] = [{} for _ in range(world)]
    dist.all_gather_object(shapes, {name: (tuple(value.shape), value.dtype) for name, value in features.items()})
    nccl = dist.get_backend() == "nccl"
    wire = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
    gathered = {}
    for name, (shape, dtype) in sorted(shapes[0].items()):
        lengths = [part[name][0][0] if name in part else 0 for part in shapes]
        padded = torch.zeros(max(lengths), *shape[1:], dtype=dtype, device=wire)
        if name in features:
            padded[: lengths[rank]] = features[name]
        parts = [torch.empty_like(padded) for _ in range(world)] if rank == 0 else None
        dist.gather(padded, parts, dst=0)
        if parts is not None:
            whole = torch.cat([part[:length] for part, length in zip(parts, lengths, strict=True)])
            gathered[name] = whole.to(features[name].device)
    return gathered


class _LocalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """A BatchNorm of any input rank that normalises this process's batch alone."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        pass


def local_batchnorm(generator: nn.Module) -> nn.Module:
    """`generator`, or, when it holds SyncBatchNorms, a copy with plain BatchNorms of the same parameters and
    buffers: a sample batch is normalised by its own statistics, as on one process, with no collective call."""
    if not any(isinstance(module, nn.SyncBatchNorm) for module in generator.modules()):
        return generator
    local = copy.deepcopy(generator)
    for parent in list(local.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.SyncBatchNorm):
                plain = _LocalBatchNorm(
                    child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
                )
                plain.load_state_dict(child.state_dict())
                plain.train(child.training)
                tensors = [*child.parameters(), *child.buffers()]
                setattr(parent, name, plain.to(tensors[0].device) if tensors else plain)
    return local


class ShardedEvaluation(Evaluation):
    """An `Evaluation` whose samples are shared out among the processes; scores on rank 0, {} on the others."""

    def __init__(self, recipe: Any, device: str | torch.device, rank: int, world: int) -> None:
        super().__init__(recipe, device, reference=rank == 0)
        self.rank, self.world = rank, world

    def scores(self, generator: nn.Module, families: list[str], label: str = "") -> dict[str, float]:
        mine = share(self.sample_batches(), self.rank, self.world)
        features = gather_shares(self.features(local_batchnorm(generator), label, mine), self.rank, self.world)
        return self.metrics(features, families) if self.rank == 0 else {}


class ShardedEvaluator:
    """The in-training evaluator of one process of a distributed run (what `TrainingEvaluator` is to one process):
    every process calls it at the same steps with the same generators; rank 0 gets the rows, the others []."""

    def __init__(self, recipe: Recipe, run: RunDir, device: torch.device) -> None:
        self.run = run
        self.rank = dist.get_rank()
        self.evaluation = ShardedEvaluation(recipe, device, self.rank, dist.get_world_size())

    def __call__(self, step: int, generators: dict[str, nn.Module]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for kind, generator in generators.items():
            if self.rank == 0:
                rows += self.evaluation.rows(generator, step=step, checkpoint=IN_TRAINING, generator_kind=kind)
            else:
                self.evaluation.scores(generator, self.evaluation.families)
        return rows
