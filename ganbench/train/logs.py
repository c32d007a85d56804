"""What training logs: the loss totals and diagnostics of each log line, timed and read from the device without
stalling it, and the history rows they become (history.parquet, columns store.HISTORY_COLUMNS)."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from torch import nn

from ganbench.data import to_model_range
from ganbench.errors import Diverged
from ganbench.nets import conditioned
from ganbench.store import HISTORY_COLUMNS, LOSS_COLUMNS, RunDir
from ganbench.train.samples import generate


@dataclass
class _Pending:
    step: int
    names: list[str]
    values: torch.Tensor  # on the host (pinned on CUDA), filled by an asynchronous copy
    start: Any  # CUDA event or clock value
    end: Any
    steps: int
    fields: dict[str, float]
    images_per_step: int


class LogQueue:
    """Log lines whose values are still on the device: copied to the host without waiting, read once copied.

    The interval clock is a pair of CUDA events on the GPU (the host runs ahead of the GPU, so host time between two
    log lines would not time the steps) and `clock` (perf_counter) on the CPU. An interval covers the training steps
    and the log line's own probes; evaluation, sample sheets and checkpoints restart the clock.
    """

    def __init__(self, device: torch.device, clock: Callable[[], float] = time.perf_counter) -> None:
        self.cuda = device.type == "cuda"
        self.clock = clock
        self.steps = 0  # G steps since the clock last started
        self._pending: deque[_Pending] = deque()
        self._start = self._mark()

    def _mark(self) -> Any:
        if not self.cuda:
            return self.clock()
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


class History:
    """The rows of history.parquet: those on disk when the run (re)started, then one per completed log line.

    `wall_time` sums the logged intervals (training time, not evaluation). A line with a non-finite loss total
    stops the run as diverged before it is kept.
    """

    def __init__(self, run: RunDir, wall_time: float, flush_seconds: float) -> None:
        frame = run.read_history()
        self.rows: list[dict[str, Any]] = frame.to_dict("records") if not frame.empty else []
        self.run, self.wall_time, self.flush_seconds = run, wall_time, flush_seconds
        self._flushed = time.monotonic()

    def take(self, log: LogQueue, wait: bool) -> list[dict[str, Any]]:
        """Move the log's finished lines into the history; returns them."""
        taken = []
        for row in log.completed(wait):
            self.wall_time += row.pop("interval_s")
            row["wall_time"] = self.wall_time
            if not all(math.isfinite(row[name]) for name in LOSS_COLUMNS):
                raise Diverged(
                    f"{self.run.root}: a loss became NaN or infinite by step {row['step']}; the last good checkpoint "
                    "is kept in checkpoints/ (lower the learning rate or change the method)"
                )
            row = {name: row[name] for name in HISTORY_COLUMNS}  # the declared columns, in order
            self.rows.append(row)
            taken.append(row)
        return taken

    def write(self, only_if_due: bool = False) -> None:
        """Write history.parquet (atomically); `only_if_due`: only when flush_seconds have passed since the last."""
        if only_if_due and time.monotonic() - self._flushed <= self.flush_seconds:
            return
        self.run.write_history(pd.DataFrame(self.rows))
        self._flushed = time.monotonic()


def per_sample_grad_norm(d: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw D outputs and ‖∇ₓD(x)‖ per sample, for logging (no graph kept)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        out = d(x).flatten()
        (grad,) = torch.autograd.grad(out.sum(), x)
    return out.detach(), grad.flatten(1).norm(dim=1)


def window_means(totals: dict[str, torch.Tensor], g_steps: int, n_dis: int) -> dict[str, torch.Tensor]:
    """The loss totals of a log window as means: loss_g per G step, D's terms per D step (n_dis per G step)."""
    return {name: total / (g_steps if name == "loss_g" else g_steps * n_dis) for name, total in totals.items()}


def gradient_probes(
    d: nn.Module,
    g: nn.Module,
    images: torch.Tensor,
    z: torch.Tensor,
    batch_size: int,
    labels: torch.Tensor | None = None,
    z_labels: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Raw D outputs and ‖∇ₓD‖ on the first real samples and on G(z) (at most `batch_size` each), without touching
    the training state. A class-conditional net takes the reals' `labels` and the codes' `z_labels`.

    D runs in eval mode (no extra SN power iteration) and G in eval mode (BN statistics untouched). The values
    stay on the device: the log line reads them later, without stalling the GPU.
    """
    count = min(batch_size, len(z), len(images))
    real = to_model_range(images[:count].to(z.device))
    real_labels = None if labels is None else labels[:count].to(z.device)
    fake_labels = None if z_labels is None else z_labels[:count]
    fake = generate(g, z[:count], labels=fake_labels)
    d.eval()
    out_real, grad_real = per_sample_grad_norm(conditioned(d, real_labels), real)
    out_fake, grad_fake = per_sample_grad_norm(conditioned(d, fake_labels), fake)
    d.train()
    return {
        "d_raw_real": out_real.mean(),
        "d_raw_fake": out_fake.mean(),
        "grad_norm_real": grad_real.mean(),
        "grad_norm_fake": grad_fake.mean(),
    }
