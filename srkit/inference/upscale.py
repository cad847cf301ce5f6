"""Upscale any image (no HR, no metrics): any size (tiled), any common format and mode.

What happens to each mode:
- RGB, grayscale (L): 8-bit in, 8-bit out; grayscale runs as replicated RGB and is written back as grayscale
  (mean of the three output channels).
- RGBA / LA, and palette images with transparency: colour goes through the network, alpha is upscaled with
  bicubic interpolation and reattached (the network was never trained on alpha).
- Palette (P): converted to RGB (or RGBA); the SR image is written as RGB(A), not re-quantized to a palette.
- 16-bit grayscale (I;16) and 32-bit integer (I): read at full precision (/65535), written as 16-bit PNG.
  Pillow reads 16-bit *RGB(A)* PNGs as 8-bit RGB(A), so those come out 8-bit.
- 1-bit, CMYK, YCbCr: converted to L / RGB first. Float (F): clipped to [0, 1], written as 16-bit; a float
  image holding NaN or infinity is refused (no network output is defined for it).
- Several frames (animated GIF / WebP / PNG, multi-page TIFF): every frame is upscaled, and the frame
  durations, the loop count and the disposal are kept.
Photos keep what makes them photos: EXIF orientation is applied to the pixels (the output displays like the
input, without a stale orientation tag); the ICC profile (unless it describes another colour space than the
output's, as a CMYK JPEG's does: the pixels were converted without it, so it is dropped), the DPI (times the
scale, clamped to the largest the output format stores, with a note) and the rest of the EXIF are carried over; JPEG is written at quality 95, with 4:4:4 sampling where the input had it. Hostile files
(decompression bombs, truncated files, folders or symlink loops under image names, outputs larger than
memory) are refused, each with one line.

Where outputs go (:func:`plan_outputs`): a folder input keeps its files' paths relative to it, a file input
its name; ``suffix`` and ``ext`` change the name. Two inputs that would write one output, an output that
would replace an input, and files inside the output folder (earlier outputs) are refused or skipped before
anything runs: an input is never an output.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, ImageSequence, JpegImagePlugin
from tqdm import tqdm

from srkit.data.imageio import (DEFAULT_MAX_PIXELS, ImageError, failure, frame_count, open_image, save_image,
                                scan_images)
from srkit.inference.predictor import Predict
from srkit.core.resize import bicubic_resize, sr_size


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
        if mode == "F" and not np.isfinite(a).all():
            raise ImageError(f"a float image holding {int((~np.isfinite(a)).sum()):,} NaN or infinite value(s); "
                             f"replace them first")
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


def upscale_pil(predict: Predict, img: Image.Image, scale: float,
                device: torch.device) -> Image.Image:
    """SR of a PIL image of any mode (see the module docstring)."""
    d = decode(img)
    x = torch.from_numpy(np.ascontiguousarray(d.rgb)).permute(2, 0, 1)[None].to(device)
    if d.bits == 8 and not d.gray and d.alpha is None:
        return Image.fromarray(predict.uint8(x, scale), "RGB")  # streamed: no full-size float image
    sr = predict(x, scale)[0].permute(1, 2, 0).float().cpu().numpy()
    alpha = None
    if d.alpha is not None:
        h, w = d.alpha.shape
        a = torch.from_numpy(d.alpha)[None, None]
        alpha = bicubic_resize(a, (sr_size(h, scale), sr_size(w, scale)), scale)[0, 0].numpy()
    return encode(sr, alpha, d.gray, d.bits)


def _memory_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


# Bytes per output pixel while one image is upscaled, counted: the float32 SR tensor (12), its numpy copy (12),
# the clipped array (12), the quantized one (3) and the encoder's buffer (3), rounded up for the alpha plane.
BYTES_PER_OUTPUT_PIXEL = 48


def check_output_fits(path: Path, size: tuple[int, int], scale: float) -> None:
    """Refuse, with the memory it would need, an output that cannot fit in the memory available now."""
    w, h = sr_size(size[0], scale), sr_size(size[1], scale)
    need, avail = w * h * BYTES_PER_OUTPUT_PIXEL, _memory_available()
    if avail is not None and need > avail:
        raise ImageError(f"{path}: the x{scale:g} output would be {w}x{h} and need about {_size(need)}, more than "
                         f"the {_size(avail)} available")


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.1f} MB"


def photo_params(img: Image.Image, shown: Image.Image, scale: float) -> dict:
    """What makes a photo a photo, for the output file: the ICC profile, the DPI scaled by ``scale``, the EXIF
    of ``shown`` (``upright(img)``: its orientation applied and removed), and JPEG's 4:4:4 sampling."""
    params = {}
    if img.info.get("icc_profile"):
        params["icc_profile"] = img.info["icc_profile"]
    if "dpi" in img.info:
        params["dpi"] = tuple(float(d) * scale for d in img.info["dpi"])
    exif = shown.getexif()
    if len(exif):
        params["exif"] = exif.tobytes()
    if img.format == "JPEG" and JpegImagePlugin.get_sampling(img) == 0:
        params["subsampling"] = 0
    return params


