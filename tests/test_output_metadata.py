"""Output metadata stays true, as srkit-upscale writes it: a CMYK JPEG's CMYK ICC profile is not carried onto
the RGB output, a DPI past what JPEG stores is clamped (with a note) rather than wrapped, and the bit depths are
what the README says (16-bit grayscale stays 16-bit, 16-bit RGB comes out 8-bit)."""
from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms

from test_one_bad_file import photo

BIN = Path(sys.executable).parent


def _upscale(src: Path, out: Path, model: Path) -> subprocess.CompletedProcess:
    r = subprocess.run([str(BIN / "srkit-upscale"), "-i", str(src), "-o", str(out), "-n", str(model), "-s", "2",
                        "--cpu"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    return r


def png16_rgb(path: Path, a: np.ndarray) -> None:
    """A 16-bit RGB PNG (Pillow cannot write one), chunk by chunk."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    h, w, _ = a.shape
    raw = b"".join(b"\0" + a[y].astype(">u2").tobytes() for y in range(h))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_cmyk_profile_dropped_dpi_clamped_and_depths_as_documented(tmp_path, random_carn_m):
    src = tmp_path / "in"
    src.mkdir()
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    cmyk = srgb[:16] + b"CMYK" + srgb[20:]  # the header's data colour space: what a CMYK profile declares
    photo().convert("CMYK").save(src / "print.jpg", icc_profile=cmyk)
    photo(y=200).save(src / "screen.jpg", icc_profile=srgb)
    photo(y=150).save(src / "dense.jpg", dpi=(40000, 300))
    gray = (np.random.default_rng(0).random((20, 24)) * 65535).astype(np.uint16)
    Image.fromarray(gray).save(src / "gray16.png")
    png16_rgb(src / "rgb16.png", (np.random.default_rng(1).random((20, 24, 3)) * 65535).astype(np.uint16))
    assert Image.open(src / "print.jpg").mode == "CMYK" and Image.open(src / "gray16.png").mode == "I;16"
    out = tmp_path / "out"
    r = _upscale(src, out, random_carn_m)
    printed = Image.open(out / "print.jpg")
    assert printed.mode == "RGB" and not printed.info.get("icc_profile")
    assert Image.open(out / "screen.jpg").info["icc_profile"] == srgb  # a profile of the output's space is kept
    dense = Image.open(out / "dense.jpg").info["dpi"]
    assert tuple(round(d) for d in dense) == (65535, 600), dense
    assert f"note: {out / 'dense.jpg'}: DPI clamped to 65535, the largest .jpg stores" in r.stderr
    assert Image.open(out / "gray16.png").mode == "I;16"
    assert Image.open(out / "rgb16.png").mode == "RGB"  # 8-bit, as the README says
