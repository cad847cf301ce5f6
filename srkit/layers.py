"""Building blocks common to CARN and OverNet."""
from __future__ import annotations

import math
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


class GlobalAvgPool(nn.Module):
    """Mean over H and W; during tiled inference, returns the whole image's mean instead of the tile's."""

    def __init__(self) -> None:
        super().__init__()
        self.fixed: torch.Tensor | None = None      # whole-image mean to use, (N, C, 1, 1)
        self.core: tuple[int, int, int, int] | None = None  # (y0, y1, x0, x1) of the tile's core, to record
        self.acc: torch.Tensor | None = None         # running sum over cores

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.core is not None:
            y0, y1, x0, x1 = self.core
            s = x[..., y0:y1, x0:x1].sum(dim=(2, 3), keepdim=True, dtype=torch.float64)
            self.acc = s if self.acc is None else self.acc + s
        if self.fixed is not None:
            return self.fixed.to(x.dtype).expand(x.shape[0], -1, -1, -1)
        return x.mean(dim=(2, 3), keepdim=True)
