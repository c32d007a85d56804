"""An independent re-derivation of a ganbench training run, written from the training-step contract alone.

Plain PyTorch: the data order and flips, the methods' logits (GN, PGN, GraN), spectral normalisation, the losses,
the gradient penalties, CR's augmentation, Adam, the learning-rate schedule and the EMA are all written out here from
their formulas. ganbench's methods, losses, train and metrics modules are never imported: the nets are used only as
black-box functions (their forward passes, through torch.func.functional_call for D) and the recipe only as a record
of settings. The reference tests run this beside the trainer from the same initial state and compare the weights.

Class-conditional nets (model.num_classes > 0), as the GN-GAN code's conditional path (train.py): each real keeps
its own label; each D step draws z, then the fakes' labels uniform over the classes; D scores every sample under
its label and the gradient is taken with respect to the images only (the labels are integers); CR scores the
augmented reals under the reals' labels (bCR the fakes under theirs); the penalties score the interpolates under
the reals' labels; the G step draws z, then its labels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ganbench import nets
from ganbench.recipe import LossConfig, MethodConfig, Recipe

Tensor = torch.Tensor

ADAM_EPS = 1e-8
SN_WEIGHT = ".parametrizations.weight.original"  # the trainer's state-dict key of a spectrally normalised weight
SN_U, SN_V = ".parametrizations.weight.0._u", ".parametrizations.weight.0._v"
NORMALISED = ("gn", "pgn", "gran")  # methods whose logits are built from f and ∇ₓf


@dataclass
class Start:
    """Where a run starts: the trainer's freshly built G, D and EMA-G and the global RNG right after building."""

    g: dict[str, Tensor]
    d: dict[str, Tensor]
    g_ema: dict[str, Tensor] | None
    rng: Tensor


# the data stream


class EpochOrder:
    """Epoch e: one host generator seeded seed·1 000 003 + e draws the order, then one flip flag per position."""

    def __init__(self, size: int, batch_size: int, seed: int) -> None:
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.epoch, self.position = 0, 0
        self.order, self.flips = self._draw()

    def _draw(self) -> tuple[Tensor, Tensor]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator)
        flips = torch.rand(self.size, generator=generator) < 0.5
        return order, flips

    def next(self) -> tuple[Tensor, Tensor]:
        if self.position + self.batch_size > self.size:  # the short tail is dropped
            self.epoch, self.position = self.epoch + 1, 0
            self.order, self.flips = self._draw()
        end = self.position + self.batch_size
        batch = self.order[self.position : end], self.flips[self.position : end]
        self.position = end
        return batch


def real_batch(data: Tensor, indices: Tensor, flags: Tensor, hflip: bool) -> Tensor:
    """The samples at `indices`, images mirrored along the width where flagged (when hflip), in the model's range."""
    batch = data[indices].clone()
    if data.dtype != torch.uint8:  # 2-D points: no flips, no rescaling
        return batch.to(torch.get_default_dtype())
    if hflip:
        for i in range(len(batch)):
            if flags[i]:
                batch[i] = batch[i].flip(-1)
    return batch.to(torch.get_default_dtype()) / 127.5 - 1


# D as a function of its weights, with spectral normalisation written out


def normalize(x: Tensor, eps: float) -> Tensor:
    return x / torch.sqrt((x * x).sum()).clamp_min(eps)


