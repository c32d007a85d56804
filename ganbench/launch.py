"""How ganbench starts a trainer in another process: one command line and one environment, the same for
`ganbench compare`'s local runs, its Slurm jobs and `ganbench train --nproc`.

The command is the `ganbench train` a user would type, run by this interpreter (through torch's launcher, one process
per GPU, when a run takes several); the environment puts this very ganbench first on the path, whatever the child's
working folder holds (`-m` looks there first).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import ganbench


def train_command(recipe_file: Path | str, run_dir: Path | str, nproc: int = 1, sets: Sequence[str] = ()) -> list[str]:
    """`ganbench train RECIPE --run-dir DIR [--set KEY=VALUE]...`, on `nproc` processes of this machine."""
    train = ["-m", "ganbench", "train", str(recipe_file), "--run-dir", str(run_dir)]
    train += [part for item in sets for part in ("--set", item)]
    if nproc > 1:  # one process per GPU, started and watched by torch's launcher (torchrun)
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *train]
    return [sys.executable, *train]


def trainer_environment() -> dict[str, str]:
    """This process's environment with this ganbench's folder first on PYTHONPATH."""
    env = dict(os.environ)
    package_root = str(Path(ganbench.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH", "")]))
    return env
