"""Training memory per GPU of a recipe, measured on the CPU at batch 1 and 2 and extrapolated to the recipe's batch.

    python benchmarks/memory.py                      # the CelebA-HQ recipes and cifar10_biggan_gn
    python benchmarks/memory.py --recipes celebahq256_resnet_gn --out memory.json

What one training process holds on its device, in four parts:
- **states**: G, D and EMA-G (parameters and buffers), the gradients of G and D, Adam's two moments of each: all
  float32, counted from the modules;
- **data**: the training split on the device as uint8 (train.data_on_device; 0 when off), from the recipe's split
  sizes without reading any file where the dataset declares them, else by loading it;
- **activations** of one D step (real and fake batch through the method's D, the loss, double backprop for GN, PGN
  and GraN) and of one G step (G, then D through the method): every tensor autograd saves for the backward, counted
  once per storage and without the parameters, measured by a saved-tensor hook on the CPU at batch 1 and at batch 2
  while the two steps' losses are built from the recipe's own objective (its method's D, loss and regularisers, as
  train/step.py calls them; one piece, as with train.accumulate = 1). Activations grow linearly with the batch:
  fixed + per-sample x batch, the two measured points give both. The CPU's peak resident memory over each step
  (VmHWM after resetting it) is printed beside the count as a cross-check (it adds the backward's transient
  gradients and the CPU kernels' workspaces);
- **estimate** = states + data + the larger of the two steps' activations at the recipe's batch (D step:
  train.batch_size_d reals and as many fakes; G step: train.batch_size_g), x 1.1 for the caching allocator's
  fragmentation, + 1 GiB for the CUDA context and cuDNN workspaces. A measured GPU figure supersedes it.

Data-parallel training over N GPUs (the official CelebA-HQ script) keeps the states and the data whole on each GPU
and splits the activations N ways; gradient accumulation over k micro-batches on one GPU divides them by k the same
way. The table gives, for 80, 40 and 24 GB GPUs, the smallest such N (or k) for which the estimate fits.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import platform
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganbench import data, nets
from ganbench import recipe as recipes
from ganbench.data import celebahq
from ganbench.train.step import build_objective

REPO = Path(__file__).resolve().parent.parent
GIB = 2**30
GPU_SIZES_GB = (80, 40, 24)  # as sold: 10^9 bytes
FRAGMENTATION, CONTEXT_GIB = 1.1, 1.0
# The paper splits' sizes, so that no dataset file is needed to count them.
SPLIT_SIZES = {("cifar10", "train"): 50_000, ("cifar10-jpeg", "train"): 50_000, ("stl10", "unlabeled"): 100_000}
DEFAULT_RECIPES = [
    *(f"celebahq{px}_resnet_{m}" for px in (128, 256) for m in ("sn", "gn", "pgn", "gran")),
    "cifar10_biggan_gn",
]


@dataclass
class Measured:
    recipe: str
    states_bytes: int
    data_bytes: int
    d_fixed: int  # saved-tensor bytes of a D step: fixed part and per sample (per real, with its fake)
    d_per_sample: int
    g_fixed: int
    g_per_sample: int
    d_peak_rss_b1: int  # the CPU's peak resident growth over one D step at batch 1 and 2 (cross-check)
    d_peak_rss_b2: int
    g_peak_rss_b1: int
    g_peak_rss_b2: int
    batch_size_d: int
    batch_size_g: int
    seconds: float

    def activations(self, split: int = 1) -> int:
        """The larger step's activations at the recipe's batch split `split` ways (GPUs or micro-batches)."""
        d = self.d_fixed + self.d_per_sample * -(-self.batch_size_d // split)
        g = self.g_fixed + self.g_per_sample * -(-self.batch_size_g // split)
        return max(d, g)

    def estimate(self, split: int = 1) -> float:
        """Bytes one GPU needs when the batch is split `split` ways."""
        return (self.states_bytes + self.data_bytes + self.activations(split)) * FRAGMENTATION + CONTEXT_GIB * GIB

    def split_needed(self, gigabytes: int) -> int | None:
        """The smallest number of GPUs (or micro-batches) that fits on GPUs of `gigabytes`; None if none does."""
        for split in (1, 2, 4, 8, 16, 32, 64):
            if self.estimate(split) <= gigabytes * 1e9:
                return split
        return None


def _rss_reset() -> bool:
    """Hand freed heap pages back (glibc's malloc_trim: else a later step reuses them unseen) and reset the kernel's
    peak-resident mark of this process (Linux: clear_refs 5); False where either is unsupported."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class SavedTensors:
    """Counts the bytes autograd saves for backward (each storage once), leaving out the given parameters."""

    def __init__(self, exclude: list[nn.Module]) -> None:
        self.exclude = {p.untyped_storage().data_ptr() for m in exclude for p in m.parameters()}
        self.storages: dict[int, int] = {}

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in self.exclude:
            self.storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    @property
    def total(self) -> int:
        return sum(self.storages.values())


def _measure(step: Callable[[], torch.Tensor], exclude: list[nn.Module]) -> tuple[int, int]:
    """(saved-tensor bytes, peak resident growth in bytes) of building `step`'s graph and running its backward."""
    counter = SavedTensors(exclude)
    reset = _rss_reset()
    before = _status_kib("VmRSS")
    with torch.autograd.graph.saved_tensors_hooks(counter.pack, lambda tensor: tensor):
        loss = step()
    loss.backward()
    peak = (_status_kib("VmHWM") - before) * 1024 if reset else -1
    return counter.total, peak


def states_bytes(g: nn.Module, d: nn.Module) -> int:
    """G + EMA-G (parameters and buffers) + D, and gradients plus Adam's two moments for G's and D's parameters."""

    def size(tensors: Any) -> int:
        return sum(t.numel() * t.element_size() for t in tensors)

    g_all = size(g.parameters()) + size(g.buffers())
    d_all = size(d.parameters()) + size(d.buffers())
    trained = size(g.parameters()) + size(d.parameters())
    return 2 * g_all + d_all + 3 * trained  # EMA copies G; grads + exp_avg + exp_avg_sq per trained parameter


def data_bytes(recipe: recipes.Recipe) -> int:
    if not recipe.train.data_on_device:
        return 0
    shape = data.output_shape(recipe.data)
    per_image = 1
    for n in shape:
        per_image *= n
    if recipe.data.name.startswith("celebahq"):  # the split's size as the papers' layout says, no file read
        count = len(celebahq.split_range(recipe.data.name, recipe.data.split, celebahq.PAPER_LAYOUT.total))
    elif (recipe.data.name, recipe.data.split) in SPLIT_SIZES:
        count = SPLIT_SIZES[recipe.data.name, recipe.data.split]
    else:
        count = len(data.load_dataset(recipe.data))
    return count * per_image * (4 if len(shape) == 1 else 1)


def measure(name: str, overrides: list[str]) -> Measured:
    torch.manual_seed(0)
    recipe = recipes.load(REPO / "recipes" / f"{name}.toml", overrides)
    shape = data.output_shape(recipe.data)
    start = time.perf_counter()
    g, d_raw = nets.build_nets(recipe.model, shape)
    objective = build_objective(recipe.method, recipe.loss)
    d = objective.method.prepare(d_raw)
    g.train()
    d.train()
    classes = recipe.model.num_classes

    def labels(n: int) -> torch.Tensor | None:
        return torch.randint(classes, (n,)) if classes else None

    def d_step(batch: int) -> Callable[[], torch.Tensor]:
        def step() -> torch.Tensor:
            real = torch.rand(batch, *shape) * 2 - 1
            real_labels, fake_labels = labels(batch), labels(batch)
            with torch.no_grad():
                fake = nets.generate(g, torch.randn(batch, recipe.model.z_dim), fake_labels)
            both = None if real_labels is None or fake_labels is None else torch.cat([real_labels, fake_labels])
            logits = objective.method.logits(nets.conditioned(d, both), torch.cat([real, fake]))
            real_logits, fake_logits = logits[:batch], logits[batch:]
            loss_real, loss_fake = objective.loss.d_loss(real_logits, fake_logits)
            loss = loss_real + loss_fake
            d_real, d_fake = nets.conditioned(d, real_labels), nets.conditioned(d, fake_labels)
            for regularizer in objective.regularizers:
                term = regularizer.penalty(d_real, real, real_logits, d_fake, fake, fake_logits)
                if term is not None:
                    loss = loss + term
            return loss

        return step

    def g_step(batch: int) -> Callable[[], torch.Tensor]:
        def step() -> torch.Tensor:
            y = labels(batch)
            fake = nets.generate(g, torch.randn(batch, recipe.model.z_dim), y)
            return objective.loss.g_loss(objective.method.logits(nets.conditioned(d, y), fake))

        return step

    results: dict[str, tuple[int, int]] = {}
    for batch in (1, 2):
        d.requires_grad_(True)
        results[f"d{batch}"] = _measure(d_step(batch), [g, d])
        d.zero_grad(set_to_none=True)
        d.requires_grad_(False)  # as the trainer's G step: gradients through D's input only
        results[f"g{batch}"] = _measure(g_step(batch), [g, d])
        g.zero_grad(set_to_none=True)
    d.requires_grad_(True)
    (d1, d1_rss), (d2, d2_rss) = results["d1"], results["d2"]
    (g1, g1_rss), (g2, g2_rss) = results["g1"], results["g2"]
    return Measured(
        recipe=name,
        states_bytes=states_bytes(g, d),
        data_bytes=data_bytes(recipe),
        d_fixed=2 * d1 - d2,
        d_per_sample=d2 - d1,
        g_fixed=2 * g1 - g2,
        g_per_sample=g2 - g1,
        d_peak_rss_b1=d1_rss,
        d_peak_rss_b2=d2_rss,
        g_peak_rss_b1=g1_rss,
        g_peak_rss_b2=g2_rss,
        batch_size_d=recipe.train.batch_size_d,
        batch_size_g=recipe.train.batch_size_g,
        seconds=time.perf_counter() - start,
    )


def gib(n: float) -> str:
    return f"{n / GIB:.1f}"


def table(rows: list[Measured]) -> str:
    head = (
        "| recipe | batch D / G | states GiB | data GiB | D step act. GiB | G step act. GiB | estimate GiB "
        "| GPUs (or accumulation) at 80 / 40 / 24 GB |"
    )
    lines = [head, "|" + "---|" * 8]
    for m in rows:
        d_act = m.d_fixed + m.d_per_sample * m.batch_size_d
        g_act = m.g_fixed + m.g_per_sample * m.batch_size_g
        needs = " / ".join(str(m.split_needed(size) or "-") for size in GPU_SIZES_GB)
        lines.append(
            f"| {m.recipe} | {m.batch_size_d} / {m.batch_size_g} | {gib(m.states_bytes)} | {gib(m.data_bytes)} "
            f"| {gib(d_act)} | {gib(g_act)} | {gib(m.estimate())} | {needs} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", default="", help="comma list of shipped recipe names (default: see above)")
    parser.add_argument("--set", action="append", default=[], dest="overrides", help="KEY=VALUE recipe override")
    parser.add_argument("--out", type=Path, help="also write the measurements as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    shipped = [name for name in DEFAULT_RECIPES if (REPO / "recipes" / f"{name}.toml").exists()]
    names = args.recipes.split(",") if args.recipes else shipped
    rows = []
    for name in names:
        rows.append(measure(name, args.overrides))
        m = rows[-1]
        print(
            f"{name}: D step saved {gib(m.d_fixed)} GiB + {m.d_per_sample / 2**20:.0f} MiB/sample (CPU peak growth "
            f"{gib(m.d_peak_rss_b1)} / {gib(m.d_peak_rss_b2)} GiB at batch 1 / 2); G step {gib(m.g_fixed)} GiB + "
            f"{m.g_per_sample / 2**20:.0f} MiB/sample (CPU {gib(m.g_peak_rss_b1)} / {gib(m.g_peak_rss_b2)}); "
            f"{m.seconds:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        if args.out:
            record = {
                "command": " ".join(sys.argv),
                "machine": platform.platform(),
                "torch": torch.__version__,
                "peak_rss_max_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                "rows": [asdict(row) for row in rows],
            }
            args.out.write_text(json.dumps(record, indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
