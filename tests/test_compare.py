"""`ganbench compare`: planning methods × seeds, stable run directories, running, skipping and resuming."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from ganbench import SCHEMA_VERSION, compare
from ganbench.compare import PlannedRun, parse_methods, parse_seeds, plan, run_plan, run_state
from ganbench.errors import GanbenchError, RecipeError
from ganbench.slurm import SlurmResources
from ganbench.store import RunDir
from tests.test_slurm import FakeSlurm, fake_slurm_on_path

REPO = Path(__file__).resolve().parents[1]
FAST = [  # the quickstart cut down to its trainers' start-up: 30 steps, a checkpoint and an evaluation every 10
    "train.device=cpu",
    "train.steps=30",
    "train.checkpoint_every=10",
    "train.sample_every=0",
    "train.log_every=5",
    "eval.every=10",
    "eval.num_samples=500",
]


def test_parse_methods_and_seeds() -> None:
    assert parse_methods("sn, gn,pgn,gn,wgangp") == ["sn", "gn", "pgn", "wgan-gp"]
    assert parse_seeds("0,1,2") == [0, 1, 2]
    assert parse_seeds("3-5,1,3") == [3, 4, 5, 1]
    with pytest.raises(GanbenchError, match="--seeds"):
        parse_seeds("a,b")
    with pytest.raises(GanbenchError, match="--methods"):
        parse_methods(" , ")


def test_controlled_plan_changes_only_method_and_seed(tmp_path: Path) -> None:
    planned = plan(["gn", "sn", "wgan-gp"], seeds=[0, 1], results=tmp_path)
    assert [(p.method, p.seed) for p in planned] == [
        ("gn", 0), ("gn", 1), ("sn", 0), ("sn", 1), ("wgan-gp", 0), ("wgan-gp", 1)
    ]  # fmt: skip
    assert all(p.state == "missing" for p in planned)
    assert planned[2].run_dir == tmp_path / "compare" / "quickstart" / "sn" / "seed-0"
    base = planned[0].recipe
    for item in planned:
        assert item.recipe.method.name == item.method and item.recipe.seed == item.seed
        assert item.recipe.train == base.train and item.recipe.data == base.data and item.recipe.model == base.model
    assert planned[0].changes == []  # the quickstart is GN with seed 0 already
    assert planned[3].changes == ["method.name = 'sn'", "seed = 1"]
    assert planned[4].recipe.loss.name == "wasserstein"  # WGAN-GP needs the Wasserstein loss, and says so
    assert "loss.name = 'wasserstein' (wgan-gp needs this loss family)" in planned[4].changes
    assert planned[2].recipe.loss.name == base.loss.name
    again = plan(["gn", "sn", "wgan-gp"], seeds=[0, 1], results=tmp_path)
    assert [p.run_dir for p in again] == [p.run_dir for p in planned]


def test_overrides_give_their_own_stable_folder(tmp_path: Path) -> None:
    planned = plan(["gn"], seeds=[0], overrides=FAST, results=tmp_path)
    assert planned[0].recipe.train.steps == 30
    folder = planned[0].run_dir.parent.parent
    assert folder.parent == tmp_path / "compare" and folder.name.startswith("quickstart-")
    assert plan(["gn"], seeds=[0], overrides=FAST, results=tmp_path)[0].run_dir == planned[0].run_dir
    same = plan(["gn"], seeds=[0], overrides=["train.steps=6000"], results=tmp_path)  # the file's own value
    assert same[0].run_dir.parent.parent.name == "quickstart"


def test_compare_owns_method_and_seed(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="--methods"):
        plan(["gn"], overrides=["method.name=sn"], results=tmp_path)
    with pytest.raises(RecipeError, match="--seeds"):
        plan(["gn"], overrides=["seed=3"], results=tmp_path)
    with pytest.raises(RecipeError, match="method.name"):
        plan(["gnn"], results=tmp_path)  # unknown method: the recipe validation names the key


def test_paper_protocol_takes_each_methods_recipe(tmp_path: Path) -> None:
    base = REPO / "recipes" / "cifar10_cnn_gn_cr.toml"
    planned = plan(["sn", "wgan-gp", "pgn"], recipe_path=base, seeds=[0], results=tmp_path, protocol="paper")
    assert [p.recipe.name for p in planned] == [
        "cifar10_cnn_sn_cr",
        "cifar10_cnn_wgangp_cr",
        "cifar10_cnn_pgn_cr",
    ]
    assert [p.source.name for p in planned if p.source] == [f"{p.recipe.name}.toml" for p in planned]
    assert planned[0].run_dir == tmp_path / "compare" / "cifar10_cnn_cr-paper" / "sn" / "seed-0"
    with pytest.raises(RecipeError, match="give --recipe"):
        plan(["sn"], results=tmp_path, protocol="paper")
    with pytest.raises(RecipeError, match="not a paper recipe name"):
        plan(["sn"], recipe_path=REPO / "recipes" / "quickstart.toml", results=tmp_path, protocol="paper")
    with pytest.raises(RecipeError, match="no paper recipe"):
        plan(["lgan"], recipe_path=base, results=tmp_path, protocol="paper")


@pytest.mark.parametrize(
    ("base", "family", "arch"),
    [
        ("cifar10_biggan_gn", "cifar10_biggan", "biggan32"),
        ("cifar10_biggan_gn_cr", "cifar10_biggan", "biggan32"),
        ("celebahq128_resnet_gn", "celebahq128_resnet", "resnet128"),
        ("celebahq256_resnet_gn", "celebahq256_resnet", "resnet256"),
    ],
)
def test_paper_protocol_plans_the_biggan_and_celebahq_families(
    tmp_path: Path, base: str, family: str, arch: str
) -> None:
    """The PGN paper's other tables: each method's own paper recipe, with that method and its net, over the seeds."""
    cr = "_cr" if base.endswith("_cr") else ""
    methods = ("sn", "gn", "pgn", "gran")
    recipe = REPO / "recipes" / f"{base}.toml"
    planned = plan(list(methods), recipe_path=recipe, seeds=[0, 1], results=tmp_path, protocol="paper")
    assert [(p.method, p.seed) for p in planned] == [(m, s) for m in methods for s in (0, 1)]
    assert [p.recipe.name for p in planned] == [f"{family}_{p.method}{cr}" for p in planned]
    assert all(p.recipe.method.name == p.method and p.recipe.model.arch == arch for p in planned)
    assert all(p.state == "missing" for p in planned)


def test_run_state_reads_the_run_directory(tmp_path: Path) -> None:
    (item,) = plan(["sn"], seeds=[0], results=tmp_path)
    run = RunDir(item.run_dir)
    assert run_state(item.run_dir, item.recipe) == ("missing", "")
    run.root.mkdir(parents=True)
    run.write_recipe(item.recipe)  # a start killed before its run.json
    assert run_state(item.run_dir, item.recipe)[0] == "missing"
    pairs = [("running", "interrupted"), ("interrupted", "interrupted"), ("finished", "finished")]
    for status, state in [*pairs, ("diverged", "diverged"), ("failed", "failed")]:
        run.write_run({"recipe_hash": item.recipe.hash(), "status": status, "step": 5, "steps": 10})
        assert run_state(item.run_dir, item.recipe)[0] == state
    run.write_run({"recipe_hash": "0" * 16, "status": "finished"})
    state, message = run_state(item.run_dir, item.recipe)
    assert state == "conflict" and "different recipe" in message


# ----------------------------------------------------------------------------------------------------
# Running, with a stand-in trainer: fast, and it shows which device each run was given.


FAKE_TRAINER = """
import fcntl, json, os, signal, sys, time, tomllib
from pathlib import Path
recipe_file, run_dir = sys.argv[1], Path(sys.argv[2])
recipe = tomllib.loads(open(recipe_file).read())
method = recipe["method"]["name"]
mode = json.loads(os.environ.get("FAKE_TRAINER_MODES", "{}")).get(method, "")
if method == "sn" and not mode:
    print("Traceback (most recent call last):", file=sys.stderr)
    print("error: pretend the data are missing", file=sys.stderr)
    print("(last line of something else)", file=sys.stderr)
    sys.exit(2)
