"""Reading and writing images, with every odd mode either handled or refused with a clear message, and every
hostile file (decompression bomb, truncated, a folder or a symlink loop under an image name) named."""
from __future__ import annotations

import errno
import os
import re
import threading
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb limit (about 9459 x 9459)
_PIL_LIMIT = threading.Lock()

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


class ImageError(ValueError):
    """An image that cannot be used; the message names the file and why."""


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTS


def check_path(path: Path) -> None:
    """An ImageError unless ``path`` is (a link to) a regular file: a folder, a symlink loop, a dangling link."""
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ImageError(f"{path}: a symlink loop") from None
        raise ImageError(f"{path}: {'a dangling symlink' if path.is_symlink() else 'no such file'}") from None
    if path.is_dir():
        raise ImageError(f"{path}: a folder, not an image")


def open_image(path: Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open and fully decode an image; any failure becomes an ImageError naming the file. An image of more
    than ``max_pixels`` pixels (None or 0: no limit) is refused from its header, before it is decoded."""
    path = Path(path)
    check_path(path)
    try:
        try:
            img = Image.open(path)
        except Image.DecompressionBombError:
            if max_pixels and max_pixels <= 2 * DEFAULT_MAX_PIXELS:
                raise
            with _PIL_LIMIT:  # the caller asked for a larger limit: lift Pillow's own, for this open only
                old, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
                try:
                    img = Image.open(path)
                finally:
                    Image.MAX_IMAGE_PIXELS = old
        w, h = img.size
        if max_pixels and w * h > max_pixels:
            raise ImageError(f"{path}: {w}x{h} is {w * h:,} pixels, over the limit of {max_pixels:,} (a "
                             f"decompression bomb?); raise --max_pixels if you mean it")
        img.load()
        return img
    except Image.DecompressionBombError as e:
        declared = re.search(r"\((\d+) pixels\)", str(e))
        size = f"declares {int(declared.group(1)):,} pixels" if declared else "declares too many pixels"
        raise ImageError(f"{path}: {size}, over the limit of {max_pixels or DEFAULT_MAX_PIXELS:,} (a decompression "
                         f"bomb?); raise --max_pixels if you mean it") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{path}: unreadable or corrupt image ({e})") from None


def scan_images(folder: Path) -> list[Path]:
    """Every entry of ``folder`` named like an image, files or not (a folder, a broken or looping link under an
    image name is then reported by :func:`open_image`, not silently skipped), sorted."""
    return sorted(p for p in folder.iterdir() if is_image(p))


def save_image(img: Image.Image, path: Path, **params) -> None:
    """Write ``img`` to ``path`` atomically (a temporary name, then renamed; nothing half-written is left under
    either name on failure). The format follows the suffix (PNG if unknown)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fmt = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    try:
        img.save(tmp, format=fmt, **params)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
    """Write an HxW or HxWx3 uint8 array as PNG, atomically (see save_image)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        Image.fromarray(img).save(tmp, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
