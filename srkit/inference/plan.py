"""How to cut an image into tiles: the whole image when it fits the memory budget, else equal tiles.

The memory a forward needs is measured, not guessed: :func:`live_bytes` runs the prepared model on a small
probe input under a dispatch mode that counts the bytes of every tensor the forward allocates and frees
(its peak of live bytes). Two probe sizes give a per-pixel slope; the estimate for an image is linear in its
pixels. The budget is a share of the memory available now (``/proc/meminfo`` on the CPU, the device's free
memory on CUDA), capped so that one tile's working set stays small next to the rest of the process.
Tiles then cover the image with equal cores and little padding: the fewest tiles that each fit the budget.
"""
from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from srkit.core.resize import tile_step

CPU_SHARE, CPU_CAP = 0.5, 3 * 2**30       # of MemAvailable, and at most this per tile
CUDA_SHARE = 0.6                          # of the device's free memory
PROBES = (32, 64)                         # LR sides of the two probe inputs


class _LiveBytes(TorchDispatchMode):
    """Counts the bytes of storages that ops create while they are alive; ``peak`` is the most at once."""

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self.seen: set[int] = set()

    def _free(self, key: int, n: int) -> None:
        self.live -= n
        self.seen.discard(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                storage = t.untyped_storage()
                key, n = storage.data_ptr(), storage.nbytes()
                if n and key not in self.seen:
                    self.seen.add(key)
                    self.live += n
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(t, self._free, key, n)
        return out


def live_bytes(run: Callable[[torch.Tensor], object], x: torch.Tensor) -> int:
    """The peak bytes of tensors alive at once while ``run(x)`` runs (its input not counted)."""
    mode = _LiveBytes()
    with torch.inference_mode(), mode:
        out = run(x)
    del out
    return mode.peak


def available_bytes(device: torch.device) -> int | None:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def budget_bytes(device: torch.device) -> int:
    """What one tile's forward may use on ``device`` now."""
    avail = available_bytes(device)
    if device.type == "cuda":
        return int(CUDA_SHARE * avail) if avail else 2**30
    return int(min(CPU_SHARE * avail, CPU_CAP)) if avail else 2**30


@dataclass
class MemoryModel:
    """bytes(h, w) = base + per_pixel * h * w: the measured working set of a forward at one scale."""
    base: float
    per_pixel: float

    def bytes(self, h: int, w: int) -> float:
        return self.base + self.per_pixel * h * w


def measure(run: Callable[[torch.Tensor, float], object], scale: float, device: torch.device,
            dtype: torch.dtype, prepare: Callable[[torch.Tensor], torch.Tensor]) -> MemoryModel:
    """Probe ``run`` (a prepared model's forward) at two small sizes."""
    peaks = []
    for side in PROBES:
        x = prepare(torch.rand(1, 3, side, side, device=device, dtype=torch.float32).to(dtype))
        peaks.append(live_bytes(lambda t: run(t, scale), x))
    a, b = PROBES[0] ** 2, PROBES[1] ** 2
    per_pixel = max((peaks[1] - peaks[0]) / (b - a), 1.0)
    return MemoryModel(max(peaks[0] - per_pixel * a, 0.0), per_pixel)


def equal_tiles(h: int, w: int, overlap: int, scale: float, fits: Callable[[int, int], bool]) -> tuple[int, int]:
    """The core size (th, tw) of the fewest equal tiles whose windows (core + 2 overlap) all fit; (0, 0) when
    the whole image fits. Cores are multiples of ``tile_step(scale)`` (real scales keep the bicubic grid)."""
    if fits(h, w):
        return 0, 0
    step = tile_step(scale)
    best = None
    for n in range(2, 4097):
        for ny in range(1, n + 1):
            if n % ny:
                continue
            nx = n // ny
            th = -(-math.ceil(h / ny) // step) * step
            tw = -(-math.ceil(w / nx) // step) * step
            if fits(min(h, th + 2 * overlap), min(w, tw + 2 * overlap)):
                waste = (th * ny * tw * nx) / (h * w)
                if best is None or waste < best[0]:
                    best = (waste, th, tw)
        if best is not None:
            return best[1], best[2]
    return step * 16, step * 16


@dataclass
class TilePlanner:
    """Chooses the tiles of each call from the image, the scale and the memory available then."""
    run: Callable[[torch.Tensor, float], object]
    device: torch.device
    dtype: torch.dtype
    prepare: Callable[[torch.Tensor], torch.Tensor]
    models: dict[float, MemoryModel] = field(default_factory=dict)

    def tiles(self, h: int, w: int, scale: float, overlap: int) -> tuple[int, int]:
        if scale not in self.models:
            self.models[scale] = measure(self.run, scale, self.device, self.dtype, self.prepare)
        model, budget = self.models[scale], budget_bytes(self.device)
        return equal_tiles(h, w, overlap, scale, lambda a, b: model.bytes(a, b) <= budget)
