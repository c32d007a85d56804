"""The GPU check: what the CPU cannot show, measured on one GPU machine within a time budget, into one JSON and one
Markdown file. `benchmarks/gpu_check.sh` sets up the environment and runs this; see benchmarks/README.md.

    python benchmarks/gpu_check.py --results benchmarks/results          # on the GPU machine
    python benchmarks/gpu_check.py --results DIR --dry-run               # anywhere: tiny, CPU, synthetic, seconds

Stages, in this order, each in its own process (forked from this one, which imports torch once without touching
CUDA) under its own time cap (a stage that runs out keeps what it wrote):

  gpu_tests       pytest -m gpu over the test files that hold GPU tests (dry run: only collects them)
  fid_train_test  FID(train, test) of the CIFAR-10 JPEG copy with the FID TorchScript trunk: must be 3.113 ± 0.01
  step_speed      step_speed.py for cifar10_cnn_gn and cifar10_resnet_gn: graph path beside the eager reference
  resume_run      a short cifar10_cnn_gn run on the JPEG copy stopped by SIGTERM and resumed by `ganbench train`,
                  beside the same run uninterrupted: data consumed, random numbers drawn, losses, FID of EMA-G
  eval_speed      eval_speed.py: FID-50k wall time and its breakdown, and the FID difference to the fp32 plain path

Each stage's cap is its share of the budget or what is left of it, whichever is smaller, so an early stage that
finishes sooner leaves its time to the later ones. The dry run uses a tiny CIFAR-like JPEG archive and a tiny
TorchScript stand-in for the Inception trunk (16 features) that it writes itself.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
STASH = Path(os.path.expanduser("~/stash"))  # where the staging puts data, weights and wheels on the GPU machine
STAGES = ("gpu_tests", "fid_train_test", "step_speed", "resume_run", "eval_speed")
SHARES = {"gpu_tests": 85, "fid_train_test": 65, "step_speed": 115, "resume_run": 150, "eval_speed": 100}  # seconds
BUDGET_S = 515  # the stages together; with the set-up, under 9 minutes
RUN_OVERHEAD_S = 45  # the resume stage besides its training steps: two process starts, captures, two FID-10k
FID_TRAIN_TEST = 3.113  # FID(train 50k, test 10k) of the JPEG copy with the FID trunk, fp32, measured on an H100
FID_TRAIN_TEST_TOLERANCE = 0.01
DRY_POOL = 16  # feature width of the dry run's stand-in trunk


def _env_path(name: str, default: Path) -> Path:
    return Path(os.path.expanduser(os.environ.get(name) or str(default)))


class Sizes:
    """What each stage runs: the real sizes on a GPU, tiny ones in the dry run."""

    def __init__(self, dry: bool) -> None:
        self.dry = dry
        self.device = "cpu" if dry else "cuda"
        if dry:
            self.step_recipes = [("cifar10_cnn_gn", 2, 1), ("cifar10_resnet_gn", 1, 1)]  # (recipe, steps, repeats)
            self.step_args = ["--images", "32", "--workers", "0"]
            tiny = ["train.batch_size_d=4", "train.batch_size_g=4", "model.g_channels=8", "model.d_channels=8"]
            self.step_sets = tiny
            self.run_steps, self.run_checkpoint_every, self.run_log_every = 40, 5, 5
            self.run_stop_at = 10
            self.run_sets = ["train.batch_size_d=8", "train.batch_size_g=8", "model.g_channels=8", "model.d_channels=8"]
            self.run_fid_samples, self.eval_samples = 32, 48
            self.eval_sets = [*self.run_sets, "eval.batch_size=16"]
        else:
            self.step_recipes = [("cifar10_cnn_gn", 200, 3), ("cifar10_resnet_gn", 40, 3)]
            self.step_args = ["--images", "50000", "--workers", "4"]
            self.step_sets = []
            self.run_steps = int(os.environ.get("GPU_CHECK_RUN_STEPS") or 6000)
            self.run_checkpoint_every = 0  # from the length the time allows (a twelfth of it)
            self.run_log_every = 100
            self.run_stop_at = 0  # half of it
            self.run_sets = []
            self.run_fid_samples, self.eval_samples = 10_000, 50_000
            self.eval_sets = []

    def archive(self, work: Path) -> Path:
        if self.dry:
            return _dry_fixtures(work)[0]
        return _env_path("GANBENCH_CIFAR10_JPEG", STASH / "cifar10-jpeg-q75.tar.xz")

    def weights(self, work: Path) -> Path:
        if self.dry:
            return _dry_fixtures(work)[1]
        return _env_path("GANBENCH_INCEPTION_WEIGHTS", STASH / "default_1.pt")


# --- a stage's record, written after every measurement ------------------------------------------------------------


class Record:
    def __init__(self, path: Path) -> None:
        self.path, self.data = path, {}

    def set(self, **values: Any) -> None:
        self.data.update(values)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str))
        os.replace(tmp, self.path)


def _torch_facts() -> dict[str, Any]:
    import torch

    facts: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda}
    if torch.cuda.is_available():
        facts["gpu"] = torch.cuda.get_device_name()
        facts["cudnn"] = torch.backends.cudnn.version()
    return facts


# --- the dry run's stand-ins -------------------------------------------------------------------------------------


def _dry_fixtures(work: Path) -> tuple[Path, Path]:
    """A CIFAR-like JPEG archive (3 train and 2 test images per class) and a TorchScript stand-in for the trunk."""
    folder = work / "fixtures"
    archive, trunk = folder / "cifar10-jpeg-q75.tar.xz", folder / "trunk.pt"
    if archive.exists() and trunk.exists():
        return archive, trunk
    import io
    import tarfile
    import warnings

    import numpy as np
    import torch
    from PIL import Image
    from torch import nn

    from ganbench.data.cifar_jpeg import CLASSES

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with tarfile.open(archive, "w:xz") as tar:
        for split, count in (("train", 3), ("test", 2)):
            for name in CLASSES:
                for index in range(count):
                    buffer = io.BytesIO()
                    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, "JPEG", quality=75)
                    info = tarfile.TarInfo(f"cifar10/{split}/{name}/{index:04d}.jpg")
                    info.size = buffer.tell()
                    buffer.seek(0)
                    tar.addfile(info, buffer)

    class Trunk(nn.Module):
        """(N, 3, 299, 299) -> (N, DRY_POOL), as the FID trunk's contract, at a fraction of its cost."""

        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, kernel_size=13, stride=13)
            self.linear = nn.Linear(8, DRY_POOL)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(torch.relu(self.conv(x)).mean(dim=(2, 3)))

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated; the real trunk is TorchScript
        torch.jit.script(Trunk()).save(str(trunk))
    return archive, trunk


