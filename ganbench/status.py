"""`ganbench status`: where every run below a results folder stands, read cheaply enough to redraw every few
seconds over hundreds of runs: run.json, the writer lock, the last row of history.parquet (the file's footer and its
last row group, never the whole table) and one `squeue` for the runs that `ganbench compare --launcher slurm`
submitted (the jobs.json files below the folder).

Statuses beyond run.json's own (store.STATUSES):
  stale    run.json says running but no process holds the run's lock: its trainer died (killed, node lost)
  queued   a Slurm job that has not ended will train the run (pending, or requeued after a preemption)
  missing  a Slurm job was submitted for the run, is no longer in the queue and left no run.json
  damaged  run.json cannot be read
A run is `running` while a live process holds its lock as its trainer.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from ganbench import slurm
from ganbench.errors import GanbenchError, RunDirError
from ganbench.selection import describe
from ganbench.store import RunDir

LIVE = ("running", "queued")  # statuses of runs that are still to change; --watch stops when none is left
TRAINER = "(ganbench train"  # how a trainer names itself in the lock file (RunDir.lock's purpose)
STYLES = {
    "running": "bold green",
    "queued": "cyan",
    "finished": "blue",
    "stale": "bold yellow",
    "interrupted": "yellow",
    "failed": "bold red",
    "diverged": "red",
    "damaged": "bold red",
    "missing": "magenta",
}


@dataclass(frozen=True)
class RunStatus:
    """One row of the table: a run directory, or a Slurm job whose run has no run.json yet."""

    run_dir: Path
    status: str
    name: str = ""  # the recipe's name
    method: str = ""
    seed: int | None = None
    step: int = 0  # the last logged step (history.parquet), else the last checkpointed one (run.json)
    steps: int | None = None  # train.steps
    rate: float | None = None  # G steps per second of the last log line
    seconds_left: float | None = None  # (steps - step) / rate, while the run trains
    best: str = ""  # the best evaluation so far (ganbench.selection), in its metric's words
    best_step: int | None = None
    message: str = ""  # the last error line, who holds the lock, or why the status is what it is
    job: str = ""  # Slurm: "<id> <squeue state>", "<id> ended" (no longer in the queue), "<id> ?" (squeue failed)


@dataclass(frozen=True)
class Snapshot:
    results: Path
    runs: list[RunStatus]
    notes: list[str] = field(default_factory=list)  # what could not be read or asked, once each

    @property
    def live(self) -> bool:
        """Whether some run still trains or waits in Slurm's queue."""
        return any(run.status in LIVE for run in self.runs)


QueueReader = Callable[[], dict[str, slurm.LiveJob]]


def collect(results: Path, ask_queue: QueueReader = slurm.live_jobs) -> Snapshot:
    """The status of every run below `results`, sorted by path; squeue is asked (`ask_queue`) only when some
    jobs.json names a run, and its failure is a note, not an error."""
    if not results.is_dir():
        problem = "not a folder" if results.exists() else "no such folder"
        raise GanbenchError(f"RESULTS {results}: {problem}; give the folder holding the run directories")
    run_dirs, job_files = _walk(results)
    notes: list[str] = []
    submitted: dict[str, str] = {}  # absolute run directory -> its last job id
    for path in job_files:
        try:
            submitted.update(slurm.read_jobs(path))
        except GanbenchError as err:
            notes.append(str(err))
    queue: dict[str, slurm.LiveJob] | None = {}
    if submitted:
        try:
            queue = ask_queue()
        except slurm.SlurmError as err:
            queue = None
            notes.append(f"{err}; Slurm job states not shown")
    by_comment = {job.run_dir: job for job in (queue or {}).values() if job.run_dir}
    rows = []
    for root in run_dirs:
        key = slurm.run_key(root)
        rows.append(run_status(RunDir(root), _job(key, submitted.pop(key, None), queue, by_comment)))
    for key, job_id in submitted.items():  # jobs whose run has no run.json (yet)
        job = _job(key, job_id, queue, by_comment)
        rows.append(RunStatus(_shown_path(Path(key), results), "queued" if job.live else "missing", job=job.text))
    return Snapshot(results, sorted(rows, key=lambda row: str(row.run_dir)), notes)


