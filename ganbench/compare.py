"""`ganbench compare`: expand methods × seeds into run directories and run what is missing.

A controlled comparison takes one base recipe and changes only the method and the seed (plus the loss family,
where a method needs one: WGAN-GP the Wasserstein loss, LGAN an LGAN loss). The paper protocol takes each
method's own paper recipe instead. Run directories are stable, results/compare/<base>/<method>/seed-<s>, so a
second call finds what the first made: finished runs are skipped, interrupted ones resumed.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ganbench import recipe as recipes
from ganbench import slurm
from ganbench.errors import GanbenchError, RecipeError, RunDirError
from ganbench.files import output_problem
from ganbench.launch import train_command, trainer_environment
from ganbench.progress import NullProgress, Progress
from ganbench.recipe import Recipe
from ganbench.report import shipped_recipe_dirs
from ganbench.report.collect import flatten
from ganbench.slurm import SlurmResources
from ganbench.store import RunDir

PROTOCOLS = ("controlled", "paper")
LAUNCHERS = ("local", "slurm")
STATES = ("missing", "interrupted", "running", "finished", "diverged", "failed", "conflict", "submitted", "queued")
TO_RUN = ("missing", "interrupted", "failed")  # a diverged run would diverge again; a conflict needs the user
# (running: another process holds the run's lock and trains it now; starting a second trainer would be refused;
# submitted: a Slurm job was submitted for it by this call; queued: a Slurm job from an earlier call has it)
METHOD_ALIASES = {"wgangp": "wgan-gp"}  # recipe file names spell methods without dashes
RECIPE_TAGS = {"wgan-gp": "wgangp"}
# The LGAN code's default objective (sGAN_type "exp", ZhimingZhou/LGANs-for-reproduce code/sobolev_cifar10.py), as
# in the recipes/*_lgan.toml paper recipes; G's loss follows loss.lgan_psi_max, false by default as in that code.
LGAN_DEFAULT_LOSS = "lgan-exp"
_PAPER_STEM = re.compile(r"^(?P<prefix>.+?)_(?P<method>[a-z0-9]+)(?P<cr>_b?cr)?$")


@dataclass
class PlannedRun:
    method: str
    seed: int
    recipe: Recipe
    run_dir: Path
    state: str  # one of STATES
    changes: list[str] = field(default_factory=list)  # what differs from the base recipe, "key = value"
    message: str = ""  # why a run failed or conflicts, or the job id of a submitted run
    source: Path | None = None  # the recipe file it was made from
    overrides: list[str] = field(default_factory=list)  # the --set items that make `recipe` from `source`


# ----------------------------------------------------------------------------------------------------
# Where the shipped recipes are


def recipe_dirs() -> list[Path]:
    """The shipped recipe folders: package data (installed), then the source checkout's recipes/ (the report looks
    paper recipes up in the same folders)."""
    return shipped_recipe_dirs()


def default_recipe() -> Path:
    for folder in recipe_dirs():
        if (folder / "quickstart.toml").is_file():
            return folder / "quickstart.toml"
    raise RecipeError("quickstart.toml: not found among the shipped recipes; give --recipe BASE.toml")


# ----------------------------------------------------------------------------------------------------
# Planning


def parse_methods(text: str) -> list[str]:
    """`"sn, gn,pgn"` -> ["sn", "gn", "pgn"]; recipe-file tags such as wgangp accepted, duplicates dropped."""
    found: list[str] = []
    for item in text.split(","):
        name = METHOD_ALIASES.get(item.strip().lower(), item.strip().lower())
        if name and name not in found:
            found.append(name)
    if not found:
        raise GanbenchError(f"--methods {text!r}: give at least one method, e.g. --methods sn,gn,pgn,gran")
    return found


MAX_SEEDS = 1000  # a grid larger than this is a typo, not an experiment


def parse_seeds(text: str) -> list[int]:
    """`"0,1,2"` or `"0-2"` -> [0, 1, 2]; seeds are non-negative and at most MAX_SEEDS of them."""
    seeds: list[int] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        span = re.fullmatch(r"(\d+)-(\d+)", item)
        if span:
            low, high = int(span[1]), int(span[2])
            if high < low:
                raise GanbenchError(f"--seeds {text}: the range {item} is empty; write it low-high, e.g. 0-4")
            if high - low + 1 + len(seeds) > MAX_SEEDS:
                raise GanbenchError(f"--seeds {text}: more than {MAX_SEEDS} seeds; give a smaller range")
            seeds += range(low, high + 1)
        elif re.fullmatch(r"\d+", item):
            seeds.append(int(item))
        elif re.fullmatch(r"-\d+", item):
            raise GanbenchError(f"--seeds {text}: seed {item} is negative; seeds are 0, 1, 2, ...")
        else:
            raise GanbenchError(f"--seeds {text}: expected integers such as 0,1,2 or a range 0-4")
    if not seeds:
        raise GanbenchError(f"--seeds {text!r}: give at least one seed, e.g. --seeds 0,1,2")
    if len(set(seeds)) > MAX_SEEDS:
        raise GanbenchError(f"--seeds {text}: more than {MAX_SEEDS} seeds; give fewer")
    return list(dict.fromkeys(seeds))


def needed_loss(method: str, loss: str) -> str | None:
    """The loss a method needs instead of `loss`, or None when `loss` suits it."""
    if method == "wgan-gp" and loss != "wasserstein":
        return "wasserstein"
    if method == "lgan" and not loss.startswith("lgan-"):
        return LGAN_DEFAULT_LOSS
    return None


def _override_keys(overrides: list[str]) -> set[str]:
    return {".".join(recipes.parse_override(item)[0]) for item in overrides}


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _changes(recipe: Recipe, base: Recipe, reasons: dict[str, str]) -> list[str]:
    ours, theirs = flatten(recipe.to_dict()), flatten(base.to_dict())
    changes = []
    for key in sorted(set(ours) | set(theirs)):
        if key != "name" and ours.get(key) != theirs.get(key):
            reason = f" ({reasons[key]})" if key in reasons else ""
            changes.append(f"{key} = {ours.get(key)!r}{reason}")
    return changes


def plan(
    methods: list[str],
    *,
    recipe_path: Path | None = None,
    seeds: list[int] | None = None,
    overrides: list[str] | None = None,
    results: Path = Path("results"),
    protocol: str = "controlled",
) -> list[PlannedRun]:
    """One planned run per (method, seed), each with its recipe, stable run directory and current state."""
    seeds = list(dict.fromkeys(seeds if seeds is not None else [0]))
    overrides = list(overrides or [])
    methods = [METHOD_ALIASES.get(m, m) for m in dict.fromkeys(methods)]
    if not methods:
        raise GanbenchError("--methods: give at least one method, e.g. --methods sn,gn,pgn,gran")
    if not seeds:
        raise GanbenchError("--seeds: give at least one seed, e.g. --seeds 0,1,2")
    if protocol not in PROTOCOLS:
        raise GanbenchError(f"--protocol {protocol}: choose one of {', '.join(PROTOCOLS)}")
    user_keys = _override_keys(overrides)
    for key, option in (("method.name", "--methods"), ("seed", "--seeds")):
        if key in user_keys:
            raise RecipeError(f"--set {key}: compare sets it for each run; use {option} instead")
    if protocol == "controlled":
        return _plan_controlled(methods, recipe_path or default_recipe(), seeds, overrides, user_keys, results)
    return _plan_paper(methods, recipe_path, seeds, overrides, results)


def _plan_controlled(
    methods: list[str],
    base_path: Path,
    seeds: list[int],
    overrides: list[str],
    user_keys: set[str],
    results: Path,
) -> list[PlannedRun]:
    base = recipes.load(base_path, overrides)
    changed = bool(overrides) and base.hash() != recipes.load(base_path).hash()
    root = results / "compare" / (f"{base.name}-{base.hash()[:8]}" if changed else base.name)
    planned = []
    for method in methods:
        extra, reasons = [f"method.name={_toml_string(method)}"], {}
        loss = None if "loss.name" in user_keys else needed_loss(method, base.loss.name)
        if loss is not None:
            extra.append(f"loss.name={_toml_string(loss)}")
            reasons["loss.name"] = f"{method} needs this loss family"
        for seed in seeds:
            resolved = recipes.load(base_path, [*overrides, *extra, f"seed={seed}"])
            run_dir = root / method / f"seed-{seed}"
            state, message = run_state(run_dir, resolved)
            changes = _changes(resolved, base, reasons)
            sets = [*overrides, *extra, f"seed={seed}"]
            planned.append(PlannedRun(method, seed, resolved, run_dir, state, changes, message, base_path, sets))
    return planned


def paper_recipe_path(base_path: Path, method: str) -> Path:
    """cifar10_cnn_gn_cr.toml with method sn -> cifar10_cnn_sn_cr.toml, beside it."""
    match = _PAPER_STEM.match(base_path.stem)
    if match is None:
        raise RecipeError(
            f"--recipe {base_path}: not a paper recipe name (<dataset>_<arch>_<method>[_cr].toml); "
            "give one of the recipes in recipes/, or use --protocol controlled"
        )
    tag = RECIPE_TAGS.get(method, method)
    return base_path.with_name(f"{match['prefix']}_{tag}{match['cr'] or ''}.toml")


def _plan_paper(
    methods: list[str], base_path: Path | None, seeds: list[int], overrides: list[str], results: Path
) -> list[PlannedRun]:
    if base_path is None:
        raise RecipeError(
            "--protocol paper: give --recipe, one of the paper recipes (e.g. recipes/cifar10_cnn_gn.toml); "
            "each method's recipe is taken from beside it"
        )
    match = _PAPER_STEM.match(base_path.stem)
    paths = {method: paper_recipe_path(base_path, method) for method in methods}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        raise RecipeError(f"--protocol paper: no paper recipe {', '.join(missing)}; drop those methods")
    assert match is not None
    label = f"{match['prefix']}{match['cr'] or ''}-paper"
    if overrides:  # other settings, other runs: never resume a run made with different overrides
        label += "-" + hashlib.sha256("\n".join(overrides).encode()).hexdigest()[:8]
    root = results / "compare" / label
    base = recipes.load(base_path, overrides)
    planned = []
    for method, path in paths.items():
        for seed in seeds:
            resolved = recipes.load(path, [*overrides, f"seed={seed}"])
            run_dir = root / method / f"seed-{seed}"
            state, message = run_state(run_dir, resolved)
            changes = [f"recipe {path.name}", *_changes(resolved, base, {})]
            sets = [*overrides, f"seed={seed}"]
            planned.append(PlannedRun(method, seed, resolved, run_dir, state, changes, message, path, sets))
    return planned


def run_state(run_dir: Path, recipe: Recipe) -> tuple[str, str]:
    """What a run directory holds for `recipe`: (state, message)."""
    run = RunDir(run_dir)
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return "missing", ""
    if not run.exists():
        if _only_our_recipe(run, recipe):
            return "missing", "a start that stopped before its first checkpoint"
        return "conflict", f"{run_dir}: exists and is not a run directory; move it away"
    try:
        info = run.read_run()
    except RunDirError as err:
        return "conflict", str(err)
    if info.get("recipe_hash") != recipe.hash():
        return "conflict", (
            f"{run_dir}: holds a run of a different recipe (hash {info.get('recipe_hash')}, planned "
            f"{recipe.hash()}); move it away or change --results"
        )
    status = info.get("status")
    if status in ("finished", "diverged", "failed"):
        return str(status), str(info.get("error") or "")
    holder = run.lock_holder()
    if holder is not None:
        return "running", f"trained now by {holder}"
    return "interrupted", f"stopped at step {info.get('step', 0)} of {info.get('steps', '?')}"


def _only_our_recipe(run: RunDir, recipe: Recipe) -> bool:
    """A folder holding only this recipe's recipe.toml: a start killed before its run.json was written."""
    names = {path.name for path in run.root.iterdir()}
    return names == {"recipe.toml"} and run.recipe_path.read_text() == recipe.to_toml()


