"""Upscale any image (no HR, no metrics): any size (tiled), any common format and mode.

What happens to each mode:
- RGB, grayscale (L): 8-bit in, 8-bit out; grayscale runs as replicated RGB and is written back as grayscale
  (mean of the three output channels).
- RGBA / LA, and palette images with transparency: colour goes through the network, alpha is upscaled with
  bicubic interpolation and reattached (the network was never trained on alpha).
- Palette (P): converted to RGB (or RGBA); the SR image is written as RGB(A), not re-quantized to a palette.
- 16-bit grayscale (I;16) and 32-bit integer (I): read at full precision (/65535), written as 16-bit PNG.
  Pillow reads 16-bit *RGB* PNGs as 8-bit RGB, so those come out 8-bit.
- 1-bit, CMYK, YCbCr: converted to L / RGB first. Float (F): clipped to [0, 1], written as 16-bit.
Output keeps the input's file name (and so its format; JPEG is written at quality 95).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from srkit.imageio import ImageError, open_image, is_image
from srkit.resize import bicubic_resize, sr_size


@dataclass
class Decoded:
    rgb: np.ndarray              # float32 HxWx3 in [0, 1]
    alpha: np.ndarray | None     # float32 HxW in [0, 1]
    gray: bool
    bits: int                    # 8 or 16


def decode(img: Image.Image) -> Decoded:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img).astype(np.float32)
        a = np.clip(a if mode == "F" else a / 65535.0, 0, 1)
        return Decoded(np.repeat(a[:, :, None], 3, axis=2), None, True, 16)
    if mode in ("P", "PA"):
        img = img.convert("RGBA" if (mode == "PA" or "transparency" in img.info) else "RGB")
    elif mode == "1":
        img = img.convert("L")
    elif mode not in ("RGB", "RGBA", "L", "LA"):
        img = img.convert("RGB")
    alpha = None
    if img.mode in ("RGBA", "LA"):
        alpha = np.asarray(img.getchannel("A")).astype(np.float32) / 255.0
        img = img.convert("RGB" if img.mode == "RGBA" else "L")
    a = np.asarray(img).astype(np.float32) / 255.0
    gray = img.mode == "L"
    if gray:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return Decoded(a, alpha, gray, 8)


def encode(rgb: np.ndarray, alpha: np.ndarray | None, gray: bool, bits: int) -> Image.Image:
    """Float HxWx3 (+ alpha) in [0,1] -> PIL image of the input's kind, rounded (not truncated)."""
    x = np.clip(rgb, 0, 1)
    if gray:
        x = x.mean(axis=2)
    if bits == 16:
        return Image.fromarray(np.floor(x * 65535 + 0.5).astype(np.uint16))
    q = lambda v: np.floor(np.clip(v, 0, 1) * 255 + 0.5).astype(np.uint8)  # noqa: E731
    img = Image.fromarray(q(x), "L" if gray else "RGB")
    if alpha is not None:
        img.putalpha(Image.fromarray(q(alpha), "L"))
    return img


def upscale_pil(predict: Callable[[torch.Tensor, float], torch.Tensor], img: Image.Image, scale: float,
                device: torch.device) -> Image.Image:
    """SR of a PIL image of any mode (see the module docstring)."""
    d = decode(img)
    x = torch.from_numpy(np.ascontiguousarray(d.rgb)).permute(2, 0, 1)[None].to(device)
    sr = predict(x, scale)[0].permute(1, 2, 0).float().cpu().numpy()
    alpha = None
    if d.alpha is not None:
        h, w = d.alpha.shape
        a = torch.from_numpy(d.alpha)[None, None]
        alpha = bicubic_resize(a, (sr_size(h, scale), sr_size(w, scale)), scale)[0, 0].numpy()
    return encode(sr, alpha, d.gray, d.bits)


def _inputs(paths: list[str]) -> tuple[list[Path], list[str]]:
    files, errors = [], []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and is_image(q))
            if not found:
                errors.append(f"{p}: no images")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            errors.append(f"{p}: no such file or folder")
    return files, errors


def upscale_paths(predict: Callable, inputs: list[str], scale: float, out_dir: Path, device: torch.device) -> int:
    """Upscale every image file / folder in ``inputs`` into ``out_dir`` (same file names). Exit status."""
    files, errors = _inputs(inputs)
    done = 0
    for path in tqdm(files, desc=f"upscale x{scale:g}", unit="img"):
        try:
            img = open_image(path)
            sr = upscale_pil(predict, img, scale, device)
            out = out_dir / path.name
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(out.name + ".tmp")
            fmt = Image.registered_extensions().get(out.suffix.lower(), "PNG")
            sr.save(tmp, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
            tmp.replace(out)
            done += 1
        except (ImageError, RuntimeError, ValueError, OSError) as e:
            errors.append(str(e) if str(path) in str(e) else f"{path}: {e}")
    print(f"upscaled {done} image(s) into {out_dir}")
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    return 1 if errors else 0
