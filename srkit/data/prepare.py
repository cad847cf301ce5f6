"""Build benchmark folders in the x<s>/NAME_HR.png + NAME_LR.png layout from folders of HR images
(``srkit-prepare-benchmark``).

HR is cropped to a multiple of s (top-left kept) and LR is made with the MATLAB-compatible bicubic imresize,
as the SelfExSR release does. Images that cannot be used are reported by name.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from srkit.data.benchmark import crop_to_scale, make_lr, scale_tag
from srkit.data.imageio import failure, read_rgb8, scan_images, write_png


def prepare(hr_dir: Path, out: Path, scales: list[float]) -> list[str]:
    """Write ``out/x<s>/<stem>_HR.png`` and ``_LR.png`` for each image; returns the error messages."""
    if not hr_dir.is_dir():
        return [f"{hr_dir}: no such folder"]
    files = scan_images(hr_dir)
    if not files:
        return [f"{hr_dir}: no images"]
    errors = []
    for path in tqdm(files, desc=f"{hr_dir.name}", unit="img"):
        try:
            img = read_rgb8(path)
        except Exception as e:  # noqa: BLE001 - one bad file never stops the rest
            errors.append(failure(path, e))
            continue
        for s in scales:
            hr = crop_to_scale(img, s)
            if min(hr.shape[:2]) == 0:
                errors.append(f"{path}: too small for x{s:g}")
                continue
            d = out / scale_tag(s)
            try:
                lr = make_lr(hr, s)
                write_png(d / f"{path.stem}_HR.png", np.ascontiguousarray(hr))
                write_png(d / f"{path.stem}_LR.png", lr)
            except Exception as e:  # noqa: BLE001
                errors.append(failure(path, e, d))
    return errors
