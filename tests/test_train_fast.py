"""The fast training path: the pieces testable on the CPU here, the CUDA-graph equivalence where CUDA is."""

from __future__ import annotations

import os
import random
import signal
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ganbench import recipe as recipes
from ganbench.store import RunDir
from ganbench.train import checkpoint, loop
from ganbench.train.ema import update_ema
from ganbench.train.fast import (
    WARMUP_STEPS,
    CaptureFallbackWarning,
    StepRunner,
    load_portable_state,
    make_adam,
    portable_state,
    set_lr,
)
from ganbench.train.logs import LogQueue

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def gpu(test: Callable[..., None]) -> Callable[..., None]:
    """Marked `gpu` (select with -m gpu) and skipped without CUDA."""
    return pytest.mark.gpu(needs_cuda(test))


SLOW = ["train.cuda_graph=false", "train.fused_adam=false", "train.data_on_device=false", "train.cudnn_benchmark=false"]


def _adam_after_steps(fused: bool, tensor_lr: bool, steps: int = 3) -> tuple[nn.Linear, torch.optim.Adam]:
    torch.manual_seed(0)
    layer = nn.Linear(4, 3)
    lr: float | torch.Tensor = torch.tensor(1e-2) if tensor_lr else 1e-2
    opt = torch.optim.Adam(layer.parameters(), lr=lr, betas=(0.0, 0.9), fused=fused or None)
    for _ in range(steps):
        opt.zero_grad()
        layer(torch.randn(8, 4)).square().sum().backward()
        opt.step()
    return layer, opt


def test_portable_state_moves_between_a_tensor_lr_fused_adam_and_a_plain_one() -> None:
    _, fused = _adam_after_steps(fused=True, tensor_lr=True)
    saved = portable_state(fused, 5e-3)
    assert all(type(group["lr"]) is float for group in saved["param_groups"])

    _, plain = _adam_after_steps(fused=False, tensor_lr=False, steps=0)
    load_portable_state(plain, saved)
    group = plain.param_groups[0]
    assert group["lr"] == 5e-3 and not group["fused"]  # its own implementation, the saved learning rate
    for param, source in zip(group["params"], fused.param_groups[0]["params"], strict=True):
        state = plain.state[param]
        assert state["step"].device.type == "cpu" and float(state["step"]) == 3.0
        assert torch.equal(state["exp_avg"], fused.state[source]["exp_avg"])

    _, again = _adam_after_steps(fused=True, tensor_lr=True, steps=0)
    lr_tensor = again.param_groups[0]["lr"]
    load_portable_state(again, portable_state(plain, 5e-3))
    assert again.param_groups[0]["fused"] and again.param_groups[0]["lr"] is lr_tensor  # same tensor, refilled
    assert float(lr_tensor) == pytest.approx(5e-3)


def test_set_lr_fills_a_tensor_in_place_and_replaces_a_float() -> None:
    params = [nn.Parameter(torch.zeros(2))]
    fast = make_adam(params, 1e-3, (0.0, 0.9), torch.device("cpu"), fused=False)
    set_lr(fast, 2e-3)
    assert fast.param_groups[0]["lr"] == 2e-3
    tensor_lr = torch.optim.Adam(params, lr=torch.tensor(1e-3), fused=True)
    kept = tensor_lr.param_groups[0]["lr"]
    set_lr(tensor_lr, 2e-3)
    assert tensor_lr.param_groups[0]["lr"] is kept and float(kept) == pytest.approx(2e-3)


def test_ema_weight_as_tensor_matches_the_float_and_one_copies_exactly() -> None:
    torch.manual_seed(0)
    g, a, b = nn.Linear(5, 5), nn.Linear(5, 5), nn.Linear(5, 5)
    b.load_state_dict(a.state_dict())
    update_ema(a, g, 1e-4)
    update_ema(b, g, torch.tensor(1e-4))
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    update_ema(b, g, torch.tensor(1.0))
    assert all(torch.equal(x, y) for x, y in zip(b.parameters(), g.parameters(), strict=True))


