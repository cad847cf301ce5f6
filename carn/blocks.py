"""CARN's blocks (paper Fig. 3 and Sec. 3.3), with the authors' module names so checkpoints load."""
from __future__ import annotations

import torch
import torch.nn as nn

from srkit.core.layers import Fusion, cascade, pixel_shuffle_stages


class BasicBlock(nn.Module):
    """Conv + ReLU (the 1x1 fusion convs of the cascades). Key: ``body.0``."""

    fusion = Fusion.CONV_RELU  # forward is relu(self.conv(x)): the fast path fuses it

    def __init__(self, in_channels: int, out_channels: int, ksize: int = 1, stride: int = 1, pad: int = 0) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, out_channels, ksize, stride, pad), nn.ReLU(inplace=True))

    @property
    def conv(self) -> nn.Conv2d:
        return self.body[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ResidualBlock(nn.Module):
    """Fig. 3(a): conv3x3 - ReLU - conv3x3, identity added, then ReLU."""

    fusion = Fusion.RESIDUAL_RELU  # forward is relu(self.body(x) + x): the fast path fuses it

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1), nn.ReLU(inplace=True),
                                  nn.Conv2d(channels, channels, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + x)


class EResidualBlock(nn.Module):
    """Fig. 3(c), residual-E: group conv3x3 - ReLU - group conv3x3 - ReLU - pointwise conv1x1, + x, ReLU."""

    fusion = Fusion.RESIDUAL_RELU  # forward is relu(self.body(x) + x): the fast path fuses it

    def __init__(self, channels: int = 64, group: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1, groups=group), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, 1, 1, groups=group), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 1, 1, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + x)


class CascadingBlock(nn.Module):
    """Fig. 3(b)/(d): local cascade of three residual blocks, each followed by a 1x1 fusion conv.

    ``shared=True`` is CARN-M's recursive variant: ONE residual-E block (key ``b1``) applied three times,
    as in the authors' released code.
    """

    def __init__(self, channels: int = 64, group: int = 1, efficient: bool = False, shared: bool = False) -> None:
        super().__init__()
        make = (lambda: EResidualBlock(channels, group)) if efficient else (lambda: ResidualBlock(channels))
        self.b1 = make()
        if not shared:
            self.b2 = make()
            self.b3 = make()
        self.shared = shared
        self.c1 = BasicBlock(channels * 2, channels)
        self.c2 = BasicBlock(channels * 3, channels)
        self.c3 = BasicBlock(channels * 4, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blocks = [self.b1] * 3 if self.shared else [self.b1, self.b2, self.b3]
        return cascade(x, blocks, [self.c1, self.c2, self.c3])[-1]


class _Upsample(nn.Module):
    def __init__(self, channels: int, scale: int, group: int, ksize: int) -> None:
        super().__init__()
        self.body = pixel_shuffle_stages(channels, scale, nn.Conv2d, ksize=ksize, group=group)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class UpsampleBlock(nn.Module):
    """Pixel-shuffle upsampling. Multi-scale: branches ``up2``/``up3``/``up4``, one picked per forward;
    single-scale: one branch ``up``. ``reduce_upsample`` uses 1x1 instead of 3x3 convolutions."""

    def __init__(self, channels: int, scale: int | None, multi_scale: bool, group: int = 1,
                 reduce_upsample: bool = False) -> None:
        super().__init__()
        ksize = 1 if reduce_upsample else 3
        self.multi_scale = multi_scale
        if multi_scale:
            self.up2 = _Upsample(channels, 2, group, ksize)
            self.up3 = _Upsample(channels, 3, group, ksize)
            self.up4 = _Upsample(channels, 4, group, ksize)
        else:
            if scale not in (2, 3, 4):
                raise ValueError(f"single-scale CARN needs scale 2, 3 or 4, got {scale}")
            self.up = _Upsample(channels, scale, group, ksize)
        self.scale = scale

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        if not self.multi_scale:
            if scale != self.scale:
                raise ValueError(f"this single-scale model upsamples x{self.scale}, not x{scale}")
            return self.up(x)
        if scale not in (2, 3, 4):
            raise ValueError(f"multi-scale CARN serves x2, x3, x4, not x{scale}")
        return getattr(self, f"up{int(scale)}")(x)