def format_plan(planned: list[PlannedRun], commands: bool = False) -> str:
    """The plan as plain text, one line per run: method, seed, state, run directory, what differs; with `commands`,
    under each run the `ganbench train` line that makes the same run by hand (its --set overrides)."""
    lines = []
    for item in planned:
        what = "; ".join(item.changes) or "the base recipe"
        note = f" ({item.message})" if item.message else ""
        lines.append(f"{item.method:<10} seed {item.seed:<3} {item.state:<11} {item.run_dir}  [{what}]{note}")
        if commands:
            lines.append("    " + manual_command(item))
    return "\n".join(lines)


def manual_command(item: PlannedRun) -> str:
    """`ganbench train SOURCE --set ... --run-dir RUN_DIR`: the run as a user would start it alone."""
    sets = " ".join(f"--set {shlex.quote(override)}" for override in item.overrides)
    source = shlex.quote(str(item.source)) if item.source else "RECIPE.toml"
    return f"ganbench train {source} {sets} --run-dir {shlex.quote(str(item.run_dir))}".replace("  ", " ")


def did_not_finish(done: list[PlannedRun]) -> list[PlannedRun]:
    """The runs of a finished call that did not end finished (or submitted, or still trained by another process)."""
    return [item for item in done if item.state not in ("finished", "submitted", "queued", "running")]


