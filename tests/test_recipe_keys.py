"""Every recipe key reaches what it claims to change.

The keys are enumerated from the recipe's dataclasses, so a new key fails `test_every_key_has_a_case` until it is
given a case here. A key that changes training trains a tiny recipe (2-D ring or 32 px shapes, 3 steps on the CPU)
with and without its alternative value and must change the final weights (G, D or EMA-G); a key that changes only
evaluation must change the metric rows (or what selects best.pt) and leave the weights alone; a key in
NON_SEMANTIC_KEYS must leave the weights bit for bit as they are.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from ganbench import evaluation
from ganbench import recipe as recipes
from ganbench.errors import RecipeError
from ganbench.evaluation import TrainingEvaluator
from ganbench.metrics import inception
from ganbench.recipe import NON_SEMANTIC_KEYS, Recipe
from ganbench.store import RunDir
from ganbench.train import checkpoint
from ganbench.train.loop import Trainer
from ganbench.train.runinfo import training_hash
from tests.test_metrics_inception import save_tiny_trunk

POINTS = """
seed = 3

[data]
name = "ring8"
num_samples = 256

[model]
arch = "mlp"
z_dim = 4
g_channels = 16
d_channels = 16

[method]
name = "gn"

[train]
device = "cpu"
steps = 3
batch_size_d = 32
batch_size_g = 32
lr_d = 1e-3
lr_g = 1e-3
beta1 = 0.5
ema_decay = 0.9
log_every = 1
sample_every = 0
checkpoint_every = 3

[eval]
every = 0
num_samples = 400
"""

IMAGES = """
seed = 3

[data]
name = "shapes"
num_samples = 64

[model]
arch = "cnn32"
z_dim = 8
g_channels = 8
d_channels = 8

[method]
name = "none"

[train]
device = "cpu"
steps = 3
batch_size_d = 8
batch_size_g = 8
lr_d = 1e-3
lr_g = 1e-3
beta1 = 0.5
ema_decay = 0.9
log_every = 1
sample_every = 0
checkpoint_every = 3

