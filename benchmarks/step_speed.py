"""Training-step speed: a plain eager reference step beside ganbench's step, in one process on one device.

    python benchmarks/step_speed.py                                   # the seven recipes of the speed issue
    python benchmarks/step_speed.py --recipes cifar10_cnn_gn --steps 500 --repeats 7
    python benchmarks/step_speed.py --set train.cuda_graph=false      # ganbench's eager path instead

(a) The reference is written the straightforward way, as the official GN-GAN code trains: a DataLoader (worker
processes, pinned memory) of the images, separate D and G steps, the gradient normalisations by autograd double
backprop, torch.optim.Adam with its defaults, a per-parameter EMA loop, LambdaLR for the decay, and the loss read
back with .item() every D step for the progress bar. It uses ganbench's networks and losses (the same backbone).
(b) ganbench's step is `Trainer.run` itself, with its logging; each timed repeat is one log interval, whose time the
loop measures with CUDA events.

Speed does not depend on pixel values, so by default both read the same random uint8 images of the recipe's shape
(`--data noise`); `--data recipe` loads the recipe's own dataset (set data.root with --set). Each prints G-steps/s
for (a) and (b), the median over the repeats after one warm-up repeat, their ratio and the peak GPU memory.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils import spectral_norm
from torch.utils.data import DataLoader, TensorDataset

from ganbench import data, losses, nets
from ganbench import recipe as recipes
from ganbench.store import RunDir
from ganbench.train.loop import Trainer, resolve_device

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import NOISE_IMAGES, load_recipe  # noqa: E402  (the folder's shared module)

DEFAULT_RECIPES = [
    "cifar10_cnn_sn",
    "cifar10_cnn_gn",
    "cifar10_cnn_pgn",
    "cifar10_cnn_gran",
    "cifar10_resnet_sn",
    "cifar10_resnet_gn",
    "stl10_cnn_gn",
]
# (a) the reference step ------------------------------------------------------------------------------------------


def _gradient(d: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x.requires_grad_(True)
    f = d(x).flatten()
    (grad,) = torch.autograd.grad(f, [x], torch.ones_like(f), create_graph=True, retain_graph=True)
    return f, grad


def reference_logits(method: recipes.MethodConfig, d: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """D's normalised output as the papers' code computes it, written out here on purpose (not ganbench's)."""
    if method.name in ("sn", "none"):
        return d(x).flatten()
    f, grad = _gradient(d, x)
    if method.name == "gn":
        grad_norm = torch.norm(torch.flatten(grad, start_dim=1), p=2, dim=1)
        return f / (grad_norm + torch.abs(f))
    if method.name == "pgn":
        shifted = torch.norm(torch.flatten(1 - grad, start_dim=1), p=2, dim=1)
        return (1 - f) / (shifted + torch.abs(1 - f))
    if method.name == "gran":
        grad_norm = torch.norm(torch.flatten(grad, start_dim=1), p=2, dim=1)
        if method.gran_variant == "ratio":
            return method.gran_k * f * grad_norm / (grad_norm**2 + method.gran_eps)
        return method.gran_k * f / (grad_norm + method.gran_eps)
    raise SystemExit(f"the reference step has no {method.name}")


class ReferenceTrainer:
    def __init__(self, recipe: recipes.Recipe, device: torch.device, workers: int) -> None:
        self.recipe, self.device = recipe, device
        t = recipe.train
        dataset = data.load_dataset(recipe.data)
        images = dataset.tensor.float() / 127.5 - 1.0  # the official code's ToTensor + Normalize(0.5, 0.5)
        self.loader = DataLoader(
            TensorDataset(images),
            batch_size=t.batch_size_d,
            shuffle=True,
            drop_last=True,
            num_workers=workers,
            pin_memory=device.type == "cuda",
            persistent_workers=workers > 0,
        )
        self.batches = self._forever()
        g, d = nets.build_nets(recipe.model, data.output_shape(recipe.data))
        if recipe.method.name == "sn":
            for module in d.modules():
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    spectral_norm(module)
        self.G, self.D = g.to(device), d.to(device)
        self.G_ema = nets.build_nets(recipe.model, data.output_shape(recipe.data))[0].to(device)
        self.G_ema.load_state_dict(self.G.state_dict())
        self.opt_g = torch.optim.Adam(self.G.parameters(), t.lr_g, betas=(t.beta1, t.beta2))
        self.opt_d = torch.optim.Adam(self.D.parameters(), t.lr_d, betas=(t.beta1, t.beta2))
        decay = (lambda step: 1 - step / t.steps) if t.lr_decay == "linear" else (lambda step: 1.0)
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, decay)
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, decay)
        self.loss = losses.LOSSES.get(recipe.loss.name)
        self.loss_sum = 0.0

    def _forever(self) -> Any:
        while True:
            yield from self.loader

    def step(self) -> None:
        t, z_dim, method = self.recipe.train, self.recipe.model.z_dim, self.recipe.method
        for _ in range(t.n_dis):
            (x_real,) = next(self.batches)
            x_real = x_real.to(self.device, non_blocking=True)
            z = torch.randn(t.batch_size_d, z_dim, device=self.device)
            with torch.no_grad():
                x_fake = self.G(z).detach()
            pred = reference_logits(method, self.D, torch.cat([x_real, x_fake]))
            loss_real, loss_fake = self.loss.d_loss(pred[: len(x_real)], pred[len(x_real) :])
            loss = loss_real + loss_fake
            self.opt_d.zero_grad()
            loss.backward()
            self.opt_d.step()
            self.loss_sum += loss.cpu().item()  # the progress bar's running loss
        for p in self.D.parameters():
            p.requires_grad_(False)
        z = torch.randn(t.batch_size_g, z_dim, device=self.device)
        loss = self.loss.g_loss(reference_logits(method, self.D, self.G(z)))
        self.opt_g.zero_grad()
        loss.backward()
        self.opt_g.step()
        for p in self.D.parameters():
            p.requires_grad_(True)
        self.sched_g.step()
        self.sched_d.step()
        with torch.no_grad():
            for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters(), strict=True):
                p_ema.data.mul_(t.ema_decay).add_(p.data, alpha=1 - t.ema_decay)
            for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
                b_ema.data.copy_(b.data)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_reference(recipe: recipes.Recipe, device: torch.device, steps: int, repeats: int, workers: int) -> list[float]:
    trainer = ReferenceTrainer(recipe, device, workers)
    rates = []
    for repeat in range(repeats + 1):  # the first repeat warms up (cuDNN, allocator, workers)
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            trainer.step()
        _sync(device)
        if repeat:
            rates.append(steps / (time.perf_counter() - start))
    return rates


