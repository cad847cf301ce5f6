"""Building blocks shared by the model families, and the declarations the fast inference path reads.

A model tells ``srkit.inference.fast`` what it may rewrite with two kinds of declaration:

- the model class sets ``fast_path = FastPath(...)``: which conv its frozen ``add_mean`` follows, and which
  module's output the exit conv reads as it is (see :class:`FastPath`);
- a block class sets ``fusion = Fusion.CONV_RELU`` (its forward is ``relu(self.conv(x))``) or
  ``Fusion.RESIDUAL_RELU`` (its forward is ``relu(self.body(x) + x)``, ``body`` an ``nn.Sequential`` of convs
  and ReLUs ending in a conv).

Weight-normalized convs are ``nn.Conv2d`` subclasses with ``effective_weight()``. Cascades written with
:func:`cascade` get the fast path's one-buffer form. Nothing else is rewritten, so an undeclared model runs its
own forward on the fast path too (channels_last, baked weights), just without the fused kernels.
"""
from __future__ import annotations

import enum
import math
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn as nn

from srkit.core.resize import bicubic_resize


@dataclass(frozen=True)
class FastPath:
    """A model's declaration for the fast inference path (class attribute ``fast_path``).

    ``exit_conv``: the name of the conv whose output ``add_mean`` shifts, i.e. the forward ends in
    ``self.add_mean(self.<exit_conv>(...) [+ other terms])``; the mean is folded into that conv's bias.
    ``upsampler``: the name of the module whose output the exit conv reads as it is
    (``self.<exit_conv>(self.<upsampler>(x, ...))``, nothing in between). The fast path then moves the exit conv
    into every branch of the upsampler (an ``nn.Sequential`` of ``[conv, ReLU, PixelShuffle(r)]`` stages,
    see :func:`pixel_shuffle_stages`) and runs a branch's last x2 stage with the exit as one sub-pixel conv.
    ``resize``: instead, the name of a :class:`BicubicResize` that reads the upsampler's output as it is, and
    whose output the exit conv reads as it is (``self.<exit_conv>(self.<resize>(self.<upsampler>(x), ...))``).
    The fast path then hands the resize the upsampler's output before its last pixel shuffle, and runs the
    shuffle, the resize and the exit conv as one: neither the shuffled map, the largest tensor of an
    overscaling model, nor the resized one is made.
    """
    exit_conv: str | None = None
    upsampler: str | None = None
    resize: str | None = None


class BicubicResize(nn.Module):
    """:func:`srkit.core.resize.bicubic_resize` as a module (no weights), so that a model can declare it
    (``FastPath.resize``): ``forward(x, out_hw, factor)``."""

    def forward(self, x: torch.Tensor, out_hw: tuple[int, int], factor: float) -> torch.Tensor:
        return bicubic_resize(x, out_hw, factor)


class Fusion(enum.Enum):
    """What a block's forward computes, declared as its class attribute ``fusion``."""
    CONV_RELU = "relu(self.conv(x))"
    RESIDUAL_RELU = "relu(self.body(x) + x)"
    # b = self.body(x); b * self.SE.conv(self.SE.pool(b)) * self.res_scale.scale + x * self.x_scale.scale, with
    # SE.pool a GlobalAvgPool and the scales one-element parameters (a squeeze-excited, scaled residual)
    SE_SCALED_RESIDUAL = "self.res_scale(self.SE(self.body(x))) + self.x_scale(x)"


class CascadeRunner(nn.Module):
    """A fuse module that runs a whole cascade itself (the fast path's one-buffer form): :func:`cascade`
    hands it the blocks and fuses when every fuse of the cascade is of one such type."""

    @staticmethod
    def run_cascade(x: torch.Tensor, blocks: list, fuses: list) -> list[torch.Tensor]:
        raise NotImplementedError

DIV2K_MEAN = (0.4488, 0.4371, 0.4040)


class MeanShift(nn.Module):
    """Frozen 1x1 conv that subtracts (``sub=True``) or adds the DIV2K RGB mean (key: ``shifter``)."""

    def __init__(self, mean_rgb: Sequence[float] = DIV2K_MEAN, sub: bool = True) -> None:
        super().__init__()
        sign = -1.0 if sub else 1.0
        self.shifter = nn.Conv2d(3, 3, 1, 1, 0)
        with torch.no_grad():
            self.shifter.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.shifter.bias.copy_(torch.tensor([sign * m for m in mean_rgb]))
        for p in self.shifter.parameters():
            p.requires_grad = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shifter(x)


