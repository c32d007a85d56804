"""The fast path of the training step: Adam set up for CUDA-graph capture, and the runner that captures the step.

The trainer's step body (train/step.py, whose docstring lists the rules) reads only device tensors (the gathered
real batches and, for a class-conditional net, their labels, the learning rates, the EMA weight) and writes only
device tensors (weights, optimizer state, loss totals), so on CUDA it can be captured once as a graph and replayed:
one launch per step instead of hundreds, and no host synchronisation. The random draws inside (z, the fakes'
labels, CR's shifts, the penalties' interpolation weights) come from the default CUDA generator, which PyTorch keeps
graph-safe: a replay draws the numbers the same eager step would have drawn, and the generator's state (so the
checkpoint) advances with every replay.
"""

from __future__ import annotations

import warnings
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


class CaptureFallbackWarning(RuntimeWarning):
    """The step could not be captured as a CUDA graph; training goes on, on the eager path."""


def capture_cuda_graph(body: Callable[[], None], stream: torch.cuda.Stream | None) -> Callable[[], None]:
    """Record `body` as a CUDA graph on `stream` (recorded, not executed) and return the graph's replay."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        body()
    return graph.replay


def _one_line(err: BaseException, limit: int = 200) -> str:
    lines = str(err).strip().splitlines()
    text = f"{type(err).__name__}: {lines[0].strip()}" if lines else type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


class StepRunner:
    """Runs the step body: eagerly, or as a CUDA graph captured after WARMUP_STEPS eager steps on a side stream.

    The warm-up steps are real training steps (the same body). Capture records without executing, so the step
    during which the graph is captured is then run by its first replay. When capture raises (an op that cannot be
    captured, an allocator limit), the runner warns once (CaptureFallbackWarning), puts the generator state back as it
    was before the capture, runs that step eagerly and stays eager: the same numbers, one launch at a time.

    `path` says which path the steps take: "eager", "cuda-graph", or "eager (capture failed: <error>)"; it reads
    "eager" until the graph exists. `capture` (body, side stream) -> replay and `force_graph` (take the graph path
    off CUDA too, the warm-up then on the current thread without a side stream) let the tests drive the capture logic
    on the CPU.
    """

    def __init__(
        self,
        body: Callable[[], None],
        device: torch.device,
        graph: bool,
        *,
        capture: Callable[[Callable[[], None], torch.cuda.Stream | None], Callable[[], None]] = capture_cuda_graph,
        force_graph: bool = False,
    ) -> None:
        self.body = body
        self.device = device
        self.cuda = device.type == "cuda"
        self.use_graph = graph and (self.cuda or force_graph)
        self.capture = capture
        self.replay: Callable[[], None] | None = None
        self.warmed = 0
        self.path = "eager"
        self._side: torch.cuda.Stream | None = None

    @property
    def captured(self) -> bool:
        return self.replay is not None

    def __call__(self) -> None:
        if self.replay is not None:
            self.replay()
            return
        if not self.use_graph:
            self.body()
            return
        if self.cuda and self._side is None:
            self._side = torch.cuda.Stream(self.device)
        if self.warmed < WARMUP_STEPS:
            self._on_side(self.body)
            self.warmed += 1
            return
        rng = self._rng_state()
        try:
            self.replay = self._on_side(lambda: self.capture(self.body, self._side))
        except Exception as err:  # whatever stops the capture, the run goes on without the graph
            self._fall_back(err, rng)
            return
        self.path = "cuda-graph"
        self.replay()  # the captured step, so far only recorded

    def _on_side(self, work: Callable[[], Any]) -> Any:
        """Run `work` on the side stream (warm-up and capture must not run on the default stream), then join."""
        if self._side is None:
            return work()
        self._side.wait_stream(torch.cuda.current_stream(self.device))
        try:
            with torch.cuda.stream(self._side):
                return work()
        finally:
            torch.cuda.current_stream(self.device).wait_stream(self._side)

    def _rng_state(self) -> torch.Tensor:
        return torch.cuda.get_rng_state(self.device) if self.cuda else torch.get_rng_state()

    def _fall_back(self, err: Exception, rng: torch.Tensor) -> None:
        self.use_graph = False
        self.path = f"eager (capture failed: {_one_line(err)})"
        warnings.warn(
            f"the training step could not be captured as a CUDA graph ({_one_line(err)}); continuing on the eager "
            "path (set train.cuda_graph=false to skip the attempt)",
            CaptureFallbackWarning,
            stacklevel=3,
        )
        # A capture reserves the random numbers its replays would draw: give them back, so that the eager step
        # draws what the first replay would have.
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.set_rng_state(rng, self.device)
        else:
            torch.set_rng_state(rng)
        self.body()  # the step whose capture failed is still to be run