[eval]
every = 0
num_samples = 24
metrics = ["fid"]
"""

BASES = {"points": POINTS, "images": IMAGES}
FEATURES = 16  # the stand-in Inception trunk's width: FID's matrix square root stays tiny


@dataclass(frozen=True)
class Case:
    """Base recipe + `setup` against base + `setup` + `alt`; `alt[0]` sets the key under test."""

    base: str  # "points" or "images"
    alt: tuple[str, ...]
    setup: tuple[str, ...] = ()
    check: str = "weights"  # which check below proves the key reaches what it changes
    why: str = ""  # for every check but "weights": why the weights cannot show it


GRAN = ("method.name=gran",)
WGAN_GP = ("method.name=wgan-gp", "loss.name=wasserstein")
LGAN = ("method.name=lgan", "loss.name=lgan-exp")
CR = ("method.cr_lambda=1.0",)
EVAL_POINTS = ("eval.every=1",)  # evaluated at every step: the rows and best.pt see all three steps
EVAL_IMAGES = ("eval.every=3",)
NOT_WEIGHTS = "evaluation only: training never reads it, so the weights must stay the same and the rows change"

CASES: dict[str, Case] = {
    # name is in both hashes, so a run cannot resume under another name although nothing computed depends on it
    "name": Case("points", ("name='other'",), check="run_name", why="names the run (run.json, run folders) only"),
    "seed": Case("points", ("seed=4",)),
    "data.name": Case("points", ("data.name=grid25",)),
    "data.split": Case("points", ("data.split=test",)),
    "data.size": Case(
        "images",
        ("data.size=48", "model.arch=cnn48"),
        check="image_side",
        why="the architecture fixes the image side, so no two valid sizes share a net: the reals must come at the "
        "size asked for, and a net of the other size must be refused",
    ),
    "data.num_samples": Case("points", ("data.num_samples=128",)),
    "data.seed": Case("points", ("data.seed=1",)),
    "data.hflip": Case("images", ("data.hflip=false",)),
    "model.arch": Case("images", ("model.arch=resnet32",)),
    "model.z_dim": Case("points", ("model.z_dim=5",)),
    "model.g_channels": Case("points", ("model.g_channels=8",)),
    "model.d_channels": Case("points", ("model.d_channels=8",)),
    "model.num_classes": Case(
        "images",
        ("model.num_classes=3", "model.arch=biggan32"),
        check="classes",
        why="only a class-conditional net takes it, so it changes with model.arch: the labels must reach both nets "
        "(G's conditional BatchNorm rows and D's projection embedding train) and a count other than the data's "
        "must be refused",
    ),
    # method none: GN's logits are invariant to scaling D, and sum pooling is mean pooling scaled
    "model.d_pool": Case("images", ("model.d_pool='sum'",), setup=("model.arch=resnet32",)),
    "method.name": Case("points", ("method.name=sn",)),
    "method.gran_k": Case("points", ("method.gran_k=2.0",), setup=GRAN),
    "method.gran_eps": Case("points", ("method.gran_eps=1.0",), setup=GRAN),
    "method.gran_variant": Case("points", ("method.gran_variant='additive'",), setup=GRAN),
    "method.gp_lambda": Case("points", ("method.gp_lambda=1.0",), setup=WGAN_GP),
    "method.lgan_lambda": Case("points", ("method.lgan_lambda=1.0",), setup=LGAN),
    # the power iteration's eps floors vector norms: it shows only above the small net's singular values
    "method.sn_eps": Case("points", ("method.sn_eps=1.0",), setup=("method.name=sn",)),
    # CR on images: its transform leaves 2-D points unchanged
    "method.cr_lambda": Case("images", CR),
    "method.bcr": Case("images", ("method.bcr=true",), setup=CR),
    "method.cr_translate": Case("images", ("method.cr_translate=0.5",), setup=CR),
    "method.cr_flip": Case("images", ("method.cr_flip=false",), setup=CR),
    "loss.name": Case("points", ("loss.name=hinge",)),
    "loss.lgan_psi_max": Case("points", ("loss.lgan_psi_max=true",), setup=LGAN),
    "train.steps": Case("points", ("train.steps=2",)),
    "train.n_dis": Case("points", ("train.n_dis=2",)),
    "train.batch_size_d": Case("points", ("train.batch_size_d=16",)),
    "train.batch_size_g": Case("points", ("train.batch_size_g=16",)),
    # G's BatchNorm (cnn32) normalises each micro-batch on its own: the weights change, not only by rounding
    "train.accumulate": Case("images", ("train.accumulate=2",)),
    "train.lr_d": Case("points", ("train.lr_d=5e-4",)),
    "train.lr_g": Case("points", ("train.lr_g=5e-4",)),
    # Adam's first step does not depend on the betas; the later two do
    "train.beta1": Case("points", ("train.beta1=0.0",)),
    "train.beta2": Case("points", ("train.beta2=0.99",)),
    "train.lr_decay": Case("points", ("train.lr_decay='linear'",)),
    "train.ema_decay": Case("points", ("train.ema_decay=0.5",)),
    "train.ema_start": Case("points", ("train.ema_start=2",)),
    "train.tf32": Case(
        "images",
        ("train.tf32=false",),
        check="cuda_weights",
        why="TF32 arithmetic exists on CUDA only; the CPU ignores the switch",
    ),
    "eval.every": Case("points", ("eval.every=1",), setup=("eval.every=3",), check="rows:step", why=NOT_WEIGHTS),
    "eval.num_samples": Case(
        "points", ("eval.num_samples=300",), setup=EVAL_POINTS, check="rows:n_fake,fingerprint", why=NOT_WEIGHTS
    ),
    "eval.metrics": Case(
        "images", ("eval.metrics=['fid', 'pr']",), setup=EVAL_IMAGES, check="rows:metric", why=NOT_WEIGHTS
    ),
    "eval.ref_split": Case(
        "images",
        ("eval.ref_split='test'",),
        setup=EVAL_IMAGES,
        check="rows:ref_split,ref_hash,value,fingerprint",
        why=NOT_WEIGHTS,
    ),
    "eval.ref_num": Case(
        "images",
        ("eval.ref_num=40",),
        setup=EVAL_IMAGES,
        check="rows:n_real,value,fingerprint",
        why=NOT_WEIGHTS,
    ),
    "eval.backend": Case(
        "images",
        ("eval.backend='pytorch-fid'",),
        setup=EVAL_IMAGES,
        check="backend",
        why="picks whose Inception network scores the samples; both need the real Inception weights (no download "
        "in the tests) and a TorchScript trunk file is used whatever the backend, so the check is that the backend "
        "reaches the extractor the in-training evaluator builds",
    ),
    "eval.select": Case(
        "points",
        ("eval.select='raw'",),
        setup=EVAL_POINTS,
        check="select",
        why="picks which generator's score chooses checkpoints/best.pt (test_train checks the choice itself)",
    ),
    "eval.bn_mode": Case(
        "images",
        ("eval.bn_mode='running'",),
        setup=(*EVAL_IMAGES, "train.sample_every=3"),
        check="bn_mode",
        why="G's BatchNorm while sampling for metrics and sheets: the rows' protocol, their values and the sheets",
    ),
}


# Non-semantic keys: the same weights bit for bit. (case, why), case None where the CPU cannot vary the key.
CUDA_ONLY = "CUDA only (ignored on the CPU): the same step computed another way; see tests/test_train_fast.py"
SAME = "same_weights"
NON_SEMANTIC_CASES: dict[str, tuple[Case | None, str]] = {
    "data.root": (Case("points", ("data.root='elsewhere'",), check=SAME), "synthetic sets read no files"),
    "data.download": (Case("points", ("data.download=true",), check=SAME), "synthetic sets download nothing"),
    "train.device": (None, "the CPU path is the one tested here; another device rounds differently"),
    "train.log_every": (Case("points", ("train.log_every=2",), check=SAME), "log lines read the state only"),
    "train.sample_every": (
        Case("images", ("train.sample_every=1",), check=SAME),
        "sheets are drawn with G's BatchNorm in batch mode, and its buffers put back",
    ),
    "train.checkpoint_every": (
        Case("points", ("train.checkpoint_every=1",), check=SAME),
        "a checkpoint reads the RNG state, never draws from it",
    ),
    "train.keep_checkpoints": (Case("points", ("train.keep_checkpoints=false",), check=SAME), "which files stay"),
    "train.tensorboard": (
        Case("points", ("train.tensorboard=true",), check=SAME) if importlib.util.find_spec("tensorboard") else None,
        "events copy the rows already computed (skipped without the tensorboard package)",
    ),
    "train.cuda_graph": (None, CUDA_ONLY),
    "train.fused_adam": (None, CUDA_ONLY),
    "train.data_on_device": (None, CUDA_ONLY),
    "train.cudnn_benchmark": (None, CUDA_ONLY),
    "eval.inception_weights": (
        Case("images", (), setup=EVAL_IMAGES, check="weights_file"),
        "a path: the rows' fingerprint holds the weights' hash, so the same file elsewhere scores the same",
    ),
    "eval.batch_size": (
        Case("images", ("eval.batch_size=5",), setup=EVAL_IMAGES, check="eval_batch"),
        "batches of the reference features (and of running-mode sampling): not the protocol",
    ),
}


def recipe_keys() -> set[str]:
    """Every leaf key of a recipe, dotted, from its dataclasses."""
    keys: set[str] = set()
    hints = typing.get_type_hints(Recipe)
    for top in dataclasses.fields(Recipe):
        section = hints[top.name]
        if dataclasses.is_dataclass(section):
            keys |= {f"{top.name}.{leaf.name}" for leaf in dataclasses.fields(section)}
        else:
            keys.add(top.name)
    return keys


NON_SEMANTIC = {f"{section}.{key}" for section, key in NON_SEMANTIC_KEYS}


def value_of(recipe: Recipe, key: str) -> Any:
    node: Any = recipe
    for part in key.split("."):
        node = getattr(node, part)
    return node


# training, with a cache: the base runs are shared by many cases


@dataclass
class Trained:
    recipe: Recipe
    run: RunDir
    info: dict[str, Any]
    weights: dict[str, torch.Tensor]
    metrics: pd.DataFrame
    real_shape: tuple[int, ...]


class Runs:
    def __init__(self, root: Path, trunk: Path) -> None:
        self.root, self.trunk = root, trunk
        self.cache: dict[tuple[str, ...], Trained] = {}

    def recipe(self, base: str, overrides: tuple[str, ...]) -> Recipe:
        return recipes.loads(BASES[base], [f"eval.inception_weights='{self.trunk}'", *overrides])

    def train(self, base: str, overrides: tuple[str, ...], *, fresh: bool = False) -> Trained:
        key = (base, *overrides)
        if key in self.cache and not fresh:
            return self.cache[key]
        recipe = self.recipe(base, overrides)
        run = RunDir(self.root / f"run-{len(list(self.root.iterdir()))}")
        trainer = Trainer(recipe, run, evaluator_factory=TrainingEvaluator)
        info = trainer.run()
        state = checkpoint.load(run.checkpoint_path("last"))
        weights = {f"{net}.{name}": value for net in ("G", "D", "G_ema") for name, value in (state[net] or {}).items()}
        trained = Trained(recipe, run, info, weights, run.read_metrics(), tuple(trainer.images.shape[1:]))
        if not fresh:
            self.cache[key] = trained
        return trained

    def pair(self, case: Case) -> tuple[Trained, Trained]:
        return self.train(case.base, case.setup), self.train(case.base, (*case.setup, *case.alt))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    root = tmp_path_factory.mktemp("key-runs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(inception, "POOL_DIM", FEATURES)
        trunk = save_tiny_trunk(root / "trunk.pt", out=FEATURES)
        (root / "runs").mkdir()
        yield Runs(root / "runs", trunk)


def same_weights(a: Trained, b: Trained) -> bool:
    return a.weights.keys() == b.weights.keys() and all(torch.equal(a.weights[k], b.weights[k]) for k in a.weights)


def column(trained: Trained, name: str) -> list[Any]:
    return list(trained.metrics.sort_values(["step", "generator", "metric"])[name])


# the checks


def check_weights(runs: Runs, case: Case) -> None:
    base, alt = runs.pair(case)
    assert not same_weights(base, alt), "the final G, D and EMA-G are bit for bit those of the base recipe"


def check_rows(columns: list[str]) -> Callable[[Runs, Case], None]:
    def check(runs: Runs, case: Case) -> None:
        base, alt = runs.pair(case)
        assert not base.metrics.empty and not alt.metrics.empty
        assert same_weights(base, alt), "evaluation changed the training"
        for name in columns:
            assert column(base, name) != column(alt, name), name

    return check


def check_run_name(runs: Runs, case: Case) -> None:
    base, alt = runs.pair(case)
    assert same_weights(base, alt)
    assert alt.run.read_run()["name"] == "other" != base.run.read_run()["name"]


def check_image_side(runs: Runs, case: Case) -> None:
    base, alt = runs.pair(case)
    assert base.real_shape == (3, 32, 32) and alt.real_shape == (3, 48, 48)
    with pytest.raises(RecipeError, match=r"model.arch: cnn32 takes 3x32x32 .* gives 3x48x48"):
        runs.recipe(case.base, (*case.setup, case.alt[0]))


def check_cuda_weights(runs: Runs, case: Case) -> None:
    if not torch.cuda.is_available():
        pytest.skip("TF32 needs CUDA")
    on_cuda = ("train.device='cuda'",)
    base = runs.train(case.base, (*case.setup, *on_cuda), fresh=True)
    alt = runs.train(case.base, (*case.setup, *on_cuda, *case.alt), fresh=True)
    assert not same_weights(base, alt)


def check_backend(runs: Runs, case: Case) -> None:
    built: list[str] = []
    original = evaluation.build_extractor

    def spy(backend: str, *args: Any, **kwargs: Any) -> Any:
        built.append(backend)
        return original(backend, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(evaluation, "build_extractor", spy)
        runs.train(case.base, case.setup, fresh=True)
        runs.train(case.base, (*case.setup, *case.alt), fresh=True)
    assert built == ["torch-fidelity", "pytorch-fid"]


def check_select(runs: Runs, case: Case) -> None:
    base, alt = runs.pair(case)
    assert same_weights(base, alt)
    assert base.info["best"]["generator"] == "ema" and alt.info["best"]["generator"] == "raw"
    # each picked the best step of its own generator's rows (modes first, then % high quality)
    for trained, kind in ((base, "ema"), (alt, "raw")):
        rows = trained.metrics[trained.metrics["generator"] == kind].pivot(index="step", columns="metric")["value"]
        best = (rows["modes_covered"] * 1000 + rows["hq_percent"]).idxmax()
        assert trained.info["best"]["step"] == best


def check_bn_mode(runs: Runs, case: Case) -> None:
    check_rows(["bn_mode", "fingerprint", "value"])(runs, case)
    base, alt = runs.pair(case)
    assert set(base.metrics["bn_mode"]) == {"batch:8"} and set(alt.metrics["bn_mode"]) == {"running"}
    for kind in ("ema", "raw"):
        sheet = base.run.sample_path(3, kind)
        assert sheet.read_bytes() != alt.run.sample_path(3, kind).read_bytes(), sheet.name


def check_classes(runs: Runs, case: Case) -> None:
    base, alt = runs.pair(case)
    assert not any("embedding" in key for key in base.weights)
    start = Trainer(alt.recipe, RunDir(runs.root.parent / "classes-start"))
    start._build()
    initial = {
        **{f"G.{k}": v for k, v in start.G.state_dict().items()},
        **{f"D.{k}": v for k, v in start.D.state_dict().items()},
    }
    for key in ("G.blocks.0.bn1.gain.weight", "G.blocks.2.bn2.bias.weight", "D.embedding.weight"):
        assert not torch.equal(alt.weights[key], initial[key]), f"{key} never trained: the labels did not reach it"
    with pytest.raises(RecipeError, match="^model.num_classes: shapes split train has 3 classes, not 4"):
        runs.recipe(case.base, (*case.setup, "model.num_classes=4", "model.arch=biggan32"))


def check_same_weights(runs: Runs, case: Case) -> None:
    base, alt = runs.pair(case)
    assert same_weights(base, alt)


def check_weights_file(runs: Runs, case: Case) -> None:
    base = runs.train(case.base, case.setup)
    elsewhere = runs.root.parent / "elsewhere" / "trunk-copy.pt"
    elsewhere.parent.mkdir(exist_ok=True)
    shutil.copyfile(runs.trunk, elsewhere)
    alt = runs.train(case.base, (*case.setup, f"eval.inception_weights='{elsewhere}'"))
    assert same_weights(base, alt)
    assert column(base, "fingerprint") == column(alt, "fingerprint")
    assert column(base, "value") == column(alt, "value")


def check_eval_batch(runs: Runs, case: Case) -> None:
    base, alt = runs.pair(case)
    assert same_weights(base, alt)
    assert column(base, "fingerprint") == column(alt, "fingerprint")
    assert column(alt, "value") == pytest.approx(column(base, "value"), rel=1e-4)


CHECKS: dict[str, Callable[[Runs, Case], None]] = {
    "weights": check_weights,
    "run_name": check_run_name,
    "image_side": check_image_side,
    "cuda_weights": check_cuda_weights,
    "backend": check_backend,
    "select": check_select,
    "bn_mode": check_bn_mode,
    "classes": check_classes,
    "same_weights": check_same_weights,
    "weights_file": check_weights_file,
    "eval_batch": check_eval_batch,
}


def run_check(runs: Runs, case: Case) -> None:
    if case.check.startswith("rows:"):
        check_rows(case.check.removeprefix("rows:").split(","))(runs, case)
    else:
        CHECKS[case.check](runs, case)


# the tests


def test_every_key_has_a_case() -> None:
    keys = recipe_keys()
    assert keys >= NON_SEMANTIC, f"NON_SEMANTIC_KEYS names keys the recipe lacks: {sorted(NON_SEMANTIC - keys)}"
    missing = sorted(keys - NON_SEMANTIC - set(CASES))
    assert not missing, f"recipe keys without a case in CASES (say what each changes and test it): {missing}"
    assert not set(CASES) - keys, f"cases of keys the recipe lacks: {sorted(set(CASES) - keys)}"
    assert not set(CASES) & NON_SEMANTIC, "a non-semantic key is tested as changing training"
    assert set(NON_SEMANTIC_CASES) == NON_SEMANTIC, "every key of NON_SEMANTIC_KEYS needs a NON_SEMANTIC_CASES entry"
    for key, case in CASES.items():
        assert (case.check == "weights") != bool(case.why), f"{key}: a check other than weights says why, only it"
        assert case.check.startswith("rows:") or case.check in CHECKS, f"{key}: unknown check {case.check}"


@pytest.mark.parametrize("key", sorted(CASES))
def test_key_reaches_the_computation(key: str, runs: Runs) -> None:
    case = CASES[key]
    base, alt = runs.recipe(case.base, case.setup), runs.recipe(case.base, (*case.setup, *case.alt))
    assert value_of(alt, key) != value_of(base, key), f"{case.alt[0]} does not change {key}"
    if key.startswith("eval."):  # a resumed run takes over a changed [eval] table; its rows carry the protocol
        assert alt.hash() != base.hash() and training_hash(alt) == training_hash(base)
    elif key != "name":  # what training computes: a run directory of the base recipe must refuse to resume
        assert alt.hash() != base.hash() and training_hash(alt) != training_hash(base)
    run_check(runs, case)


@pytest.mark.parametrize("key", sorted(NON_SEMANTIC_CASES))
def test_non_semantic_key_leaves_training_alone(key: str, runs: Runs) -> None:
    case, why = NON_SEMANTIC_CASES[key]
    if case is None:
        pytest.skip(why)
    base, alt = runs.recipe(case.base, case.setup), runs.recipe(case.base, (*case.setup, *case.alt))
    if case.alt:
        assert value_of(alt, key) != value_of(base, key), f"{case.alt[0]} does not change {key}"
    assert alt.hash() == base.hash() and training_hash(alt) == training_hash(base), "a resume would refuse it"
    run_check(runs, case)