def _dry_pool_width(sizes: Sizes) -> None:
    if sizes.dry:
        from ganbench.metrics import inception

        inception.POOL_DIM = DRY_POOL


# --- the stages (each runs in its own process) ---------------------------------------------------------------------


def _pytest_outcomes(text: str) -> dict[str, Any]:
    """Counts, failed tests and the summary line from `pytest -v` output, complete or cut short."""
    results = re.findall(r"^(tests/\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)", text, flags=re.M)
    counts: dict[str, int] = {}
    for _, outcome in results:
        counts[outcome.lower()] = counts.get(outcome.lower(), 0) + 1
    summary = re.findall(r"^=+ (.+ in [\d.]+s.*?) =+$", text, flags=re.M)
    broken = counts.get("failed") or counts.get("error") or not summary
    return {
        "counts": counts,
        "failed": [test for test, outcome in results if outcome in ("FAILED", "ERROR")],
        "summary": summary[-1] if summary else "",
        "output_tail": text[-3000:] if broken else "",
    }


def stage_gpu_tests(sizes: Sizes, work: Path, cap: float, record: Record) -> None:
    """pytest -m gpu in this (forked) process: the test modules' imports are all that is left to load."""
    import pytest

    files = sorted(
        str(path.relative_to(REPO)) for path in (REPO / "tests").rglob("test_*.py") if "mark.gpu" in path.read_text()
    )
    mode = ["--collect-only", "-q"] if sizes.dry else ["-v"]
    args = ["-m", "gpu", "-p", "no:cacheprovider", "--rootdir", str(REPO), *mode, *files]
    record.set(files=files, command="pytest " + " ".join(args))
    log = work / "gpu_tests.log"  # this process's output
    start = log.stat().st_size
    code = pytest.main(args)
    sys.stdout.flush()
    text = log.read_text(errors="replace")[start:]
    record.set(exit_code=int(code))
    if sizes.dry:
        collected = [line for line in text.splitlines() if re.match(r"^tests/\S+::\S+$", line)]
        record.set(collected=len(collected), tests=collected)
    else:
        record.set(**_pytest_outcomes(text))


