"""Build benchmark folders in the x<s>/NAME_HR.png + NAME_LR.png layout from folders of HR images.

    python -m srkit.prepare_benchmark path/to/Urban100_HR --out datasets/benchmark/Urban100 --scales 2 3 4

HR is cropped to a multiple of s (top-left kept) and LR is made with the MATLAB-compatible bicubic imresize,
as the SelfExSR release does. Images that cannot be used are reported by name; the exit status is then 1.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from srkit.benchmark import crop_to_scale, make_lr, scale_tag
from srkit.imageio import ImageError, read_rgb8, scan_images, write_png


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
        except ImageError as e:
            errors.append(str(e))
            continue
        for s in scales:
            hr = crop_to_scale(img, s)
            if min(hr.shape[:2]) == 0:
                errors.append(f"{path}: too small for x{s:g}")
                continue
            lr = make_lr(hr, s)
            d = out / scale_tag(s)
            write_png(d / f"{path.stem}_HR.png", np.ascontiguousarray(hr))
            write_png(d / f"{path.stem}_LR.png", lr)
    return errors


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("hr_dir", type=Path, help="folder of HR images")
    p.add_argument("--out", type=Path, required=True, help="benchmark folder to write (e.g. datasets/benchmark/B100)")
    p.add_argument("--scales", type=float, nargs="+", default=[2, 3, 4])
    args = p.parse_args(argv)
    errors = prepare(args.hr_dir, args.out, args.scales)
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
