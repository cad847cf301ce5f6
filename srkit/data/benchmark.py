"""Benchmark sets: find (HR, LR) pairs in three layouts and load them.

(a) ``<set>/x<s>/NAME_HR.png`` + ``NAME_LR.png`` (the SelfExSR release, as the authors' loaders expect);
(b) DIV2K validation: ``DIV2K_valid_HR/0801.png`` + ``DIV2K_valid_LR_bicubic/X<s>/0801x<s>.png``;
(c) a folder of HR images only: HR cropped so that HR/s is an integer size, LR = MATLAB bicubic imresize.
Files are paired by name, never by sort order.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from srkit.data.imageio import DEFAULT_MAX_PIXELS, ImageError, read_rgb8, scan_images
from srkit.data.imresize import imresize
from srkit.core.resize import sr_size, tile_step


class DatasetError(ValueError):
    """A benchmark folder that cannot be used as asked; the message names the folder or file."""


@dataclass(frozen=True)
class Pair:
    name: str                 # the HR file name, as written to the HR/ and SR/ output folders
    hr: Path
    lr: Path | None           # None: LR is generated from HR (layout c)


def scale_tag(scale: float) -> str:
    return f"x{int(scale)}" if float(scale).is_integer() else f"x{scale:g}"


def find_pairs(root: str | Path, scale: float) -> tuple[list[Pair], str]:
    """All pairs of the benchmark at ``root`` for ``scale``, and the layout letter found."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such benchmark folder")
    tag = scale_tag(scale)
    sub = root / tag
    if sub.is_dir() and any(p.name.endswith(("_HR.png", "_LR.png")) for p in sub.iterdir()):
        return _pairs_hr_lr(sub), "a"
    div_hr = root / "DIV2K_valid_HR"
    if div_hr.is_dir():
        return _pairs_div2k(root, div_hr, scale), "b"
    images = scan_images(root)  # a bad entry under an image name is reported when it is loaded
    if images:
        return [Pair(p.name, p, None) for p in images], "c"
    if any(root.glob("x*/*_HR.png")):
        raise DatasetError(f"{root}: has no {tag}/ folder of HR/LR pairs for scale {scale}")
    raise DatasetError(f"{root}: empty - expected x<s>/*_HR.png + *_LR.png pairs, DIV2K_valid_HR/, "
                       f"or HR images")


def _pairs_hr_lr(folder: Path) -> list[Pair]:
    hrs = {p.name[: -len("_HR.png")]: p for p in folder.glob("*_HR.png")}
    lrs = {p.name[: -len("_LR.png")]: p for p in folder.glob("*_LR.png")}
    _check_partners(folder, hrs, lrs)
    return [Pair(hrs[k].name, hrs[k], lrs[k]) for k in sorted(hrs)]


def _pairs_div2k(root: Path, hr_dir: Path, scale: float) -> list[Pair]:
    if not float(scale).is_integer():
        return [Pair(p.name, p, None) for p in sorted(hr_dir.glob("*.png"))]
    s = int(scale)
    lr_dir = root / "DIV2K_valid_LR_bicubic" / f"X{s}"
    hrs = {p.stem: p for p in hr_dir.glob("*.png")}
    if not lr_dir.is_dir():
        raise DatasetError(f"{lr_dir}: missing (DIV2K LR folder for x{s})")
    lrs = {}
    for p in lr_dir.glob("*.png"):
        m = re.fullmatch(rf"(.+)x{s}", p.stem)
        if not m:
            raise DatasetError(f"{p}: not named <HR name>x{s}.png")
        lrs[m.group(1)] = p
    _check_partners(lr_dir, hrs, lrs)
    return [Pair(hrs[k].name, hrs[k], lrs[k]) for k in sorted(hrs)]


def _check_partners(folder: Path, hrs: dict, lrs: dict) -> None:
    if not hrs and not lrs:
        raise DatasetError(f"{folder}: no images")
    lone_hr = sorted(set(hrs) - set(lrs))
    lone_lr = sorted(set(lrs) - set(hrs))
    if lone_hr or lone_lr:
        msg = [f"{hrs[k]}: no LR partner" for k in lone_hr] + [f"{lrs[k]}: no HR partner" for k in lone_lr]
        raise DatasetError("; ".join(msg))


def sr_name(image: str) -> str:
    """The file name an image's SR output is written under (``SR/``): its name with ``_HR`` made ``_SR``."""
    return image.replace("_HR", "_SR")


def check_sr_names(pairs: list[Pair]) -> None:
    """A DatasetError naming both files where two images would write one SR output (``photo_HR.png`` and
    ``photo_SR.png`` in a folder of HR images): refused before anything runs, rather than one overwriting
    the other."""
    seen: dict[str, Pair] = {}
    for p in pairs:
        other = seen.setdefault(sr_name(p.name), p)
        if other is not p:
            raise DatasetError(f"{other.hr} and {p.hr} would both be written to SR/{sr_name(p.name)}: rename one "
                               f"of them")


def crop_to_scale(hr: np.ndarray, scale: float) -> np.ndarray:
    """Crop HR (top-left kept) so that HR/scale is an integer size: a multiple of k*scale, k = tile_step."""
    unit = tile_step(scale) * scale  # smallest HR length that divides into an integer LR length
    h = int(math.floor(hr.shape[0] / unit + 1e-9) * unit + 0.5)
    w = int(math.floor(hr.shape[1] / unit + 1e-9) * unit + 0.5)
    return hr[:h, :w]


def make_lr(hr: np.ndarray, scale: float) -> np.ndarray:
    """LR from an HR already cropped by :func:`crop_to_scale`: MATLAB bicubic, output HR/scale exactly."""
    lr_hw = (int(round(hr.shape[0] / scale)), int(round(hr.shape[1] / scale)))
    return imresize(hr, scale=1.0 / scale, output_shape=lr_hw)


def load_pair(pair: Pair, scale: float, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, np.ndarray]:
    """(HR, LR) as uint8 HxWx3; checks that LR size times scale is the HR size."""
    hr = read_rgb8(pair.hr, max_pixels)
    if pair.lr is None:
        hr = crop_to_scale(hr, scale)
        if hr.shape[0] == 0 or hr.shape[1] == 0:
            raise ImageError(f"{pair.hr}: smaller than one LR pixel at x{scale:g}")
        return hr, make_lr(hr, scale)
    lr = read_rgb8(pair.lr, max_pixels)
    want = (sr_size(lr.shape[0], scale), sr_size(lr.shape[1], scale))
    if want != hr.shape[:2]:
        raise ImageError(f"{pair.lr}: LR {lr.shape[1]}x{lr.shape[0]} times {scale:g} is {want[1]}x{want[0]}, "
                         f"but HR {pair.hr.name} is {hr.shape[1]}x{hr.shape[0]}")
    return hr, lr
