"""OverNet (paper Fig. 2): feature extractor (global dense group of three LDGs) -> overscaling module
(pixel shuffle to (upscale)x, then bicubic resize to the target scale) -> exit conv, plus a bicubic skip."""
from __future__ import annotations

import torch
import torch.nn as nn

from overnet.ops import LDG, BasicConv2d, Scale, WNConv2d
from srkit.core.layers import BicubicResize, FastPath, GlobalAvgPool, MeanShift, cascade, pixel_shuffle_stages
from srkit.core.resize import bicubic_resize, sr_size


class _Upsample(nn.Module):
    def __init__(self, channels: int, upscale: int, group: int) -> None:
        super().__init__()
        self.body = pixel_shuffle_stages(channels, upscale, WNConv2d, ksize=3, group=group)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class _UpsampleBlock(nn.Module):
    """Keeps the authors' key path ``upsample.up.body.0``."""

    def __init__(self, channels: int, upscale: int, group: int) -> None:
        super().__init__()
        self.up = _Upsample(channels, upscale, group)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x)


class OverNet(nn.Module):
    """OverNet. Args: ``upscale`` (the overscaling factor; the authors train x2/x3/x4 with 3/4/5),
    ``group`` (groups of the upsampling conv, 4 in the paper). ``forward(x, scale)`` serves any real
    scale 1 < scale <= upscale; the output is ``sr_size(h, scale) x sr_size(w, scale)``."""

    # add_mean shifts exit1's output plus the skip; the overscaling resize reads the upsampler's output as it is
    fast_path = FastPath(exit_conv="exit1", upsampler="upsample", resize="overscale")

    def __init__(self, *, upscale: int = 3, group: int = 4, channels: int = 64) -> None:
        super().__init__()
        self.upscale = int(upscale)
        self.group = group
        self.sub_mean = MeanShift(sub=True)
        self.add_mean = MeanShift(sub=False)
        self.entry_1 = WNConv2d(3, channels, 3, 1, 1)
        self.GDG1, self.GDG2, self.GDG3 = LDG(channels), LDG(channels), LDG(channels)
        self.reduction1 = BasicConv2d(channels * 2, channels)
        self.reduction2 = BasicConv2d(channels * 3, channels)
        self.reduction3 = BasicConv2d(channels * 4, channels)
        self.reduction = BasicConv2d(channels * 3, channels)
        self.Global_skip = nn.Sequential(GlobalAvgPool(), nn.Conv2d(channels, channels, 1), nn.ReLU(inplace=True))
        self.upsample = _UpsampleBlock(channels, self.upscale, group)
        self.overscale = BicubicResize()  # no weights: the authors' keys are unchanged
        self.exit1 = WNConv2d(channels, 3, 3, 1, 1)
        self.res_scale = Scale(1)
        self.x_scale = Scale(1)

    def forward(self, x: torch.Tensor, scale: float) -> torch.Tensor:
        if not 1 < scale <= self.upscale:
            raise ValueError(f"this OverNet (upscale {self.upscale}) serves scales 1 < s <= {self.upscale}, not {scale}")
        out_hw = (sr_size(x.shape[-2], scale), sr_size(x.shape[-1], scale))
        x = self.sub_mean(x)
        skip = x
        x = self.entry_1(x)
        outs = cascade(x, [self.GDG1, self.GDG2, self.GDG3], [self.reduction1, self.reduction2, self.reduction3])
        feat = self.reduction(torch.cat(outs, dim=1))
        feat = self.res_scale(feat) + self.x_scale(self.Global_skip(x))
        feat = self.overscale(self.upsample(feat), out_hw, scale / self.upscale)  # (upscale)x -> scale x
        skip = bicubic_resize(skip, out_hw, scale)
        return self.add_mean(self.exit1(feat) + skip)