class FakeCapture:
    """Stands in for torch.cuda.graph: records the body without running it (draws the random numbers a capture
    reserves) and returns a replay that runs it, or raises as a capture of an uncapturable op does."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.calls = 0

    def __call__(self, body: Callable[[], None], stream: object) -> Callable[[], None]:
        self.calls += 1
        torch.rand(100)
        if self.error is not None:
            raise self.error
        return body


def _counting_body(log: list[str]) -> Callable[[], None]:
    def body() -> None:
        log.append("step")

    return body


def test_step_runner_captures_after_the_warm_up_and_the_first_replay_runs_the_captured_step() -> None:
    log: list[str] = []
    capture = FakeCapture()
    runner = StepRunner(_counting_body(log), torch.device("cpu"), graph=True, capture=capture, force_graph=True)
    for step in range(1, WARMUP_STEPS + 1):
        runner()
        assert len(log) == step and capture.calls == 0 and runner.path == "eager"
    for step in range(WARMUP_STEPS + 1, 8):
        runner()
        assert len(log) == step  # one body run per step: capture alone runs nothing, the replay runs the step
    assert capture.calls == 1 and runner.captured and runner.path == "cuda-graph"


def test_step_runner_off_cuda_never_tries_to_capture_unless_forced() -> None:
    log: list[str] = []
    capture = FakeCapture(AssertionError("capture attempted off CUDA"))
    runner = StepRunner(_counting_body(log), torch.device("cpu"), graph=True, capture=capture)
    for _ in range(6):
        runner()
    assert len(log) == 6 and capture.calls == 0 and runner.path == "eager" and not runner.captured


def test_a_failed_capture_warns_once_and_continues_eagerly_with_the_same_draws() -> None:
    def drawing_body(draws: list[torch.Tensor]) -> Callable[[], None]:
        return lambda: draws.append(torch.rand(3))

    torch.manual_seed(0)
    eager: list[torch.Tensor] = []
    plain = StepRunner(drawing_body(eager), torch.device("cpu"), graph=False)
    for _ in range(8):
        plain()

    torch.manual_seed(0)
    draws: list[torch.Tensor] = []
    error = RuntimeError("operation not permitted when stream is capturing\nCUDA kernel errors might be reported later")
    capture = FakeCapture(error)
    runner = StepRunner(drawing_body(draws), torch.device("cpu"), graph=True, capture=capture, force_graph=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(8):
            runner()
    assert [w.category for w in caught] == [CaptureFallbackWarning]
    assert "operation not permitted when stream is capturing" in str(caught[0].message)
    assert runner.path == "eager (capture failed: RuntimeError: operation not permitted when stream is capturing)"
    assert capture.calls == 1 and not runner.captured
    assert len(draws) == 8  # the step whose capture failed ran once, eagerly
    assert all(torch.equal(a, b) for a, b in zip(draws, eager, strict=True))  # nothing the capture drew is missing


def test_training_through_a_failed_capture_gives_the_eager_runs_numbers(
    tiny_recipe_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trainer's own step with the graph path forced and its capture failing: the run finishes with the weights
    and losses of a run that never tried, and says which path it took."""
    recipe = recipes.load(tiny_recipe_path, ["train.steps=12", "train.checkpoint_every=12"])
    plain = RunDir(tmp_path / "plain")
    loop.Trainer(recipe, plain).run()

    def failing_runner(*args: object, **kwargs: object) -> StepRunner:
        return StepRunner(*args, **kwargs, capture=FakeCapture(RuntimeError("out of memory")), force_graph=True)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "StepRunner", failing_runner)
    fallen = RunDir(tmp_path / "fallen")
    trainer = loop.Trainer(recipe, fallen)
    with pytest.warns(CaptureFallbackWarning):
        trainer.run()
    assert trainer.runner.path == "eager (capture failed: RuntimeError: out of memory)"
    assert fallen.read_run()["step_path"] == trainer.runner.path  # the run directory records the path taken
    assert plain.read_run()["step_path"] == "eager"
    a, b = checkpoint.load(plain.checkpoint_path("last")), checkpoint.load(fallen.checkpoint_path("last"))
    for key in ("G", "D", "G_ema"):
        assert all(torch.equal(a[key][name], b[key][name]) for name in a[key]), key
    columns = ["step", "loss_d", "loss_g", "d_real", "d_fake"]
    assert plain.read_history()[columns].equals(fallen.read_history()[columns])


