"""torch.hub entry points:

    model = torch.hub.load("<owner>/<repo>", "carn_m", pretrained=True)      # or a local clone, source="local"
    sr = model(lr, 2)                                                        # forward(x, scale) as the authors'

``pretrained=True`` fetches the authors' released weights through the manifest (hash-verified; see
srkit.zoo for the cache folder and mirrors). Each entry's docstring names the paper and the license.
"""
from __future__ import annotations

import torch.nn as nn

from srkit import registry
from srkit.models import load_model

dependencies = ["torch", "numpy", "scipy", "PIL", "tqdm", "adamp", "safetensors"]


def _entry(model: str, manifest_name: str, pretrained: bool) -> nn.Module:
    if pretrained:
        return load_model(manifest_name)[0]
    fam = registry.family_of_model(model)
    example = next(e for e in fam.examples if e.name == manifest_name)
    return fam.build(example.arch).eval()


def carn(pretrained: bool = False) -> nn.Module:
    """CARN, multi-scale (x2, x3, x4): Ahn, Kang, Sohn, "Fast, Accurate, and Lightweight Super-Resolution with
    Cascading Residual Network", ECCV 2018. Weights: MIT license (nmhkahn/CARN-pytorch).
    forward(x, scale): x is (N, 3, H, W) RGB in [0, 1]."""
    return _entry("carn", "carn", pretrained)


def carn_m(pretrained: bool = False) -> nn.Module:
    """CARN-M, the mobile CARN, multi-scale (x2, x3, x4): Ahn, Kang, Sohn, ECCV 2018. Weights: MIT license
    (nmhkahn/CARN-pytorch). forward(x, scale): x is (N, 3, H, W) RGB in [0, 1]."""
    return _entry("carn_m", "carn_m", pretrained)


def overnet(scale: int = 4, pretrained: bool = False) -> nn.Module:
    """OverNet for x2, x3 or x4 (``scale`` picks the released model; each serves any real scale up to
    scale + 1): Behjati et al., "OverNet: Lightweight Multi-Scale Super-Resolution with Overscaling Network",
    WACV 2021. Weights: NON-COMMERCIAL RESEARCH USE ONLY (pbehjatii/OverNet-PyTorch).
    forward(x, scale): x is (N, 3, H, W) RGB in [0, 1]."""
    if scale not in (2, 3, 4):
        raise ValueError(f"OverNet was released for x2, x3 and x4, not x{scale}")
    return _entry("overnet", f"overnet_x{scale}", pretrained)
