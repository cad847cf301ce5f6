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
    of the whole image.
    """
    return torch._C._nn.upsample_bicubic2d(x, list(out_hw), False, float(factor), float(factor))
