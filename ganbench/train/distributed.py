"""One run on several processes (torchrun): each trains its pieces of every global batch, rank 0 writes the run.

Every process builds the same trainer from the same seed and gathers the same global batch from the same stream, and
draws the step's random numbers for the whole batch; its pieces are its share (train/split.py), so what a run
computes does not depend on the number of processes: N processes with train.accumulate = k compute what one
process with train.accumulate = N·k computes, up to rounding. After each backward pass the gradients are summed
across processes by one all-reduce of their flattened copy (not DistributedDataParallel's reducer, which would have
to follow GN's double backpropagation); LGAN's max over samples is taken over all processes' pieces; the loss
totals are summed into rank 0's after each step, and a stop (Ctrl-C, SIGTERM) is agreed on so that all stop after
the same step. Rank 0 runs the ordinary lifecycle (lock, run.json, history, checkpoints, samples, evaluation);
the others only train along, write nothing, and resume from the same checkpoint, which holds the same state
whatever the number of processes. The standard in-training evaluation (`TrainingEvaluator`) is sharded across the
processes (train/sharded_evaluation.py) with the single-process result; another evaluator runs on rank 0 alone.

On CUDA the generator's BatchNorms become SyncBatchNorm at 128 px and above (the official CelebA-HQ code's
multi-GPU setting): their statistics are then those of a piece across all processes. Below 128 px, and on the
CPU (gloo has no SyncBatchNorm), each process normalises its own pieces, as per-GPU BatchNorm; the running
statistics are rank 0's. The step runs eagerly: the CUDA-graph path is not used under several processes, and
run.json's step_path says so.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

import torch
import torch.distributed as dist
from torch import nn

from ganbench.data import output_shape
from ganbench.devices import resolve_device
from ganbench.evaluation import TrainingEvaluator
from ganbench.progress import Progress
from ganbench.recipe import Recipe
from ganbench.store import RunDir, RunInfo
from ganbench.train import runinfo
from ganbench.train.fast import StepRunner
from ganbench.train.loop import Evaluator, Trainer
from ganbench.train.sharded_evaluation import ShardedEvaluator
from ganbench.train.split import BatchSplit
from ganbench.train.state import load_newest

SYNC_BATCHNORM_FROM = 128  # image side from which G's BatchNorm is synchronised across processes (on CUDA)
EAGER_REASON = "eager (cuda graph not used with several processes)"


class DistributedSplit(BatchSplit):
    """The pieces of process `rank` of `world`, with the sums across processes over the default process group."""

    def __init__(self, accumulate: int, rank: int, world: int) -> None:
        super().__init__(accumulate)
        self.rank, self.world = rank, world

    def gather(self, values: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(values) for _ in range(self.world)]
        dist.all_gather(parts, values.contiguous())
        return torch.cat(parts)

    def reduce_gradients(self, parameters: Iterable[nn.Parameter]) -> None:
        grads = [p.grad for p in parameters if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.flatten() for g in grads])
        dist.all_reduce(flat)  # each piece's loss is already divided by all processes' pieces: a sum is the mean
        for grad, part in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
            grad.copy_(part.view_as(grad))

    def reduce_totals(self, totals: dict[str, torch.Tensor]) -> None:
        """Rank 0 keeps the running sums over all processes; the others send their step's part and restart at 0."""
        names = sorted(totals)
        flat = torch.stack([totals[name] for name in names])
        dist.reduce(flat, dst=0)
        for name, value in zip(names, flat, strict=True):
            if self.rank == 0:
                totals[name].copy_(value)
            else:
                totals[name].zero_()

    def agree(self, stop: bool) -> bool:
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
        flag = torch.tensor([1.0 if stop else 0.0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


def environment_rank() -> tuple[int, int, int]:
    """(rank, world size, local rank) as torchrun sets them; (0, 1, 0) outside torchrun."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


class DistributedTrainer(Trainer):
    """The trainer of one process of a distributed run; `run()` on rank 0, `follow()` on the others."""

    def __init__(
        self,
        recipe: Recipe,
        run: RunDir,
        progress: Progress | None = None,
        evaluator_factory: Callable[[Recipe, RunDir, torch.device], Evaluator] | None = None,
    ) -> None:
        if evaluator_factory is TrainingEvaluator:  # the standard evaluation: every process takes its share
            evaluator_factory = ShardedEvaluator
        super().__init__(recipe, run, progress, evaluator_factory)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        if self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(self.device)

    def _build(self) -> None:
        super()._build()
        self.split = DistributedSplit(self.recipe.train.accumulate, self.rank, self.world)
        if self.device.type == "cuda" and output_shape(self.recipe.data)[-1] >= SYNC_BATCHNORM_FROM:
            self.G = nn.SyncBatchNorm.convert_sync_batchnorm(self.G)  # the same parameters: Adam keeps them
        self.runner = StepRunner(self._step, self.device, graph=False)
        self.runner.path = EAGER_REASON

    def _loop(self, evaluator: Evaluator | None) -> None:
        self.run_dir.update_run(world_size=self.world)
        self._share_random_state()
        super()._loop(evaluator)

    def _share_random_state(self) -> None:
        """Every process continues from rank 0's generators (a checkpoint holds the GPU states of rank 0's machine)."""
        states = [torch.get_rng_state()]
        if self.device.type == "cuda":
            states.append(torch.cuda.get_rng_state(self.device))
        for index, state in enumerate(states):
            moved = state.to(self.device)
            dist.broadcast(moved, src=0)
            if index == 0:
                torch.set_rng_state(moved.cpu())
            else:
                torch.cuda.set_rng_state(moved.cpu(), self.device)

    def follow(self) -> None:
        """Train along with rank 0 without writing anything: the same steps, the same collective calls."""
        existing = runinfo.check_run_dir(self.run_dir, self.recipe)
        if existing is not None and existing.get("status") == "finished":
            return
        self._build()
        self.state = load_newest(self, self.stream, self.run_dir, self.device)
        for total in self.totals.values():  # rank 0 holds the sums since the last log line
            total.zero_()
        evaluator = None
        if self.recipe.eval.every > 0 and self.evaluator_factory is ShardedEvaluator:
            evaluator = ShardedEvaluator(self.recipe, self.run_dir, self.device)
        self._share_random_state()
        t = self.recipe.train
        self.G.train()
        self.D.train()
        with self.stop:
            while self.state.step < t.steps:
                self.schedules.set(self.state.step)
                self.batches.gather()
                self.runner()
                self.split.reduce_totals(self.totals)
                self.state.step += 1
                if evaluator is not None and self._evaluates_at(self.state.step):  # where rank 0 evaluates
                    evaluator(self.state.step, self._generators())
                if self.split.agree(self.stop.requested):
                    raise KeyboardInterrupt


def train_distributed(
    recipe: Recipe,
    run: RunDir,
    progress: Progress | None = None,
    evaluator_factory: Callable[[Recipe, RunDir, torch.device], Evaluator] | None = None,
) -> RunInfo | None:
    """Train as one process of a torchrun group (gloo on the CPU, NCCL on CUDA); rank 0 returns run.json."""
    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group("nccl" if resolve_device(recipe.train.device).type == "cuda" else "gloo")
    try:
        trainer = DistributedTrainer(recipe, run, progress if dist.get_rank() == 0 else None, evaluator_factory)
        info = None
        if trainer.rank == 0:
            info = trainer.run()
        else:
            trainer.follow()
        # Leave together: a process tearing its group down while another still finishes its last step's work got
        # the follower aborted ("terminate called without an active exception") in about half the CPU runs
        dist.barrier()
        return info
    finally:
        if owned:
            dist.destroy_process_group()
