"""Parameters and Mult-Adds counted as the papers count them: convolutions only, for a 1280x720 output.

    srkit-complexity            # every registered family's reference models

A convolution's Mult-Adds are (output pixels) x (output channels) x (input channels / groups) x k_h x k_w.
The frozen mean-shift 1x1 convolutions are left out (they are not part of the network's learned body).
Parameters are every value of the model, as the released files hold them; :func:`paper_differences` says
which counting convention gives a paper's figure where it differs.
The input is 1280/s x 720/s. Every convolution here runs at a resolution proportional to the input, so the
count is taken on a small 16x9 input and scaled by the pixel ratio: exact, and instant. At x3 a paper's
figure is that of the fractional input 426.67x240; ``exact_input=False`` counts a real integer input of
426x240.
"""
from __future__ import annotations

from typing import Callable

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


def parameter_parts(model: nn.Module) -> dict[str, int]:
    """The parameter count and the parts a paper may leave out: ``biases`` (of the learned layers) and
    ``frozen`` (values that are not trained: the mean shifts' weights and biases)."""
    total = count_parameters(model)
    frozen = total - count_parameters(model, trainable_only=True)
    biases = sum(p.numel() for n, p in model.named_parameters() if n.endswith("bias") and p.requires_grad)
    return {"params": total, "biases": biases, "frozen": frozen}


# Conventions a paper's parameter count may follow, each as (words, the count it gives from parameter_parts)
CONVENTIONS: tuple[tuple[str, Callable[[dict], int]], ...] = (
    ("every value", lambda c: c["params"]),
    ("without the frozen mean-shift values", lambda c: c["params"] - c["frozen"]),
    ("without the biases", lambda c: c["params"] - c["biases"]),
    ("without the biases and the frozen mean-shift values", lambda c: c["params"] - c["biases"] - c["frozen"]),
)


def as_printed_k(n: int, k: int) -> bool:
    """Whether ``n`` parameters print as ``k``K (rounded to the nearest thousand)."""
    return round(n / 1000) == k


def table() -> list[dict]:
    """A row per registered family's reference configuration (``Family.examples``) and scale."""
    rows = []
    for fam in registry.families():
        for ex in fam.examples:
            net = fam.build(ex.arch)
            parts = parameter_parts(net)
            for s in ex.scales:
                rows.append({"model": ex.name, "scale": s, **parts, "paper_params_k": ex.paper_params_k,
                             "multadds_G": multadds_1280x720(net, s),
                             "multadds_int_input_G": multadds_1280x720(net, s, exact_input=False)})
    return rows


def paper_differences(rows: list[dict]) -> list[str]:
    """A line for each model whose count does not print as its paper's: what it holds, which convention
    gives the paper's figure, and whether the paper's other models fit that convention."""
    models = {r["model"]: r for r in rows if r["paper_params_k"] is not None}
    notes = []
    for name, r in models.items():
        k = r["paper_params_k"]
        if as_printed_k(r["params"], k):
            continue
        line = (f"{name}: {r['params']:,} counts every value of the model ({r['biases']:,} of them biases, "
                f"{r['frozen']:,} frozen mean-shift values); the paper prints {k}K.")
        fits = [(words, f) for words, f in CONVENTIONS[1:] if as_printed_k(f(r), k)]
        if not fits:
            notes.append(line + " No counting convention tried here gives it.")
            continue
        words, f = fits[0]
        line += f" The count {words} is {f(r):,}, the paper's figure"
        others = [(o, m) for o, m in models.items() if o != name]
        for o, m in others:
            same = as_printed_k(f(m), m["paper_params_k"])
            full = as_printed_k(m["params"], m["paper_params_k"])
            line += (f"; {o} counted so is {f(m):,}, " + ("its paper figure too" if same else
                     f"not its paper's {m['paper_params_k']}K, which is its full count" if full else
                     f"not its paper's {m['paper_params_k']}K"))
        consistent = all(as_printed_k(f(m), m["paper_params_k"]) for _, m in others)
        notes.append(line + ("." if consistent else
                             ": the paper's table did not count its models alike."))
    return notes
