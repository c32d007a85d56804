"""Progress reporting without printing: library code reports to a `Progress`, the CLI renders it with rich."""

from __future__ import annotations

from typing import Any, Protocol


class Progress(Protocol):
    def start(self, task: str, total: int | None, completed: int = 0) -> None:
        """Begin a task of `total` units (None when unknown), `completed` of them already done (a resume)."""

    def advance(self, n: int = 1, **fields: Any) -> None:
        """`n` more units done; `fields` are shown beside the bar (losses, FID)."""

    def finish(self) -> None:
        """The current task is over."""


class NullProgress:
    """Reports nowhere; the default for library calls."""

    def start(self, task: str, total: int | None, completed: int = 0) -> None:
        pass

    def advance(self, n: int = 1, **fields: Any) -> None:
        pass

    def finish(self) -> None:
        pass
