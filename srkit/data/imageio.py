"""Reading and writing images, with every odd mode either handled or refused with a clear message, and every
hostile file (decompression bomb, truncated, a folder or a symlink loop under an image name) named."""
from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from srkit.core.atomic import atomic_write

DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb limit (about 9459 x 9459)
_PIL_LIMIT = threading.Lock()

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif"}


class ImageError(ValueError):
    """An image that cannot be used; the message names the file and why."""


def failure(path: str | os.PathLike, e: BaseException, *names: str | os.PathLike) -> str:
    """One line for a file a folder loop could not use: the exception's first line where it names the file
    (or one of ``names``: its output), else the file, the exception's type and its first line. Pillow raises
    many types for damaged files (TypeError, SyntaxError, IndexError, KeyError, OverflowError, struct.error,
    ...), while decoding and while writing."""
    text = (str(e).strip().splitlines() or [""])[0]
    if any(str(n) in text for n in (path, *names)):
        return text
    if isinstance(e, ImageError):  # our own message, already saying what is wrong
        return f"{path}: {text}"
    return f"{path}: unreadable, corrupt or unwritable image ({type(e).__name__}: {text})"


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
    than ``max_pixels`` pixels (None or 0: no limit) is refused from its header, before it is decoded. This
    limit replaces Pillow's own for the call (no warning from Pillow, no second message)."""
    path = Path(path)
    check_path(path)
    try:
        with _PIL_LIMIT:  # Pillow's module-wide limit, lifted for this header read only: ours applies
            old, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                img = Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = old
        w, h = img.size
        if max_pixels and w * h > max_pixels:
            img.close()
            raise ImageError(f"{path}: {w}x{h} is {w * h:,} pixels, over the limit of {max_pixels:,} (a "
                             f"decompression bomb?); raise --max_pixels if you mean it")
        img.load()
        return img
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(f"{path}: unreadable or corrupt image ({e})") from None
    except Exception as e:  # noqa: BLE001 - any other type Pillow raises for a damaged file
        raise ImageError(failure(path, e)) from None


def frame_count(img: Image.Image) -> int:
    """How many frames (animation frames, TIFF pages) an opened image holds."""
    return int(getattr(img, "n_frames", 1) or 1)


def scan_images(folder: Path, recursive: bool = False) -> list[Path]:
    """Every entry of ``folder`` (and its subfolders, if ``recursive``) named like an image, files or not (a
    folder, a broken or looping link under an image name is then reported by :func:`open_image`, not
    silently skipped), sorted. Hidden entries are left out."""
    if not recursive:
        return sorted(p for p in folder.iterdir() if is_image(p) and not p.name.startswith("."))
    found = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / f for f in files if is_image(Path(f)) and not f.startswith(".")]
        found += [Path(root) / d for d in dirs if is_image(Path(d))]
    return sorted(found)


def save_image(img: Image.Image, path: Path, **params) -> None:
    """Write ``img`` to ``path`` atomically (srkit.core.atomic). The format follows the suffix (PNG if
    unknown)."""
    fmt = Image.registered_extensions().get(Path(path).suffix.lower(), "PNG")
    atomic_write(path, lambda tmp: img.save(tmp, format=fmt, **params))


def read_rgb8(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an 8-bit RGB or grayscale image as HxWx3 uint8 (grayscale replicated, as the authors' loader).

    This is the evaluation reader: modes the benchmark protocol does not define (alpha, 16-bit, palette,
    CMYK, float) and images of several frames are refused so that no score silently depends on a conversion
    or a chosen frame.
    """
    path = Path(path)
    img = open_image(path, max_pixels)
    if frame_count(img) > 1:
        raise ImageError(f"{path}: holds {frame_count(img)} frames (an animation or a multi-page file); a "
                         f"benchmark image is one frame")
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
    """Write an HxW or HxWx3 uint8 array as PNG, atomically."""
    atomic_write(path, lambda tmp: Image.fromarray(img).save(tmp, format="PNG"))
