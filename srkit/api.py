"""The Python API in three lines:

    from srkit.api import load
    sr = load(NAME)                                     # released weights by name (downloaded if missing), or a path
    big = sr(Image.open("photo.png"), scale=2)          # PIL image in, PIL image out (any mode)

A float tensor (N,3,H,W) in [0, 1] works too and returns a tensor in [0, 1] (clamped, as images are). Any
output scale above 1 works: a scale the model serves runs natively (a model may serve real scales, see
``Family.check_scale``), others run at the nearest served scale above and are brought down with the MATLAB-compatible
bicubic imresize. The defaults are the fast ones: the fast path, tiles chosen per image from the memory
available (the whole image when it fits), and ``precision="auto"``: bf16 on a CPU that computes it natively,
fp16 on CUDA, else fp32 (``precision="fp32"`` opts out; srkit.inference.precision). CUDA is used when available. Nothing here changes process-wide state.

``load_model`` (the bare ``nn.Module`` and its architecture flags) and ``write_report`` are here too.
"""
from __future__ import annotations

import torch
from PIL import Image

from srkit.core import registry
from srkit.inference.predictor import Predictor, at_output_scale, pick_device
from srkit.inference.upscale import upscale_pil
from srkit.report import write_report
from srkit.weights.load import load_model

__all__ = ["Upscaler", "load", "load_model", "write_report"]


def check_tensor(x: torch.Tensor) -> torch.Tensor:
    """``x`` if it is what the model takes: a real floating-point (N, 3, H, W) tensor holding finite values;
    else a one-line ValueError saying what it is (as the command line refuses a NaN image)."""
    if x.dtype == torch.bool or x.is_complex() or not x.is_floating_point():
        raise ValueError(f"a {x.dtype} tensor: give a floating-point tensor in [0, 1]")
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"a tensor of shape {tuple(x.shape)}: give (N, 3, H, W) RGB (a single image: x[None]; "
                         f"grayscale: x.expand(-1, 3, -1, -1))")
    bad = int((~torch.isfinite(x)).sum())
    if bad:
        raise ValueError(f"a tensor holding {bad:,} NaN or infinite value(s); replace them first")
    return x


class Upscaler:
    """A loaded model with tiling and the fast path; call it with an image and an output scale."""

    def __init__(self, model: torch.nn.Module, arch: dict, device: torch.device, tile: int | None = None,
                 overlap: int = 20, self_ensemble: bool = False, half: bool = False, precision: str = "auto") -> None:
        self.arch, self.device = arch, device
        self.family = registry.get(arch["family"])
        self.predict = Predictor(model.to(device), tile=tile, overlap=overlap, ensemble=self_ensemble, half=half,
                                 precision=precision)
        self._at: dict[float, object] = {}

    def _for(self, scale: float):
        if scale not in self._at:
            self._at[scale] = at_output_scale(self.predict, self.family, self.arch, scale)
        return self._at[scale]

    def __call__(self, image: Image.Image | torch.Tensor, scale: float = 2) -> Image.Image | torch.Tensor:
        predict = self._for(scale)  # ValueError, in one line, for a scale that cannot be reached
        if isinstance(image, torch.Tensor):
            return predict(check_tensor(image).to(self.device).float(), scale).clamp(0, 1)
        return upscale_pil(predict, image, scale, self.device)


def load(name_or_path: str, device: str | torch.device | None = None, **kwargs) -> Upscaler:
    """Load any registered family's weights by manifest name or checkpoint path (architecture read from it).
    ``kwargs`` go to :class:`Upscaler` (tile, overlap, self_ensemble, precision; half=True is an
    alias of precision "fp16" on CUDA, "bf16" elsewhere)."""
    net, arch = load_model(name_or_path)
    dev = torch.device(device) if device is not None else pick_device(False)
    return Upscaler(net, arch, dev, **kwargs)
