"""DIV2K h5 patch batches, sampled as the authors' DataLoader samples them, as a pure function of the step.

The authors' loader (``shuffle=True, drop_last=True``, one random crop per image) makes each epoch a
permutation of the training images cut into batches, the last partial batch dropped: no image repeats within
an epoch. Here epoch e is the permutation drawn from (seed, e), and step t takes batch t mod (N // B) of
epoch t // (N // B). Sample i of a step draws its crop, flips and rotation from its own generator seeded with
(seed, step, i); ``--scale 0`` with one scale per step draws the step's scale from (seed, step). So:

- each step's global batch is a function of (seed, step) only: resuming at step k sees exactly the data an
  uninterrupted run sees, with any world size and no sampler state to save;
- under DDP, rank r of w materialises samples [r*B/w, (r+1)*B/w) of the same global batch, so N processes
  train on exactly the batches one process would (``--batch_size`` is the global batch, as in the authors'
  DataParallel code).

Patches are read straight from the h5 file (one open handle per worker), so the loader holds no copy of
DIV2K in memory. ``--scale 0`` crops only the scale the step uses (the authors crop all three scales for every
sample and throw two away). ``channel_order="BGR"`` feeds BGR patches, as an authors' div2h5 using cv2 stored
them; the default is RGB, as the papers test.

At set-up the file is checked: every group present and a group of the file itself (not a dataset, not an
external link), every image an HxWx3 uint8 dataset, every LR image the size of its HR divided by the scale
(a mislabelled group is named with its shape), no LR image smaller than the patch, and at least one batch
of images (drop_last leaves no batch otherwise).
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset


class TrainDataError(ValueError):
    """Training data that cannot be used; the message names the file, the group and the image."""


def _group(f: h5py.File, name: str, where: str) -> h5py.Group:
    """The group ``name`` of the file itself: a dataset, or a link into another file, is not what div2h5 writes."""
    link = f.get(name, getlink=True)
    if isinstance(link, h5py.ExternalLink):
        raise TrainDataError(f"{where}: {name} is an external link (to {link.filename}:{link.path}); div2h5.py "
                             f"writes the images into the training file itself")
    obj = f[name]
    if not isinstance(obj, h5py.Group):
        raise TrainDataError(f"{where}: {name} is a {type(obj).__name__.lower()}, not a group of images "
                             f"(div2h5.py stores one dataset per image: {name}/0, {name}/1, ...)")
    return obj


def _image(g: h5py.Group, name: str, key: str, where: str) -> tuple[int, ...]:
    """The shape of image ``key`` of group ``name``, which must be an HxWx3 uint8 dataset in the file."""
    if isinstance(g.get(key, getlink=True), h5py.ExternalLink):
        raise TrainDataError(f"{where}: {name}/{key} is an external link; div2h5.py writes the images into the "
                             f"training file itself")
    ds = g[key]
    if not isinstance(ds, h5py.Dataset):
        raise TrainDataError(f"{where}: {name}/{key} is a group, not an image")
    if ds.ndim != 3 or ds.shape[2] != 3:
        raise TrainDataError(f"{where}: {name}/{key} is {'x'.join(map(str, ds.shape)) or 'a scalar'}, not an "
                             f"HxWx3 RGB image (div2h5.py stores RGB, grayscale replicated)")
    if ds.dtype != np.uint8:
        raise TrainDataError(f"{where}: {name}/{key} holds {ds.dtype}, not uint8 (0-255, as div2h5.py stores "
                             f"images): training divides by 255; repack the images with div2h5.py")
    return tuple(ds.shape)


def check_h5(f: h5py.File, path: Path, scales: tuple[int, ...], patch: int, batch: int) -> int:
    """The number of training images, or TrainDataError naming what is wrong."""
    where = f"--train_data_path {path}"
    missing = [g for g in ("HR", *[f"X{s}" for s in scales]) if g not in f]
    if missing:
        raise TrainDataError(f"{where}: not a training file of div2h5.py: it has no group {', '.join(missing)}")
    groups = {g: _group(f, g, where) for g in ("HR", *[f"X{s}" for s in scales])}
    n = len(groups["HR"])
    for s in scales:
        if len(groups[f"X{s}"]) != n:
            raise TrainDataError(f"{where}: group X{s} holds {len(groups[f'X{s}'])} images, HR holds {n}")
    for i in range(n):
        key = str(i)
        if key not in groups["HR"]:
            raise TrainDataError(f"{where}: group HR has no image {key!r} (images are named 0 .. {n - 1})")
        hr = _image(groups["HR"], "HR", key, where)
        for s in scales:
            if key not in groups[f"X{s}"]:
                raise TrainDataError(f"{where}: group X{s} has no image {key!r}")
            lr = _image(groups[f"X{s}"], f"X{s}", key, where)
            want = (hr[0] // s, hr[1] // s)
            if tuple(lr[:2]) != want:
                raise TrainDataError(f"{where}: X{s}/{key} is {'x'.join(map(str, lr))}, but HR/{key} "
                                     f"{'x'.join(map(str, hr))} at x{s} needs {want[0]}x{want[1]}x3 (a group "
                                     f"of another scale?)")
            if min(lr[:2]) < patch:
                raise TrainDataError(f"{where}: X{s}/{key} is {lr[1]}x{lr[0]}, smaller than the LR patch "
                                     f"{patch}: lower --patch_size or leave the image out")
    if n < batch:
        raise TrainDataError(f"{where}: {n} images, fewer than one batch of {batch}: with the authors' sampling "
                             f"(each epoch a permutation, the last partial batch dropped) no batch can be made; "
                             f"lower --batch_size or add images")
    return n


class StepBatches(Dataset):
    """``dataset[step]`` -> a list of (hr, lr, scale): float tensors in [0,1], (B,3,P*s,P*s) and (B,3,P,P).

    ``scales``: the scales the run trains. ``per_step="one"``: one batch, at a scale drawn per step (the
    same on every rank); ``"all"``: one batch at every scale (each scale its own permutation of the images).
    """

    def __init__(self, h5_path: str | Path, scales: tuple[int, ...], patch_size: int, batch_size: int,
                 seed: int = 0, rank: int = 0, world: int = 1, length: int = 10 ** 9, per_step: str = "one",
                 channel_order: str = "RGB") -> None:
        if per_step not in ("one", "all"):
            raise ValueError(f"per_step is 'one' or 'all', not {per_step!r}")
        if channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order is 'RGB' or 'BGR', not {channel_order!r}")
        if batch_size % world:
            raise ValueError(f"a global batch of {batch_size} does not split evenly over {world} processes")
        self.path = Path(h5_path)
        if self.path.is_dir():
            raise TrainDataError(f"--train_data_path {self.path}: a folder, not an h5 file (make one with div2h5.py)")
        if not self.path.is_file():
            raise TrainDataError(f"--train_data_path {self.path}: no such h5 file (make it with div2h5.py)")
        try:
            with h5py.File(self.path, "r") as f:
                self.n = check_h5(f, self.path, tuple(scales), patch_size, batch_size)
        except OSError as e:
            raise TrainDataError(f"--train_data_path {self.path}: not a readable h5 file, truncated or foreign "
                                 f"({str(e).splitlines()[0]})") from None
        self.scales, self.patch, self.batch = tuple(scales), patch_size, batch_size
        self.seed, self.length, self.per_step, self.bgr = seed, length, per_step, channel_order == "BGR"
        self.first, self.local = rank * (batch_size // world), batch_size // world  # this rank's slice
        self.per_epoch = self.n // batch_size  # batches per epoch (drop_last)
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

    def images(self, step: int, salt: int = 0) -> np.ndarray:
        """The image indices of the step's global batch: its slice of its epoch's permutation."""
        epoch, k = divmod(step, self.per_epoch)
        perm = np.random.default_rng([self.seed, epoch, salt, 104729]).permutation(self.n)
        return perm[k * self.batch:(k + 1) * self.batch]

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
        picked = self.images(step, salt)
        for i in range(self.first, self.first + self.local):
            rng = np.random.default_rng([self.seed, step, salt, i])
            lr, hr = self._crop(rng, int(picked[i]), s)
            lrs.append(lr)
            hrs.append(hr)

        def to_t(a: list[np.ndarray]) -> torch.Tensor:
            x = np.stack(a)
            if self.bgr:
                x = x[..., ::-1]
            return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float().div_(255)
        return to_t(hrs), to_t(lrs), s

    def __getitem__(self, step: int) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
        if self.per_step == "all":
            return [self._batch(step, s, s) for s in self.scales]
        return [self._batch(step, self.step_scale(step), 0)]
