"""Inference wrappers written once for every model: overlapping tiles and the x8 self-ensemble.

``forward_tiled`` generalizes the authors' 4-patch ``--shave`` chop: the LR image is cut into cores of
``tile`` pixels, each run with ``overlap`` extra pixels of context on every side, and only the core of each
output is kept, so memory is bounded by the tile size. Tile origins are multiples of ``tile_step(scale)``
so that at real-valued scales every tile samples the same bicubic grid as the whole image.

Models with global pooling (squeeze-excitation, a pooled global skip) need whole-image statistics:
``GlobalAvgPool`` layers take them from ``stat_passes`` preliminary passes over the tiles, each pass
measuring every pooled mean over the cores (which partition the image) with the previous pass's means
fixed; a pass stops each tile's forward once every pool has recorded it (the layers after the last pool, the
upsampler above all, cannot change the statistics). The statistics live in a context variable for the
duration of the call, not in the modules. With one pass a tiled model with pooling stays within
``TILING_ATOL`` of the whole-image forward (srkit.core.tolerances, tested).
"""
from __future__ import annotations

from typing import Callable

import torch

from srkit.core.layers import POOL_STATS, GlobalAvgPool, PoolStats, StatsComplete
from srkit.core.resize import sr_size, tile_step


def _axis_tiles(n: int, tile: int, overlap: int, step: int) -> list[tuple[int, int, int, int]]:
    """(start, end) of each core and of its window along one axis, all starts multiples of step. Windows are
    ``tile + 2 * overlap`` long wherever the image allows: an edge tile's window grows inward (more context,
    never less) instead of being clipped, so every tile runs at one shape and the allocator reuses its blocks
    instead of holding a block per edge-tile size."""
    tile = max(step, tile // step * step)
    overlap = -(-overlap // step) * step
    span = tile + 2 * overlap
    out = []
    for c0 in range(0, n, tile):
        c1 = min(c0 + tile, n)
        w0, w1 = max(0, c0 - overlap), min(n, c1 + overlap)
        if n >= span and w1 - w0 < span:
            w0, w1 = (0, span) if w0 == 0 else (max(0, (n - span) // step * step), n)
        out.append((c0, c1, w0, w1))
    return out


def forward_tiled(model: Callable, x: torch.Tensor, scale: float, tile: int | tuple[int, int], overlap: int,
                  stat_passes: int = 1, sink: Callable[[int, int, int, int, torch.Tensor], None] | None = None
                  ) -> torch.Tensor | None:
    """SR of ``x`` (N,3,H,W) computed tile by tile; ``tile`` is the core's side (or (height, width));
    ``tile <= 0`` or an image within one tile: one forward. With ``sink``, each tile's output core goes to
    ``sink(y0, y1, x0, x1, core)`` (output coordinates) as it is computed, and no full-size output is
    allocated (None is returned)."""
    h, w = x.shape[-2:]
    th, tw = (tile, tile) if isinstance(tile, int) else tile
    if th <= 0 or tw <= 0 or (h <= th and w <= tw):
        sr = model(x, scale)
        if sink is None:
            return sr
        sink(0, sr.shape[-2], 0, sr.shape[-1], sr)
        return None
    step = tile_step(scale)
    tiles = [(ty, tx) for ty in _axis_tiles(h, th, overlap, step) for tx in _axis_tiles(w, tw, overlap, step)]
    mods = getattr(model, "modules", None)
    pools = sum(isinstance(m, GlobalAvgPool) for m in mods()) if mods else 0
    stats = PoolStats(pools=pools)
    token = POOL_STATS.set(stats)
    try:
        for _ in range(stat_passes if pools else 0):
            stats.acc = {}
            for (cy0, cy1, wy0, wy1), (cx0, cx1, wx0, wx1) in tiles:
                stats.core, stats.seen = (cy0 - wy0, cy1 - wy0, cx0 - wx0, cx1 - wx0), set()
                try:
                    model(x[..., wy0:wy1, wx0:wx1], scale)
                except StatsComplete:  # every pool has its sums for this tile: the upsampler need not run
                    pass
            stats.fixed = {k: (v / (h * w)).float() for k, v in stats.acc.items()}
        stats.core = None
        out = None
        for (cy0, cy1, wy0, wy1), (cx0, cx1, wx0, wx1) in tiles:
            sr = model(x[..., wy0:wy1, wx0:wx1], scale)
            # cores start at multiples of step, so c*scale is an integer pixel of the output
            oy0, ox0 = round(cy0 * scale), round(cx0 * scale)
            oy1, ox1 = sr_size(cy1, scale), sr_size(cx1, scale)
            ly0, lx0 = round((cy0 - wy0) * scale), round((cx0 - wx0) * scale)
            core = sr[..., ly0:ly0 + oy1 - oy0, lx0:lx0 + ox1 - ox0]
            if sink is not None:
                sink(oy0, oy1, ox0, ox1, core)
                continue
            if out is None:
                out = sr.new_empty(*sr.shape[:2], sr_size(h, scale), sr_size(w, scale))
            out[..., oy0:oy1, ox0:ox1] = core
        return out
    finally:
        POOL_STATS.reset(token)


_TRANSFORMS = [(rot, flip) for flip in (False, True) for rot in range(4)]


def self_ensemble(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Geometric x8 self-ensemble: the mean of fn over the 4 rotations x 2 flips, each transformed back."""
    acc = None
    for rot, flip in _TRANSFORMS:
        t = torch.flip(x, dims=[-1]) if flip else x
        y = fn(torch.rot90(t, rot, dims=[-2, -1]))
        y = torch.rot90(y, -rot, dims=[-2, -1])
        y = torch.flip(y, dims=[-1]) if flip else y
        acc = y if acc is None else acc + y
    return acc / len(_TRANSFORMS)
