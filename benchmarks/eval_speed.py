"""FID-50k evaluation speed: the plain float32 path beside ganbench's evaluation, on the same samples.

    python benchmarks/eval_speed.py --inception-weights DIR/default_1.pt
    python benchmarks/eval_speed.py --inception-weights W --run results/<run>          # a trained EMA-G
    python benchmarks/eval_speed.py --inception-weights W --data recipe --set data.name=cifar10-jpeg \\
        --set data.root=DIR                                                             # real reference statistics

Both paths score the same 50k samples of one generator (z from the evaluation seed, G's BatchNorm as eval.bn_mode
says) against the same reference statistics (computed first, not timed):

- reference: written out here, batch by batch: G's images quantised, Inception features (float32, TF32 off) copied
  to the host after each batch, statistics with numpy in float64, Tr((Σ₁Σ₂)^½) with scipy's sqrtm, as the TTUR and
  pytorch-fid code;
- ganbench: `Evaluation.scores`: generation overlapped with extraction on a side stream, features kept on the GPU,
  statistics and the trace by symmetric eigendecompositions in float64 there.

Each path's time is broken down into generate, features, statistics and sqrt (the square-root trace and the
distance). The reference's parts are timed inside its own pass (it waits for the GPU after every batch anyway);
ganbench's pass overlaps generation with extraction, so its parts come from one more pass, stage after stage, each
finished before the next starts. It prints each path's wall time, the breakdowns, both FIDs and their difference
(the issue allows 0.01).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ganbench.devices import resolve_device
from ganbench.evaluation import SAMPLE_SEED, Evaluation, generate_images
from ganbench.metrics.fid import feature_statistics, frechet_distance
from ganbench.metrics.inception import Extractor, build_extractor
from ganbench.metrics.refstats import RefStats, reference_statistics
from ganbench.nets import sampling_mode
from ganbench.store import RunDir
from ganbench.train import checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import NOISE_IMAGES, load_recipe  # noqa: E402  (the folder's shared module)

PARTS = ("generate", "features", "statistics", "sqrt")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _quantize(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> uint8 as a PNG writer rounds: x·255 + 0.5, clamped, truncated."""
    return ((images.clamp(-1, 1) + 1) / 2 * 255 + 0.5).clamp(0, 255).to(torch.uint8)


