"""Every shipped recipe loads, and the paper recipes carry the papers' configurations (README "Paper recipes")."""

from __future__ import annotations

from pathlib import Path

import pytest

from ganbench import recipe as recipes

RECIPES = Path(__file__).resolve().parent.parent / "recipes"  # a symlink to ganbench/recipes, the package data
PAPER = {  # backbone: (arch, loss, n_dis, lr_d, lr_g, lr_decay)
    "cifar10_cnn": ("cnn32", "bce", 1, 2e-4, 2e-4, "none"),
    "cifar10_resnet": ("resnet32", "hinge", 5, 4e-4, 2e-4, "linear"),
    "stl10_cnn": ("cnn48", "bce", 1, 2e-4, 2e-4, "none"),
    "stl10_resnet": ("resnet48", "hinge", 5, 4e-4, 2e-4, "linear"),
}
METHODS = ("sn", "gn", "pgn", "gran", "wgangp")


@pytest.mark.parametrize(
    "path", sorted([*RECIPES.glob("*.toml"), *RECIPES.glob("variants/*.toml")]), ids=lambda p: p.stem
)
def test_recipe_loads(path: Path) -> None:
    assert recipes.load(path).name == path.stem


@pytest.mark.parametrize("backbone", sorted(PAPER))
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("cr", [False, True])
def test_paper_recipes(backbone: str, method: str, cr: bool) -> None:
    resolved = recipes.load(RECIPES / f"{backbone}_{method}{'_cr' if cr else ''}.toml")
    arch, loss, n_dis, lr_d, lr_g, decay = PAPER[backbone]
    t = resolved.train
    assert resolved.model.arch == arch
    assert resolved.loss.name == ("wasserstein" if method == "wgangp" else loss)
    assert (t.steps, t.n_dis, t.lr_d, t.lr_g, t.lr_decay) == (200_000, n_dis, lr_d, lr_g, decay)
    assert (t.beta1, t.beta2, t.batch_size_d, t.batch_size_g, t.ema_decay) == (0.0, 0.9, 64, 128, 0.9999)
    assert resolved.model.z_dim == 128
    assert (resolved.eval.every, resolved.eval.num_samples) == (5000, 50_000)
    assert resolved.method.cr_lambda == (5.0 if cr else 0.0)
    if backbone.startswith("stl10"):
        assert (resolved.data.split, resolved.data.size) == ("unlabeled", 48)


# CelebA-HQ (config/GN-GAN_CELEBAHQ{128,256}_RES.txt): px -> (train split, reference split, samples for FID)
CELEBAHQ = {128: ("train", "test", 3000), 256: ("all", "all", 10_000)}


@pytest.mark.parametrize("px", sorted(CELEBAHQ))
@pytest.mark.parametrize("method", ("sn", "gn", "pgn", "gran"))
def test_celebahq_recipes(px: int, method: str) -> None:
    resolved = recipes.load(RECIPES / f"celebahq{px}_resnet_{method}.toml")
    split, reference, samples = CELEBAHQ[px]
    t, e, d = resolved.train, resolved.eval, resolved.data
    assert (resolved.model.arch, resolved.model.z_dim, resolved.model.d_pool) == (f"resnet{px}", 128, "mean")
    assert (resolved.method.name, resolved.method.cr_lambda, resolved.loss.name) == (method, 0.0, "hinge")
    assert (d.name, d.split, d.size, d.hflip) == (f"celebahq{px}", split, px, True)
    assert (t.steps, t.n_dis, t.lr_d, t.lr_g, t.lr_decay) == (100_000, 5, 2e-4, 2e-4, "none")
    assert (t.beta1, t.beta2, t.batch_size_d, t.batch_size_g) == (0.0, 0.9, 64, 128)
    assert (t.ema_decay, t.ema_start) == (0.9999, 10_000)
    assert (e.every, e.num_samples, e.ref_split, e.select, e.bn_mode) == (1000, samples, reference, "ema", "batch")
    assert "fid" in e.metrics


def test_quickstart_is_offline_and_small() -> None:
    quick = recipes.load(RECIPES / "quickstart.toml")
    assert quick.data.name in ("ring8", "grid25")
    assert quick.train.steps <= 10_000
