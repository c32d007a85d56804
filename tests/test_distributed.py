"""Several processes (train/distributed.py) on the CPU with gloo, two processes: they compute one process's run.

Two processes with train.accumulate = 1 cut each batch into the pieces one process with train.accumulate = 2 cuts
it into, G's BatchNorm included (per piece in both), so their gradients must agree to rounding (float64, the
tolerance of tests/test_accumulate.py, whose cases they reuse); that one process with accumulate = 2 computes the
one-big-batch step is test_accumulate.py's claim. A short run of the quickstart on two processes gives the history
of one process; a stopped two-process run resumes on two processes to the uninterrupted run's weights, and on
one process; the second process writes nothing. In-training evaluation is sharded (train/sharded_evaluation.py):
the two processes' gathered features are one process's, in its order, and a two-process run with evaluation
writes the metric rows and best.pt of one process.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ganbench import data
from ganbench import recipe as recipes
from ganbench.evaluation import Evaluation, TrainingEvaluator
from ganbench.metrics import inception
from ganbench.nets import build_nets
from ganbench.recipe import Recipe
from ganbench.store import RunDir
from ganbench.train import checkpoint
from ganbench.train.distributed import DistributedSplit, train_distributed
from ganbench.train.loop import train
from ganbench.train.sharded_evaluation import ShardedEvaluation, gather_shares, local_batchnorm, share
from ganbench.train.tensorboard_events import FOLDER as TENSORBOARD_FOLDER
from ganbench.train.tensorboard_events import event_files
from tests.test_accumulate import CASES, RELATIVE_ERROR, largest_error, one_step
from tests.test_metrics_evaluate import WIDTH, image_recipe, points_recipe
from tests.test_metrics_inception import save_tiny_trunk

WORLD = 2
QUICKSTART_TOML = Path(__file__).resolve().parents[1] / "ganbench" / "recipes" / "quickstart.toml"
STEP_CASES = ["sn", "gn", "pgn", "gran", "wgan-gp", "lgan", "gn-bcr", "biggan-lgan-conditional"]
QUICKSTART = ["train.steps=30", "train.log_every=5", "train.checkpoint_every=10", "train.sample_every=0"]
QUICKSTART += ["eval.every=0", "train.device='cpu'"]


def _spawn(worker: Callable[..., None], tmp_path: Path, *args: Any) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    mp.spawn(worker, args=(str(tmp_path / "rendezvous"), *args), nprocs=WORLD, join=True)


def _join(rank: int, rendezvous: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=WORLD)


def _leave() -> None:
    """Tear the group down together: a process that leaves while another still works can abort it at exit."""
    dist.barrier()
    dist.destroy_process_group()


def _step_worker(rank: int, rendezvous: str, out: str) -> None:
    _join(rank, rendezvous)
    torch.set_default_dtype(torch.float64)
    results = {}
    for case in STEP_CASES:
        split = DistributedSplit(1, rank, WORLD)
        gradients, trainer = one_step(CASES[case], 1, Path(out) / f"r{rank}", bn_batch=True, split=split)
        split.reduce_totals(trainer.totals)
        results[case] = (gradients, {k: v.item() for k, v in trainer.totals.items()}, torch.get_rng_state())
    torch.save(results, Path(out) / f"rank{rank}.pt")
    _leave()


def test_two_processes_compute_one_process_step(tmp_path: Path) -> None:
    _spawn(_step_worker, tmp_path, str(tmp_path))
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        for case in STEP_CASES:
            want, trainer = one_step(CASES[case], WORLD, tmp_path / "single", bn_batch=True)
            got, got_totals, rng = ranks[0][case]
            error = largest_error(got, want)
            assert error <= RELATIVE_ERROR, f"{case}: two processes vs one, gradient relative error {error:.3e}"
            assert largest_error(ranks[1][case][0], got) == 0.0, f"{case}: the processes' gradients differ"
            totals = {k: v.item() for k, v in trainer.totals.items()}
            totals.pop("loss_g"), got_totals.pop("loss_g")  # after D's Adam step: see test_accumulate.py
            assert got_totals == pytest.approx(totals, rel=1e-10, abs=1e-12), case
            assert torch.equal(rng, ranks[1][case][2]), f"{case}: the processes' generators parted"
    finally:
        torch.set_default_dtype(previous)


def _forbid_writes() -> None:
    """Every way the trainer writes into a run directory raises in this process."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a process other than rank 0 wrote")

    for name in dir(RunDir):
        if name.startswith(("write", "update", "append", "lock", "remove")):
            setattr(RunDir, name, refuse)
    checkpoint.save = refuse  # type: ignore[assignment]


