"""DIV2K h5 patch loader.

Each training step's global batch is a pure function of (seed, step): sample i of the step draws its image,
crop, flips and rotation from its own generator seeded with (seed, step, i), and ``--scale 0`` draws the step's
scale from (seed, step). Under DDP, rank r of w materialises samples [r*B/w, (r+1)*B/w) of the same global
batch, so N processes train on exactly the batches one process would (``--batch_size`` is the global batch,
as in the authors' DataParallel code). Resuming at step k sees exactly the data an uninterrupted run sees,
with any world size and no sampler state to save.
Images are drawn uniformly with replacement (the authors shuffle epochs; over 800 images the two are
equivalent in expectation). Patches are read straight from the h5 file (one open handle per worker), so
the loader holds no copy of DIV2K in memory. ``--scale 0`` crops only the scale the step uses (the
authors crop all three scales for every sample and throw two away).
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset


class TrainDataError(ValueError):
    """Training data that cannot be used; the message names the file."""


class StepBatches(Dataset):
    """``dataset[step]`` -> a list of (hr, lr, scale): float tensors in [0,1], (B,3,P*s,P*s) and (B,3,P,P).

    ``scales``: the scales the run trains. ``per_step="one"``: one batch, at a scale drawn per step (the
    same on every rank); ``"all"``: one batch at every scale (OverNet's multi-scale loss).
    """

    def __init__(self, h5_path: str | Path, scales: tuple[int, ...], patch_size: int, batch_size: int,
                 seed: int = 0, rank: int = 0, world: int = 1, length: int = 10 ** 9, per_step: str = "one") -> None:
        if per_step not in ("one", "all"):
            raise ValueError(f"per_step is 'one' or 'all', not {per_step!r}")
        if batch_size % world:
            raise ValueError(f"a global batch of {batch_size} does not split evenly over {world} processes")
        self.path = Path(h5_path)
        if not self.path.is_file():
            raise TrainDataError(f"--train_data_path {self.path}: no such h5 file (make it with div2h5.py)")
        try:
            with h5py.File(self.path, "r") as f:
                missing = [f"X{s}" for s in scales if f"X{s}" not in f]
                if "HR" not in f or missing:
                    raise TrainDataError(f"--train_data_path {self.path}: not a training file of div2h5.py: lacks groups {['HR'] if 'HR' not in f else []}{missing}")
                self.n = len(f["HR"])
                small = [k for k in f["HR"] if min(f["HR"][k].shape[:2]) < patch_size * max(scales)]
        except OSError as e:
            raise TrainDataError(f"--train_data_path {self.path}: not a readable h5 file, truncated or foreign "
                                 f"({e})") from None
        if small:
            raise TrainDataError(f"--train_data_path {self.path}: HR image {small[0]} is smaller than patch "
                                 f"{patch_size} x {max(scales)}")
        self.scales, self.patch, self.batch = tuple(scales), patch_size, batch_size
        self.seed, self.length, self.per_step = seed, length, per_step
        self.first, self.local = rank * (batch_size // world), batch_size // world  # this rank's slice
        self._f: h5py.File | None = None

    def __len__(self) -> int:
        return self.length

    def _file(self) -> h5py.File:
        if self._f is None:  # opened lazily, once per worker process
            self._f = h5py.File(self.path, "r")
        return self._f

    def step_scale(self, step: int) -> int:
        """The scale of a step: the same on every rank (drawn from seed and step only)."""
        rng = np.random.default_rng([self.seed, step, 7919])
        return int(self.scales[rng.integers(len(self.scales))])

    def _crop(self, rng: np.random.Generator, idx: int, s: int) -> tuple[np.ndarray, np.ndarray]:
        f = self._file()
        lr_ds, hr_ds = f[f"X{s}"][str(idx)], f["HR"][str(idx)]
        p = self.patch
        y = int(rng.integers(0, lr_ds.shape[0] - p + 1))
        x = int(rng.integers(0, lr_ds.shape[1] - p + 1))
        lr = lr_ds[y:y + p, x:x + p]
        hr = hr_ds[y * s:(y + p) * s, x * s:(x + p) * s]
        if rng.random() < 0.5:
            lr, hr = lr[:, ::-1], hr[:, ::-1]
        if rng.random() < 0.5:
            lr, hr = lr[::-1], hr[::-1]
        k = int(rng.integers(4))
        return np.rot90(lr, k), np.rot90(hr, k)

    def _batch(self, step: int, s: int, salt: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        lrs, hrs = [], []
        for i in range(self.first, self.first + self.local):
            rng = np.random.default_rng([self.seed, step, salt, i])
            lr, hr = self._crop(rng, int(rng.integers(self.n)), s)
            lrs.append(lr)
            hrs.append(hr)
        to_t = lambda a: torch.from_numpy(np.ascontiguousarray(np.stack(a))).permute(0, 3, 1, 2).float().div_(255)  # noqa: E731
        return to_t(hrs), to_t(lrs), s

    def __getitem__(self, step: int) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
        if self.per_step == "all":
            return [self._batch(step, s, s) for s in self.scales]
        return [self._batch(step, self.step_scale(step), 0)]