def upright(img: Image.Image) -> Image.Image:
    """The image as it displays: EXIF orientation applied to the pixels, and removed from its EXIF."""
    return ImageOps.exif_transpose(img)


def _frames(img: Image.Image) -> list[tuple[Image.Image, dict]]:
    """Each frame of ``img`` with its own ``info`` (duration, disposal), copied out."""
    out = []
    for frame in ImageSequence.Iterator(img):
        out.append((frame.copy(), dict(frame.info)))
    return out


def upscale_file(predict: Predict, path: Path, scale: float, out: Path, device: torch.device,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS) -> int:
    """Upscale one image file to ``out`` (the format of its suffix; JPEG quality 95), keeping its metadata
    and, for an animation or a multi-page file, every frame. Returns the number of frames written."""
    img = open_image(path, max_pixels)
    check_output_fits(path, img.size, scale)
    n = frame_count(img)
    if n > 1 and out.suffix.lower() not in MULTI_FRAME_EXTS:
        raise ImageError(f"{out}: a {out.suffix} file holds one frame and {path.name} has {n}; choose --ext png, "
                         f"webp or gif for it")
    if n > 1:
        frames = _frames(img)
        first = frames[0][0]
        check_output_fits(path, (first.size[0], first.size[1] * n), scale)
        params = photo_params(img, first, scale)
        outs = [upscale_pil(predict, f, scale, device) for f, _ in frames]
        params.update(save_all=True, append_images=outs[1:],
                      duration=[info.get("duration", img.info.get("duration", 100)) for _, info in frames])
        if "loop" in img.info:
            params["loop"] = img.info["loop"]
        disposal = [info.get("disposal", 0) for _, info in frames]
        if any(disposal) and out.suffix.lower() in (".gif", ".png", ".apng"):
            params["disposal"] = disposal
        sr = outs[0]
    else:
        shown = upright(img)
        params = photo_params(img, shown, scale)
        sr = upscale_pil(predict, shown, scale, device)
    _true_metadata(params, sr, out)
    if out.suffix.lower() in (".jpg", ".jpeg"):
        params["quality"] = 95
        if sr.mode in ("RGBA", "LA"):
            raise ImageError(f"{out}: JPEG has no alpha channel; choose --ext png or webp for {path.name}")
    try:
        save_image(sr, out, **params)
    except OSError as e:
        raise ImageError(f"{out}: cannot write the output ({e.strerror or e})") from None
    return n


INTERRUPTED = 130  # the shell's status for a command stopped by SIGINT

# The largest DPI each format stores: JPEG's JFIF density is 16-bit; PNG's pHYs is 32-bit pixels per metre.
MAX_DPI = {".jpg": 65535, ".jpeg": 65535, ".png": int((2**32 - 1) * 0.0254), ".apng": int((2**32 - 1) * 0.0254)}
ICC_SPACES = {"RGB": b"RGB ", "RGBA": b"RGB ", "L": b"GRAY", "LA": b"GRAY", "I;16": b"GRAY", "I": b"GRAY"}


def _true_metadata(params: dict, sr: Image.Image, out: Path) -> None:
    """Drop an ICC profile of another colour space than ``sr``'s (bytes 16-20 of the header name it); clamp a
    DPI the format cannot store (it would wrap around), saying so."""
    icc = params.get("icc_profile")
    if icc and icc[16:20] != ICC_SPACES.get(sr.mode):
        del params["icc_profile"]
    top = MAX_DPI.get(out.suffix.lower())
    if "dpi" in params and top and max(params["dpi"]) > top:
        params["dpi"] = tuple(min(d, top) for d in params["dpi"])
        print(f"note: {out}: DPI clamped to {top}, the largest {out.suffix} stores", file=sys.stderr)


