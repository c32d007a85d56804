"""The `ganbench` command line: parse, call one library function, render with rich."""

from __future__ import annotations

import errno
import os
import sys
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from ganbench import __version__
from ganbench.errors import GanbenchError, WorkFailed

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Benchmark GANs with Lipschitz discriminators (SN, GN, PGN, GraN, WGAN-GP, LGAN max-GP, CR).",
)
# markup off: paths, recipe values and messages come from users, and "[...]" in them must print as it is
console = Console(markup=False)
errors = Console(stderr=True, markup=False)
DEBUG_ENV = "GANBENCH_DEBUG"  # set (or pass --debug) to see the traceback of a failure instead of one line


class RichProgress:
    """The library's Progress protocol drawn as a rich bar with rate and ETA."""

    def __init__(self, unit: str = "step") -> None:
        self.unit = unit
        self._bar: Progress | None = None
        self._task: Any = None

    def start(self, task: str, total: int | None, completed: int = 0) -> None:
        self.finish()
        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}", markup=False),
            console=errors,
            transient=False,
        )
        self._bar.start()
        self._task = self._bar.add_task(task, total=total, completed=completed, rate="", info="")

    def advance(self, n: int = 1, **fields: Any) -> None:
        if self._bar is None:
            return
        update: dict[str, Any] = {"advance": n}
        task = self._bar.tasks[0]
        if task.speed:
            update["rate"] = f"{task.speed:.1f} {self.unit}/s"
        if fields:
            update["info"] = " ".join(f"{key}={_short(value)}" for key, value in fields.items())
        self._bar.update(self._task, **update)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _say(kind: str, style: str, message: object) -> None:
    """One line on stderr: `kind:` in colour, then the message exactly as it is (never read as markup)."""
    errors.print(Text.assemble((f"{kind}:", style), " ", " ".join(str(message).split("\n"))), soft_wrap=True)


def _guarded(work: Callable[[], Any]) -> Any:
    """Run `work`: a user error becomes one line and exit code 2; failed work (a diverged run, a full disk, a
    read-only folder, no memory, a bug) one line and exit code 1. $GANBENCH_DEBUG or --debug shows the traceback."""
    try:
        return work()
    except GanbenchError as err:
        if os.environ.get(DEBUG_ENV):
            raise
        _say("error", "red", err)
        raise typer.Exit(err.exit_code) from None
    except WorkFailed as err:
        if os.environ.get(DEBUG_ENV):
            raise
        _say("failed", "red", err)
        raise typer.Exit(err.exit_code) from None
    except KeyboardInterrupt:
        errors.print("interrupted: the run was checkpointed; run the same command again to resume")
        raise typer.Exit(130) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as err:  # the work failed for a reason outside ganbench's control, or a bug
        if os.environ.get(DEBUG_ENV):
            raise
        _say("failed", "red", failure_line(err))
        raise typer.Exit(1) from None


def failure_line(err: BaseException) -> str:
    """What went wrong, in one line, for failures that are not ganbench's own errors."""
    from ganbench.files import no_room_errno

    code = no_room_errno(err)
    if code is not None and not (isinstance(err, OSError) and err.errno == code):  # a writer's own words for it
        filename = err.filename if isinstance(err, OSError) else None
        err = OSError(code, os.strerror(code), filename) if filename else OSError(code, os.strerror(code))
    if isinstance(err, OSError) and err.strerror:
        where = f"{err.filename}: " if err.filename else ""
        hint = {
            errno.ENOSPC: "free some space or write elsewhere (--run-dir, --results)",
            errno.EROFS: "the file system is read-only; write elsewhere (--run-dir, --results)",
            errno.EACCES: "no permission; write elsewhere (--run-dir, --results) or fix the folder's permissions",
            errno.EDQUOT: "disk quota exceeded; free some space or write elsewhere",
        }.get(err.errno or 0, "")
        return f"{where}{err.strerror}" + (f"; {hint}" if hint else "")
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError":
        return "out of memory; lower train.batch_size_d/batch_size_g or eval.batch_size, or use a larger device"
    text = " ".join(str(err).split()) or "no message"
    return f"{type(err).__name__}: {text[:300]} (unexpected; run again with --debug for the traceback)"


