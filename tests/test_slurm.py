"""ganbench.slurm without a cluster: options and the [slurm] table, defaults read from a stand-in sinfo, the squeue
guard and jobs.json against stand-in squeue/sbatch on PATH, and a job's preemption handler on a real trainer.
The same against a real Slurm: tests/slurm/."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ganbench import slurm
from ganbench.errors import GanbenchError
from ganbench.slurm import SlurmRequest, SlurmResources, SlurmRun, parse_time
from ganbench.store import RunDir

# sinfo -h -N -o "%P|%L|%l|%c|%G": one line per node and partition; the star marks the default partition
CPU_CLUSTER = "cpu*|2:00:00|1-00:00:00|8|(null)\nlong|n/a|7-00:00:00|8|(null)\n"
GPU_CLUSTER = "cpu*|n/a|1-00:00:00|8|(null)\ngpu|n/a|2-00:00:00|32|gpu:a100:4(S:0-1)\n"

# Stand-ins for Slurm's client commands. They read and write files in $FAKE_SLURM: sinfo (what sinfo prints), jobs
# (squeue's "%i %T %k" lines), submitted (one JSON line per sbatch: its #SBATCH options), down (the controller is
# unreachable), refuse (the error line sbatch prints for every submission after the first `refuse_after`).
FAKE = {
    "sinfo": """
import os, sys
from pathlib import Path
here = Path(os.environ["FAKE_SLURM"])
if (here / "down").exists():
    sys.exit("sinfo: error: Unable to contact slurm controller (connect failure)")
part = sys.argv[sys.argv.index("-p") + 1] if "-p" in sys.argv else None
for line in (here / "sinfo").read_text().splitlines():
    if part is None or line.split("|")[0].rstrip("*") == part:
        print(line)
""",
    "squeue": """
import os, sys
from pathlib import Path
here = Path(os.environ["FAKE_SLURM"])
if (here / "down").exists():
    sys.exit("squeue: error: Unable to contact slurm controller (connect failure)")
assert sys.argv[1:] == ["--me", "-h", "-o", "%i %T %k"], sys.argv
jobs = here / "jobs"
print(jobs.read_text() if jobs.exists() else "", end="")
""",
    "sbatch": """
import json, os, shlex, sys
from pathlib import Path
here = Path(os.environ["FAKE_SLURM"])
submitted = here / "submitted"
done = submitted.read_text().splitlines() if submitted.exists() else []
if (here / "down").exists():
    sys.exit("sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)")
if (here / "refuse").exists() and len(done) >= int((here / "refuse_after").read_text()):
    sys.exit("sbatch: error: " + (here / "refuse").read_text())
options = {}
for line in Path(sys.argv[1]).read_text().splitlines():
    if line.startswith("#SBATCH --"):
        key, _, value = line[len("#SBATCH --"):].partition("=")
        options[key] = shlex.split(value)[0] if value else True
job_id = str(100 + len(done))
with open(submitted, "a") as handle:
    handle.write(json.dumps({"id": job_id, **options}) + "\\n")
with open(here / "jobs", "a") as handle:
    handle.write(f"{job_id} PENDING {options.get('comment', '')}\\n")