def test_a_capture_failing_in_the_g_step_leaves_d_trainable(
    tiny_recipe_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Capture runs the body's Python: one that fails inside the G step (after D was frozen for it) must not leave
    D frozen for the eager step that follows (its D steps would silently not train D)."""
    recipe = recipes.load(tiny_recipe_path, ["train.steps=8", "train.checkpoint_every=8"])
    trainers: list[loop.Trainer] = []
    d_trainable_at_each_step: list[bool] = []

    def failing_in_the_g_step(body: Callable[[], None], stream: object) -> Callable[[], None]:
        generator, calls = trainers[0].G, [0]
        forward = generator.forward

        def g_step_fails(*args: torch.Tensor) -> torch.Tensor:
            calls[0] += 1
            if calls[0] > recipe.train.n_dis:  # the D steps' samples came first: this is the G step's forward
                raise RuntimeError("not capturable")
            return forward(*args)

        generator.forward = g_step_fails
        try:
            body()
        finally:
            del generator.forward
        raise AssertionError("unreachable")

    def runner(step: Callable[[], None], *args: object, **kwargs: object) -> StepRunner:
        trainers.append(step.__self__)  # type: ignore[attr-defined]  (the trainer's bound _step)

        def watched() -> None:
            d_trainable_at_each_step.append(all(p.requires_grad for p in trainers[0].D.parameters()))
            step()

        return StepRunner(watched, *args, **kwargs, capture=failing_in_the_g_step, force_graph=True)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "StepRunner", runner)
    trainer = loop.Trainer(recipe, RunDir(tmp_path / "run"))
    with pytest.warns(CaptureFallbackWarning):
        trainer.run()
    assert trainer.runner.path == "eager (capture failed: RuntimeError: not capturable)"
    assert len(d_trainable_at_each_step) == 8 + 1 and all(d_trainable_at_each_step)  # 8 steps and the capture
    assert checkpoint.load(RunDir(tmp_path / "run").checkpoint_path("last"))["step"] == 8


def test_rng_state_restores_from_a_checkpoint_loaded_onto_another_device(tmp_path: Path) -> None:
    """Resuming maps a checkpoint onto the training device; the generator states must come back to the host
    whatever that did to the tensors (here: onto the meta device, where no tensor holds data)."""
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    checkpoint.save(tmp_path / "c.pt", {"step": 1, "rng": checkpoint.rng_state()})
    expected = (random.random(), float(np.random.rand()), torch.rand(4))
    torch.manual_seed(99)
    state = checkpoint.load(tmp_path / "c.pt", map_location="meta")
    checkpoint.set_rng_state(state["rng"])
    drawn = (random.random(), float(np.random.rand()), torch.rand(4))
    assert drawn[:2] == expected[:2] and torch.equal(drawn[2], expected[2])


def test_cuda_rng_states_reach_the_setter_as_host_byte_tensors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CUDA setter refuses anything but a CPU ByteTensor: what it receives after a mapped load."""
    saved = [bytes(range(16)), bytes(range(16, 32))]  # as rng_state() writes them: plain bytes
    rng = {**checkpoint.rng_state(), "cuda": saved}
    checkpoint.save(tmp_path / "c.pt", {"step": 1, "rng": rng})
    received: list[tuple[torch.Tensor, int]] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # fewer GPUs than the saving machine had
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: received.append((state, device)))
    checkpoint.set_rng_state(checkpoint.load(tmp_path / "c.pt", map_location="meta")["rng"])
    ((state, device),) = received
    assert device == 0 and type(state) is torch.Tensor and state.device.type == "cpu" and state.dtype == torch.uint8
    assert state.tolist() == list(range(16))


def test_log_queue_on_the_cpu_gives_rows_with_rates() -> None:
    log = LogQueue(torch.device("cpu"))
    log.steps = 4
    log.push(4, {"loss_d": torch.tensor(1.5), "loss_g": torch.tensor(0.5)}, {"lr_d": 1e-3}, images_per_step=64)
    (row,) = log.completed(wait=False)
    assert row["step"] == 4 and row["loss_d"] == 1.5 and row["loss_g"] == 0.5 and row["lr_d"] == 1e-3
    assert row["images_per_s"] == pytest.approx(64 * row["g_steps_per_s"])
    assert log.steps == 0 and log.completed(wait=True) == []


def test_switches_do_not_change_the_recipe_hash(tiny_recipe_path: Path) -> None:
    base = recipes.load(tiny_recipe_path)
    off = recipes.load(tiny_recipe_path, SLOW)
    assert base.hash() == off.hash()
    assert base.hash() != recipes.load(tiny_recipe_path, ["train.tf32=false"]).hash()  # TF32 changes the numbers


# --- on CUDA ---------------------------------------------------------------------------------------------------
# A replay runs the eager step's kernels, but float round-off (cuBLAS's choices under capture, atomics) may differ in
# the last bits, and a GAN amplifies such differences over many steps. So one step is compared at float tolerance,
# and a longer run by what must hold exactly (data consumed, random numbers drawn) and statistically (the losses).

