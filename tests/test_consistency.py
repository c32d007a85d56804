"""CR: the augmentation's laws (uint8 grid, black fill, shift direction, flip and shift distributions) and the term."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats
from torch import nn
from torchvision.transforms import functional as TF

from ganbench.methods import build_method
from ganbench.methods.consistency import augment, consistency_penalty, quantize, shift
from ganbench.recipe import MethodConfig

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def grid(u: float) -> float:
    """The [-1, 1] value of uint8 level u."""
    return u / 127.5 - 1


# ----------------------------------------------------------------------------------------------------
# uint8 grid


def test_quantize_rounds_onto_the_uint8_grid() -> None:
    x = torch.tensor([grid(10.4), grid(10.6), grid(254.7), -1.0, 1.0, 1.5, -2.0])
    expected = torch.tensor([grid(10), grid(11), grid(255), -1.0, 1.0, 1.0, -1.0])
    torch.testing.assert_close(quantize(x), expected, rtol=0, atol=1e-6)


def test_a_real_uint8_image_passes_the_grid_unchanged() -> None:
    u8 = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(2, 3, 16, 16)
    x = u8 / 127.5 - 1  # exactly what the data pipeline feeds D
    assert torch.equal(quantize(x), x)
    assert torch.equal(augment(x, 0.0, False), x)  # nothing drawn moves it, nothing on the grid changes


def test_augment_puts_off_grid_images_on_the_grid() -> None:
    torch.manual_seed(0)
    x = torch.rand(4, 3, 8, 8) * 2 - 1
    out = augment(x, 0.2, True)
    levels = (out + 1) * 127.5
    torch.testing.assert_close(levels, levels.round(), rtol=0, atol=1e-4)
    assert not torch.equal(levels, (x + 1) * 127.5)


# ----------------------------------------------------------------------------------------------------
# one known shift


def test_shift_moves_a_hand_built_image_right_and_down_with_black_fill() -> None:
    x = torch.arange(1, 13, dtype=torch.float32).view(1, 1, 3, 4)  # rows 1..4, 5..8, 9..12
    right2_up1 = torch.tensor([[[[-1.0, -1.0, 5.0, 6.0], [-1.0, -1.0, 9.0, 10.0], [-1.0, -1.0, -1.0, -1.0]]]])
    assert torch.equal(shift(x, torch.tensor([2]), torch.tensor([-1])), right2_up1)
    left1_down1 = torch.tensor([[[[-1.0, -1.0, -1.0, -1.0], [2.0, 3.0, 4.0, -1.0], [6.0, 7.0, 8.0, -1.0]]]])
    assert torch.equal(shift(x, torch.tensor([-1]), torch.tensor([1])), left1_down1)
    gone = shift(x, torch.tensor([4]), torch.tensor([0]))
    assert torch.equal(gone, torch.full_like(x, -1.0))


def test_shift_agrees_with_torchvision_affine_translation() -> None:
    # The GN-GAN code's RandomAffine(0, translate) applies TF.affine with an integer (tx, ty) and fill 0 (black).
    torch.manual_seed(0)
    x = torch.rand(5, 3, 7, 9) * 2 - 1
    shifts = [(3, -2), (-4, 1), (0, 0), (8, 6), (-1, -6)]
    sx, sy = torch.tensor([s[0] for s in shifts]), torch.tensor([s[1] for s in shifts])
    out = shift(x, sx, sy)
    for i, (dx, dy) in enumerate(shifts):
        ref = TF.affine(x[i], angle=0.0, translate=[dx, dy], scale=1.0, shear=[0.0, 0.0], fill=[-1.0])
        assert torch.equal(out[i], ref), (dx, dy)


def test_augment_draws_flips_then_shifts_in_the_contract_order() -> None:
    n, h, w, t = 6, 5, 10, 0.2
    x = (torch.arange(n * h * w) % 256).view(n, 1, h, w) / 127.5 - 1  # distinct levels on the grid
    torch.manual_seed(11)
    out = augment(x, t, True)
    torch.manual_seed(11)
    flips = (torch.rand(n) < 0.5).tolist()
    u = torch.rand(n, 2).tolist()
    for i in range(n):
        # round() of Python, half to even, as torchvision's RandomAffine
        dx, dy = round((2 * u[i][0] - 1) * t * w), round((2 * u[i][1] - 1) * t * h)
        src = x[i, 0].flip(1) if flips[i] else x[i, 0]
        expected = torch.full((h, w), -1.0)
        for r in range(h):
            for c in range(w):
                if 0 <= r - dy < h and 0 <= c - dx < w:
                    expected[r, c] = src[r - dy, c - dx]
        assert torch.equal(out[i, 0], expected), i


def test_points_pass_unchanged() -> None:
    points = torch.randn(4, 2)
    assert torch.equal(augment(points, 0.2, True), points)


# ----------------------------------------------------------------------------------------------------
# distributions over many draws


def shift_law(t: float, side: int) -> dict[int, float]:
    """P(k) = length of {v in [-a, a] : round(v) = k} / 2a, a = t·side."""
    a = t * side
    law = {}
    for k in range(-math.ceil(a), math.ceil(a) + 1):
        length = min(k + 0.5, a) - max(k - 0.5, -a)
        if length > 0:
            law[k] = length / (2 * a)
    return law


def observed_flips_and_shifts(side: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Augment an image with two marker pixels right of centre; read back each sample's flip and (dx, dy)."""
    c = side // 2
    image = torch.full((1, 1, side, side), -1.0)
    image[0, 0, c, c], image[0, 0, c, c + 1] = 1.0, grid(200)
    torch.manual_seed(seed)
    flips, dxs, dys = [], [], []
    for start in range(0, n, 4096):
        out = augment(image.expand(min(4096, n - start), 1, side, side), 0.2, True)[:, 0]
        one = (out == 1.0).flatten(1).float().argmax(1)
        other = (out == grid(200)).flatten(1).float().argmax(1)
        flipped = other < one  # the pair's order reverses under a flip
        col = one % side
        dxs.append(torch.where(flipped, col - (side - 1 - c), col - c))
        dys.append(one // side - c)
        flips.append(flipped)
    return torch.cat(flips), torch.cat(dxs), torch.cat(dys)


@pytest.mark.parametrize("side", [32, 48])
def test_flip_and_shift_distributions_match_the_official_law(side: int) -> None:
    n = 24_576
    flips, dx, dy = observed_flips_and_shifts(side, n, seed=side)
    assert stats.binomtest(int(flips.sum()), n, 0.5).pvalue > 1e-3
    law = shift_law(0.2, side)
    for shifts in (dx, dy):
        counts = torch.bincount(shifts + max(law), minlength=len(law))
        assert len(counts) == len(law)  # no shift outside the law's support
        expected = [law[k] * n for k in sorted(law)]
        assert stats.chisquare(counts.tolist(), expected).pvalue > 1e-3
    if side == 48:
        assert law[10] == pytest.approx(0.1 / 19.2) and law[10] == pytest.approx(0.0052, abs=1e-4)
        tails = ((dx.abs() == 10).float().mean() + (dy.abs() == 10).float().mean()) / 4  # per tail
        assert tails.item() == pytest.approx(0.0052, abs=0.0015)
    # x and y shifts (and the flip) drawn independently: a 3×3 sign table shows no association
    table = torch.zeros(3, 3)
    table.index_put_((dx.sign() + 1, dy.sign() + 1), torch.ones(n), accumulate=True)
    assert stats.chi2_contingency(table.numpy()).pvalue > 1e-3
    assert abs(torch.corrcoef(torch.stack([dx.float(), dy.float(), flips.float()]))[0, 1:]).max() < 0.03


# ----------------------------------------------------------------------------------------------------
# the CR term


class CountingD(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 1))
        self.forwards = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forwards += 1
        return self.net(x)