class FunctionalD:
    """D's forward pass on weights held here: trainable leaves keyed as the trainer's D state dict, plus SN's u, v.

    Spectrally normalised weights W (reshaped to (out, −1)) get one power iteration per call, as SN-GAN:
    v = normalize(Wᵀu), u = normalize(Wv), σ = uᵀWv with u, v constants for the gradient; the call uses W / σ.
    """

    def __init__(self, module: nn.Module, state: dict[str, Tensor], sn_eps: float) -> None:
        self.module, self.sn_eps = module, sn_eps
        own = dict(module.named_parameters())
        self.params: dict[str, Tensor] = {}  # trainer key -> leaf tensor
        self.names: dict[str, str] = {}  # trainer key -> the plain module's parameter name
        self.sn: dict[str, tuple[Tensor, Tensor]] = {}  # trainer key of W -> (u, v)
        self.buffers: dict[str, Tensor] = {}
        for key, value in state.items():
            if key.endswith(SN_WEIGHT):
                prefix = key[: -len(SN_WEIGHT)]
                self.names[key] = f"{prefix}.weight"
                self.params[key] = value.detach().clone().requires_grad_(True)
                self.sn[key] = (state[prefix + SN_U].clone(), state[prefix + SN_V].clone())
            elif key.endswith((SN_U, SN_V)):
                continue
            elif key in own:
                self.names[key] = key
                self.params[key] = value.detach().clone().requires_grad_(True)
            else:
                self.buffers[key] = value.clone()

    def _spectral(self, key: str, w: Tensor) -> Tensor:
        matrix = w.reshape(w.shape[0], -1)
        with torch.no_grad():
            u, _ = self.sn[key]
            v = normalize(matrix.t() @ u, self.sn_eps)
            u = normalize(matrix @ v, self.sn_eps)
            self.sn[key] = (u, v)
        sigma = torch.dot(u, matrix @ v)
        return w / sigma

    def __call__(self, x: Tensor, frozen: bool = False, y: Tensor | None = None) -> Tensor:
        """Raw outputs D(x) (D(x, y) with labels y), shape (N,); `frozen` cuts the weights out of the graph (the G
        step)."""
        weights: dict[str, Tensor] = dict(self.buffers)
        for key, param in self.params.items():
            w = param.detach() if frozen else param
            weights[self.names[key]] = self._spectral(key, w) if key in self.sn else w
        return functional_call(self.module, weights, (x,) if y is None else (x, y)).flatten()

    def state(self) -> dict[str, Tensor]:
        """Weights and u, v in the trainer's state-dict layout."""
        out = {key: value.detach().clone() for key, value in self.params.items()}
        out.update(self.buffers)
        for key, (u, v) in self.sn.items():
            prefix = key[: -len(SN_WEIGHT)]
            out[prefix + SN_U], out[prefix + SN_V] = u.clone(), v.clone()
        return out


# the methods' logits


def output_and_gradient(d: FunctionalD, x: Tensor, frozen: bool, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """f = D(x) (D(x, y)) and ∇ₓf flattened per sample, with the graph kept so the loss differentiates through both."""
    if not x.requires_grad:
        x = x.detach().requires_grad_(True)
    f = d(x, frozen, y)
    (g,) = torch.autograd.grad(f.sum(), x, create_graph=True)
    return f, g.flatten(1)


def euclidean(rows: Tensor) -> Tensor:
    return torch.sqrt((rows * rows).sum(dim=1))


def logits(cfg: MethodConfig, d: FunctionalD, x: Tensor, frozen: bool = False, y: Tensor | None = None) -> Tensor:
    if cfg.name not in NORMALISED:  # none, sn (normalised inside D), wgan-gp, lgan: the raw output
        return d(x, frozen, y)
    f, g = output_and_gradient(d, x, frozen, y)
    if cfg.name == "gn":
        return f / (euclidean(g) + f.abs())
    if cfg.name == "pgn":
        return (1 - f) / (euclidean(1 - g) + (1 - f).abs())
    norm = euclidean(g)
    if cfg.gran_variant == "ratio":
        return cfg.gran_k * f * norm / (norm * norm + cfg.gran_eps)
    return cfg.gran_k * f / (norm + cfg.gran_eps)


# losses


def _lgan_pair(name: str) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
    """(φ, ψ) of the LGAN family, as the LGAN code: D minimises E φ(f(fake)) + E ψ(f(real))."""
    pairs: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]] = {
        "x": (lambda t: t, lambda t: -t),
        "exp": (lambda t: torch.exp(t), lambda t: torch.exp(-t)),
        "log_sigmoid": (lambda t: F.softplus(t), lambda t: F.softplus(-t)),
        "sqrt": (lambda t: torch.sqrt(t * t + 1) + t, lambda t: torch.sqrt(t * t + 1) - t),
        "lsgan": (lambda t: (t + 1) ** 2, lambda t: (t - 1) ** 2),
        "hinge": (lambda t: F.relu(1 + t), lambda t: F.relu(1 - t)),
    }
    return pairs[name]


