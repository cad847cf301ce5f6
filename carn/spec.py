"""Building CARN / CARN-M from flags, and reading the flags back from a checkpoint's shapes."""
from __future__ import annotations

from typing import Mapping

import torch

from carn.carn import CARN
from carn.carn_m import CARN_M

DEFAULT_GROUP = {"carn": 1, "carn_m": 4}


def build(model: str, *, scale: int | None = None, multi_scale: bool = True, group: int | None = None,
          reduce_upsample: bool = False) -> CARN | CARN_M:
    if model not in ("carn", "carn_m"):
        raise ValueError(f"unknown model {model!r}: choose carn or carn_m")
    cls = CARN if model == "carn" else CARN_M
    g = DEFAULT_GROUP[model] if group is None else group
    return cls(scale=scale, multi_scale=multi_scale, group=g, reduce_upsample=reduce_upsample)


def infer_flags(sd: Mapping[str, torch.Tensor]) -> dict:
    """Model, multi-scale/scale, group and reduce_upsample implied by a CARN-family state dict."""
    flags: dict = {}
    if "b1.b2.body.0.weight" in sd:
        flags["model"] = "carn"
    elif "b1.b1.body.4.weight" in sd:
        flags["model"] = "carn_m"
    else:
        return {"model": None}
    up = next((k for k in ("upsample.up2.body.0.weight", "upsample.up.body.0.weight") if k in sd), None)
    if up is None:
        return flags
    w = sd[up]
    flags["multi_scale"] = up.startswith("upsample.up2")
    if not flags["multi_scale"]:
        flags["scale"] = 3 if w.shape[0] == 9 * 64 else (4 if "upsample.up.body.3.weight" in sd else 2)
    flags["group"] = 64 // w.shape[1]
    flags["reduce_upsample"] = w.shape[-1] == 1
    return flags


def describe(flags: Mapping) -> str:
    if flags.get("model") is None:
        return "not a CARN or CARN-M checkpoint"
    parts = [f"--model {flags['model']}"]
    if "group" in flags:
        parts.append(f"--group {flags['group']}")
    if flags.get("reduce_upsample"):
        parts.append("--reduce_upsample")
    parts.append("(multi-scale x2/x3/x4)" if flags.get("multi_scale") else f"(single-scale x{flags.get('scale')})")
    return " ".join(parts)
