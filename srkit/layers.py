"""Building blocks common to CARN and OverNet."""
from __future__ import annotations

import math
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn as nn

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
    """The cascading mechanism of CARN (and OverNet's dense groups).

    c0 = o0 = x;  c_i = cat(c_{i-1}, block_i(o_{i-1}));  o_i = fuse_i(c_i)  (fuse = 1x1 conv + ReLU).
    Returns [o_1, ..., o_n]. Fuses prepared by ``srkit.fast`` bring their own buffered implementation.
    """
    run = getattr(fuses[0], "run_cascade", None) if fuses else None
    if run is not None and all(type(f) is type(fuses[0]) for f in fuses):
        return run(x, list(blocks), list(fuses))
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
    """Whole-image pooling statistics for one tiled forward (see srkit.tiling), keyed by pool module.
    ``core``: (y0, y1, x0, x1) of the current tile's core, whose sums are recorded into ``acc``; ``fixed``:
    whole-image means the pools return instead of the tile's own."""
    core: tuple[int, int, int, int] | None = None
    acc: dict[int, torch.Tensor] = field(default_factory=dict)
    fixed: dict[int, torch.Tensor] = field(default_factory=dict)


# Set only for the duration of srkit.tiling.forward_tiled: the modules themselves hold no per-call state,
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
        if key in stats.fixed:
            return stats.fixed[key].to(x.dtype).expand(x.shape[0], -1, -1, -1)
        return x.mean(dim=(2, 3), keepdim=True)