IMAGE_RECIPE = """
name = "fast-{method}"
seed = 1
[data]
name = "shapes"
num_samples = 512
size = 32
[model]
arch = "cnn32"
z_dim = 32
[method]
name = "{method}"
cr_lambda = {cr}
[train]
steps = {steps}
n_dis = 2
batch_size_d = 32
batch_size_g = 64
lr_decay = "linear"
ema_decay = 0.99
ema_start = 2
tf32 = false
log_every = {log_every}
sample_every = 0
checkpoint_every = {checkpoint_every}
"""

METHODS = [("gn", 0.0), ("sn", 0.0), ("gran", 10.0), ("wgan-gp", 0.0)]
EAGER = ["train.cuda_graph=false", "train.data_on_device=false"]


@pytest.fixture
def deterministic_cudnn() -> Iterator[None]:
    """cuDNN's non-deterministic backward kernels would make two eager runs differ already."""
    saved = torch.backends.cudnn.deterministic
    torch.backends.cudnn.deterministic = True
    yield
    torch.backends.cudnn.deterministic = saved


def _run(
    tmp_path: Path, name: str, method: str, cr: float, overrides: list[str], steps: int = 100, log_every: int = 10
) -> tuple[RunDir, dict, str]:
    """Train (or resume) a run on CUDA: its directory, its last checkpoint and the step path it took."""
    path = tmp_path / f"{name}.toml"
    text = IMAGE_RECIPE.format(method=method, cr=cr, steps=steps, log_every=log_every, checkpoint_every=steps // 2)
    path.write_text(text)
    run = RunDir(tmp_path / name)
    trainer = loop.Trainer(recipes.load(path, ["train.device=cuda", "train.cudnn_benchmark=false", *overrides]), run)
    trainer.run()
    return run, checkpoint.load(run.checkpoint_path("last")), trainer.runner.path


def _same_arrays(a: list, b: list) -> bool:
    return len(a) == len(b) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b, strict=True))


def _assert_same_course(a: tuple[RunDir, dict, str], b: tuple[RunDir, dict, str], steps: int = 100) -> None:
    """Two runs of one recipe by different paths: the same batches and random numbers used, losses alike."""
    (run_a, state_a, _), (run_b, state_b, _) = a, b
    assert state_a["step"] == state_b["step"] == steps
    assert state_a["data"] == state_b["data"]  # the same batches consumed
    assert _same_arrays(state_a["rng"]["cuda"], state_b["rng"]["cuda"])  # the same random numbers drawn
    assert _same_arrays([state_a["rng"]["torch"]], [state_b["rng"]["torch"]])
    history_a, history_b = run_a.read_history(), run_b.read_history()
    assert history_a["step"].tolist() == history_b["step"].tolist() == list(range(10, steps + 1, 10))
    for column in ("loss_d", "loss_g"):
        x, y = history_a[column].to_numpy(), history_b[column].to_numpy()
        spread = np.sqrt((x.var(ddof=1) + y.var(ddof=1)) / len(x))  # each row a 10-step mean; the rows drift too
        assert abs(x.mean() - y.mean()) <= 4 * spread + 1e-6, column


@gpu
@pytest.mark.usefixtures("deterministic_cudnn")
@pytest.mark.parametrize(("method", "cr"), METHODS)
def test_the_first_replayed_step_matches_the_eager_step(tmp_path: Path, method: str, cr: float) -> None:
    """WARMUP_STEPS eager steps on both paths, then the captured step's first replay beside the eager step: its
    losses, the weights, the EMA and Adam's moments agree to float round-off."""
    steps = WARMUP_STEPS + 1
    eager = _run(tmp_path, "eager", method, cr, EAGER, steps=steps, log_every=1)
    fast = _run(tmp_path, "fast", method, cr, [], steps=steps, log_every=1)
    assert eager[2] == "eager" and fast[2] == "cuda-graph"
    columns = ["loss_d", "loss_d_real", "loss_d_fake", "loss_g", "penalty", "cr", "d_real", "d_fake"]
    history_a, history_b = eager[0].read_history()[columns], fast[0].read_history()[columns]
    torch.testing.assert_close(torch.tensor(history_b.values), torch.tensor(history_a.values), rtol=1e-5, atol=1e-6)
    for key in ("G", "D", "G_ema"):
        for name, value in eager[1][key].items():
            if value.is_floating_point():
                torch.testing.assert_close(fast[1][key][name], value, rtol=1e-5, atol=1e-6, msg=f"{key}.{name}")
    for key in ("opt_G", "opt_D"):
        for index, moments in eager[1][key]["state"].items():
            for name in ("exp_avg", "exp_avg_sq"):
                got = fast[1][key]["state"][index][name]
                torch.testing.assert_close(got, moments[name], rtol=1e-5, atol=1e-8, msg=f"{key}[{index}].{name}")


