"""Training-step speed: a plain eager reference step beside ganbench's step, in one process on one device.

    python benchmarks/step_speed.py                                   # the seven recipes of the speed issue
    python benchmarks/step_speed.py --recipes cifar10_cnn_gn --steps 500 --repeats 7
    python benchmarks/step_speed.py --set train.cuda_graph=false      # ganbench's eager path instead

(a) The reference is written the straightforward way, as the official GN-GAN code trains: a DataLoader (worker
processes, pinned memory) of the images, separate D and G steps, the gradient normalisations by autograd double
backprop, torch.optim.Adam with its defaults, a per-parameter EMA loop, LambdaLR for the decay, and the loss read
back with .item() every D step for the progress bar. It uses ganbench's networks and losses (the same backbone).
Consistency regularization (*_cr recipes) is written out here too, batched on the device (the official code's
per-image PIL loop on the host would make the reference slower than any fair plain version).
(b) ganbench's step is `Trainer.run` itself, with its logging; each timed repeat is one log interval, whose time the
loop measures with CUDA events.

Speed does not depend on pixel values, so by default both read the same random uint8 images of the recipe's shape
(`--data noise`); `--data recipe` loads the recipe's own dataset (set data.root with --set). Each prints G-steps/s
for (a) and (b), the median over the repeats after one warm-up repeat, their ratio and the peak GPU memory.
Both sides run with the recipe's TF32 (train.tf32) and cuDNN autotuning (train.cudnn_benchmark) settings, set
explicitly before each, so neither inherits what the other left behind.
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
from ganbench.devices import resolve_device
from ganbench.store import RunDir
from ganbench.train.loop import Trainer

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


def cr_draws(n: int, method: recipes.MethodConfig, device: torch.device) -> tuple[torch.Tensor | None, torch.Tensor]:
    """CR's random draws for n images, in the contract's order: the flip flags (if cr_flip), then u ~ U[0, 1)^(n, 2)."""
    flips = torch.rand(n, device=device) < 0.5 if method.cr_flip else None
    return flips, torch.rand(n, 2, device=device)


def cr_transform(x: torch.Tensor, flips: torch.Tensor | None, u: torch.Tensor, translate: float) -> torch.Tensor:
    """T(x) of consistency regularization: onto the uint8 grid, flipped where `flips`, the content moved
    round((2u − 1)·translate·side) pixels right (u[:, 0]) and down (u[:, 1]), uncovered pixels black (−1)."""
    n, _, h, w = x.shape
    x = torch.round((x + 1) / 2 * 255) / 255 * 2 - 1
    if flips is not None:
        x = torch.where(flips.view(n, 1, 1, 1), x.flip(3), x)
    shift_x = torch.round((2 * u[:, 0] - 1) * translate * w).long()
    shift_y = torch.round((2 * u[:, 1] - 1) * translate * h).long()
    rows = torch.arange(h, device=x.device).view(1, h) - shift_y.view(n, 1)  # the source row of each output row
    cols = torch.arange(w, device=x.device).view(1, w) - shift_x.view(n, 1)
    inside = ((rows >= 0) & (rows < h)).view(n, 1, h, 1) & ((cols >= 0) & (cols < w)).view(n, 1, 1, w)
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    pixels = x.permute(0, 2, 3, 1)[batch, rows.clamp(0, h - 1).view(n, h, 1), cols.clamp(0, w - 1).view(n, 1, w)]
    return torch.where(inside, pixels.permute(0, 3, 1, 2), torch.full_like(x, -1.0))


def set_backends(tf32: bool, cudnn_benchmark: bool) -> dict[str, bool]:
    """TF32 (matmul and cuDNN) and cuDNN autotuning, set explicitly: the settings one side leaves are global."""
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = cudnn_benchmark
    return {"tf32": tf32, "cudnn_benchmark": cudnn_benchmark}


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

    def consistency(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """mean((D̂(T(x)) − D̂(x))²), D̂(x) being the logits of the loss itself (graph kept)."""
        method = self.recipe.method
        flips, u = cr_draws(len(x), method, self.device)
        augmented = cr_transform(x.detach(), flips, u, method.cr_translate)
        return (reference_logits(method, self.D, augmented) - logits).square().mean()

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
            pred_real, pred_fake = pred[: len(x_real)], pred[len(x_real) :]
            loss_real, loss_fake = self.loss.d_loss(pred_real, pred_fake)
            loss = loss_real + loss_fake
            if method.cr_lambda > 0:
                term = self.consistency(x_real, pred_real)
                if method.bcr:
                    term = term + self.consistency(x_fake, pred_fake)
                loss = loss + method.cr_lambda * term
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
    set_backends(recipe.train.tf32, recipe.train.cudnn_benchmark)
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


def time_ganbench(recipe: recipes.Recipe, device: torch.device, steps: int, repeats: int) -> tuple[list[float], str]:
    """G-steps/s of each timed repeat (one log interval each), and the step path the trainer took."""
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
    set_backends(timed.train.tf32, timed.train.cudnn_benchmark)  # the trainer sets them too, on CUDA only
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(timed, RunDir(Path(tmp) / "run"))
        trainer.run()
        history = RunDir(Path(tmp) / "run").read_history()
    rates = [float(rate) for rate in history["g_steps_per_s"].iloc[1:]]  # row 0: the warm-up repeat (and capture)
    return rates, trainer.runner.path


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
    command = " ".join(["python", "benchmarks/step_speed.py", *(argv if argv is not None else sys.argv[1:])])
    results = []
    for name in args.recipes.split(","):
        recipe = load_recipe(name.strip(), args.overrides, args.data)
        (ours_rates, path), ours_mem = peak_memory(
            device, lambda r=recipe: time_ganbench(r, device, args.steps, args.repeats)
        )
        ref_rates, ref_mem = [], float("nan")
        if not args.skip_reference:
            ref_rates, ref_mem = peak_memory(
                device, lambda r=recipe: time_reference(r, device, args.steps, args.repeats, args.workers)
            )
        ours = statistics.median(ours_rates)
        ref = statistics.median(ref_rates) if ref_rates else float("nan")
        images = recipe.train.batch_size_d * recipe.train.n_dis  # real images one G step consumes
        results.append(
            {
                "recipe": name,
                "reference_g_steps_per_s": ref,
                "ganbench_g_steps_per_s": ours,
                "reference_images_per_s": ref * images,
                "ganbench_images_per_s": ours * images,
                "ratio": ours / ref if ref_rates else None,
                "reference_rates": ref_rates,
                "ganbench_rates": ours_rates,
                "reference_peak_gib": ref_mem,
                "ganbench_peak_gib": ours_mem,
                "ganbench_step_path": path,
                "images_per_g_step": images,
                "backends": {"tf32": recipe.train.tf32, "cudnn_benchmark": recipe.train.cudnn_benchmark},
                "cr_lambda": recipe.method.cr_lambda,
            }
        )
        ratio = f"{ours / ref:.2f}x" if ref_rates else "-"
        print(f"{name:<22}{ref:>12.2f}{ours:>12.2f}{ratio:>8}{ref_mem:>9.2f}{ours_mem:>9.2f}  {path}", flush=True)
        if args.out:  # after every recipe: a run stopped by a time limit keeps what it measured
            record = {
                "device": gpu,
                "torch": torch.__version__,
                "command": command,
                "steps": args.steps,
                "repeats": args.repeats,
                "results": results,
            }
            args.out.write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
