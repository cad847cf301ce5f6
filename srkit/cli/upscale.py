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
from srkit.cli.flags import add_arch_args, arch_flags_given, output_scale, positive_int
from srkit.cli.sample import add_runtime_args, precision_of
from srkit.data.imageio import DEFAULT_MAX_PIXELS
from srkit.inference.predictor import Predictor, at_output_scale, pick_device
from srkit.inference.upscale import upscale_paths
from srkit.weights.load import load_model

EXTS = ("auto", "png", "jpg", "webp")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-i", "--input", nargs="+", required=True, help="image files or folders (searched recursively)")
    p.add_argument("-o", "--output", required=True, type=Path, help="the output folder")
    p.add_argument("-n", "--model_name", required=True,
                   help="the name of released weights (srkit-download --help lists them) or a checkpoint path")
    p.add_argument("-s", "--outscale", type=output_scale, default=None, dest="outscale",
                   help="the output scale, any real factor above 1 (default: the model's own)")
    p.add_argument("--suffix", default="", help="added to each output's file name stem (default: none)")
    p.add_argument("--ext", choices=EXTS, default="auto", help="output format; auto keeps the input's")
    p.add_argument("--max_pixels", type=positive_int, default=DEFAULT_MAX_PIXELS,
                   help="refuse input images of more pixels (decompression bombs)")
    add_runtime_args(p)
    add_arch_args(p, registry.families())
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
    return upscale_paths(predict, args.input, scale, args.output, device, args.max_pixels, args.suffix, args.ext)


if __name__ == "__main__":
    sys.exit(main())