def _walk(results: Path) -> tuple[list[Path], list[Path]]:
    """The run directories (a run.json) and jobs.json files below `results`, in one walk that never enters a run
    directory (its checkpoints/ and samples/ hold no runs)."""
    runs, jobs = [], []
    for folder, subfolders, files in os.walk(results):
        if "run.json" in files:
            runs.append(Path(folder))
            subfolders.clear()
        elif "jobs.json" in files:
            jobs.append(Path(folder) / "jobs.json")
    return runs, jobs


def _shown_path(path: Path, results: Path) -> Path:
    """A jobs.json path (absolute) as the walk shows the others: below `results` as given."""
    try:
        return results / path.relative_to(results.resolve())
    except ValueError:
        return path


@dataclass(frozen=True)
class _Job:
    text: str = ""
    live: bool = False


def _job(
    key: str,
    job_id: str | None,
    queue: dict[str, slurm.LiveJob] | None,
    by_comment: dict[str, slurm.LiveJob],
) -> _Job:
    """The Slurm job of the run `key`: its last job id in jobs.json, else a queued job whose comment names the run
    (as compare itself finds it); `queue` is None when squeue did not answer."""
    if queue is None:
        return _Job(f"{job_id} ?") if job_id else _Job()
    live = queue.get(job_id or "")
    if live is not None and live.run_dir not in ("", key):
        live = None  # the id was given again to another job
    live = live or by_comment.get(key)
    if live is not None:
        return _Job(f"{live.job_id} {live.state}", live=True)
    return _Job(f"{job_id} ended") if job_id else _Job()


def run_status(run: RunDir, job: _Job | None = None) -> RunStatus:
    """One run's row, from run.json, its lock, the last history row and its Slurm job."""
    job = job or _Job()
    try:
        info = run.read_run()
    except (RunDirError, OSError) as err:
        return RunStatus(run.root, "damaged", message=" ".join(str(err).split()), job=job.text)
    name, method, seed = _recipe_fields(run)
    status, message = str(info.get("status", "?")), str(info.get("error") or "")
    holder = run.lock_holder()
    if holder is not None and (status == "running" or TRAINER in holder):
        # a resumed trainer holds the lock before it rewrites run.json; "pid N on HOST", without the purpose
        status, message = "running", holder.split(" (", 1)[0]
    elif holder is not None:
        message = f"in use by {holder}"  # an evaluation
    elif status == "running":
        status, message = "stale", "no process holds its lock: its trainer died; train it again to resume"
    if job.live and status in ("stale", "interrupted", "failed"):
        status = "queued"  # a job that resumes it
    step, steps, rate = info.get("step", 0), info.get("steps"), None
    try:
        last = run.last_history_row(("step", "g_steps_per_s"))
    except RunDirError as err:
        last, message = None, message or str(err)
    if last is not None:
        step = max(step, int(last.get("step") or 0))
        value = last.get("g_steps_per_s")
        rate = float(value) if isinstance(value, int | float) and math.isfinite(value) and value > 0 else None
    left = None
    if status == "running" and rate and steps is not None:
        left = max(steps - step, 0) / rate
    best = info.get("best") or {}
    shown = ""
    if "metric" in best and "score" in best:
        shown = describe(best["metric"], best["score"]) + (f" ({best['generator']})" if "generator" in best else "")
    return RunStatus(
        run.root,
        status,
        name=str(info.get("name", name)),
        method=method,
        seed=seed,
        step=step,
        steps=steps,
        rate=rate,
        seconds_left=left,
        best=shown,
        best_step=best.get("step"),
        message=message,
        job=job.text,
    )


