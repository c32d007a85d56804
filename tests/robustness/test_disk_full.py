"""A full disk is reported as a full disk wherever it strikes, torch.save included: one line, exit code 1, run.json
saying how the run ended when there is room to say so, and a resume once there is room again finishes the run.

torch.save's zip writer raises a plain RuntimeError ("unexpected pos ...", or "basic_ios::clear: iostream error")
when the file system runs out of room. The real thing is made with a small tmpfs where this process may mount one
(root); the tests beside them raise the same errors by hand, so the mapping is checked everywhere.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from ganbench import cli, files
from ganbench import recipe as recipes
from ganbench.store import RunDir
from ganbench.train import checkpoint
from ganbench.train.loop import train
from tests.robustness.trees import POINTS, ganbench

# POINTS without evaluation: recipe.toml, run.json and history.parquet (about 20 KiB) fit a 32 KiB disk, and its
# first checkpoint (about 40 KiB) does not.
NO_EVAL = POINTS.replace("[eval]\nevery = 2", "[eval]\nevery = 0")
SMALL = "32k"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """mount(size) -> a folder on a tmpfs of that size, unmounted after the test; skips where none can be mounted."""
    point = tmp_path / "disk"
    point.mkdir()

    def mount(size: str) -> Path:
        remount = ["-o", f"remount,size={size}"] if os.path.ismount(point) else ["-o", f"size={size}"]
        if shutil.which("mount") is None:
            pytest.skip("needs the mount command to make a small file system")
        done = subprocess.run(["mount", "-t", "tmpfs", *remount, "tmpfs", str(point)], capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
        return point

    try:
        yield mount
    finally:
        if os.path.ismount(point):
            subprocess.run(["umount", "-l", str(point)], check=False)


def test_a_full_disk_in_torch_save_is_one_line_exit_1_and_recorded(
    tmp_path: Path, small_disk: Callable[[str], Path]
) -> None:
    disk = small_disk(SMALL)
    (tmp_path / "recipe.toml").write_text(NO_EVAL)
    done = ganbench("train", "recipe.toml", "--run-dir", disk / "run", cwd=tmp_path)
    assert done.code == 1, done.err
    failed = [line for line in done.lines if not line.startswith("train ")]  # the progress bar's last state
    assert len(failed) == 1, done.err
    assert failed[0].startswith(f"failed: {disk / 'run' / 'checkpoints' / 'step-2.pt'}: No space left on device; ")
    assert "free some space" in failed[0] and "unexpected" not in failed[0] and "RuntimeError" not in done.err
    info = json.loads((disk / "run" / "run.json").read_text())
    assert info["status"] == "failed" and "No space left on device" in info["error"], info
    assert [p.name for p in disk.rglob("*") if p.name.endswith((".tmp", ".staged", ".link"))] == []
    small_disk("1m")  # room again: the same command resumes and finishes the run
    assert train(recipes.loads(NO_EVAL), RunDir(disk / "run"))["status"] == "finished"


def test_torch_save_into_a_full_file_system_raises_enospc_naming_the_checkpoint(
    small_disk: Callable[[str], Path],
) -> None:
    disk = small_disk("16k")
    state = {"step": 1, "w": torch.zeros(64, 1024)}  # 256 KiB
    with pytest.raises(OSError) as caught:
        checkpoint.save(disk / "step-1.pt", state)
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(disk / "step-1.pt")
    assert sorted(p.name for p in disk.iterdir()) == []  # no manifest entry, no temp file
    # A writer that raises no OSError at all (torch.save given a path) is known by the free space left.
    with pytest.raises(RuntimeError):
        torch.save(state, disk / "direct.pt")  # what torch does by itself
    (disk / "direct.pt").unlink()
    with pytest.raises(OSError) as caught:
        files.atomic_write(disk / "direct.pt", lambda tmp: torch.save(state, tmp))
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(disk / "direct.pt")
    assert list(disk.iterdir()) == []


class FillsUp:
    """A file whose writes fail with ENOSPC once `room` bytes were written, as a full disk's do."""

    def __init__(self, path: Any, mode: str = "rb", *args: Any, **kwargs: Any) -> None:
        self.handle = open(path, mode, *args, **kwargs)  # noqa: SIM115  # closed by __exit__
        self.room = 1000

    def write(self, data: Any) -> int:
        size = len(memoryview(data).cast("B"))
        if size > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= size
        return self.handle.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)

    def __enter__(self) -> FillsUp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()


def test_a_failed_write_inside_torch_save_is_reported_as_enospc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoint, "open", FillsUp, raising=False)  # the checkpoint writer's open() only
    with pytest.raises(OSError) as caught:
        checkpoint.save(tmp_path / "step-1.pt", {"step": 1, "w": torch.zeros(1000)})
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(tmp_path / "step-1.pt")
    causes, cause = [], caught.value.__cause__
    while cause is not None:
        causes.append(cause)
        cause = cause.__cause__
    assert any("unexpected pos" in str(cause) for cause in causes), causes  # torch's words, kept as the cause
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("free", "full"), [(0, True), (4096, True), (10 << 30, False)])
def test_an_error_without_errno_is_a_full_disk_only_when_no_room_is_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, free: int, full: bool
) -> None:
    real = os.statvfs(tmp_path)

    class Stats:
        f_frsize, f_bavail = 1, free

    monkeypatch.setattr(files.os, "statvfs", lambda path: Stats())

    def zip_writer(tmp: Path) -> None:
        tmp.write_bytes(b"PK")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 128 vs 0")

    with pytest.raises(OSError if full else RuntimeError) as caught:
        files.atomic_write(tmp_path / "x.pt", zip_writer)
    if full:
        assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(tmp_path / "x.pt")  # type: ignore[attr-defined]
        assert "unexpected pos" in str(caught.value.__cause__)
    assert list(tmp_path.iterdir()) == [] and real.f_frsize > 0


def test_the_one_line_of_an_error_raised_from_a_full_disk_says_so() -> None:
    try:
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            raise RuntimeError("unexpected pos 704 vs 598") from None
    except RuntimeError as err:
        line = cli.failure_line(err)
    assert line.startswith("No space left on device; free some space") and "unexpected" not in line
    assert cli.failure_line(OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), "/x")).endswith("write elsewhere")
