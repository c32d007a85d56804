"""Several processes (train/distributed.py) on the CPU with gloo, two processes: they compute one process's run.

Two processes with train.accumulate = 1 cut each batch into the pieces one process with train.accumulate = 2 cuts
it into, G's BatchNorm included (per piece in both), so their gradients must agree to rounding (float64, the
tolerance of tests/test_accumulate.py, whose cases they reuse); that one process with accumulate = 2 computes the
one-big-batch step is test_accumulate.py's claim. A short run of the quickstart on two processes gives the history
of one process; a stopped two-process run resumes on two processes to the uninterrupted run's weights, and on
one process; the second process writes nothing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ganbench import recipe as recipes
from ganbench.store import RunDir
from ganbench.train import checkpoint
from ganbench.train.distributed import DistributedSplit, train_distributed
from ganbench.train.loop import train
from tests.test_accumulate import CASES, RELATIVE_ERROR, largest_error, one_step

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
    dist.destroy_process_group()


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


def _run_worker(rank: int, rendezvous: str, root: str, overrides: list[str], stop_at: int) -> None:
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
        train_distributed(recipe, run)
    dist.destroy_process_group()


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