def cascade(x: torch.Tensor, blocks: Sequence[Callable], fuses: Sequence[Callable]) -> list[torch.Tensor]:
    """The cascading mechanism (a global or local cascade of blocks, each followed by a 1x1 fusion).

    c0 = o0 = x;  c_i = cat(c_{i-1}, block_i(o_{i-1}));  o_i = fuse_i(c_i)  (fuse = 1x1 conv + ReLU).
    Returns [o_1, ..., o_n]. Fuses that are :class:`CascadeRunner` s run the cascade themselves.
    """
    if fuses and isinstance(fuses[0], CascadeRunner) and all(type(f) is type(fuses[0]) for f in fuses):
        return fuses[0].run_cascade(x, list(blocks), list(fuses))
    return plain_cascade(x, blocks, fuses)


def plain_cascade(x: torch.Tensor, blocks: Sequence[Callable], fuses: Sequence[Callable]) -> list[torch.Tensor]:
    """:func:`cascade` by concatenation, as the papers draw it."""
    c, o, outs = x, x, []
    for block, fuse in zip(blocks, fuses):
        c = torch.cat([c, block(o)], dim=1)
        o = fuse(c)
        outs.append(o)
    return outs


def pixel_shuffle_stages(n_channels: int, scale: int, conv: Callable[..., nn.Module],
                         ksize: int = 3, group: int = 1) -> nn.Sequential:
    """[conv(n -> r^2 n), ReLU, PixelShuffle(r)] per stage: x2/x3/x5 in one stage, x4/x8 in log2 stages.

    The layout (conv at index 0, 3, ...) matches the authors' state-dict keys ``body.0``, ``body.3``.
    """
    if scale in (2, 4, 8):
        stages = [2] * int(math.log2(scale))
    elif scale in (3, 5):
        stages = [scale]
    else:
        raise ValueError(f"pixel-shuffle upsampling supports x2, x3, x4, x5, x8, not x{scale}")
    mods: list[nn.Module] = []
    for r in stages:
        mods += [conv(n_channels, r * r * n_channels, ksize, 1, ksize // 2, groups=group),
                 nn.ReLU(inplace=True), nn.PixelShuffle(r)]
    return nn.Sequential(*mods)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@dataclass
class PoolStats:
    """Whole-image pooling statistics for one tiled forward (see srkit.inference.tiling), keyed by pool module.
    ``core``: (y0, y1, x0, x1) of the current tile's core, whose sums are recorded into ``acc``; ``fixed``:
    whole-image means the pools return instead of the tile's own."""
    core: tuple[int, int, int, int] | None = None
    acc: dict[int, torch.Tensor] = field(default_factory=dict)
    fixed: dict[int, torch.Tensor] = field(default_factory=dict)
    pools: int = 0  # the model's pool modules: once all have recorded a tile, its statistics pass may stop
    seen: set[int] = field(default_factory=set)  # the pools that recorded the current tile


class StatsComplete(Exception):
    """Raised by the last pool of a statistics pass: the rest of that forward cannot change the statistics."""


# Set only for the duration of srkit.inference.tiling.forward_tiled: the modules themselves hold no per-call state,
# so one model can serve several threads, and nothing outlives the call.
POOL_STATS: ContextVar[PoolStats | None] = ContextVar("srkit_pool_stats", default=None)


class GlobalAvgPool(nn.Module):
    """Mean over H and W; during a tiled forward, the whole image's mean instead of the tile's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stats = POOL_STATS.get()
        if stats is None:
            return x.mean(dim=(2, 3), keepdim=True)
        key = id(self)
        if stats.core is not None:
            y0, y1, x0, x1 = stats.core
            s = x[..., y0:y1, x0:x1].sum(dim=(2, 3), keepdim=True, dtype=torch.float64)
            stats.acc[key] = s if key not in stats.acc else stats.acc[key] + s
            stats.seen.add(key)
            if stats.pools and len(stats.seen) >= stats.pools:
                raise StatsComplete
        if key in stats.fixed:
            return stats.fixed[key].to(x.dtype).expand(x.shape[0], -1, -1, -1)
        return x.mean(dim=(2, 3), keepdim=True)
