"""srkit-upscale's video flags and where video inputs go (srkit.inference.video)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch


from srkit.inference.predictor import Predict
from srkit.inference.video import (DEFAULT_CRF, VideoError, VideoSettings, check_codec, default_codec, plan_videos,
                                   upscale_videos)


def _fps(text: str) -> float:
    v = float(text)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"{text}: a frame rate above 0")
    return v


def add_video_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("video (.mp4 .m4v .mov .mkv .webm .avi inputs)")
    g.add_argument("--video_codec", default=None,
                   help="the encoder (default: libx264, H.264; else the most widely playable one PyAV has)")
    g.add_argument("--crf", type=int, default=None,
                   help=f"constant rate factor of x264/x265/VP9/SVT-AV1 (default {DEFAULT_CRF}; 0 is lossless)")
    g.add_argument("--fps", type=_fps, default=None,
                   help="a constant output frame rate (frames repeated or dropped by time; default: the input's "
                        "timestamps, variable rates kept)")


def upscale_inputs_videos(predict: Predict, args: argparse.Namespace, scale: float,
                          device: torch.device) -> tuple[list[str], int | None]:
    """Upscale the videos among ``args.input``; (the inputs left for the image path, the videos' exit status,
    None when there were none)."""
    try:
        rest, jobs = plan_videos(args.input, Path(args.output), args.suffix)
        if not jobs:
            return rest, None
        settings = VideoSettings(check_codec(args.video_codec) if args.video_codec else default_codec(),
                                 args.crf, args.fps)
    except VideoError as e:
        print(f"error: {e}", file=sys.stderr)
        return [], 2
    return rest, upscale_videos(predict, jobs, scale, Path(args.output), device, settings)



