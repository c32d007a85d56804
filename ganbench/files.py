"""Files written whole or not at all, and the user cache folder.

A leaf: it imports nothing of ganbench, so the data and metric registries can write their caches atomically without
reaching the run-directory contract (ganbench.store). Every atomic write of ganbench goes through `atomic_write`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_text", "cache_dir"]


def cache_dir() -> Path:
    """The user cache folder for decoded data and reference statistics (never inside site-packages)."""
    if os.environ.get("GANBENCH_CACHE"):
        return Path(os.environ["GANBENCH_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ganbench"


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Write through `write(tmp)` into a temp file beside `path`, fsync it, then rename it over `path`.

    The old file stays whole until the new one is complete, so a crash leaves one or the other, never half.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes it 0600: give it the mode a plain open() would
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it: done once, at import, before any thread starts
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))
