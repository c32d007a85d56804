"""TOML recipes: typed sections with defaults, `--set key=value` overrides, validation and a stable hash.

A recipe is a tree of dataclasses. Every field has a default, so a recipe file names only what differs from
the defaults. Keys are dotted paths into the TOML tables (`train.steps`, `method.name`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import tomllib
import types
import typing
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from ganbench.errors import RecipeError

# Upper bounds on sizes, so that no allocation is ever attempted that cannot work on any machine.
MAX_BATCH = 65_536
MAX_SAMPLES = 10_000_000
MAX_STEPS = 100_000_000
MAX_SEED = 2**32 - 1  # numpy's global seed (set from `seed` by the trainer) takes 32 bits
MAX_INT = 2**63 - 1  # every integer key must fit torch's int64
MAX_NAME = 100
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")  # a file-name-safe word: no separator, no leading dot
DEVICE_FORMS = "auto, cpu, cuda, cuda:N or mps"


def _range(
    lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False, **kw: Any
) -> Any:
    """A dataclass field with an allowed numeric range, checked when the recipe is built."""
    return field(metadata={"lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open}, **kw)


def _choice(*choices: str, **kw: Any) -> Any:
    return field(metadata={"choices": choices}, **kw)


def _checked(check: Callable[[str, Any], None], **kw: Any) -> Any:
    """A dataclass field whose value `check(key, value)` refuses with a RecipeError."""
    return field(metadata={"check": check}, **kw)


def _show(value: Any, limit: int = 60) -> str:
    """A user's value for a one-line message: repr() escapes line breaks and control characters; long ones are cut."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _show_key(dotted: str) -> str:
    """A dotted key as written, or its repr() when a quoted TOML key holds spaces, line breaks or symbols."""
    return dotted if re.fullmatch(r"[A-Za-z0-9_.-]+", dotted) else _show(dotted)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _check_name(key: str, value: str) -> None:
    # The name becomes results/<name> and a job name in generated scripts: one plain file-name-safe word.
    if not NAME_PATTERN.fullmatch(value) or len(value) > MAX_NAME:
        raise RecipeError(
            f"{key}: {_show(value)} is not a plain name; use 1 to {MAX_NAME} letters, digits, '-', '_' or '.', not "
            'starting with ".", e.g. name = "cifar10_gn" (a recipe without a name takes its file name)'
        )


def _check_device(key: str, value: str) -> None:
    # Only the form is checked here; whether CUDA is present is the trainer's check, on the machine that trains.
    if value == "auto":
        return
    import torch  # on use, not at the top: importing this module (the report does) should not import torch

    try:
        device = torch.device(value)
    except (RuntimeError, ValueError):
        device = None
    if (
        device is None
        or device.type not in ("cpu", "cuda", "mps")
        or (device.index is not None and device.type != "cuda")
    ):
        raise RecipeError(f"{key}: {_show(value)} is not a device; use {DEVICE_FORMS}")


@dataclass
class DataConfig:
    name: str = "ring8"  # a dataset name: cifar10, cifar100, stl10, cifar10-jpeg, folder, ring8, grid25, shapes
    root: str = "data"  # where the dataset's files are (or are downloaded to)
    download: bool = False  # let torchvision download CIFAR/STL into `root` (needs network)
    split: str = "train"  # train, test, unlabeled (STL-10), all
    size: int = _range(0, 1024, default=0)  # image side in pixels after resize; 0 keeps the dataset's own size
    num_samples: int = _range(0, MAX_SAMPLES, default=0)  # synthetic sets: how many to draw; 0 = the set's default
    seed: int = _range(0, MAX_SEED, default=0)  # synthetic sets: which draw
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
    steps: int = _range(1, MAX_STEPS, default=2000)  # generator steps
    n_dis: int = _range(1, 100, default=1)  # discriminator steps per generator step
    batch_size_d: int = _range(1, MAX_BATCH, default=64)
    batch_size_g: int = _range(1, MAX_BATCH, default=128)
    lr_d: float = _range(0.0, lo_open=True, default=2e-4)
    lr_g: float = _range(0.0, lo_open=True, default=2e-4)
    beta1: float = _range(0.0, 1.0, hi_open=True, default=0.0)
    beta2: float = _range(0.0, 1.0, hi_open=True, default=0.9)
    lr_decay: str = _choice("none", "linear", default="none")  # linear: to 0 at the last step
    # 0 turns the EMA of G off; 1 would freeze it at its first copy, so the range is open there
    ema_decay: float = _range(0.0, 1.0, hi_open=True, default=0.9999)
    ema_start: int = _range(0, default=0)  # G step from which the EMA averages (before it, it copies G)
    device: str = _checked(_check_device, default="auto")  # auto, cpu, cuda, cuda:N, mps
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
    num_samples: int = _range(1, MAX_SAMPLES, default=50000)
    metrics: list[str] = field(default_factory=lambda: ["fid", "is"])  # checked by `validate`
    ref_split: str = ""  # reference statistics split; "" = the dataset's paper choice
    inception_weights: str = ""  # a local Inception weights file; "" = the libraries' own download path
    backend: str = _choice("torch-fidelity", "pytorch-fid", default="torch-fidelity")
    batch_size: int = _range(1, MAX_BATCH, default=250)
    select: str = _choice("ema", "raw", default="ema")  # which generator's FID picks checkpoints/best.pt
    # BatchNorm of G while sampling for metrics: "batch" = train mode, statistics of batches of train.batch_size_g
    # (the official code; G's buffers are restored afterwards); "running" = eval mode, running statistics
    bn_mode: str = _choice("batch", "running", default="batch")


