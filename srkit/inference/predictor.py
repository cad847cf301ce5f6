"""Predictors: a model wrapped with tiling, self-ensemble and the fast path, called on tensors.

Every predictor has the same two calls: ``predict(x, scale)`` (a (N,3,H,W) float tensor in, float tensor out)
and ``predict.uint8(x, scale)`` (one image in, HxWx3 uint8 out, quantized tile by tile as tiles finish).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from srkit.core.registry import Family, scale_text
from srkit.core.resize import sr_size
from srkit.data.imageio import quantize
from srkit.data.imresize import imresize
from srkit.inference.fast import prepare_fast, to_fast_input
from srkit.inference.plan import TilePlanner
from srkit.inference.precision import NAMES, resolve
from srkit.inference.tiling import forward_tiled, self_ensemble


class Predict(Protocol):
    """What the evaluation loop and the upscaler call."""

    def __call__(self, x: torch.Tensor, scale: float) -> torch.Tensor: ...

    def uint8(self, x: torch.Tensor, scale: float) -> np.ndarray: ...


def pick_device(force_cpu: bool) -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() and not force_cpu else "cpu")


def to_tensor(img: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).to(device).permute(2, 0, 1)[None].float().div_(255)


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """(1,3,H,W) float in [0,1] -> HxWx3 uint8, rounded (the authors' save_image truncates)."""
    return quantize(t[0].permute(1, 2, 0).float().cpu().numpy())


@dataclass
class Predictor:
    """model(x, scale) wrapped with tiling and self-ensemble; ``__call__`` takes and returns NCHW tensors.

    ``tile``: the tile core's side in LR pixels; None (the default) chooses per image: the whole image when
    its measured working set fits the memory available, else the fewest equal tiles that do
    (srkit.inference.plan); 0: always the whole image. ``fast=True`` runs the fast path of
    srkit.inference.fast (within ``FAST_PATH_ATOL`` of the plain forward, tested). ``precision``
    (srkit.inference.precision: "auto", "fp32", "bf16", "fp16") is the fast path's dtype; fp32 by default here,
    as evaluation runs; ``half=True`` is an alias of "fp16" on CUDA and "bf16" elsewhere. Outputs are float32;
    ``precision_name`` says what runs."""
    model: torch.nn.Module
    tile: int | None = None
    overlap: int = 20
    ensemble: bool = False
    fast: bool = True
    half: bool = False
    precision: str = "fp32"

    def __post_init__(self) -> None:
        self.device = next(self.model.parameters()).device
        if self.half:
            self.precision = "fp16" if self.device.type == "cuda" else "bf16"
        self.dtype: torch.dtype | None = resolve(self.precision, self.device, self.fast)
        self.precision_name = NAMES[self.dtype]
        if self.tile is not None and self.tile < 0:
            raise ValueError(f"tile {self.tile}: give a size in LR pixels, 0 for the whole image, or None")
        if self.overlap < 0:
            raise ValueError(f"overlap {self.overlap} must not be negative")
        self.net = prepare_fast(self.model, half=self.dtype) if self.fast else self.model.eval()
        self.planner = TilePlanner(self.net, self.device, self._dtype(), self._input)

    def _dtype(self) -> torch.dtype:
        return self.dtype or next(self.net.parameters()).dtype

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        # the plain forward runs in the model's own dtype (float64 in --debug_float64 training)
        return to_fast_input(x, self.dtype) if self.fast else x.to(self._dtype())

    def tiles(self, h: int, w: int, scale: float) -> tuple[int, int]:
        """The tile cores (height, width) a ``h`` x ``w`` input runs in; (0, 0): the whole image at once."""
        if self.tile is not None:
            return (self.tile, self.tile) if self.tile and (h > self.tile or w > self.tile) else (0, 0)
        return self.planner.tiles(h, w, scale, self.overlap)

    @torch.inference_mode()
    def uint8(self, x: torch.Tensor, scale: float) -> np.ndarray:
        """SR of one image (1,3,H,W) as HxWx3 uint8, quantized tile by tile as tiles finish: memory is one
        tile's working set plus the uint8 output, whatever the image size. Equal to ``to_uint8(self(x))``."""
        if self.ensemble:
            return to_uint8(self(x, scale))
        x = self._input(x)
        h, w = x.shape[-2:]
        out = np.empty((sr_size(h, scale), sr_size(w, scale), 3), np.uint8)

        def sink(y0: int, y1: int, x0: int, x1: int, core: torch.Tensor) -> None:
            out[y0:y1, x0:x1] = quantize(core[0].permute(1, 2, 0).float().cpu().numpy())
        forward_tiled(self.net, x, scale, self.tiles(h, w, scale), self.overlap, sink=sink)
        return out

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor, scale: float) -> torch.Tensor:
        x = self._input(x)
        tiles = self.tiles(*x.shape[-2:], scale)
        run = lambda t: forward_tiled(self.net, t, scale, tiles, self.overlap)  # noqa: E731
        return (self_ensemble(run, x) if self.ensemble else run(x)).float().contiguous()


class Rescaled:
    """A predictor for output scale ``out_scale`` that runs ``predict`` at ``model_scale`` (above it) and brings
    the result down to the exact size (``sr_size``) with the MATLAB-compatible bicubic imresize."""

    def __init__(self, predict: Predict, model_scale: float,
                 out_scale: float) -> None:
        self.predict, self.model_scale, self.out_scale = predict, model_scale, out_scale
        self.precision_name = getattr(predict, "precision_name", None)

    def __call__(self, x: torch.Tensor, scale: float) -> torch.Tensor:
        h, w = x.shape[-2:]
        big = self.predict(x, self.model_scale)
        out_hw = (sr_size(h, self.out_scale), sr_size(w, self.out_scale))
        frames = [imresize(f.permute(1, 2, 0).double().cpu().numpy(), scale=self.out_scale / self.model_scale,
                           output_shape=out_hw) for f in big]
        return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float().to(big.device)

    def uint8(self, x: torch.Tensor, scale: float) -> np.ndarray:
        return to_uint8(self(x, scale))


def model_scale_for(fam: Family, arch: dict, scale: float) -> float:
    """The scale the model runs at for output scale ``scale``: itself where the model serves it (a model
    may serve real scales), else the nearest served scale above it (the output is then brought
    down with the MATLAB-compatible imresize). ValueError when there is none."""
    if scale <= 1:
        raise ValueError(f"x{scale_text(scale)} is not an upscaling factor: give an output scale above 1")
    if fam.check_scale(arch, scale) is None:
        return scale
    above = [x for x in fam.served_scales(arch) if x >= scale]
    if not above:
        raise ValueError(f"x{scale_text(scale)}: {fam.check_scale(arch, scale)}, and it serves no larger scale to bring "
                         f"down from")
    return min(above)


def at_output_scale(predict: Predict, fam: Family, arch: dict, scale: float) -> Predict:
    """``predict`` for output scale ``scale`` (see :func:`model_scale_for`)."""
    m = model_scale_for(fam, arch, scale)
    return predict if m == scale else Rescaled(predict, m, scale)