def d_loss(cfg: LossConfig, r: Tensor, f: Tensor) -> tuple[Tensor, Tensor]:
    if cfg.name == "bce":
        return F.softplus(-r).mean(), F.softplus(f).mean()
    if cfg.name == "hinge":
        return F.relu(1 - r).mean(), F.relu(1 + f).mean()
    if cfg.name == "wasserstein":
        return -r.mean(), f.mean()
    phi, psi = _lgan_pair(cfg.name.removeprefix("lgan-"))
    return psi(r).mean(), phi(f).mean()


def g_loss(cfg: LossConfig, f: Tensor) -> Tensor:
    if cfg.name == "bce":
        return F.softplus(-f).mean()
    if cfg.name in ("hinge", "wasserstein"):
        return -f.mean()
    family = cfg.name.removeprefix("lgan-")
    if cfg.lgan_psi_max:
        return _lgan_pair(family)[1](f).mean()
    if family == "lsgan":
        return ((f - 1) ** 2).mean()
    return -f.mean()


# penalties and consistency regularization


def penalty(
    cfg: MethodConfig, d: FunctionalD, real: Tensor, fake: Tensor, real_labels: Tensor | None = None
) -> Tensor | None:
    """WGAN-GP λ·mean((‖∇D(x̂)‖ − 1)²) or LGAN λ·(max ‖∇D(x̂)‖)² on x̂ = real + α(fake − real)."""
    if cfg.name not in ("wgan-gp", "lgan"):
        return None
    n = min(len(real), len(fake))
    real, fake = real[:n].detach(), fake[:n].detach()
    alpha = torch.rand((n,) + (1,) * (real.ndim - 1))
    y = None if real_labels is None else real_labels[:n]
    _, g = output_and_gradient(d, real + alpha * (fake - real), frozen=False, y=y)
    slope = euclidean(g)
    if cfg.name == "wgan-gp":
        return cfg.gp_lambda * ((slope - 1) ** 2).mean()
    return cfg.lgan_lambda * slope.max() ** 2


