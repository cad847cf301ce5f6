"""A three-line Python API:

    from srkit.api import load
    sr = load("carn_m")                                 # manifest name (downloaded if missing) or a path
    big = sr(Image.open("photo.png"), scale=2)          # PIL image in, PIL image out (any mode)

A float tensor (N,3,H,W) in [0, 1] works too and returns a tensor. Large images are tiled; CUDA is used
when available. Any registered family (srkit.registry) loads; the architecture is read from the checkpoint.
``load(..., retain_memory=True)`` additionally makes the process keep freed memory for reuse on CPU
(srkit.memory: faster, but process-wide and permanent, so a library call never does it unasked).
"""
from __future__ import annotations

import torch
from PIL import Image

from srkit.models import load_model
from srkit.sampler import Predictor, pick_device
from srkit.upscale import upscale_pil


class Upscaler:
    """A loaded model with tiling and the fast path; call it with an image and a scale."""

    def __init__(self, model: torch.nn.Module, arch: dict, device: torch.device, tile: int = 512,
                 overlap: int = 20, self_ensemble: bool = False, retain_memory: bool = False) -> None:
        self.arch, self.device = arch, device
        self.predict = Predictor(model.to(device), tile=tile, overlap=overlap, ensemble=self_ensemble,
                                 retain_memory=retain_memory)

    def __call__(self, image: Image.Image | torch.Tensor, scale: float = 2) -> Image.Image | torch.Tensor:
        if isinstance(image, torch.Tensor):
            return self.predict(image.to(self.device).float(), scale)
        return upscale_pil(self.predict, image, scale, self.device)


def load(name_or_path: str, device: str | torch.device | None = None, **kwargs) -> Upscaler:
    """Load any registered family's weights by manifest name or checkpoint path (architecture read from it).
    ``kwargs`` go to :class:`Upscaler` (tile, overlap, self_ensemble, retain_memory)."""
    net, arch = load_model(name_or_path)
    dev = torch.device(device) if device is not None else pick_device(False)
    return Upscaler(net, arch, dev, **kwargs)
