"""A small DIV2K-layout training set made from the photographs shipped with scikit-image, for a run of a minute
(``div2h5.py --toy N``) and the tests: crops at different offsets and flips, and a validation folder."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from srkit.data.imageio import write_png

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def _put(path: Path, img: np.ndarray) -> None:
    """Write ``img`` as ``path``; an identical image already there is kept, any other file is refused (the toy set
    may be pointed at a folder that holds real data)."""
    if path.exists():
        try:
            with Image.open(path) as im:
                same = np.array_equal(np.asarray(im), img)
        except Exception:
            same = False
        if not same:
            raise FileExistsError(f"{path}: exists and is not the toy image this would write; "
                                  f"choose an empty folder for the toy set")
        return
    write_png(path, img)


def make_toy_div2k(root: Path, size: int = 192, count: int = 16) -> tuple[Path, Path]:
    """(``root/DIV2K`` holding ``DIV2K_train_HR/0001.png ...``: ``count`` size x size crops; ``root/valid``:
    two HR images for validation). Run again into the same folder it keeps what is there; it never overwrites
    a different image (FileExistsError)."""
    from skimage import data

    hr_dir = Path(root) / "DIV2K" / "DIV2K_train_HR"
    val = Path(root) / "valid"
    photos = [np.asarray(getattr(data, name)())[:, :, :3] for name in PHOTOS]
    if any(min(p.shape[:2]) < size for p in photos):
        raise ValueError(f"the photographs are {min(min(p.shape[:2]) for p in photos)} px at the smallest: "
                         f"size {size} does not fit")
    for i in range(count):
        img, k = photos[i % len(photos)], i // len(photos)
        h, w = img.shape[:2]
        y, x = (k * 37) % (h - size + 1), (k * 53) % (w - size + 1)
        crop = img[y:y + size, x:x + size]
        _put(hr_dir / f"{i + 1:04d}.png", np.ascontiguousarray(crop[:, ::-1] if k % 2 else crop))
    for name, img in zip(PHOTOS[:2], photos):
        _put(val / f"{name}.png", np.ascontiguousarray(img[-96:, -120:]))
    return Path(root) / "DIV2K", val
