"""Building OverNet from flags, and reading the flags back from a checkpoint's shapes."""
from __future__ import annotations

import math
from typing import Mapping

import torch

from overnet.overnet import OverNet


def build(*, upscale: int = 3, group: int = 4) -> OverNet:
    return OverNet(upscale=upscale, group=group)


def infer_flags(sd: Mapping[str, torch.Tensor]) -> dict:
    key = "upsample.up.body.0.weight_v"
    if key not in sd or "GDG1.RB1.SE.conv.0.weight" not in sd:
        return {"model": None}
    w = sd[key]
    r = int(round(math.sqrt(w.shape[0] / 64)))
    upscale = 4 if (r == 2 and "upsample.up.body.3.weight_v" in sd) else r
    return {"model": "overnet", "upscale": upscale, "group": 64 // w.shape[1]}


def describe(flags: Mapping) -> str:
    if flags.get("model") is None:
        return "not an OverNet checkpoint"
    return f"--upscale {flags['upscale']} --group {flags['group']} (serves scales up to x{flags['upscale']})"