def _run_worker(
    rank: int, rendezvous: str, root: str, overrides: list[str], stop_at: int, evaluate: bool = False
) -> None:
    _join(rank, rendezvous)
    if rank != 0:
        _forbid_writes()
    recipe = recipes.load(QUICKSTART_TOML, overrides)
    run = RunDir(Path(root))
    if stop_at and rank == 0:  # a SIGTERM arriving during that step, as from a scheduler
        from ganbench.train import schedule

        setter = schedule.Schedules.set

        def set_and_signal(self: Any, step: int) -> tuple[float, float]:
            if step == stop_at:
                os.kill(os.getpid(), signal.SIGTERM)
            return setter(self, step)

        schedule.Schedules.set = set_and_signal  # type: ignore[method-assign]
    with contextlib.suppress(KeyboardInterrupt):
        train_distributed(recipe, run, evaluator_factory=TrainingEvaluator if evaluate else None)
    _leave()


def test_two_process_run_gives_the_single_process_history_and_resumes(tmp_path: Path) -> None:
    single = RunDir(tmp_path / "single")
    train(recipes.load(QUICKSTART_TOML, [*QUICKSTART, "train.accumulate=2"]), single)
    _spawn(_run_worker, tmp_path, str(tmp_path / "ddp"), QUICKSTART, 0)
    ddp = RunDir(tmp_path / "ddp")
    info = ddp.read_run()
    assert info["status"] == "finished" and info["world_size"] == WORLD
    assert info["step_path"].startswith("eager (cuda graph not used")
    want, got = single.read_history(), ddp.read_history()
    columns = ["loss_d", "loss_d_real", "loss_d_fake", "d_real", "d_fake", "loss_g", "grad_norm_real"]
    assert list(got["step"]) == list(want["step"]) == [5, 10, 15, 20, 25, 30]
    pd.testing.assert_frame_equal(got[columns], want[columns], rtol=1e-4, atol=1e-6)

    # a SIGTERM to rank 0 during step 13 (its schedules are set from step 12): all stop after it; resumed on two
    # processes and, separately, on one
    (tmp_path / "rendezvous").unlink(missing_ok=True)
    _spawn(_run_worker, tmp_path, str(tmp_path / "stopped"), QUICKSTART, 12)
    stopped = RunDir(tmp_path / "stopped")
    assert stopped.read_run()["status"] == "interrupted"
    assert checkpoint.load(stopped.checkpoint_path("last"))["step"] == 13
    one = tmp_path / "resumed-on-one"
    shutil.copytree(stopped.root, one)
    (tmp_path / "rendezvous").unlink(missing_ok=True)
    _spawn(_run_worker, tmp_path, str(stopped.root), QUICKSTART, 0)
    final = checkpoint.load(ddp.checkpoint_path("last"))
    saved = checkpoint.load(stopped.checkpoint_path("last"))
    assert saved["step"] == 30
    for net in ("G", "D"):
        for key, value in final[net].items():
            assert torch.allclose(saved[net][key], value, rtol=1e-5, atol=1e-7), f"{net}.{key}"
    # one process takes the checkpoint over (the same recipe: its BatchNorm then normalises whole batches)
    train(recipes.load(QUICKSTART_TOML, QUICKSTART), RunDir(one))
    assert checkpoint.load(RunDir(one).checkpoint_path("last"))["step"] == 30
    assert list(RunDir(one).read_history()["step"]) == [5, 10, 15, 20, 25, 30]


