"""The fast training path: the pieces testable on the CPU here, the CUDA-graph equivalence where CUDA is."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from ganbench import recipe as recipes
from ganbench.store import RunDir
from ganbench.train import checkpoint, loop
from ganbench.train.ema import update_ema
from ganbench.train.fast import StepRunner, load_portable_state, make_adam, portable_state, set_lr
from ganbench.train.loop import LogQueue, train

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


def test_step_runner_runs_the_body_eagerly_off_cuda() -> None:
    calls: list[int] = []
    runner = StepRunner(lambda: calls.append(1), torch.device("cpu"), graph=True)
    for _ in range(5):
        runner()
    assert len(calls) == 5 and not runner.captured


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
steps = 100
n_dis = 2
batch_size_d = 32
batch_size_g = 64
lr_decay = "linear"
ema_decay = 0.99
ema_start = 10
tf32 = false
log_every = 10
sample_every = 0
checkpoint_every = 50
"""


EAGER = ["train.cuda_graph=false", "train.data_on_device=false"]


@pytest.fixture
def deterministic_cudnn() -> Iterator[None]:
    """cuDNN's non-deterministic backward kernels would make two eager runs differ already."""
    saved = torch.backends.cudnn.deterministic
    torch.backends.cudnn.deterministic = True
    yield
    torch.backends.cudnn.deterministic = saved


def _run(tmp_path: Path, name: str, method: str, cr: float, overrides: list[str]) -> tuple[RunDir, dict]:
    path = tmp_path / f"{name}.toml"
    path.write_text(IMAGE_RECIPE.format(method=method, cr=cr))
    run = RunDir(tmp_path / name)
    train(recipes.load(path, ["train.device=cuda", "train.cudnn_benchmark=false", *overrides]), run)
    return run, checkpoint.load(run.checkpoint_path("last"))


def _assert_same_run(a: tuple[RunDir, dict], b: tuple[RunDir, dict], rtol: float, atol: float) -> None:
    loss_columns = ["loss_d", "loss_d_real", "loss_d_fake", "loss_g", "penalty", "cr", "d_real", "d_fake"]
    history_a, history_b = a[0].read_history()[loss_columns], b[0].read_history()[loss_columns]
    torch.testing.assert_close(torch.tensor(history_b.values), torch.tensor(history_a.values), rtol=rtol, atol=atol)
    for key in ("G", "D", "G_ema"):
        for name, value in a[1][key].items():
            if value.is_floating_point():
                torch.testing.assert_close(b[1][key][name], value, rtol=rtol, atol=atol, msg=f"{key}.{name}")
    assert a[1]["step"] == b[1]["step"] == 100


@gpu
@pytest.mark.usefixtures("deterministic_cudnn")
@pytest.mark.parametrize(("method", "cr"), [("gn", 0.0), ("sn", 0.0), ("gran", 10.0), ("wgan-gp", 0.0)])
def test_graph_path_matches_the_eager_path_over_100_steps(tmp_path: Path, method: str, cr: float) -> None:
    """The captured step replays the eager step's kernels: losses and weights agree to float tolerance in fp32."""
    eager = _run(tmp_path, "eager", method, cr, EAGER)
    fast = _run(tmp_path, "fast", method, cr, [])
    _assert_same_run(eager, fast, rtol=1e-5, atol=1e-6)


@gpu
@pytest.mark.usefixtures("deterministic_cudnn")
def test_graph_path_resumes_from_an_eager_checkpoint(tmp_path: Path) -> None:
    """A run stopped at step 50 on the eager path continues on the graph path to the straight run's weights."""
    straight = _run(tmp_path, "straight", "gn", 0.0, EAGER)
    original = loop.Trainer._g_step

    def stop_at_50(self: loop.Trainer, totals: dict[str, torch.Tensor]) -> None:
        original(self, totals)
        if self.state.step == 49:  # train.steps is in the recipe hash: the half run is a run asked to stop
            self._stop_requested = True

    loop.Trainer._g_step = stop_at_50  # type: ignore[method-assign]
    try:
        with pytest.raises(KeyboardInterrupt):
            _run(tmp_path, "half", "gn", 0.0, EAGER)
    finally:
        loop.Trainer._g_step = original  # type: ignore[method-assign]
    assert checkpoint.load(RunDir(tmp_path / "half").checkpoint_path("last"))["step"] == 50
    resumed = _run(tmp_path, "half", "gn", 0.0, [])
    _assert_same_run(straight, resumed, rtol=1e-5, atol=1e-6)


@gpu
def test_every_switch_off_still_trains(tmp_path: Path) -> None:
    """The plain path (no graph, unfused Adam, data gathered on the host, no cuDNN autotuning) runs to the end."""
    run, state = _run(tmp_path, "plain", "gn", 0.0, [*EAGER, "train.fused_adam=false"])
    history = run.read_history()
    assert state["step"] == 100 and history["loss_d"].notna().all() and (history["g_steps_per_s"] > 0).all()
