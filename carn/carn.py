"""CARN: cascading blocks of plain residual blocks (paper Fig. 2, 3(b))."""
from carn.net import CascadingNet


class CARN(CascadingNet):
    """CARN. Args: ``scale`` (single-scale model) or ``multi_scale=True`` (x2/x3/x4 branches),
    ``group`` (groups of the upsampling convs; 1 in the paper), ``reduce_upsample`` (1x1 upsampling convs)."""

    def __init__(self, *, scale: int | None = None, multi_scale: bool = True, group: int = 1,
                 reduce_upsample: bool = False) -> None:
        super().__init__(scale=scale, multi_scale=multi_scale, group=group,
                         reduce_upsample=reduce_upsample, efficient=False)