@pytest.mark.parametrize("name", ["none", "gn"])
def test_cr_uses_the_passed_logits_and_one_forward_per_branch(name: str) -> None:
    torch.manual_seed(0)
    d = CountingD()
    method = build_method(MethodConfig(name=name))
    real, fake = quantize(torch.rand(4, 3, 8, 8) * 2 - 1), quantize(torch.rand(4, 3, 8, 8) * 2 - 1)
    real_logits, fake_logits = torch.tensor([0.5, -1.0, 2.0, 0.0]), torch.tensor([3.0, 1.0, -2.0, 0.25])
    cfg = MethodConfig(name=name, cr_lambda=5.0)
    assert consistency_penalty(method, d, real, real_logits, fake, fake_logits, MethodConfig(name=name)) is None
    assert d.forwards == 0

    torch.manual_seed(1)
    cr = consistency_penalty(method, d, real, real_logits, fake, fake_logits, cfg)
    assert d.forwards == 1
    torch.manual_seed(1)
    with torch.no_grad():
        on_real = method.logits(d, augment(real, 0.2, True))
    assert cr.item() == pytest.approx(5.0 * (on_real - real_logits).square().mean().item(), rel=1e-6)

    d.forwards = 0
    torch.manual_seed(1)
    both = MethodConfig(name=name, cr_lambda=5.0, bcr=True)
    bcr = consistency_penalty(method, d, real, real_logits, fake, fake_logits, both)
    assert d.forwards == 2
    torch.manual_seed(1)  # the fakes' draws come after the reals'
    t_real, t_fake = augment(real, 0.2, True), augment(fake, 0.2, True)
    expected = (method.logits(d, t_real) - real_logits).square().mean()
    expected = expected + (method.logits(d, t_fake) - fake_logits).square().mean()
    assert bcr.item() == pytest.approx(5.0 * expected.item(), rel=1e-6)


def test_cr_differentiates_through_the_passed_logits() -> None:
    torch.manual_seed(0)
    d = CountingD()
    real = quantize(torch.rand(4, 3, 8, 8) * 2 - 1)
    method = build_method(MethodConfig(name="none"))
    cfg = MethodConfig(name="none", cr_lambda=5.0)
    real_logits = d(real).flatten()  # the D step's logits, graph kept
    torch.manual_seed(2)
    cr = consistency_penalty(method, d, real, real_logits, real, real_logits, cfg)
    full = torch.autograd.grad(cr, list(d.parameters()))
    # By hand: the same term with the un-augmented branch detached has a different gradient.
    torch.manual_seed(2)
    one_sided = 5.0 * (d(augment(real, 0.2, True)).flatten() - real_logits.detach()).square().mean()
    torch.testing.assert_close(cr, one_sided)
    half = torch.autograd.grad(one_sided, list(d.parameters()))
    assert any(not torch.allclose(a, b) for a, b in zip(full, half, strict=True))


@pytest.mark.gpu
@needs_cuda
def test_augment_is_captured_by_a_cuda_graph_and_draws_afresh_on_replay() -> None:
    x = quantize(torch.rand(16, 3, 32, 32, device="cuda") * 2 - 1)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        augment(x, 0.2, True)  # warm-up outside the capture
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = augment(x, 0.2, True)
    graph.replay()
    first = out.clone()
    graph.replay()
    assert not torch.equal(first, out)
    for sample in (first, out):  # each replay is a flip and shift of x: every row of pixels comes from x or is black
        levels = (sample + 1) * 127.5
        torch.testing.assert_close(levels, levels.round(), rtol=0, atol=1e-4)
        assert ((sample == -1) | torch.isin(sample, x)).all()
