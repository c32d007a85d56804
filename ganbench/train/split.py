"""How one step's global batch is cut into pieces: train.accumulate micro-batches on each of the world's processes.

A batch of n samples is cut into P = world · accumulate equal, contiguous pieces; process r owns pieces
r·accumulate … (r + 1)·accumulate − 1, one backward each. The random numbers of a step are drawn for the whole
global batch by every process from the same generator state and sliced, so a sample meets the same z, label, α and
CR shift whatever P is. A loss that is a mean over samples enters each piece's backward divided by P, so the summed
gradient is the one-big-batch gradient; a term that is a max over samples (LGAN's max-GP) enters only in the piece
that holds the batch's maximum (`max_owner`). This process-local class is the single-process case; the distributed
one (train/distributed.py) adds the sums across processes (gradients, loss totals), the gathering of the maxima
and the agreement to stop.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


class BatchSplit:
    """The pieces of this process; world 1: all of them."""

    rank: int = 0
    world: int = 1

    def __init__(self, accumulate: int = 1) -> None:
        self.accumulate = accumulate

    @property
    def count(self) -> int:
        """P: the pieces of the global batch, over all processes."""
        return self.world * self.accumulate

    def pieces(self, n: int) -> list[slice]:
        """This process's pieces of a global batch of n samples, as slices of the global batch."""
        size, first = n // self.count, self.rank * self.accumulate
        return [slice((first + j) * size, (first + j + 1) * size) for j in range(self.accumulate)]

    def max_owner(self, maxima: torch.Tensor) -> torch.Tensor:
        """1 for the local piece holding the first largest of all pieces' maxima, 0 for the others (float, on the
        maxima's device; tensors only, no host synchronisation). `maxima` are this process's pieces' maxima."""
        return nn.functional.one_hot(self.gather(maxima.detach()).argmax(), self.count)[self.pieces_index()].to(
            maxima.dtype
        )

    def pieces_index(self) -> slice:
        return slice(self.rank * self.accumulate, (self.rank + 1) * self.accumulate)

    def gather(self, values: torch.Tensor) -> torch.Tensor:
        """Every process's `values`, concatenated in rank order."""
        return values

    def reduce_gradients(self, parameters: Iterable[nn.Parameter]) -> None:
        """Sum the gradients over the processes (nothing to do in one process)."""

    def reduce_totals(self, totals: dict[str, torch.Tensor]) -> None:
        """After each step: the loss totals summed over the processes into the first one's (here: as they are)."""

    def agree(self, stop: bool) -> bool:
        """After each step: whether any process was asked to stop (here: this one's answer)."""
        return stop