# (b) ganbench's step ---------------------------------------------------------------------------------------------


def time_ganbench(recipe: recipes.Recipe, device: torch.device, steps: int, repeats: int) -> list[float]:
    overrides = {
        "train": {
            "steps": steps * (repeats + 1),
            "log_every": steps,
            "sample_every": 0,
            "checkpoint_every": steps * (repeats + 1),
            "keep_checkpoints": False,
            "device": str(device),
        },
        "eval": {"every": 0},
    }
    tree = recipe.to_dict()
    for section, values in overrides.items():
        tree[section].update(values)
    timed = recipes.from_dict(tree)
    with tempfile.TemporaryDirectory() as tmp:
        Trainer(timed, RunDir(Path(tmp) / "run")).run()
        history = RunDir(Path(tmp) / "run").read_history()
    return [float(rate) for rate in history["g_steps_per_s"].iloc[1:]]  # row 0: the warm-up repeat (and capture)


def peak_memory(device: torch.device, run: Any) -> tuple[Any, float]:
    if device.type != "cuda":
        return run(), float("nan")
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    result = run()
    return result, torch.cuda.max_memory_allocated(device) / 2**30


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", default=",".join(DEFAULT_RECIPES), help="recipe names under recipes/, comma list")
    parser.add_argument("--steps", type=int, default=200, help="G steps per timed repeat (default 200)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats after one warm-up repeat (default 5)")
    parser.add_argument("--device", default="auto", help="auto, cuda, cuda:N or cpu")
    parser.add_argument("--data", choices=["noise", "recipe"], default="noise", help="random images or the recipe's")
    parser.add_argument("--images", type=int, default=50_000, help="how many random images (--data noise)")
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers of the reference (default 4)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="recipe override, both sides")
    parser.add_argument("--skip-reference", action="store_true", help="time ganbench's step only")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    NOISE_IMAGES["count"] = args.images
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device: {gpu}; torch {torch.__version__}; {args.steps} steps x {args.repeats} repeats (+1 warm-up)")
    header = f"{'recipe':<22}{'reference':>12}{'ganbench':>12}{'ratio':>8}{'ref GiB':>9}{'ours GiB':>9}"
    print(header + "\n" + "-" * len(header))
    results = []
    for name in args.recipes.split(","):
        recipe = load_recipe(name.strip(), args.overrides, args.data)
        ours_rates, ours_mem = peak_memory(device, lambda r=recipe: time_ganbench(r, device, args.steps, args.repeats))
        ref_rates, ref_mem = [], float("nan")
        if not args.skip_reference:
            ref_rates, ref_mem = peak_memory(
                device, lambda r=recipe: time_reference(r, device, args.steps, args.repeats, args.workers)
            )
        ours = statistics.median(ours_rates)
        ref = statistics.median(ref_rates) if ref_rates else float("nan")
        results.append(
            {
                "recipe": name,
                "reference_g_steps_per_s": ref,
                "ganbench_g_steps_per_s": ours,
                "ratio": ours / ref if ref_rates else None,
                "reference_rates": ref_rates,
                "ganbench_rates": ours_rates,
                "reference_peak_gib": ref_mem,
                "ganbench_peak_gib": ours_mem,
            }
        )
        ratio = f"{ours / ref:.2f}x" if ref_rates else "-"
        print(f"{name:<22}{ref:>12.2f}{ours:>12.2f}{ratio:>8}{ref_mem:>9.2f}{ours_mem:>9.2f}", flush=True)
    if args.out:
        record = {
            "device": gpu,
            "torch": torch.__version__,
            "command": " ".join(["python", "benchmarks/step_speed.py", *(argv if argv is not None else sys.argv[1:])]),
            "steps": args.steps,
            "repeats": args.repeats,
            "results": results,
        }
        args.out.write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
