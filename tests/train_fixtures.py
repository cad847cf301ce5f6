"""A small DIV2K-layout folder made from real photographs shipped with scikit-image."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def make_div2k(root: Path, size: int = 192, count: int = 16) -> tuple[Path, Path]:
    """(div2k folder with DIV2K_train_HR/0001.png ... of ``count`` size x size crops of the photographs, at
    different offsets and flips; validation folder of two HR images)."""
    hr_dir = root / "DIV2K" / "DIV2K_train_HR"
    hr_dir.mkdir(parents=True)
    val = root / "valid"
    val.mkdir()
    photos = [np.asarray(getattr(data, name)())[:, :, :3] for name in PHOTOS]
    for i in range(count):
        img, k = photos[i % len(photos)], i // len(photos)
        h, w = img.shape[:2]
        y, x = (k * 37) % (h - size + 1), (k * 53) % (w - size + 1)
        crop = img[y:y + size, x:x + size]
        Image.fromarray(np.ascontiguousarray(crop[:, ::-1] if k % 2 else crop)).save(hr_dir / f"{i + 1:04d}.png")
    for name, img in zip(PHOTOS[:2], photos):
        Image.fromarray(np.ascontiguousarray(img[-96:, -120:])).save(val / f"{name}.png")
    return root / "DIV2K", val
