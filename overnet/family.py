"""OverNet as a model family of the engine (srkit.core.registry): flags <-> checkpoint shapes, the authors'
recipe (AdamP, the multi-scale loss), real-valued scales."""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from adamp import AdamP

from overnet.net import OverNet
from srkit.core.registry import ArchFlag, Example, Family, Pretrained, Recipe, register, scale_text

UPSCALES = (3, 4, 5, 8)  # overscaling factors the pixel-shuffle stages can build (x2 would overscale nothing)
RELEASE = "https://raw.githubusercontent.com/pbehjatii/OverNet-PyTorch/main/checkpoints/"
LICENSE = "non-commercial research use only"

# The authors' released single-scale models (x2, x3, x4: upscale = scale + 1), checked by their git blob SHA-1.
PRETRAINED = tuple(
    Pretrained(f"overnet_x{s}", f"OverNet_test_x{s}.pth.tar", f"{RELEASE}OverNet_test_x{s}.pth.tar", LICENSE,
               {"upscale": s + 1, "group": 4}, git_blob_sha1=blob)
    for s, blob in ((2, "81d0bc98c5f5c215212d433bb63a1a036375331f"), (3, "77b9875888639fa741dcbcf6f32d23afb42cdc7e"),
                    (4, "3e22b729e91786a707ced9aa09bff5bf51e10dd0")))


def _adamp(params, lr: float) -> torch.optim.Optimizer:
    return AdamP(params, lr)


class OverNetFamily(Family):
    name = "overnet"
    title = "OverNet"
    paper = ("Behjati, Rodriguez, Mehri, Hupont, Fernandez Tena, Gonzalez: OverNet: Lightweight Multi-Scale "
             "Super-Resolution with Overscaling Network, WACV 2021")
    license = "non-commercial research use only (the authors' repository pbehjatii/OverNet-PyTorch)"
    models = ("overnet",)
    flags = (
        ArchFlag("upscale", int, "overscaling factor (training default: scale + 1, and 5 for --scale 0)"),
        ArchFlag("group", int, "groups of the upsampling conv (4 in the paper)"),
    )
    # --scale 0: the paper's multi-scale loss, L(x2) + L(x3) + L(x4), each on its own batch of patches
    recipe = Recipe(optimizer=_adamp, lr=1e-3, max_steps=600_000, decay=150_000, scales_per_step="all")
    examples = tuple(Example(f"overnet_x{s}", {"model": "overnet", "upscale": s + 1, "group": 4}, (s,))
                     for s in (2, 3, 4))
    pretrained = PRETRAINED

    def build(self, arch: Mapping[str, Any]) -> OverNet:
        upscale, group = arch.get("upscale") or 3, arch.get("group") or 4
        if upscale not in UPSCALES or 64 % group:
            raise ValueError(f"no OverNet has upscale {upscale} and group {group} (upscale: one of "
                             f"{', '.join(map(str, UPSCALES))}; group: a divisor of 64)")
        return OverNet(upscale=upscale, group=group)

    def infer_flags(self, sd: Mapping[str, torch.Tensor]) -> dict | None:
        key = "upsample.up.body.0.weight_v"
        if key not in sd or "GDG1.RB1.SE.conv.0.weight" not in sd:
            return None
        w = sd[key]
        r = int(round(math.sqrt(w.shape[0] / 64)))
        stages = sum(1 for k in sd if k.startswith("upsample.up.body.") and k.endswith(".weight_v"))
        upscale = r ** stages  # x4 and x8 are two and three x2 stages
        return {"model": "overnet", "upscale": upscale, "group": 64 // w.shape[1]}

    def describe(self, arch: Mapping[str, Any]) -> str:
        return f"--upscale {arch.get('upscale')} --group {arch.get('group')} (serves scales up to x{arch.get('upscale')})"

    def served_scales(self, arch: Mapping[str, Any]) -> tuple[int, ...]:
        """The integer scales below the overscaling factor (the authors evaluate these)."""
        return tuple(range(2, int(arch["upscale"])))

    def default_scales(self, arch: Mapping[str, Any]) -> tuple[float, ...]:
        return (float(arch["upscale"] - 1),)  # the scale the released model was trained for

    def check_scale(self, arch: Mapping[str, Any], scale: float) -> str | None:
        u = arch["upscale"]
        return None if 1 < scale <= u else f"this OverNet (upscale {u}) serves 1 < s <= {u}, not {scale_text(scale)}"

    def run_name(self, arch: Mapping[str, Any]) -> str:
        return f"overnet_x{arch['upscale'] - 1}"

    def hub_variant(self, scale: int = 4, **kwargs: Any) -> str:
        """``overnet(scale=2|3|4)``: the released model of that scale."""
        if kwargs or scale not in (2, 3, 4):
            raise ValueError(f"OverNet was released for x2, x3 and x4 (scale=2|3|4), not {scale}")
        return f"overnet_x{scale}"

    def train_arch(self, scale: int, given: Mapping[str, Any]) -> dict:
        upscale = given.get("upscale") or (5 if scale == 0 else scale + 1)
        top = max(self.train_scales) if scale == 0 else scale
        if upscale <= top or upscale not in UPSCALES:
            raise ValueError(f"--upscale {upscale} must exceed every training scale (x{top}) and be one of "
                             f"{', '.join(map(str, UPSCALES))}")
        group = given.get("group")
        return {"model": "overnet", "upscale": upscale, "group": 4 if group is None else group}


FAMILY = register(OverNetFamily())
