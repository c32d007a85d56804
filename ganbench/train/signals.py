"""Ctrl-C and SIGTERM (a preempted job) as a request to stop at the end of the step, not as a death mid-step."""

from __future__ import annotations

import signal
import threading
from types import TracebackType
from typing import Any

PARENT_DIED = signal.SIGHUP  # what `ganbench compare` has Linux send its trainers when it dies (see compare.py)


class StopRequests:
    """While entered, the first SIGINT or SIGTERM sets `requested` (the trainer then saves the step and stops) and
    puts the previous handlers back, so a second one stops at once. SIGHUP (the terminal closed, or the `ganbench
    compare` that started the trainer died) sets `requested` every time it comes: Linux sends a dead parent's
    signal once per thread of the parent it passes through, so its repeats must not kill the trainer mid-save.
    Off the main thread, signals cannot be caught: entering changes nothing."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequests:
        self.requested = False
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, PARENT_DIED)}
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, self._request)
            signal.signal(PARENT_DIED, self._request_again)
        return self

    def _request(self, signum: int, frame: Any) -> None:
        self.requested = True
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C or SIGTERM: the previous handler's way
            signal.signal(sig, self._previous[sig])

    def _request_again(self, signum: int, frame: Any) -> None:
        self.requested = True

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            # after a stop, the dead parent's later repeats must not kill the process on its way out
            signal.signal(sig, signal.SIG_IGN if sig == PARENT_DIED and self.requested else handler)
        self._previous = {}
