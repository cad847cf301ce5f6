"""Upscale your own images with any registered model, with the flags people know from Real-ESRGAN's script.

    srkit-upscale -i photos/ -o photos_up/ -n NAME          # the model's own scale (a multi-scale model's largest)
    srkit-upscale -i img.jpg -o out/ -n NAME -s 3.5 --ext png
    srkit-upscale -i photos/ -o out/ -n runs/mine/best.pth -s 2 --suffix _x2

``-o`` is exactly the output folder: a folder input keeps its files' relative paths under it, a file its
name (``--suffix`` and ``--ext`` change the name). One scale per run: ``-s`` / ``--outscale`` is the output
scale, run natively where the model serves it (some models serve real scales) and otherwise at
the nearest served scale above it, then brought down with the MATLAB-compatible bicubic imresize; by default
the model's own scale (the largest, for a multi-scale model). Two inputs that would write one output, and an
output that would replace an input, are refused before anything runs.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from srkit.core import registry
from srkit.core.checkpoint import CheckpointError
from srkit.core.fetch import DownloadError
from srkit.core.registry import RegistryError
from srkit.cli.flags import add_arch_args, arch_flags_given, name_suffix, output_scale, path_arg, positive_int
from srkit.cli.sample import add_runtime_args, precision_of
from srkit.cli.video import add_video_args, upscale_inputs_videos
from srkit.data.imageio import DEFAULT_MAX_PIXELS
from srkit.inference.predictor import Predictor, at_output_scale, pick_device
from srkit.inference.upscale import INTERRUPTED, upscale_paths
from srkit.weights.load import load_model

EXTS = ("auto", "png", "jpg", "webp")
ARCH_GROUP = "architecture flags (rarely needed)"
ARCH_GROUP_HELP = ("-n picks the model; these only describe a checkpoint that does not say its own\n"
                   "architecture. Released names, the authors' files and files this project writes need\n"
                   "none; a flag given must agree with the file.")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-i", "--input", nargs="+", required=True, type=path_arg,
                   help="image or video files, or folders (searched recursively)")
    p.add_argument("-o", "--output", required=True, type=lambda t: Path(path_arg(t)), help="the output folder")
    p.add_argument("-n", "--model_name", required=True, type=path_arg,
                   help="the name of released weights (srkit-download --help lists them) or a checkpoint path")
    p.add_argument("-s", "--outscale", type=output_scale, default=None, dest="outscale",
                   help="the output scale, any real factor above 1 (default: the model's own)")
    p.add_argument("--suffix", default="", type=name_suffix, help="added to each output's file name stem (default: none)")
    p.add_argument("--ext", choices=EXTS, default="auto", help="output format; auto keeps the input's")
    p.add_argument("--max_pixels", type=positive_int, default=DEFAULT_MAX_PIXELS,
                   help="refuse input images of more pixels (decompression bombs)")
    add_runtime_args(p)
    add_video_args(p)
    add_arch_args(p.add_argument_group(ARCH_GROUP, ARCH_GROUP_HELP), registry.families())
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        net, arch = load_model(args.model_name, None, **arch_flags_given(args, registry.families()))
        fam = registry.get(arch["family"])
        scale = args.outscale or max(fam.default_scales(arch))
        scale = int(scale) if float(scale).is_integer() else scale
        device = pick_device(args.cpu)
        predict = Predictor(net.to(device), tile=args.tile, overlap=args.shave, ensemble=args.self_ensemble,
                            fast=not args.plain, half=args.half, precision=precision_of(args, True))
        predict = at_output_scale(predict, fam, arch, scale)
    except (CheckpointError, DownloadError, RegistryError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # while loading: nothing written yet (upscale_paths reports its own)
        print("interrupted: nothing was written", file=sys.stderr)
        return INTERRUPTED
    images, video_status = upscale_inputs_videos(predict, args, scale, device)  # videos: srkit.inference.video
    if video_status is not None and (video_status in (2, INTERRUPTED) or not images):
        return video_status
    status = upscale_paths(predict, images, scale, args.output, device, args.max_pixels, args.suffix, args.ext)
    return max(status, video_status or 0)


if __name__ == "__main__":
    sys.exit(main())