def stage_fid_train_test(sizes: Sizes, work: Path, cap: float, record: Record) -> None:
    import torch

    from ganbench.metrics.fid import frechet_distance
    from ganbench.metrics.inception import build_extractor
    from ganbench.metrics.refstats import reference_statistics
    from ganbench.recipe import DataConfig

    _dry_pool_width(sizes)
    device = torch.device(sizes.device)
    extractor = build_extractor("torch-fidelity", str(sizes.weights(work)), device)  # a TorchScript file: the trunk
    facts = {"extractor": extractor.name, "weights_sha256": extractor.weights_hash, "resize": extractor.resize}
    record.set(env=_torch_facts(), **facts)
    stats = {}
    for split in ("train", "test"):
        start = time.perf_counter()
        cfg = DataConfig(name="cifar10-jpeg", root=str(sizes.archive(work)), split=split)
        stats[split] = reference_statistics(cfg, extractor, split=split)
        record.set(**{f"{split}_images": stats[split].n, f"{split}_s": round(time.perf_counter() - start, 2)})
    train, test = stats["train"], stats["test"]
    fid = frechet_distance(train.mu, train.sigma, test.mu, test.sigma, device=device)
    expected = None if sizes.dry else FID_TRAIN_TEST
    within = None if expected is None else abs(fid - expected) <= FID_TRAIN_TEST_TOLERANCE
    record.set(fid=fid, expected=expected, tolerance=FID_TRAIN_TEST_TOLERANCE, within_tolerance=within)


def _script(name: str) -> Any:
    sys.path.insert(0, str(BENCHMARKS))
    return __import__(name)


def stage_step_speed(sizes: Sizes, work: Path, cap: float, record: Record) -> None:
    step_speed = _script("step_speed")
    record.set(env=_torch_facts(), results=[])
    results = []
    for recipe, steps, repeats in sizes.step_recipes:
        out = work / f"step_speed-{recipe}.json"
        args = ["--recipes", recipe, "--steps", str(steps), "--repeats", str(repeats), *sizes.step_args]
        args += ["--device", sizes.device, *(f"--set={item}" for item in sizes.step_sets), "--out", str(out)]
        step_speed.main(args)
        measured = json.loads(out.read_text())
        results += measured["results"]
        record.set(results=results, steps={**record.data.get("steps", {}), recipe: [steps, repeats]})


def _load_checkpoint(run: Path) -> dict[str, Any]:
    from ganbench.train import checkpoint

    return checkpoint.load(run / "checkpoints" / "last.pt")


def _same_arrays(a: Any, b: Any) -> bool | None:
    """Whether two lists of generator states are equal; None when neither run had any (no CUDA)."""
    import numpy as np

    if a is None and b is None:
        return None
    a, b = list(a or []), list(b or [])
    return len(a) == len(b) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b, strict=True))


def _run_steps(sizes: Sizes, work: Path, cap: float) -> tuple[int, str]:
    """The run's length: the asked one, or fewer when the graph path's rate measured by step_speed says that the
    straight run and the stopped-and-resumed one would not both fit in the stage's cap."""
    asked = sizes.run_steps
    if sizes.dry:
        return asked, "dry-run size"
    with contextlib.suppress(OSError, ValueError, KeyError, IndexError):
        rate = json.loads((work / "step_speed-cifar10_cnn_gn.json").read_text())["results"][0]["ganbench_g_steps_per_s"]
        fits = int(rate * (cap - RUN_OVERHEAD_S) / 2) // 1000 * 1000
        if fits < asked:
            return max(fits, 1000), f"{asked} asked; {rate:.0f} G-steps/s measured leaves time for {fits} per run"
        return asked, f"{asked} asked; fits at {rate:.0f} G-steps/s"
    return asked, f"{asked} asked; no step_speed rate to check it against"


def _run_json(run: Path) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        return json.loads((run / "run.json").read_text())
    return {}


