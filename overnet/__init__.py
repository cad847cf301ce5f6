"""OverNet (Behjati, Rodriguez, Mehri, Hwang, Gonzalez, Gonfaus: "OverNet: Lightweight Multi-Scale
Super-Resolution with Overscaling Network", WACV 2021)."""
from overnet.net import OverNet

__all__ = ["OverNet"]