print(f"Submitted batch job {job_id}")
""",
}


class FakeSlurm:
    def __init__(self, root: Path) -> None:
        self.root = root

    def submitted(self) -> list[dict[str, Any]]:
        path = self.root / "submitted"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def set_state(self, job_id: str, state: str) -> None:
        lines = (self.root / "jobs").read_text().splitlines()
        changed = [
            " ".join([job_id, state, *line.split(" ", 2)[2:]]) if line.split()[0] == job_id else line for line in lines
        ]
        (self.root / "jobs").write_text("".join(line + "\n" for line in changed))

    def refuse(self, line: str, after: int = 0) -> None:
        (self.root / "refuse").write_text(line)
        (self.root / "refuse_after").write_text(str(after))

    def down(self) -> None:
        (self.root / "down").write_text("")


def fake_slurm_on_path(root: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSlurm:
    """sinfo, squeue and sbatch stand-ins first on PATH (a CPU-only cluster until `sinfo` is rewritten)."""
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True)
    for name, text in FAKE.items():
        (bin_dir / name).write_text(f"#!{sys.executable}\n{text}")
        (bin_dir / name).chmod(0o755)
    (root / "sinfo").write_text(CPU_CLUSTER)
    monkeypatch.setenv("FAKE_SLURM", str(root))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return FakeSlurm(root)


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSlurm:
    return fake_slurm_on_path(tmp_path / "fake-slurm", monkeypatch)


# ----------------------------------------------------------------------------------------------------
# What the user asks for


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("90", 90), ("45:30", 46), ("1:30:00", 90), ("2-0", 2880), ("1-12:00", 2160), ("1-00:00:01", 1441)],
)
def test_slurm_times_in_minutes(text: str, minutes: int) -> None:
    assert parse_time(text) == minutes


@pytest.mark.parametrize("text", ["0", "1h", "", "1:2:3:4", "-5", "0:00:00"])
def test_bad_slurm_times_are_refused(text: str) -> None:
    with pytest.raises(GanbenchError, match="--slurm-time"):
        parse_time(text)


def test_the_slurm_table_and_the_options_over_it(tmp_path: Path) -> None:
    config = tmp_path / "cluster.toml"
    config.write_text('[slurm]\ngpus = 2\ncpus = 8\ntime = 120\npartition = "gpu"\naccount = "lab"\n')
    loaded = slurm.load_config(config)
    assert loaded == SlurmResources(gpus=2, cpus=8, time="120", partition="gpu", account="lab")
    merged = slurm.merge(loaded, SlurmResources(gpus=0, time="4:00:00"))
    assert merged == SlurmResources(gpus=0, cpus=8, time="4:00:00", partition="gpu", account="lab")
    assert slurm.merge(None, SlurmResources(cpus=3)) == SlurmResources(cpus=3)
    for text, message in [
        ("[slurm]\ngpu = 1\n", r"\[slurm\] gpu: unknown key; the keys are gpus, cpus"),
        ("[slurm]\ngpus = '1'\n", r"\[slurm\] gpus = '1': give a whole number"),
        ("[slurm]\ncpus = 0\n", r"\[slurm\] cpus 0: give 1 or more"),
        ("[slurm]\ntime = '1h'\n", r"\[slurm\] time 1h: not a Slurm time"),
        ("[slurm]\npartition = 'a b'\n", r"partition 'a b': not a Slurm partition name"),
        ("[other]\ngpus = 1\n", r"no \[slurm\] table"),
        ("[slurm\n", "not a readable TOML file"),
    ]:
        config.write_text(text)
        with pytest.raises(GanbenchError, match=message):
            slurm.load_config(config)
    with pytest.raises(GanbenchError, match="no such file"):
        slurm.load_config(tmp_path / "missing.toml")
    with pytest.raises(GanbenchError, match="--slurm-gpus -1"):
        slurm.merge(None, SlurmResources(gpus=-1))


def test_the_request_asks_for_a_gpu_only_when_it_has_one() -> None:
    cpu = SlurmRequest(gpus=0, minutes=90).parameters()
    assert "gpus_per_node" not in cpu and "cpus_per_task" not in cpu and "partition" not in cpu
    assert cpu["time"] == 90 and cpu["nodes"] == 1 and cpu["ntasks_per_node"] == 1
    assert cpu["signal_delay_s"] == 90  # submitit's warning before the limit
    gpu = SlurmRequest(gpus=4, minutes=2, cpus=16, partition="gpu", account="lab").parameters()
    assert gpu["gpus_per_node"] == 4 and gpu["ntasks_per_node"] == 1  # one job, one task, torchrun's N processes
    assert (gpu["cpus_per_task"], gpu["partition"], gpu["account"]) == (16, "gpu", "lab")
    assert gpu["signal_delay_s"] == 30  # a quarter of a short job
    assert SlurmRequest(gpus=1, minutes=1500, cpus=1).describe() == "1 GPU, 1 CPU, 1-01:00:00"


# ----------------------------------------------------------------------------------------------------
# Defaults read from the cluster


def test_defaults_follow_the_cluster(fake_slurm: FakeSlurm) -> None:
    # CPU-only: no GPU asked for, the default partition's default time
    assert slurm.resolve(SlurmResources(), cpu_only=False) == SlurmRequest(gpus=0, minutes=120)
    assert slurm.resolve(SlurmResources(partition="long"), cpu_only=False).minutes == 7 * 24 * 60  # its limit
    assert slurm.resolve(SlurmResources(time="30"), cpu_only=False).minutes == 30
    with pytest.raises(GanbenchError, match="--slurm-gpus 1: partition cpu has none; give --slurm-gpus 0"):
        slurm.resolve(SlurmResources(gpus=1), cpu_only=False)
    with pytest.raises(GanbenchError, match="--slurm-cpus 9: partition long has at most 8 CPU cores per node"):
        slurm.resolve(SlurmResources(cpus=9, partition="long"), cpu_only=False)
    with pytest.raises(GanbenchError, match="--slurm-partition gpu: Slurm has no such partition; it has cpu, long"):
        slurm.resolve(SlurmResources(partition="gpu"), cpu_only=False)
    (fake_slurm.root / "sinfo").write_text(GPU_CLUSTER)
    assert slurm.resolve(SlurmResources(partition="gpu"), cpu_only=False) == SlurmRequest(1, 2880, None, "gpu")
    assert slurm.resolve(SlurmResources(partition="gpu"), cpu_only=True).gpus == 0  # recipes pinned to the CPU
    assert slurm.resolve(SlurmResources(), cpu_only=False).gpus == 0  # the default partition has no GPU
    assert slurm.resolve(SlurmResources(partition="gpu", gpus=4), cpu_only=False).gpus == 4
    with pytest.raises(GanbenchError, match="--slurm-gpus 5: partition gpu has at most 4 per node"):
        slurm.resolve(SlurmResources(partition="gpu", gpus=5), cpu_only=False)
    fake_slurm.down()
    with pytest.raises(slurm.SlurmError, match="Unable to contact slurm controller") as caught:
        slurm.resolve(SlurmResources(), cpu_only=False)
    assert caught.value.exit_code == 1  # type: ignore[attr-defined]


def test_gpu_counts_from_gres() -> None:
    assert [slurm.gpu_count(text) for text in ["(null)", "gpu:4", "gpu:a100:4(S:0-1)", "gpu:2,gpu:v100:1"]] == [
        0,
        4,
        4,
        3,
    ]
    assert slurm.gpu_count("shard:8") == 0


# ----------------------------------------------------------------------------------------------------
# Submitting: the squeue guard and jobs.json


def _runs(tmp_path: Path, names: list[str]) -> list[SlurmRun]:
    return [
        SlurmRun(tmp_path / "compare" / name / "seed-0", f'name = "{name}"\n', f"ganbench-{name}") for name in names
    ]


def test_a_run_with_a_live_job_is_never_submitted_again(tmp_path: Path, fake_slurm: FakeSlurm) -> None:
    folder, request = tmp_path / "compare" / "slurm", SlurmRequest(gpus=0, minutes=60, partition="cpu")
    runs = _runs(tmp_path, ["gn", "sn", "pgn"])
    prepared: list[Path] = []
    first = slurm.submit(runs, request, folder, lambda run: prepared.append(run.run_dir))
    assert [(job.job_id, job.state) for job in first.values()] == [("100", "submitted"), ("101", "submitted")] + [
        ("102", "submitted")
    ]
    assert prepared == [run.run_dir for run in runs]
    sent = fake_slurm.submitted()
    assert [job["comment"] for job in sent] == [str(run.run_dir.resolve()) for run in runs]
    assert [job["job-name"] for job in sent] == ["ganbench-gn", "ganbench-sn", "ganbench-pgn"]
    assert all(job["partition"] == "cpu" and job["time"] == "60" for job in sent)
    assert not any("gpus-per-node" in job for job in sent)  # a CPU-only request asks for no GPU
    jobs = json.loads((folder / "jobs.json").read_text())
    assert jobs == {str(run.run_dir.resolve()): str(100 + i) for i, run in enumerate(runs)}
    # Again while they are queued or running, even with jobs.json lost: squeue's comment names each job's run.
    fake_slurm.set_state("100", "RUNNING")
    fake_slurm.set_state("101", "REQUEUE_HOLD")
    (folder / "jobs.json").unlink()
    again = slurm.submit(runs, request, folder)
    assert [(job.job_id, job.state) for job in again.values()] == [("100", "RUNNING"), ("101", "REQUEUE_HOLD")] + [
        ("102", "PENDING")
    ]
    assert len(fake_slurm.submitted()) == 3
    # A job that ended (squeue keeps it a while) no longer guards its run: only that run goes again.
    fake_slurm.set_state("101", "CANCELLED")
    third = slurm.submit(runs, request, folder)
    assert [job.state for job in third.values()] == ["RUNNING", "submitted", "PENDING"]
    assert third[runs[1].run_dir].job_id == "103" and len(fake_slurm.submitted()) == 4
    # jobs.json naming a live job that trains another run (a job id given again): not a guard for this run
    fake_slurm.set_state("102", "CANCELLED")
    (folder / "jobs.json").write_text(json.dumps({str(runs[2].run_dir.resolve()): "100"}))
    fourth = slurm.submit(runs, request, folder)
    assert [job.state for job in fourth.values()] == ["RUNNING", "PENDING", "submitted"]


def test_jobs_json_is_written_after_each_submission_keyed_by_absolute_path(
    tmp_path: Path, fake_slurm: FakeSlurm, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    runs = [SlurmRun(Path("results") / name, "", name) for name in ["gn", "sn", "pgn"]]  # relative, as typed
    fake_slurm.refuse("Batch job submission failed: Invalid account or account/partition combination specified", 2)
    folder = Path("results") / "slurm"
    with pytest.raises(GanbenchError, match="Invalid account") as caught:
        slurm.submit(runs, SlurmRequest(gpus=0, minutes=60, account="nope"), folder)
    message = str(caught.value)
    assert caught.value.exit_code == 2 and "\n" not in message
    assert message.startswith(f"sbatch refused the job of {runs[2].run_dir}: Invalid account")
    assert "(2 submitted before it, in jobs.json)" in message
    jobs = json.loads((folder / "jobs.json").read_text())
    assert jobs == {str(tmp_path / "results" / "gn"): "100", str(tmp_path / "results" / "sn"): "101"}
    assert sorted(path.name for path in folder.glob("*.pkl")) == ["100_submitted.pkl", "101_submitted.pkl"]
    # From another folder, the same runs are the same keys: nothing is submitted twice.
    monkeypatch.chdir(tmp_path / "results")
    again = slurm.submit([SlurmRun(Path("..") / "results" / "gn", "", "gn")], SlurmRequest(0, 60), Path("slurm"))
    assert [job.job_id for job in again.values()] == ["100"]


def test_an_unreachable_controller_submits_nothing(tmp_path: Path, fake_slurm: FakeSlurm) -> None:
    fake_slurm.down()
    with pytest.raises(slurm.SlurmError, match="squeue --me: squeue: error: Unable to contact slurm controller"):
        slurm.submit(_runs(tmp_path, ["gn"]), SlurmRequest(0, 60), tmp_path / "slurm")
    assert fake_slurm.submitted() == [] and not (tmp_path / "slurm" / "jobs.json").exists()


# ----------------------------------------------------------------------------------------------------
# The job


def test_several_gpus_run_the_trainer_through_torchrun() -> None:
    single = slurm.TrainJob("", "/runs/gn", gpus=1).command(Path("/tmp/r.toml"))
    assert single == [sys.executable, "-m", "ganbench", "train", "/tmp/r.toml", "--run-dir", "/runs/gn"]
    four = slurm.TrainJob("", "/runs/gn", gpus=4).command(Path("/tmp/r.toml"))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4"]
    assert four == [*torchrun, "-m", "ganbench", "train", "/tmp/r.toml", "--run-dir", "/runs/gn"]


# A job as submitit runs it: its handler of the preemption signal calls job.checkpoint(), then (after requeueing,
# which a cluster does) exits; here it writes what checkpoint() returned and exits 3.
JOB_DRIVER = """
import pickle, signal, sys
from ganbench.slurm import TrainJob
job = TrainJob(open(sys.argv[1]).read(), sys.argv[2])
def preempted(signum, frame):
    delayed = job.checkpoint()
    pickle.dump(delayed.function, open(sys.argv[3], "wb"))
    sys.exit(3)