def _check_output(path: Path, option: str, *, folder: bool, fix: str = "") -> None:
    """Refuse (exit code 2) an output path that cannot be written as a folder or a file, before anything is written."""
    from ganbench.files import output_problem

    problem = output_problem(path, folder=folder)
    if problem:
        fix = fix or f"give another {'folder' if folder else 'file'} path"
        raise GanbenchError(f"{option} {path}: {problem}; {fix}")


def default_run_dir(recipe_path: Path, overrides: list[str], results: Path = Path("results")) -> Path:
    """results/<recipe name>, plus the recipe's short hash when --set changed it."""
    from ganbench import recipe as recipes

    resolved = recipes.load(recipe_path, overrides)
    if not overrides or resolved.hash() == recipes.load(recipe_path).hash():
        return results / resolved.name
    return results / f"{resolved.name}-{resolved.hash()[:8]}"


SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a recipe key: --set train.steps=2000 (value read as a TOML literal)."),
]


@app.command()
def train(
    recipe_path: Annotated[Path, typer.Argument(metavar="RECIPE.toml", help="The recipe to train.")],
    overrides: SetOption = None,
    run_dir: Annotated[
        Path | None,
        typer.Option(help="Run directory; default results/<recipe name> (+ hash when --set changed the recipe)."),
    ] = None,
    nproc: Annotated[
        int, typer.Option(min=1, help="Processes (GPUs) of this machine training the run together, via torchrun.")
    ] = 1,
    tensorboard: Annotated[
        bool | None,
        typer.Option(
            "--tensorboard/--no-tensorboard",
            help="Also write the history, in-training metrics and sample sheets as TensorBoard events under "
            "RUN_DIR/tensorboard/ (train.tensorboard; needs pip install 'ganbench[tensorboard]'); default the "
            "recipe's.",
        ),
    ] = None,
) -> None:
    """Train one recipe into a run directory; an existing run directory of the same recipe resumes."""
    import subprocess

    from ganbench import launch
    from ganbench import recipe as recipes
    from ganbench.store import RunDir
    from ganbench.train import distributed, tensorboard_events
    from ganbench.train.loop import train as train_recipe

    if tensorboard is not None:  # a recipe key like any other, so torchrun's processes get it too
        overrides = [*(overrides or []), f"train.tensorboard={str(tensorboard).lower()}"]

    def work() -> None:
        resolved = recipes.load(recipe_path, overrides or [])
        if resolved.train.tensorboard:
            tensorboard_events.require()  # before torchrun starts processes that would wait on each other
        target = RunDir(run_dir or default_run_dir(recipe_path, overrides or []))
        _check_output(target.root, "--run-dir", folder=True)
        rank, world, _ = distributed.environment_rank()
        if nproc > 1 and world == 1:  # launch the processes; each runs this command without --nproc
            command = launch.train_command(recipe_path, target.root, nproc, overrides or [])
            code = subprocess.call(command, env=launch.trainer_environment())
            if code:
                raise WorkFailed(f"torchrun exited with status {code}")
            _print_run_summary(target, target.read_run())
            return
        if rank == 0:
            console.print(Text.assemble("training ", (resolved.name, "bold"), f" into {target.root}"), soft_wrap=True)
        if world > 1:
            info = distributed.train_distributed(resolved, target, RichProgress(), _training_evaluator())
        else:
            info = train_recipe(resolved, target, RichProgress(), _training_evaluator())
        if info is not None:
            _print_run_summary(target, info)

    _guarded(work)


def _training_evaluator() -> Callable[..., Any]:
    from ganbench.evaluation import TrainingEvaluator

    return TrainingEvaluator


