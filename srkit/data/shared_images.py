"""The uint8 images of a DIV2K h5 file, read once into memory that every loader worker shares.

Each group (``HR``, ``X2`` ...) becomes one flat uint8 tensor in shared memory (``share_memory_``), the images
laid end to end with their offsets and shapes beside it: a worker, forked or spawned, maps the same pages, so
four workers hold one copy (their PSS splits it), and a crop is a slice of a view. Reading once replaces an
h5 hyperslab read per patch with a copy of the patch's bytes (docs/training.md has both rates, measured).

The data are the h5 file's own bytes, so a crop equals the hyperslab read of the same window bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch


def available_ram() -> int:
    """Bytes the kernel reports as available (MemAvailable), or 0 where /proc/meminfo is missing."""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def default_budget() -> int:
    """Half of the available RAM: the rest is the training process's, the workers' and the system's."""
    return available_ram() // 2


def h5_bytes(path: str | Path, groups: tuple[str, ...]) -> int:
    """The uint8 bytes of the images of ``groups`` in the h5 file."""
    with h5py.File(path, "r") as f:
        return sum(int(np.prod(ds.shape)) for g in groups for ds in f[g].values())


@dataclass
class Group:
    """One h5 group's images: ``flat`` holds image i at ``offsets[i]`` with shape ``shapes[i]`` (H, W, 3)."""
    flat: torch.Tensor
    offsets: np.ndarray
    shapes: np.ndarray
    _view: np.ndarray | None = field(default=None, repr=False)

    def __getstate__(self) -> dict:  # the numpy view is per process (pickling it would copy the images)
        return {"flat": self.flat, "offsets": self.offsets, "shapes": self.shapes, "_view": None}

    def image(self, i: int) -> np.ndarray:
        if self._view is None:
            self._view = self.flat.numpy()
        h, w, c = (int(v) for v in self.shapes[i])
        o = int(self.offsets[i])
        return self._view[o:o + h * w * c].reshape(h, w, c)


class SharedImages:
    """``images[group].image(i)``: image i of the group as a (H, W, 3) uint8 view of shared memory."""

    def __init__(self, groups: dict[str, Group]) -> None:
        self.groups = groups

    def __getitem__(self, group: str) -> Group:
        return self.groups[group]

    @property
    def nbytes(self) -> int:
        return sum(g.flat.numel() for g in self.groups.values())

    @classmethod
    def read(cls, path: str | Path, groups: tuple[str, ...], n: int) -> "SharedImages":
        """Read images 0 .. n-1 of each group once (in the main process, before any worker starts)."""
        out = {}
        with h5py.File(path, "r") as f:
            for g in groups:
                shapes = np.array([f[g][str(i)].shape for i in range(n)], dtype=np.int64)
                sizes = shapes.prod(axis=1)
                offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
                flat = torch.empty(int(sizes.sum()), dtype=torch.uint8)
                view = flat.numpy()
                for i in range(n):
                    f[g][str(i)].read_direct(view[offsets[i]:offsets[i] + sizes[i]].reshape(shapes[i]))
                out[g] = Group(flat.share_memory_(), offsets, shapes)
        return cls(out)

    def to(self, device: torch.device) -> dict[str, torch.Tensor]:
        """Each group's flat tensor on ``device`` (the --data_on_device mode)."""
        return {g: grp.flat.to(device) for g, grp in self.groups.items()}


def in_ram_or_none(path: str | Path, groups: tuple[str, ...], n: int, budget: int | None,
                   say=print) -> SharedImages | None:
    """The images in shared memory, or None (one line said) when they exceed ``budget`` bytes (None: half the
    available RAM; 0: never load, read from the h5 file)."""
    if budget == 0:
        return None
    budget = default_budget() if budget is None else budget
    need = h5_bytes(path, groups)
    if need > budget:
        say(f"--train_data_path {path}: its images take {need / 2**30:.1f} GiB, over the RAM budget of "
            f"{budget / 2**30:.1f} GiB (--data_ram_gb): reading patches from the h5 file instead (slower)")
        return None
    return SharedImages.read(path, groups, n)


__all__ = ["SharedImages", "Group", "in_ram_or_none", "available_ram", "default_budget", "h5_bytes"]
