"""The fast path of the training step: Adam set up for CUDA-graph capture, and the runner that captures the step.

The trainer's step body reads only device tensors (the gathered real batches, the learning rates, the EMA weight)
and writes only device tensors (weights, optimizer state, loss totals), so on CUDA it can be captured once as a
graph and replayed: one launch per step instead of hundreds, and no host synchronisation. The random draws inside
(z, CR's shifts, the penalties' interpolation weights) come from the default CUDA generator, which PyTorch keeps
graph-safe: a replay draws the numbers the same eager step would have drawn, and the generator's state (so the
checkpoint) advances with every replay.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

WARMUP_STEPS = 3  # eager steps on a side stream before capture: Adam's state and cuDNN's choices exist by then


def make_adam(
    params: Iterable[nn.Parameter], lr: float, betas: tuple[float, float], device: torch.device, fused: bool
) -> torch.optim.Adam:
    """torch.optim.Adam; on CUDA capturable (step counters on the GPU), its learning rate a device tensor, and the
    fused kernel when `fused`. The same optimizer serves the captured and the eager step, so both compute alike."""
    if device.type != "cuda":
        return torch.optim.Adam(params, lr=lr, betas=betas)
    lr_tensor = torch.tensor(lr, dtype=torch.float32, device=device)
    return torch.optim.Adam(params, lr=lr_tensor, betas=betas, capturable=True, fused=fused)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate; a tensor learning rate is filled in place (a graph reads it by address)."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def portable_state(optimizer: torch.optim.Optimizer, lr: float) -> dict[str, Any]:
    """The optimizer's state dict with a float learning rate, loadable by either path."""
    state = optimizer.state_dict()
    state["param_groups"] = [{**group, "lr": lr} for group in state["param_groups"]]
    return state


def load_portable_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a state saved by either path and put back this optimizer's own settings.

    `load_state_dict` takes the saved groups' flags (capturable, fused, foreach) and learning rate; the ones this
    optimizer was built with are restored, and each `step` counter moved where its implementation wants it (the
    parameter's device for capturable or fused Adam, the host otherwise).
    """
    own = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, settings in zip(optimizer.param_groups, own, strict=True):
        saved_lr = group["lr"]
        group.update(settings)
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(float(saved_lr))
        else:
            group["lr"] = float(saved_lr)
        on_device = bool(group.get("capturable") or group.get("fused"))
        for param in group["params"]:
            entry = optimizer.state.get(param)
            if entry and "step" in entry:
                step = torch.as_tensor(entry["step"], dtype=torch.float32)
                entry["step"] = step.to(param.device) if on_device else step.cpu()


class StepRunner:
    """Runs the step body: eagerly, or as a CUDA graph captured after WARMUP_STEPS eager steps on a side stream.

    The warm-up steps are real training steps (the same body). Capture records without executing, so the step
    during which the graph is captured is then run by its first replay.
    """

    def __init__(self, body: Callable[[], None], device: torch.device, graph: bool) -> None:
        self.body = body
        self.use_graph = graph and device.type == "cuda"
        self.graph: torch.cuda.CUDAGraph | None = None
        self.warmed = 0
        self._side: torch.cuda.Stream | None = None

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def __call__(self) -> None:
        if not self.use_graph:
            self.body()
            return
        if self.graph is None:
            if self._side is None:
                self._side = torch.cuda.Stream()
            self._side.wait_stream(torch.cuda.current_stream())
            if self.warmed < WARMUP_STEPS:
                with torch.cuda.stream(self._side):
                    self.body()
                torch.cuda.current_stream().wait_stream(self._side)
                self.warmed += 1
                return
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=self._side):
                self.body()
            torch.cuda.current_stream().wait_stream(self._side)
            self.graph = graph
        self.graph.replay()