def _print_run_summary(run: Any, info: Mapping[str, Any]) -> None:
    table = Table(title=f"{info.get('name')} — {info.get('status')} at step {info.get('step')}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    history = run.read_history()
    if not history.empty:
        last = history.iloc[-1]
        for column in ("loss_d", "loss_g", "grad_norm_real", "grad_norm_fake", "g_steps_per_s"):
            if column in last:
                table.add_row(f"{column} (last log)", f"{last[column]:.4g}")
    metrics = run.read_metrics()
    if not metrics.empty:
        final = metrics[metrics["step"] == metrics["step"].max()]
        for row in final.itertuples():
            table.add_row(f"{row.metric} ({row.generator}, step {row.step})", f"{row.value:.4g}")
    best = info.get("best")
    if best:
        table.add_row("best checkpoint", f"step {best['step']} by {best['metric']} of {best['generator']} G")
    console.print(table)
    console.print(f"run directory: {run.root}")


@app.command("eval")
def evaluate(
    run_dir: Annotated[
        Path | None,
        typer.Argument(metavar="[RUN_DIR]", help="A run directory made by `ganbench train` (not with --images)."),
    ] = None,
    checkpoint: Annotated[str | None, typer.Option(help="best (default), last, all, or a step number.")] = None,
    ema: Annotated[
        bool | None,
        typer.Option(
            "--ema/--no-ema",
            help="Evaluate the EMA generator or the raw one; default the one the recipe's protocol reports "
            "(eval.select; the raw G when the run keeps no EMA).",
        ),
    ] = None,
    bn_mode: Annotated[
        str | None,
        typer.Option(
            help="BatchNorm while sampling: batch (train mode, the official code) or running; default the recipe's."
        ),
    ] = None,
    num_samples: Annotated[int | None, typer.Option(help="Generated samples; default the recipe's (50k).")] = None,
    metrics: Annotated[str | None, typer.Option(help="Comma list of fid,is,kid,pr; default the recipe's.")] = None,
    backend: Annotated[str | None, typer.Option(help="torch-fidelity (default) or pytorch-fid.")] = None,
    inception_weights: Annotated[
        str | None, typer.Option(help="Local Inception weights file (also $GANBENCH_INCEPTION_WEIGHTS).")
    ] = None,
    ref_stats: Annotated[str | None, typer.Option(help="Reference statistics .npz (TTUR mu/sigma) to use.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    force: Annotated[bool, typer.Option(help="Recompute scores already present for the same protocol.")] = False,
    images: Annotated[
        Path | None,
        typer.Option(
            help="Score these images instead of a run's: FILE.npz (uint8 N×H×W×3, key arr_0) or a folder of PNGs; "
            "needs --like and --name.",
            show_default=False,
        ),
    ] = None,
    like: Annotated[
        Path | None,
        typer.Option(
            help="With --images: the run directory or recipe .toml whose samples' evaluation scores them.",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            help="With --images: the entry's name; its rows go to RESULTS/external/NAME/.", show_default=False
        ),
    ] = None,
    results: Annotated[Path, typer.Option(help="With --images: the results folder of the entry.")] = Path("results"),
) -> None:
    """Score checkpoints of a run; one row per (checkpoint, metric) is appended to metrics.parquet. With --images,
    score images made elsewhere as the samples of --like would be, into an external entry the report lists among
    the other protocols."""
    from ganbench.errors import RunDirError
    from ganbench.evaluation import evaluate_run
    from ganbench.store import RunDir

    def work() -> None:
        from ganbench.metrics.inception import BACKENDS

        if backend is not None and backend not in BACKENDS:  # a run of 2-D points would never look at it
            raise GanbenchError(f"--backend {backend}: unknown backend; choose one of {', '.join(BACKENDS)}")
        scoring: dict[str, Any] = {  # how either kind of sample is scored
            "metrics": metrics.split(",") if metrics else None,
            "backend": backend,
            "inception_weights": inception_weights,
            "ref_stats": ref_stats,
            "device": device,
            "force": force,
            "progress": RichProgress("img"),
        }
        if images is not None or like is not None or name is not None:
            sampling = (run_dir, checkpoint, ema, bn_mode, num_samples)
            options = ("RUN_DIR", "--checkpoint", "--ema/--no-ema", "--bn-mode", "--num-samples")
            given = [option for option, value in zip(options, sampling, strict=True) if value is not None]
            if given:
                raise GanbenchError(f"--images: scores files, not a run's generator; leave out {', '.join(given)}")
            _score_images(images, like, name, results, scoring)
            return
        if run_dir is None:
            raise GanbenchError("ganbench eval: give RUN_DIR, or --images with --like and --name")
        run = RunDir(run_dir).require()  # a damaged run.json is refused before anything runs
        if ema and run.read_recipe().train.ema_decay == 0:
            raise RunDirError(
                f"{run_dir}: the run has no EMA generator (trained with train.ema_decay = 0); evaluate its "
                "generator with --no-ema"
            )
        rows = evaluate_run(
            run, checkpoints=checkpoint or "best", ema=ema, num_samples=num_samples, bn_mode=bn_mode, **scoring
        )
        _print_rows(rows, str(run_dir))

    _guarded(work)


def _score_images(
    images: Path | None, like: Path | None, name: str | None, results: Path, scoring: dict[str, Any]
) -> None:
    """`ganbench eval --images`: score images made elsewhere into an external entry, and print its rows."""
    from ganbench.sample_sets import EXTERNAL_FOLDER, score_images

    missing = [option for option, value in (("--images", images), ("--like", like), ("--name", name)) if not value]
    if missing:
        raise GanbenchError(
            f"--images: also give {', '.join(missing)} (images FILE.npz|DIR, like RUN_DIR|RECIPE.toml, name NAME)"
        )
    assert images is not None and like is not None and name is not None
    _check_output(results / EXTERNAL_FOLDER / name, "--name", folder=True)
    entry, rows = score_images(images, like, name, results, **scoring)
    _print_rows(rows, f"{images} as {like}: {entry.root}")


def _print_rows(rows: Any, title: str) -> None:
    """New metric rows as a table, or the line saying there were none to add."""
    if rows.empty:
        console.print("nothing to do: these scores are already in metrics.parquet (use --force to recompute)")
        return
    from ganbench.metrics.fid import RANK_MARK, row_rank_note

    table = Table(title=title)
    for column in ("checkpoint", "step", "generator", "metric", "value", "n_fake", "ref_split", "extractor"):
        table.add_column(column, justify="right" if column in ("step", "value", "n_fake") else "left")
    notes: list[str] = []  # a FID from N ≤ 2048 samples on a side: marked, and why under the table
    for row in rows.to_dict("records"):
        note = row_rank_note(row)
        if note and note not in notes:
            notes.append(note)
        table.add_row(
            str(row["checkpoint"]),
            str(row["step"]),
            row["generator"],
            row["metric"],
            f"{row['value']:.4f}" + (f" {RANK_MARK}" if note else ""),
            str(row["n_fake"]),
            str(row["ref_split"]),
            str(row["extractor"]),
        )
    console.print(table)
    for note in notes:
        console.print(f"{RANK_MARK} {note}", soft_wrap=True, highlight=False, markup=False)


@app.command()
def sample(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="A run directory made by `ganbench train`.")],
    out: Annotated[
        Path,
        typer.Option(
            help="FILE.npz (uint8 N×H×W×3 under the key arr_0; class labels as arr_1) or a folder, which gets one "
            "PNG per sample; never written over.",
            show_default=False,
        ),
    ],
    checkpoint: Annotated[str, typer.Option(help="best, last, or a step number.")] = "best",
    generator: Annotated[
        str,
        typer.Option(
            help="selected (the one the run is judged by: eval.select; raw when the run keeps no EMA), ema or raw."
        ),
    ] = "selected",
    num: Annotated[
        int | None, typer.Option(min=1, help="Samples; default the recipe's eval.num_samples.", show_default=False)
    ] = None,
    bn_mode: Annotated[
        str | None,
        typer.Option(help="BatchNorm while sampling: batch or running; default the recipe's (as `ganbench eval`)."),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
) -> None:
    """Export the exact samples `ganbench eval` scores for a checkpoint (same codes, labels, BatchNorm mode and
    generator, rounded to uint8), as an .npz or a folder of PNGs, for other tools or `ganbench eval --images`."""
    from ganbench.sample_sets import export_samples
    from ganbench.store import RunDir

    def work() -> None:
        done = export_samples(
            RunDir(run_dir),
            out,
            checkpoint=checkpoint,
            generator=generator,
            num=num,
            bn_mode=bn_mode,
            device=device,
            progress=RichProgress("img"),
        )
        labels = " and their class labels (arr_1)" if done.labels else ""
        console.print(
            f"written: {done.path}: {done.count:,} samples{labels} of the {done.generator} G of {done.checkpoint} "
            f"(step {done.step}), BatchNorm {done.bn_mode}",
            soft_wrap=True,
        )

    _guarded(work)


@app.command()
def stats(
    dataset: Annotated[str, typer.Argument(help="A dataset name: cifar10, cifar10-jpeg, stl10, folder, ...")],
    split: Annotated[str, typer.Option(help="train, test, unlabeled, all; default the papers' choice.")] = "",
    size: Annotated[int, typer.Option(help="Resize to this many pixels; 0 keeps the dataset's own (STL-10: 48).")] = 0,
    root: Annotated[str, typer.Option(help="Where the dataset's files are.")] = "data",
    backend: Annotated[str, typer.Option(help="torch-fidelity (default) or pytorch-fid.")] = "torch-fidelity",
    inception_weights: Annotated[
        str | None, typer.Option(help="Local Inception weights file (also $GANBENCH_INCEPTION_WEIGHTS).")
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Images per Inception batch.", min=1, max=65536)] = 250,
    num: Annotated[
        int,
        typer.Option(
            help="Use this many images of the split (a fixed seeded random choice, as the recipe key eval.ref_num); "
            "0 = all of them.",
            min=0,
        ),
    ] = 0,
    features: Annotated[
        bool,
        typer.Option(
            "--features",
            help="Also keep the reference features in the cache, as KID and precision/recall need (float32: 400 MB "
            "for 50k images).",
        ),
    ] = False,
    export: Annotated[Path | None, typer.Option(help="Also write the statistics to this TTUR .npz.")] = None,
) -> None:
    """Compute (or read from the cache) a dataset split's Inception reference statistics."""
    from ganbench.data import output_shape
    from ganbench.devices import resolve_device
    from ganbench.errors import MetricError, RecipeError
    from ganbench.metrics.inception import build_extractor
    from ganbench.metrics.refstats import reference_statistics, save_npz
    from ganbench.recipe import DataConfig

    def work() -> None:
        if size < 0:
            raise RecipeError(f"--size {size}: must be 0 (the dataset's own size) or a positive pixel count")
        if export is not None:
            _check_output(export, "--export", folder=False)
        cfg = DataConfig(name=dataset, root=root, split=split or "train", size=size)
        output_shape(cfg)  # an unknown dataset or split is refused before any weights are looked for
        where = resolve_device(device, key="--device", error=MetricError)
        extractor = build_extractor(backend, inception_weights, where)
        result = reference_statistics(
            cfg,
            extractor,
            split=split,
            num=num,
            with_features=features,
            batch_size=batch_size,
            progress=RichProgress("img"),
        )
        table = Table(title=f"reference statistics: {result.dataset} {result.split}")
        table.add_column("field")
        table.add_column("value")
        for name, value in (
            ("images", result.n),
            ("dataset hash", result.dataset_hash),
            ("cache key", result.key),
            ("extractor", extractor.name),
            ("weights", extractor.weights),
            ("resize", extractor.resize),
        ):
            table.add_row(name, str(value))
        console.print(table)
        if export is not None:
            save_npz(export, result)
            console.print(f"written: {export}")

    _guarded(work)


PACK_FORMATS = ("celebahq",)


@app.command()
def pack(
    dataset: Annotated[str, typer.Argument(help="What to pack: celebahq (the GN-GAN code's LMDB layout).")],
    folder: Annotated[Path, typer.Argument(help="The folder holding the images (1.jpg ... 30000.jpg).")],
    out: Annotated[Path, typer.Argument(help="The LMDB folder to create (it must not exist yet).")],
    size: Annotated[
        int, typer.Option(help="Resize to this many pixels and store PNGs; 0 stores each file's bytes as they are.")
    ] = 0,
) -> None:
    """Pack an image folder into an LMDB (keys 0 ... N-1 in file-number order), as the celebahq datasets read."""
    from ganbench.data.celebahq import pack_lmdb

    def work() -> None:
        if dataset not in PACK_FORMATS:
            raise GanbenchError(f"pack {dataset!r}: not a format ganbench packs; choose {', '.join(PACK_FORMATS)}")
        _check_output(out, "pack OUT", folder=True)
        packed = pack_lmdb(folder, out, size, progress=RichProgress("img"))
        size_text = f"{packed.images:,} images, {packed.bytes / 2**20:,.1f} MiB"
        console.print(f"written: {packed.path} ({size_text})", soft_wrap=True)

    _guarded(work)


@app.command()
def compare(
    methods: Annotated[str, typer.Option(help="Comma list of methods, e.g. sn,gn,pgn,gran.")],
    recipe_path: Annotated[
        Path | None, typer.Option("--recipe", help="Base recipe; default the offline quickstart.")
    ] = None,
    seeds: Annotated[str, typer.Option(help="Seeds, e.g. 0,1,2 or 0-4.")] = "0",
    overrides: SetOption = None,
    results: Annotated[Path, typer.Option(help="Results folder; runs go to RESULTS/compare/<base>/.")] = Path(
        "results"
    ),
    protocol: Annotated[
        str, typer.Option(help="controlled: only the method differs; paper: each method's paper recipe.")
    ] = "controlled",
    launcher: Annotated[str, typer.Option(help="local (one run per GPU, CPU when none) or slurm (submitit).")] = (
        "local"
    ),
    dry_run: Annotated[
        bool, typer.Option(help="Show the plan, with each run's `ganbench train ... --set` line, and run nothing.")
    ] = False,
    jobs: Annotated[
        int,
        typer.Option(
            help="Runs at once per GPU (or on the CPU when there is none or every recipe sets train.device=cpu)."
        ),
    ] = 1,
    slurm_gpus: Annotated[
        int | None,
        typer.Option(
            help="Slurm: GPUs per job (one job per run; several run it through torchrun); default 1 where the "
            "partition has GPUs, else 0.",
            show_default=False,
        ),
    ] = None,
    slurm_cpus: Annotated[
        int | None, typer.Option(help="Slurm: CPU cores per job; default Slurm's.", show_default=False)
    ] = None,
    slurm_time: Annotated[
        str | None,
        typer.Option(
            help="Slurm: time limit per job (minutes, H:MM:SS, D-HH); a job requeues itself at the limit and "
            "resumes; default the partition's.",
            show_default=False,
        ),
    ] = None,
    slurm_partition: Annotated[
        str | None, typer.Option(help="Slurm: partition; default the cluster's default.", show_default=False)
    ] = None,
    slurm_account: Annotated[str | None, typer.Option(help="Slurm: account to charge.", show_default=False)] = None,
    slurm_config: Annotated[
        Path | None,
        typer.Option(
            help="Slurm: a TOML file whose slurm table sets gpus, cpus, time, partition, account (the options "
            "above win).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run one recipe per (method, seed), skipping finished runs and resuming interrupted ones, then print the table."""
    from ganbench import compare as comparing
    from ganbench import slurm
    from ganbench.report import build_report

    def work() -> None:
        comparing.check_launch(launcher, jobs)  # every option is checked before the plan, --dry-run included
        comparing.check_outputs(results)
        asked = slurm.SlurmResources(slurm_gpus, slurm_cpus, slurm_time, slurm_partition, slurm_account)
        if launcher != "slurm" and (asked != slurm.SlurmResources() or slurm_config is not None):
            raise GanbenchError("--slurm-* options: only with --launcher slurm")
        resources = slurm.merge(slurm.load_config(slurm_config) if slurm_config else None, asked)
        planned = comparing.plan(
            comparing.parse_methods(methods),
            recipe_path=recipe_path,
            seeds=comparing.parse_seeds(seeds),
            overrides=overrides or [],
            results=results,
            protocol=protocol,
        )
        comparing.check_outputs(results, planned)
        console.print(comparing.format_plan(planned, commands=dry_run), soft_wrap=True, highlight=False, markup=False)
        if dry_run:
            return
        done = comparing.run_plan(
            planned, launcher=launcher, progress=RichProgress("run"), jobs=jobs, slurm_resources=resources
        )
        if launcher == "slurm":
            console.print(comparing.format_plan(done), soft_wrap=True, highlight=False, markup=False)
            return
        # The table of this call's runs only, whatever else the results folder holds.
        text, warnings = build_report(
            comparing.results_root(done), "markdown", figures=False, only=[item.run_dir for item in done]
        )
        console.print(text, soft_wrap=True, highlight=False, markup=False)
        for warning in warnings:
            errors.print(f"warning: {warning}", soft_wrap=True, highlight=False, markup=False)
        bad = comparing.did_not_finish(done)
        if bad:
            details = "; ".join(f"{item.method} seed {item.seed}: {item.state}: {item.message}" for item in bad)
            raise WorkFailed(f"{len(bad)} of {len(done)} runs did not finish ({details})")

    _guarded(work)


@app.command()
def report(
    results: Annotated[Path, typer.Option(help="Folder holding the run directories.")] = Path("results"),
    fmt: Annotated[str, typer.Option("--format", help="markdown, latex, csv or html.")] = "markdown",
    output: Annotated[
        Path | None, typer.Option(help="Write the report here (plots beside it for markdown and html).")
    ] = None,
    generator: Annotated[
        str,
        typer.Option(
            help="Whose scores: selected (each run's eval.select, as its protocol reports), ema or raw; "
            "runs without EMA report the raw G."
        ),
    ] = "selected",
    tables: Annotated[
        str | None,
        typer.Option(
            help="Comma list of tables: cifar10, stl10, biggan (conditional CIFAR-10), celebahq (each with its "
            "other-protocols table), other (recipes of no paper table), runs; default all (LaTeX: all but runs)."
        ),
    ] = None,
    columns: Annotated[str, typer.Option(help="The paper tables' columns: ours, paper or both.")] = "both",
    decimals: Annotated[
        int | None, typer.Option(help="Decimals of our numbers (0-6); default each metric's own (FID, IS: 2).")
    ] = None,
    score_real: Annotated[
        bool,
        typer.Option(
            help="First score the reference images of each paper dataset with runs (IS, FID against their "
            "statistics) for the Real data row; needs the data and Inception weights, kept in RESULTS/reference/."
        ),
    ] = False,
    device: Annotated[str, typer.Option(help="With --score-real: auto, cpu, cuda or cuda:N.")] = "auto",
) -> None:
    """Render the papers' tables from run directories, with the papers' numbers and the deltas beside ours."""
    from ganbench.report import build_report, check_options, parse_tables

    def work() -> None:
        chosen = parse_tables(tables) if tables is not None else None
        check_options(fmt, generator=generator, tables=chosen, columns=columns, decimals=decimals)
        if output is not None:
            _check_output(output, "--output", folder=False)
            if fmt in ("markdown", "html"):  # its figures go to a folder beside it
                plots, fix = output.parent / f"{output.stem}_plots", "move it away or give another --output"
                _check_output(plots, f"--output {output}: the figures' folder", folder=True, fix=fix)
        if score_real and results.is_dir():
            from ganbench.report import real

            fix = "move it away or leave out --score-real"
            _check_output(results / real.FOLDER, "--score-real: the reference rows' folder", folder=True, fix=fix)
            for line in real.score_missing(results, real.paper_datasets(results), device, RichProgress("img")):
                errors.print(line, soft_wrap=True, highlight=False, markup=False)
        text, warnings = build_report(
            results, fmt, output, generator=generator, tables=chosen, columns=columns, decimals=decimals
        )
        if output is None:
            console.print(text, soft_wrap=True, highlight=False, markup=False)
        else:
            console.print(f"written: {output}")
        for warning in warnings:
            errors.print(f"warning: {warning}", soft_wrap=True, highlight=False, markup=False)

    _guarded(work)


@app.command()
def status(
    results: Annotated[
        Path, typer.Argument(metavar="[RESULTS]", help="The folder holding the run directories.")
    ] = Path("results"),
    watch: Annotated[
        bool, typer.Option(help="Redraw the table every --interval seconds until no run is running or queued.")
    ] = False,
    interval: Annotated[float, typer.Option(min=0.2, help="Seconds between redraws with --watch.")] = 2.0,
) -> None:
    """One table of every run below RESULTS: status (running while its trainer holds the lock, stale when that
    trainer died), step, G-steps/s, time left, best evaluation, last error line, Slurm job and queue state."""
    from ganbench import status as runs

    def work() -> None:
        screen = Console(markup=False)  # the terminal's width now (the module's console may have fixed it at import)
        snapshot = runs.collect(results)
        if not watch:
            screen.print(runs.render(snapshot, screen.width))
            return
        import time

        from rich.live import Live

        try:
            with Live(runs.render(snapshot, screen.width), console=screen, auto_refresh=False) as live:
                while snapshot.live:
                    time.sleep(interval)
                    snapshot = runs.collect(results)
                    live.update(runs.render(snapshot, screen.width), refresh=True)
        except KeyboardInterrupt:  # watching stops; nothing was running under this command
            return

    _guarded(work)


LIST_KINDS = ("methods", "nets", "datasets", "losses", "metrics", "recipes")


@app.command("list")
def list_entries(
    kind: Annotated[
        str | None, typer.Argument(help="methods, nets, datasets, losses, metrics or recipes; default all.")
    ] = None,
) -> None:
    """Print what ganbench knows: the registered methods, nets, datasets and losses, the metrics, the recipes."""

    def work() -> None:
        if kind is not None and kind not in LIST_KINDS:
            raise GanbenchError(f"list {kind!r}: not something ganbench lists; choose one of {', '.join(LIST_KINDS)}")
        for name in [kind] if kind else LIST_KINDS:
            rows = _catalog(name)
            table = Table(title=name)
            for column in rows[0]:
                table.add_column(column, overflow="fold")
            for row in rows:
                table.add_row(*(Text(value) for value in row.values()))
            console.print(table)

    _guarded(work)


def _catalog(kind: str) -> list[dict[str, str]]:
    """One row per entry of `kind`, each with the same columns."""
    from ganbench import data, losses, methods, nets
    from ganbench import recipe as recipes

    if kind == "metrics":
        from ganbench.metrics.inception import FEATURE_METRICS, METRICS

        inputs = {True: "Inception pool features", False: "Inception logits"}
        rows = [{"name": m, "data": "images", "inputs": inputs[m in FEATURE_METRICS]} for m in METRICS]
        return rows + [{"name": m, "data": "2-D points", "inputs": "the samples"} for m in recipes.POINT_METRICS]
    if kind == "recipes":
        from ganbench.compare import recipe_dirs

        found: list[dict[str, str]] = []
        seen: set[Path] = set()
        for folder in recipe_dirs():
            for path in sorted(folder.glob("*.toml")) + sorted(folder.glob("variants/*.toml")):
                if path.resolve() in seen:  # a checkout's recipes/ may be the package's folder itself
                    continue
                seen.add(path.resolve())
                r = recipes.load(path)
                found.append(
                    {
                        "name": r.name,
                        "file": str(path.relative_to(folder)),
                        "data": f"{r.data.name} {r.data.split}",
                        "net": r.model.arch,
                        "method": r.method.name + (" + bCR" if r.method.bcr else " + CR" if r.method.cr_lambda else ""),
                        "loss": r.loss.name,
                        "steps": str(r.train.steps),
                    }
                )
        return found
    registry: Any = {"methods": methods.METHODS, "nets": nets.NETS, "datasets": data.DATASETS, "losses": losses.LOSSES}
    return [entry.summary() for entry in registry[kind].entries()]


def version_callback(value: bool) -> None:
    if value:
        console.print(f"ganbench {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=version_callback, is_eager=True, help="Print the version.")
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help=f"Show the traceback of a failure (also ${DEBUG_ENV}=1).")
    ] = False,
) -> None:
    """Benchmark GANs with Lipschitz discriminators."""
    if debug:
        os.environ[DEBUG_ENV] = "1"


# typer raises click's usage errors (its own vendored copy in recent releases): found through its public class
_UsageError: type[Exception] = next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "UsageError")


def _warning_line(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    _say("warning", "yellow", message)


def main() -> None:
    """The console script: a wrong option or argument is one line on stderr and exit code 2, as other errors."""
    if not os.environ.get(DEBUG_ENV):
        warnings.showwarning = _warning_line  # the library's warnings (a skipped checkpoint) as one line each
    try:
        code = app(standalone_mode=False)
    except _UsageError as err:
        ctx = getattr(err, "ctx", None)
        if type(err).__name__ == "NoArgsIsHelpError" and ctx is not None:
            console.print(ctx.get_help())
            sys.exit(0)
        command = ctx.command_path if ctx is not None else "ganbench"
        message = err.format_message() if hasattr(err, "format_message") else str(err)  # click's UsageError has it
        _say("error", "red", f"{message} (see {command} --help)")
        sys.exit(2)
    except typer.Abort:
        errors.print("interrupted")
        sys.exit(130)
    except SystemExit as exit_:
        sys.exit(exit_.code)
    sys.exit(code if isinstance(code, int) else 0)
