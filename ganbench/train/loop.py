"""The training loop: one recipe in, one run directory out, resumable exactly from its newest checkpoint.

The loop knows no method by name: the method turns D's raw outputs into the logits the loss sees and may add a
penalty; consistency regularization is one more term built on the same method.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import platform
import random
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ganbench import __version__, data, losses, methods, nets
from ganbench.errors import Diverged, RecipeError, RunDirError
from ganbench.methods.consistency import consistency_penalty
from ganbench.progress import NullProgress, Progress
from ganbench.recipe import NON_SEMANTIC_KEYS, Recipe
from ganbench.store import RunDir, write_parquet
from ganbench.train import checkpoint
from ganbench.train.ema import make_ema, update_ema
from ganbench.train.fast import StepRunner, load_portable_state, make_adam, portable_state, set_lr
from ganbench.train.samples import generate, save_samples
from ganbench.train.schedule import lr_factor

HISTORY_FLUSH_SECONDS = 30.0
IN_TRAINING = "in-training"  # the `checkpoint` of metric rows written by the training loop
NUM_FIXED_Z = {"image": 64, "points": 2000}  # an 8x8 grid; a scatter plot


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RecipeError(f"train.device: {name} asked for but CUDA is not available here; use auto or cpu")
    device = torch.device(name)
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise RecipeError(
            f"train.device: {name} asked for but this machine has {torch.cuda.device_count()} GPU(s); "
            f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}"
        )
    return device


class BatchStream:
    """Shuffled batches of indices with a horizontal-flip flag each, epoch by epoch; its position is checkpointed.

    Epoch e draws, from its own host generator seeded by (seed, e), the order of the samples and then one flip flag
    per position: the same on every device, independent of the training RNG, and reproduced exactly on resume. The
    epoch's order and flags are moved to `device` once; a batch is then a slice of them there, with no copy from the
    host per step. A batch that would run past the end is dropped, as DataLoader's drop_last.
    """

    def __init__(self, size: int, batch_size: int, seed: int, device: torch.device | str = "cpu") -> None:
        if batch_size > size:
            raise RecipeError(f"train.batch_size_d: {batch_size} is larger than the dataset ({size} samples)")
        self.size, self.batch_size, self.seed, self.device = size, batch_size, seed, torch.device(device)
        self.epoch, self.position = 0, 0
        self._order, self._flips = self._draw()

    def _draw(self) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator)
        flips = torch.rand(self.size, generator=generator) < 0.5
        return order.to(self.device), flips.to(self.device)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(indices, flip flags) of the next batch."""
        if self.position + self.batch_size > self.size:
            self.epoch, self.position = self.epoch + 1, 0
            self._order, self._flips = self._draw()
        batch = slice(self.position, self.position + self.batch_size)
        self.position += self.batch_size
        return self._order[batch], self._flips[batch]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = state["epoch"], state["position"]
        self._order, self._flips = self._draw()


@dataclass
class _Pending:
    step: int
    names: list[str]
    values: torch.Tensor  # on the host (pinned on CUDA), filled by an asynchronous copy
    start: Any  # CUDA event or perf_counter value
    end: Any
    steps: int
    fields: dict[str, float]
    images_per_step: int


