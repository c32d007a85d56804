"""The checkpointed training state: what a checkpoint holds, how a run is put back to it, and how it is saved.

A checkpoint holds everything needed to continue exactly: G, D, EMA-G, both optimizers, the step (the schedules
are functions of it), every RNG state, the data position, and the loss totals of the unfinished log window, so a
resumed run writes the same history, metric rows and best.pt as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ganbench.errors import Diverged
from ganbench.store import IN_TRAINING, BestInfo, RunDir, write_parquet
from ganbench.train import checkpoint
from ganbench.train.fast import load_portable_state, portable_state
from ganbench.train.step import TrainingStep
from ganbench.train.stream import BatchStream


@dataclass
class TrainState:
    """What the loop carries from step to step besides the modules, optimizers and data position."""

    step: int = 0
    wall_time: float = 0.0  # seconds of training (logged intervals), not of evaluation
    best: BestInfo = field(default_factory=lambda: BestInfo())  # ganbench.selection's choice so far
    window_steps: int = 0  # G steps summed in the loss totals since the last log line


def snapshot(model: TrainingStep, stream: BatchStream, state: TrainState, recipe_hash: str) -> dict[str, Any]:
    """The checkpoint payload of this moment (tensors and plain values only: loadable with weights_only)."""
    lr_d, lr_g = model.schedules.learning_rates(state.step)
    return {
        "step": state.step,
        "wall_time": state.wall_time,
        "best": state.best,
        "recipe_hash": recipe_hash,
        "G": model.G.state_dict(),
        "D": model.D.state_dict(),
        "G_ema": model.G_ema.state_dict() if model.G_ema is not None else None,
        "opt_G": portable_state(model.opt_g, lr_g),
        "opt_D": portable_state(model.opt_d, lr_d),
        "data": stream.state_dict(),
        "rng": checkpoint.rng_state(),
        "log_window": {
            "steps": state.window_steps,
            "totals": {name: total.detach().clone() for name, total in model.totals.items()},
        },
    }


def restore(model: TrainingStep, stream: BatchStream, run: RunDir, device: torch.device) -> TrainState:
    """Load the run's newest valid checkpoint (none: the state of step 0) and cut history and in-training metric
    rows back to its step: rows written after it are recomputed by the resumed run, never duplicated."""
    state = load_newest(model, stream, run, device)
    history, metrics = run.read_history(), run.read_metrics()
    if not history.empty and (history["step"] > state.step).any():
        run.write_history(history[history["step"] <= state.step])
    if not metrics.empty and "checkpoint" in metrics:
        keep = ~((metrics["checkpoint"] == IN_TRAINING) & (metrics["step"] > state.step))
        if not keep.all():
            write_parquet(run.metrics_path, metrics[keep])
    return state


def save_checkpoint(run: RunDir, payload: dict[str, Any], model: TrainingStep, periodic: bool, keep: bool) -> None:
    """Write last.pt (and step-N.pt when `periodic` and `keep`, last.pt then a link to it); weights that are no
    longer finite are never saved."""
    for module in (model.G, model.D):
        if not all(torch.isfinite(p).all() for p in module.parameters()):
            raise Diverged(
                f"{run.root}: weights became NaN or infinite by step {payload['step']}; the last good "
                "checkpoint is kept in checkpoints/ (lower the learning rate or change the method)"
            )
    last = run.checkpoint_path("last")
    if periodic and keep:
        checkpoint.save(run.checkpoint_path(payload["step"]), payload, also=(last,))
    else:
        checkpoint.save(last, payload)


def load_newest(model: TrainingStep, stream: BatchStream, run: RunDir, device: torch.device) -> TrainState:
    """Load the run's newest valid checkpoint into the model and stream, writing nothing; none: step 0's state."""
    state = TrainState()
    saved = checkpoint.newest_valid(run, map_location=device)
    if saved is not None:
        model.G.load_state_dict(saved["G"])
        model.D.load_state_dict(saved["D"])
        if model.G_ema is not None:
            model.G_ema.load_state_dict(saved["G_ema"])
        load_portable_state(model.opt_g, saved["opt_G"])
        load_portable_state(model.opt_d, saved["opt_D"])
        stream.load_state_dict(saved["data"])
        checkpoint.set_rng_state(saved["rng"])
        state = TrainState(step=saved["step"], wall_time=saved["wall_time"], best=saved.get("best", {}))
        window = saved.get("log_window")
        if window is not None:  # the losses summed since the last log line, so that line comes out exact
            state.window_steps = int(window["steps"])
            for name, total in model.totals.items():
                total.copy_(window["totals"][name])
    return state
