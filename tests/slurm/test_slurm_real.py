"""`ganbench compare --launcher slurm` against a real one-node Slurm (Debian's packages, started by .ci/run): four
methods trained by four jobs and never submitted twice, a preempted job that resumes its run and finishes, and
Slurm's refusals as one line each. Jobs are watched with `scontrol show job`, polled once a second."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ganbench import slurm
from ganbench.compare import plan
from ganbench.errors import GanbenchError
from ganbench.store import RunDir
from tests.test_compare import FAST

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.usefixtures("cluster")]

METHODS = ["sn", "gn", "pgn", "gran"]
POLL_SECONDS = 1.0


def compare(results: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "ganbench", "compare", "--launcher", "slurm", "--results", str(results), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def sets(overrides: list[str]) -> list[str]:
    return [part for item in overrides for part in ("--set", item)]


def job_fields(job_id: str) -> dict[str, str]:
    """`scontrol show job ID` as a table (JobState, Restarts, Reason, ...)."""
    text = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, check=True).stdout
    return dict(re.findall(r"(\w+)=(\S*)", text))


def wait_for(job_ids: list[str], states: set[str], seconds: float) -> dict[str, dict[str, str]]:
    deadline = time.monotonic() + seconds
    while True:
        found = {job_id: job_fields(job_id) for job_id in job_ids}
        if all(fields["JobState"] in states for fields in found.values()):
            return found
        if time.monotonic() > deadline:
            now = {job_id: f"{fields['JobState']} ({fields.get('Reason')})" for job_id, fields in found.items()}
            pytest.fail(f"jobs not {states} after {seconds:.0f} s: {now}")
        time.sleep(POLL_SECONDS)


def our_jobs() -> list[str]:
    return subprocess.run(["squeue", "--me", "-h", "-o", "%i %j"], capture_output=True, text=True).stdout.split("\n")


def cancel(job_ids: list[str]) -> None:
    if job_ids:
        subprocess.run(["scancel", *job_ids], check=False)


def test_compare_through_slurm_trains_each_run_once(tmp_path: Path) -> None:
    results = tmp_path / "results"
    runs = plan(METHODS, seeds=[0], overrides=FAST, results=results)
    jobs_file = runs[0].run_dir.parent.parent / "slurm" / "jobs.json"
    # A job holding every CPU keeps compare's jobs pending: the second compare meets them queued, with no run
    # directory and no lock yet, so only squeue can tell it that they are taken.
    cpus = subprocess.run(["sinfo", "-h", "-N", "-o", "%c"], capture_output=True, text=True).stdout.split()[0]
    blocker = subprocess.run(
        ["sbatch", "--parsable", "-J", "blocker", "-c", cpus, "-o", "/dev/null", "--wrap", "sleep 300"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ids: list[str] = []
    try:
        wait_for([blocker], {"RUNNING"}, 30)
        first = compare(results, "--methods", ",".join(METHODS), *sets(FAST))
        assert first.returncode == 0, first.stderr
        jobs = json.loads(jobs_file.read_text())  # absolute run directory -> job id
        assert sorted(jobs) == sorted(str(item.run_dir.resolve()) for item in runs)
        ids = sorted(jobs.values())
        assert first.stdout.count(" submitted ") == 4 and "0 GPUs" in first.stdout  # a CPU-only cluster
        second = compare(results, "--methods", ",".join(METHODS), *sets(FAST))
        assert second.returncode == 0, second.stderr
        assert second.stdout.count(" queued ") == 4 and " submitted " not in second.stdout, second.stdout
        assert json.loads(jobs_file.read_text()) == jobs
        assert sum(" ganbench-" in f" {line}" for line in our_jobs()) == 4  # nothing submitted twice
    finally:
        cancel([blocker])
    try:
        done = wait_for(ids, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}, 60 + 15 * len(ids))
    finally:
        cancel(ids)
    assert {fields["JobState"] for fields in done.values()} == {"COMPLETED"}, done
    for item in runs:  # every run directory complete, every evaluation once (two trainers would double them)
        run = RunDir(item.run_dir)
        info = run.read_run()
        assert (info["status"], info["step"]) == ("finished", 30)
        metrics = run.read_metrics()
        assert sorted(set(metrics["step"])) == [10, 20, 30]
        assert metrics.groupby(["step", "metric", "generator"]).size().max() == 1
    third = compare(results, "--methods", ",".join(METHODS), *sets(FAST))
    assert third.returncode == 0 and third.stdout.count(" finished ") == 8, third.stdout  # the plan, then the end
    assert json.loads(jobs_file.read_text()) == jobs
    report = subprocess.run(
        [sys.executable, "-m", "ganbench", "report", "--results", str(jobs_file.parent.parent), "--tables", "runs"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert report.returncode == 0, report.stderr
    for method in METHODS:
        assert f"{method}/seed-0" in report.stdout, report.stdout


def test_a_preempted_job_resumes_its_run_and_finishes(tmp_path: Path) -> None:
    results = tmp_path / "results"
    steps = 3000
    overrides = [
        "train.device=cpu",
        f"train.steps={steps}",
        f"train.checkpoint_every={steps}",  # no periodic checkpoint before the end: the stop must save its own
        "train.sample_every=0",
        "train.log_every=100",
        "eval.every=0",
    ]
    (item,) = plan(["gn"], seeds=[1], overrides=overrides, results=results)
    submitted = compare(results, "--methods", "gn", "--seeds", "1", *sets(overrides))
    assert submitted.returncode == 0, submitted.stderr
    (job,) = json.loads((item.run_dir.parent.parent / "slurm" / "jobs.json").read_text()).values()
    try:
        lock = item.run_dir / ".lock"
        deadline = time.monotonic() + 90
        while not (lock.exists() and lock.read_text().startswith("pid")):  # its trainer is training
            assert time.monotonic() < deadline and job_fields(job)["JobState"] in ("PENDING", "RUNNING")
            time.sleep(0.2)
        time.sleep(1.0)
        # What submitit's sbatch line asks Slurm to send before the time limit, and what a preemption sends.
        subprocess.run(["scancel", "--signal=USR2", job], check=True)
        requeued = wait_for([job], {"PENDING"}, 60)[job]
        assert requeued["Restarts"] == "1", requeued
        info = RunDir(item.run_dir).read_run()
        assert info["status"] == "interrupted" and 0 < info["step"] < steps, info
        stopped = info["step"]
        assert (item.run_dir / "checkpoints" / "last.pt").is_file()
        # Slurm holds a requeued job for about two minutes (Reason=BeginTime); let it start now.
        subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)
        done = wait_for([job], {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}, 120)[job]
    finally:
        cancel([job])
    assert done["JobState"] == "COMPLETED", done
    info = RunDir(item.run_dir).read_run()
    assert (info["status"], info["step"]) == ("finished", steps)
    history = RunDir(item.run_dir).read_history()
    assert list(history["step"]) == list(range(100, steps + 1, 100))  # continued from `stopped`, no row twice
    logs = item.run_dir.parent.parent / "slurm"
    log = (logs / f"{job}_0_log.out").read_text()  # submitit's and the trainer's lines, both starts appended
    assert "this job is preempted" in log and f"Requeued job {job}" in log, log
    assert log.count("Starting with JobEnvironment") == 2 and log.count("training quickstart into") == 2, log
    assert history["step"].min() < stopped < history["step"].max()


def test_slurm_refusals_are_one_line(tmp_path: Path) -> None:
    results = tmp_path / "results"
    for args, code, message in [
        (["--slurm-partition", "nosuch"], 2, "--slurm-partition nosuch: Slurm has no such partition; it has "),
        (["--slurm-gpus", "1"], 2, "--slurm-gpus 1: partition "),
        (["--slurm-cpus", "4096"], 2, "--slurm-cpus 4096: partition "),
    ]:
        done = compare(results, "--methods", "gn", *sets(FAST), *args)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == code and len(lines) == 1 and message in lines[0], done.stderr
    # sbatch's own refusal, asked for a GPU this cluster does not have (what `resolve` refuses before it)
    (item,) = plan(["gn"], seeds=[0], overrides=FAST, results=results)
    folder = tmp_path / "slurm"
    runs = [slurm.SlurmRun(item.run_dir, item.recipe.to_toml(), "ganbench-refused")]
    with pytest.raises(GanbenchError) as caught:
        slurm.submit(runs, slurm.SlurmRequest(gpus=1, minutes=10), folder)
    assert "sbatch refused the job of" in str(caught.value) and "\n" not in str(caught.value)
    assert sorted(path.name for path in folder.iterdir()) == [".submit.lock"]  # nothing left of the refused job
    assert not any("ganbench-refused" in line for line in our_jobs())