def _output_to(log: Path) -> None:
    """This (forked) process's output, both the file descriptors and Python's streams, into `log`."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115  (lives as long as the process)
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115


def _fork_cli(args: list[str], log: Path) -> int:
    """`ganbench <args>` in a forked process: the console script's own code and exit code, without a new
    interpreter. Fork only where CUDA has not been touched yet. Returns the child's pid."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        _output_to(log)
        sys.argv = ["ganbench", *args]
        from ganbench.cli import main

        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _wait(pid: int, on_poll: Any = None) -> int:
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if on_poll is not None:
            on_poll()
        time.sleep(0.02)


def stage_resume_run(sizes: Sizes, work: Path, cap: float, record: Record) -> None:
    import numpy as np
    import torch

    from ganbench import recipe as recipes
    from ganbench.evaluation import Evaluation
    from ganbench.metrics.inception import build_extractor
    from ganbench.metrics.refstats import reference_statistics
    from ganbench.store import RunDir
    from ganbench.train import checkpoint

    _dry_pool_width(sizes)
    recipe_path = REPO / "recipes" / "cifar10_cnn_gn.toml"
    steps, steps_note = _run_steps(sizes, work, cap)
    checkpoint_every = sizes.run_checkpoint_every if sizes.dry else max(steps // 12 // 100 * 100, 100)
    stop_at = sizes.run_stop_at if sizes.dry else steps // 2
    sets = [
        "data.name=cifar10-jpeg",
        f"data.root={sizes.archive(work)}",
        f"train.device={sizes.device}",
        f"train.steps={steps}",
        f"train.checkpoint_every={checkpoint_every}",
        f"train.log_every={sizes.run_log_every}",
        "train.sample_every=0",
        "train.keep_checkpoints=false",
        "eval.every=0",
        *sizes.run_sets,
    ]
    record.set(recipe="cifar10_cnn_gn", overrides=sets, steps=steps, steps_note=steps_note)
    straight, half = work / "run-straight", work / "run-stopped"
    for folder in (straight, half):
        shutil.rmtree(folder, ignore_errors=True)

    # All three runs are `ganbench train` in processes forked from this one before it touches CUDA: the straight
    # run, the run stopped by SIGTERM once it has checkpointed half way, and that run resumed by the same command.
    def command(folder: Path) -> list[str]:
        return ["train", str(recipe_path), "--run-dir", str(folder), *(x for v in sets for x in ("--set", v))]

    start = time.perf_counter()
    code = _wait(_fork_cli(command(straight), work / "resume_run.straight.log"))
    done = _run_json(straight)
    record.set(
        straight={
            "exit_code": code,
            "status": done.get("status"),
            "step_path": done.get("step_path"),
            "seconds": round(time.perf_counter() - start, 1),
        }
    )

    start = time.perf_counter()
    pid = _fork_cli(command(half), work / "resume_run.stopped.log")
    signalled: dict[str, Any] = {}

    def stop_half_way() -> None:
        step = _run_json(half).get("step", 0)
        if not signalled and step >= stop_at:
            os.kill(pid, signal.SIGTERM)  # a preempted job: finish the step, checkpoint, stop
            signalled["after_step"] = step

    code = _wait(pid, stop_half_way)
    stopped = _run_json(half)
    record.set(
        stopped={
            "exit_code": code,
            "sigterm_after_step": signalled.get("after_step"),
            "status": stopped.get("status"),
            "step": stopped.get("step"),
            "seconds": round(time.perf_counter() - start, 1),
        }
    )
    start = time.perf_counter()
    code = _wait(_fork_cli(command(half), work / "resume_run.resumed.log"))
    resumed = _run_json(half)
    record.set(
        resumed={
            "exit_code": code,
            "status": resumed.get("status"),
            "step": resumed.get("step"),
            "step_path": resumed.get("step_path"),
            "seconds": round(time.perf_counter() - start, 1),
        }
    )

    a, b = _load_checkpoint(straight), _load_checkpoint(half)
    history_a, history_b = RunDir(straight).read_history(), RunDir(half).read_history()
    losses = {}
    for column in ("loss_d", "loss_g"):
        x, y = history_a[column].to_numpy(), history_b[column].to_numpy()
        spread = float(np.sqrt((x.var(ddof=1) + y.var(ddof=1)) / min(len(x), len(y))))
        losses[column] = {
            "straight_mean": float(x.mean()),
            "resumed_mean": float(y.mean()),
            "z": abs(float(x.mean() - y.mean())) / spread if spread > 0 else 0.0,
        }
    record.set(
        comparison={
            "both_at_final_step": a["step"] == b["step"] == steps,
            "same_data_position": a["data"] == b["data"],
            "same_cuda_rng": _same_arrays(a["rng"].get("cuda"), b["rng"].get("cuda")),
            "same_torch_rng": _same_arrays([a["rng"]["torch"]], [b["rng"]["torch"]]),
            "same_logged_steps": history_a["step"].tolist() == history_b["step"].tolist(),
            "logged_steps_unique": bool(history_b["step"].is_unique),
            "losses": losses,
        }
    )

    record.set(env=_torch_facts())  # only now: asking CUDA anything before the forks above would break them
    device = torch.device(sizes.device)
    recipe = recipes.load(recipe_path, sets)
    extractor = build_extractor("torch-fidelity", str(sizes.weights(work)), device)
    ref = reference_statistics(recipe.data, extractor, split="train")
    evaluation = Evaluation(
        recipe, device, metrics=["fid"], num_samples=sizes.run_fid_samples, extractor=extractor, ref=ref
    )
    fids = {}
    for name, folder in (("straight", straight), ("resumed", half)):
        generator, _ = checkpoint.load_generator(RunDir(folder), "last", ema=True, map_location=device)
        fids[name] = evaluation.scores(generator, ["fid"])["fid"]
        record.set(ema_fid={**fids, "num_samples": sizes.run_fid_samples})


def stage_eval_speed(sizes: Sizes, work: Path, cap: float, record: Record) -> None:
    _dry_pool_width(sizes)
    eval_speed = _script("eval_speed")
    out = work / "eval_speed-cifar10_cnn_gn.json"
    args = ["--recipe", "cifar10_cnn_gn", "--inception-weights", str(sizes.weights(work)), "--device", sizes.device]
    args += ["--num-samples", str(sizes.eval_samples), "--data", "recipe", "--out", str(out)]
    sets = ["data.name=cifar10-jpeg", f"data.root={sizes.archive(work)}", *sizes.eval_sets]
    args += [f"--set={item}" for item in sets]
    straight = work / "run-straight"
    if (straight / "checkpoints" / "last.pt").exists():
        args += ["--run", str(straight)]  # the resume stage's EMA-G: a FID in a realistic range
    record.set(env=_torch_facts(), command="python benchmarks/eval_speed.py " + " ".join(args))
    try:
        eval_speed.main(args)
    finally:
        if out.exists():
            record.set(**json.loads(out.read_text()))


STAGE_FUNCTIONS = {
    "gpu_tests": stage_gpu_tests,
    "fid_train_test": stage_fid_train_test,
    "step_speed": stage_step_speed,
    "resume_run": stage_resume_run,
    "eval_speed": stage_eval_speed,
}


# --- the driver --------------------------------------------------------------------------------------------------


def _stage_child(name: str, work: Path, cap: float, dry: bool, log: Path) -> None:
    """The forked stage process: its own process group (so a time-out stops its children too), output to its log."""
    os.setsid()
    _output_to(log)
    code = 0
    try:
        STAGE_FUNCTIONS[name](Sizes(dry), work, cap, Record(work / f"{name}.json"))
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _run_stage(name: str, cap: float, work: Path, dry: bool) -> dict[str, Any]:
    """Run one stage in a child forked from this process (torch is imported once, here, before CUDA is touched)."""
    record_path, log = work / f"{name}.json", work / f"{name}.log"
    record_path.unlink(missing_ok=True)
    start = time.monotonic()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _stage_child(name, work, cap, dry, log)
    status = None
    while status is None:
        done, wait_status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(wait_status)
            status = "ok" if code == 0 else f"failed (exit code {code})"
        elif time.monotonic() - start > cap:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)  # its children too (a training run checkpoints and stops)
            for _ in range(100):
                if os.waitpid(pid, os.WNOHANG)[0]:
                    break
                time.sleep(0.1)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            status = f"timed out after {int(cap)} s (partial results)"
        else:
            time.sleep(0.05)
    entry: dict[str, Any] = {"status": status, "seconds": round(time.monotonic() - start, 1), "cap_s": int(cap)}
    with contextlib.suppress(OSError, ValueError):
        entry.update(json.loads(record_path.read_text()))
    if status != "ok":
        text = log.read_text(errors="replace")
        entry["log_tail"] = text[-3000:]
        if name == "gpu_tests" and not dry and "counts" not in entry:
            entry.update(_pytest_outcomes(text))  # the tests that finished before the cap
    return entry


