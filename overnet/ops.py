"""OverNet's blocks (paper Sec. 3, Fig. 2-3), with the authors' module names so checkpoints load."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from srkit.core.layers import Fusion, GlobalAvgPool, cascade


class WNConv2d(nn.Conv2d):
    """Conv2d with weight normalization, w = g * v / ||v|| (per output channel); keys ``weight_g``/``weight_v``
    as written by ``torch.nn.utils.weight_norm`` in the authors' checkpoints."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        v = self.weight.detach().clone()
        del self.weight
        self.weight_v = nn.Parameter(v)
        self.weight_g = nn.Parameter(v.flatten(1).norm(dim=1).view(-1, 1, 1, 1))

    def effective_weight(self) -> torch.Tensor:
        return torch._weight_norm(self.weight_v, self.weight_g, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.effective_weight(), self.bias)


class Scale(nn.Module):
    """A learned scalar (key ``scale``)."""

    def __init__(self, init_value: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([float(init_value)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class SE(nn.Module):
    """Squeeze-and-excitation: global average pool, 1x1 conv (C -> C/16), ReLU, 1x1 conv, sigmoid, rescale."""

    def __init__(self, channels: int = 64, reduction: int = 16) -> None:
        super().__init__()
        self.pool = GlobalAvgPool()  # no weights: the state dict keeps the authors' keys
        self.conv = nn.Sequential(nn.Conv2d(channels, channels // reduction, 1), nn.ReLU(inplace=True),
                                  nn.Conv2d(channels // reduction, channels, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv(self.pool(x))


class ResidualBlock(nn.Module):
    """Wide-activation residual block with SE (Fig. 3): 1x1 expand x6 - ReLU - 1x1 linear to 0.8x -
    3x3 back to 64 - SE; out = res_scale * body + x_scale * x."""

    fusion = Fusion.SE_SCALED_RESIDUAL  # the forward below: the fast path runs it in fewer passes

    def __init__(self, channels: int = 64, expand: int = 6, linear: float = 0.8) -> None:
        super().__init__()
        self.res_scale = Scale(1)
        self.x_scale = Scale(1)
        self.SE = SE(channels, reduction=16)
        mid = int(channels * linear)
        self.body = nn.Sequential(WNConv2d(channels, channels * expand, 1), nn.ReLU(inplace=True),
                                  WNConv2d(channels * expand, mid, 1), WNConv2d(mid, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_scale(self.SE(self.body(x))) + self.x_scale(x)


class BasicConv2d(nn.Module):
    """Weight-normalized conv + ReLU (the 1x1 reductions). Key: ``conv``."""

    fusion = Fusion.CONV_RELU  # forward is relu(self.conv(x)): the fast path fuses it

    def __init__(self, in_channels: int, out_channels: int, ksize: int = 1) -> None:
        super().__init__()
        self.conv = WNConv2d(in_channels, out_channels, ksize, 1, ksize // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x), inplace=True)


class LDG(nn.Module):
    """Local dense group: three residual blocks in a cascade with 1x1 reductions (keys RB1-3, reduction1-3)."""

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        self.RB1, self.RB2, self.RB3 = ResidualBlock(channels), ResidualBlock(channels), ResidualBlock(channels)
        self.reduction1 = BasicConv2d(channels * 2, channels)
        self.reduction2 = BasicConv2d(channels * 3, channels)
        self.reduction3 = BasicConv2d(channels * 4, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cascade(x, [self.RB1, self.RB2, self.RB3],
                       [self.reduction1, self.reduction2, self.reduction3])[-1]
