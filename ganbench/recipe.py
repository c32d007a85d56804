"""TOML recipes: typed sections with defaults, `--set key=value` overrides, validation and a stable hash.

A recipe is a tree of dataclasses. Every field has a default, so a recipe file names only what differs from
the defaults. Keys are dotted paths into the TOML tables (`train.steps`, `method.name`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from ganbench.errors import RecipeError


def _range(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, **kw: Any) -> Any:
    """A dataclass field with an allowed numeric range, checked by `validate`."""
    return field(metadata={"lo": lo, "hi": hi, "lo_open": lo_open}, **kw)


def _choice(*choices: str, **kw: Any) -> Any:
    return field(metadata={"choices": choices}, **kw)


@dataclass
class DataConfig:
    name: str = "ring8"  # a dataset name: cifar10, cifar100, stl10, cifar10-jpeg, folder, ring8, grid25, shapes
    root: str = "data"  # where the dataset's files are (or are downloaded to)
    download: bool = False  # let torchvision download CIFAR/STL into `root` (needs network)
    split: str = "train"  # train, test, unlabeled (STL-10), all
    size: int = _range(0, 1024, default=0)  # image side in pixels after resize; 0 keeps the dataset's own size
    num_samples: int = _range(0, default=0)  # synthetic sets: how many to draw; 0 = the set's default
    seed: int = 0  # synthetic sets: which draw
    hflip: bool = True  # flip real images horizontally at random, per sample and epoch, as the official code


@dataclass
class ModelConfig:
    arch: str = "mlp"  # a net registry name: cnn32, cnn48, resnet32, resnet48, mlp
    z_dim: int = _range(1, 4096, default=128)
    g_channels: int = _range(0, 4096, default=0)  # 0 = the architecture's paper width
    d_channels: int = _range(0, 4096, default=0)
    d_pool: str = _choice("mean", "sum", default="mean")  # ResNet D global pooling: mean as the GN-GAN code


@dataclass
class MethodConfig:
    name: str = "none"  # none, sn, gn, pgn, gran, wgan-gp, lgan
    gran_k: float = _range(0.0, lo_open=True, default=1.0)  # GraN Lipschitz constant K
    gran_eps: float = _range(0.0, default=1e-4)  # GraN epsilon (recipe field, never hard-coded)
    gran_variant: str = _choice("ratio", "additive", default="ratio")  # K f|g|/(|g|^2+eps) or K f/(|g|+eps)
    gp_lambda: float = _range(0.0, default=10.0)  # WGAN-GP weight
    lgan_lambda: float = _range(0.0, default=0.1)  # LGAN max-GP weight
    sn_eps: float = _range(0.0, lo_open=True, default=1e-12)
    cr_lambda: float = _range(0.0, default=0.0)  # consistency regularization weight on reals; 0 turns CR off
    bcr: bool = False  # balanced CR: the same term on fakes too
    cr_translate: float = _range(0.0, 0.5, default=0.2)  # CR translation, fraction of the image side
    cr_flip: bool = True  # CR random horizontal flip


@dataclass
class LossConfig:
    name: str = "bce"  # bce, hinge, wasserstein, lgan-x, lgan-exp, lgan-log_sigmoid, lgan-sqrt, lgan-lsgan, lgan-hinge
    # LGAN only: G minimises psi(f(fake)) when true; false (the LGAN code's default) G minimises -f(fake), except
    # for lgan-lsgan, whose G loss is (f - 1)^2 either way
    lgan_psi_max: bool = False


@dataclass
class TrainConfig:
    steps: int = _range(1, default=2000)  # generator steps
    n_dis: int = _range(1, 100, default=1)  # discriminator steps per generator step
    batch_size_d: int = _range(1, default=64)
    batch_size_g: int = _range(1, default=128)
    lr_d: float = _range(0.0, lo_open=True, default=2e-4)
    lr_g: float = _range(0.0, lo_open=True, default=2e-4)
    beta1: float = _range(0.0, 1.0, default=0.0)
    beta2: float = _range(0.0, 1.0, default=0.9)
    lr_decay: str = _choice("none", "linear", default="none")  # linear: to 0 at the last step
    ema_decay: float = _range(0.0, 1.0, default=0.9999)  # 0 turns the EMA of G off
    ema_start: int = _range(0, default=0)  # G step from which the EMA averages (before it, it copies G)
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    tf32: bool = True  # allow TF32 matmuls and convolutions on Ampere+ GPUs
    # Execution switches (CUDA only; ignored on the CPU). Each computes the same step; off gives the plain eager path.
    cuda_graph: bool = True  # capture the whole step (n_dis D steps, G step, EMA) as one CUDA graph, replayed
    fused_adam: bool = True  # torch's fused Adam kernel instead of its multi-tensor loop
    data_on_device: bool = True  # the whole dataset on the GPU, batches gathered there; off: gathered on the host
    cudnn_benchmark: bool = True  # let cuDNN time its convolution algorithms for the step's fixed shapes
    log_every: int = _range(1, default=100)
    sample_every: int = _range(0, default=1000)  # 0 = no sample grids
    checkpoint_every: int = _range(1, default=1000)
    keep_checkpoints: bool = True  # keep checkpoints/step-N.pt besides last.pt


@dataclass
class EvalConfig:
    every: int = _range(0, default=0)  # in-training evaluation every N G steps; 0 = none (score with ganbench eval)
    num_samples: int = _range(1, default=50000)
    metrics: list[str] = field(default_factory=lambda: ["fid", "is"])
    ref_split: str = ""  # reference statistics split; "" = the dataset's paper choice
    inception_weights: str = ""  # a local Inception weights file; "" = the libraries' own download path
    backend: str = _choice("torch-fidelity", "pytorch-fid", default="torch-fidelity")
    batch_size: int = _range(1, default=250)
    select: str = _choice("ema", "raw", default="ema")  # which generator's FID picks checkpoints/best.pt
    # BatchNorm of G while sampling for metrics: "batch" = train mode, statistics of batches of train.batch_size_g
    # (the official code; G's buffers are restored afterwards); "running" = eval mode, running statistics
    bn_mode: str = _choice("batch", "running", default="batch")


@dataclass
class Recipe:
    name: str = "run"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    def hash(self) -> str:
        """A stable hash of everything that changes what training computes (not where files are or which device)."""
        tree = self.to_dict()
        for section, key in NON_SEMANTIC_KEYS:
            tree[section].pop(key, None)
        canonical = json.dumps(tree, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# Keys that may differ between a run and its resumption without changing what it computes.
NON_SEMANTIC_KEYS = (
    ("data", "root"),
    ("data", "download"),
    ("train", "device"),
    ("train", "log_every"),
    ("train", "sample_every"),
    ("train", "checkpoint_every"),
    ("train", "keep_checkpoints"),
    ("train", "cuda_graph"),  # the execution switches: the same step, computed faster
    ("train", "fused_adam"),
    ("train", "data_on_device"),
    ("train", "cudnn_benchmark"),
    ("eval", "inception_weights"),
    ("eval", "batch_size"),
)


def _type_name(tp: Any) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check `value` against the annotated type `tp`; ints are accepted where floats are expected."""
    origin = typing.get_origin(tp)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, str):  # `--set eval.metrics=fid,kid` is a convenience for a list of strings
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise RecipeError(f'{key}: expected a list, got {value!r}; write it as ["a", "b"]')
        return [_coerce(f"{key}[{i}]", v, item_tp) for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"unsupported recipe field type {tp}")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is bool and not isinstance(value, bool):
        raise RecipeError(f"{key}: expected true or false, got {value!r}")
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise RecipeError(f"{key}: expected an integer, got {value!r}")
    if not isinstance(value, tp):
        raise RecipeError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    return value


