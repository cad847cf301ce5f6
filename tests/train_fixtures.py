"""The toy training set of the tests: srkit.data.toy (photographs shipped with scikit-image)."""
from srkit.data.toy import PHOTOS, make_toy_div2k as make_div2k

__all__ = ["PHOTOS", "make_div2k"]