# ----------------------------------------------------------------------------------------------------
# Running


def log_path(item: PlannedRun) -> Path:
    return item.run_dir.parent.parent / "logs" / f"{item.method}-seed-{item.seed}.log"


def local_devices() -> list[str | None]:
    """One slot per visible GPU ("0", "1", ...), or a single CPU slot (None) when there is none."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [str(index) for index in range(count)] or [None]


def check_outputs(results: Path, planned: Sequence[PlannedRun] = ()) -> None:
    """GanbenchError when `results` or a folder the plan would write (run directories, logs) cannot be made as a
    folder: a file in the way, or a parent that is a file."""
    folders = [results]
    for item in planned:
        folders += [item.run_dir, log_path(item).parent]
    for folder in folders:
        problem = output_problem(folder, folder=True)
        if problem:
            where = "" if folder == results else f"{folder}: "
            raise GanbenchError(f"--results {results}: {where}{problem}; give another --results folder")


def check_launch(launcher: str, jobs: int) -> None:
    """GanbenchError naming the choices for an unknown launcher, or a number of jobs out of range."""
    if launcher not in LAUNCHERS:
        raise GanbenchError(f"--launcher {launcher}: unknown launcher; choose one of {', '.join(LAUNCHERS)}")
    if not 1 <= jobs <= MAX_JOBS:
        raise GanbenchError(f"--jobs {jobs}: give 1 to {MAX_JOBS} runs at once per device")


def run_plan(
    planned: list[PlannedRun],
    *,
    launcher: str = "local",
    devices: list[str] | None = None,
    progress: Progress | None = None,
    slurm_resources: SlurmResources | None = None,
    jobs: int = 1,
) -> list[PlannedRun]:
    """Run what is missing, resume what was interrupted or failed, skip the rest; returns the new states.

    local: `jobs` `ganbench train` subprocesses per device at a time (devices: GPU indices; default every visible
    GPU, else the CPU; runs whose recipes all ask for train.device = "cpu" share the CPU, `jobs` at a time); a run
    that fails does not stop the others. slurm: submit each run through submitit (`pip install 'ganbench[slurm]'`)
    asking for `slurm_resources` and return at once: states "submitted", or "queued" where a live job has the run.
    """
    check_launch(launcher, jobs)
    todo = [item for item in planned if item.state in TO_RUN]
    if launcher == "slurm":
        done = _submit_slurm(todo, slurm_resources or SlurmResources())
    else:
        slots: list[str | None] | None = list(devices) if devices is not None else None
        if slots is None and todo and all(item.recipe.train.device == "cpu" for item in todo):
            slots = [None]  # the CPU, asked for by every recipe
        done = _run_local(todo, slots, progress or NullProgress(), jobs)
    return [done.get(id(item), item) for item in planned]


MAX_JOBS = 64


def _run_local(
    todo: list[PlannedRun], devices: list[str | None] | None, progress: Progress, jobs: int = 1
) -> dict[int, PlannedRun]:
    if not todo:
        return {}
    slots = list(devices) if devices else local_devices()
    trainers = _Trainers([device for device in slots for _ in range(jobs)], jobs)
    done: dict[int, PlannedRun] = {}
    progress.start("compare", len(todo))
    with tempfile.TemporaryDirectory(prefix="ganbench-compare-") as scratch:
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=trainers.slots.qsize())
        futures = {pool.submit(trainers.train, item, Path(scratch)): item for item in todo}
        try:
            for future in concurrent.futures.as_completed(futures):
                item = future.result()
                done[id(futures[future])] = item
                progress.advance(1, method=item.method, seed=item.seed, state=item.state)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            trainers.stop()
            raise
        finally:
            pool.shutdown(wait=True)
            progress.finish()
    return done


class _Trainers:
    """`ganbench train` subprocesses, one per device slot at a time, stoppable as a group."""

    GRACE_SECONDS = 30.0

    def __init__(self, devices: list[str | None], per_device: int = 1) -> None:
        self.per_device = per_device
        self.slots: queue.Queue[str | None] = queue.Queue()
        for device in devices:
            self.slots.put(device)
        self.live: list[subprocess.Popen[bytes]] = []
        self.lock = threading.Lock()
        self.stopping = False

    def train(self, item: PlannedRun, scratch: Path) -> PlannedRun:
        device = self.slots.get()
        try:
            return self._train(item, device, scratch)
        finally:
            self.slots.put(device)

    def _train(self, item: PlannedRun, device: str | None, scratch: Path) -> PlannedRun:
        _clear_stale_start(item)
        recipe_file = scratch / f"{item.method}-seed-{item.seed}.toml"
        recipe_file.write_text(item.recipe.to_toml())
        env = trainer_environment()
        if device is not None:
            env["CUDA_VISIBLE_DEVICES"] = device
        elif self.per_device > 1 and "OMP_NUM_THREADS" not in env:  # CPU runs side by side share the cores
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // self.per_device))
        log = log_path(item)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as handle:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            handle.write(f"--- {stamp} {item.state} -> train on {device or 'cpu'}\n".encode())
            handle.flush()
            with self.lock:
                if self.stopping:
                    return item
                command = train_command(recipe_file, item.run_dir)
                process = subprocess.Popen(
                    command, stdout=handle, stderr=subprocess.STDOUT, env=env, preexec_fn=_stop_with_parent
                )
                self.live.append(process)
            code = process.wait()
            with self.lock:
                self.live.remove(process)
        state, message = run_state(item.run_dir, item.recipe)
        if code != 0 and state != "diverged":  # died, however: killed (SIGKILL by the OOM killer), crashed, refused
            state = "failed"
        if code != 0:
            message = failure_message(item, code, log)
        return dataclasses.replace(item, state=state, message=message)

    def stop(self) -> None:
        """Let running trainers checkpoint and stop: a Ctrl-C in the terminal reached them already; others
        get one SIGINT after a grace period (one only: a second one stops a trainer without saving)."""
        with self.lock:
            self.stopping = True
            running = list(self.live)
        for process in running:
            try:
                process.wait(timeout=self.GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGINT)
                process.wait()


def _stop_with_parent() -> None:
    """In the trainer, before it starts: ask Linux to send it SIGHUP (checkpoint and stop) when compare dies, even
    by SIGKILL, so no trainer is orphaned to keep writing. Not SIGTERM: Linux sends the signal again each time the
    orphan passes to another of compare's threads, and a second SIGTERM stops a trainer at once, mid-save; the
    trainer takes every SIGHUP as the same request. Elsewhere a no-op."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGHUP)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent died before the call: stop now
            os.kill(os.getpid(), signal.SIGHUP)


