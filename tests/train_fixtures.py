"""A small DIV2K-layout folder made from real photographs shipped with scikit-image."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def make_div2k(root: Path, size: int = 192) -> tuple[Path, Path]:
    """(div2k folder with DIV2K_train_HR/0001.png ..., validation folder of HR images)."""
    hr_dir = root / "DIV2K" / "DIV2K_train_HR"
    hr_dir.mkdir(parents=True)
    val = root / "valid"
    val.mkdir()
    for i, name in enumerate(PHOTOS, 1):
        img = np.asarray(getattr(data, name)())[:, :, :3]
        Image.fromarray(img[:size, :size]).save(hr_dir / f"{i:04d}.png")
        if i <= 2:
            Image.fromarray(img[-96:, -120:]).save(val / f"{name}.png")
    return root / "DIV2K", val