known = json.loads(Path(os.environ["FAKE_TRAINER_RUNS"]).read_text())  # run dir -> run.json to write
run_dir.mkdir(parents=True, exist_ok=True)
(run_dir / "recipe.toml").write_text(open(recipe_file).read())
info = known[str(run_dir)]
if mode == "kill":  # as the OOM killer leaves a trainer: run.json at "running", its lock dropped by the kernel
    (run_dir / "run.json").write_text(json.dumps({**info, "status": "running", "step": 3}))
    lock = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock, fcntl.LOCK_EX)
    os.write(lock, f"pid {os.getpid()} on here (train)".encode())
    os.kill(os.getpid(), signal.SIGKILL)
if mode == "error":  # the trainer's own record of a failure
    error = "RuntimeError: boom at step 7"
    (run_dir / "run.json").write_text(json.dumps({**info, "status": "failed", "error": error}))
    print(f"Traceback (most recent call last):\\n  ...\\n{error}", file=sys.stderr)
    print(f"failed: {error} (unexpected; run again with --debug for the traceback)", file=sys.stderr)
    sys.exit(1)
if mode == "sleep":  # records when it ran, to count runs at once
    (run_dir / "times.txt").write_text(f"{time.time()}")
    time.sleep(0.5)
    (run_dir / "times.txt").write_text(f"{(run_dir / 'times.txt').read_text()} {time.time()}")
