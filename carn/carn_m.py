"""CARN-M: the mobile variant (paper Sec. 3.3): residual-E blocks with group convolution, and one
residual-E block shared (recursively applied three times) inside each cascading block."""
from carn.net import CascadingNet


class CARN_M(CascadingNet):
    """CARN-M. Same arguments as :class:`carn.CARN`; ``group`` (4 in the paper and the released weights)
    also sets the groups of the residual-E convolutions."""

    def __init__(self, *, scale: int | None = None, multi_scale: bool = True, group: int = 4,
                 reduce_upsample: bool = False) -> None:
        super().__init__(scale=scale, multi_scale=multi_scale, group=group,
                         reduce_upsample=reduce_upsample, efficient=True)
