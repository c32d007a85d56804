"""How long `ganbench status` takes on a results folder of many runs.

Builds a tree of `--runs` run directories the way the trainer leaves them (run.json, recipe.toml, a history.parquet
of `--history-rows` log lines written in row groups as the trainer appends them, checkpoints/ and samples/ folders),
a fifth of them held by a live process as a trainer holds its lock, and times the whole command (`ganbench status
DIR` in a fresh process, import included) and one redraw of `--watch` (collect and render, in this process). It
prints the median and the slowest of `--repeats` timings of each.

    python benchmarks/status_speed.py --runs 500 --out status_speed.json
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
from rich.console import Console

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ganbench import SCHEMA_VERSION, status  # noqa: E402
from ganbench.store import HISTORY_COLUMNS  # noqa: E402

METHODS = ("sn", "gn", "pgn", "gran")


def build_tree(root: Path, runs: int, history_rows: int, row_group: int) -> list[int]:
    """`runs` run directories below root/<method>/seed-<k>; returns the file descriptors of the locks held."""
    held = []
    for index in range(runs):
        method, seed = METHODS[index % len(METHODS)], index // len(METHODS)
        run = root / method / f"seed-{seed}"
        (run / "checkpoints").mkdir(parents=True)
        (run / "samples").mkdir()
        running = index % 5 == 0
        step = 100 * history_rows
        info = {
            "name": f"cifar10_cnn_{method}",
            "status": "running" if running else "finished",
            "step": step - (50 if running else 0),
            "steps": 100_000,
            "best": {"score": 20.0 + index % 7, "step": step // 2, "metric": "fid", "generator": "ema"},
            "schema_version": SCHEMA_VERSION,
        }
        (run / "run.json").write_text(json.dumps(info))
        (run / "recipe.toml").write_text(f'name = "cifar10_cnn_{method}"\nseed = {seed}\n[method]\nname = "{method}"\n')
        columns = {name: np.random.default_rng(index).random(history_rows) for name in HISTORY_COLUMNS}
        columns["step"] = np.arange(1, history_rows + 1) * 100
        pq.write_table(pa.table(columns), run / "history.parquet", row_group_size=row_group)
        if running:
            fd = os.open(run / ".lock", os.O_RDWR | os.O_CREAT)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(fd, f"pid {os.getpid()} on bench (ganbench train, since now)".encode())
            held.append(fd)
    return held


def timed(action: object, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--history-rows", type=int, default=2000, help="log lines per run (100k steps, every 50)")
    parser.add_argument("--row-group", type=int, default=100, help="rows per Parquet row group")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ganbench-status-") as folder:
        root = Path(folder) / "results"
        built = time.perf_counter()
        held = build_tree(root, args.runs, args.history_rows, args.row_group)
        print(f"built {args.runs} runs of {args.history_rows} history rows in {time.perf_counter() - built:.1f} s")
        command = [sys.executable, "-m", "ganbench", "status", str(root)]
        env = {
            **os.environ,
            "COLUMNS": "200",
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        }

        def cli() -> None:
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            assert done.returncode == 0, done.stderr

        def redraw() -> None:
            snapshot = status.collect(root)
            assert sum(run.status == "running" for run in snapshot.runs) == len(held)
            Console(file=open(os.devnull, "w"), width=200).print(status.render(snapshot))  # noqa: SIM115

        timings = {"command_s": timed(cli, args.repeats), "redraw_s": timed(redraw, args.repeats)}
        for fd in held:
            os.close(fd)
    record = {
        "runs": args.runs,
        "history_rows": args.history_rows,
        "row_group": args.row_group,
        **{name: {"median": statistics.median(t), "max": max(t), "all": t} for name, t in timings.items()},
        "command": " ".join(["python", "benchmarks/status_speed.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
    }
    for name in timings:
        print(f"{name}: median {record[name]['median']:.2f} s, slowest {record[name]['max']:.2f} s")
    if args.out:
        args.out.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