(run_dir / "run.json").write_text(json.dumps(info))
(run_dir / "device.txt").write_text(os.environ.get("CUDA_VISIBLE_DEVICES", "cpu"))
(run_dir / "pythonpath.txt").write_text(os.environ.get("PYTHONPATH", ""))
"""


@pytest.fixture
def fake_trainer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A stand-in for `ganbench train` without torch (fast); `expect(planned)` tells it the runs' run.json."""
    script = tmp_path / "fake_trainer.py"
    script.write_text(FAKE_TRAINER)
    runs = tmp_path / "fake_runs.json"
    monkeypatch.setenv("FAKE_TRAINER_RUNS", str(runs))
    calls: list[list[str]] = []

    def command(recipe_file: Path, run_dir: Path) -> list[str]:
        calls.append([str(recipe_file), str(run_dir)])
        return [sys.executable, str(script), str(recipe_file), str(run_dir)]

    def expect(planned: list[PlannedRun]) -> None:
        info = {"schema_version": SCHEMA_VERSION, "status": "finished", "step": 1, "steps": 1}
        runs.write_text(json.dumps({str(p.run_dir): {**info, "recipe_hash": p.recipe.hash()} for p in planned}))

    def modes(found: dict[str, str]) -> None:
        """method -> how its trainer ends: kill (SIGKILL mid-run), error (a recorded failure), sleep (0.5 s)."""
        monkeypatch.setenv("FAKE_TRAINER_MODES", json.dumps(found))

    monkeypatch.setattr(compare, "train_command", command)
    return types.SimpleNamespace(calls=calls, expect=expect, modes=modes)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def start(self, task: str, total: int | None, completed: int = 0) -> None:
        self.events.append(("start", total))

    def advance(self, n: int = 1, **fields: Any) -> None:
        self.events.append(("advance", fields.get("state")))

    def finish(self) -> None:
        self.events.append(("finish", None))


