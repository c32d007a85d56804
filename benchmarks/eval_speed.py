"""FID-50k evaluation speed: the plain float32 path beside ganbench's evaluation, on the same samples.

    python benchmarks/eval_speed.py --inception-weights DIR/default_1.pt
    python benchmarks/eval_speed.py --inception-weights W --run results/<run>          # a trained EMA-G
    python benchmarks/eval_speed.py --inception-weights W --data recipe --set data.name=cifar10-jpeg \\
        --set data.root=../shared/data                                                  # real reference statistics

Both paths score the same 50k samples of one generator (z from the evaluation seed) against the same reference
statistics (computed first, not timed):

- reference: batch by batch, G's images quantised, Inception features (float32, TF32 off) copied to the host after
  each batch, statistics with numpy in float64, Tr((Σ₁Σ₂)^½) with scipy's sqrtm, as the TTUR and pytorch-fid code;
- ganbench: `Evaluation.scores`: generation overlapped with extraction on a side stream, features kept on the GPU,
  statistics and the trace by symmetric eigendecompositions in float64 there.

It prints each path's wall time and FID and their difference (the issue allows 0.01).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ganbench.metrics.evaluate import SAMPLE_SEED, Evaluation, quantize_images
from ganbench.metrics.fid import frechet_distance
from ganbench.metrics.inception import Extractor, build_extractor
from ganbench.metrics.refstats import RefStats, reference_statistics
from ganbench.store import RunDir
from ganbench.train import checkpoint
from ganbench.train.loop import resolve_device

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import NOISE_IMAGES, load_recipe  # noqa: E402  (the folder's shared module)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def reference_fid(
    generator: nn.Module, z_dim: int, n: int, batch_size: int, extractor: Extractor, ref: RefStats, device: torch.device
) -> float:
    """FID the plain way: per-batch features to the host, numpy statistics, scipy sqrtm."""
    z_all = torch.randn(n, z_dim, generator=torch.Generator().manual_seed(SAMPLE_SEED))
    generator.eval()
    parts = []
    for z in z_all.split(batch_size):
        parts.append(extractor.features(quantize_images(generator(z.to(device))))["pool"].numpy())
    features = np.concatenate(parts).astype(np.float64)
    mu, sigma = features.mean(axis=0), np.cov(features, rowvar=False)
    return frechet_distance(mu, sigma, ref.mu, ref.sigma, method="sqrtm")


def compare_paths(
    recipe: Any, generator: nn.Module, extractor: Extractor, ref: RefStats, n: int, device: torch.device
) -> dict[str, float]:
    """Both paths on the same samples: wall seconds and FID of each (each timed after a small warm-up)."""
    batch = recipe.eval.batch_size
    evaluation = Evaluation(recipe, device, metrics=["fid"], num_samples=n, extractor=extractor, ref=ref)
    warm = Evaluation(recipe, device, metrics=["fid"], num_samples=min(n, 2 * batch), extractor=extractor, ref=ref)
    warm.scores(generator, ["fid"])  # cuDNN and allocator warm-up, not timed
    _sync(device)
    start = time.perf_counter()
    ours = evaluation.scores(generator, ["fid"])["fid"]
    _sync(device)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    theirs = reference_fid(generator, recipe.model.z_dim, n, batch, extractor, ref, device)
    _sync(device)
    theirs_s = time.perf_counter() - start
    return {
        "reference_s": theirs_s,
        "reference_fid": theirs,
        "ganbench_s": ours_s,
        "ganbench_fid": ours,
        "fid_difference": abs(ours - theirs),
    }


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
    result = compare_paths(recipe, generator, extractor, ref, args.num_samples, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    batch = recipe.eval.batch_size
    print(f"device: {name}; torch {torch.__version__}; {args.num_samples} samples of {source}, batch {batch}")
    print(f"reference path: {result['reference_s']:.2f} s, FID {result['reference_fid']:.4f}")
    print(f"ganbench path:  {result['ganbench_s']:.2f} s, FID {result['ganbench_fid']:.4f}")
    print(f"speed-up {result['reference_s'] / result['ganbench_s']:.2f}x, |ΔFID| = {result['fid_difference']:.2e}")
    if args.out:
        command = ["python", "benchmarks/eval_speed.py", *(argv if argv is not None else sys.argv[1:])]
        args.out.write_text(json.dumps({"device": name, "command": " ".join(command), **result}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
