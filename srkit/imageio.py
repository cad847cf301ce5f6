"""Reading and writing images, with every odd mode either handled or refused with a clear message."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


class ImageError(ValueError):
    """An image that cannot be used; the message names the file and why."""


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTS


def open_image(path: Path) -> Image.Image:
    """Open and fully decode an image; any failure becomes an ImageError naming the file."""
    try:
        img = Image.open(path)
        img.load()
        return img
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{path}: unreadable or corrupt image ({e})") from None


def read_rgb8(path: str | os.PathLike) -> np.ndarray:
    """Read an 8-bit RGB or grayscale image as HxWx3 uint8 (grayscale replicated, as the authors' loader).

    This is the evaluation reader: modes the benchmark protocol does not define (alpha, 16-bit, palette,
    CMYK, float) are refused so that no score silently depends on a conversion.
    """
    path = Path(path)
    img = open_image(path)
    if img.mode == "L":
        return np.repeat(np.asarray(img)[:, :, None], 3, axis=2)
    if img.mode == "RGB":
        return np.asarray(img).copy()
    raise ImageError(f"{path}: mode {img.mode!r} ({_describe(img.mode)}) is not an 8-bit RGB or grayscale "
                     f"image; benchmarks are scored on 8-bit RGB/grayscale only (convert it first)")


def _describe(mode: str) -> str:
    return {"RGBA": "RGB with alpha", "LA": "grayscale with alpha", "P": "palette", "PA": "palette with alpha",
            "I;16": "16-bit grayscale", "I;16B": "16-bit grayscale", "I": "32-bit integer", "F": "32-bit float",
            "CMYK": "CMYK", "1": "1-bit", "YCbCr": "YCbCr"}.get(mode, "unsupported mode")


def quantize(x: np.ndarray) -> np.ndarray:
    """Float in [0,1] -> uint8 image, rounding (half up, as MATLAB's im2uint8), not truncating."""
    return np.floor(np.clip(x, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def write_png(path: str | os.PathLike, img: np.ndarray) -> None:
    """Write an HxW or HxWx3 uint8 array as PNG (to a temporary name, then renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(img).save(tmp, format="PNG")
    os.replace(tmp, path)