def _check_range(key: str, value: Any, meta: typing.Mapping[str, Any]) -> None:
    choices = meta.get("choices")
    if choices and value not in choices:
        raise RecipeError(f"{key}: {value!r} is not allowed; choose one of {', '.join(choices)}")
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is not None and (value < lo or (meta.get("lo_open") and value == lo)):
        bound = f"greater than {lo}" if meta.get("lo_open") else f"at least {lo}"
        raise RecipeError(f"{key}: {value!r} is out of range; it must be {bound}")
    if hi is not None and value > hi:
        raise RecipeError(f"{key}: {value!r} is out of range; it must be at most {hi}")


def _build(cls: type, tree: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if key not in known:
            raise RecipeError(f"{dotted}: unknown recipe key; known keys here are {', '.join(sorted(known))}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise RecipeError(f"{dotted}: expected a table [{dotted}], got {value!r}")
            kwargs[key] = _build(tp, value, f"{dotted}.")
        else:
            kwargs[key] = _coerce(dotted, value, tp)
            _check_range(dotted, kwargs[key], known[key].metadata)
    return cls(**kwargs)


def from_dict(tree: dict[str, Any]) -> Recipe:
    recipe = _build(Recipe, tree, "")
    validate(recipe)
    return recipe


def parse_override(item: str) -> tuple[list[str], Any]:
    """`train.steps=2000` -> (["train", "steps"], 2000); the value is a TOML literal, else a bare string."""
    if "=" not in item:
        raise RecipeError(f"--set {item}: expected KEY=VALUE, e.g. --set train.steps=2000")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise RecipeError(f"--set {item}: the key must be a dotted path such as train.steps")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.split("."), value


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        path, value = parse_override(item)
        node = tree
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise RecipeError(f"--set {item}: {part} is a value, not a table")
            node = child
        node[path[-1]] = value
    return tree


def load(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: no such recipe file; give the path of a .toml recipe (see recipes/)")
    try:
        tree = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise RecipeError(f"{path}: not valid TOML ({err}); fix the syntax at that line") from None
    tree.setdefault("name", path.stem)
    return from_dict(apply_overrides(tree, overrides or []))


def loads(text: str, overrides: list[str] | None = None) -> Recipe:
    try:
        tree = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise RecipeError(f"recipe is not valid TOML ({err})") from None
    return from_dict(apply_overrides(tree, overrides or []))


def validate(recipe: Recipe) -> None:
    """Cross-field checks and registry names; raises RecipeError naming the key and the fix."""
    # Imported here: the registries import the recipe module for its config types.
    from ganbench import data, losses, methods, nets

    data.DATASETS.get(recipe.data.name)
    nets.NETS.get(recipe.model.arch)
    methods.METHODS.get(recipe.method.name)
    losses.LOSSES.get(recipe.loss.name)
    if recipe.method.name == "lgan" and not recipe.loss.name.startswith("lgan-"):
        raise RecipeError(
            f"loss.name: method lgan uses the LGAN loss family; set loss.name to one of "
            f"{', '.join(n for n in losses.LOSSES.names() if n.startswith('lgan-'))}"
        )
    if recipe.loss.lgan_psi_max and not recipe.loss.name.startswith("lgan-"):
        raise RecipeError(
            f"loss.lgan_psi_max: applies to the LGAN losses only, not {recipe.loss.name!r}; set it to false or "
            "pick an lgan-* loss.name"
        )
    if recipe.train.ema_start > recipe.train.steps:
        raise RecipeError(
            f"train.ema_start: {recipe.train.ema_start} is after the last step {recipe.train.steps}; "
            "lower it or raise train.steps"
        )
    nets.check_compatible(recipe.model, data.output_shape(recipe.data))
