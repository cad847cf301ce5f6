"""Video in and out with PyAV (FFmpeg's libraries, no binary): decode, upscale frame by frame, encode, with no
temporary image files and memory flat in the video's length (one frame in flight, plus the encoder's lookahead).

Kept: the time base and every frame's timestamp (so the frame rate, variable frame rates included), the
rotation (display matrix, or the old 'rotate' tag), every audio stream's packets untouched (remuxed, not
re-encoded), subtitle streams where the output container can hold their codec (the others are named as
dropped). ``fps`` resamples to a constant rate by timestamps (frames repeated or dropped), so audio stays in sync.

The default encoder is H.264 (libx264, else the most widely playable encoder present: see :func:`default_codec`)
at CRF 17, which does not visibly degrade an SR result. Odd output sizes, which 4:2:0 cannot hold, are encoded
4:4:4. Ctrl-C finishes the frames already encoded into a playable ``<name>.partial<ext>`` and says so.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from srkit.core.resize import sr_size
from srkit.inference.predictor import Predict

VIDEO_EXTS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")
# (encoder, what it is), best first: H.264 plays everywhere; MPEG-4 part 2 is in every FFmpeg build
PREFERRED_CODECS = ("libx264", "libopenh264", "h264", "mpeg4")
DEFAULT_CRF = 17
CRF_CODECS = ("libx264", "libx264rgb", "libx265", "libvpx", "libvpx-vp9", "libsvtav1")


class VideoError(ValueError):
    """A video that cannot be read or written; the message is one line naming the file."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a video; ``message`` says what was kept."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _av():
    try:
        import av
    except ImportError:
        raise VideoError("video needs PyAV: pip install av") from None
    return av


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTS


def scan_videos(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_video(p))


def _has_encoder(name: str) -> bool:
    av = _av()
    try:
        av.codec.Codec(name, "w")
        return True
    except (av.codec.codec.UnknownCodecError, ValueError):
        return False


def default_codec() -> str:
    """libx264 where the installed PyAV has it, else the most widely playable encoder present."""
    for name in PREFERRED_CODECS:
        if _has_encoder(name):
            return name
    raise VideoError(f"this PyAV has none of the encoders {', '.join(PREFERRED_CODECS)}; give --video_codec")


def check_codec(name: str) -> str:
    if not _has_encoder(name):
        raise VideoError(f"--video_codec {name}: this PyAV has no such encoder")
    return name


@dataclass
class VideoSettings:
    codec: str
    crf: int | None = None     # None: DEFAULT_CRF where the encoder takes a CRF
    fps: float | None = None   # None: the input's timestamps


def _pix_fmt(codec, w: int, h: int) -> str:
    names = [f.name for f in (codec.video_formats or ())]
    if "rgb24" in names and not any(n.startswith("yuv") for n in names):
        return "rgb24"
    if w % 2 == 0 and h % 2 == 0 and "yuv420p" in names:
        return "yuv420p"
    return "yuv444p" if "yuv444p" in names else (names[0] if names else "yuv420p")


def _rotation(frame, stream) -> int:
    """Counter-clockwise degrees to display the frame upright: the display matrix, else the 'rotate' tag."""
    rot = getattr(frame, "rotation", 0) or 0
    if not rot and "rotate" in stream.metadata:
        try:
            rot = -int(stream.metadata["rotate"])  # the tag is clockwise
        except ValueError:
            rot = 0
    return int(rot)


def _to_tensor(frame, device: torch.device) -> torch.Tensor:
    deep = frame.format.components and frame.format.components[0].bits > 8
    a = frame.to_ndarray(format="rgb48le" if deep else "rgb24")
    x = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].to(device).float()
    return x.div_(65535.0 if deep else 255.0)