class _Stopwatch:
    """Seconds per named part, each part ended by waiting for the device."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.parts = device, dict.fromkeys(PARTS, 0.0)

    @contextlib.contextmanager
    def part(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        _sync(self.device)
        self.parts[name] += time.perf_counter() - start


@torch.no_grad()
def reference_fid(
    recipe: Any, generator: nn.Module, n: int, extractor: Extractor, ref: RefStats, device: torch.device
) -> tuple[float, dict[str, float]]:
    """FID the plain way (per-batch features to the host, numpy statistics, scipy sqrtm), with its time per part.

    The samples are ganbench's: z ~ N(0, I) from SAMPLE_SEED drawn at once on the host. "running" BatchNorm samples
    in G's eval mode, in batches of eval.batch_size; "batch" in train mode (buffers put back) in full batches of
    train.batch_size_g, as the official code: the last one filled with codes drawn after the n kept, its images past
    n dropped."""
    watch = _Stopwatch(device)
    codes = torch.Generator().manual_seed(SAMPLE_SEED)
    z_all = torch.randn(n, recipe.model.z_dim, generator=codes)
    batch = recipe.train.batch_size_g if recipe.eval.bn_mode == "batch" else recipe.eval.batch_size
    if recipe.eval.bn_mode == "batch" and n % batch:
        z_all = torch.cat([z_all, torch.randn(batch - n % batch, recipe.model.z_dim, generator=codes)])
    parts = []
    kept = 0
    with sampling_mode(generator, recipe.eval.bn_mode):
        for z in z_all.split(batch):
            with watch.part("generate"):
                images = _quantize(generator(z.to(device)))[: n - kept]
                kept += len(images)
            with watch.part("features"):
                parts.append(extractor.features(images)["pool"].numpy())
    with watch.part("statistics"):
        features = np.concatenate(parts).astype(np.float64)
        mu, sigma = features.mean(axis=0), np.cov(features, rowvar=False)
    with watch.part("sqrt"):
        fid = frechet_distance(mu, sigma, ref.mu, ref.sigma, method="sqrtm")
    return fid, watch.parts


@torch.no_grad()
def staged_fid(evaluation: Evaluation, generator: nn.Module) -> tuple[float, dict[str, float]]:
    """ganbench's pieces of `Evaluation.scores` one after the other, each finished before the next: the time of
    each part (the real pass overlaps the first two)."""
    assert evaluation.extractor is not None and evaluation.ref is not None
    recipe, device, ref = evaluation.recipe, evaluation.device, evaluation.ref
    watch = _Stopwatch(device)
    with watch.part("generate"):
        samples = generate_images(
            generator,
            evaluation.num_samples,
            recipe.model.z_dim,
            evaluation.sample_batch,
            device,
            evaluation.seed,
            evaluation.quantize,
            evaluation.bn_mode,
        )
        batches = list(samples)
    with watch.part("features"):
        pool = torch.cat([evaluation.extractor.features(images, on_device=True)["pool"] for images in batches])
    with watch.part("statistics"):
        mu, sigma = feature_statistics(pool)
    with watch.part("sqrt"):
        fid = frechet_distance(mu, sigma, ref.mu, ref.sigma, device=device)
    return fid, watch.parts


def compare_paths(
    recipe: Any,
    generator: nn.Module,
    extractor: Extractor,
    ref: RefStats,
    n: int,
    device: torch.device,
    report: Callable[[dict[str, Any]], None] = lambda partial: None,
) -> dict[str, Any]:
    """Both paths on the same samples: wall seconds, FID and time per part of each (after a small warm-up).
    `report` gets the results so far after each pass (a caller under a time limit keeps them)."""
    batch = recipe.eval.batch_size
    evaluation = Evaluation(recipe, device, metrics=["fid"], num_samples=n, extractor=extractor, ref=ref)
    warm = Evaluation(recipe, device, metrics=["fid"], num_samples=min(n, 2 * batch), extractor=extractor, ref=ref)
    warm.scores(generator, ["fid"])  # cuDNN and allocator warm-up, not timed
    result: dict[str, Any] = {"num_samples": n}
    _sync(device)
    start = time.perf_counter()
    result["ganbench_fid"] = evaluation.scores(generator, ["fid"])["fid"]
    _sync(device)
    result["ganbench_s"] = time.perf_counter() - start
    report(result)
    start = time.perf_counter()
    result["reference_fid"], result["reference_parts_s"] = reference_fid(recipe, generator, n, extractor, ref, device)
    result["reference_s"] = time.perf_counter() - start
    result["fid_difference"] = abs(result["ganbench_fid"] - result["reference_fid"])
    report(result)
    # last: a time limit that cuts the run short costs only this breakdown
    result["ganbench_staged_fid"], result["ganbench_parts_s"] = staged_fid(evaluation, generator)
    report(result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="cifar10_cnn_gn", help="recipe name under recipes/ (generator, data)")
    parser.add_argument("--run", type=Path, help="a run directory: score its last EMA-G instead of a fresh G")
    parser.add_argument("--inception-weights", help="Inception weights file (e.g. the FID TorchScript trunk)")
    parser.add_argument("--num-samples", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, help="eval.batch_size for both paths (default: the recipe's)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data", choices=["noise", "recipe"], default="noise", help="reference: random or real")
    parser.add_argument("--images", type=int, default=10_000, help="random reference images (--data noise)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="recipe override")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    NOISE_IMAGES["count"] = args.images
    overrides = [*args.overrides, *([f"eval.batch_size={args.batch_size}"] if args.batch_size else [])]
    recipe = load_recipe(args.recipe, overrides, args.data)
    if args.run:
        generator, step = checkpoint.load_generator(RunDir(args.run), "last", ema=True, map_location=device)
        source = f"{args.run} step {step} EMA-G"
    else:
        torch.manual_seed(0)
        generator, source = checkpoint.build_generator(recipe).to(device), "an untrained G"
    extractor = build_extractor(recipe.eval.backend, args.inception_weights, device)
    ref = reference_statistics(recipe.data, extractor, split="train", batch_size=recipe.eval.batch_size)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    command = " ".join(["python", "benchmarks/eval_speed.py", *(argv if argv is not None else sys.argv[1:])])

    def report(partial: dict[str, Any]) -> None:
        if args.out:  # after every pass: a run stopped by a time limit keeps what it measured
            record = {"device": name, "command": command, "generator": source, "bn_mode": recipe.eval.bn_mode}
            args.out.write_text(json.dumps({**record, **partial}, indent=1))

    result = compare_paths(recipe, generator, extractor, ref, args.num_samples, device, report)
    batch = recipe.eval.batch_size
    print(f"device: {name}; torch {torch.__version__}; {args.num_samples} samples of {source}, batch {batch}")
    for side in ("reference", "ganbench"):
        parts = ", ".join(f"{part} {seconds:.2f}" for part, seconds in result[f"{side}_parts_s"].items())
        print(f"{side + ' path:':<16}{result[f'{side}_s']:.2f} s, FID {result[f'{side}_fid']:.4f}  (s: {parts})")
    print("(ganbench's parts from a pass stage after stage; its real pass overlaps generate and features)")
    print(f"speed-up {result['reference_s'] / result['ganbench_s']:.2f}x, |ΔFID| = {result['fid_difference']:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
