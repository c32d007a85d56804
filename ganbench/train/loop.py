"""The run lifecycle: one recipe in, one run directory out, resumable exactly from its newest checkpoint.

Builds the step (train/step.py) and runs it (train/fast.py) step after step, scheduling logging, evaluation, sample
sheets and checkpoints; holds the run directory's lock, stops cleanly on Ctrl-C or SIGTERM, and resumes.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from ganbench import data
from ganbench.devices import resolve_device
from ganbench.errors import Diverged
from ganbench.progress import NullProgress, Progress
from ganbench.recipe import Recipe
from ganbench.selection import rank, select_best, selected_generator
from ganbench.store import RunDir, RunInfo
from ganbench.train import checkpoint, runinfo, tensorboard_events
from ganbench.train.fast import StepRunner
from ganbench.train.logs import History, LogQueue, gradient_probes, window_means
from ganbench.train.samples import save_sheets, sheet_labels
from ganbench.train.signals import StopRequests
from ganbench.train.state import TrainState, restore, save_checkpoint, snapshot
from ganbench.train.step import TrainingStep
from ganbench.train.stream import BatchStream, RealBatches, class_labels
from ganbench.train.tensorboard_events import Events, open_events

__all__ = ["Evaluator", "Trainer", "train"]

HISTORY_FLUSH_SECONDS = 30.0
NUM_FIXED_Z = {"image": 64, "points": 2000}  # an 8x8 grid; a scatter plot
Evaluator = Callable[[int, dict[str, nn.Module]], list[dict[str, Any]]]  # (step, generators) -> metric rows


class Trainer(TrainingStep):
    """Trains one recipe into one run directory; `run()` resumes where the directory left off."""

    def __init__(
        self,
        recipe: Recipe,
        run: RunDir,
        progress: Progress | None = None,
        evaluator_factory: Callable[[Recipe, RunDir, torch.device], Evaluator] | None = None,
    ) -> None:
        self.recipe, self.run_dir = recipe, run
        self.progress = progress or NullProgress()
        self.device = resolve_device(recipe.train.device)
        self.evaluator_factory = evaluator_factory
        self.stop = StopRequests()  # Ctrl-C and SIGTERM finish the step, save it and stop
        self.events = Events()  # TensorBoard's copy of the rows and sheets, opened by the run (rank 0 only)

    def _build(self) -> None:
        recipe, device, t = self.recipe, self.device, self.recipe.train
        random.seed(recipe.seed)
        np.random.seed(recipe.seed)
        torch.manual_seed(recipe.seed)
        cuda = device.type == "cuda"
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = t.tf32
            torch.backends.cudnn.allow_tf32 = t.tf32
            torch.backends.cudnn.benchmark = t.cudnn_benchmark
        # On CUDA the optimizers are capturable and the schedules live in device tensors whether or not the step is
        # captured, so turning train.cuda_graph off runs the very same kernels, one launch at a time.
        self.dataset = data.load_dataset(recipe.data)
        self.images = self.dataset.tensor.to(device) if cuda and t.data_on_device else self.dataset.tensor
        self.labels = class_labels(self.dataset, recipe.model.num_classes, self.images.device)
        self.stream = BatchStream(len(self.images), t.batch_size_d, recipe.seed, self.images.device)
        self.batches = RealBatches(self.images, t.n_dis, self.stream, recipe.data.hflip, device, self.labels)
        self.reals, self.real_labels = self.batches.buffer, self.batches.label_buffer
        self._build_step(recipe, device)
        fixed = torch.Generator().manual_seed(recipe.seed + 2**31)
        # a class-conditional G's sheets: one row of 8 per class (fixed z, fixed labels)
        self.fixed_labels = sheet_labels(recipe.model.num_classes, device)
        count = NUM_FIXED_Z[self.dataset.kind] if self.fixed_labels is None else len(self.fixed_labels)
        self.fixed_z = torch.randn(count, recipe.model.z_dim, generator=fixed).to(device)
        self.runner = StepRunner(self._step, device, t.cuda_graph)
        self.state = TrainState()

    def _snapshot(self) -> dict[str, Any]:
        return snapshot(self, self.stream, self.state, self.recipe.hash())

    def run(self) -> RunInfo:
        """Train to `train.steps`, resuming if the run directory has a checkpoint; returns the final run.json.

        One writer per run directory: the run holds its lock (RunDir.lock) from before its first write to the end.
        """
        if self.recipe.train.tensorboard:
            tensorboard_events.require()  # before anything is read or written
        existing = runinfo.check_run_dir(self.run_dir, self.recipe)  # a mismatched recipe: refused before the data
        if existing is not None and existing.get("status") == "finished":
            return existing
        self._build()  # loads the data: a missing dataset fails here, before the run directory is made
        evaluator = None
        if self.recipe.eval.every > 0 and self.evaluator_factory is not None:
            evaluator = self.evaluator_factory(self.recipe, self.run_dir, self.device)
        # the stop handler goes in before the lock, whose pid line tells `ganbench compare` and its tests that the
        # trainer runs: a SIGTERM from then on is a graceful stop, never the default death with no record
        with self.stop, self.run_dir.lock("ganbench train"):
            existing = runinfo.check_run_dir(self.run_dir, self.recipe)  # again, now that no other writer can change it
            if existing is not None and existing.get("status") == "finished":
                return existing
            return self._run_locked(existing, evaluator)

    def _run_locked(self, existing: RunInfo | None, evaluator: Evaluator | None) -> RunInfo:
        run = self.run_dir
        run.remove_stale_temps()  # a killed predecessor's half-written files
        if existing is None:
            run.write_recipe(self.recipe)
            run.write_run(runinfo.new_run_info(self.recipe, self.dataset, self.device))
        else:
            runinfo.check_dataset(run, existing, self.dataset, self.recipe)
            changed = runinfo.recipe_changes(run.read_recipe(), self.recipe) if run.recipe_path.is_file() else []
            self.state = restore(self, self.stream, run, self.device)
            if changed:  # evaluation settings taken over by the resumed run
                run.write_recipe(self.recipe)
            run.update_run(**runinfo.resumed_fields(self.recipe, self.device, existing, changed))
        try:
            # opened once the history is cut back to the checkpoint: it drops its own points past it the same way
            self.events = open_events(run, self.recipe.train.tensorboard, self.state.step, self.G_ema is not None)
            self._loop(evaluator)
        except KeyboardInterrupt:
            self._record_end(status="interrupted")
            raise
        except Diverged as err:
            self._record_end(status="diverged", error=str(err))
            raise
        except BaseException as err:
            self._record_end(status="failed", error=f"{type(err).__name__}: {err}".splitlines()[0][:500])
            raise
        finally:
            self.events.close()
        return run.update_run(
            status="finished", step=self.state.step, best=self.state.best, error=None, step_path=self.runner.path
        )

    def _record_end(self, **fields: Any) -> None:
        """Write how the run ended; if even that fails (a full disk), the original error is the one raised."""
        with contextlib.suppress(Exception):
            self.run_dir.update_run(step=self.state.step, step_path=self.runner.path, **fields)

    def _loop(self, evaluator: Evaluator | None) -> None:
        t, run = self.recipe.train, self.run_dir
        history = History(run, self.state.wall_time, HISTORY_FLUSH_SECONDS)
        log = LogQueue(self.device, clock=time.perf_counter)
        self.progress.start("train", t.steps, completed=self.state.step)
        self.G.train()
        self.D.train()

        def drain(wait: bool) -> None:
            """Finished log lines into the history; a non-finite loss stops the run as diverged."""
            rows = history.take(log, wait)
            self.events.history(rows)
            for row in rows:
                self.progress.advance(0, loss_d=row["loss_d"], loss_g=row["loss_g"])
            self.state.wall_time = history.wall_time

        while self.state.step < t.steps:
            lr_d, lr_g = self.schedules.set(self.state.step)
            self.batches.gather()
            self.runner()
            self.split.reduce_totals(self.totals)
            self.state.step += 1
            step = self.state.step
            self.state.window_steps += 1
            log.steps += 1  # the log clock's count (it restarts after evaluations); the window's is checkpointed
            self.progress.advance(1)
            last = step == t.steps
            if step % t.log_every == 0 or last:
                means = window_means(self.totals, self.state.window_steps, t.n_dis)
                probes = gradient_probes(
                    self.D, self.G, self.images, self.fixed_z, t.batch_size_d, self.labels, self.fixed_labels
                )
                log.push(step, {**means, **probes}, {"lr_d": lr_d, "lr_g": lr_g}, t.batch_size_d * t.n_dis)
                for total in self.totals.values():
                    total.zero_()
                self.state.window_steps = 0
                drain(wait=False)
                history.write(only_if_due=True)
            periodic = False
            if evaluator is not None and self._evaluates_at(step):
                drain(wait=True)  # a diverged run is not evaluated
                self._evaluate(evaluator, step)
                periodic = True
            if t.sample_every and (step % t.sample_every == 0 or last):
                sheet = (self.fixed_z, self.dataset, self.recipe.eval.bn_mode, self.fixed_labels)
                save_sheets(run, step, self.G, self.G_ema, *sheet)
                self.events.sheets(step)
                periodic = True
            if step % t.checkpoint_every == 0 or last:
                drain(wait=True)
                # losses since the last log line are unchecked: check them before saving
                if not all(torch.isfinite(total) for total in self.totals.values()):
                    raise Diverged(f"{run.root}: a loss became NaN or infinite by step {step}")
                history.write()
                self._save_checkpoint(periodic=True)
                run.update_run(step=step, best=self.state.best, step_path=self.runner.path)
                periodic = True
            if periodic:
                log.restart_clock()  # evaluation, sheets and checkpoints are not training time
            if self.split.agree(self.stop.requested):
                drain(wait=True)
                history.write()
                self._save_checkpoint(periodic=False)
                raise KeyboardInterrupt
        self.progress.finish()  # the last step is a checkpoint step: its history is drained and written

    def _evaluates_at(self, step: int) -> bool:
        """Whether the in-training evaluation runs after `step`: every eval.every steps and after the last."""
        return step % self.recipe.eval.every == 0 or step == self.recipe.train.steps

    def _generators(self) -> dict[str, nn.Module]:
        """What an evaluation scores: the raw G, and EMA-G where the recipe keeps one."""
        return {"raw": self.G} if self.G_ema is None else {"raw": self.G, "ema": self.G_ema}

    def _evaluate(self, evaluator: Evaluator, step: int) -> None:
        """Score the generators, and save best.pt when the selected one beats its best so far (ganbench.selection)."""
        rows = evaluator(step, self._generators())
        self.run_dir.append_metrics(rows)
        self.events.metrics(rows)
        self.G.train()
        select = selected_generator(self.recipe.eval.select, has_ema=self.G_ema is not None)
        choice, best = select_best(rows, select), self.state.best
        if choice is None:
            return
        if not best or choice.rank < rank(best["metric"], best["score"]):
            self.state.best = {"score": choice.score, "step": step, "metric": choice.metric, "generator": select}
            checkpoint.save(self.run_dir.checkpoint_path("best"), self._snapshot())
        self.progress.advance(0, **{row["metric"]: row["value"] for row in rows if row["generator"] == select})

    def _save_checkpoint(self, periodic: bool) -> None:
        save_checkpoint(self.run_dir, self._snapshot(), self, periodic, self.recipe.train.keep_checkpoints)


def train(
    recipe: Recipe,
    run: RunDir,
    progress: Progress | None = None,
    evaluator_factory: Callable[[Recipe, RunDir, torch.device], Evaluator] | None = None,
) -> RunInfo:
    return Trainer(recipe, run, progress, evaluator_factory).run()
