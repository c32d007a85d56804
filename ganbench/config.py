"""The recipe's sections as dataclasses: every key, its type, default, allowed range and comment, and nothing else.

This module is a leaf: it imports no other ganbench module, so the data, net, method and loss registries can
import their config types from here while ganbench.recipe (parsing, overrides, validation) imports the registries.
Field metadata declares what `ganbench.recipe` checks when a recipe is built: a numeric range (`_range`), a choice
(`_choice`) or a named check (`_checked`, e.g. "device").
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

import tomli_w

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


def _checked(check: str, **kw: Any) -> Any:
    """A dataclass field whose value the check named `check` in ganbench.recipe refuses with a RecipeError (the
    checks raise ganbench errors, and one imports torch, so they live there rather than in this leaf)."""
    return field(metadata={"check": check}, **kw)


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
    arch: str = "mlp"  # a net registry name: cnn32, cnn48, resnet32, resnet48, biggan32, mlp
    z_dim: int = _range(1, 4096, default=128)
    g_channels: int = _range(0, 4096, default=0)  # 0 = the architecture's paper width
    d_channels: int = _range(0, 4096, default=0)
    d_pool: str = _choice("mean", "sum", default="mean")  # ResNet D global pooling: mean as the GN-GAN code
    # class-conditional nets (biggan32): the data's number of classes; 0 = unconditional (every other net)
    num_classes: int = _range(0, 100_000, default=0)


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
    # Gradient accumulation: each D and G step runs its batch as `accumulate` micro-batches (one backward each, one
    # optimizer step), with the random draws of the whole batch; must divide both batch sizes. The gradient is the
    # whole batch's, up to rounding, except what couples samples: G's BatchNorm uses each micro-batch's statistics
    # (and updates its running statistics once per micro-batch), as per-GPU BatchNorm does; LGAN's max-GP takes
    # the max over the whole batch (found by a first pass without a graph, one more D forward and backward).
    accumulate: int = _range(1, MAX_BATCH, default=1)
    lr_d: float = _range(0.0, lo_open=True, default=2e-4)
    lr_g: float = _range(0.0, lo_open=True, default=2e-4)
    beta1: float = _range(0.0, 1.0, hi_open=True, default=0.0)
    beta2: float = _range(0.0, 1.0, hi_open=True, default=0.9)
    lr_decay: str = _choice("none", "linear", default="none")  # linear: to 0 at the last step
    # 0 turns the EMA of G off; 1 would freeze it at its first copy, so the range is open there
    ema_decay: float = _range(0.0, 1.0, hi_open=True, default=0.9999)
    ema_start: int = _range(0, default=0)  # G step from which the EMA averages (before it, it copies G)
    device: str = _checked("device", default="auto")  # auto, cpu, cuda, cuda:N, mps
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
    # also write the history, in-training metrics and sample sheets as TensorBoard events under tensorboard/ (needs
    # the tensorboard extra)
    tensorboard: bool = False


@dataclass
class EvalConfig:
    every: int = _range(0, default=0)  # in-training evaluation every N G steps; 0 = none (score with ganbench eval)
    num_samples: int = _range(1, MAX_SAMPLES, default=50000)
    metrics: list[str] = field(default_factory=lambda: ["fid", "is"])  # checked by `validate`
    ref_split: str = ""  # reference statistics split; "" = the dataset's paper choice
    # reference statistics from this many images of the split; 0 = all of it. A subset is a fixed seeded random
    # choice, the same for every run, so that a split stored class by class is not cut to its first classes
    ref_num: int = _range(0, MAX_SAMPLES, default=0)
    inception_weights: str = ""  # a local Inception weights file; "" = the libraries' own download path
    backend: str = _choice("torch-fidelity", "pytorch-fid", default="torch-fidelity")
    batch_size: int = _range(1, MAX_BATCH, default=250)
    select: str = _choice("ema", "raw", default="ema")  # which generator's FID picks checkpoints/best.pt
    # BatchNorm of G while sampling for metrics: "batch" = train mode, statistics of batches of train.batch_size_g
    # (the official code; G's buffers are restored afterwards); "running" = eval mode, running statistics
    bn_mode: str = _choice("batch", "running", default="batch")


@dataclass
class Recipe:
    name: str = _checked("name", default="run")
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
        omit_later_defaults(tree)
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
    ("train", "tensorboard"),
    ("train", "cuda_graph"),  # the execution switches: the same step, computed faster
    ("train", "fused_adam"),
    ("train", "data_on_device"),
    ("train", "cudnn_benchmark"),
    ("eval", "inception_weights"),
    ("eval", "batch_size"),
)


# Keys added after runs of earlier versions existed, at the default that computes what those runs computed: left out
# of both hashes while at that default, so such a run directory still resumes under this version.
LATER_KEYS_AT_DEFAULT = (("model", "num_classes", 0), ("train", "accumulate", 1), ("eval", "ref_num", 0))


def omit_later_defaults(tree: dict[str, Any]) -> None:
    """Drop from a recipe tree (Recipe.to_dict()) the LATER_KEYS_AT_DEFAULT that hold their default."""
    for section, key, default in LATER_KEYS_AT_DEFAULT:
        if section in tree and tree[section].get(key, default) == default:
            tree[section].pop(key, None)