class _Writer:
    """The output container, set up at the first frame (its size, format and rotation known then)."""

    def __init__(self, inp, src: Path, tmp: Path, settings: VideoSettings, scale: float) -> None:
        self.av = _av()
        self.inp, self.src, self.tmp, self.settings, self.scale = inp, src, tmp, settings, scale
        self.out = self.video = None
        self.copied: dict[int, object] = {}   # input stream index -> output stream
        self.dropped: list[str] = []
        self.waiting: list = []               # packets to copy that came before the first frame
        self.frames = 0

    def start(self, frame, vin) -> None:
        av = self.av
        self.out = av.open(str(self.tmp), "w")  # the container of the output's suffix (the input's)
        s = self.settings
        rate = (Fraction(s.fps).limit_denominator(1001) if s.fps
                else vin.average_rate or vin.guessed_rate or Fraction(25))
        v = self.out.add_stream(s.codec, rate=rate)
        v.width, v.height = sr_size(frame.width, self.scale), sr_size(frame.height, self.scale)
        v.pix_fmt = _pix_fmt(v.codec_context.codec, v.width, v.height)
        v.time_base = v.codec_context.time_base = (1 / Fraction(rate)) if s.fps else vin.time_base
        if s.codec in CRF_CODECS:
            v.codec_context.options = {"crf": str(DEFAULT_CRF if s.crf is None else s.crf),
                                       **({"b": "0"} if s.codec.startswith("libvpx") else {})}
        rot = _rotation(frame, vin)
        if rot:
            v.set_display_rotation(rot)
        self.video = v
        supported = self.out.supported_codecs
        for st in self.inp.streams:
            name = st.codec_context.name if st.codec_context is not None else "unknown codec"
            if st.type == "audio" or (st.type == "subtitle" and name in supported):
                self.copied[st.index] = self.out.add_stream_from_template(st)
            elif st.type == "subtitle":
                self.dropped.append(f"subtitles #{st.index} ({name}: {self.out.format.name} cannot hold them)")
            elif st.type not in ("video",) and st.type != "attachment":
                self.dropped.append(f"{st.type} stream #{st.index}")
        for p in self.waiting:
            self.copy(p)
        self.waiting = []

    def copy(self, packet) -> None:
        if packet.dts is None:  # a demuxer's flush packet
            return
        if self.out is None:
            self.waiting.append(packet)
            return
        ost = self.copied.get(packet.stream.index)
        if ost is not None:
            packet.stream = ost
            self.out.mux(packet)

    def write(self, rgb: np.ndarray, pts: int, time_base) -> None:
        f = self.av.VideoFrame.from_ndarray(rgb, format="rgb24")
        f.pts, f.time_base = pts, time_base
        self.out.mux(self.video.encode(f))
        self.frames += 1

    def discard(self) -> None:
        """Close the output after an error (the caller deletes it)."""
        if self.out is not None:
            try:
                self.out.close()
            except Exception:  # noqa: BLE001 - the output is being thrown away
                pass
            self.out = None

    def close(self) -> None:
        if self.out is None:
            return
        try:
            self.out.mux(self.video.encode(None))  # flush the encoder: every frame given is written
        finally:
            self.out.close()


def upscale_video(predict: Predict, src: Path, dst: Path, scale: float, device: torch.device,
                  settings: VideoSettings, progress: bool = True) -> int:
    """Upscale the first video stream of ``src`` into ``dst`` (same container); returns the frames written.
    Raises VideoError (one line) or Interrupted (Ctrl-C: what was kept)."""
    av = _av()
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.stem}.part{dst.suffix}")
    try:
        inp = av.open(str(src))
    except (av.FFmpegError, OSError) as e:
        raise VideoError(f"{src}: not a readable video ({_why(e)})") from None
    w = None
    try:
        if not inp.streams.video:
            raise VideoError(f"{src}: holds no video stream")
        vin = inp.streams.video[0]
        if vin.codec_context is None or vin.codec_context.codec is None:
            raise VideoError(f"{src}: its video codec is unknown to this PyAV")
        vin.thread_type = "AUTO"
        w = _Writer(inp, src, tmp, settings, scale)
        total = vin.frames or None
        unit = "frame" if total else "s"
        bar = tqdm(total=total or (float(inp.duration) / 1e6 if inp.duration else None), unit=unit,
                   desc=src.name, disable=not progress, leave=False)
        slot, held, n = None, None, 0  # --fps: the next output slot and the frame waiting for its successor
        try:
            for packet in inp.demux(*[s for s in inp.streams if s.type in ("video", "audio", "subtitle")]):
                if packet.stream.index != vin.index:
                    w.copy(packet)
                    continue
                for frame in packet.decode():
                    if w.out is None:
                        w.start(frame, vin)
                    sr = predict.uint8(_to_tensor(frame, device), scale)
                    t = float(frame.pts * vin.time_base) if frame.pts is not None else n / float(w.video.rate)
                    n += 1
                    if settings.fps:
                        slot = _emit_slots(w, held, t, slot, settings.fps)
                        held = (sr, t)
                    else:
                        w.write(sr, frame.pts, vin.time_base)
                    bar.update(1 if total else 0)
                    if not total and t is not None:
                        bar.n = round(t, 1)
                        bar.refresh()
            if settings.fps and held is not None:
                _emit_slots(w, held, held[1] + 1 / float(vin.average_rate or settings.fps), slot, settings.fps)
        except KeyboardInterrupt:
            bar.close()
            w.close()
            kept = dst.with_name(f"{dst.stem}.partial{dst.suffix}")
            if w.frames:
                os.replace(tmp, kept)
                raise Interrupted(f"interrupted: {kept} holds the first {w.frames} frame(s), playable") from None
            tmp.unlink(missing_ok=True)
            raise Interrupted(f"interrupted before the first frame of {src}: nothing written") from None
        bar.close()
        if w.out is None:
            raise VideoError(f"{src}: its video stream has no frames")
        w.close()
        os.replace(tmp, dst)
        for d in w.dropped:
            print(f"note: {dst}: {d} dropped", file=sys.stderr)
        return w.frames
    except (av.FFmpegError, UnicodeDecodeError, VideoError) as e:
        if w is not None:
            w.discard()
        tmp.unlink(missing_ok=True)
        if isinstance(e, VideoError):
            raise
        raise VideoError(f"{src}: {_why(e)}") from None
    finally:
        inp.close()