def _recipe_fields(run: RunDir) -> tuple[str, str, int | None]:
    """(name, method, seed) of the run's recipe.toml, read as TOML only (no registries); blanks where it lacks one."""
    try:
        tree: dict[str, Any] = tomllib.loads(run.recipe_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return "", "", None
    method = tree.get("method", {}).get("name", "") if isinstance(tree.get("method"), dict) else ""
    seed = tree.get("seed")
    name = tree.get("name")
    return (
        name if isinstance(name, str) else "",
        method if isinstance(method, str) else "",
        seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
    )


# ----------------------------------------------------------------------------------------------------
# The table


def duration(seconds: float) -> str:
    """A time left in its two largest units: 45s, 3m 20s, 2h 05m, 1d 03h."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


def speed(rate: float) -> str:
    """G steps per second with three significant figures and no exponent: 412, 37.5, 2.41, 0.0312."""
    if rate >= 100:
        return f"{rate:.0f}"
    return f"{rate:.3g}"


WIDE = 120  # below this many terminal columns the table leaves out the recipe and puts the best's step beside it


def render(snapshot: Snapshot, width: int = WIDE) -> Table | Text:
    """The snapshot as a rich table, one row per run, a title counting them by status and the notes as caption; one
    line when there is no run. Narrower than WIDE columns, the recipe's name (the run's path names it) is left out
    and the best evaluation's step written beside it."""
    if not snapshot.runs:
        notes = "".join(f"\n{note}" for note in snapshot.notes)
        return Text(f"no runs below {snapshot.results} (no run.json, no Slurm job in a jobs.json){notes}")
    counts = Counter(run.status for run in snapshot.runs)
    order = [*STYLES, *sorted(set(counts) - set(STYLES))]
    summary = ", ".join(f"{counts[name]} {name}" for name in order if counts[name])
    plural = "" if len(snapshot.runs) == 1 else "s"
    title = f"{len(snapshot.runs)} run{plural} below {snapshot.results}" + (f": {summary}" if summary else "")
    wide = width >= WIDE
    shown = Table(
        title=title,
        caption="\n".join(snapshot.notes) or None,
        caption_justify="left",
        box=box.HEAVY_HEAD if wide else box.SIMPLE_HEAD,
    )
    columns = ["run", "recipe", "method", "seed", "status", "step", "G-steps/s", "left", "best", "at step"]
    if not wide:
        columns = [column for column in columns if column not in ("recipe", "at step")]
    has_jobs = any(run.job for run in snapshot.runs)
    for column in columns:
        right = column in ("seed", "step", "G-steps/s", "left", "at step")
        # a narrow terminal folds the run's path and the note; the other cells keep their width
        folds = {"no_wrap": False, "min_width": 10} if column == "run" else {"no_wrap": True}
        shown.add_column(column, justify="right" if right else "left", overflow="fold", **folds)
    shown.add_column("last error / note", overflow="fold", min_width=12)
    if has_jobs:
        shown.add_column("slurm job", no_wrap=True)
    for run in snapshot.runs:
        try:
            where = str(run.run_dir.relative_to(snapshot.results))
        except ValueError:
            where = str(run.run_dir)
        best = run.best
        if not wide and best and run.best_step is not None:
            best += f" @{run.best_step}"
        cells = {
            "run": Text(where),
            "recipe": Text(run.name),
            "method": Text(run.method),
            "seed": Text("" if run.seed is None else str(run.seed)),
            "status": Text(run.status, style=STYLES.get(run.status, "")),
            "step": Text(f"{run.step}/{run.steps}" if run.steps is not None else (str(run.step) if run.step else "")),
            "G-steps/s": Text(speed(run.rate) if run.rate else ""),
            "left": Text(duration(run.seconds_left) if run.seconds_left is not None else ""),
            "best": Text(best),
            "at step": Text("" if run.best_step is None else str(run.best_step)),
        }
        row = [cells[column] for column in columns]
        row.append(Text(run.message, style="red" if run.status in ("failed", "diverged", "damaged") else "dim"))
        if has_jobs:
            row.append(Text(run.job))
        shown.add_row(*row)
    return shown