def _git(*args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def _nvidia_smi() -> str:
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def _meta(dry: bool, budget: float, started: float, stages: dict[str, Any]) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for entry in stages.values():
        facts = {**entry.get("env", {}), **facts}
    commit = os.environ.get("GPU_CHECK_COMMIT") or _git("rev-parse", "HEAD") or "unknown"
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "gpu": facts.get("gpu") or _nvidia_smi() or "none (CPU)",
        "nvidia_smi": _nvidia_smi(),
        "torch": facts.get("torch", ""),
        "cuda": facts.get("cuda", ""),
        "cudnn": facts.get("cudnn", ""),
        "python": sys.version.split()[0],
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": commit,
        "uncommitted_changes": bool(dirty),
        "dry_run": dry,
        "budget_s": budget,
        "wall_s": round(time.monotonic() - started, 1),
    }


def _fmt(value: Any, digits: int = 2) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return "-" if value is None else str(value)


def markdown(report: dict[str, Any]) -> str:
    meta, stages = report["meta"], report["stages"]
    lines = [f"# GPU check{' (dry run: tiny sizes on the CPU, not results)' if meta['dry_run'] else ''}", ""]
    lines += ["| | |", "|---|---|"]
    lines += [f"| {key} | {_fmt(value)} |" for key, value in meta.items()]
    lines += ["", "| stage | status | seconds | cap (s) |", "|---|---|---|---|"]
    lines += [f"| {name} | {s['status']} | {s['seconds']} | {s['cap_s']} |" for name, s in stages.items()]

    tests = stages.get("gpu_tests", {})
    lines += ["", "## GPU tests (`pytest -m gpu`)", ""]
    if "counts" in tests:
        lines += [f"{tests.get('summary') or tests['counts']}", ""]
        lines += [f"- FAILED {test}" for test in tests.get("failed", [])]
    elif "collected" in tests:
        lines += [f"collected {tests['collected']} GPU tests (dry run: not run)"]

    fid = stages.get("fid_train_test", {})
    lines += ["", "## FID(train, test) of the CIFAR-10 JPEG copy, FID TorchScript trunk", ""]
    if "fid" in fid:
        check = {True: "within", False: "OUTSIDE", None: "no check in a dry run"}[fid.get("within_tolerance")]
        lines += [
            f"FID {fid['fid']:.4f} (expected {_fmt(fid.get('expected'), 3)} ± {fid['tolerance']}: {check}); "
            f"{fid.get('train_images')} train and {fid.get('test_images')} test images; "
            f"train {fid.get('train_s')} s, test {fid.get('test_s')} s"
        ]

    step = stages.get("step_speed", {})
    lines += ["", "## Training step speed (median of the timed repeats; noise images)", ""]
    lines += [
        "| recipe | reference G-steps/s | ganbench G-steps/s | ratio | reference img/s | ganbench img/s | "
        "reference peak GiB | ganbench peak GiB | ganbench path |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in step.get("results", []):
        lines.append(
            f"| {r['recipe']} | {_fmt(r['reference_g_steps_per_s'])} | {_fmt(r['ganbench_g_steps_per_s'])} | "
            f"{_fmt(r['ratio'])} | {_fmt(r['reference_images_per_s'], 0)} | {_fmt(r['ganbench_images_per_s'], 0)} | "
            f"{_fmt(r['reference_peak_gib'])} | {_fmt(r['ganbench_peak_gib'])} | {r['ganbench_step_path']} |"
        )

    run = stages.get("resume_run", {})
    lines += ["", f"## Stopped and resumed run ({run.get('steps', '-')} steps of cifar10_cnn_gn on the JPEG copy)", ""]
    for key in ("straight", "stopped", "resumed"):
        if key in run:
            lines.append(f"- {key}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in run[key].items()))
    if "comparison" in run:
        comparison = dict(run["comparison"])
        losses = comparison.pop("losses", {})
        lines.append("- comparison: " + ", ".join(f"{k} {v}" for k, v in comparison.items()))
        for column, values in losses.items():
            lines.append(f"- {column}: " + ", ".join(f"{k} {_fmt(v, 4)}" for k, v in values.items()))
    if "ema_fid" in run:
        lines.append("- EMA-G FID: " + ", ".join(f"{k} {_fmt(v, 3)}" for k, v in run["ema_fid"].items()))

    ev = stages.get("eval_speed", {})
    lines += ["", f"## FID evaluation ({ev.get('num_samples', '-')} samples of {ev.get('generator', '-')})", ""]
    lines += ["| path | wall s | FID | generate s | features s | statistics s | sqrt s |", "|---" * 7 + "|"]
    for side in ("reference", "ganbench"):
        if f"{side}_s" in ev:
            parts = ev.get(f"{side}_parts_s", {})
            cells = " | ".join(_fmt(parts.get(part)) for part in ("generate", "features", "statistics", "sqrt"))
            lines.append(f"| {side} | {_fmt(ev[f'{side}_s'])} | {_fmt(ev[f'{side}_fid'], 4)} | {cells} |")
    if "fid_difference" in ev:
        lines += ["", f"|ΔFID| = {ev['fid_difference']:.2e} (allowed 0.01); ganbench's parts come from a staged pass"]
    return "\n".join(lines) + "\n"


def _without_machine_paths(value: Any, work: Path) -> Any:
    """The report names the scratch folder <work> and the home folder ~: no machine's paths in files kept."""
    if isinstance(value, dict):
        return {key: _without_machine_paths(item, work) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_machine_paths(item, work) for item in value]
    if isinstance(value, str):
        return value.replace(str(work), "<work>").replace(str(Path.home()), "~")
    return value


def drive(results: Path, work: Path, budget: float, dry: bool, only: list[str]) -> int:
    started = time.monotonic()
    deadline = started + budget
    results.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    stages: dict[str, Any] = {}
    report: dict[str, Any] = {}
    for name in STAGES:
        if name not in only:
            continue
        left = deadline - time.monotonic()
        if left < 10:
            stages[name] = {"status": "skipped: the budget was spent", "seconds": 0, "cap_s": 0}
        else:
            cap = left if dry else min(SHARES[name], left)
            print(f"[gpu_check] {name} (cap {int(cap)} s) ...", flush=True)
            stages[name] = _run_stage(name, cap, work, dry)
            print(f"[gpu_check] {name}: {stages[name]['status']} in {stages[name]['seconds']} s", flush=True)
        report = _without_machine_paths({"meta": _meta(dry, budget, started, stages), "stages": stages}, work)
        (results / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))  # after every stage
        (results / "gpu_check.md").write_text(markdown(report))
    print(f"[gpu_check] wrote {results / 'gpu_check.json'} and {results / 'gpu_check.md'}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=BENCHMARKS / "results", help="where the JSON and .md go")
    parser.add_argument("--work", type=Path, help="scratch folder for runs and logs (default: a new temporary one)")
    parser.add_argument("--budget", type=float, default=BUDGET_S, help=f"seconds for all stages (default {BUDGET_S})")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU with synthetic stand-ins")
    parser.add_argument("--only", default=",".join(STAGES), help="comma list of stages to run")
    args = parser.parse_args(argv)
    dry = args.dry_run or os.environ.get("GPU_CHECK_DRY_RUN", "") not in ("", "0")
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu_check-"))
    # Imported once here, inherited by every forked stage; nothing here touches CUDA, so the children may. (CUDA
    # in a child forked after the parent initialised it fails; asking whether CUDA is available by NVML does not
    # initialise it.)
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    import torch  # noqa: F401

    import ganbench.evaluation  # noqa: F401
    import ganbench.train.loop  # noqa: F401

    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(only) - set(STAGES))
    if unknown:
        parser.error(f"--only: unknown stage {', '.join(unknown)}; choose from {', '.join(STAGES)}")
    return drive(args.results, work, args.budget, dry, only)


if __name__ == "__main__":
    sys.exit(main())