def _emit_slots(w: _Writer, held, until: float, slot: int | None, fps: float) -> int | None:
    """Write the held frame (shown from its time until its successor's, ``until``) into every constant-rate
    slot that starts before ``until``: a frame longer than a slot repeats, one shorter may be skipped."""
    if held is None:
        return slot
    sr, t = held
    slot = round(t * fps) if slot is None else slot
    while slot / fps < until - 0.5 / fps:
        w.write(sr, slot, w.video.time_base)
        slot += 1
    return slot


def _why(e: BaseException) -> str:
    text = getattr(e, "strerror", None) or str(e)  # FFmpeg's errors repeat the file name in str()
    return (text.splitlines() or [type(e).__name__])[0][:200]


def upscale_videos(predict: Predict, jobs: list[tuple[Path, Path]], scale: float, out_dir: Path,
                   device: torch.device, settings: VideoSettings, progress: bool = True) -> int:
    """Every (source, destination) video; one line per failure, the rest go on. Exit status 0 / 1; Ctrl-C
    ends the run after saying what was kept (status 130)."""
    done = frames = 0
    errors: list[str] = []
    for src, dst in jobs:
        try:
            frames += upscale_video(predict, src, dst, scale, device, settings, progress)
            done += 1
        except VideoError as e:
            errors.append(str(e))
        except Interrupted as e:
            print(e.message, file=sys.stderr)
            print(f"upscaled {done} of {len(jobs)} video(s) ({frames} frames) into {out_dir} before Ctrl-C")
            return 130
        except (RuntimeError, OSError) as e:
            errors.append(f"{src}: {_why(e)}")
    crf = f" crf {DEFAULT_CRF if settings.crf is None else settings.crf}" if settings.codec in CRF_CODECS else ""
    print(f"upscaled {done} of {len(jobs)} video(s) ({frames} frames) x{scale:g} into {out_dir} with "
          f"{settings.codec}{crf}" + (f"; {len(errors)} failed" if errors else ""))
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    return 1 if errors else 0


def plan_videos(inputs: list[str], out_dir: Path, suffix: str = "") -> tuple[list[str], list[tuple[Path, Path]]]:
    """(the inputs left for the image path, the video jobs): video files, and the videos inside folders (a
    folder goes to the image path too unless it holds only videos). An output that is its input is refused."""
    from srkit.data.imageio import scan_images

    rest, jobs = [], []
    for arg in inputs:
        p = Path(arg)
        if p.is_dir():
            found = [v for v in scan_videos(p) if out_dir.resolve() not in v.resolve().parents
                     or out_dir.resolve() == p.resolve()]
            jobs += [(v, out_dir / v.relative_to(p)) for v in found]
            if not found or scan_images(p, recursive=True):
                rest.append(arg)
        elif is_video(p):
            jobs.append((p, out_dir / p.name))
        else:
            rest.append(arg)
    jobs = [(s, d.with_name(d.stem + suffix + d.suffix)) for s, d in jobs]
    for s, d in jobs:
        if d.resolve() == s.resolve():
            raise VideoError(f"{d} is an input: its output would replace it; choose another output folder")
    return rest, jobs
