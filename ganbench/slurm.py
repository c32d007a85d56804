"""Slurm jobs for `ganbench compare --launcher slurm`: what each job asks for, which runs already have a job, and
the job itself (through submitit).

Resources come from the user (options or a [slurm] table in a TOML file), with defaults read from the cluster
(`sinfo`): a GPU only where the partition has GPUs, the partition's own time limit. A run is never submitted twice:
`squeue` is asked for the user's jobs, each of which names its run directory in its comment, and jobs.json records
each submission the moment it is made. A job trains its run in a `ganbench train` child process (`torchrun` when it
has several GPUs); on submitit's preemption or timeout signal the child checkpoints and stops and the job requeues
itself, to resume the run from that checkpoint.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import re
import signal
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from ganbench.errors import GanbenchError, WorkFailed
from ganbench.files import atomic_write_text
from ganbench.launch import train_command, trainer_environment

SLURM_KEYS = ("gpus", "cpus", "time", "partition", "account")  # the [slurm] table's keys, each also an option
DEFAULT_MINUTES = 24 * 60  # when neither the user nor the partition sets a time limit
MAX_TIMEOUTS = 100  # how often a job that reaches its time limit requeues itself (submitit's default: 3)
# States squeue shows for a while after a job ended; any other state (pending, running, requeued, held,
# suspended, completing) means the job may still train its run.
ENDED = frozenset(
    ("COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE")
    + ("PREEMPTED", "REVOKED", "SPECIAL_EXIT")
)
# sbatch errors that are the cluster's state, not the request's: exit 1 rather than 2.
_UNREACHABLE = re.compile(r"unable to contact|socket timed out|connection refused|communication", re.IGNORECASE)


class SlurmError(WorkFailed):
    """Slurm could not be asked or did not answer (no controller, a command missing or failing): exit code 1."""


@dataclass(frozen=True)
class SlurmResources:
    """What the user asked each job for; None: the default (see `resolve`)."""

    gpus: int | None = None
    cpus: int | None = None
    time: str | None = None  # a Slurm time: minutes, H:MM:SS, D-HH, D-HH:MM[:SS]
    partition: str | None = None
    account: str | None = None


@dataclass(frozen=True)
class SlurmRequest:
    """What each job asks Slurm for, defaults resolved."""

    gpus: int
    minutes: int
    cpus: int | None = None
    partition: str | None = None
    account: str | None = None

    def describe(self) -> str:
        parts = [f"{self.gpus} GPU{'s' if self.gpus != 1 else ''}"]
        if self.cpus is not None:
            parts.append(f"{self.cpus} CPU{'s' if self.cpus != 1 else ''}")
        parts.append(format_minutes(self.minutes))
        if self.partition:
            parts.append(f"partition {self.partition}")
        if self.account:
            parts.append(f"account {self.account}")
        return ", ".join(parts)

    def parameters(self) -> dict[str, Any]:
        """submitit's SlurmExecutor parameters: one node, one task, the GPUs on it (none asked for when 0)."""
        found: dict[str, Any] = {"nodes": 1, "ntasks_per_node": 1, "time": self.minutes}
        # submitit's preemption signal comes this long before the time limit; a short job gets a shorter warning
        found["signal_delay_s"] = min(90, max(10, self.minutes * 60 // 4))
        if self.gpus:
            found["gpus_per_node"] = self.gpus
        for key in ("cpus", "partition", "account"):
            value = getattr(self, key)
            if value is not None:
                found["cpus_per_task" if key == "cpus" else key] = value
        return found


# ----------------------------------------------------------------------------------------------------
# What the user asks for


_TIME = re.compile(r"(?:(?P<days>\d+)-)?(?P<a>\d+)(?::(?P<b>\d+))?(?::(?P<c>\d+))?")


def parse_time(text: str, option: str = "--slurm-time") -> int:
    """A Slurm time limit in whole minutes (seconds round up): "90", "1:30:00", "2-0", "1-12:00"."""
    match = _TIME.fullmatch(text.strip())
    if match is None or not text.strip():
        raise GanbenchError(f"{option} {text}: not a Slurm time; write minutes (90), H:MM:SS (1:30:00) or D-HH (2-0)")
    a, b, c = (int(value or 0) for value in match.group("a", "b", "c"))
    if match["days"] is None:  # MM, MM:SS, HH:MM:SS
        seconds = a * 60 + b if match["c"] is None else a * 3600 + b * 60 + c
    else:  # D-HH, D-HH:MM, D-HH:MM:SS
        seconds = int(match["days"]) * 86400 + a * 3600 + b * 60 + c
    if seconds <= 0:
        raise GanbenchError(f"{option} {text}: give a time limit above zero")
    return -(-seconds // 60)


def format_minutes(minutes: int) -> str:
    days, rest = divmod(minutes, 24 * 60)
    text = f"{rest // 60:02d}:{rest % 60:02d}:00"
    return f"{days}-{text}" if days else text


def load_config(path: Path) -> SlurmResources:
    """The [slurm] table of a TOML file: gpus, cpus, time, partition, account (any of them)."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise GanbenchError(f"--slurm-config {path}: no such file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise GanbenchError(f"--slurm-config {path}: not a readable TOML file ({err})") from None
    table = data.get("slurm")
    if not isinstance(table, dict):
        raise GanbenchError(f"--slurm-config {path}: no [slurm] table; give one with any of {', '.join(SLURM_KEYS)}")
    unknown = sorted(set(table) - set(SLURM_KEYS))
    if unknown:
        raise GanbenchError(f"{path}: [slurm] {unknown[0]}: unknown key; the keys are {', '.join(SLURM_KEYS)}")
    values: dict[str, Any] = {}
    for key, value in table.items():
        where = f"{path}: [slurm] {key}"
        if key in ("gpus", "cpus"):
            if not isinstance(value, int) or isinstance(value, bool):
                raise GanbenchError(f"{where} = {value!r}: give a whole number")
        elif key == "time" and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # minutes
        elif not isinstance(value, str):
            raise GanbenchError(f"{where} = {value!r}: give a string")
        values[key] = value
    return check(SlurmResources(**values), source=f"{path}: [slurm] ")


def check(resources: SlurmResources, source: str = "--slurm-") -> SlurmResources:
    """Refuse values no cluster accepts; `source` names where they came from in the message."""
    if resources.gpus is not None and resources.gpus < 0:
        raise GanbenchError(f"{source}gpus {resources.gpus}: give 0 (no GPU) or more")
    if resources.cpus is not None and resources.cpus < 1:
        raise GanbenchError(f"{source}cpus {resources.cpus}: give 1 or more CPU cores per job")
    if resources.time is not None:
        parse_time(resources.time, f"{source}time")
    for key in ("partition", "account"):
        value = getattr(resources, key)
        if value is not None and not re.fullmatch(r"[\w.\-]+", value):
            raise GanbenchError(f"{source}{key} {value!r}: not a Slurm {key} name")
    return resources


def merge(config: SlurmResources | None, options: SlurmResources) -> SlurmResources:
    """The config file's values with the options given on the command line over them."""
    given = {
        item.name: getattr(options, item.name) for item in fields(options) if getattr(options, item.name) is not None
    }
    return check(replace(config or SlurmResources(), **given))


# ----------------------------------------------------------------------------------------------------
# Asking Slurm


def slurm_command(command: list[str], timeout: float = 60.0) -> str:
    """Run a Slurm client command and return its output; SlurmError, in one line, when it cannot."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise SlurmError(f"{command[0]}: not found; --launcher slurm runs where Slurm's commands are") from None
    except subprocess.TimeoutExpired:
        raise SlurmError(f"{command[0]}: no answer in {timeout:.0f} s; is slurmctld up?") from None
    if done.returncode != 0:
        raise SlurmError(f"{' '.join(command[:2])}: {first_line(done.stderr or done.stdout)}")
    return done.stdout


def first_line(text: str) -> str:
    """The most telling line of a Slurm command's output: the last error line, else the last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() or "fatal" in line.lower()]
    return (errors or lines or ["no output"])[-1]


@dataclass(frozen=True)
class Node:
    """One node of a partition as sinfo shows it."""

    partition: str  # a trailing * marks the default partition
    default_time: str
    time_limit: str
    cpus: int
    gpus: int


def nodes(partition: str | None) -> list[Node]:
    """The nodes of `partition` (default: every partition), one row per node and partition."""
    where = ["-p", partition] if partition else []
    found = []
    for line in slurm_command(["sinfo", "-h", "-N", *where, "-o", "%P|%L|%l|%c|%G"]).splitlines():
        row = line.strip().split("|")
        if len(row) == 5:
            cpus = re.match(r"\d+", row[3])
            found.append(Node(row[0], row[1], row[2], int(cpus[0]) if cpus else 0, gpu_count(row[4])))
    return found


def gpu_count(gres: str) -> int:
    """GPUs in a node's sinfo GRES field: "gpu:4", "gpu:a100:4(S:0-1)", "(null)" -> 4, 4, 0."""
    return sum(int(match[1]) for match in re.finditer(r"gpu(?::[\w.\-]+)?:(\d+)", gres))


def resolve(resources: SlurmResources, cpu_only: bool) -> SlurmRequest:
    """What each job asks for, the defaults read from the cluster: a GPU only when the partition has GPUs and some
    recipe may use one (`cpu_only`: every recipe sets train.device = "cpu"); the time limit the partition gives by
    default, else its maximum, else DEFAULT_MINUTES. A request no node of the partition can meet (an unknown
    partition, more GPUs or CPUs than a node has) is refused here, before anything is submitted."""
    partition = resources.partition
    rows = nodes(partition)
    if partition and not rows:
        known = sorted({row.partition.rstrip("*") for row in nodes(None)})
        raise GanbenchError(f"--slurm-partition {partition}: Slurm has no such partition; it has {', '.join(known)}")
    if not partition:  # the default partition, marked with a star
        rows = [row for row in rows if row.partition.endswith("*")] or rows
    where = f"partition {partition or (rows[0].partition.rstrip('*') if rows else '(default)')}"
    most_gpus = max((row.gpus for row in rows), default=0)
    gpus = resources.gpus
    if gpus is None:
        gpus = 0 if cpu_only or not most_gpus else 1
    elif gpus > most_gpus:
        has = f"at most {most_gpus} per node" if most_gpus else "none"
        raise GanbenchError(f"--slurm-gpus {gpus}: {where} has {has}; give --slurm-gpus {most_gpus}")
    most_cpus = max((row.cpus for row in rows), default=0)
    if resources.cpus is not None and most_cpus and resources.cpus > most_cpus:
        raise GanbenchError(f"--slurm-cpus {resources.cpus}: {where} has at most {most_cpus} CPU cores per node")
    minutes = parse_time(resources.time) if resources.time is not None else _partition_minutes(rows)
    return SlurmRequest(gpus, minutes, resources.cpus, partition, resources.account)


def _partition_minutes(rows: list[Node]) -> int:
    for limits in ([row.default_time for row in rows], [row.time_limit for row in rows]):
        given = [limit for limit in limits if re.fullmatch(r"[\d:\-]+", limit)]
        if given:
            return min(parse_time(limit, "sinfo") for limit in given)
    return DEFAULT_MINUTES


@dataclass(frozen=True)
class LiveJob:
    job_id: str
    state: str
    run_dir: str  # the job's comment: the absolute run directory it trains


def live_jobs() -> dict[str, LiveJob]:
    """The user's jobs that squeue knows and that have not ended, by job id. squeue needs no accounting database
    (sacct does), so this works on every cluster."""
    found = {}
    for line in slurm_command(["squeue", "--me", "-h", "-o", "%i %T %k"]).splitlines():
        parts = line.strip().split(" ", 2)
        if len(parts) >= 2 and parts[1] not in ENDED:
            found[parts[0]] = LiveJob(parts[0], parts[1], parts[2] if len(parts) == 3 else "")
    return found


# ----------------------------------------------------------------------------------------------------
# Submitting


@dataclass(frozen=True)
class SlurmRun:
    """One run to submit: its run directory, its resolved recipe and a job name."""

    run_dir: Path
    recipe_toml: str
    name: str


@dataclass(frozen=True)
class Submitted:
    job_id: str
    state: str  # "submitted" now, or the squeue state of the job that already trains the run


def run_key(run_dir: Path) -> str:
    """How jobs.json and the job's comment name a run: its absolute path, whatever folder compare ran from."""
    return str(run_dir.resolve())


def read_jobs(path: Path) -> dict[str, str]:
    """jobs.json: absolute run directory -> the last job id submitted for it."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise GanbenchError(f"{path}: unreadable ({err}); move it away to submit again") from None
    if not isinstance(data, dict):
        raise GanbenchError(f"{path}: not a table of run directories and job ids; move it away to submit again")
    return {run_key(Path(key)): str(value) for key, value in data.items()}


def require_submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise GanbenchError("--launcher slurm: needs submitit; install it with pip install 'ganbench[slurm]'") from None
    return submitit


def submit(
    runs: list[SlurmRun],
    request: SlurmRequest,
    folder: Path,
    prepare: Callable[[SlurmRun], None] = lambda run: None,
) -> dict[Path, Submitted]:
    """Submit one job per run that no live job trains already; returns each run's job, new or found.

    `folder` holds submitit's files and jobs.json, written after each submission; `prepare` runs just before a
    run's job is submitted. Held for the whole call: a lock on the folder, so two compares never both submit.
    """
    submitit = require_submitit()
    found: dict[Path, Submitted] = {}
    if not runs:
        return found
    folder.mkdir(parents=True, exist_ok=True)
    jobs_file = folder / "jobs.json"
    with _submitting(folder):
        jobs = read_jobs(jobs_file)
        live = live_jobs()
        by_comment = {job.run_dir: job for job in live.values() if job.run_dir}
        executor = submitit.SlurmExecutor(folder=str(folder), max_num_timeout=MAX_TIMEOUTS)
        executor.update_parameters(**request.parameters())
        for run in runs:
            key = run_key(run.run_dir)
            job = live.get(jobs.get(key, ""))
            if job is not None and job.run_dir not in ("", key):
                job = None  # the id was given again to another job (a cluster whose state was reset)
            job = job or by_comment.get(key)
            if job is not None:  # queued or running from an earlier call: a second job would train it twice
                found[run.run_dir] = Submitted(job.job_id, job.state)
                continue
            prepare(run)
            executor.update_parameters(job_name=run.name, comment=key)
            earlier = sum(1 for item in found.values() if item.state == "submitted")
            job_id = _submit_one(executor, TrainJob(run.recipe_toml, key, request.gpus), run, earlier)
            jobs[key] = job_id
            atomic_write_text(jobs_file, json.dumps(jobs, indent=2, sort_keys=True) + "\n")
            found[run.run_dir] = Submitted(job_id, "submitted")
    return found


def _submit_one(executor: Any, job: TrainJob, run: SlurmRun, earlier: int) -> str:
    """sbatch through submitit; its refusal in one line (submitit prints sbatch's stderr: kept for the message)."""
    printed = io.StringIO()
    folder = Path(executor.folder)
    before = set(folder.iterdir())
    try:
        with contextlib.redirect_stderr(printed), contextlib.redirect_stdout(printed):
            return str(executor.submit(job).job_id)
    except FileNotFoundError:  # only sbatch is looked for on PATH while submitting
        raise SlurmError("sbatch: not found; --launcher slurm runs where Slurm's commands are") from None
    except Exception as err:  # submitit's FailedJobError / FailedSubmissionError carry sbatch's output
        for path in set(folder.iterdir()) - before:  # the refused job's pickle and script
            if path.is_file():
                path.unlink()
        line = first_line(f"{err}\n{printed.getvalue()}")
        line = re.sub(r"^sbatch: error: (Batch job submission failed: )?", "", line)
        done = f" ({earlier} submitted before it, in jobs.json)" if earlier else ""
        message = f"sbatch refused the job of {run.run_dir}: {line}{done}"
        if _UNREACHABLE.search(line):
            raise SlurmError(message) from None
        raise GanbenchError(
            f"{message}; check --slurm-partition, --slurm-account, --slurm-gpus, --slurm-cpus and --slurm-time"
        ) from None


@contextlib.contextmanager
def _submitting(folder: Path, wait_seconds: float = 120.0) -> Iterator[None]:
    fd = os.open(folder / ".submit.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise SlurmError(
                        f"{folder}: another compare has been submitting for {wait_seconds:.0f} s"
                    ) from None
                time.sleep(0.5)
        yield
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------------------------------
# The job


class JobFailed(RuntimeError):
    """The trainer of a job ended badly; submitit records the job as failed with this line."""


class TrainJob:
    """One run's job, pickled by submitit: `ganbench train` in a child process, through torchrun with several GPUs.

    submitit's preemption/timeout signal (USR2) reaches every process of the job: the child ignores it, and the
    job's handler (`checkpoint`) asks the child to checkpoint and stop (SIGTERM, the trainer's graceful stop), waits
    for it, and hands submitit the same job to requeue; the requeued job's trainer resumes from that checkpoint.
    """

    STOP_SECONDS = 60.0  # the trainer finishes its step and saves; the default signal comes 90 s before the limit

    def __init__(self, recipe_toml: str, run_dir: str, gpus: int = 0) -> None:
        self.recipe_toml, self.run_dir, self.gpus = recipe_toml, run_dir, gpus
        self._pid: int | None = None
        self._code: int | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"recipe_toml": self.recipe_toml, "run_dir": self.run_dir, "gpus": self.gpus}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["recipe_toml"], state["run_dir"], state.get("gpus", 0))  # type: ignore[misc]

    def command(self, recipe_file: Path) -> list[str]:
        return train_command(recipe_file, self.run_dir, nproc=self.gpus)

    def __call__(self) -> str:
        env = trainer_environment()
        with tempfile.TemporaryDirectory(prefix="ganbench-job-") as scratch:
            recipe_file = Path(scratch) / "recipe.toml"
            recipe_file.write_text(self.recipe_toml)
            child = subprocess.Popen(self.command(recipe_file), env=env, preexec_fn=_ignore_preemption_signal)
            self._pid, self._code = child.pid, None
            self._wait(None)
            child.returncode = self._code
        code = self._code if self._code is not None else 0
        if code != 0:
            why = f"killed by {signal.Signals(-code).name}" if code < 0 and -code in signal.valid_signals() else ""
            raise JobFailed(f"{self.run_dir}: ganbench train ended with {why or f'exit code {code}'}")
        return self.status()

    def status(self) -> str:
        try:
            return str(json.loads((Path(self.run_dir) / "run.json").read_text()).get("status"))
        except (OSError, ValueError):
            return "unknown"

    def checkpoint(self) -> Any:
        """submitit's handler of the preemption/timeout signal: stop the trainer with a checkpoint, then requeue."""
        import submitit

        if self._pid is not None and self._code is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGTERM)
            if not self._wait(self.STOP_SECONDS):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self._pid, signal.SIGKILL)  # its last periodic checkpoint stays
                self._wait(None)
        return submitit.helpers.DelayedSubmission(TrainJob(self.recipe_toml, self.run_dir, self.gpus))

    def _wait(self, timeout: float | None) -> bool:
        """Reap the child, polling (the signal handler waits too, and Popen.wait's lock is not re-entrant);
        True once it has ended."""
        assert self._pid is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._code is None:
            try:
                pid, status = os.waitpid(self._pid, os.WNOHANG)
            except ChildProcessError:  # reaped by the other waiter, which keeps its code
                return True
            if pid:
                self._code = os.waitstatus_to_exitcode(status)
                break
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return True


def _ignore_preemption_signal() -> None:
    """In the trainer, before it starts: ignore submitit's signal (its default action would kill the trainer
    without a checkpoint); the job's handler stops it with SIGTERM instead."""
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
