"""Real numbers on a CPU: the paper's CIFAR-10 CNN recipes trained on the CIFAR-10 JPEG copy and scored by the real
FID trunk at several steps, optionally beside checkpoints of the official GN-GAN code trained the same way.

    python3 benchmarks/real_cpu.py                           # train gn, sn, pgn; score; write the results
    python3 benchmarks/real_cpu.py --official seed0=DIR ...  # also score the official code's checkpoints in DIR
    python3 benchmarks/real_cpu.py --score-only              # score runs already trained (resumes unfinished ones)

Every key of recipes/cifar10_cnn_<method>.toml is kept except those `cpu_overrides` changes, which the output
records: the JPEG copy instead of CIFAR-10, batch sizes D/G reduced (default 8/16, the paper's 64/128), the number
of G steps (default 1,600, the paper's 200k), checkpoints at the evaluation steps, no in-training evaluation, and the
evaluation itself: `--num-samples` (1,000) samples of the raw G (the paper recipes' selected generator), FID and KID
against the statistics of `--ref-num` (5,000) images of the copy's train split, at step 0 (G as initialised) and
every `--eval-every` (800) steps. A generator whose weights equal one already scored (at step 0 every method's G is
the same network from the same seed) takes over its scores (the row names it in `same_weights_as`) instead of being
drawn and scored again. The same evaluation of `--num-samples` real images of the copy's test split gives the
curves' floor: what real images score at this sample count (a FID from 1,000 samples is biased far upward). This
is a CPU-scale run, not the papers' protocol: its FIDs compare with each other, not
with the papers' 50k-sample figures.

Needs the FID trunk ($GANBENCH_INCEPTION_WEIGHTS) and the archive (data.root, $GANBENCH_CIFAR10_JPEG or
$GANBENCH_SHARED_DATA). Writes `<out>/real_cpu.json` (settings, machine, wall times, every score, the command
lines that measured them), `real_cpu.csv` (one row per source, seed and step), `real_cpu.md` (FID and KID as a
Markdown table) and `real_cpu.png` (FID against step per method, and each method's last sample sheet), rewriting them
after every scored checkpoint so that a run cut short keeps what it measured. `--no-train --import-scores FILE ...`
merges invocations run in parallel (for example more seeds of one method) without training or scoring anything new.

The official code's checkpoints (`%06d.pt` files holding `net_G`, `000000.pt` being its G as initialised) are scored
with the same evaluation: its CNN generator's tensors load into ganbench's `cnn32` generator by name, except its
last layer, a stride-1 transposed convolution, which is the same map as ganbench's convolution with the kernel's
in/out axes swapped and flipped in space (`official_generator_state`; checked on the loaded weights by running both
layers).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ganbench import recipe as recipes  # noqa: E402
from ganbench.checkpoints import build_generator, load_generator  # noqa: E402
from ganbench.data import load_dataset  # noqa: E402
from ganbench.evaluation import Evaluation  # noqa: E402
from ganbench.metrics.inception import WEIGHTS_ENV  # noqa: E402
from ganbench.metrics.refstats import extract_features, reference_subset  # noqa: E402
from ganbench.store import RunDir  # noqa: E402
from ganbench.train.loop import Trainer  # noqa: E402

METHODS = ("gn", "sn", "pgn")
PAPER = {"batch_size_d": 64, "batch_size_g": 128, "steps": 200_000, "num_samples": 50_000}


def cpu_overrides(args: argparse.Namespace, seed: int) -> list[str]:
    """What the CPU run changes in a paper recipe; every other key stays the paper's."""
    return [
        f"seed={seed}",
        "data.name=cifar10-jpeg",
        f"train.batch_size_d={args.batch_d}",
        f"train.batch_size_g={args.batch_g}",
        f"train.steps={args.steps}",
        f"train.checkpoint_every={args.eval_every}",
        f"train.sample_every={args.eval_every}",
        "train.log_every=50",
        "train.device=cpu",
        "eval.every=0",
        f"eval.num_samples={args.num_samples}",
        'eval.metrics=["fid", "kid"]',
        f"eval.ref_num={args.ref_num}",
    ]


def recipe_path(method: str) -> Path:
    return REPO / "recipes" / f"cifar10_cnn_{method}.toml"