signal.signal(signal.SIGUSR2, preempted)
signal.signal(signal.SIGTERM, lambda signum, frame: None)  # as submitit: the job's own process bypasses SIGTERM
print(job())
"""

LONG_RECIPE = """
name = "long"
seed = 1
[data]
name = "ring8"
num_samples = 2000
[model]
arch = "mlp"
z_dim = 4
g_channels = 16
d_channels = 16
[method]
name = "gn"
[train]
device = "cpu"
steps = 100000
batch_size_d = 32
batch_size_g = 32
log_every = 10
sample_every = 0
checkpoint_every = 50000
"""


@pytest.mark.slow
def test_a_preempted_job_checkpoints_and_its_requeued_job_resumes(tmp_path: Path) -> None:
    """The preemption signal reaches every process of the job, as Slurm sends it: the trainer must not die of it, and
    the handler must have it save the step it is at before the job is requeued."""
    recipe, run_dir, pickled = tmp_path / "long.toml", tmp_path / "run", tmp_path / "requeued.pkl"
    recipe.write_text(LONG_RECIPE)
    driver = [sys.executable, "-c", JOB_DRIVER, str(recipe), str(run_dir), str(pickled)]
    job = subprocess.Popen(driver, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lock = run_dir / ".lock"
    deadline = time.monotonic() + 120
    while not (lock.exists() and lock.read_text().startswith("pid")):  # the trainer holds its run
        assert job.poll() is None and time.monotonic() < deadline, job.stdout.read() if job.stdout else ""
        time.sleep(0.2)
    time.sleep(1.0)
    os.killpg(job.pid, signal.SIGUSR2)
    output = job.communicate(timeout=120)[0].decode()
    assert job.returncode == 3, output
    info = RunDir(run_dir).read_run()
    assert info["status"] == "interrupted", output
    stopped = int(info["step"])
    assert 0 < stopped < 50000  # saved where the signal found it, not at a periodic checkpoint
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    requeued = pickle.loads(pickled.read_bytes())  # what submitit requeues: the same run, nothing of this process
    assert isinstance(requeued, slurm.TrainJob) and vars(requeued) == {
        **vars(slurm.TrainJob(LONG_RECIPE, str(run_dir)))
    }
    history = RunDir(run_dir).read_history()
    assert history["step"].is_unique and history["step"].max() <= stopped


def test_a_trainer_that_fails_fails_the_job(tmp_path: Path) -> None:
    job = slurm.TrainJob('name = "broken"\n[method]\nname = "nosuch"\n', str(tmp_path / "run"))
    with pytest.raises(slurm.JobFailed, match=r"run: ganbench train ended with exit code 2"):
        job()