MULTI_FRAME_EXTS = (".gif", ".png", ".apng", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class Job:
    src: Path
    dst: Path


class PlanError(ValueError):
    """Outputs that would collide with each other or with an input; nothing was written."""


def plan_outputs(inputs: list[str], out_dir: Path, suffix: str = "", ext: str = "auto",
                 exclude: Path | None = None) -> tuple[list[Job], list[str]]:
    """(what to write where, problems with the inputs themselves). Files under ``exclude`` (default: the
    output folder; earlier outputs) are not inputs. Raises PlanError, naming the files, when two inputs would
    write one output or an output would be an input."""
    out_dir = Path(out_dir)
    jobs, problems = [], []
    out_real = _real(exclude if exclude is not None else out_dir)
    for arg in map(Path, inputs):
        if arg.is_dir():
            inside = out_real != _real(arg)  # earlier outputs in a folder inside the input folder are not inputs
            found = [p for p in scan_images(arg, recursive=True) if not (inside and out_real in _real(p).parents)]
            if not found:
                problems.append(f"{arg}: no images")
            jobs += [Job(p, out_dir / p.relative_to(arg)) for p in found]
        else:
            jobs.append(Job(arg, out_dir / arg.name))  # open_image names what is wrong with it
    jobs = [Job(j.src, _named(j.dst, suffix, ext)) for j in jobs]
    by_dst: dict[Path, Job] = {}
    sources = {_real(j.src) for j in jobs if j.src.exists()}
    for j in jobs:
        key = _real(j.dst)
        if key in by_dst:
            raise PlanError(f"{by_dst[key].src} and {j.src} would both be written to {j.dst}: give them "
                            f"different names, or upscale them into different output folders")
        if key in sources:
            raise PlanError(f"{j.dst} is an input: the output of {j.src} would replace it; choose another "
                            f"output folder (or a --suffix)")
        by_dst[key] = j
    return jobs, problems


def _real(p: Path) -> Path:
    """The path with links resolved; never raises (a symlink loop resolves to itself)."""
    return Path(os.path.realpath(p))


def _named(dst: Path, suffix: str, ext: str) -> Path:
    new_ext = dst.suffix if ext == "auto" else "." + ext.lstrip(".")
    return dst.with_name(dst.stem + suffix + new_ext)


def upscale_paths(predict: Predict, inputs: list[str], scale: float, out_dir: Path, device: torch.device,
                  max_pixels: int | None = DEFAULT_MAX_PIXELS, suffix: str = "", ext: str = "auto",
                  progress: bool = True, exclude: Path | None = None) -> int:
    """Upscale every image file / folder in ``inputs`` into ``out_dir`` (see :func:`plan_outputs`). Exit
    status: 0 all written, 1 some failed, 2 the plan was refused (nothing written), 130 (128 + SIGINT)
    interrupted by Ctrl-C (what was written is said)."""
    try:
        jobs, errors = plan_outputs(inputs, out_dir, suffix, ext, exclude)
    except PlanError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    done = frames = 0
    bar = tqdm(jobs, desc=f"upscale x{scale:g}", unit="img", disable=not progress)
    try:
        for job in bar:
            try:
                frames += upscale_file(predict, job.src, scale, job.dst, device, max_pixels)
                done += 1
            except Exception as e:  # noqa: BLE001 - one bad file never stops the rest (srkit.data.imageio.failure)
                errors.append(failure(job.src, e, job.dst))
            bar.set_postfix(failed=len(errors))
    except KeyboardInterrupt:
        bar.close()
        print(f"interrupted: upscaled {done} of {len(jobs)} image(s) x{scale:g} into {out_dir}; no partial file "
              f"is left (each output is written whole or not at all)", file=sys.stderr)
        return INTERRUPTED
    extra = f" ({frames} frames)" if frames > done else ""
    ran = getattr(predict, "precision_name", None)
    print(f"upscaled {done} of {len(jobs)} image(s){extra} x{scale:g} into {out_dir}{f' ({ran})' if ran else ''}"
          + (f"; {len(errors)} failed" if errors else ""))
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    return 1 if errors else 0