def translate_image(image: Tensor, dx: int, dy: int) -> Tensor:
    """The content moved dx pixels right and dy down; what nothing covers is black (−1)."""
    _, h, w = image.shape
    out = torch.full_like(image, -1.0)
    if abs(dx) < w and abs(dy) < h:
        out[:, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = image[
            :, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
        ]
    return out


def cr_transform(x: Tensor, translate: float, flip: bool) -> Tensor:
    """Onto the uint8 grid, flip with p = ½ (draw: rand(n) < ½), shift by round(U(±t·side)) (draw: rand(n, 2))."""
    if x.ndim != 4:
        return x
    n, _, h, w = x.shape
    x = torch.round((x.detach() + 1) / 2 * 255) / 255 * 2 - 1
    flips = torch.rand(n) < 0.5 if flip else torch.zeros(n, dtype=torch.bool)
    u = torch.rand(n, 2)
    shift_x = torch.round((2 * u[:, 0] - 1) * translate * w)
    shift_y = torch.round((2 * u[:, 1] - 1) * translate * h)
    images = [xi.flip(-1) if flipped else xi for xi, flipped in zip(x, flips, strict=True)]
    moved = [translate_image(xi, int(sx), int(sy)) for xi, sx, sy in zip(images, shift_x, shift_y, strict=True)]
    return torch.stack(moved)


def consistency(
    cfg: MethodConfig,
    d: FunctionalD,
    real: Tensor,
    real_logits: Tensor,
    fake: Tensor,
    fake_logits: Tensor,
    real_labels: Tensor | None = None,
    fake_labels: Tensor | None = None,
) -> Tensor | None:
    if cfg.cr_lambda == 0:
        return None
    augmented = cr_transform(real, cfg.cr_translate, cfg.cr_flip)
    term = ((logits(cfg, d, augmented, y=real_labels) - real_logits) ** 2).mean()
    if cfg.bcr:
        augmented = cr_transform(fake, cfg.cr_translate, cfg.cr_flip)
        term = term + ((logits(cfg, d, augmented, y=fake_labels) - fake_logits) ** 2).mean()
    return cfg.cr_lambda * term


# Adam, written out


class Adam:
    """m ← β₁m + (1 − β₁)g, v ← β₂v + (1 − β₂)g², p ← p − lr·m̂ / (√v̂ + 1e-8), m̂, v̂ bias-corrected per step."""

    def __init__(self, params: list[Tensor], betas: tuple[float, float]) -> None:
        self.params, self.betas = params, betas
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.steps = [0] * len(params)

    @torch.no_grad()
    def step(self, grads: tuple[Tensor | None, ...], lr: float) -> None:
        beta1, beta2 = self.betas
        for i, (param, grad) in enumerate(zip(self.params, grads, strict=True)):
            if grad is None:  # a weight the loss does not reach is left alone, state and all
                continue
            self.steps[i] += 1
            t = self.steps[i]
            self.m[i] = beta1 * self.m[i] + (1 - beta1) * grad
            self.v[i] = beta2 * self.v[i] + (1 - beta2) * grad * grad
            m_hat = self.m[i] / (1 - beta1**t)
            v_hat = self.v[i] / (1 - beta2**t)
            param -= lr * m_hat / (torch.sqrt(v_hat) + ADAM_EPS)


# one run


def run(
    recipe: Recipe, data: Tensor, start: Start, labels: Tensor | None = None
) -> dict[str, dict[str, Tensor] | None]:
    """Train from `start` on `data` (the dataset's uint8 images or points, with their class `labels` for a
    class-conditional net) as the contract says; final states."""
    t, method, classes = recipe.train, recipe.method, recipe.model.num_classes

    def fake_labels(n: int) -> Tensor | None:
        return torch.randint(classes, (n,)) if classes else None

    def generate(z: Tensor, y: Tensor | None) -> Tensor:
        return generator(z) if y is None else generator(z, y)

    generator, discriminator = nets.build_nets(recipe.model, tuple(data.shape[1:]))
    generator.load_state_dict(start.g)
    generator.train()
    d = FunctionalD(discriminator, start.d, method.sn_eps)
    ema = {key: value.clone() for key, value in start.g_ema.items()} if start.g_ema is not None else None
    g_params = list(generator.parameters())
    d_params = list(d.params.values())
    opt_g, opt_d = Adam(g_params, (t.beta1, t.beta2)), Adam(d_params, (t.beta1, t.beta2))
    stream = EpochOrder(len(data), t.batch_size_d, recipe.seed)
    torch.set_rng_state(start.rng)

    for s in range(1, t.steps + 1):
        factor = 1 - (s - 1) / t.steps if t.lr_decay == "linear" else 1.0
        lr_d, lr_g = t.lr_d * factor, t.lr_g * factor
        batches = [stream.next() for _ in range(t.n_dis)]
        for indices, flags in batches:
            real = real_batch(data, indices, flags, recipe.data.hflip)
            y_real = None if labels is None else labels[indices]
            with torch.no_grad():
                z = torch.randn(t.batch_size_d, recipe.model.z_dim)
                y_fake = fake_labels(t.batch_size_d)
                fake = generate(z, y_fake)
            y_both = None if y_real is None or y_fake is None else torch.cat([y_real, y_fake])
            both = logits(method, d, torch.cat([real, fake]), y=y_both)
            real_logits, fake_logits = both[: len(real)], both[len(real) :]
            loss_real, loss_fake = d_loss(recipe.loss, real_logits, fake_logits)
            loss = loss_real + loss_fake
            extra = penalty(method, d, real, fake, y_real)
            if extra is not None:
                loss = loss + extra
            cr = consistency(method, d, real, real_logits, fake, fake_logits, y_real, y_fake)
            if cr is not None:
                loss = loss + cr
            opt_d.step(torch.autograd.grad(loss, d_params, allow_unused=True), lr_d)

        z = torch.randn(t.batch_size_g, recipe.model.z_dim)
        y = fake_labels(t.batch_size_g)
        fake = generate(z, y)
        loss = g_loss(recipe.loss, logits(method, d, fake, frozen=True, y=y))
        opt_g.step(torch.autograd.grad(loss, g_params, allow_unused=True), lr_g)

        if ema is not None:
            weight = 1.0 if s < t.ema_start else 1 - t.ema_decay
            with torch.no_grad():
                for key, value in generator.state_dict().items():
                    if value.is_floating_point():
                        ema[key] = ema[key] + weight * (value - ema[key])
                    else:
                        ema[key] = value.clone()

    final_g = {key: value.detach().clone() for key, value in generator.state_dict().items()}
    return {"G": final_g, "D": d.state(), "G_ema": ema}