def _clear_stale_start(item: PlannedRun) -> None:
    """Remove the lone recipe.toml of a start killed before its run.json (the trainer refuses the folder)."""
    run = RunDir(item.run_dir)
    if item.state == "missing" and item.run_dir.is_dir() and _only_our_recipe(run, item.recipe):
        run.recipe_path.unlink()


def failure_message(item: PlannedRun, code: int, log: Path) -> str:
    """Why a trainer ended with `code`, in one line: the run's own error line (run.json "error", written by the
    trainer), else the signal that killed it, else the error line it printed, naming the log either way."""
    try:
        error = str(RunDir(item.run_dir).read_run().get("error") or "")
    except RunDirError:
        error = ""
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
        why = f"killed by {name}"
        if -code == signal.SIGKILL:
            why += " (often the kernel's out-of-memory killer: see `dmesg`; lower the batch size or run fewer --jobs)"
        error = f"{why}; {error}" if error else why
    if not error:
        error = _error_line(log) or f"exit code {code}"
    return f"{error} (log: {log})"


def _error_line(path: Path) -> str:
    """The last line the trainer printed as an error ("error: ...", "failed: ...", a traceback's last line)."""
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith(("error:", "failed:")):
            return line
    return lines[-1] if lines else ""


# ----------------------------------------------------------------------------------------------------
# Slurm


