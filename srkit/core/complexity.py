"""Parameters and Mult-Adds counted as the papers count them: convolutions only, for a 1280x720 output.

    srkit-complexity            # every registered family's reference models

A convolution's Mult-Adds are (output pixels) x (output channels) x (input channels / groups) x k_h x k_w.
The frozen mean-shift 1x1 convolutions are left out (they are not part of the network's learned body).
The input is 1280/s x 720/s. Every convolution here runs at a resolution proportional to the input, so the
count is taken on a small 16x9 input and scaled by the pixel ratio: exact, and instant. At x3 a paper's
figure is that of the fractional input 426.67x240; ``exact_input=False`` counts a real integer input of
426x240.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from srkit.core import registry
from srkit.core.layers import MeanShift, count_parameters


def conv_multadds(model: nn.Module, x: torch.Tensor, *args) -> int:
    """Mult-Adds of every Conv2d (mean shifts excluded) in one forward of ``model(x, *args)``."""
    skip = {id(m.shifter) for m in model.modules() if isinstance(m, MeanShift)}
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        if id(mod) not in skip:
            kh, kw = mod.kernel_size
            total += out.numel() // out.shape[0] * (mod.in_channels // mod.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model(x, *args)
    finally:
        for h in handles:
            h.remove()
    return total


def multadds_1280x720(model: nn.Module, scale: int, exact_input: bool = True) -> float:
    """Mult-Adds in G for a 1280x720 output at ``scale`` (input 1280/s x 720/s, or its floor)."""
    per_pixel = conv_multadds(model.eval(), torch.zeros(1, 3, 9, 16), scale) / (9 * 16)
    h, w = 720 / scale, 1280 / scale
    if not exact_input:
        h, w = int(h), int(w)
    return per_pixel * h * w / 1e9


def table() -> list[dict]:
    """A row per registered family's reference configuration (``Family.examples``) and scale."""
    rows = []
    for fam in registry.families():
        for ex in fam.examples:
            net = fam.build(ex.arch)
            for s in ex.scales:
                rows.append({"model": ex.name, "scale": s, "params": count_parameters(net),
                             "multadds_G": multadds_1280x720(net, s),
                             "multadds_int_input_G": multadds_1280x720(net, s, exact_input=False)})
    return rows