@dataclass
class Recipe:
    name: str = _checked(_check_name, default="run")
    seed: int = _range(0, MAX_SEED, default=0)
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


_TYPE_FIX = {  # type -> (what it is, how to write one)
    int: ("an integer", "write a whole number, e.g. 3"),
    float: ("a number", "write a number, e.g. 0.5"),
    str: ("a string", 'write it in quotes, e.g. "text"'),
    bool: ("true or false", "write true or false"),
}


def _is_control(char: str) -> bool:
    # Control characters (line breaks included) and lone surrogates (undecodable command-line bytes) are never
    # meant in a recipe string: refuse them rather than carry them into paths, logs or generated scripts.
    return unicodedata.category(char) in ("Cc", "Cs")


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check `value` against the annotated type `tp`; ints are accepted where floats are expected."""
    origin = typing.get_origin(tp)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, str):  # `--set eval.metrics=fid,kid` is a convenience for a list of strings
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise RecipeError(f'{key}: expected a list, got {_show(value)}; write it as ["a", "b"]')
        return [_coerce(f"{key}[{i}]", v, item_tp) for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"unsupported recipe field type {tp}")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            value = float(value)
        except OverflowError:
            raise RecipeError(f"{key}: {_show(value)} is too large for a number; give a finite value") from None
    wrong = isinstance(value, bool) != (tp is bool) or not isinstance(value, tp)
    if wrong:
        kind, fix = _TYPE_FIX[tp]
        raise RecipeError(f"{key}: expected {kind}, got {_show(value)}; {fix}")
    if tp is float and not math.isfinite(value):
        raise RecipeError(f"{key}: {_show(value)} is not a finite number; give a finite value, e.g. 0.5")
    if tp is str and any(_is_control(c) for c in value):
        raise RecipeError(f"{key}: {_show(value)} holds a line break or control character; remove it")
    return value


def _check_range(key: str, value: Any, meta: typing.Mapping[str, Any]) -> None:
    choices = meta.get("choices")
    if choices and value not in choices:
        raise RecipeError(f"{key}: {_show(value)} is not allowed; choose one of {', '.join(choices)}")
    lo, hi = meta.get("lo"), meta.get("hi")
    if hi is None and isinstance(value, int) and not isinstance(value, bool):
        hi = MAX_INT
    if lo is not None and (value < lo or (meta.get("lo_open") and value == lo)):
        bound = f"greater than {lo}" if meta.get("lo_open") else f"at least {lo}"
        raise RecipeError(f"{key}: {_show(value)} is out of range; it must be {bound}")
    if hi is not None and (value > hi or (meta.get("hi_open") and value == hi)):
        bound = f"less than {hi}" if meta.get("hi_open") else f"at most {hi}"
        raise RecipeError(f"{key}: {_show(value)} is out of range; it must be {bound}")
    check = meta.get("check")
    if check is not None:
        check(key, value)


def _unknown_key(dotted: str, known: typing.Iterable[str], section: str) -> RecipeError:
    where = f" of {section}" if section else ""
    return RecipeError(
        f"{_show_key(dotted)}: unknown recipe key; check the spelling: the keys{where} are {', '.join(sorted(known))}"
    )


def _build(cls: type, tree: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if key not in known:
            raise _unknown_key(dotted, known, prefix.rstrip("."))
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                some = dataclasses.fields(tp)[0].name
                raise RecipeError(
                    f"{dotted}: is a table of keys, got {_show(value)}; set its keys instead, e.g. {dotted}.{some}"
                )
            kwargs[key] = _build(tp, value, f"{dotted}.")
        else:
            kwargs[key] = _coerce(dotted, value, tp)
            _check_range(dotted, kwargs[key], known[key].metadata)
    return cls(**kwargs)


def from_dict(tree: dict[str, Any]) -> Recipe:
    recipe = _build(Recipe, tree, "")
    validate(recipe)
    return recipe


def _key_type(path: list[str]) -> Any:
    """The annotated type of the value at dotted `path`; unknown keys and whole sections are refused."""
    cls: Any = Recipe
    for i, part in enumerate(path):
        dotted, section = ".".join(path[: i + 1]), ".".join(path[:i])
        known = {f.name for f in dataclasses.fields(cls)}
        if part not in known:
            raise _unknown_key(dotted, known, section)
        tp = typing.get_type_hints(cls)[part]
        last = i == len(path) - 1
        if dataclasses.is_dataclass(tp):
            if last:
                some = dataclasses.fields(tp)[0].name
                raise RecipeError(f"{dotted}: is a table of keys; set one of them, e.g. --set {dotted}.{some}=...")
            cls = tp
        elif not last:
            raise RecipeError(f"{_show_key(dotted)}: is a value, not a table of keys; set it alone: --set {dotted}=...")
    return tp


# A value that starts like a TOML array, table or string is meant as one; so is one that starts like a number when
# the key does not hold a string. If such a value does not parse, say so rather than read it as a bare word.
_TOML_OPENERS = ("[", "{", '"', "'")
_NUMBER_START = re.compile(r"[+-]?(\d|\.\d|inf\b|nan\b)")


def parse_override(item: str) -> tuple[list[str], Any]:
    """`train.steps=2000` -> (["train", "steps"], 2000); the value is a TOML literal, else a bare string."""
    if "=" not in item:
        raise RecipeError(f"--set {_show(item)}: expected KEY=VALUE; write it as e.g. --set train.steps=2000")
    key, raw = item.split("=", 1)
    key = key.strip()
    path = key.split(".")
    if not key or any(not part for part in path):
        raise RecipeError(f"--set {_show(item)}: the key has an empty part; write a dotted path such as train.steps")
    tp = _key_type(path)
    if any(_is_control(c) for c in raw if c != "\t"):
        raise RecipeError(f"{key}: the --set value {_show(raw)} holds a line break or control character; remove it")
    try:
        document = tomllib.loads(f"v = {raw}")
    except tomllib.TOMLDecodeError as err:
        text = raw.strip()
        if text.startswith(_TOML_OPENERS) or (tp is not str and _NUMBER_START.match(text)):
            raise RecipeError(
                f"{key}: the --set value {_show(text)} is not valid TOML ({_one_line(str(err))}); close the bracket "
                "or quote, or fix the number"
            ) from None
        return path, text
    return path, document["v"]


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        path, value = parse_override(item)
        node = tree
        for i, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                dotted = ".".join(path[: i + 1])
                raise RecipeError(
                    f"{dotted}: is a value in the recipe, not a table of keys; fix {dotted} in the recipe"
                )
            node = child
        node[path[-1]] = value
    return tree


def _show_path(path: Path) -> str:
    text = str(path)
    return text if text.isprintable() else _show(text, 200)


def load(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    path = Path(path)
    where = _show_path(path)
    if path.is_dir():
        raise RecipeError(f"{where}: is a directory; give the path of a .toml recipe file (see recipes/)")
    if not path.is_file():
        raise RecipeError(f"{where}: no such recipe file; give the path of a .toml recipe (see recipes/)")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise RecipeError(f"{where}: cannot be read ({err.strerror}); check its permissions") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RecipeError(
            f"{where}: not UTF-8 text (byte {err.start} is not valid UTF-8); save the recipe as UTF-8"
        ) from None
    try:
        tree = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise RecipeError(f"{where}: not valid TOML ({_one_line(str(err))}); fix the syntax at that line") from None
    tree.setdefault("name", path.stem)
    return from_dict(apply_overrides(tree, overrides or []))


def loads(text: str, overrides: list[str] | None = None) -> Recipe:
    try:
        tree = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise RecipeError(f"recipe: not valid TOML ({_one_line(str(err))}); fix the syntax at that line") from None
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
    shape = data.output_shape(recipe.data)
    nets.check_compatible(recipe.model, shape)
    _check_metrics(recipe.eval.metrics, recipe.data.name, points=len(shape) == 1)


# 2-D point sets are scored by their own family (modes covered and high-quality samples), named "modes" by the
# evaluator; image sets by the Inception metrics.
POINT_METRICS = ("modes",)


def _check_metrics(metrics: list[str], dataset: str, *, points: bool) -> None:
    from ganbench.metrics.inception import METRICS  # on use: it imports torch and pandas

    allowed = (*METRICS, *POINT_METRICS)
    choose = f"choose from {', '.join(METRICS)}" + (f" or {', '.join(POINT_METRICS)}" if points else "")
    if not metrics:
        raise RecipeError(f"eval.metrics: the list is empty; {choose}")
    for i, metric in enumerate(metrics):
        if metric not in allowed:
            raise RecipeError(f"eval.metrics[{i}]: {_show(metric)} is not a metric; {choose}")
        if metric in POINT_METRICS and not points:
            raise RecipeError(f"eval.metrics[{i}]: {metric!r} scores 2-D point sets, not {dataset}; {choose}")
