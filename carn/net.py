"""The CARN network (paper Fig. 2) and its two members: CARN (Sec. 3.2) and CARN-M (Sec. 3.3)."""
from __future__ import annotations

import torch
import torch.nn as nn

from carn.blocks import BasicBlock, CascadingBlock, UpsampleBlock
from srkit.core.layers import FastPath, MeanShift, cascade


class CascadingNet(nn.Module):
    """entry conv -> global cascade of three cascading blocks (1x1 fusions c1..c3) -> upsample -> exit conv.

    The input is RGB in [0, 1]; the frozen ``sub_mean``/``add_mean`` layers remove and restore the DIV2K mean.
    """

    # add_mean shifts the exit conv's output, and the exit conv reads the upsampler's output as it is
    fast_path = FastPath(exit_conv="exit", upsampler="upsample")

    def __init__(self, *, scale: int | None = None, multi_scale: bool = True, group: int = 1,
                 reduce_upsample: bool = False, efficient: bool = False, channels: int = 64) -> None:
        super().__init__()
        self.multi_scale = multi_scale
        self.group = group
        self.reduce_upsample = reduce_upsample
        self.sub_mean = MeanShift(sub=True)
        self.add_mean = MeanShift(sub=False)
        self.entry = nn.Conv2d(3, channels, 3, 1, 1)
        block = lambda: CascadingBlock(channels, group=group, efficient=efficient, shared=efficient)  # noqa: E731
        self.b1, self.b2, self.b3 = block(), block(), block()
        self.c1 = BasicBlock(channels * 2, channels)
        self.c2 = BasicBlock(channels * 3, channels)
        self.c3 = BasicBlock(channels * 4, channels)
        self.upsample = UpsampleBlock(channels, scale, multi_scale, group=group, reduce_upsample=reduce_upsample)
        self.exit = nn.Conv2d(channels, 3, 3, 1, 1)

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        x = self.entry(self.sub_mean(x))
        x = cascade(x, [self.b1, self.b2, self.b3], [self.c1, self.c2, self.c3])[-1]
        x = self.upsample(x, scale)
        return self.add_mean(self.exit(x))


class CARN(CascadingNet):
    """CARN: cascading blocks of plain residual blocks (Fig. 3(a), 3(b)). Args: ``scale`` (single-scale model)
    or ``multi_scale=True`` (x2/x3/x4 branches), ``group`` (groups of the upsampling convs; 1 in the paper),
    ``reduce_upsample`` (1x1 upsampling convs)."""

    def __init__(self, *, scale: int | None = None, multi_scale: bool = True, group: int = 1,
                 reduce_upsample: bool = False) -> None:
        super().__init__(scale=scale, multi_scale=multi_scale, group=group,
                         reduce_upsample=reduce_upsample, efficient=False)


class CARN_M(CascadingNet):
    """CARN-M, the mobile variant: residual-E blocks with group convolution (Fig. 3(c)), and one residual-E
    block shared (recursively applied three times) inside each cascading block (Fig. 3(d)). ``group`` (4 in
    the paper and the released weights) also sets the groups of the residual-E convolutions."""

    def __init__(self, *, scale: int | None = None, multi_scale: bool = True, group: int = 4,
                 reduce_upsample: bool = False) -> None:
        super().__init__(scale=scale, multi_scale=multi_scale, group=group,
                         reduce_upsample=reduce_upsample, efficient=True)
