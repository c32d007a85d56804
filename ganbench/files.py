"""Files written whole or not at all, and the user cache folder.

A leaf: it imports nothing of ganbench, so the data and metric registries can write their caches atomically without
reaching the run-directory contract (ganbench.store). Every atomic write of ganbench goes through `atomic_write`.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_text", "cache_dir", "disk_full", "no_room_errno", "output_problem"]

NO_ROOM = (errno.ENOSPC, errno.EDQUOT)  # a full disk, a full quota
# Free space below which a write that failed without an errno is taken for a full disk: torch.save's zip writer
# raises a plain RuntimeError ("unexpected pos ..." or "iostream error") when the file system runs out of room.
FULL_BELOW = 1 << 20


def cache_dir() -> Path:
    """The user cache folder for decoded data and reference statistics (never inside site-packages)."""
    if os.environ.get("GANBENCH_CACHE"):
        return Path(os.environ["GANBENCH_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ganbench"


def output_problem(path: Path, *, folder: bool) -> str | None:
    """Why `path` cannot be written as a folder (`folder`) or a file, in a few words; None when it can.

    Only the file tree is looked at (no write is tried): the path must not be the other kind of thing, and the
    nearest part of it that exists must be a folder (the missing ones are made when written).
    """
    path = Path(path)
    if path.is_dir() and not folder:
        return "is a folder, not a file"
    if path.exists() and not path.is_dir() and folder:
        return "is a file, not a folder"
    for parent in path.parents:
        if parent.is_dir():
            return None
        if os.path.lexists(parent):
            return f"{parent} is a file, not a folder" if parent.exists() else f"{parent} is a broken link"
    return None


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
    except BaseException as err:
        full = isinstance(err, Exception) and disk_full(err, tmp.parent)  # asked before the temp file frees space
        tmp.unlink(missing_ok=True)
        if full:  # one error for every writer: a full disk, naming the file that did not fit
            code = no_room_errno(err) or errno.ENOSPC
            raise OSError(code, os.strerror(code), str(path)) from err
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def no_room_errno(err: BaseException) -> int | None:
    """ENOSPC or EDQUOT when `err` or an exception it was raised from or during is an OSError saying so."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [err]
    while stack:
        item = stack.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, OSError) and item.errno in NO_ROOM:
            return item.errno
        stack += [item.__cause__, item.__context__]
    return None


def disk_full(err: BaseException, folder: Path) -> bool:
    """Whether a write into `folder` that raised `err` failed for want of room: an OSError with ENOSPC or EDQUOT in
    the exception's chain, or (for writers that raise no OSError, such as torch.save) an error other than an
    OSError while the file system holds less than FULL_BELOW bytes a user may write."""
    if no_room_errno(err) is not None:
        return True
    if isinstance(err, OSError | MemoryError):
        return False  # another write error (read-only, no permission) says what it is itself
    try:
        stats = os.statvfs(folder)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < FULL_BELOW


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it: done once, at import, before any thread starts
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))
