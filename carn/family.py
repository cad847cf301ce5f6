"""CARN and CARN-M as a model family of the engine (srkit.core.registry): flags <-> checkpoint shapes, the
authors' recipe, the scales served."""
from __future__ import annotations

from typing import Any, Mapping

import torch

from carn.net import CARN, CARN_M, CascadingNet
from srkit.core.registry import ArchFlag, Example, Family, Pretrained, Recipe, register

DEFAULT_GROUP = {"carn": 1, "carn_m": 4}
RELEASE = "https://raw.githubusercontent.com/nmhkahn/CARN-pytorch/master/checkpoint/"

# The authors' released multi-scale weights (MIT). carn_m.pth's size and sha256 were measured on the file;
# carn.pth is checked by its git blob SHA-1, the hash its repository records.
PRETRAINED = (
    Pretrained("carn", "carn.pth", RELEASE + "carn.pth", "MIT",
               {"model": "carn", "group": 1, "reduce_upsample": False, "multi_scale": True},
               git_blob_sha1="2b9fb1eb75a2fdd47c1a4cc75bc505a8fa4fb504"),
    Pretrained("carn_m", "carn_m.pth", RELEASE + "carn_m.pth", "MIT",
               {"model": "carn_m", "group": 4, "reduce_upsample": False, "multi_scale": True}, size=1670695,
               sha256="d48a759a84509351facb6b7c6d5bd6edec98b98519b8c464ee4ab44d2ba964ff",
               git_blob_sha1="8d53d106ae139203ebc9c70bb5ec03c0e7cb84bd"),
)


def _adam(params, lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr)


class CarnFamily(Family):
    name = "carn"
    title = "CARN / CARN-M"
    paper = ("Ahn, Kang, Sohn: Fast, Accurate, and Lightweight Super-Resolution with Cascading Residual "
             "Network, ECCV 2018")
    license = "MIT (the authors' repository nmhkahn/CARN-pytorch and its released weights)"
    commercial_use = True
    models = ("carn", "carn_m")
    flags = (
        ArchFlag("model", str, "carn or carn_m", choices=("carn", "carn_m")),
        ArchFlag("group", int, "groups of the upsampling convs (and of CARN-M's residual-E convs); "
                               "default 1 for carn, 4 for carn_m"),
        ArchFlag("reduce_upsample", bool, "1x1 instead of 3x3 upsampling convolutions"),
    )
    extra_fields = {"multi_scale": bool, "scale": (int, type(None))}
    # the authors' train.py defaults; their READMEs' commands set patch, batch, steps and decay (see README)
    recipe = Recipe(optimizer=_adam, lr=1e-4, max_steps=200_000, decay=150_000)
    pretrained = PRETRAINED
    # the CARN paper's table: 1,592K and 412K parameters (Mult-Adds: srkit.core.complexity)
    examples = tuple(Example(m, {"model": m, "multi_scale": True, "scale": None, "group": DEFAULT_GROUP[m],
                                 "reduce_upsample": False}, (2, 3, 4), k)
                     for m, k in (("carn", 1592), ("carn_m", 412)))

    def build(self, arch: Mapping[str, Any]) -> CascadingNet:
        model = arch.get("model")
        if model not in self.models:
            raise ValueError(f"unknown model {model!r}: choose carn or carn_m")
        cls = CARN if model == "carn" else CARN_M
        group = arch.get("group")
        return cls(scale=arch.get("scale"), multi_scale=arch.get("multi_scale", True),
                   group=DEFAULT_GROUP[model] if group is None else group,
                   reduce_upsample=bool(arch.get("reduce_upsample")))

    def infer_flags(self, sd: Mapping[str, torch.Tensor]) -> dict | None:
        if "entry.weight" not in sd:
            return None
        if "b1.b2.body.0.weight" in sd:
            model = "carn"
        elif "b1.b1.body.4.weight" in sd:
            model = "carn_m"
        else:
            return None
        arch = {"model": model, "multi_scale": True, "scale": None, "group": DEFAULT_GROUP[model],
                "reduce_upsample": False}
        up = next((k for k in ("upsample.up2.body.0.weight", "upsample.up.body.0.weight") if k in sd), None)
        if up is None:  # no upsampling weights: the defaults, and load_weights names what is missing
            return arch
        w = sd[up]
        arch["multi_scale"] = up.startswith("upsample.up2")
        if not arch["multi_scale"]:
            arch["scale"] = 3 if w.shape[0] == 9 * 64 else (4 if "upsample.up.body.3.weight" in sd else 2)
        arch["group"] = 64 // w.shape[1]
        arch["reduce_upsample"] = w.shape[-1] == 1
        return arch

    def describe(self, arch: Mapping[str, Any]) -> str:
        parts = [f"--model {arch.get('model')}", f"--group {arch.get('group')}"]
        if arch.get("reduce_upsample"):
            parts.append("--reduce_upsample")
        parts.append("(multi-scale x2/x3/x4)" if arch.get("multi_scale") else f"(single-scale x{arch.get('scale')})")
        return " ".join(parts)

    def served_scales(self, arch: Mapping[str, Any]) -> tuple[int, ...]:
        return (2, 3, 4) if arch.get("multi_scale", True) else (int(arch["scale"]),)

    def train_arch(self, scale: int, given: Mapping[str, Any]) -> dict:
        model = given.get("model")
        if model is None:
            raise ValueError("--model is required: carn or carn_m")
        group = given.get("group")
        return {"model": model, "multi_scale": scale == 0, "scale": None if scale == 0 else scale,
                "group": DEFAULT_GROUP[model] if group is None else group,
                "reduce_upsample": bool(given.get("reduce_upsample"))}


FAMILY = register(CarnFamily())
