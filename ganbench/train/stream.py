"""The real batches of training: shuffled indices with a flip flag each, epoch by epoch, gathered on the device.

Epoch e draws, from its own host generator seeded by (seed, e), the order of the samples and then one flip flag per
position: the same on every device, independent of the training RNG, and reproduced exactly on resume.
"""

from __future__ import annotations

import torch

from ganbench.data import Dataset
from ganbench.errors import DataError, RecipeError


class BatchStream:
    """Shuffled batches of indices with a horizontal-flip flag each, epoch by epoch; its position is checkpointed.

    The epoch's order and flags are moved to `device` once; a batch is then a slice of them there, with no copy from
    the host per step. A batch that would run past the end is dropped, as DataLoader's drop_last.
    """

    def __init__(self, size: int, batch_size: int, seed: int, device: torch.device | str = "cpu") -> None:
        if batch_size > size:
            raise RecipeError(f"train.batch_size_d: {batch_size} is larger than the dataset ({size} samples)")
        self.size, self.batch_size, self.seed, self.device = size, batch_size, seed, torch.device(device)
        self.epoch, self.position = 0, 0
        self._order, self._flips = self._draw()

    def _draw(self) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator)
        flips = torch.rand(self.size, generator=generator) < 0.5
        return order.to(self.device), flips.to(self.device)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(indices, flip flags) of the next batch."""
        if self.position + self.batch_size > self.size:
            self.epoch, self.position = self.epoch + 1, 0
            self._order, self._flips = self._draw()
        batch = slice(self.position, self.position + self.batch_size)
        self.position += self.batch_size
        return self._order[batch], self._flips[batch]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = state["epoch"], state["position"]
        self._order, self._flips = self._draw()


class RealBatches:
    """The n_dis real batches of each step, gathered into one device buffer that the step reads by address.

    `images` may live on the device (train.data_on_device) or on the host; from the host the batches are gathered
    into pinned memory and copied over in one transfer. Flips (where the stream's flag is set) apply to images only
    and only when `hflip`. With `labels` (a class-conditional net), each sample's label is gathered by the same
    indices into `label_buffer`, so a label always travels with its image. No host synchronisation on the GPU.
    """

    def __init__(
        self,
        images: torch.Tensor,
        n_dis: int,
        stream: BatchStream,
        hflip: bool,
        device: torch.device,
        labels: torch.Tensor | None = None,
    ) -> None:
        self.images, self.stream, self.labels = images, stream, labels
        shape = (n_dis, stream.batch_size, *images.shape[1:])
        self.buffer = torch.empty(shape, dtype=images.dtype).to(device)
        staged = device.type == "cuda" and images.device.type != "cuda"
        self._staging = torch.empty_like(self.buffer, device="cpu").pin_memory() if staged else None
        self.flip = hflip and self.buffer.ndim == 5
        self.label_buffer: torch.Tensor | None = None
        self._label_staging: torch.Tensor | None = None
        if labels is not None:
            if labels.shape != (len(images),):
                raise ValueError(f"{len(images)} samples but labels of shape {tuple(labels.shape)}")
            self.label_buffer = torch.empty((n_dis, stream.batch_size), dtype=torch.int64).to(device)
            label_staged = device.type == "cuda" and labels.device.type != "cuda"
            self._label_staging = (
                torch.empty_like(self.label_buffer, device="cpu").pin_memory() if label_staged else None
            )

    def gather(self) -> None:
        """The next n_dis batches of the data order into `buffer`."""
        target = self.buffer if self._staging is None else self._staging
        label_target = self.label_buffer if self._label_staging is None else self._label_staging
        for i, batch in enumerate(target):
            indices, flips = self.stream.next()
            torch.index_select(self.images, 0, indices, out=batch)
            if self.flip:
                batch.copy_(torch.where(flips.view(-1, 1, 1, 1), batch.flip(-1), batch))
            if self.labels is not None and label_target is not None:
                torch.index_select(self.labels, 0, indices.to(self.labels.device), out=label_target[i])
        if self._staging is not None:
            self.buffer.copy_(self._staging)
        if self._label_staging is not None and self.label_buffer is not None:
            self.label_buffer.copy_(self._label_staging)


def class_labels(dataset: Dataset, num_classes: int, device: torch.device) -> torch.Tensor | None:
    """The dataset's labels on `device` for a class-conditional net (num_classes > 0), checked to lie in
    [0, num_classes); None for an unconditional one."""
    if not num_classes:
        return None
    labels = dataset.labels
    if labels is None or len(labels) != len(dataset):
        raise DataError(f"{dataset.name} {dataset.split}: not every sample has a class label; set model.num_classes=0")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise DataError(
            f"{dataset.name} {dataset.split}: labels run from {int(labels.min())} to {int(labels.max())}, outside "
            f"0..{num_classes - 1}; set model.num_classes to the data's number of classes"
        )
    return labels.to(device)