class LogQueue:
    """Log lines whose values are still on the device: copied to the host without waiting, read once copied.

    The interval clock is a pair of CUDA events on the GPU (the host runs ahead of the GPU, so host time between two
    log lines would not time the steps) and perf_counter on the CPU. An interval covers the training steps and the
    log line's own probes; evaluation, sample sheets and checkpoints restart the clock.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.steps = 0  # G steps since the clock last started
        self._pending: deque[_Pending] = deque()
        self._start = self._mark()

    def _mark(self) -> Any:
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def push(self, step: int, values: dict[str, torch.Tensor], fields: dict[str, float], images_per_step: int) -> None:
        """Queue a line of device scalars; the copy to the host is started, not waited for."""
        stacked = torch.stack([value.detach().float().reshape(()) for value in values.values()])
        if self.cuda:
            host = torch.empty(stacked.shape, dtype=torch.float32, pin_memory=True)
            host.copy_(stacked, non_blocking=True)
        else:
            host = stacked
        end = self._mark()  # recorded after the copy: when it has happened, the copy has too
        self._pending.append(_Pending(step, list(values), host, self._start, end, self.steps, fields, images_per_step))
        self._start, self.steps = end, 0

    def restart_clock(self) -> None:
        """Start the interval again, if no step is in it yet (after work that is not training)."""
        if self.steps == 0:
            self._start = self._mark()

    def completed(self, wait: bool) -> list[dict[str, Any]]:
        """The queued lines whose copies are done (all of them when `wait`), oldest first, as history rows."""
        rows = []
        while self._pending:
            line = self._pending[0]
            if self.cuda:
                if not wait and not line.end.query():
                    break
                line.end.synchronize()
                seconds = line.start.elapsed_time(line.end) / 1000.0
            else:
                seconds = line.end - line.start
            self._pending.popleft()
            seconds = max(seconds, 1e-9)
            row: dict[str, Any] = {"step": line.step, **dict(zip(line.names, line.values.tolist(), strict=True))}
            row.update(line.fields)
            row["g_steps_per_s"] = line.steps / seconds
            row["images_per_s"] = line.steps * line.images_per_step / seconds
            row["interval_s"] = seconds
            rows.append(row)
        return rows


def per_sample_grad_norm(d: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw D outputs and ‖∇ₓD(x)‖ per sample, for logging (no graph kept)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        out = d(x).flatten()
        (grad,) = torch.autograd.grad(out.sum(), x)
    return out.detach(), grad.flatten(1).norm(dim=1)


@dataclass
class TrainState:
    """What the loop carries from step to step besides the modules and optimizers."""

    step: int = 0
    wall_time: float = 0.0
    best: dict[str, Any] = field(default_factory=dict)  # {"score", "step", "metric", "generator"}


def environment() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ganbench": __version__,
        "host": socket.gethostname(),
        "cuda": torch.version.cuda,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def training_hash(recipe: Recipe) -> str:
    """A hash of what training computes: the recipe hash without the [eval] table (evaluation settings may change
    between a run and its resumption; the metric rows carry their own protocol)."""
    tree = recipe.to_dict()
    tree.pop("eval")
    for section, key in NON_SEMANTIC_KEYS:
        if section in tree:
            tree[section].pop(key, None)
    canonical = json.dumps(tree, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def recipe_changes(old: Recipe, new: Recipe) -> list[str]:
    """`key: old -> new` for every semantic key that differs between two recipes."""
    flat_old, flat_new = _flatten(old.to_dict()), _flatten(new.to_dict())
    skip = {f"{section}.{key}" for section, key in NON_SEMANTIC_KEYS}
    return [
        f"{key}: {flat_old.get(key)!r} -> {flat_new.get(key)!r}"
        for key in sorted(set(flat_old) | set(flat_new))
        if key not in skip and flat_old.get(key) != flat_new.get(key)
    ]


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def selection_score(rows: list[dict[str, Any]], generator_kind: str) -> tuple[float, str] | None:
    """Lower is better: FID for images, else minus (modes covered, % high quality) for 2-D sets."""
    values = {row["metric"]: row["value"] for row in rows if row["generator"] == generator_kind}
    if "fid" in values:
        return float(values["fid"]), "fid"
    if "modes_covered" in values:
        return -(1000.0 * values["modes_covered"] + values.get("hq_percent", 0.0)), "modes_covered"
    return None


class Trainer:
    """Trains one recipe into one run directory; `run()` resumes where the directory left off."""

    def __init__(
        self,
        recipe: Recipe,
        run: RunDir,
        progress: Progress | None = None,
        evaluator_factory: Callable[[Recipe, RunDir, torch.device], Any] | None = None,
    ) -> None:
        self.recipe, self.run_dir = recipe, run
        self.progress = progress or NullProgress()
        self.device = resolve_device(recipe.train.device)
        self.evaluator_factory = evaluator_factory

    # set-up

    def _check_run_dir(self) -> dict[str, Any] | None:
        """The existing run.json when resuming; refuses a directory whose training recipe differs.

        Only keys that change what training computes may block a resume (training_hash: the recipe without its
        [eval] table and the keys that choose files, devices or speed switches); a changed [eval] table is taken
        over by the resumed run and recorded in run.json.
        """
        run = self.run_dir
        if run.root.exists() and not run.root.is_dir():
            raise RunDirError(f"{run.root}: is a file, not a folder; give another --run-dir")
        if run.exists():
            info = run.read_run()
            if info.get("status") == "finished" and info.get("recipe_hash") == self.recipe.hash():
                return info
            theirs = info.get("training_hash")
            ours = training_hash(self.recipe) if theirs is not None else self.recipe.hash()
            if (theirs if theirs is not None else info.get("recipe_hash")) != ours:
                raise RunDirError(
                    f"{run.root}: holds a run of a different recipe (hash {info.get('recipe_hash')}, this recipe "
                    f"{self.recipe.hash()}); give another --run-dir, or diff {run.recipe_path} against your recipe"
                )
            return info
        if run.root.exists() and any(path != run.lock_path for path in run.root.iterdir()):
            raise RunDirError(f"{run.root}: exists, is not empty and is not a run directory; give another --run-dir")
        return None

    def _check_dataset(self, info: dict[str, Any]) -> None:
        """A resumed run must see the data it started with: the same content hash, wherever data.root points."""
        saved = info.get("dataset") or {}
        theirs, ours = saved.get("content_hash"), self.dataset.content_hash
        if theirs is not None and theirs != ours:
            raise RunDirError(
                f"{self.run_dir.root}: was trained on {saved.get('name')} {saved.get('split')} with content hash "
                f"{theirs} ({saved.get('source')}), but data.root {self.recipe.data.root!r} now gives hash {ours} "
                f"({self.dataset.source}); point data.root at the original data or start a new --run-dir"
            )

    def _build(self) -> None:
        recipe, device = self.recipe, self.device
        random.seed(recipe.seed)
        np.random.seed(recipe.seed)
        torch.manual_seed(recipe.seed)
        t = recipe.train
        cuda = device.type == "cuda"
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = t.tf32
            torch.backends.cudnn.allow_tf32 = t.tf32
            torch.backends.cudnn.benchmark = t.cudnn_benchmark
        # On CUDA the optimizers are capturable and the schedules live in device tensors whether or not the step is
        # captured, so turning train.cuda_graph off runs the very same kernels, one launch at a time.

        dataset = data.load_dataset(recipe.data)
        self.dataset = dataset
        on_device = cuda and t.data_on_device
        self.images = dataset.tensor.to(device) if on_device else dataset.tensor
        self.stream = BatchStream(len(self.images), t.batch_size_d, recipe.seed, self.images.device)
        # The n_dis real batches of one step, gathered before the step runs: the step reads them by address.
        self.reals = torch.empty((t.n_dis, t.batch_size_d, *self.images.shape[1:]), dtype=self.images.dtype)
        self.reals = self.reals.to(device)
        self._staging = None if on_device or not cuda else torch.empty_like(self.reals, device="cpu").pin_memory()

        generator, discriminator = nets.build_nets(recipe.model, data.output_shape(recipe.data))
        self.method = methods.build_method(recipe.method)
        self.G = generator.to(device)
        self.D = self.method.prepare(discriminator).to(device)
        self.loss = losses.build_loss(recipe.loss)
        betas, fused = (t.beta1, t.beta2), cuda and t.fused_adam
        self.opt_g = make_adam(self.G.parameters(), t.lr_g, betas, device, fused)
        self.opt_d = make_adam(self.D.parameters(), t.lr_d, betas, device, fused)
        self.G_ema = make_ema(self.G) if t.ema_decay > 0 else None
        # EMA weight 1 − decay (1 = copy G, before ema_start), a device tensor on CUDA
        self.ema_weight: float | torch.Tensor = torch.ones((), device=device) if cuda else 1.0
        self._schedule: tuple[float, float, float] | None = None
        fixed = torch.Generator().manual_seed(recipe.seed + 2**31)
        self.fixed_z = torch.randn(NUM_FIXED_Z[dataset.kind], recipe.model.z_dim, generator=fixed).to(device)
        names = ("loss_d", "loss_d_real", "loss_d_fake", "penalty", "cr", "d_real", "d_fake", "loss_g")
        self.totals = {name: torch.zeros((), device=device) for name in names}
        self.runner = StepRunner(self._step, device, t.cuda_graph)
        self.state = TrainState()
        self.log_window_steps = 0  # G steps summed in self.totals since the last log line

    def _restore(self) -> None:
        """Load the newest valid checkpoint (none: start from step 0) and make history and metrics hold exactly
        the rows up to its step: rows written after it are recomputed by this run, never duplicated."""
        saved = checkpoint.newest_valid(self.run_dir, map_location=self.device)
        if saved is not None:
            self.G.load_state_dict(saved["G"])
            self.D.load_state_dict(saved["D"])
            if self.G_ema is not None:
                self.G_ema.load_state_dict(saved["G_ema"])
            load_portable_state(self.opt_g, saved["opt_G"])
            load_portable_state(self.opt_d, saved["opt_D"])
            self.stream.load_state_dict(saved["data"])
            checkpoint.set_rng_state(saved["rng"])
            self.state = TrainState(step=saved["step"], wall_time=saved["wall_time"], best=saved.get("best", {}))
            window = saved.get("log_window")
            if window is not None:  # the losses summed since the last log line, so that line comes out exact
                self.log_window_steps = int(window["steps"])
                for name, total in self.totals.items():
                    total.copy_(window["totals"][name])
        step = self.state.step
        history = self.run_dir.read_history()
        if not history.empty and (history["step"] > step).any():
            self.run_dir.write_history(history[history["step"] <= step])
        metrics = self.run_dir.read_metrics()
        if not metrics.empty and "checkpoint" in metrics:
            keep = ~((metrics["checkpoint"] == IN_TRAINING) & (metrics["step"] > step))
            if not keep.all():
                write_parquet(self.run_dir.metrics_path, metrics[keep])

    def _state_dict(self) -> dict[str, Any]:
        lr_d, lr_g = self._learning_rates(self.state.step)
        return {
            "step": self.state.step,
            "wall_time": self.state.wall_time,
            "best": self.state.best,
            "recipe_hash": self.recipe.hash(),
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict() if self.G_ema is not None else None,
            "opt_G": portable_state(self.opt_g, lr_g),
            "opt_D": portable_state(self.opt_d, lr_d),
            "data": self.stream.state_dict(),
            "rng": checkpoint.rng_state(),
            "log_window": {
                "steps": self.log_window_steps,
                "totals": {name: total.detach().clone() for name, total in self.totals.items()},
            },
        }

    # one step

    def _gather_reals(self) -> None:
        """The next n_dis batches of the data order into the step's input buffer, flipped where the stream says so
        (data.hflip, images only); no host sync on the GPU."""
        target = self.reals if self._staging is None else self._staging
        flip = self.recipe.data.hflip and target.ndim == 5
        for batch in target:
            indices, flips = self.stream.next()
            torch.index_select(self.images, 0, indices, out=batch)
            if flip:
                batch.copy_(torch.where(flips.view(-1, 1, 1, 1), batch.flip(-1), batch))
        if self._staging is not None:
            self.reals.copy_(self._staging)

    def _step(self) -> None:
        """One generator step: n_dis D steps, the G step and the EMA update, on device tensors only (capturable)."""
        for real in self.reals:
            self._d_step(self.totals, data.to_model_range(real))
        self._g_step(self.totals)
        if self.G_ema is not None:
            update_ema(self.G_ema, self.G, self.ema_weight)

    def _d_step(self, totals: dict[str, torch.Tensor], real: torch.Tensor) -> None:
        t, method, d = self.recipe.train, self.method, self.D
        with torch.no_grad():
            fake = self.G(torch.randn(t.batch_size_d, self.recipe.model.z_dim, device=self.device))
        logits = method.logits(d, torch.cat([real, fake]))
        real_logits, fake_logits = logits[: len(real)], logits[len(real) :]
        loss_real, loss_fake = self.loss.d_loss(real_logits, fake_logits)
        loss = loss_real + loss_fake
        penalty = method.penalty(d, real, fake)
        if penalty is not None:
            loss = loss + penalty
            totals["penalty"] += penalty.detach()
        cr = consistency_penalty(method, d, real, real_logits, fake, fake_logits, self.recipe.method)
        if cr is not None:
            loss = loss + cr
            totals["cr"] += cr.detach()
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        totals["loss_d"] += loss.detach()
        totals["loss_d_real"] += loss_real.detach()
        totals["loss_d_fake"] += loss_fake.detach()
        totals["d_real"] += real_logits.detach().mean()
        totals["d_fake"] += fake_logits.detach().mean()

    def _g_step(self, totals: dict[str, torch.Tensor]) -> None:
        t = self.recipe.train
        self.D.requires_grad_(False)  # G's step needs gradients through D's input, not into D's weights
        try:
            fake = self.G(torch.randn(t.batch_size_g, self.recipe.model.z_dim, device=self.device))
            loss = self.loss.g_loss(self.method.logits(self.D, fake))
            self.opt_g.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_g.step()
        finally:  # a failed step (e.g. a graph capture that raised) must not leave D frozen
            self.D.requires_grad_(True)
        totals["loss_g"] += loss.detach()

    def _learning_rates(self, step: int) -> tuple[float, float]:
        """(lr_d, lr_g) at `step`, a pure function of it."""
        t = self.recipe.train
        factor = lr_factor(t.lr_decay, step, t.steps)
        return t.lr_d * factor, t.lr_g * factor

    def _set_schedules(self, step: int) -> tuple[float, float]:
        """Learning rates and the EMA weight of `step`, written only when they change (a device write each)."""
        t = self.recipe.train
        lr_d, lr_g = self._learning_rates(step)
        # `step` is 0-based here: the EMA copies G while the 1-based step is below ema_start, as the official code
        ema = 1.0 - t.ema_decay if step + 1 >= t.ema_start else 1.0
        if self._schedule != (lr_d, lr_g, ema):
            set_lr(self.opt_d, lr_d)
            set_lr(self.opt_g, lr_g)
            if isinstance(self.ema_weight, torch.Tensor):
                self.ema_weight.fill_(ema)
            else:
                self.ema_weight = ema
            self._schedule = (lr_d, lr_g, ema)
        return lr_d, lr_g

    def _gradient_log(self) -> dict[str, torch.Tensor]:
        """Raw D outputs and ‖∇ₓD‖ on fixed real and fake batches, without touching the training state.

        D runs in eval mode (no extra SN power iteration) and G in eval mode (BN statistics untouched). The values
        stay on the device: the log line reads them later, without stalling the GPU.
        """
        count = min(self.recipe.train.batch_size_d, len(self.fixed_z), len(self.images))
        real = data.to_model_range(self.images[:count].to(self.device))
        fake = generate(self.G, self.fixed_z[:count])
        self.D.eval()
        out_real, grad_real = per_sample_grad_norm(self.D, real)
        out_fake, grad_fake = per_sample_grad_norm(self.D, fake)
        self.D.train()
        return {
            "d_raw_real": out_real.mean(),
            "d_raw_fake": out_fake.mean(),
            "grad_norm_real": grad_real.mean(),
            "grad_norm_fake": grad_fake.mean(),
        }

    # the loop

    def run(self) -> dict[str, Any]:
        """Train to `train.steps`, resuming if the run directory has a checkpoint; returns the final run.json.

        One writer per run directory: the run holds its lock (RunDir.lock) from before its first write to the end.
        """
        existing = self._check_run_dir()  # a mismatched recipe is refused before the data is loaded
        if existing is not None and existing.get("status") == "finished":
            return existing
        self._build()  # loads the data: a missing dataset fails here, before the run directory is made
        evaluator = None
        if self.recipe.eval.every > 0 and self.evaluator_factory is not None:
            evaluator = self.evaluator_factory(self.recipe, self.run_dir, self.device)
        with self.run_dir.lock("ganbench train"):
            existing = self._check_run_dir()  # again, now that no other writer can change it
            if existing is not None and existing.get("status") == "finished":
                return existing
            return self._run_locked(existing, evaluator)

    def _run_locked(self, existing: dict[str, Any] | None, evaluator: Any) -> dict[str, Any]:
        run = self.run_dir
        run.remove_stale_temps()  # a killed predecessor's half-written files
        if existing is None:
            run.write_recipe(self.recipe)
            run.write_run(
                {
                    "name": self.recipe.name,
                    "recipe_hash": self.recipe.hash(),
                    "training_hash": training_hash(self.recipe),
                    "status": "running",
                    "step": 0,
                    "steps": self.recipe.train.steps,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "environment": environment(),
                    "dataset": {
                        "name": self.dataset.name,
                        "split": self.dataset.split,
                        "content_hash": self.dataset.content_hash,
                        "source": self.dataset.source,
                    },
                    "device": str(self.device),
                }
            )
        else:
            self._check_dataset(existing)
            changed = recipe_changes(run.read_recipe(), self.recipe) if run.recipe_path.is_file() else []
            self._restore()
            if changed:  # evaluation settings taken over by the resumed run
                run.write_recipe(self.recipe)
            run.update_run(
                status="running",
                environment=environment(),
                device=str(self.device),
                recipe_hash=self.recipe.hash(),
                training_hash=training_hash(self.recipe),
                **({"resumed_with_changes": existing.get("resumed_with_changes", []) + changed} if changed else {}),
            )
        try:
            with self._stop_at_step_end():
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
        return run.update_run(
            status="finished", step=self.state.step, best=self.state.best, error=None, step_path=self.runner.path
        )

    def _record_end(self, **fields: Any) -> None:
        """Write how the run ended; if even that fails (a full disk), the original error is the one raised."""
        with contextlib.suppress(Exception):
            self.run_dir.update_run(step=self.state.step, step_path=self.runner.path, **fields)

    @contextlib.contextmanager
    def _stop_at_step_end(self) -> Iterator[None]:
        """Ctrl-C or SIGTERM (a preempted job) finish the step, save it and stop; a second one stops at once."""
        self._stop_requested = False
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

        def request_stop(signum: int, frame: Any) -> None:
            self._stop_requested = True
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        for sig in previous:
            signal.signal(sig, request_stop)
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _loop(self, evaluator: Any) -> None:
        t, run = self.recipe.train, self.run_dir
        history = run.read_history()
        rows: list[dict[str, Any]] = history.to_dict("records") if not history.empty else []
        log = LogQueue(self.device)
        last_flush = time.monotonic()
        self.progress.start("train", t.steps, completed=self.state.step)
        self.G.train()
        self.D.train()

        def drain(wait: bool) -> None:
            """Move finished log lines into the history; a non-finite loss stops the run as diverged."""
            for row in log.completed(wait):
                self.state.wall_time += row["interval_s"]
                row["wall_time"] = self.state.wall_time
                del row["interval_s"]
                if not all(math.isfinite(row[name]) for name in self.totals):
                    raise Diverged(
                        f"{run.root}: a loss became NaN or infinite by step {row['step']}; the last good checkpoint "
                        "is kept in checkpoints/ (lower the learning rate or change the method)"
                    )
                rows.append(row)
                self.progress.advance(0, loss_d=row["loss_d"], loss_g=row["loss_g"])

        while self.state.step < t.steps:
            lr_d, lr_g = self._set_schedules(self.state.step)
            self._gather_reals()
            self.runner()
            self.state.step += 1
            step = self.state.step
            self.log_window_steps += 1
            log.steps += 1  # the log clock's count (it restarts after evaluations); the window's is checkpointed
            self.progress.advance(1)

            if step % t.log_every == 0 or step == t.steps:
                g_steps = self.log_window_steps
                means = {
                    name: total / (g_steps if name == "loss_g" else g_steps * t.n_dis)
                    for name, total in self.totals.items()
                }
                lrs = {"lr_d": lr_d, "lr_g": lr_g}
                log.push(step, {**means, **self._gradient_log()}, lrs, t.batch_size_d * t.n_dis)
                for total in self.totals.values():
                    total.zero_()
                self.log_window_steps = 0
                drain(wait=False)
                if time.monotonic() - last_flush > HISTORY_FLUSH_SECONDS:
                    run.write_history(pd.DataFrame(rows))
                    last_flush = time.monotonic()

            periodic = False
            if evaluator is not None and (step % self.recipe.eval.every == 0 or step == t.steps):
                drain(wait=True)  # a diverged run is not evaluated
                self._evaluate(evaluator, step)
                periodic = True
            if t.sample_every and (step % t.sample_every == 0 or step == t.steps):
                bn_mode = self.recipe.eval.bn_mode
                save_samples(run.sample_path(step), self._sample_generator(), self.fixed_z, self.dataset, bn_mode)
                if self.G_ema is not None:  # early on EMA-G is still close to its initialisation: show G too
                    save_samples(run.sample_path(step, "raw"), self.G, self.fixed_z, self.dataset, bn_mode)
                periodic = True
            if step % t.checkpoint_every == 0 or step == t.steps:
                drain(wait=True)
                # losses since the last log line are unchecked: check them before saving
                if not all(torch.isfinite(total) for total in self.totals.values()):
                    raise Diverged(f"{run.root}: a loss became NaN or infinite by step {step}")
                run.write_history(pd.DataFrame(rows))
                last_flush = time.monotonic()
                self._save_checkpoint(periodic=True)
                run.update_run(step=step, best=self.state.best, step_path=self.runner.path)
                periodic = True
            if periodic:
                log.restart_clock()  # evaluation, sheets and checkpoints are not training time
            if self._stop_requested:
                drain(wait=True)
                run.write_history(pd.DataFrame(rows))
                self._save_checkpoint(periodic=False)
                raise KeyboardInterrupt
        self.progress.finish()  # the last step is a checkpoint step: its history is drained and written

    def _sample_generator(self) -> nn.Module:
        return self.G_ema if self.G_ema is not None else self.G

    def _evaluate(self, evaluator: Any, step: int) -> None:
        generators = {"raw": self.G}
        if self.G_ema is not None:
            generators["ema"] = self.G_ema
        rows = evaluator(step, generators)
        self.run_dir.append_metrics(rows)
        self.G.train()
        select = self.recipe.eval.select if self.G_ema is not None else "raw"
        scored = selection_score(rows, select)
        if scored is None:
            return
        score, metric = scored
        if not self.state.best or score < self.state.best["score"]:
            self.state.best = {"score": score, "step": step, "metric": metric, "generator": select}
            checkpoint.save(self.run_dir.checkpoint_path("best"), self._state_dict())
        fields = {row["metric"]: row["value"] for row in rows if row["generator"] == select}
        self.progress.advance(0, **fields)

    def _save_checkpoint(self, periodic: bool) -> None:
        """Write last.pt (and step-N.pt); weights that are no longer finite are never saved."""
        for module in (self.G, self.D):
            if not all(torch.isfinite(p).all() for p in module.parameters()):
                raise Diverged(
                    f"{self.run_dir.root}: weights became NaN or infinite by step {self.state.step}; the last good "
                    "checkpoint is kept in checkpoints/ (lower the learning rate or change the method)"
                )
        state, last = self._state_dict(), self.run_dir.checkpoint_path("last")
        if periodic and self.recipe.train.keep_checkpoints:  # step-N.pt first, last.pt a link to it
            checkpoint.save(self.run_dir.checkpoint_path(self.state.step), state, also=(last,))
        else:
            checkpoint.save(last, state)


def train(
    recipe: Recipe,
    run: RunDir,
    progress: Progress | None = None,
    evaluator_factory: Callable[[Recipe, RunDir, torch.device], Any] | None = None,
) -> dict[str, Any]:
    return Trainer(recipe, run, progress, evaluator_factory).run()
