"""The toy training set of the tests: srkit.data.toy (photographs shipped with scikit-image)."""
from srkit.data.toy import PHOTOS, make_toy_div2k as make_div2k

__all__ = ["PHOTOS", "make_div2k", "packed_div2k"]


def packed_div2k(root, size: int = 96, count: int = 8):
    """A toy DIV2K of ``count`` images of ``size`` px under ``root``, packed by div2h5 into root/train.h5."""
    import div2h5
    div, _ = make_div2k(root, size=size, count=count)
    h5 = root / "train.h5"
    assert div2h5.main(["--div2k", str(div), "--out", str(h5)]) == 0
    return h5
