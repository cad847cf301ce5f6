"""CARN and CARN-M (Ahn, Kang, Sohn: "Fast, Accurate, and Lightweight Super-Resolution with
Cascading Residual Network", ECCV 2018)."""
from carn.net import CARN, CARN_M

__all__ = ["CARN", "CARN_M"]
