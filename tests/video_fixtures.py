"""Short videos made with PyAV for the video tests and the benchmark: sizes, audio, 10-bit, VFR, rotation."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


def frame_pixels(i: int, w: int, h: int) -> np.ndarray:
    """A moving pattern (edges and gradients) for frame ``i``, HxWx3 uint8."""
    y, x = np.mgrid[0:h, 0:w]
    r = (x * 255 // max(w - 1, 1) + 7 * i) % 256
    g = ((x + y + 3 * i) // 4 % 2) * 200 + 30
    b = (y * 255 // max(h - 1, 1) + 5 * i) % 256
    return np.stack([r, g, b], axis=2).astype(np.uint8)


def make_video(path: Path, frames: int = 6, size: tuple[int, int] = (64, 36), fps: int = 12, audio: bool = False,
               codec: str = "libx264", pix_fmt: str = "yuv420p", pts: list[int] | None = None,
               rotate: int = 0, subtitles: bool = False, options: dict | None = None) -> Path:
    """A video of ``frames`` frames at ``fps`` (``pts``: explicit timestamps in 1/(fps*10) units, for VFR),
    with a 48 kHz AAC stereo tone when ``audio``."""
    import av

    w, h = size
    with av.open(str(path), "w") as out:
        v = out.add_stream(codec, rate=fps)
        v.width, v.height, v.pix_fmt = w, h, pix_fmt
        v.codec_context.options = options or ({"crf": "10"} if codec.startswith("libx26") else {})
        tb = Fraction(1, fps * 10)
        v.time_base = v.codec_context.time_base = tb
        if rotate:
            v.set_display_rotation(rotate)
        sub = out.add_mux_stream("subrip") if subtitles else None
        if sub is not None:
            sub.time_base = Fraction(1, 1000)
        a = None
        if audio:
            a = out.add_stream("aac", rate=48000)
            a.layout = "stereo"
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(frame_pixels(i, w, h), format="rgb24")
            f.pts, f.time_base = (pts[i] if pts else i * 10), tb
            out.mux(v.encode(f))
        out.mux(v.encode(None))
        if sub is not None:
            for k, text in enumerate((b"first line", b"second line")):
                p = av.Packet(text)
                p.stream, p.pts, p.dts, p.duration, p.time_base = sub, 200 * k, 200 * k, 150, sub.time_base
                out.mux(p)
        if a is not None:
            n, step = int(48000 * frames / fps), 1024
            t = np.arange(n) / 48000
            tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for k in range(0, n, step):
                chunk = np.stack([tone[k:k + step]] * 2)
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="stereo")
                af.sample_rate, af.pts = 48000, k
                out.mux(a.encode(af))
            out.mux(a.encode(None))
    return path


def packets(path: Path, kind: str) -> list[tuple[bytes, int | None]]:
    """The (bytes, pts) of every packet of the first ``kind`` stream, in seconds*1e6 (comparable across files)."""
    import av

    with av.open(str(path)) as c:
        s = getattr(c.streams, kind)[0]
        return [(bytes(p), None if p.pts is None else round(float(p.pts * s.time_base) * 1e6))
                for p in c.demux(s) if p.size]


def frame_times(path: Path) -> list[float]:
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return [float(f.pts * s.time_base) for f in c.decode(s)]