def test_a_failed_run_does_not_stop_the_others(tmp_path: Path, fake_trainer: Any) -> None:
    planned = plan(["gn", "sn", "pgn"], seeds=[0], results=tmp_path / "results")
    fake_trainer.expect(planned)
    progress = Recorder()
    done = run_plan(planned, devices=["0", "1"], progress=progress)
    states = {item.method: item.state for item in done}
    assert states == {"gn": "finished", "sn": "failed", "pgn": "finished"}
    failed = next(item for item in done if item.method == "sn")
    assert failed.message.startswith("error: pretend the data are missing (log: ")  # its error line, not the last
    assert compare.log_path(failed).is_file()
    devices = {(item.run_dir / "device.txt").read_text() for item in done if item.state == "finished"}
    assert devices <= {"0", "1"}
    import ganbench  # the trainers run the ganbench that plans them, whatever their working folder holds

    first = (done[0].run_dir / "pythonpath.txt").read_text().split(os.pathsep)[0]
    assert Path(first) == Path(ganbench.__file__).resolve().parent.parent
    assert progress.events[0] == ("start", 3) and progress.events[-1] == ("finish", None)
    assert sorted(e[1] for e in progress.events if e[0] == "advance") == ["failed", "finished", "finished"]
    # A second call runs only what is not finished: the failed run, nothing else.
    calls = len(fake_trainer.calls)
    run_plan(plan(["gn", "sn", "pgn"], seeds=[0], results=tmp_path / "results"), devices=["0"])
    assert len(fake_trainer.calls) == calls + 1 and fake_trainer.calls[-1][1].endswith("sn/seed-0")


def test_a_killed_trainer_fails_the_run_and_names_the_signal(tmp_path: Path, fake_trainer: Any) -> None:
    """SIGKILL (the out-of-memory killer) leaves run.json at "running": the run is failed, not "interrupted"."""
    planned = plan(["gn", "pgn"], seeds=[0], results=tmp_path)
    fake_trainer.expect(planned)
    fake_trainer.modes({"gn": "kill", "pgn": "error"})
    done = {item.method: item for item in run_plan(planned, devices=["0"])}
    assert done["gn"].state == "failed"
    assert done["gn"].message.startswith("killed by SIGKILL (often the kernel's out-of-memory killer")
    assert RunDir(done["gn"].run_dir).read_run()["status"] == "running"  # what the trainer left behind
    assert done["pgn"].state == "failed"
    assert done["pgn"].message.startswith("RuntimeError: boom at step 7 (log: ")  # run.json's error line
    assert compare.did_not_finish(list(done.values())) == [done["gn"], done["pgn"]]
    # Planned again, the killed run is interrupted (nobody holds its lock), so compare resumes it.
    states = {item.method: item.state for item in plan(["gn", "pgn"], seeds=[0], results=tmp_path)}
    assert states == {"gn": "interrupted", "pgn": "failed"}