def test_train_nproc_launches_the_processes_on_the_recipe_with_its_overrides(tmp_path: Path) -> None:
    """`ganbench train --nproc 2` as a user types it: torch's launcher starts two trainers of one run directory, which
    take the --set overrides and say how many processes trained it."""
    run = RunDir(tmp_path / "run")
    sets = ["train.steps=12", "train.device='cpu'", "eval.every=0", "train.log_every=4"]
    command = ["train", str(QUICKSTART_TOML), "--run-dir", str(run.root), "--nproc", "2"]
    command += [part for item in sets for part in ("--set", item)]
    live = importlib.util.find_spec("tensorboard") is not None
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "ganbench", *command, *(["--tensorboard"] if live else [])],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    info = run.read_run()
    assert (info["status"], info["step"], info["world_size"]) == ("finished", 12, 2)
    assert run.read_recipe().train.steps == 12
    assert list(run.read_history()["step"]) == [4, 8, 12]
    if live:  # rank 0 alone writes events: one file, each history step once
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

        (events,) = event_files(run.root / TENSORBOARD_FOLDER)
        loss = [e.step for e in EventFileLoader(str(events)).Load() for v in e.summary.value if v.tag == "loss/loss_d"]
        assert loss == [4, 8, 12]


# sharded evaluation


def test_shares_are_the_batches_in_order() -> None:
    for batches in range(8):
        for world in (1, 2, 3):
            slices = [share(batches, rank, world) for rank in range(world)]
            assert [i for part in slices for i in range(batches)[part]] == list(range(batches))
            assert batches == 0 or len(range(batches)[slices[0]]) >= 1  # rank 0 always holds a batch


def feature_cases(trunk: str) -> dict[str, tuple[Recipe, int]]:
    """(recipe, seed of G) per case: points in uneven shares (5 batches of 90 and a last of 40: 3 + 2), BatchNorm
    in batch mode (G batches of 16: 3 batches, 2 + 1), and one batch only (rank 1's share is empty)."""
    points = points_recipe()
    points.eval.num_samples, points.eval.batch_size, points.eval.bn_mode = 400, 90, "running"
    batch_mode = image_recipe(["fid"])
    batch_mode.train.batch_size_g, batch_mode.eval.bn_mode = 16, "batch"
    one_batch = image_recipe(["fid"])
    one_batch.eval.batch_size, one_batch.eval.bn_mode = 64, "running"
    for recipe in (batch_mode, one_batch):
        recipe.eval.inception_weights = trunk
    return {"points": (points, 1), "batch-mode": (batch_mode, 2), "one-batch": (one_batch, 3)}