def _submit_slurm(todo: list[PlannedRun], resources: SlurmResources) -> dict[int, PlannedRun]:
    """One job per run through submitit (ganbench.slurm); a run some live job trains already is not submitted."""
    done: dict[int, PlannedRun] = {}
    slurm.require_submitit()
    if not todo:
        return done
    request = slurm.resolve(resources, cpu_only=all(item.recipe.train.device == "cpu" for item in todo))
    by_dir = {item.run_dir: item for item in todo}
    runs = [
        slurm.SlurmRun(item.run_dir, item.recipe.to_toml(), f"ganbench-{item.method}-seed-{item.seed}") for item in todo
    ]
    jobs = slurm.submit(
        runs, request, results_root(todo) / "slurm", lambda run: _clear_stale_start(by_dir[run.run_dir])
    )
    for item in todo:
        job = jobs[item.run_dir]
        if job.state == "submitted":
            done[id(item)] = dataclasses.replace(
                item, state="submitted", message=f"slurm job {job.job_id}: {request.describe()}"
            )
        else:
            done[id(item)] = dataclasses.replace(item, state="queued", message=f"slurm job {job.job_id} {job.state}")
    return done


def results_root(planned: list[PlannedRun]) -> Path:
    """The folder holding every run of a plan (results/compare/<base>), for `build_report`."""
    roots = {item.run_dir.parent.parent for item in planned}
    if len(roots) != 1:
        raise GanbenchError("the plan spans several result folders; report each with ganbench report --results")
    return roots.pop()
