"""A three-line Python API:

    from srkit.api import load
    sr = load("carn_m")                                 # manifest name (downloaded if missing) or a path
    big = sr(Image.open("photo.png"), scale=2)          # PIL image in, PIL image out (any mode)

A float tensor (N,3,H,W) in [0, 1] works too and returns a tensor. Large images are tiled; CUDA is used
when available. On CPU, loading also makes the process keep freed memory for reuse (``srkit.memory``: 1.2-3.2x
faster, the process holds its peak memory); ``load(..., retain_memory=False)`` leaves the allocator alone.
"""
from __future__ import annotations

import torch
from PIL import Image

from srkit.checkpoint import family_of, read_checkpoint
from srkit.sampler import Predictor, pick_device
from srkit.upscale import upscale_pil
from srkit.zoo import resolve


class Upscaler:
    """A loaded model with tiling and the fast path; call it with an image and a scale."""

    def __init__(self, model: torch.nn.Module, flags: dict, device: torch.device, tile: int = 512,
                 overlap: int = 20, self_ensemble: bool = False, retain_memory: bool = True) -> None:
        self.flags, self.device = flags, device
        self.predict = Predictor(model.to(device), tile=tile, overlap=overlap, ensemble=self_ensemble,
                                 retain_memory=retain_memory)

    def __call__(self, image: Image.Image | torch.Tensor, scale: float = 2) -> Image.Image | torch.Tensor:
        if isinstance(image, torch.Tensor):
            return self.predict(image.to(self.device).float(), scale)
        return upscale_pil(self.predict, image, scale, self.device)


def load(name_or_path: str, device: str | torch.device | None = None, **kwargs) -> Upscaler:
    """Load CARN, CARN-M or OverNet weights by manifest name or checkpoint path (architecture read from it)."""
    path, _ = resolve(name_or_path)
    sd, _ = read_checkpoint(path)
    if family_of(sd) == "overnet":
        from overnet.sample import load_model as load_overnet
        net, flags = load_overnet(name_or_path)
    else:
        from carn.sample import load_model as load_carn
        net, flags = load_carn(name_or_path)
    dev = torch.device(device) if device is not None else pick_device(False)
    return Upscaler(net, flags, dev, **kwargs)