def _generator(recipe: Recipe, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_nets(recipe.model, data.output_shape(recipe.data))[0]


def _features_worker(rank: int, rendezvous: str, out: str, trunk: str) -> None:
    _join(rank, rendezvous)
    inception.POOL_DIM = WIDTH
    results = {}
    for case, (recipe, seed) in feature_cases(trunk).items():
        evaluation = ShardedEvaluation(recipe, "cpu", rank, WORLD)
        mine = share(evaluation.sample_batches(), rank, WORLD)
        results[case] = gather_shares(evaluation.features(_generator(recipe, seed), batches=mine), rank, WORLD)
    torch.save(results, Path(out) / f"features{rank}.pt")
    _leave()


def test_two_processes_gather_one_process_features_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trunk = str(save_tiny_trunk(tmp_path / "trunk.pt", out=WIDTH))
    _spawn(_features_worker, tmp_path, str(tmp_path), trunk)
    gathered = torch.load(tmp_path / "features0.pt", weights_only=False)
    assert torch.load(tmp_path / "features1.pt", weights_only=False) == {name: {} for name in gathered}
    monkeypatch.setattr(inception, "POOL_DIM", WIDTH)
    for case, (recipe, seed) in feature_cases(trunk).items():
        evaluation = Evaluation(recipe, "cpu")
        want = evaluation.features(_generator(recipe, seed))
        assert set(gathered[case]) == set(want), case
        for name, value in want.items():
            assert len(value) == recipe.eval.num_samples, case
            assert torch.equal(gathered[case][name], value), f"{case}: {name} differs from one process's"


def test_a_synchronised_generator_samples_with_its_own_batch_statistics() -> None:
    recipe = image_recipe()
    generator = _generator(recipe, 0)
    synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(generator))
    local = local_batchnorm(synced)
    assert local is not synced and local_batchnorm(generator) is generator
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in local.modules())
    z = torch.randn(8, recipe.model.z_dim)
    with torch.no_grad():
        assert torch.equal(local(z), generator(z))  # train mode: the batch's own statistics
        want = generator.state_dict()
        assert all(torch.equal(value, want[key]) for key, value in local.state_dict().items())


def evaluated_image_recipe(trunk: str) -> Recipe:
    """Shapes at 32 px, FID and precision/recall every 10 of 20 steps, raw and EMA G, BatchNorm batch mode: the
    40 samples are 3 G batches of 16, shared 2 + 1."""
    recipe = image_recipe(["fid", "pr"])
    recipe.train.device, recipe.train.steps, recipe.train.n_dis, recipe.train.ema_decay = "cpu", 20, 1, 0.9
    recipe.train.batch_size_d = recipe.train.batch_size_g = 16
    recipe.train.log_every, recipe.train.checkpoint_every, recipe.train.sample_every = 5, 10, 0
    recipe.eval.every, recipe.eval.inception_weights, recipe.eval.bn_mode = 10, trunk, "batch"
    return recipe


def _image_run_worker(rank: int, rendezvous: str, root: str, recipe_path: str) -> None:
    _join(rank, rendezvous)
    inception.POOL_DIM = WIDTH
    if rank != 0:
        _forbid_writes()
    train_distributed(recipes.load(Path(recipe_path)), RunDir(Path(root)), evaluator_factory=TrainingEvaluator)
    _leave()


def test_two_process_run_evaluates_as_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trunk = str(save_tiny_trunk(tmp_path / "trunk.pt", out=WIDTH))
    recipe = evaluated_image_recipe(trunk)
    path = tmp_path / "recipe.toml"
    path.write_text(recipe.to_toml())
    _spawn(_image_run_worker, tmp_path, str(tmp_path / "ddp"), str(path))
    monkeypatch.setattr(inception, "POOL_DIM", WIDTH)
    single = RunDir(tmp_path / "single")
    train(recipes.load(path, ["train.accumulate=2"]), single, None, TrainingEvaluator)
    ddp = RunDir(tmp_path / "ddp")
    want, got = single.read_metrics(), ddp.read_metrics()
    key = ["step", "generator", "metric"]
    assert len(want) == 2 * 2 * 3 and list(got[key].itertuples(index=False)) == list(want[key].itertuples(index=False))
    assert (want["value"] > 0).any() and (want["n_fake"] == 40).all()
    difference = ((got["value"] - want["value"]).abs() / want["value"].abs().clip(lower=1e-12)).max()
    assert difference <= 1e-6, f"two processes vs one: metric values differ by {difference:.3e} (relative)"
    assert list(got["fingerprint"]) == list(want["fingerprint"])
    assert ddp.read_run()["best"] == single.read_run()["best"]
    best = checkpoint.load(ddp.checkpoint_path("best"))["step"]
    assert best == checkpoint.load(single.checkpoint_path("best"))["step"] == ddp.read_run()["best"]["step"]
