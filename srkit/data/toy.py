"""A small DIV2K-layout training set made from the photographs shipped with scikit-image, for a run of a minute
(``div2h5.py --toy N``) and the tests: crops at different offsets and flips, and a validation folder."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from srkit.data.imageio import write_png

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def _same(path: Path, img: np.ndarray) -> bool:
    try:
        with Image.open(path) as im:
            return np.array_equal(np.asarray(im), img)
    except Exception:  # noqa: BLE001 - anything unreadable is not the toy image
        return False


def make_toy_div2k(root: Path, size: int = 192, count: int = 16, div2k: Path | None = None) -> tuple[Path, Path]:
    """(the DIV2K folder, ``div2k`` or ``root/DIV2K``, holding ``DIV2K_train_HR/0001.png ...``: ``count``
    size x size crops; ``root/valid``: two HR images for validation). Run again into the same folder it keeps
    what is there. It writes nothing when the DIV2K folder holds anything else, or an image there or in
    ``valid`` differs from the one it would write (FileExistsError): the toy set may be pointed at real data."""
    from skimage import data

    div = Path(div2k) if div2k is not None else Path(root) / "DIV2K"
    hr_dir, val = div / "DIV2K_train_HR", Path(root) / "valid"
    photos = [np.asarray(getattr(data, name)())[:, :, :3] for name in PHOTOS]
    if any(min(p.shape[:2]) < size for p in photos):
        raise ValueError(f"the photographs are {min(min(p.shape[:2]) for p in photos)} px at the smallest: "
                         f"size {size} does not fit")
    files: dict[Path, np.ndarray] = {}
    for i in range(count):
        img, k = photos[i % len(photos)], i // len(photos)
        h, w = img.shape[:2]
        y, x = (k * 37) % (h - size + 1), (k * 53) % (w - size + 1)
        crop = img[y:y + size, x:x + size]
        files[hr_dir / f"{i + 1:04d}.png"] = np.ascontiguousarray(crop[:, ::-1] if k % 2 else crop)
    for name, img in zip(PHOTOS[:2], photos):
        files[val / f"{name}.png"] = np.ascontiguousarray(img[-96:, -120:])
    foreign = sorted(str(q) for q in div.rglob("*") if q.is_file() and q not in files) if div.is_dir() else []
    if foreign:
        raise FileExistsError(f"{div}: holds {len(foreign)} file(s) the toy set of {count} does not make (e.g. "
                              f"{foreign[0]}); it would be packed with the toy images: choose an empty or absent "
                              f"folder for the toy set")
    for path, img in files.items():  # every check before the first write
        if path.exists() and not _same(path, img):
            raise FileExistsError(f"{path}: exists and is not the toy image this would write; "
                                  f"choose an empty folder for the toy set")
    for path, img in files.items():
        if not path.exists():
            write_png(path, img)
    return div, val
