"""`ganbench compare` killed outright: its trainers must stop too (checkpointed), not keep writing as orphans."""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ganbench.store import RunDir

RECIPE = """
name = "killed"
seed = 0
[data]
name = "ring8"
num_samples = 500
[model]
arch = "mlp"
z_dim = 4
g_channels = 8
d_channels = 8
[train]
steps = 1000000
batch_size_d = 16
batch_size_g = 16
log_every = 50
sample_every = 0
checkpoint_every = 100000
device = "cpu"
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as handle:  # a zombie is dead for our purpose
        return handle.read().split()[2] != "Z"


@pytest.fixture
def orphans_come_to_us() -> Iterator[None]:
    """Make this process the reaper of its orphaned descendants, so the test can read how the trainer ended."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1)
    yield
    libc.prctl(PR_SET_CHILD_SUBREAPER, 0)


PR_SET_CHILD_SUBREAPER = 36


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
@pytest.mark.parametrize("trial", range(5))  # the signal's repeats race the trainer's save: one trial can miss it
def test_sigkill_of_compare_stops_its_trainer(tmp_path: Path, trial: int, orphans_come_to_us: None) -> None:
    base = tmp_path / "base.toml"
    base.write_text(RECIPE)
    results = tmp_path / "results"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "ganbench", "compare", "--methods", "gn", "--recipe", str(base)]
    compare = subprocess.Popen([*command, "--results", str(results)], env=env, stderr=subprocess.DEVNULL)
    run = RunDir(results / "compare" / "killed" / "gn" / "seed-0")
    deadline, holder = time.monotonic() + 60, None
    while time.monotonic() < deadline and holder is None:
        time.sleep(0.2)
        if run.lock_path.is_file():
            found = re.match(r"pid (\d+)", run.lock_path.read_text())
            holder = int(found[1]) if found else None
    assert holder is not None, "the trainer never took its run directory's lock"
    assert holder != compare.pid
    compare.send_signal(signal.SIGKILL)
    compare.wait()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _alive(holder):
        time.sleep(0.2)
    assert not _alive(holder), "the trainer outlived compare"
    _, status = os.waitpid(holder, 0)  # the orphan came to us: how did it end?
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 130, "the trainer was killed, not stopped"
    info = run.read_run()
    assert info["status"] == "interrupted"  # it stopped through its graceful path: checkpointed
    assert run.checkpoint_path("last").is_file()