HOLD_LOCK = """
import sys, time
from ganbench.store import RunDir
with RunDir(sys.argv[1]).lock("train"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_run_trained_by_a_live_process_is_running_and_left_alone(tmp_path: Path) -> None:
    (item,) = plan(["gn"], seeds=[0], results=tmp_path)
    run = RunDir(item.run_dir)
    run.root.mkdir(parents=True)
    run.write_run({"recipe_hash": item.recipe.hash(), "status": "running", "step": 5, "steps": 10})
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run.root)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        state, message = run_state(item.run_dir, item.recipe)
        assert state == "running" and message.startswith(f"trained now by pid {holder.pid} on ")
        assert run_plan(plan(["gn"], seeds=[0], results=tmp_path), devices=["0"])[0].state == "running"
    finally:
        holder.kill()
        holder.wait()
    assert run_state(item.run_dir, item.recipe)[0] == "interrupted"  # killed: the kernel dropped its lock


def test_jobs_run_several_trainers_at_once(tmp_path: Path, fake_trainer: Any) -> None:
    planned = plan(["gn", "pgn", "gran", "none"], seeds=[0], overrides=["train.device=cpu"], results=tmp_path)
    fake_trainer.expect(planned)
    fake_trainer.modes({method: "sleep" for method in ("gn", "pgn", "gran", "none")})
    done = run_plan(planned, jobs=2)  # every recipe asks for the CPU: two at a time there
    assert [item.state for item in done] == ["finished"] * 4
    spans = [tuple(map(float, (item.run_dir / "times.txt").read_text().split())) for item in done]
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running, most = 0, 0
    for _, change in events:
        running += change
        most = max(most, running)
    assert most == 2
    assert {(item.run_dir / "device.txt").read_text() for item in done} == {"cpu"}
    with pytest.raises(GanbenchError, match="--jobs 0"):
        run_plan(planned, jobs=0)


def test_dry_run_lines_rebuild_each_runs_recipe(tmp_path: Path) -> None:
    """Each run's `ganbench train SOURCE --set ...` line, as --dry-run prints it, makes exactly the planned recipe."""
    from ganbench import recipe as recipes

    base = REPO / "recipes" / "cifar10_cnn_gn.toml"
    for planned in (
        plan(["sn", "wgan-gp"], seeds=[0, 2], overrides=["train.steps=30"], results=tmp_path),
        plan(
            ["sn", "pgn"], recipe_path=base, seeds=[1], overrides=["train.steps=30"], results=tmp_path, protocol="paper"
        ),
    ):
        lines = compare.format_plan(planned, commands=True).splitlines()
        assert len(lines) == 2 * len(planned)
        for item, line in zip(planned, lines[1::2], strict=True):
            words = shlex.split(line)
            assert words[:2] == ["ganbench", "train"] and words[-2:] == ["--run-dir", str(item.run_dir)]
            sets = [words[i + 1] for i, word in enumerate(words) if word == "--set"]
            assert recipes.load(Path(words[2]), sets).hash() == item.recipe.hash()
    wgan = compare.format_plan(plan(["wgan-gp"], seeds=[0], results=tmp_path), commands=True)
    assert "--set 'method.name=\"wgan-gp\"' --set 'loss.name=\"wasserstein\"' --set seed=0" in wgan


