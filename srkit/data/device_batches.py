"""``--data_on_device``: the whole uint8 training set on the device, each step's crops, flips and rotations
one index gather there, no loader workers.

The host draws each sample's (image, y, x, flips, quarter turns) from the very generators ``StepBatches``
uses (a few integers per sample, no image bytes); the device turns them into flat indices: the offset of the
image, plus the crop's corner, plus the per-move table of where each output pixel comes from
(``train_data.moves_table``). So a batch is the bytes
``StepBatches`` gives, bit for bit, and costs one host-to-device copy of B x 5 integers.
"""
from __future__ import annotations

import numpy as np
import torch

from srkit.data.train_data import StepBatches, move_index, moves_table


class DeviceBatches:
    """``[step]`` -> the step's batches as uint8 (B,3,H,W) tensors on ``device``, equal to
    ``data.uint8(step)``. ``data`` must hold its images in memory (``data.memory``)."""

    def __init__(self, data: StepBatches, device: torch.device) -> None:
        if data.memory is None:
            raise ValueError("--data_on_device needs the images in memory (they exceed the RAM budget)")
        self.data, self.device = data, device
        self.flat = data.memory.to(device)
        self.offsets = {g: torch.from_numpy(grp.offsets).to(device) for g, grp in data.memory.groups.items()}
        self.widths = {g: torch.from_numpy(grp.shapes[:, 1].copy()).to(device) for g, grp in data.memory.groups.items()}
        self._tables: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.data)

    def _table(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, cols) within the crop of each output pixel, (16, size, size) each, on the device."""
        if size not in self._tables:
            m = moves_table(size)
            self._tables[size] = (torch.from_numpy(m // size).to(self.device), torch.from_numpy(m % size).to(self.device))
        return self._tables[size]

    def _gather(self, group: str, params: torch.Tensor, size: int, scale: int) -> torch.Tensor:
        """params (B, 4): image, y, x, move, on the device (y, x at LR scale) -> (B, size, size, 3) uint8."""
        rows, cols = self._table(size)
        img, y, x, move = params.unbind(1)
        width = self.widths[group][img]
        r = rows[move] + (y * scale)[:, None, None]
        c = cols[move] + (x * scale)[:, None, None]
        pix = self.offsets[group][img][:, None, None] + (r * width[:, None, None] + c) * 3
        ch = torch.arange(3, device=self.device)
        if self.data.bgr:
            ch = ch.flip(0)
        return self.flat[group][pix[..., None] + ch]

    def _batch(self, step: int, s: int, salt: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        d = self.data
        picked = d.images(step, salt)
        params = []
        for i in range(d.first, d.first + d.local):
            rng = np.random.default_rng([d.seed, step, salt, i])
            idx = int(picked[i])
            y, x, lf, ud, k = d.crop_params(rng, tuple(d.memory[f"X{s}"].shapes[idx]))
            params.append((idx, y, x, move_index(lf, ud, k)))
        p = torch.tensor(params, dtype=torch.int64).to(self.device, non_blocking=True)
        lr = self._gather(f"X{s}", p, d.patch, 1)
        hr = self._gather("HR", p, d.patch * s, s)
        return hr.permute(0, 3, 1, 2), lr.permute(0, 3, 1, 2), s

    def __getitem__(self, step: int) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
        return [self._batch(step, s, salt) for s, salt in self.data.step_scales(step)]
