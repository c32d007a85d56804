"""Turn a device name from a recipe or an option (auto, cpu, cuda, cuda:N) into a torch.device, or say why not."""

from __future__ import annotations

import torch

from ganbench.errors import GanbenchError, RecipeError


def resolve_device(
    name: str | torch.device, *, key: str = "train.device", error: type[GanbenchError] = RecipeError
) -> torch.device:
    """`auto` is the GPU when there is one, else the CPU; a GPU this machine lacks raises `error` naming `key`.

    The trainer passes its recipe key (RecipeError); `ganbench eval` and `stats` pass `--device` (MetricError).
    """
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise error(f"{key}: {name} asked for but CUDA is not available here; use auto or cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise error(f"{key}: {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise error(
            f"{key}: {name} asked for but this machine has {torch.cuda.device_count()} GPU(s); "
            f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}"
        )
    return device
