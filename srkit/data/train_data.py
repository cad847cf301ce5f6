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

By default the images are read once, before the workers start, into memory they all share
(``srkit.data.shared_images``: one copy, a crop is a slice); an h5 file over the RAM budget (``ram_budget``)
says so in one line and patches are read straight from the file (one open handle per worker), as with
``ram_budget=0``. Either way a batch is the same bytes. ``uint8_steps()`` gives the batches as uint8 (what
workers hand over: a quarter of float32's bytes); ``as_float`` makes the model's input of them on the device,
the very values ``dataset[step]`` holds. ``--scale 0`` crops only the scale the step uses (the authors crop all three scales for every
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

from srkit.data.shared_images import SharedImages, in_ram_or_none


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


_UNIT: dict[torch.device, torch.Tensor] = {}
_MOVES: dict[tuple[int, torch.device], torch.Tensor] = {}


def move_index(lr_flip: bool, ud_flip: bool, turns: int) -> int:
    return 8 * lr_flip + 4 * ud_flip + turns


def moves_table(p: int) -> np.ndarray:
    """(16, p, p): the flat source pixel (row * p + col) of each output pixel of a p x p window under each
    move (``move_index``), made by numpy's own ``[:, ::-1]``, ``[::-1]`` and ``rot90`` on an index grid."""
    grid = np.arange(p * p, dtype=np.int64).reshape(p, p)
    out = np.empty((16, p, p), dtype=np.int64)
    for lf in (0, 1):
        for ud in (0, 1):
            for k in range(4):
                g = grid[:, ::-1] if lf else grid
                out[move_index(lf, ud, k)] = np.rot90(g[::-1] if ud else g, k)
    return out


def _moves_on(p: int, device: torch.device) -> torch.Tensor:
    if (p, device) not in _MOVES:
        _MOVES[p, device] = torch.from_numpy(moves_table(p).reshape(16, p * p)).to(device)
    return _MOVES[p, device]


def place(hr: torch.Tensor, lr: torch.Tensor, moves: torch.Tensor, s: int,
          bgr: bool = False) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Flip and turn (B,H,W,3) uint8 windows by their moves, one gather on their device -> (B,3,H,W) uint8
    (NHWC in memory), channels reversed for ``bgr``."""
    def arrange(c: torch.Tensor) -> torch.Tensor:
        b, p = c.shape[0], c.shape[1]
        src = _moves_on(p, c.device)[moves][..., None].expand(-1, -1, 3)
        out = torch.gather(c.reshape(b, p * p, 3), 1, src)
        return (out.flip(-1) if bgr else out).reshape(b, p, p, 3).permute(0, 3, 1, 2)
    return arrange(hr), arrange(lr), s


def as_float(t: torch.Tensor) -> torch.Tensor:
    """The model's input of a uint8 (B,3,H,W) batch on any device: float32 in [0, 1], a lookup in the 256 values
    ``v / 255`` divided on the CPU (CUDA divides by a scalar as a multiply by its reciprocal, 1 ulp off for
    some v), laid out as the batch is (NHWC in memory)."""
    if t.device not in _UNIT:
        _UNIT[t.device] = torch.arange(256, dtype=torch.float32).div_(255).to(t.device)
    return _UNIT[t.device][t.permute(0, 2, 3, 1).int()].permute(0, 3, 1, 2)


class StepBatches(Dataset):
    """``dataset[step]`` -> a list of (hr, lr, scale): float tensors in [0,1], (B,3,P*s,P*s) and (B,3,P,P).

    ``scales``: the scales the run trains. ``per_step="one"``: one batch, at a scale drawn per step (the
    same on every rank); ``"all"``: one batch at every scale (each scale its own permutation of the images).
    ``ram_budget``: bytes the images may take in shared memory (None: half the available RAM; 0: h5 reads).
    """

    def __init__(self, h5_path: str | Path, scales: tuple[int, ...], patch_size: int, batch_size: int,
                 seed: int = 0, rank: int = 0, world: int = 1, length: int = 10 ** 9, per_step: str = "one",
                 channel_order: str = "RGB", ram_budget: int | None = 0, say=print) -> None:
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
        groups = ("HR", *[f"X{s}" for s in self.scales])
        self.memory: SharedImages | None = in_ram_or_none(self.path, groups, self.n, ram_budget, say)

    def __len__(self) -> int:
        return self.length

    def __getstate__(self) -> dict:  # a worker opens its own h5 handle
        return {**self.__dict__, "_f": None}

    def _file(self) -> h5py.File:
        if self._f is None:  # opened lazily, once per worker process
            self._f = h5py.File(self.path, "r")
        return self._f

    def _image(self, group: str, idx: int):
        """Image ``idx`` of a group: a shared-memory view, or the h5 dataset (read on slicing)."""
        if self.memory is not None:
            return self.memory[group].image(idx)
        return self._file()[group][str(idx)]

    def crop_params(self, rng: np.random.Generator, lr_shape: tuple[int, ...]) -> tuple[int, int, bool, bool, int]:
        """(y, x, flip left-right, flip up-down, quarter turns) of a sample, drawn as the authors' loader draws."""
        p = self.patch
        y = int(rng.integers(0, lr_shape[0] - p + 1))
        x = int(rng.integers(0, lr_shape[1] - p + 1))
        return y, x, bool(rng.random() < 0.5), bool(rng.random() < 0.5), int(rng.integers(4))

    def step_scale(self, step: int) -> int:
        """The scale of a step: the same on every rank (drawn from seed and step only)."""
        rng = np.random.default_rng([self.seed, step, 7919])
        return int(self.scales[rng.integers(len(self.scales))])

    def images(self, step: int, salt: int = 0) -> np.ndarray:
        """The image indices of the step's global batch: its slice of its epoch's permutation."""
        epoch, k = divmod(step, self.per_epoch)
        perm = np.random.default_rng([self.seed, epoch, salt, 104729]).permutation(self.n)
        return perm[k * self.batch:(k + 1) * self.batch]

    def _crop(self, rng: np.random.Generator, idx: int, s: int) -> tuple[np.ndarray, np.ndarray, int]:
        """(lr, hr) windows of image ``idx`` before flips and turns, and the move that takes them there."""
        lr_ds, hr_ds = self._image(f"X{s}", idx), self._image("HR", idx)
        p = self.patch
        y, x, lr_flip, ud_flip, k = self.crop_params(rng, lr_ds.shape)
        return lr_ds[y:y + p, x:x + p], hr_ds[y * s:(y + p) * s, x * s:(x + p) * s], move_index(lr_flip, ud_flip, k)

    def crops(self, step: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]]:
        """The step's windows as (hr, lr, moves, scale): uint8 (B,H,W,3) row copies and each sample's move
        (``place`` flips and turns them, on whichever device: a worker's cheapest hand-over)."""
        out = []
        for s, salt in self.step_scales(step):
            lrs, hrs, moves = [], [], []
            picked = self.images(step, salt)
            for i in range(self.first, self.first + self.local):
                rng = np.random.default_rng([self.seed, step, salt, i])
                lr, hr, m = self._crop(rng, int(picked[i]), s)
                lrs.append(lr)
                hrs.append(hr)
                moves.append(m)
            out.append((torch.from_numpy(np.stack(hrs)), torch.from_numpy(np.stack(lrs)),
                        torch.tensor(moves, dtype=torch.int64), s))
        return out

    def step_scales(self, step: int) -> list[tuple[int, int]]:
        """(scale, salt) of each batch of a step."""
        if self.per_step == "all":
            return [(s, s) for s in self.scales]
        return [(self.step_scale(step), 0)]

    def uint8(self, step: int) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
        """The step's batches as uint8 (B,3,H,W) tensors: what ``[step]`` holds, before ``as_float``."""
        return [place(*c, bgr=self.bgr) for c in self.crops(step)]

    def uint8_steps(self) -> "Uint8Steps":
        return Uint8Steps(self)

    def __getitem__(self, step: int) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
        return [(as_float(hr), as_float(lr), s) for hr, lr, s in self.uint8(step)]


class Uint8Steps(Dataset):
    """``[step]`` -> the step's windows as uint8 with their moves (``StepBatches.crops``): what loader
    workers return; ``place`` then ``as_float`` on the device make the model's input."""

    def __init__(self, data: StepBatches) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, step: int) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
        return self.data.crops(step)