def test_cli_compare_fails_naming_the_run_and_prints_only_its_runs(
    tmp_path: Path, fake_trainer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from ganbench.cli import app

    results = tmp_path / "results"
    earlier = plan(["pgn"], seeds=[5], results=results)  # a run of an earlier call, in the same folder
    everything = plan(["gn", "sn", "pgn"], seeds=[0, 5], results=results)
    fake_trainer.expect(everything)
    assert run_plan(earlier, devices=["0"])[0].state == "finished"
    fake_trainer.modes({"sn": "kill"})
    monkeypatch.setattr(compare, "local_devices", lambda: ["0"])
    done = CliRunner().invoke(app, ["compare", "--methods", "gn,sn", "--seeds", "0", "--results", str(results)])
    assert done.exit_code == 1, done.output
    assert "1 of 2 runs did not finish (sn seed 0: failed: killed by SIGKILL" in " ".join(done.output.split())
    table = done.output.split("## All runs", 1)[1]
    assert "compare/quickstart/gn/seed-0" not in table  # paths are relative to results/compare/quickstart
    assert "gn/seed-0" in table and "sn/seed-0" in table and "pgn/seed-5" not in table
    dry = CliRunner().invoke(
        app, ["compare", "--methods", "sn", "--seeds", "3", "--results", str(results), "--dry-run"]
    )
    assert dry.exit_code == 0 and "--set seed=3" in dry.output and 'method.name="sn"' in dry.output


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSlurm:
    return fake_slurm_on_path(tmp_path / "fake-slurm", monkeypatch)


def test_slurm_submits_each_missing_run_once(tmp_path: Path, fake_slurm: FakeSlurm) -> None:
    planned = plan(["gn", "sn"], seeds=[0], results=tmp_path)
    done = run_plan(planned, launcher="slurm", slurm_resources=SlurmResources(cpus=2, time="1:00:00"))
    assert [item.state for item in done] == ["submitted", "submitted"]
    assert [item.message for item in done] == ["slurm job 100: 0 GPUs, 2 CPUs, 01:00:00"] + [
        "slurm job 101: 0 GPUs, 2 CPUs, 01:00:00"
    ]
    sent = fake_slurm.submitted()
    assert [job["comment"] for job in sent] == [str(item.run_dir.resolve()) for item in planned]
    assert [(job["cpus-per-task"], job["time"]) for job in sent] == [("2", "60"), ("2", "60")]
    assert "gpus-per-node" not in sent[0]  # a CPU-only cluster: no GPU asked for
    pickled = tmp_path / "compare" / "quickstart" / "slurm" / "100_submitted.pkl"
    assert pickled.is_file()  # submitit's folder beside the runs
    # Again while job 100 runs and 101 was cancelled: only the cancelled one is submitted again.
    fake_slurm.set_state("100", "RUNNING")
    fake_slurm.set_state("101", "CANCELLED")
    again = run_plan(plan(["gn", "sn"], seeds=[0], results=tmp_path), launcher="slurm")
    assert [(item.state, item.message.split(":")[0]) for item in again] == [
        ("queued", "slurm job 100 RUNNING"),
        ("submitted", "slurm job 102"),
    ]
    assert compare.did_not_finish(again) == []
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setitem(sys.modules, "submitit", None)  # not installed
    with pytest.raises(GanbenchError, match=r"ganbench\[slurm\]"):
        run_plan(planned, launcher="slurm")
    monkeypatch.undo()


def _cli(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ganbench", "compare", "--launcher", "slurm", *args], capture_output=True, text=True
    )


def test_cli_slurm_errors_are_one_line(tmp_path: Path, fake_slurm: FakeSlurm) -> None:
    """Through the console script: a wrong request exits 2, Slurm out of reach exits 1, one line each."""
    from typer.testing import CliRunner

    from ganbench.cli import app

    base = ["compare", "--methods", "gn,sn", "--results", str(tmp_path / "results")]
    for extra, message in [
        (["--slurm-gpus", "1"], "--slurm-* options: only with --launcher slurm"),
        (["--launcher", "slurm", "--slurm-time", "1h"], "--slurm-time 1h: not a Slurm time"),
        (["--launcher", "slurm", "--slurm-gpus", "1"], "--slurm-gpus 1: partition cpu has none"),
        (["--launcher", "slurm", "--slurm-partition", "gpu"], "--slurm-partition gpu: Slurm has no such partition"),
        (["--launcher", "slurm", "--slurm-config", str(tmp_path / "no.toml")], "no.toml: no such file"),
    ]:
        done = CliRunner().invoke(app, [*base, *extra])
        assert done.exit_code == 2 and message in done.output, (extra, done.output)
    assert fake_slurm.submitted() == []
    config = tmp_path / "cluster.toml"
    config.write_text('[slurm]\ncpus = 3\ntime = "2-0"\naccount = "lab"\n')
    done = CliRunner().invoke(app, [*base, "--launcher", "slurm", "--slurm-config", str(config), "--slurm-cpus", "4"])
    assert done.exit_code == 0, done.output
    assert [(job["cpus-per-task"], job["time"], job["account"]) for job in fake_slurm.submitted()] == [
        ("4", "2880", "lab")
    ] * 2
    fake_slurm.refuse("Batch job submission failed: Invalid qos specification")
    refused = _cli(["--methods", "pgn", "--results", str(tmp_path / "results")])
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines() == [
        f"error: sbatch refused the job of {tmp_path}/results/compare/quickstart/pgn/seed-0: "
        "Invalid qos specification; check --slurm-partition, --slurm-account, --slurm-gpus, --slurm-cpus and "
        "--slurm-time"
    ]
    fake_slurm.down()
    down = _cli(["--methods", "pgn", "--results", str(tmp_path / "results")])
    assert down.returncode == 1 and down.stderr.strip().splitlines() == [
        "failed: sinfo -h: sinfo: error: Unable to contact slurm controller (connect failure)"
    ]


# ----------------------------------------------------------------------------------------------------
# The real thing: `ganbench train` subprocesses on the quickstart.


def _mtimes(folder: Path) -> dict[str, float]:
    return {str(path): path.stat().st_mtime_ns for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.slow
def test_compare_quickstart_runs_then_skips_everything(tmp_path: Path) -> None:
    results = tmp_path / "results"
    planned = plan(["gn", "sn"], seeds=[0, 1], overrides=FAST, results=results)
    done = run_plan(planned)
    assert [item.state for item in done] == ["finished"] * 4, [item.message for item in done]
    for item in done:
        metrics = RunDir(item.run_dir).read_metrics()
        assert set(metrics["metric"]) >= {"modes_covered", "hq_percent"}
        assert sorted(set(metrics["step"])) == [10, 20, 30]
    before = _mtimes(results)
    again = plan(["gn", "sn"], seeds=[0, 1], overrides=FAST, results=results)
    assert [item.state for item in again] == ["finished"] * 4
    assert [item.state for item in run_plan(again)] == ["finished"] * 4
    assert _mtimes(results) == before  # nothing re-run, nothing rewritten

    from ganbench.report import build_report

    text, warnings = build_report(compare.results_root(done), "markdown", None)
    assert not warnings
    assert "| GN-GAN | 0, 1 |" in text and "| SN-GAN | 0, 1 |" in text


class StopAfter:
    """A progress bar that raises KeyboardInterrupt once `step` G steps are done, as a stop between two steps."""

    def __init__(self, step: int) -> None:
        self.step, self.done = step, 0

    def start(self, task: str, total: int | None, completed: int = 0) -> None:
        self.done = completed

    def advance(self, n: int = 1, **fields: Any) -> None:
        self.done += n
        if n and self.done == self.step:
            raise KeyboardInterrupt

    def finish(self) -> None:
        pass


@pytest.mark.slow
def test_compare_resumes_a_stopped_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ganbench.evaluation import TrainingEvaluator
    from ganbench.train import loop

    overrides = [*FAST, "eval.every=5"]
    (item,) = plan(["gn"], seeds=[0], overrides=overrides, results=tmp_path)
    # The planned run stopped in this process after step 17: checkpoint at 10, rows written up to 15.
    monkeypatch.setattr(loop, "HISTORY_FLUSH_SECONDS", 0.0)
    with pytest.raises(KeyboardInterrupt):
        loop.train(item.recipe, RunDir(item.run_dir), StopAfter(17), TrainingEvaluator)
    first = item.run_dir / "checkpoints" / "step-10.pt"
    assert first.exists() and not (item.run_dir / "checkpoints" / "step-20.pt").exists()
    assert RunDir(item.run_dir).read_history()["step"].max() == 15
    assert RunDir(item.run_dir).read_metrics()["step"].max() == 15
    (replanned,) = plan(["gn"], seeds=[0], overrides=overrides, results=tmp_path)
    assert replanned.state == "interrupted"
    kept = first.stat().st_mtime_ns
    (done,) = run_plan([replanned])  # a `ganbench train` subprocess
    assert done.state == "finished", done.message
    assert first.stat().st_mtime_ns == kept  # resumed from its checkpoint, not trained again from step 0
    history = RunDir(done.run_dir).read_history()
    assert list(history["step"]) == [5, 10, 15, 20, 25, 30]  # the rows past step 10 replaced, not duplicated
    metrics = RunDir(done.run_dir).read_metrics()
    assert sorted(set(metrics["step"])) == [5, 10, 15, 20, 25, 30]
    assert sorted(metrics.groupby(["step", "metric"]).size().unique()) == [1]  # no evaluation twice


def test_packaged_quickstart_is_the_repository_one() -> None:
    """ganbench/recipes/quickstart.toml is package data (for non-editable installs): it must not drift."""
    packaged = REPO / "ganbench" / "recipes" / "quickstart.toml"
    assert packaged.read_text() == (REPO / "recipes" / "quickstart.toml").read_text()
    assert compare.default_recipe() == packaged.resolve()