def official_generator_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The official CNN generator's state dict under ganbench's cnn32 layout: the same names, and the last layer's
    ConvTranspose2d(64, 3, 3, stride 1, padding 1) kernel (in, out, kh, kw) as the equivalent Conv2d kernel
    (out, in, kh, kw): axes swapped and flipped in space."""
    mapped = dict(state)
    last = mapped["main.11.weight"]
    if last.shape == (64, 3, 3, 3):
        mapped["main.11.weight"] = last.transpose(0, 1).flip(2, 3).contiguous()
        x = torch.randn(2, 64, 5, 5, dtype=last.dtype, generator=torch.Generator().manual_seed(0))
        same = F.conv_transpose2d(x, last, padding=1)
        assert torch.allclose(same, F.conv2d(x, mapped["main.11.weight"], padding=1), rtol=0, atol=1e-5)
    return mapped


def train(method: str, seed: int, args: argparse.Namespace) -> tuple[Path, dict[str, float]]:
    """`ganbench train` of one method and seed through the command line (resuming an unfinished run; a finished one
    is left as it is), and its wall time and last G-steps/s as its history recorded them."""
    run_dir = args.runs / f"{method}-seed{seed}"
    command = [sys.executable, "-m", "ganbench", "train", str(recipe_path(method)), "--run-dir", str(run_dir)]
    for item in cpu_overrides(args, seed):
        command += ["--set", item]
    print("$", " ".join(command[1:]), flush=True)
    if not args.score_only or not (run_dir / "run.json").is_file():
        subprocess.run(command, check=True)
    history = pd.read_parquet(run_dir / "history.parquet")
    last = history.iloc[-1]
    return run_dir, {"wall_s": round(float(last["wall_time"]), 1), "g_steps_per_s": float(last["g_steps_per_s"])}


def initial_generator(recipe: recipes.Recipe, scratch: Path) -> torch.nn.Module:
    """The trainer's G as initialised from the recipe's seed (before step 1)."""
    trainer = Trainer(recipe, RunDir(scratch))
    trainer._build()
    return trainer.G


class Writer:
    """Collects scores and writes the JSON, CSV and figure after each one."""

    def __init__(self, args: argparse.Namespace, settings: dict[str, Any]) -> None:
        self.args, self.settings = args, settings
        self.rows: list[dict[str, Any]] = []
        self.training: dict[str, dict[str, float]] = {}
        self.sheets: dict[str, tuple[int, Path]] = {}  # method: (seed, its last raw-G sample sheet)
        self.floor: dict[str, Any] | None = None  # the same evaluation of real test-split images
        self.commands: list[str] = []  # the invocations that measured a score here or in a merged document
        args.out.mkdir(parents=True, exist_ok=True)

    def has(self, source: str, method: str, seed: int, step: int) -> bool:
        return any(
            (row["source"], row["method"], row["seed"], row["step"]) == (source, method, seed, step)
            for row in self.rows
        )

    def merge(self, path: Path) -> None:
        """Take over the scores (and training figures) of an earlier or parallel invocation with the same settings;
        refuse one measured under other settings."""
        if not path.is_file():
            return
        document = json.loads(path.read_text())
        for key in ("overrides", "eval_steps"):
            if document.get(key) != self.settings[key]:
                raise SystemExit(f"{path}: measured with other {key} ({document.get(key)}); move it away")
        for row in document.get("scores", []):
            if not self.has(row["source"], row["method"], row["seed"], row["step"]):
                self.rows.append(row)
        measured_by = document.get("commands")
        if measured_by is None:  # written before the list was kept: its one command, unless it only merged
            measured_by = [] if "--no-train" in document.get("command", "--no-train") else [document["command"]]
        self.measured_by(*(portable_text(command) for command in measured_by))
        for name, figures in document.get("training", {}).items():
            self.training.setdefault(name, figures)
        if self.floor is None and document.get("real_test_images"):
            self.floor = document["real_test_images"]

    def measured_by(self, *commands: str) -> None:
        self.commands += [command for command in commands if command not in self.commands]

    def scored_generator(self, digest: str) -> tuple[dict[str, float], str] | None:
        """The scores of a generator with exactly these weights, if one was scored (at step 0 every method's G is
        the same network from the same seed)."""
        for row in self.rows:
            if row.get("g_sha256") == digest:
                scores: dict[str, float] = {key: row[key] for key in ("fid", "kid_mean", "kid_std") if key in row}
                return scores, f"{row['source']} {row['method']} seed {row['seed']} step {row['step']}"
        return None

    def add(
        self, source: str, method: str, seed: int, step: int, scores: dict[str, Any], wall: float, digest: str
    ) -> None:
        row = {
            "source": source,
            "method": method,
            "seed": seed,
            "step": step,
            **scores,
            "eval_wall_s": round(wall, 1),
            "g_sha256": digest,
        }
        self.rows.append(row)
        if "same_weights_as" not in scores:
            self.measured_by(self.settings["command"])
        print(json.dumps(row), flush=True)
        self.write()

    def write(self) -> None:
        out = self.args.out
        self.rows.sort(key=lambda row: (row["source"], row["method"], row["seed"], row["step"]))
        document = {
            **self.settings,
            "commands": self.commands,
            "training": self.training,
            "real_test_images": self.floor,
            "scores": self.rows,
        }
        (out / "real_cpu.json").write_text(json.dumps(document, indent=1) + "\n")
        columns = ["source", "method", "seed", "step", "fid", "kid_mean", "kid_std", "eval_wall_s"]
        with open(out / "real_cpu.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self.rows)
            if self.floor is not None:
                writer.writerow({"source": "real test images", **self.floor})
        (out / "real_cpu.md").write_text(self.table())
        self.plot()

    def table(self) -> str:
        """The scores as a Markdown table: one row per source, method and seed, FID (KID) at each evaluated step; and
        the real images' scores under it."""
        steps = sorted({row["step"] for row in self.rows})
        lines = [
            "| code | method | seed | " + " | ".join(f"step {step:,}" for step in steps) + " |",
            "|---|---|---|" + "---:|" * len(steps),
        ]
        cells: dict[tuple[str, str, int], dict[int, str]] = {}
        for row in self.rows:
            cell = f"{row['fid']:.1f} ({row['kid_mean']:.4f})"
            cells.setdefault((row["source"], row["method"], row["seed"]), {})[row["step"]] = cell
        for (source, method, seed), by_step in sorted(cells.items()):
            values = " | ".join(by_step.get(step, "") for step in steps)
            lines.append(f"| {source} | {method.upper()} | {seed} | {values} |")
        if self.floor is not None:
            lines += [
                "",
                f"{self.args.num_samples} real images of the test split, scored the same way: FID "
                f"{self.floor['fid']:.1f} (KID {self.floor['kid_mean']:.4f}).",
            ]
        return "\n".join(lines) + "\n"

    def plot(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.image as mpimg
        import matplotlib.pyplot as plt

        sheets = sorted(self.sheets.items())
        fig = plt.figure(figsize=(5 + 3 * len(sheets), 4.2))
        grid = fig.add_gridspec(1, 1 + len(sheets), width_ratios=[5] + [3] * len(sheets))
        ax = fig.add_subplot(grid[0, 0])
        curves: dict[tuple[str, str, int], list[tuple[int, float]]] = {}
        for row in self.rows:
            curves.setdefault((row["source"], row["method"], row["seed"]), []).append((row["step"], row["fid"]))
        colours = {"gn": "tab:blue", "sn": "tab:orange", "pgn": "tab:green"}
        for (source, method, seed), points in sorted(curves.items()):
            steps, fids = zip(*sorted(points), strict=True)
            official = source != "ganbench"
            label = f"{'official GN-GAN code' if official else 'ganbench ' + method.upper()} seed {seed}"
            style = ":" if official else "-"
            marker = ("s", "D", "P", "X")[seed % 4] if official else ("o", "^", "v", "<")[seed % 4]
            colour = "dimgrey" if official else colours.get(method)
            ax.plot(steps, fids, style, marker=marker, markersize=5, linewidth=1, color=colour, label=label)
        spread: dict[int, list[float]] = {}  # the official seeds' range at each step: what "within its spread" means
        for (source, _, _), points in curves.items():
            for step, fid in points:
                if source == "official":
                    spread.setdefault(step, []).append(fid)
        if len(next(iter(spread.values()), [])) > 1:
            steps = sorted(spread)
            low, high = [min(spread[t]) for t in steps], [max(spread[t]) for t in steps]
            ax.fill_between(steps, low, high, color="grey", alpha=0.2, label="official code, range over its seeds")
        if self.floor is not None:
            label = f"{self.args.num_samples} real test images"
            ax.axhline(self.floor["fid"], color="grey", linestyle=":", label=label)
        ax.set_xlabel("G step")
        ax.set_ylabel(f"FID ({self.args.num_samples} samples vs {self.args.ref_num} images)")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_title("CIFAR-10 JPEG copy, standard CNN, CPU scale", fontsize=9)
        for i, (method, (seed, path)) in enumerate(sheets):
            sheet = fig.add_subplot(grid[0, 1 + i])
            sheet.imshow(mpimg.imread(path))
            sheet.set_title(f"ganbench {method.upper()} seed {seed}, raw G, step {self.args.steps}", fontsize=9)
            sheet.axis("off")
        fig.tight_layout()
        fig.savefig(self.args.out / "real_cpu.png", dpi=110)
        plt.close(fig)


def real_floor(base: recipes.Recipe, evaluation: Evaluation) -> tuple[dict[str, float], float]:
    """The evaluation's FID and KID of `num_samples` real images of the copy's test split (none of them in the train
    split the reference comes from): what a generator drawing real images would score at this sample count, the floor
    of the curves. The images are a fixed seeded choice (the reference subset rule), fed to the extractor as uint8."""
    started = time.perf_counter()
    test = load_dataset(dataclasses.replace(base.data, split="test"))
    chosen = test.tensor[reference_subset(len(test), evaluation.num_samples)]
    assert evaluation.extractor is not None
    features = extract_features(chosen, evaluation.extractor, evaluation.sample_batch)
    values = evaluation.metrics(features, evaluation.families)
    return {k: float(v) for k, v in values.items()}, time.perf_counter() - started


def generator_digest(generator: torch.nn.Module) -> str:
    """sha256 over G's state (names, dtypes, shapes and bytes of every parameter and buffer)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(generator.state_dict().items()):
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{data.dtype}:{tuple(data.shape)};".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def score(evaluation: Evaluation, generator: torch.nn.Module) -> tuple[dict[str, float], float]:
    started = time.perf_counter()
    values = evaluation.scores(generator, evaluation.families)
    return {k: float(v) for k, v in values.items()}, time.perf_counter() - started


def eval_steps(args: argparse.Namespace) -> list[int]:
    return sorted({0, *range(args.eval_every, args.steps + 1, args.eval_every), args.steps})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated: gn,sn,pgn")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--steps", type=int, default=1600)
    parser.add_argument("--eval-every", type=int, default=800)
    parser.add_argument("--batch-d", type=int, default=8)
    parser.add_argument("--batch-g", type=int, default=16)
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--ref-num", type=int, default=5000)
    parser.add_argument("--runs", type=Path, default=REPO / "results" / "real_cpu", help="run directories")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--official", action="append", default=[], help="NAME=DIR of official checkpoints")
    parser.add_argument(
        "--no-real-floor",
        dest="real_floor",
        action="store_false",
        help="skip scoring --num-samples real test-split images the same way (the curves' floor)",
    )
    parser.add_argument("--score-only", action="store_true", help="score existing runs; train only missing ones")
    parser.add_argument(
        "--no-train",
        action="store_true",
        help="train nothing: score the checkpoints that exist now, skip the rest (and every method/seed with no run)",
    )
    parser.add_argument(
        "--import-scores",
        action="append",
        type=Path,
        default=[],
        help="real_cpu.json of another invocation to merge (read again before each measurement)",
    )
    args = parser.parse_args()
    if not os.environ.get(WEIGHTS_ENV):
        parser.error(f"set ${WEIGHTS_ENV} to the FID trunk (see README: Real numbers on a CPU)")
    methods = [m for m in args.methods.split(",") if m]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    settings = {
        "command": portable_command(sys.argv),
        "overrides": cpu_overrides(args, seeds[0])[1:],
        "paper": PAPER,
        "eval_steps": eval_steps(args),
        "machine": {
            "cpu": _cpu_name(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    }
    writer = Writer(args, settings)
    for path in [args.out / "real_cpu.json", *args.import_scores]:
        writer.merge(path)
    base = recipes.load(recipe_path("gn"), cpu_overrides(args, 0))
    built: list[Evaluation] = []

    def evaluation() -> Evaluation:
        """One extractor and one reference for every source, built when first needed."""
        if not built:
            built.append(Evaluation(base, "cpu"))
        return built[0]

    scratch = args.runs / ".init"

    def scored(source: str, method: str, seed: int, step: int, make: Any) -> None:
        if writer.has(source, method, seed, step):
            return
        generator = make()
        if generator is None:
            return
        digest = generator_digest(generator)
        for path in args.import_scores:  # a parallel invocation may have scored the same weights meanwhile
            writer.merge(path)
        same = writer.scored_generator(digest)
        if same is not None:  # the same weights draw the same samples (fixed evaluation seed): the same scores
            writer.add(source, method, seed, step, {**same[0], "same_weights_as": same[1]}, 0.0, digest)
            return
        values, took = score(evaluation(), generator)
        writer.add(source, method, seed, step, values, took, digest)

    for method, seed in runs_to_score(methods, seeds, args):
        run_dir = args.runs / f"{method}-seed{seed}"
        if not args.no_train:
            run_dir, writer.training[f"{method}-seed{seed}"] = train(method, seed, args)
        recipe = recipes.load(recipe_path(method), cpu_overrides(args, seed))
        for step in eval_steps(args):
            if step == 0:
                scored(
                    "ganbench",
                    method,
                    seed,
                    0,
                    lambda r=recipe, m=method, s=seed: initial_generator(r, scratch / f"{m}-{s}"),
                )
            else:
                scored("ganbench", method, seed, step, lambda d=run_dir, t=step: _trained_generator(d, t))
        sheet = RunDir(run_dir).sample_path(args.steps, "raw")
        if sheet.is_file():  # one sheet per method: its lowest seed's
            writer.sheets.setdefault(method, (seed, sheet))
        writer.write()
    if args.real_floor and writer.floor is None:
        values, took = real_floor(base, evaluation())
        writer.floor = {**values, "eval_wall_s": round(took, 1)}
        writer.measured_by(settings["command"])
        print(json.dumps({"real test images": writer.floor}), flush=True)
        writer.write()
    for item in args.official:
        name, _, folder = item.partition("=")
        seed = int(name.removeprefix("seed")) if name.removeprefix("seed").isdigit() else 0
        for step in eval_steps(args):
            scored("official", "gn", seed, step, lambda f=folder, t=step: _official_generator(base, Path(f), t))
    writer.write()


def runs_to_score(methods: list[str], seeds: list[int], args: argparse.Namespace) -> list[tuple[str, int]]:
    """Every method with every seed; under --no-train only the pairs that have a run directory, so that merging
    runs of different seeds per method scores no step-0 G of a run that was never trained."""
    pairs = [(method, seed) for method in methods for seed in seeds]
    if not args.no_train:
        return pairs
    kept = [(m, s) for m, s in pairs if (args.runs / f"{m}-seed{s}" / "run.json").is_file()]
    for method, seed in sorted(set(pairs) - set(kept)):
        print(f"--no-train: no run {method}-seed{seed} under {args.runs}; not scored", flush=True)
    return kept


def _trained_generator(run_dir: Path, step: int) -> torch.nn.Module | None:
    """The raw G of a run's step-N checkpoint, or None while it does not exist yet."""
    run = RunDir(run_dir)
    if not run.checkpoint_path(step).is_file():
        return None
    generator, saved = load_generator(run, step, ema=False)
    assert saved == step
    return generator


def _official_generator(base: recipes.Recipe, folder: Path, step: int) -> torch.nn.Module | None:
    """The official code's G saved at `step` (its `%06d.pt`), in ganbench's cnn32 G, or None while it does not exist."""
    path = folder / f"{step:06d}.pt"
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)["net_G"]
    generator = build_generator(base)
    generator.load_state_dict(official_generator_state(state))
    return generator


def portable_command(argv: list[str]) -> str:
    """The command line as recorded in the results: this machine's paths (`--out DIR`, `--official NAME=DIR`, ...)
    written as DIR."""
    words = [Path(argv[0]).name]
    for word in argv[1:]:
        name, equals, value = word.partition("=")
        if equals and not word.startswith("-") and os.sep in value:
            word = f"{name}=DIR"
        elif os.sep in word and not word.startswith("-"):
            word = "DIR"
        elif not word:
            word = '""'
        words.append(word)
    return " ".join(words)


def portable_text(command: str) -> str:
    """A command line recorded by another invocation with every absolute path written as DIR (`--methods ""` kept
    as typed)."""
    return re.sub(r"(^|[\s=])/\S+", r"\1DIR", command).replace("--methods  ", '--methods "" ')


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
