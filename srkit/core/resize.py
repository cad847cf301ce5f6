"""Output sizes and bicubic feature resizing at real-valued scales (a model that overscales, then resizes)."""
from __future__ import annotations

import math
from fractions import Fraction

import torch


def sr_size(n: int, scale: float) -> int:
    """Output length for input length ``n`` at ``scale``: n*scale rounded half up (exact for integer scales,
    and for benchmark LR made as HR/scale, where n*scale is the HR length)."""
    if float(scale).is_integer():
        return n * int(scale)  # stays symbolic under tracing (ONNX export with dynamic sizes)
    return int(math.floor(n * scale + 0.5 + 1e-9))


def tile_step(scale: float) -> int:
    """Smallest k >= 1 with k*scale an integer: tile origins must be multiples of k so that every tile
    samples the same bicubic grid as the whole image (1 for integer scales, 2 for 2.5, 10 for 3.7)."""
    return Fraction(scale).limit_denominator(1000).denominator


def bicubic_resize(x: torch.Tensor, out_hw: tuple[int, int], factor: float) -> torch.Tensor:
    """Bicubic (PyTorch kernel, a = -0.75, align_corners=False) resize of an NCHW tensor to ``out_hw``,
    mapping output pixel d to input coordinate (d + 0.5) / factor - 0.5.

    The mapping uses ``factor`` itself, not in_size/out_size: identical for integer scales (the authors'
    ``F.interpolate(size=...)``; tested bit-exact), and for real scales it keeps tiles aligned to the grid
    of the whole image. Training on CUDA takes the gradient through :class:`_DeterministicBicubic` (CUDA's own
    backward adds with atomics, so two runs differ in rounding); the forward is PyTorch's either way.
    """
    if x.requires_grad and x.is_cuda and torch.is_grad_enabled():
        return _DeterministicBicubic.apply(x, tuple(out_hw), float(factor))
    return torch._C._nn.upsample_bicubic2d(x, list(out_hw), False, float(factor), float(factor))


def bicubic_taps(n_out: int, n_in: int, factor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The 4 input indices (int64, clamped to the edge) and weights (float64) of each of ``n_out`` outputs
    along one axis: PyTorch's bicubic (a = -0.75) at source coordinate (d + 0.5) / factor - 0.5."""
    a = -0.75
    d = torch.arange(n_out, dtype=torch.float64)
    src = (d + 0.5) / factor - 0.5
    i0 = torch.floor(src)
    t = src - i0

    def near(v):  # |v| <= 1
        return ((a + 2) * v - (a + 3)) * v * v + 1

    def far(v):  # 1 < |v| < 2
        return ((a * v - 5 * a) * v + 8 * a) * v - 4 * a
    weights = torch.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], 1)
    idx = (i0.long()[:, None] + torch.arange(-1, 3)[None, :]).clamp(0, n_in - 1)
    return idx, weights


def bicubic_matrix(n_out: int, n_in: int, factor: float) -> torch.Tensor:
    """R (float64, [n_out, n_in]) with resize(v) = R v along one axis (:func:`bicubic_taps` as a matrix)."""
    idx, weights = bicubic_taps(n_out, n_in, factor)
    r = torch.zeros(n_out, n_in, dtype=torch.float64)
    r.scatter_add_(1, idx, weights)
    return r


class _DeterministicBicubic(torch.autograd.Function):
    """PyTorch's bicubic forward; the gradient as Ry^T g Rx, matrix products that sum in a fixed order."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, out_hw: tuple[int, int], factor: float) -> torch.Tensor:
        ctx.in_hw, ctx.out_hw, ctx.factor = tuple(x.shape[-2:]), out_hw, factor
        return torch._C._nn.upsample_bicubic2d(x, list(out_hw), False, factor, factor)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        ry = bicubic_matrix(ctx.out_hw[0], ctx.in_hw[0], ctx.factor).to(g.device, g.dtype)
        rx = bicubic_matrix(ctx.out_hw[1], ctx.in_hw[1], ctx.factor).to(g.device, g.dtype)
        return torch.einsum("nchw,hy,wx->ncyx", g, ry, rx), None, None
