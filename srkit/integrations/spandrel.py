"""Every registered model family as a spandrel architecture, so that ComfyUI, chaiNNer and InvokeAI (which load
weights through spandrel's ``ModelLoader``) load the authors' files and this project's.

    from srkit.integrations import spandrel as srkit_spandrel
    srkit_spandrel.install()                   # families whose weights permit commercial use, into MAIN_REGISTRY
    srkit_spandrel.install_noncommercial()     # the others: only when the user accepts their license

Nothing changes in spandrel until one of these is called. Detection is exact: a state dict is ours when a
family's ``infer_flags`` recognises it *and* every key and shape of the model it implies matches, so no file of
another architecture is claimed. Our entries come after all of spandrel's own (``before=()``): none of
spandrel's detectors claims our files (tested), so none has to be overtaken, and spandrel's own files detect
exactly as before.

One descriptor per file, at one scale: spandrel's descriptor has one integer ``scale`` and the hosts load a file
with no further argument. A model serving several scales (a multi-scale file) loads at ``install(scale=...)``
where it serves it, else at its default (the largest for a multi-scale model, the trained one for a model
serving real scales) -- the same scale ``srkit-upscale`` uses without ``-s``. :func:`descriptor` gives any
served scale from Python.

Half precision is measured per file at load: bf16 and fp16 on the CPU (and fp16 on CUDA when present) against
float32 on a fixed test pattern, within ``HALF_MAX_LEVELS`` grey levels (srkit.core.tolerances).
"""
from __future__ import annotations

import copy
import math
from typing import Any, Mapping

import torch
import torch.nn as nn
from spandrel import (MAIN_REGISTRY, ArchRegistry, ArchSupport, Architecture, ImageModelDescriptor, ModelTiling,
                      SizeRequirements)

from srkit.core import registry
from srkit.core.registry import Family
from srkit.core.tolerances import HALF_MAX_LEVELS

ARCH_PREFIX = "srkit."
PROBE_SIZE = 8  # LR pixels of the pattern the half-precision measurement runs on


def _tensors(sd: Mapping[str, Any]) -> dict[str, torch.Tensor] | None:
    return dict(sd) if sd and all(isinstance(v, torch.Tensor) for v in sd.values()) else None


def match(fam: Family, sd: Mapping[str, Any]) -> dict | None:
    """The arch of ``fam`` whose model has exactly ``sd``'s keys and shapes; None otherwise."""
    tensors = _tensors(sd)
    if tensors is None:
        return None
    hit = registry.detect(tensors)
    if hit is None or hit[0] is not fam:
        return None
    try:
        own = fam.build(hit[1]).state_dict()
    except (ValueError, TypeError, KeyError):
        return None
    if set(own) != set(tensors) or any(own[k].shape != tensors[k].shape for k in own):
        return None
    return hit[1]


def _pattern(n: int) -> torch.Tensor:
    """A fixed image with edges, gradients and texture in [0, 1] (1,3,n,n)."""
    y, x = torch.meshgrid(torch.linspace(0, 1, n), torch.linspace(0, 1, n), indexing="ij")
    rings = 0.5 + 0.5 * torch.sin(40 * ((x - 0.5) ** 2 + (y - 0.5) ** 2))
    return torch.stack([x, rings, (x > y).float() * 0.8 + 0.1])[None]


@torch.inference_mode()
def _half_ok(net: nn.Module, scale: int, dtype: torch.dtype, device: torch.device) -> bool:
    """Whether ``net`` in ``dtype`` on ``device`` stays within HALF_MAX_LEVELS grey levels of float32."""
    x = _pattern(PROBE_SIZE)
    ref = net(x, scale).clamp(0, 1)
    try:
        low = copy.deepcopy(net).to(device=device, dtype=dtype)
        out = low(x.to(device=device, dtype=dtype), scale).float().cpu().clamp(0, 1)
    except (RuntimeError, NotImplementedError):  # a kernel missing for this dtype on this device
        return False
    diff = (out - ref).abs().max().item()
    return math.isfinite(diff) and diff * 255 <= HALF_MAX_LEVELS


def _scale(fam: Family, arch: dict, want: int | None) -> int:
    if want is not None and fam.check_scale(arch, want) is None:
        return want
    return int(max(fam.default_scales(arch)))


class FamilyArchitecture(Architecture[nn.Module]):
    """A registered family as one spandrel architecture (id ``srkit.<family>``)."""

    def __init__(self, fam: Family, scale: int | None = None) -> None:
        super().__init__(id=ARCH_PREFIX + fam.name, name=fam.title, detect=self._detect)
        self.family, self.scale = fam, scale

    def _detect(self, state_dict: Mapping[str, Any]) -> bool:
        return match(self.family, state_dict) is not None

    def load(self, state_dict: Mapping[str, Any]) -> ImageModelDescriptor[nn.Module]:
        return descriptor(state_dict, self.scale, self)


def descriptor(state_dict: Mapping[str, Any], scale: int | None = None,
               architecture: FamilyArchitecture | None = None) -> ImageModelDescriptor[nn.Module]:
    """A spandrel descriptor of ``state_dict`` (already canonicalized by spandrel) at ``scale`` (see the
    module docstring). ``descriptor.model`` is the authors' module (``forward(x, scale)``, their keys)."""
    fams = [architecture.family] if architecture else registry.families()
    for fam in fams:
        arch = match(fam, state_dict)
        if arch is not None:
            break
    else:
        raise ValueError("not a state dict of any registered model family")
    architecture = architecture or FamilyArchitecture(fam, scale)
    s = _scale(fam, arch, scale)
    net = fam.build(arch).eval()
    net.load_state_dict(dict(state_dict), strict=True)
    cuda = torch.cuda.is_available()
    cpu = torch.device("cpu")
    half = _half_ok(net, s, torch.float16, torch.device("cuda") if cuda else cpu)
    bf16 = _half_ok(net, s, torch.bfloat16, cpu)
    served = fam.served_scales(arch)
    tags = [fam.run_name(arch), "/".join(f"x{x}" for x in served)]
    return ImageModelDescriptor(net, dict(state_dict), architecture=architecture, purpose="SR", tags=tags,
                                supports_half=half, supports_bfloat16=bf16, scale=s, input_channels=3,
                                output_channels=3, size_requirements=SizeRequirements(),
                                tiling=ModelTiling.SUPPORTED, call_fn=lambda model, x: model(x, s))


def registries(scale: int | None = None) -> tuple[ArchRegistry, ArchRegistry]:
    """(families whose weights permit commercial use, the others), each as its own spandrel registry."""
    open_, closed = ArchRegistry(), ArchRegistry()
    for fam in registry.families():
        (open_ if fam.commercial_use else closed).add(ArchSupport.from_architecture(FamilyArchitecture(fam, scale)))
    return open_, closed


def install(registry_: ArchRegistry = MAIN_REGISTRY, scale: int | None = None) -> list[ArchSupport]:
    """Add the families whose weights permit commercial use to ``registry_`` (spandrel's main registry);
    already installed ones are kept. Returns what was added."""
    return registry_.add(*registries(scale)[0], ignore_duplicates=True)


def install_noncommercial(registry_: ArchRegistry = MAIN_REGISTRY, scale: int | None = None) -> list[ArchSupport]:
    """Add the families whose released weights are licensed for non-commercial use only (their license is
    in ``Family.license``): call it only if your use is covered."""
    return registry_.add(*registries(scale)[1], ignore_duplicates=True)
