"""The tests against a real Slurm: marked `slurm`, they run only where $GANBENCH_SLURM is 1, which .ci/run sets once
the one-node cluster it starts is up; elsewhere they skip, saying that Slurm was not started."""

from __future__ import annotations

import os
import subprocess

import pytest

SLURM_ENV = "GANBENCH_SLURM"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"slurm: needs a running Slurm (${SLURM_ENV}=1, set by .ci/run); else skipped")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get(SLURM_ENV) == "1":
        return
    skip = pytest.mark.skip(
        reason=f"Slurm was not started: ${SLURM_ENV} is not 1 (.ci/run starts a one-node Slurm and sets it)"
    )
    for item in items:
        if "slurm" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def cluster() -> None:
    """The cluster .ci/run started must answer: a test that cannot reach it fails, loudly, rather than skips."""
    found = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True)
    states = found.stdout.split()
    if found.returncode != 0 or not {"idle", "mixed", "allocated"} & set(states):
        pytest.fail(f"${SLURM_ENV}=1 but Slurm does not answer: sinfo: {found.stderr.strip() or states}")