@gpu
@pytest.mark.parametrize(("method", "cr"), METHODS)
def test_the_graph_path_over_100_steps_uses_the_same_data_and_random_numbers(
    tmp_path: Path, method: str, cr: float
) -> None:
    eager = _run(tmp_path, "eager", method, cr, EAGER)
    fast = _run(tmp_path, "fast", method, cr, [])
    assert fast[2] == "cuda-graph"
    _assert_same_course(eager, fast)


class _TermAfter50(StepRunner):
    """SIGTERM to this process during the 50th step, as a preempted job gets: the loop saves the step and stops."""

    calls = 0

    def __call__(self) -> None:
        super().__call__()
        self.calls += 1
        if self.calls == 50:
            os.kill(os.getpid(), signal.SIGTERM)


@gpu
def test_the_graph_path_resumes_an_eager_run_stopped_by_sigterm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped at step 50 on the eager path, continued on the graph path in the same directory: the checkpoint's
    RNG states (mapped onto the GPU by the resume) are restored, so the run ends where the straight run does."""
    straight = _run(tmp_path, "straight", "gn", 0.0, EAGER)
    with monkeypatch.context() as patch:
        patch.setattr(loop, "StepRunner", _TermAfter50)
        with pytest.raises(KeyboardInterrupt):
            _run(tmp_path, "half", "gn", 0.0, EAGER)
    half = checkpoint.load(RunDir(tmp_path / "half").checkpoint_path("last"))
    at_50 = checkpoint.load(straight[0].checkpoint_path(50))
    assert half["step"] == 50 and half["data"] == at_50["data"]
    assert _same_arrays(half["rng"]["cuda"], at_50["rng"]["cuda"])
    resumed = _run(tmp_path, "half", "gn", 0.0, [])
    assert resumed[2] == "cuda-graph"
    _assert_same_course(straight, resumed)


@gpu
def test_every_switch_off_still_trains(tmp_path: Path) -> None:
    """The plain path (no graph, unfused Adam, data gathered on the host, no cuDNN autotuning) runs to the end."""
    run, state, path = _run(tmp_path, "plain", "gn", 0.0, [*EAGER, "train.fused_adam=false"])
    history = run.read_history()
    assert state["step"] == 100 and path == "eager"
    assert history["step"].tolist() == list(range(10, 101, 10)) and history["loss_d"].notna().all()


def _draws_per_step(graph: bool, body_extra: Callable[[torch.Tensor], None] = lambda out: None) -> tuple:
    """Eight steps of a body that draws five normals into a static buffer; what each step left there."""
    torch.cuda.manual_seed(7)
    out = torch.empty(5, device="cuda")

    def body() -> None:
        out.copy_(torch.randn(5, device="cuda"))
        body_extra(out)

    runner = StepRunner(body, torch.device("cuda"), graph)
    seen = []
    for _ in range(8):
        runner()
        seen.append(out.clone())
    return seen, runner, torch.cuda.get_rng_state()


@gpu
def test_cuda_graph_replays_draw_what_the_eager_steps_draw() -> None:
    eager, _, eager_rng = _draws_per_step(graph=False)
    replayed, runner, replayed_rng = _draws_per_step(graph=True)
    assert runner.path == "cuda-graph"
    assert all(torch.equal(a, b) for a, b in zip(replayed, eager, strict=True))
    assert torch.equal(replayed_rng, eager_rng)  # the generator advanced as far: a checkpoint saves the same state


@gpu
def test_an_uncapturable_step_on_cuda_falls_back_to_the_eager_draws() -> None:
    def host_sync_while_capturing(out: torch.Tensor) -> None:
        if torch.cuda.is_current_stream_capturing():
            out.sum().item()  # a copy to the host waits for the GPU: not allowed in a capture

    eager, _, eager_rng = _draws_per_step(graph=False)
    with pytest.warns(CaptureFallbackWarning):
        fallen, runner, fallen_rng = _draws_per_step(graph=True, body_extra=host_sync_while_capturing)
    assert runner.path.startswith("eager (capture failed: ") and not runner.captured
    assert all(torch.equal(a, b) for a, b in zip(fallen, eager, strict=True))
    assert torch.equal(fallen_rng, eager_rng)
